import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { convertLegacy, writeLegacy } from '../../src/index';
import { goldenCases } from './matrix';
import { chunked, collect, eq, golden, manifest } from './helpers';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function optsOf(args: string[]) {
  const get = (f: string) => args[args.indexOf(f) + 1];
  return {
    width: Number(get('-w')) as 32 | 64,
    guest: get('-g') as 'pv' | 'hvm',
    format: get('-f') as 'libxc' | 'libxl',
    xl: args.includes('-x'),
    qemu: !args.includes('--skip-qemu'),
  };
}

describe('legacy -> v2 matches Xen convert-legacy-stream byte for byte', () => {
  const entries = manifest();
  it('covers the whole matrix', () => {
    expect(entries.map((e) => e.name).sort()).toEqual(goldenCases().map((c) => c.name).sort());
    expect(entries.length).toBeGreaterThanOrEqual(28);
  });
  for (const e of entries) {
    describe(e.name, () => {
      const g = golden(e.name);
      it('committed files match the manifest', () => {
        expect(sha(g.legacy)).toBe(e.legacy);
        expect(sha(g.v2)).toBe(e.v2);
      });
      it('writeLegacy reproduces the committed image', async () => {
        expect(eq(await collect(writeLegacy(g.c.image())), g.legacy)).toBe(true);
      });
      it('declared width and guest type (Xen options)', async () => {
        const { output, summary } = convertLegacy([g.legacy], optsOf(e.args));
        expect(eq(await collect(output), g.v2)).toBe(true);
        expect(summary.widthSource).toBe('declared');
      });
      it('the same bytes from input that sits at odd addresses (pfn words not 4-byte aligned)', async () => {
        const shifted = new Uint8Array(g.legacy.byteLength + 1);
        shifted.set(g.legacy, 1);
        const { output } = convertLegacy([shifted.subarray(1)], optsOf(e.args));
        expect(eq(await collect(output), g.v2)).toBe(true);
      });
      it('auto-detected width, guest type and xl header, in odd-sized chunks', async () => {
        const o = optsOf(e.args);
        const { output, summary } = convertLegacy(chunked(g.legacy, [1, 7, 4093, 13, 8192, 3]), { ...o, width: 'auto', guest: 'auto', xl: 'auto' });
        expect(eq(await collect(output), g.v2)).toBe(true);
        expect(summary.toolstackWidth).toBe(o.width);
        expect(summary.guest).toBe(o.guest);
        expect(summary.detection?.confidence).toBe('certain');
      });
    });
  }
});
