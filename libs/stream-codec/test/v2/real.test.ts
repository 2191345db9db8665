/**
 * The two real `xl save` images of Xen 4.17 (gzip, read from the shared corpus,
 * never copied into the repo): verified, inspected, and decoded then re-encoded
 * byte for byte (compared by SHA-256 while streaming). Skipped when the corpus
 * is not mounted.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { createGunzip } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { inspectStream } from '../../src/inspect';
import { decodeV2 } from '../../src/v2/decoder';
import { encodeV2 } from '../../src/v2/encoder';
import { verifyV2 } from '../../src/verify';

import * as path from 'node:path';

// The corpus lives in ../shared beside the repository (read in place, never copied in).
const DIR = process.env.FERRY_XEN_CORPUS ?? path.resolve(__dirname, '../../../../../shared/corpus/real-xen-4.17');
const IMAGES = [
  { file: 'pv-88M.xlsave.gz', bytes: 92468222, sha256: 'defd307b6d3fa1944b294378f76a736abb6a156db1eeaac953b8f8933beb5dbd', guest: 'pv' },
  { file: 'hvm-64M.xlsave.gz', bytes: 75545289, sha256: '014d5378a6d3791cbfe7245516dd173c635edcba90edcdab0118a6689222063d', guest: 'hvm' },
] as const;
const present = fs.existsSync(DIR);
if (!present && process.env.FERRY_REQUIRE_SERVICES === '1') throw new Error(`real Xen corpus missing at ${DIR} (FERRY_REQUIRE_SERVICES=1)`);
const open = (f: string) => fs.createReadStream(`${DIR}/${f}`).pipe(createGunzip({ chunkSize: 1 << 20 }));

describe.skipIf(!present)('real Xen 4.17 xl save images', () => {
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
