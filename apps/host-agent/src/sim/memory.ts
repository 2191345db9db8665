/**
 * A simulated guest's memory.
 *
 * Page contents are never stored: page `pfn` at version `v` of a guest with seed `s` is a 64-byte
 * block B(s, pfn, v) repeated 64 times. The block's first words are MAGIC, pfn, version, seed; the
 * other twelve are mixed from those. Generating a page costs one 64-byte write and six native
 * copies; checking one costs sixteen word compares and one native compare.
 *
 * The memory digest is sha256 over a table of two 32-bit words per pfn (pfn order):
 *  - a source (which knows every page's version) fills it with `canonical(seed, pfn, version)`;
 *  - a target derives it from the bytes it restored: a page whose bytes are exactly B(s,pfn,v)x64
 *    for the (s, v) written in it gets `canonical(s, pfn, v)`; any other page (corrupt, a
 *    different pfn, torn) gets a crc of its actual bytes, which never equals a canonical value.
 * So equal digests mean every byte of every page arrived, and any corruption shows.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';

export const PAGE_SIZE = 4096;
export const PAGES_PER_MIB = 256;
const MAGIC = 0x46525931; // "FRY1"
const BLOCK_WORDS = 16;
/** Table value of a pfn no page was ever received for. */
const MISSING = 0xffffffff;

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function blockWord(seed: number, pfn: number, version: number, i: number): number {
  return fmix(seed ^ fmix((Math.imul(pfn, 0x9e3779b1) + Math.imul(version, 0x85ebca77) + Math.imul(i, 0x27d4eb2f)) >>> 0));
}

/** The per-pfn digest words of an intact page. */
export function canonical(seed: number, pfn: number, version: number): [number, number] {
  const a = fmix((seed ^ Math.imul(pfn, 0x01000193) ^ Math.imul(version + 1, 0x5bd1e995)) >>> 0);
  const b = fmix((a ^ version ^ 0x6a09e667 ^ Math.imul(pfn + 1, 0x2545f491)) >>> 0);
  return [a, b === MISSING ? 0 : b];
}

const LITTLE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Writes page (seed, pfn, version) into dst[off, off+4096). */
export function writePage(dst: Uint8Array, off: number, seed: number, pfn: number, version: number): void {
  if (LITTLE && (dst.byteOffset + off) % 4 === 0) {
    const w = new Uint32Array(dst.buffer, dst.byteOffset + off, PAGE_SIZE / 4);
    w[0] = MAGIC;
    w[1] = pfn;
    w[2] = version;
    w[3] = seed;
    for (let i = 4; i < BLOCK_WORDS; i++) w[i] = blockWord(seed, pfn, version, i);
    for (let n = BLOCK_WORDS; n < PAGE_SIZE / 4; n *= 2) w.copyWithin(n, 0, n);
    return;
  }
  const dv = new DataView(dst.buffer, dst.byteOffset + off, 64);
  dv.setUint32(0, MAGIC, true);
  dv.setUint32(4, pfn, true);
  dv.setUint32(8, version, true);
  dv.setUint32(12, seed, true);
  for (let i = 4; i < BLOCK_WORDS; i++) dv.setUint32(i * 4, blockWord(seed, pfn, version, i), true);
  for (let n = 64; n < PAGE_SIZE; n *= 2) dst.copyWithin(off + n, off, off + n);
}

/** The given pages in a fresh buffer (handed off to the stream), or in `into` (a reused one). */
export function renderPages(seed: number, pfns: ArrayLike<number>, versions: Uint32Array, count = pfns.length, into?: Uint8Array): Uint8Array {
  const out = into && into.byteLength >= count * PAGE_SIZE ? into.subarray(0, count * PAGE_SIZE) : new Uint8Array(count * PAGE_SIZE);
  for (let i = 0; i < count; i++) {
    const pfn = pfns[i]!;
    writePage(out, i * PAGE_SIZE, seed, pfn, versions[pfn]!);
  }
  return out;
}

/** Reads (seed, version) of an intact page for `pfn`, or null if the bytes are not exactly a page we generate. */
export function checkPage(page: Uint8Array, pfn: number): { seed: number; version: number } | null {
  if (page.byteLength !== PAGE_SIZE) return null;
  let version: number;
  let seed: number;
  if (LITTLE && page.byteOffset % 4 === 0) {
    const w = new Uint32Array(page.buffer, page.byteOffset, BLOCK_WORDS);
    if (w[0] !== MAGIC || w[1] !== pfn) return null;
    version = w[2]!;
    seed = w[3]!;
    for (let i = 4; i < BLOCK_WORDS; i++) if (w[i] !== blockWord(seed, pfn, version, i)) return null;
  } else {
    const dv = new DataView(page.buffer, page.byteOffset, 64);
    if (dv.getUint32(0, true) !== MAGIC || dv.getUint32(4, true) !== pfn) return null;
    version = dv.getUint32(8, true);
    seed = dv.getUint32(12, true);
    for (let i = 4; i < BLOCK_WORDS; i++) if (dv.getUint32(i * 4, true) !== blockWord(seed, pfn, version, i)) return null;
  }
  // periodic with period 64 <=> page[64..4096) == page[0..4032)
  if (Buffer.compare(page.subarray(64), page.subarray(0, PAGE_SIZE - 64)) !== 0) return null;
  return { seed, version };
}

/** Memory of one guest: versions per pfn and the digest table. */
export class GuestMemory {
  readonly table: Uint32Array;
  /** Pages whose restored bytes were not intact (target side). */
  corruptPages = 0;
  /** Target side: take the seed from the first intact page. */
  private adoptSeed: boolean;

  constructor(
    public seed: number,
    readonly versions: Uint32Array,
    fill: 'canonical' | 'missing' = 'canonical',
  ) {
    this.table = new Uint32Array(versions.length * 2);
    this.adoptSeed = fill === 'missing';
    if (fill === 'canonical') for (let p = 0; p < versions.length; p++) this.setCanonical(p);
    else this.table.fill(MISSING);
  }

  static fresh(seed: number, pages: number): GuestMemory {
    return new GuestMemory(seed >>> 0, new Uint32Array(pages));
  }

  get pages(): number {
    return this.versions.length;
  }

  private setCanonical(pfn: number): void {
    const [a, b] = canonical(this.seed, pfn, this.versions[pfn]!);
    this.table[pfn * 2] = a;
    this.table[pfn * 2 + 1] = b;
  }

  /** The guest wrote to the page. */
  bump(pfn: number): void {
    this.versions[pfn] = (this.versions[pfn]! + 1) >>> 0;
    this.setCanonical(pfn);
  }

  /** Target side: a page arrived; derive its table entry from its bytes. */
  accept(pfn: number, page: Uint8Array): void {
    if (pfn >= this.versions.length) {
      this.corruptPages++;
      return;
    }
    const ok = checkPage(page, pfn);
    if (ok && this.adoptSeed) {
      this.seed = ok.seed;
      this.adoptSeed = false;
    }
    if (ok && ok.seed === this.seed) {
      this.versions[pfn] = ok.version;
      this.setCanonical(pfn);
    } else {
      this.corruptPages++;
      this.table[pfn * 2] = crc32(page) >>> 0;
      this.table[pfn * 2 + 1] = MISSING;
    }
  }

  digest(): string {
    const t = this.table;
    return 'sha256:' + createHash('sha256').update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength)).digest('hex');
  }
}
