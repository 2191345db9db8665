/** StreamReader.passOn with a host that forwards unread bytes itself (the CLI's kernel copy). */
import { describe, expect, it } from 'vitest';
import { StreamReader } from '../src/reader';
import { TruncatedStreamError } from '../src/errors';

/** A source over `data` in `chunk`-byte pieces whose forward() "moves" unread bytes into `out`. */
function host(data: Uint8Array, chunk: number, opts: { step?: number; refuse?: boolean } = {}) {
  let pos = 0;
  const out: number[] = [];
  const log: string[] = [];
  async function* chunks(): AsyncGenerator<Uint8Array> {
    while (pos < data.byteLength) {
      const c = data.subarray(pos, Math.min(data.byteLength, pos + chunk));
      pos += c.byteLength;
      yield c;
    }
  }
  const r = new StreamReader(chunks());
  r.forward = async (n: number) => {
    if (opts.refuse) {
      log.push('refused');
      return null;
    }
    const k = Math.min(n, opts.step ?? n, data.byteLength - pos);
    for (let i = 0; i < k; i++) out.push(data[pos + i]!);
    pos += k;
    log.push(`moved ${k}`);
    return k;
  };
  return { r, out, log };
}

const data = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff);

describe('StreamReader.passOn with forward', () => {
  it('yields what is buffered, forwards the rest, and keeps offsets right', async () => {
    const { r, out, log } = host(data, 100, { step: 150 });
    expect([...(await r.read(10, 'head'))]).toEqual([...data.subarray(0, 10)]);
    const yielded: number[] = [];
    for await (const p of r.passOn(600, 'pages')) yielded.push(...p);
    // 90 bytes were buffered (yielded), 510 forwarded in steps of at most 150
    expect(yielded).toEqual([...data.subarray(10, 100)]);
    expect(out).toEqual([...data.subarray(100, 610)]);
    expect(log).toEqual(['moved 150', 'moved 150', 'moved 150', 'moved 60']);
    expect(r.offset).toBe(610);
    expect(r.unheldBefore).toBe(610);
    expect([...(await r.read(5, 'tail'))]).toEqual([...data.subarray(610, 615)]);
  });

  it('a host that cannot forward is asked once; passOn then reads as usual', async () => {
    const { r, log } = host(data, 64, { refuse: true });
    await r.read(64, 'head');
    const got: number[] = [];
    for await (const p of r.passOn(500, 'pages')) got.push(...p);
    for await (const p of r.passOn(100, 'pages')) got.push(...p);
    expect(got).toEqual([...data.subarray(64, 664)]);
    expect(log).toEqual(['refused']);
  });

  it('the input ending inside forwarded bytes is a truncation', async () => {
    const { r } = host(data, 100);
    await r.read(100, 'head');
    await expect(
      (async () => {
        for await (const _ of r.passOn(5000, 'page data'));
      })(),
    ).rejects.toThrow(TruncatedStreamError);
  });

  it('never forwards while onChunk must see every byte', async () => {
    const { r, log } = host(data, 100);
    let seen = 0;
    r.onChunk = (c) => (seen += c.byteLength);
    for await (const _ of r.passOn(1000, 'all'));
    expect(seen).toBe(1000);
    expect(log).toEqual([]);
  });
});
