import { once } from 'node:events';
import type { Writable } from 'node:stream';

/** Small async-iterable helpers; none holds more than one chunk. */

/** Yields `source` but keeps the latest chunk back until the next one arrives or `beforeLast` passes. */
export async function* holdLastChunk(
  source: AsyncIterable<Uint8Array>,
  beforeLast: () => void | Promise<void>,
): AsyncGenerator<Uint8Array> {
  let held: Uint8Array | undefined;
  for await (const c of source) {
    if (c.byteLength === 0) continue;
    if (held) yield held;
    held = c;
  }
  await beforeLast();
  if (held) yield held;
}

/**
 * Reads the first chunk now (so errors surface before any response header is sent) and returns
 * it together with an iterable of everything (first chunk included).
 */
export async function prime(source: AsyncIterable<Uint8Array>): Promise<AsyncIterable<Uint8Array>> {
  const it = source[Symbol.asyncIterator]();
  const first = await it.next();
  return (async function* () {
    if (first.done) return;
    yield first.value;
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      yield n.value;
    }
  })();
}

/** Iterates a Node stream (or any async iterable of Buffers) as Uint8Array chunks. */
export async function* asBytes(source: AsyncIterable<unknown>): AsyncGenerator<Uint8Array> {
  for await (const c of source) {
    if (c instanceof Uint8Array) yield c;
    else if (typeof c === 'string') yield Buffer.from(c);
    else throw new Error('unexpected chunk type in a byte stream');
  }
}

/**
 * Writes every chunk to `out` with back-pressure, then ends it. Stops (closing the source)
 * when `out` closes early, e.g. the client went away.
 */
export async function writeAll(out: Writable, body: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const c of body) {
    if (out.destroyed) return;
    if (!out.write(c)) {
      await Promise.race([once(out, 'drain'), once(out, 'close')]);
    }
  }
  if (!out.destroyed) out.end();
}
