import { describe, expect, it } from 'vitest';
import { AmbiguousStreamError, MalformedStreamError, convertLegacy, detectLegacy, writeLegacy } from '../../src/index';
import { goldenCases } from './matrix';
import { collect, golden, manifest } from './helpers';

const XL_LEN = (b: Uint8Array) => 48 + new DataView(b.buffer, b.byteOffset).getUint32(44, true);

describe('width and guest-type detection', () => {
  for (const e of manifest()) {
    it(`is right and certain on ${e.name}`, () => {
      const g = golden(e.name);
      const body = g.c.xl ? g.legacy.subarray(XL_LEN(g.legacy)) : g.legacy;
      const d = detectLegacy(body, { complete: true, xl: g.c.xl });
      expect(d.width).toBe(g.c.width);
      expect(d.guest).toBe(g.c.guest);
      expect(d.confidence).toBe('certain');
      expect(d.xl).toBe(g.c.xl);
      if (g.c.guest === 'pv') expect(d.guestWidth).toBe(e.name.startsWith('pv32') ? 32 : 64);
      // libxl framing is visible from the xl header or libxl's toolstack chunk
      if (g.c.xl || g.c.format === 'libxl') expect(d.framing).toBe('libxl');
      expect(d.reasons.length).toBeGreaterThan(2);
    });
  }

  it('decides from a prefix too (first 4 KiB of a larger image)', () => {
    const g = golden('pv64-w32-libxc');
    const d = detectLegacy(g.legacy.subarray(0, 4096), { complete: false });
    expect([d.width, d.guest, d.guestWidth]).toEqual([32, 'pv', 64]);
    expect(d.confidence).not.toBe('low');
  });

  it('refuses a stream that reads as 32-bit PV or 32-bit HVM, naming both', () => {
    // p2m_size, then ~0: the extended-info marker of a 32-bit PV image, or an HVM
    // image's "enable verify mode" chunk; the image ends before they part.
    const b = new Uint8Array([0x00, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    let err: unknown;
    try {
      detectLegacy(b, { complete: true });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AmbiguousStreamError);
    expect((err as AmbiguousStreamError).candidates).toEqual(expect.arrayContaining(['32-bit pv', '32-bit hvm']));
    expect((err as Error).message).toMatch(/32-bit PV or 32-bit HVM/);
  });

  it('refuses a cut-off 32-bit stream whose verify chunks also read as a PV marker', async () => {
    const b = new Uint8Array([0x00, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xf7, 0xff, 0xff, 0xff]);
    // as PV: marker, then extended-info length 0xfffffff7 (implausible) -> only HVM survives
    expect(detectLegacy(b, { complete: false }).guest).toBe('hvm');
    const { output } = convertLegacy([b.subarray(0, 8)], { width: 'auto', guest: 'auto' });
    await expect(collect(output)).rejects.toBeInstanceOf(AmbiguousStreamError);
  });

  it('with a declared width that contradicts the stream, says so (the seed case)', async () => {
    // A 32-bit PV image read as 64-bit: p2m_size would be 0xffffffff00010000.
    const img = goldenCases().find((c) => c.name === 'pv64-w32-libxc')!.image();
    img.p2mSize = 0x10000;
    img.p2mFrames = undefined;
    const bytes = await collect(writeLegacy({ ...img, pages: [] }));
    const { output } = convertLegacy([bytes], { width: 64, guest: 'pv' });
    const err = await collect(output).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MalformedStreamError);
    expect((err as Error).message).toMatch(/declared 64-bit PV contradicts the stream/);
    expect((err as Error).message).toMatch(/0xffffffff00010000/);
    expect((err as Error).message).toMatch(/32-bit PV/);
    expect((err as Error).message.split('\n')).toHaveLength(1);
  });

  it('with a declared guest type that contradicts the stream, says so', () => {
    const g = golden('hvm-w64-libxc');
    expect(() => detectLegacy(g.legacy, { complete: true, guest: 'pv' })).toThrow(/declared PV contradicts the stream.*64-bit HVM/);
  });

  it('refuses something that is no legacy image at all', () => {
    expect(() => detectLegacy(new Uint8Array(64).fill(0x41), { complete: true })).toThrow(AmbiguousStreamError);
  });
});
