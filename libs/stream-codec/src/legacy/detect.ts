import { ascii, viewOf } from '../bytes';
import { AmbiguousStreamError, MalformedStreamError } from '../errors';
import {
  CHUNK,
  CHUNK_MIN,
  LEGACY_LIMITS,
  MAX_BATCH,
  MAX_VCPU_ID,
  PARAM_CHUNK_BY_ID,
  QEMU_SIG_V2,
  VCPU_CTXT_32,
  VCPU_CTXT_64,
  XTAB_FILLER,
} from './constants';
import type { LegacyGuest, LegacyWidth } from './writer';

/**
 * Width and guest-type detection for legacy images, which carry neither. The spec's
 * rule looks at octets 4-7 (zero: 64-bit toolstack, since p2m_size < 2^32); then each
 * of the four readings (32/64 x PV/HVM) is parsed as far as the prefix allows and
 * killed by the first thing it cannot explain: the extended-info marker and its
 * "vcpu" block size, chunk ids, batch sizes, pfn entries, the vcpu bitmap, param
 * chunk padding, the tail. The survivor with its evidence is the answer; more than
 * one survivor with similar evidence is refused as ambiguous.
 */

export interface LegacyDetection {
  width: LegacyWidth;
  guest: LegacyGuest;
  /** PV: the guest's own width, from the "vcpu" block size. */
  guestWidth?: LegacyWidth;
  /** libxl if there is an xl header or libxl's toolstack chunk; else libxc. */
  framing: 'libxc' | 'libxl';
  xl: boolean;
  confidence: 'certain' | 'high' | 'low';
  reasons: string[];
}

/** How much of the stream detection looks at. */
export const DETECT_PREFIX = 256 * 1024;

interface Reading {
  width: LegacyWidth;
  guest: LegacyGuest;
  name: string;
  alive: boolean;
  /** Why it died, or what it found. */
  reasons: string[];
  dead?: string;
  score: number;
  decisive: boolean;
  guestWidth?: LegacyWidth;
  libxlToolstack: boolean;
  /** Parsed to the end of the image. */
  complete: boolean;
  /** Ran out of bytes while still consistent. */
  truncated?: boolean;
}

class OutOfBytes extends Error {}

