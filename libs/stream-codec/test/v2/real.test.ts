/**
 * The two real `xl save` images of Xen 4.17, carried gzip in the repository
 * (libs/testing/fixtures/real-xen-4.17, provenance in the README there): verified,
 * inspected, and decoded then re-encoded byte for byte (compared by SHA-256 while
 * streaming).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createGunzip } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { inspectStream } from '../../src/inspect';
import { decodeV2 } from '../../src/v2/decoder';
import { encodeV2 } from '../../src/v2/encoder';
import { verifyV2 } from '../../src/verify';

// Read by path, not imported: the codec depends on no other project of ours, tests included.
const DIR = path.resolve(__dirname, '../../../testing/fixtures/real-xen-4.17');
const IMAGES = JSON.parse(fs.readFileSync(path.join(DIR, 'images.json'), 'utf8')) as { file: string; bytes: number; sha256: string; guest: 'pv' | 'hvm' }[];
const open = (f: string) => fs.createReadStream(path.join(DIR, f)).pipe(createGunzip({ chunkSize: 1 << 20 }));

describe('real Xen 4.17 xl save images', () => {
  for (const img of IMAGES) {
    it(`${img.file}: valid`, async () => {
      const f = await verifyV2(open(img.file), { format: 'xl' });
      expect(f).toMatchObject({ framing: 'xl', byteOrder: 'little', guest: img.guest, xenVersion: '4.17', imageVersion: 3, vcpus: 1, bytes: img.bytes });
      if (img.guest === 'pv') expect(f).toMatchObject({ guestWidth: 64, pages: 22528, warnings: [] });
      else expect(f.warnings.join()).toMatch(/HVM_CONTEXT .* before HVM_PARAMS/);
    }, 60000);

    it(`${img.file}: decode -> encode reproduces it byte for byte`, async () => {
      const h = createHash('sha256');
      let n = 0;
      for await (const c of encodeV2(decodeV2(open(img.file)))) {
        h.update(c);
        n += c.byteLength;
      }
      expect(n).toBe(img.bytes);
      expect(h.digest('hex')).toBe(img.sha256);
    }, 60000);

    it(`${img.file}: inspect describes it`, async () => {
      const rep = await inspectStream(open(img.file));
      expect(rep.verdict.valid).toBe(true);
      expect(rep.xl?.mandatoryFlags).toEqual(['CONFIG_JSON', 'STREAM_V2']);
      expect((rep.xl?.config as { c_info: { type: string } }).c_info.type).toBe(img.guest);
      expect(rep.libxc?.xen).toBe('4.17');
      expect(rep.libxc?.vcpus).toEqual([0]);
      if (img.guest === 'hvm') {
        expect(rep.emulators[0]).toMatchObject({ emulator: 'qemu_upstream', index: 0, format: 'QEMU VM state v3' });
        expect(rep.emulators[0]?.sections).toContain('0000:00:01.1/ide');
        expect(rep.libxc?.pages.withData).toBe(16396);
      } else {
        expect(rep.libxc?.pvInfo).toEqual({ guestWidth: 64, ptLevels: 4 });
        expect(rep.libxc?.records['X86_PV_VCPU_BASIC']).toEqual({ count: 1, bytes: 5176 });
      }
    }, 60000);
  }
});
