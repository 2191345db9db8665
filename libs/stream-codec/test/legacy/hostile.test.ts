import { describe, expect, it } from 'vitest';
import {
  MalformedStreamError,
  StreamCodecError,
  TruncatedStreamError,
  UnsupportedStreamError,
  convertLegacy,
  writeLegacy,
  type LegacyConvertOptions,
  type LegacyImage,
} from '../../src/index';
import { collect } from './helpers';

const page = new Uint8Array(4096).fill(0x5a);

function pv(width: 32 | 64, extra: Partial<LegacyImage> = {}): LegacyImage {
  return {
    guest: 'pv',
    toolstackWidth: width,
    guestWidth: 64,
    p2mSize: 16,
    vcpus: [{ id: 0, basic: new Uint8Array(0x1430) }],
    pages: [
      { pfn: 0, data: page },
      { pfn: 1, data: page },
    ],
    ...extra,
  };
}

function hvm(width: 32 | 64, extra: Partial<LegacyImage> = {}): LegacyImage {
  return {
    guest: 'hvm',
    toolstackWidth: width,
    p2mSize: 16,
    vcpus: [{ id: 0 }],
    pages: [{ pfn: 2, data: page }],
    magicPfns: { ioreq: 10, bufioreq: 11, store: 12 },
    hvmContext: new Uint8Array(64).fill(1),
    qemu: new Uint8Array(100).fill(2),
    ...extra,
  };
}

const bytesOf = (img: LegacyImage) => collect(writeLegacy(img));

/** Converts and returns the error; checks it is one clean line and that memory did not balloon. */
async function failure(input: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, opts: LegacyConvertOptions): Promise<StreamCodecError> {
  const before = process.memoryUsage();
  const { output } = convertLegacy(input, opts);
  const err = await collect(output).then(
    () => undefined,
    (e: unknown) => e,
  );
  const after = process.memoryUsage();
  expect(err).toBeInstanceOf(StreamCodecError);
  expect((err as Error).message).not.toContain('\n');
  expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(64 * 1024 * 1024);
  return err as StreamCodecError;
}

function patch(b: Uint8Array, at: number, bytes: number[]): Uint8Array {
  const c = b.slice();
  c.set(bytes, at);
  return c;
}
const u32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];

