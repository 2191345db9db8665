/** Where bytes come from: anything that yields Uint8Array chunks of any size. */
export type ByteSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array> | ReadableStream<Uint8Array>;

function isReadableStream(s: unknown): s is ReadableStream<Uint8Array> {
  return typeof s === 'object' && s !== null && typeof (s as ReadableStream).getReader === 'function';
}

/** Normalises every ByteSource to an async iterator of chunks (Node Readables are async iterables). */
export async function* chunksOf(source: ByteSource): AsyncGenerator<Uint8Array, void, undefined> {
  if (isReadableStream(source)) {
    const reader = source.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        if (value.byteLength > 0) yield value;
      }
    } finally {
      reader.releaseLock();
    }
  }
  if (Symbol.asyncIterator in source) {
    for await (const c of source as AsyncIterable<Uint8Array>) if (c.byteLength > 0) yield c;
    return;
  }
  for (const c of source as Iterable<Uint8Array>) if (c.byteLength > 0) yield c;
}

/** Joins byte arrays into one new array (used only for small, bounded pieces). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let n = 0;
  for (const p of parts) n += p.byteLength;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}
