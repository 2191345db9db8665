import { Writer, ascii } from '../bytes';
import { UnsupportedStreamError } from '../errors';
import { XL_BYTEORDER_MARKER, XL_HDR_SIZE, XL_MAGIC } from '../v2/constants';
import {
  CHUNK,
  HVM_PARAM_CHUNKS,
  LEGACY_TYPE_SHIFT,
  MAX_BATCH,
  MAX_VCPU_ID,
  QEMU_SIG_V2,
  SHARED_INFO_SIZE,
  VCPU_CTXT_32,
  VCPU_CTXT_64,
  VCPU_EXTENDED_SIZE,
  legacyTypeHasData,
} from './constants';

/**
 * A legacy (pre-4.6) save image writer for 32- and 64-bit toolstacks and PV and HVM
 * guests: what an old host's `xc_domain_save` (and libxl around it) put on the wire.
 * Simulated old toolstacks save through it and tests build streams with it.
 *
 * It streams: pages come from an (async) iterable and leave as views of the
 * caller's bytes (contiguous pages of one buffer leave as one view), so a 1 GiB guest
 * costs no more memory than one batch header.
 */

export type LegacyWidth = 32 | 64;
export type LegacyGuest = 'pv' | 'hvm';

/** One guest page. `type` is the legacy 4-bit type (0 = normal, 1-4 pagetables, 9-c pinned, d broken, e xalloc, f xtab). */
export interface LegacyPage {
  pfn: number;
  type?: number;
  /** 4096 bytes; required when the type carries data (types below 0xd). */
  data?: Uint8Array;
}
/** Raw bytes spliced into the body between batches (tests, hostile input, verify mode: CHUNK.enableVerifyMode). */
export interface LegacyRawChunk {
  raw: Uint8Array;
}
export type LegacyBodyItem = LegacyPage | LegacyRawChunk;

export interface LegacyVcpu {
  id: number;
  /** PV: vcpu_guest_context of the guest's width (0xaf0 or 0x1430 bytes). HVM: unused. */
  basic?: Uint8Array;
  /** PV: 128 bytes of extended context (zeros if absent and the image has "extv"). */
  extended?: Uint8Array;
  /** PV: the xsave area; all vcpus must have the same size, announced in "xcnt". */
  xsave?: { mask: bigint; data: Uint8Array };
}

export interface PhysmapEntry {
  physOffset: bigint | number;
  startAddr: bigint | number;
  size: bigint | number;
  /** Without the NUL terminator. */
  name: string;
}

export interface LegacyImage {
  guest: LegacyGuest;
  toolstackWidth: LegacyWidth;
  /** PV only: 32-bit (PAE, 3 levels) or 64-bit (4 levels) guest. Default 64. */
  guestWidth?: LegacyWidth;
  /** Number of pfns in the guest's physmap. */
  p2mSize: number;
  /** An xl save-file header in front (the optional data is written as given). */
  xl?: { mandatoryFlags?: number; optionalFlags?: number; optionalData?: Uint8Array };
  /** PV: the vcpu0 context in the "vcpu" extended-info block (default: vcpu 0's basic context or zeros). */
  extInfoContext?: Uint8Array;
  /** PV: write the "extv" block and 128-byte extended contexts (default true, as every saver since 3.x). */
  extv?: boolean;
  /** PV: frames of the p2m frame list, ceil(p2mSize / (4096 / guest word)) of them (default: 1, 2, 3...). */
  p2mFrames?: ArrayLike<number>;
  /** PV: pfns that were not mapped at the end (the tail list). */
  unmappedPfns?: ArrayLike<number>;
  /** PV: the shared info page (default zeros). */
  sharedInfo?: Uint8Array;
  vcpus: LegacyVcpu[];
  /** Default: the highest id in `vcpus`. */
  maxVcpuId?: number;
  /** Pages in save order; a pfn may come again (later iterations). */
  pages: Iterable<LegacyBodyItem> | AsyncIterable<LegacyBodyItem>;
  /** Pages per batch, 1..1024 (default 1024). */
  batchSize?: number;
  tsc?: { mode: number; nsec: bigint | number; khz: number; incarnation: number };
  /** HVM: params carried by the one-param chunks, keyed by HVM param number; zeros are not written (as the saver did). */
  hvmParams?: Readonly<Record<number, bigint | number>>;
  /** HVM tail: ioreq, buffered ioreq and xenstore pfns. */
  magicPfns?: { ioreq: bigint | number; bufioreq: bigint | number; store: bigint | number };
  /** HVM tail: the HVM context blob. */
  hvmContext?: Uint8Array;
  /** The toolstack chunk: raw bytes, or libxl's physmap list (version 1, with the 64-bit padding quirk). */
  toolstack?: Uint8Array | { physmap: PhysmapEntry[] };
  /** Write the last-checkpoint chunk (default true: a plain save). */
  lastCheckpoint?: boolean;
  /** HVM: the qemu tail, "DeviceModelRecord0002" + length + data (libxl always wrote it). */
  qemu?: Uint8Array;
}

