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
  return checkPageAt(page, 0, pfn) ? { seed: lastSeed, version: lastVersion } : null;
}

// Wrappers over the ArrayBuffer of the segment last checked: a restore checks every page of a
// chunk through the same two objects instead of allocating views per page (a GiB is 262144 pages).
let wrappedAb: ArrayBufferLike | undefined;
let wrappedU32: Uint32Array | undefined;
let wrappedBuf: Buffer | undefined;
let lastSeed = 0;
let lastVersion = 0;

function wrap(ab: ArrayBufferLike): void {
  if (ab === wrappedAb) return;
  wrappedAb = ab;
  wrappedU32 = LITTLE ? new Uint32Array(ab, 0, Math.floor(ab.byteLength / 4)) : undefined;
  wrappedBuf = Buffer.from(ab as ArrayBuffer);
}

/**
 * Checks the page at bytes[off, off+4096) without allocating; on success its (seed, version) are
 * left in lastSeed/lastVersion.
 */
function checkPageAt(bytes: Uint8Array, off: number, pfn: number): boolean {
  wrap(bytes.buffer);
  const at = bytes.byteOffset + off;
  let version: number;
  let seed: number;
  const w = wrappedU32;
  if (w && at % 4 === 0) {
    const i0 = at >>> 2;
    if (w[i0] !== MAGIC || w[i0 + 1] !== pfn) return false;
    version = w[i0 + 2]!;
    seed = w[i0 + 3]!;
    for (let i = 4; i < BLOCK_WORDS; i++) if (w[i0 + i] !== blockWord(seed, pfn, version, i)) return false;
  } else {
    const dv = new DataView(bytes.buffer, at, 64);
    if (dv.getUint32(0, true) !== MAGIC || dv.getUint32(4, true) !== pfn) return false;
    version = dv.getUint32(8, true);
    seed = dv.getUint32(12, true);
    for (let i = 4; i < BLOCK_WORDS; i++) if (dv.getUint32(i * 4, true) !== blockWord(seed, pfn, version, i)) return false;
  }
  // periodic with period 64 <=> page[64..4096) == page[0..4032)
  if (wrappedBuf!.compare(wrappedBuf!, at, at + PAGE_SIZE - 64, at + 64, at + PAGE_SIZE) !== 0) return false;
  lastSeed = seed;
  lastVersion = version;
  return true;
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
    if (page.byteLength !== PAGE_SIZE) {
      this.corruptPages++;
      return;
    }
    this.acceptAt(pfn, page, 0);
  }

  /** Target side: the page bytes[off, off+4096) arrived for `pfn` (no views made for intact pages). */
  acceptAt(pfn: number, bytes: Uint8Array, off: number): void {
    if (pfn >= this.versions.length) {
      this.corruptPages++;
      return;
    }
    const ok = checkPageAt(bytes, off, pfn);
    if (ok && this.adoptSeed) {
      this.seed = lastSeed;
      this.adoptSeed = false;
    }
    if (ok && lastSeed === this.seed) {
      this.versions[pfn] = lastVersion;
      this.setCanonical(pfn);
    } else {
      this.corruptPages++;
      this.table[pfn * 2] = crc32(bytes.subarray(off, off + PAGE_SIZE)) >>> 0;
      this.table[pfn * 2 + 1] = MISSING;
    }
  }

  digest(): string {
    const t = this.table;
    return 'sha256:' + createHash('sha256').update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength)).digest('hex');
  }
}
