import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../common/errors';
import { parseRange } from './checkpoints.service';
import type { CheckpointMeta } from './checkpoint.model';
import { StreamDigest, coveringRange, verifiedRange, verifiedWhole } from './integrity';

const BLOCK = 1000;
function metaOf(data: Buffer): CheckpointMeta {
  const d = new StreamDigest(BLOCK);
  for (let i = 0; i < data.length; i += 333) d.update(data.subarray(i, i + 333));
  const f = d.finish();
  return { id: 'x', vm: 'v', created: '', object: 'o', size: f.size, sha256: f.sha256, blockHash: d.blockHash, blockSize: BLOCK, blocks: f.blocks } as CheckpointMeta;
}
async function* chunks(b: Buffer, n = 257): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += n) yield b.subarray(i, i + n);
}
async function all(src: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Uint8Array[] = [];
  for await (const c of src) out.push(c);
  return Buffer.concat(out);
}

describe('integrity checks', () => {
  const data = randomBytes(4500);
  const meta = metaOf(data);

  it('records one hash per block', () => {
    expect(meta.blocks).toHaveLength(5);
  });

  it('passes good bytes and stops bad, short or long ones before the last chunk', async () => {
    expect((await all(verifiedWhole(meta, chunks(data)))).equals(data)).toBe(true);
    const bad = Buffer.from(data);
    bad[4400]! ^= 1;
    const seen: Uint8Array[] = [];
    await expect(
      (async () => {
        for await (const c of verifiedWhole(meta, chunks(bad))) seen.push(c);
      })(),
    ).rejects.toThrow(IntegrityError);
    expect(Buffer.concat(seen).length).toBeLessThan(data.length);
    await expect(all(verifiedWhole(meta, chunks(data.subarray(0, data.length - 1))))).rejects.toThrow(/bytes, recorded/);
    await expect(all(verifiedWhole(meta, chunks(data.subarray(1))))).rejects.toThrow(/block 0 .* crc32/);
    await expect(all(verifiedWhole(meta, chunks(Buffer.concat([data, Buffer.from('x')]))))).rejects.toThrow(/longer/);
  });

  it('checks the blocks a range touches and returns only the range', async () => {
    for (const [a, z] of [[0, 0], [999, 1000], [1500, 4499], [4000, 4499], [10, 2990]] as const) {
      const cover = coveringRange(meta, a, z);
      const got = await all(verifiedRange(meta, chunks(data.subarray(cover.start, cover.end + 1), 111), a, z));
      expect(got.equals(data.subarray(a, z + 1)), `${a}-${z}`).toBe(true);
    }
    const bad = Buffer.from(data);
    bad[2500]! ^= 1;
    const c = coveringRange(meta, 2100, 2200);
    await expect(all(verifiedRange(meta, chunks(bad.subarray(c.start, c.end + 1)), 2100, 2200))).rejects.toThrow(/block 2/);
    const ok = coveringRange(meta, 10, 20);
    expect((await all(verifiedRange(meta, chunks(bad.subarray(ok.start, ok.end + 1)), 10, 20))).equals(data.subarray(10, 21))).toBe(true);
  });

  it('records CRC-32 blocks and still checks the sha256 blocks of images stored before blockHash', async () => {
    expect(meta.blockHash).toBe('crc32');
    expect(meta.blocks[0]).toMatch(/^[0-9a-f]{8}$/);
    const older: CheckpointMeta = { ...meta, blockHash: undefined, blocks: [0, 1, 2, 3, 4].map((i) => createHash('sha256').update(data.subarray(i * BLOCK, (i + 1) * BLOCK)).digest('base64')) };
    delete older.blockHash;
    const c = coveringRange(older, 1500, 2600);
    expect((await all(verifiedRange(older, chunks(data.subarray(c.start, c.end + 1)), 1500, 2600))).equals(data.subarray(1500, 2601))).toBe(true);
    const bad = Buffer.from(data);
    bad[1700]! ^= 0x80;
    await expect(all(verifiedRange(older, chunks(bad.subarray(c.start, c.end + 1)), 1500, 2600))).rejects.toThrow(/block 1 .* sha256/);
    // whole reads of such images are checked against the whole-stream sha256
    const { blockHash: _b, ...olderMeta } = meta;
    expect((await all(verifiedWhole(olderMeta, chunks(data)))).equals(data)).toBe(true);
    await expect(all(verifiedWhole(olderMeta, chunks(bad)))).rejects.toThrow(/sha256 [0-9a-f]+ does not match/);
  });

  it('parses Range headers', () => {
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=50-500', 100)).toEqual({ start: 50, end: 99 });
    expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-1,5-6', 100)).toBeUndefined();
    expect(parseRange('items=0-1', 100)).toBeUndefined();
    expect(parseRange('bytes=9-1', 100)).toBeUndefined();
  });
});