const LE = true;

export function vcpuContextSize(guestWidth: LegacyWidth): number {
  return guestWidth === 64 ? VCPU_CTXT_64 : VCPU_CTXT_32;
}

function big(v: bigint | number): bigint {
  return typeof v === 'bigint' ? v : BigInt(v);
}

/** The xl header and its optional data, as xl writes them (native = little-endian). */
export function encodeLegacyXlHeader(xl: NonNullable<LegacyImage['xl']>): Uint8Array[] {
  const opt = xl.optionalData ?? new Uint8Array(0);
  const w = new Writer(XL_HDR_SIZE, LE);
  w.raw(ascii.encode(XL_MAGIC))
    .u32(XL_BYTEORDER_MARKER)
    .u32(xl.mandatoryFlags ?? 0)
    .u32(xl.optionalFlags ?? 0)
    .u32(opt.byteLength);
  return opt.byteLength ? [w.bytes, opt] : [w.bytes];
}

/** libxl's version-1 toolstack data: the physmap entries, with the name padding a 64-bit build leaked. */
export function encodePhysmap(entries: readonly PhysmapEntry[], toolstackWidth: LegacyWidth): Uint8Array {
  const pad = toolstackWidth === 64 ? 4 : 0;
  let size = 8;
  for (const e of entries) size += 28 + e.name.length + 1 + pad;
  const w = new Writer(size, LE);
  w.u32(1).u32(entries.length);
  for (const e of entries) {
    w.u64(big(e.physOffset)).u64(big(e.startAddr)).u64(big(e.size)).u32(e.name.length + 1);
    w.raw(ascii.encode(e.name)).zero(1 + pad);
  }
  return w.bytes;
}

function ulongs(values: ArrayLike<number>, width: LegacyWidth, extra = 0): Writer {
  const n = width / 8;
  const w = new Writer(extra + values.length * n, LE);
  w.pos = extra;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (width === 32) w.u32(v);
    else w.u64hl(Math.floor(v / 0x1_0000_0000), v >>> 0);
  }
  return w;
}

function isRaw(item: LegacyBodyItem): item is LegacyRawChunk {
  return (item as LegacyRawChunk).raw !== undefined;
}

