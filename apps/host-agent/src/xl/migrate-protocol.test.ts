/** The walker that finds where xl's v2 stream ends on the migration channel, and the rounds in it. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { verifyingTee } from '@ferry/stream-codec';
import { xlMigrationImage } from '../../test/xl-image';
import { RoundTracker, V2Walker, XL_GO, XlProtocolError, expectMessage, v2StreamOf } from './migrate-protocol';

describe('xl migration stream walker', () => {
  it('ends exactly at the libxl END record, whatever the chunking, and sees the pre-copy rounds', async () => {
    const image = await xlMigrationImage({ rounds: 3 });
    for (const size of [1, 7, 4096, image.length + XL_GO.length]) {
      let t = 0;
      const tracker = new RoundTracker(undefined, () => t++);
      let memoryEnds = 0;
      const w = new V2Walker({ onPageBatch: (b) => tracker.batch(b), onMemoryEnd: () => (memoryEnds++, tracker.memoryEnd()) });
      const all = Buffer.concat([image, XL_GO]);
      let taken = 0;
      for (let o = 0; o < all.length && !w.done; o += size) taken += w.feed(all.subarray(o, o + size));
      expect(w.done).toBe(true);
      expect(taken).toBe(image.length);
      expect(tracker.rounds.map((r) => r.pages)).toEqual([600, 200, 100]);
      expect(memoryEnds).toBe(1);
    }
  });

  it('hands the verifier exactly the stream and leaves GO for the handshake', async () => {
    const image = await xlMigrationImage();
    const r = new PassThrough();
    for (let o = 0; o < image.length; o += 5000) r.write(image.subarray(o, o + 5000));
    r.end(XL_GO);
    const tee = verifyingTee(v2StreamOf(r, new V2Walker()));
    let n = 0;
    for await (const c of tee.output) n += c.byteLength;
    expect(n).toBe(image.length);
    expect((await tee.facts).guest).toBe('pv');
    await expect(expectMessage(r, XL_GO, 'GO')).resolves.toEqual(XL_GO);
  });

  it('skips a lying length by count, never allocating it', async () => {
    const image = await xlMigrationImage();
    const lying = Buffer.from(image.subarray(0, 48));
    lying.writeUInt32LE(0xffffffff, 44); // optional data length: 4 GiB
    const w = new V2Walker();
    expect(w.feed(Buffer.concat([lying, Buffer.alloc(1 << 20)]))).toBe(48 + (1 << 20));
    expect(w.done).toBe(false);
    const r = new PassThrough();
    r.end(Buffer.concat([lying, Buffer.alloc(4096)]));
    await expect(async () => {
      for await (const c of v2StreamOf(r, new V2Walker())) void c;
    }).rejects.toThrow(XlProtocolError);
  });

  it('refuses what is not an xl v2 migration stream, and a stream cut before END', async () => {
    expect(() => new V2Walker().feed(Buffer.alloc(64, 0x41))).toThrow(XlProtocolError);
    const image = await xlMigrationImage();
    const r = new PassThrough();
    r.end(image.subarray(0, image.length - 100));
    await expect(async () => {
      for await (const c of v2StreamOf(r, new V2Walker())) void c;
    }).rejects.toThrow(/ended after \d+ bytes, before its END record/);
  });
});