class Probe {
  pos: number;
  readonly dv: DataView;
  constructor(
    readonly b: Uint8Array,
    readonly width: LegacyWidth,
    start: number,
  ) {
    this.pos = start;
    this.dv = viewOf(b);
  }
  need(n: number): void {
    if (this.pos + n > this.b.byteLength) throw new OutOfBytes();
  }
  u32(): number {
    this.need(4);
    const v = this.dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.dv.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.dv.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  ulong(): bigint {
    return this.width === 32 ? BigInt(this.u32()) : this.u64();
  }
  skip(n: number): void {
    this.pos += n; // may run past the prefix: the next read throws OutOfBytes
  }
}

function hex(n: number | bigint): string {
  return '0x' + n.toString(16);
}

function probe(b: Uint8Array, width: LegacyWidth, guest: LegacyGuest, complete: boolean): Reading {
  const rd: Reading = { width, guest, name: `${width}-bit ${guest.toUpperCase()}`, alive: true, reasons: [], score: 0, decisive: false, libxlToolstack: false, complete: false };
  const die = (why: string): Reading => {
    rd.alive = false;
    rd.dead = why;
    return rd;
  };
  const p = new Probe(b, width, 0);
  try {
    const p2m = p.ulong();
    if (width === 64 && p2m >> 32n !== 0n) return die(`octets 4-7 are not zero, so a 64-bit p2m_size would be ${hex(p2m)} (over 2^32 pages)`);
    if (width === 64) {
      rd.score += 1;
    }
    if (p2m === 0n) return die('p2m_size would be 0');
    if (p2m > BigInt(LEGACY_LIMITS.p2mSizeMax)) return die(`p2m_size ${hex(p2m)} is impossible`);
    const p2mSize = Number(p2m);
    if (guest === 'pv') {
      const marker = p.ulong();
      const ones = width === 32 ? 0xffffffffn : 0xffffffffffffffffn;
      if (marker !== ones) return die(`no extended-info marker after p2m_size (found ${hex(marker)})`);
      rd.reasons.push(`extended-info marker ~0 follows p2m_size ${hex(p2m)}`);
      rd.score += 2;
      const total = p.u32();
      if (total < 8 || total > LEGACY_LIMITS.extInfoMax) return die(`extended-info length ${hex(total)} is implausible`);
      let so = 0;
      let sawVcpu = false;
      while (so < total) {
        if (total - so < 8) return die('extended-info blocks overrun their length');
        p.need(8);
        const id = ascii.decode(b.subarray(p.pos, p.pos + 4));
        p.pos += 4;
        const size = p.u32();
        so += 8 + size;
        if (so > total) return die(`extended-info block "${id}" overruns the extended-info length`);
        if (id === 'vcpu') {
          if (sawVcpu) return die('a second "vcpu" block');
          sawVcpu = true;
          if (size === VCPU_CTXT_64) rd.guestWidth = 64;
          else if (size === VCPU_CTXT_32) rd.guestWidth = 32;
          else return die(`"vcpu" block of ${hex(size)} bytes is neither 0xaf0 nor 0x1430`);
          rd.reasons.push(`"vcpu" block of ${hex(size)} bytes: ${rd.guestWidth}-bit guest`);
          rd.score += 4;
          rd.decisive = true;
        } else if (id === 'extv') {
          rd.score += 1;
        } else if (id === 'xcnt') {
          if (size < 4) return die('"xcnt" block too short');
          rd.score += 1;
        } else return die(`unknown extended-info block id ${JSON.stringify(id.replace(/[^\x20-\x7e]/g, '?'))}`);
        p.skip(size);
      }
      if (!sawVcpu) return die('extended info without a "vcpu" block');
      const fpp = 4096 / (rd.guestWidth! / 8);
      const frames = Math.floor((p2mSize - 1) / fpp) + 1;
      p.skip(frames * (width / 8));
    }
    // Body chunks.
    let batches = 0;
    let sawVcpuInfo = false;
    for (let n = 0; n < 4096; n++) {
      const at = p.pos;
      const id = p.i32();
      if (id > 0) {
        if (id > MAX_BATCH) return die(`chunk at +${at} would be a batch of ${id} pages (max ${MAX_BATCH})`);
        let data = 0;
        let fillers = 0;
        for (let i = 0; i < id; i++) {
          let x: number;
          if (width === 64) {
            const v = p.u64();
            if (v >> 32n) return die(`pfn entry ${hex(v)} at +${p.pos - 8} has bits above 32 set`);
            x = Number(v);
          } else x = p.u32();
          if (x === XTAB_FILLER) {
            fillers++;
            continue;
          }
          const t = x >>> 28;
          if (t >= 5 && t <= 8) return die(`pfn entry ${hex(x)} at +${p.pos - width / 8} has invalid type ${t}`);
          if ((x & 0x0fffffff) >= p2mSize) return die(`pfn entry ${hex(x)} at +${p.pos - width / 8} is beyond p2m_size ${hex(p2mSize)}`);
          if (t < 0xd) data++;
        }
        if (fillers === id) return die(`batch at +${at} holds nothing but XTAB fillers`);
        batches++;
        if (batches <= 2) {
          rd.reasons.push(`batch of ${id} pfns below p2m_size at +${at}`);
          rd.score += 2;
        }
        p.skip(data * 4096);
        continue;
      }
      if (id < CHUNK_MIN) return die(`chunk id ${id} at +${at} is unknown`);
      rd.score += 1;
      switch (id) {
        case CHUNK.end: {
          rd.reasons.push(`end of body at +${at}`);
          if (guest === 'hvm') {
            const io = p.u64();
            const buf = p.u64();
            const store = p.u64();
            for (const v of [io, buf, store]) if (v > BigInt(p2mSize) + 0x100000n) return die(`HVM magic pfn ${hex(v)} is far beyond p2m_size`);
            const ctx = p.u32();
            if (ctx === 0 || ctx > LEGACY_LIMITS.hvmContextMax) return die(`HVM context length ${hex(ctx)} is implausible`);
            p.skip(ctx);
            rd.score += 2;
            if (p.pos === b.byteLength && complete) {
              rd.complete = true;
              return rd;
            }
            p.need(21);
            const sig = ascii.decode(b.subarray(p.pos, p.pos + 21));
            if (sig === QEMU_SIG_V2) {
              rd.reasons.push('qemu "DeviceModelRecord0002" tail');
              rd.score += 2;
            }
          } else {
            const un = p.u32();
            if (un > p2mSize) return die(`${un} unmapped pfns claimed with p2m_size ${hex(p2mSize)}`);
            rd.score += 1;
          }
          rd.complete = true;
          return rd;
        }
        case CHUNK.vcpuInfo: {
          const max = p.i32();
          if (max < 0 || max > MAX_VCPU_ID) return die(`vcpu info max_id ${max} out of range`);
          if (sawVcpuInfo) return die('a second vcpu info chunk');
          sawVcpuInfo = true;
          p.skip((Math.floor(max / 64) + 1) * 8);
          rd.reasons.push(`vcpu info chunk (max_id ${max})`);
          rd.score += 1;
          break;
        }
        case CHUNK.tscInfo: {
          const mode = p.u32();
          if (mode > 3) return die(`TSC mode ${mode} is unknown`);
          p.skip(16);
          rd.score += 1;
          break;
        }
        case CHUNK.toolstack: {
          const size = p.u32();
          if (size >= 8) {
            p.need(8);
            if (p.dv.getUint32(p.pos, true) === 1) rd.libxlToolstack = true;
          }
          p.skip(size);
          break;
        }
        case CHUNK.compressedData: {
          p.skip(p.u32());
          break;
        }
        default:
          if (PARAM_CHUNK_BY_ID.has(id)) {
            if (guest === 'pv') return die(`HVM-only chunk ${id} at +${at}`);
            const pad = p.u32();
            p.skip(8);
            if (pad === 0) rd.score += 1; // savers zeroed the padding; older ones may not have
          }
      }
    }
  } catch (e) {
    if (!(e instanceof OutOfBytes)) throw e;
    // Consistent with every byte there is: still a candidate (a truncated image is the converter's to report).
    rd.reasons.push(complete ? 'the image ends before this reading is complete' : `(looked no further than the first ${b.byteLength} bytes)`);
    rd.truncated = true;
  }
  return rd;
}

export interface DetectOptions {
  /** The prefix is the whole stream. */
  complete?: boolean;
  /** Declared values, checked against the stream. */
  width?: LegacyWidth;
  guest?: LegacyGuest;
  /** Offset of prefix[0] in the stream, for messages. */
  base?: number;
  /** An xl header was found in front. */
  xl?: boolean;
}

/**
 * Decides toolstack width and guest type from the first bytes of a legacy image
 * (after any xl header). Throws AmbiguousStreamError naming the candidates when the
 * bytes allow more than one reading, and MalformedStreamError when a declared width
 * or guest type contradicts the stream. With declared values that cannot be checked
 * (nothing readable survives) it returns them with confidence 'low'.
 */
export function detectLegacy(prefix: Uint8Array, opts: DetectOptions = {}): LegacyDetection {
  const complete = opts.complete ?? false;
  const readings: Reading[] = [];
  for (const w of [32, 64] as const) for (const g of ['pv', 'hvm'] as const) readings.push(probe(prefix, w, g, complete));
  const octets = prefix.byteLength >= 8 ? viewOf(prefix).getUint32(4, true) : undefined;
  const octetRule =
    octets === undefined
      ? 'fewer than 8 bytes: octets 4-7 unknown'
      : octets === 0
        ? 'octets 4-7 are zero: a 64-bit toolstack by the spec\'s rule'
        : `octets 4-7 are ${hex(octets)}: a 32-bit toolstack by the spec's rule`;
  const alive = readings.filter((r) => r.alive);
  const matches = (r: Reading) => (opts.width === undefined || r.width === opts.width) && (opts.guest === undefined || r.guest === opts.guest);
  const declared = opts.width !== undefined || opts.guest !== undefined;
  const pool = alive.filter(matches);
  const xl = opts.xl ?? false;

  const result = (r: Reading, confidence: LegacyDetection['confidence'], extra: string[]): LegacyDetection => ({
    width: r.width,
    guest: r.guest,
    ...(r.guestWidth ? { guestWidth: r.guestWidth } : {}),
    framing: xl || r.libxlToolstack ? 'libxl' : 'libxc',
    xl,
    confidence,
    reasons: [octetRule, ...r.reasons, ...extra, ...(xl ? ['xl header in front'] : []), ...(r.libxlToolstack ? ["libxl's toolstack chunk (physmap v1)"] : [])],
  });

  if (declared && pool.length === 0) {
    const what = [opts.width ? `${opts.width}-bit` : '', opts.guest ? opts.guest.toUpperCase() : ''].filter(Boolean).join(' ');
    const mine = readings.filter(matches).map((r) => `${r.name}: ${r.dead}`);
    if (alive.length === 0) {
      // Nothing explains the stream; let the converter report its own first fault.
      const r = readings.find(matches)!;
      return { ...result(r, 'low', ['no reading of the stream is consistent: ' + mine.join('; ')]) };
    }
    const best = [...alive].sort((a, b) => b.score - a.score)[0]!;
    throw new MalformedStreamError(
      opts.base ?? 0,
      `declared ${what} contradicts the stream (${mine.join('; ')}); it reads as ${best.name} (${octetRule})`,
      'legacy header',
    );
  }
  if (pool.length === 0) {
    throw new AmbiguousStreamError(
      `not a legacy image of any width or guest type: ${readings.map((r) => `${r.name}: ${r.dead}`).join('; ')}`,
      [],
    );
  }
  pool.sort((a, b) => b.score - a.score);
  // A reading that explains the image to its end beats readings that ran out of bytes.
  const whole = pool.filter((r) => r.complete);
  if (whole.length === 1 && (complete || whole[0]!.decisive)) {
    const top = whole[0]!;
    const others = readings.filter((r) => r !== top).map((r) => (r.alive ? `${r.name} cannot explain the image to its end` : `not ${r.name}: ${r.dead}`));
    return result(top, 'certain', others);
  }
  const top = pool[0]!;
  if (pool.length === 1) {
    const others = readings.filter((r) => r !== top && !r.alive).map((r) => `not ${r.name}: ${r.dead}`);
    const confidence = top.decisive && !top.truncated ? 'certain' : top.decisive || top.score >= 4 ? 'high' : 'low';
    return result(top, confidence, others);
  }
  const second = pool[1]!;
  if (top.score - second.score >= 3 && top.decisive) {
    return result(top, 'high', pool.slice(1).map((r) => `${r.name} cannot be ruled out but explains less (${r.score} vs ${top.score})`));
  }
  throw new AmbiguousStreamError(
    `ambiguous legacy image: it reads as ${pool.map((r) => r.name).join(' or ')} (${octetRule}); pass the width and guest type explicitly`,
    pool.map((r) => `${r.width}-bit ${r.guest}`),
  );
}