/** Writes a legacy image. Yields views; never holds more than one batch of page references. */
export async function* writeLegacy(img: LegacyImage): AsyncGenerator<Uint8Array, void, undefined> {
  const tw = img.toolstackWidth;
  const wb = tw / 8;
  const pv = img.guest === 'pv';
  const gw: LegacyWidth = img.guestWidth ?? 64;
  const ctxSize = vcpuContextSize(gw);
  const batchMax = img.batchSize ?? MAX_BATCH;
  if (!(batchMax >= 1 && batchMax <= MAX_BATCH)) throw new RangeError(`batchSize must be 1..${MAX_BATCH}`);
  const vcpus = [...img.vcpus].sort((a, b) => a.id - b.id);
  const maxId = img.maxVcpuId ?? (vcpus.length ? vcpus[vcpus.length - 1]!.id : 0);
  if (maxId > MAX_VCPU_ID) throw new UnsupportedStreamError(`vcpu id ${maxId} is above the legacy limit ${MAX_VCPU_ID}`);
  const extv = img.extv ?? true;
  const xsaveSizes = new Set(vcpus.filter((v) => v.xsave).map((v) => v.xsave!.data.byteLength));
  if (xsaveSizes.size > 1) throw new UnsupportedStreamError('legacy images need one xsave size for all vcpus');
  const xsaveSize = xsaveSizes.size ? [...xsaveSizes][0]! : 0;
  if (xsaveSize && vcpus.some((v) => !v.xsave)) throw new UnsupportedStreamError('legacy images need an xsave area for every vcpu once one has it');

  if (img.xl) yield* encodeLegacyXlHeader(img.xl);

  // Header: p2m_size.
  yield ulongs([img.p2mSize], tw).bytes;

  if (pv) {
    // Extended info: ~0 marker, total size, "vcpu" (context of the guest's width), "extv", optionally "xcnt".
    const ctx = img.extInfoContext ?? vcpus[0]?.basic ?? new Uint8Array(ctxSize);
    if (ctx.byteLength !== ctxSize) throw new RangeError(`extended-info vcpu context must be ${ctxSize} bytes`);
    const total = 8 + ctxSize + (extv ? 8 : 0) + (xsaveSize ? 12 : 0);
    const w = new Writer(wb + 4 + 8, LE);
    if (tw === 32) w.u32(0xffffffff);
    else w.u64hl(0xffffffff, 0xffffffff);
    w.u32(total).raw(ascii.encode('vcpu')).u32(ctxSize);
    yield w.bytes;
    yield ctx;
    const t = new Writer((extv ? 8 : 0) + (xsaveSize ? 12 : 0), LE);
    if (extv) t.raw(ascii.encode('extv')).u32(0);
    if (xsaveSize) t.raw(ascii.encode('xcnt')).u32(4).u32(xsaveSize + 16);
    if (t.bytes.byteLength) yield t.bytes;
    // The p2m frame list.
    const fpp = 4096 / (gw / 8);
    const nFrames = Math.floor((img.p2mSize - 1) / fpp) + 1;
    let frames = img.p2mFrames;
    if (!frames) {
      const f = new Array<number>(nFrames);
      for (let i = 0; i < nFrames; i++) f[i] = 0x1000 + i;
      frames = f;
    }
    if (frames.length !== nFrames) throw new RangeError(`p2m frame list needs ${nFrames} entries, got ${frames.length}`);
    yield ulongs(frames, tw).bytes;
  }

  if (img.tsc) {
    const t = img.tsc;
    yield new Writer(24, LE).i32(CHUNK.tscInfo).u32(t.mode).u64(big(t.nsec)).u32(t.khz).u32(t.incarnation).bytes;
  }

  // Page batches.
  let batch: LegacyPage[] = [];
  const flush = function* (): Generator<Uint8Array> {
    if (!batch.length) return;
    const n = batch.length;
    const w = new Writer(4 + n * wb, LE);
    w.i32(n);
    for (const p of batch) {
      const entry = ((p.type ?? 0) << LEGACY_TYPE_SHIFT) + p.pfn;
      if (tw === 32) w.u32(entry);
      else w.u64hl(0, entry);
    }
    yield w.bytes;
    // Page data, joining views that are contiguous in one buffer.
    let run: Uint8Array | undefined;
    let runLen = 0;
    for (const p of batch) {
      if (!legacyTypeHasData(p.type ?? 0)) continue;
      const d = p.data;
      if (!d || d.byteLength !== 4096) throw new RangeError(`page ${p.pfn} needs 4096 bytes of data`);
      if (run && d.buffer === run.buffer && d.byteOffset === run.byteOffset + runLen) {
        runLen += 4096;
        continue;
      }
      if (run) yield new Uint8Array(run.buffer, run.byteOffset, runLen);
      run = d;
      runLen = 4096;
    }
    if (run) yield new Uint8Array(run.buffer, run.byteOffset, runLen);
    batch = [];
  };
  const pages = img.pages;
  if (Symbol.iterator in pages) {
    for (const item of pages as Iterable<LegacyBodyItem>) {
      if (isRaw(item)) {
        yield* flush();
        yield item.raw;
        continue;
      }
      batch.push(item);
      if (batch.length === batchMax) yield* flush();
    }
  } else {
    for await (const item of pages) {
      if (isRaw(item)) {
        yield* flush();
        yield item.raw;
        continue;
      }
      batch.push(item);
      if (batch.length === batchMax) yield* flush();
    }
  }
  yield* flush();

  // vcpu info: max id and the online bitmap (words up to max_id / 64).
  {
    const words = Math.floor(maxId / 64) + 1;
    const w = new Writer(8 + words * 8, LE);
    w.i32(CHUNK.vcpuInfo).i32(maxId);
    const map = new BigUint64Array(words);
    for (const v of vcpus) map[v.id >> 6]! |= 1n << BigInt(v.id & 63);
    for (const m of map) w.u64(m);
    yield w.bytes;
  }

  if (!pv && img.hvmParams) {
    for (const c of HVM_PARAM_CHUNKS) {
      const v = img.hvmParams[c.param];
      if (v === undefined || big(v) === 0n) continue;
      yield new Writer(16, LE).i32(c.chunk).u32(0).u64(big(v)).bytes;
    }
  }

  if (img.toolstack) {
    const data = img.toolstack instanceof Uint8Array ? img.toolstack : encodePhysmap(img.toolstack.physmap, tw);
    yield new Writer(8, LE).i32(CHUNK.toolstack).u32(data.byteLength).bytes;
    if (data.byteLength) yield data;
  }

  if (img.lastCheckpoint ?? true) yield new Writer(4, LE).i32(CHUNK.lastCheckpoint).bytes;
  yield new Writer(4, LE).i32(CHUNK.end).bytes;

  if (!pv) {
    const m = img.magicPfns ?? { ioreq: 0, bufioreq: 0, store: 0 };
    const ctx = img.hvmContext ?? new Uint8Array(0);
    yield new Writer(28, LE).u64(big(m.ioreq)).u64(big(m.bufioreq)).u64(big(m.store)).u32(ctx.byteLength).bytes;
    if (ctx.byteLength) yield ctx;
    if (img.qemu) {
      const h = new Writer(25, LE);
      h.raw(ascii.encode(QEMU_SIG_V2)).u32(img.qemu.byteLength);
      yield h.bytes;
      if (img.qemu.byteLength) yield img.qemu;
    }
    return;
  }

  // PV tail: unmapped pfns, per-vcpu contexts, shared info.
  const unmapped = img.unmappedPfns ?? [];
  yield tailUnmapped(unmapped, tw);
  for (const v of vcpus) {
    const basic = v.basic ?? new Uint8Array(ctxSize);
    if (basic.byteLength !== ctxSize) throw new RangeError(`vcpu ${v.id} basic context must be ${ctxSize} bytes`);
    yield basic;
    if (extv) yield v.extended ?? new Uint8Array(VCPU_EXTENDED_SIZE);
    if (xsaveSize) {
      yield new Writer(16, LE).u64(v.xsave!.mask).u64(xsaveSize).bytes;
      yield v.xsave!.data;
    }
  }
  const shinfo = img.sharedInfo ?? new Uint8Array(SHARED_INFO_SIZE);
  if (shinfo.byteLength !== SHARED_INFO_SIZE) throw new RangeError('shared info must be 4096 bytes');
  yield shinfo;
}

function tailUnmapped(pfns: ArrayLike<number>, tw: LegacyWidth): Uint8Array {
  const w = ulongs(pfns, tw, 4);
  w.dv.setUint32(0, pfns.length, true);
  return w.bytes;
}
