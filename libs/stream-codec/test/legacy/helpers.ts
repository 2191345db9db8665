import * as fs from 'node:fs';
import * as path from 'node:path';
import { goldenCases, type GoldenCase } from './matrix';

export const GOLDEN = path.join(__dirname, 'golden');

export interface GoldenEntry {
  name: string;
  args: string[];
  legacy: string;
  v2: string;
  bytes: [number, number];
}

export function manifest(): GoldenEntry[] {
  return JSON.parse(fs.readFileSync(path.join(GOLDEN, 'manifest.json'), 'utf8')) as GoldenEntry[];
}

export function golden(name: string): { legacy: Uint8Array; v2: Uint8Array; c: GoldenCase } {
  const c = goldenCases().find((x) => x.name === name)!;
  return {
    legacy: new Uint8Array(fs.readFileSync(path.join(GOLDEN, `${name}.legacy`))),
    v2: new Uint8Array(fs.readFileSync(path.join(GOLDEN, `${name}.v2`))),
    c,
  };
}

export async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of it) {
    parts.push(c.slice(0));
    n += c.byteLength;
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

/** The bytes in chunks of the given sizes (cycled), to exercise every boundary. */
export function* chunked(b: Uint8Array, sizes: number[]): Generator<Uint8Array> {
  let o = 0;
  for (let i = 0; o < b.byteLength; i++) {
    const n = sizes[i % sizes.length]!;
    yield b.subarray(o, o + n);
    o += n;
  }
}

export function eq(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}
