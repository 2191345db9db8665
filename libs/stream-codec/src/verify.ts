/**
 * Verifying a whole v2 stream, or verifying while passing it through.
 *
 * - `verifyStream(source, {format})`: decode + V2Verifier, resolves to StreamFacts.
 * - `verifyingTee(source, opts)`: `{ output, facts }` where `output` yields the
 *   input chunks unchanged (the very same Uint8Array objects, byte-identical) while
 *   every record in them is verified; it throws the StreamCodecError as soon as the
 *   input is found bad, and `facts` resolves once output has been consumed. This is
 *   the hook for ingestToV2: wrap the v2 input (pass-through) or the converter's
 *   output (legacy -> v2) in it.
 */
import { StreamReader } from './reader';
import { chunksOf, type ByteSource } from './source';
import { decodeV2 } from './v2/decoder';
import type { Framing, V2Facts } from './v2/types';
import { V2Verifier, type VerifierOptions } from './v2/verifier';

/** The facts of the public API (docs/codec-api.md). */
export interface StreamFacts {
  framing: Framing;
  input: 'v2' | 'legacy';
  byteOrder: 'little' | 'big';
  guest: 'pv' | 'hvm';
  guestWidth?: 32 | 64;
  toolstackWidth?: 32 | 64;
  widthSource?: 'declared' | 'detected';
  guestSource?: 'declared' | 'detected';
  xenVersion?: string;
  pages: number;
  vcpus: number;
  records: number;
  bytesIn: number;
  bytesOut: number;
}

export interface VerifyStreamOptions extends Omit<VerifierOptions, 'format'> {
  format?: 'auto' | Framing;
  /** Called with every input chunk as it is read (progress bars). */
  onChunk?: (chunk: Uint8Array) => void;
}

/** Facts of a v2 stream that passed through unchanged. */
export function streamFactsOf(v: V2Facts): StreamFacts {
  const f: StreamFacts = {
    framing: v.framing,
    input: 'v2',
    byteOrder: v.byteOrder,
    guest: v.guest,
    xenVersion: v.xenVersion,
    pages: v.pages,
    vcpus: v.vcpus,
    records: v.records,
    bytesIn: v.bytes,
    bytesOut: v.bytes,
  };
  if (v.guestWidth) f.guestWidth = v.guestWidth;
  return f;
}

/**
 * Verifies a whole v2 stream (xl, libxl or libxc framing) and returns its detailed facts.
 * `source` may also be a factory taking `releasedBefore` (an offset before which no
 * byte is referenced any more), for sources that reuse their buffers
 * (node: pooledFileChunks).
 */
export async function verifyV2(source: ByteSource | ((releasedBefore: () => number) => ByteSource), opts: VerifyStreamOptions = {}): Promise<V2Facts> {
  let released = 0;
  const r: StreamReader = new StreamReader(typeof source === 'function' ? source(() => Math.max(released, r.unheldBefore)) : source);
  r.onChunk = opts.onChunk;
  const v = new V2Verifier(opts);
  // Page contents are not checked by any rule, so they are read past, never held: the source's
  // buffers stay few and warm in the CPU cache however large the records.
  for await (const item of decodeV2(r, { format: opts.format ?? 'auto', pageContents: 'discard' })) {
    v.push(item);
    released = r.offset; // the verifier keeps no view of this item: its bytes may be reused
  }
  return v.end(r.offset);
}

/** Verify without producing output (public API). */
export async function verifyStream(source: ByteSource, opts: { format?: 'auto' | Framing } = {}): Promise<StreamFacts> {
  return streamFactsOf(await verifyV2(source, opts));
}

/**
 * Passes the chunks of `source` through unchanged while verifying them as a v2
 * stream. The chunks are yielded only after the decoder has taken them in, so a
 * bad stream throws from `output` no later than one chunk after the bad byte.
 */
export function verifyingTee(source: ByteSource, opts: VerifyStreamOptions = {}): { output: AsyncIterable<Uint8Array>; facts: Promise<V2Facts> } {
  let resolve!: (f: V2Facts) => void;
  let reject!: (e: unknown) => void;
  const facts = new Promise<V2Facts>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  facts.catch(() => undefined); // the error also surfaces from output
  const pending: Uint8Array[] = [];
  async function* tap(): AsyncGenerator<Uint8Array, void, undefined> {
    for await (const c of chunksOf(source)) {
      pending.push(c);
      opts.onChunk?.(c);
      yield c;
    }
  }
  async function* output(): AsyncGenerator<Uint8Array, void, undefined> {
    try {
      const r = new StreamReader(tap());
      const v = new V2Verifier(opts);
      for await (const item of decodeV2(r, { format: opts.format ?? 'auto' })) {
        v.push(item);
        while (pending.length) yield pending.shift()!;
      }
      const f = v.end(r.offset);
      while (pending.length) yield pending.shift()!;
      resolve(f);
    } catch (e) {
      reject(e);
      throw e;
    }
  }
  return { output: output(), facts };
}
