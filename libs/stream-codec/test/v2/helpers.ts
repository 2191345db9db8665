import { concatBytes } from '../../src/source';
import { decodeV2 } from '../../src/v2/decoder';
import { encodeV2, type EncodeOptions } from '../../src/v2/encoder';
import { synthStream, type SynthOptions } from '../../src/v2/synth';
import type { V2Item } from '../../src/v2/types';
import { verifyV2 } from '../../src/verify';

export async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c);
  return concatBytes(parts.length ? parts : [new Uint8Array(0)]);
}

export function encodeItems(items: Iterable<V2Item>, opts?: EncodeOptions): Promise<Uint8Array> {
  return collect(encodeV2(items, opts));
}

export function synthBytes(o: SynthOptions = {}, enc?: EncodeOptions): Promise<Uint8Array> {
  return encodeItems(synthStream(o), enc);
}

/** The bytes cut into chunks of `size` (views). */
export function* chunked(b: Uint8Array, size: number): Generator<Uint8Array> {
  for (let i = 0; i < b.byteLength; i += size) yield b.subarray(i, Math.min(i + size, b.byteLength));
}

/** Random chunk sizes from a seeded generator. */
export function* randomChunks(b: Uint8Array, seed: number, max = 9000): Generator<Uint8Array> {
  const rnd = rng(seed);
  for (let i = 0; i < b.byteLength; ) {
    const n = 1 + Math.floor(rnd() * max);
    yield b.subarray(i, Math.min(i + n, b.byteLength));
    i += n;
  }
}

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

export async function decodeAll(src: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, format: 'auto' | 'xl' | 'libxl' | 'libxc' = 'auto'): Promise<V2Item[]> {
  const out: V2Item[] = [];
  for await (const it of decodeV2(src, { format })) out.push(it);
  return out;
}

export function verifyBytes(b: Uint8Array, opts: Parameters<typeof verifyV2>[1] = {}) {
  return verifyV2([b], opts);
}

export function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** Fast equality for large byte arrays (vitest's deep equality is slow on MiBs), with the first difference on failure. */
export function sameBytes(a: Uint8Array, b: Uint8Array): string {
  if (a.byteLength !== b.byteLength) return `lengths differ: ${a.byteLength} vs ${b.byteLength}`;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return `first difference at offset ${i}`;
  return 'same';
}