describe('hostile and malformed legacy input: one clean error, bounded memory, no hang', () => {
  it('valid samples convert (sanity)', async () => {
    for (const img of [pv(32), pv(64), hvm(32), hvm(64)]) {
      const { output } = convertLegacy([await bytesOf(img)], { width: img.toolstackWidth, guest: img.guest });
      expect((await collect(output)).byteLength).toBeGreaterThan(4096);
    }
  });

  it('a 32-bit image read as 64-bit with nothing else to go on: p2m_size 0xffffffff00010000', async () => {
    // Only 8 bytes: detection cannot contradict the declaration, the converter must.
    const b = new Uint8Array([0x00, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff]);
    const e = await failure([b], { width: 64, guest: 'pv' });
    expect(e.message).toMatch(/0xffffffff00010000/);
    // and with the width taken at its word (no detection possible), the converter's own check
    const e2 = await failure([b], { width: 64, guest: 'hvm' });
    expect(e2.message).toMatch(/0xffffffff00010000/);
  });

  it('a batch count above 1024', async () => {
    const b = await bytesOf(hvm(32));
    const e = await failure([patch(b, 4, u32(0x7fffffff))], { width: 32, guest: 'hvm' });
    expect(e).toBeInstanceOf(MalformedStreamError);
    expect(e.message).toMatch(/batch of 2147483647 exceeds the maximum of 1024/);
  });

  it('a batch whose pages are missing (input ends)', async () => {
    const b = await bytesOf(hvm(32));
    const e = await failure([b.subarray(0, 4 + 4 + 4 + 100)], { width: 32, guest: 'hvm' });
    expect(e).toBeInstanceOf(TruncatedStreamError);
  });

  it('a huge unmapped-pfn count', async () => {
    const img = pv(32);
    const b = await bytesOf(img);
    // the count sits right before the vcpu context: after ... END(0)
    const at = b.byteLength - 4096 - 128 - 0x1430 - 4;
    expect(new DataView(b.buffer).getUint32(at, true)).toBe(0);
    const e = await failure([patch(b, at, u32(0xfffffff0))], { width: 32, guest: 'pv' });
    expect(e.message).toMatch(/4294967280 unmapped pfns claimed but p2m_size is only 16/);
  });

  it('a missing end marker (the tail is read as chunks)', async () => {
    const img = hvm(64, { lastCheckpoint: false });
    const b = await bytesOf(img);
    // drop the END chunk: the magic pfns are then read as chunk ids
    const endAt = b.byteLength - 25 - 100 - 64 - 4 - 24 - 4;
    expect(new DataView(b.buffer).getInt32(endAt, true)).toBe(0);
    const cut = new Uint8Array([...b.subarray(0, endAt), ...b.subarray(endAt + 4)]);
    const e = await failure([cut], { width: 64, guest: 'hvm' });
    expect(e).toBeInstanceOf(StreamCodecError);
  });

  it('an endless stream of chunk ids never ends the body: a clean error, not a hang', async () => {
    async function* endless() {
      yield new Uint8Array([16, 0, 0, 0, 0, 0, 0, 0]); // 64-bit p2m_size 16
      const c = new Uint8Array(1 << 16);
      const dv = new DataView(c.buffer);
      for (let i = 0; i < c.length; i += 4) dv.setInt32(i, -9, true); // last checkpoint, forever
      for (let n = 0; n < 1024; n++) yield c; // 64 MiB of it
      yield new Uint8Array([0x99, 0x99, 0x99, 0x99]);
    }
    const t = Date.now();
    const e = await failure(endless(), { width: 64, guest: 'hvm' });
    expect(e.message).toMatch(/more than 65536 metadata chunks/);
    expect(Date.now() - t).toBeLessThan(10_000);
  });

  it('lying lengths: toolstack (libxl), HVM context, qemu record, extended info, xl optional data', async () => {
    const tsImg = hvm(32, { toolstack: new Uint8Array(16) });
    const ts = await bytesOf(tsImg);
    const tsAt = ts.indexOf(0xee, 0); // -18 = 0xffffffee
    expect(new DataView(ts.buffer).getInt32(tsAt, true)).toBe(-18);
    expect((await failure([patch(ts, tsAt + 4, u32(0xfffffff0))], { width: 32, guest: 'hvm', format: 'libxl' })).message).toMatch(/toolstack data of 4294967280 bytes is implausible/);
    // libxc output skips toolstack data without buffering it: a lie just runs out of input
    expect(await failure([patch(ts, tsAt + 4, u32(0xfffffff0))], { width: 32, guest: 'hvm' })).toBeInstanceOf(TruncatedStreamError);

    const h = await bytesOf(hvm(64));
    const ctxAt = h.byteLength - 25 - 100 - 64 - 4;
    expect(new DataView(h.buffer).getUint32(ctxAt, true)).toBe(64);
    expect((await failure([patch(h, ctxAt, u32(0xfffffff0))], { width: 64, guest: 'hvm' })).message).toMatch(/HVM context of 4294967280 bytes is implausible/);
    expect((await failure([patch(h, ctxAt, u32(0))], { width: 64, guest: 'hvm' })).message).toMatch(/zero-length HVM context/);
    const qAt = h.byteLength - 100 - 4;
    expect((await failure([patch(h, qAt, u32(0xfffffff0))], { width: 64, guest: 'hvm', format: 'libxl' })).message).toMatch(/qemu record of 4294967280 bytes/);

    const p = await bytesOf(pv(64));
    expect((await failure([patch(p, 16, u32(0x7ffffff0))], { width: 64, guest: 'pv' })).message).toMatch(/extended info length 0x7ffffff0 is implausible/);

    const x = await bytesOf(pv(64, { xl: { mandatoryFlags: 1 } }));
    expect(await failure([patch(x, 44, u32(0xfffffff0))], { width: 64, guest: 'pv', xl: true })).toBeInstanceOf(TruncatedStreamError);
  });

  it('what Xen accepts but its verifier rejects: page types 5-8, all-filler batches, a second vcpu block, trailing bytes, high pfn bits', async () => {
    const t5 = await bytesOf(hvm(32, { pages: [{ pfn: 2, type: 5, data: page }] }));
    expect((await failure([t5], { width: 32, guest: 'hvm' })).message).toMatch(/invalid page type 0x5/);
    const fill = await bytesOf(hvm(32, { pages: [{ pfn: 0, type: 0xf }, { pfn: 0, type: 0xf }] }));
    expect((await failure([fill], { width: 32, guest: 'hvm' })).message).toMatch(/all XTAB fillers/);
    // duplicate pfns in one batch: right after each other, and after the order broke (pfn 9 again)
    const dup = (pfns: number[]) => bytesOf(hvm(32, { pages: pfns.map((pfn) => ({ pfn, type: 0, data: page })) }));
    expect((await failure([await dup([3, 3])], { width: 32, guest: 'hvm' })).message).toMatch(/duplicate pfn entry 0x3 in one batch/);
    expect((await failure([await dup([7, 9, 4, 9])], { width: 32, guest: 'hvm' })).message).toMatch(/duplicate pfn entry 0x9 in one batch/);
    await expect(collect(convertLegacy([await dup([9, 3, 1, 2])], { width: 32, guest: 'hvm' }).output)).resolves.toBeDefined();
    const trail = await bytesOf(hvm(32));
    expect((await failure([trail, new Uint8Array(3)], { width: 32, guest: 'hvm' })).message).toMatch(/3 bytes after the end of the image/);
    const hi = await bytesOf(hvm(64));
    expect((await failure([patch(hi, 12 + 4, [1, 0, 0, 0])], { width: 64, guest: 'hvm' })).message).toMatch(/bits above 32 set/);
    // a second "vcpu" block: rewrite "extv" (size 0) into a second "vcpu"
    const two = await bytesOf(pv(32));
    const ext = Buffer.from(two).indexOf('extv');
    const t = patch(two, ext, [...Buffer.from('vcpu')]);
    expect((await failure([t], { width: 32, guest: 'pv' })).message).toMatch(/a second "vcpu" block|overruns/);
  });

  it('what crashes Xen\'s script: no "vcpu" block, xsave size mismatch, unknown chunks, tmem', async () => {
    const noVcpu = await bytesOf(pv(32));
    const at = Buffer.from(noVcpu).indexOf('vcpu');
    expect((await failure([patch(noVcpu, at, [...Buffer.from('vcpX')])], { width: 32, guest: 'pv' })).message).toMatch(/unrecognised extended info block/);
    const xs = await bytesOf(pv(64, { vcpus: [{ id: 0, basic: new Uint8Array(0x1430), xsave: { mask: 3n, data: new Uint8Array(64) } }] }));
    const sizeAt = xs.byteLength - 4096 - 64 - 8;
    expect(new DataView(xs.buffer).getUint32(sizeAt, true)).toBe(64);
    expect((await failure([patch(xs, sizeAt, u32(65))], { width: 64, guest: 'pv' })).message).toMatch(/xsave size 0x41 differs/);
    const tm = await bytesOf(hvm(32, { pages: [{ raw: new Uint8Array(u32(-5 >>> 0)) }, { pfn: 1, data: page }] }));
    expect(await failure([tm], { width: 32, guest: 'hvm' })).toBeInstanceOf(UnsupportedStreamError);
    const unk = await bytesOf(hvm(32, { pages: [{ raw: new Uint8Array(u32(-77 >>> 0)) }] }));
    expect((await failure([unk], { width: 32, guest: 'hvm' })).message).toMatch(/unrecognised chunk -77/);
  });

  it('an xl header missing where -x says there is one, and an unknown qemu signature', async () => {
    const b = await bytesOf(hvm(32));
    expect((await failure([b], { width: 32, guest: 'hvm', xl: true })).message).toMatch(/no xl header/);
    const q = b.slice();
    q.set(Buffer.from('QemuDeviceModelRecord'), b.byteLength - 100 - 25);
    expect(await failure([q], { width: 32, guest: 'hvm' })).toBeInstanceOf(UnsupportedStreamError);
  });
});
