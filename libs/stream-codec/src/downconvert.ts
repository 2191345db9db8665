import { Writer, ascii, viewOf } from './bytes';
import { MalformedStreamError, UnsupportedStreamError } from './errors';
import { StreamReader } from './reader';
import type { ByteSource } from './source';
import { DOMAIN_TYPE, LIBXL_REC, REC, REC_NAME, XL_MANDATORY_FLAG_STREAMV2 } from './v2/constants';
import { decodeV2 } from './v2/decoder';
import type { LibxcRecordItem, LibxlRecordItem } from './v2/types';
import { hvmContextCpus } from './v2/verifier';
import {
  CHUNK,
  HVM_PARAM,
  HVM_PARAM_CHUNKS,
  LEGACY_LIMITS,
  LEGACY_PFN_MASK,
  LEGACY_TYPE_SHIFT,
  MAX_BATCH,
  MAX_VCPU_ID,
  PARAM_CHUNK_BY_PARAM,
  QEMU_SIG_V2,
  SHARED_INFO_SIZE,
  VCPU_EXTENDED_SIZE,
} from './legacy/constants';
import { encodeLegacyXlHeader, encodePhysmap, vcpuContextSize, type LegacyWidth, type PhysmapEntry } from './legacy/writer';

/**
 * v2 -> legacy, for sending a VM back to a host whose toolstack predates v2. The
 * output is what that host's xc_domain_restore (and libxl around it) reads: the
 * legacy layout at the given toolstack width, an xl header (STREAM_V2 cleared) and
 * libxl's physmap toolstack chunk and qemu record when the input had libxl framing.
 *
 * Streaming: page data leaves as views of the input. The legacy layout puts vcpu
 * contexts, HVM params and context after the body, which is also where v2 has them,
 * so only those small records are held (capped) until the end.
 *
 * PV vcpu state, as a Xen <= 4.5 saver wrote it after the pages:
 *  - the extended context is the 128-byte window of the domctl union that the
 *    saver copied out whole: the struct Xen filled in (its own `size` field first)
 *    and zeros after it. Xen <= 4.5 filled in 56 bytes (the vMCE block ends with
 *    bank 1's MCi_CTL2); Xen 4.10 added MCG_EXT_CTL (64 bytes). A newer context
 *    goes out as the 56-byte one when the guest has no LMCE state (which an old
 *    host could not hold anyway); both old and new hypervisors accept that size.
 *  - the xsave area is announced in the header, before the pages ("xcnt": one
 *    size for every vcpu), while a v2 stream carries it after them. The size is
 *    `xsaveSize` when given (pvXsaveSize() finds it in a first pass over a file),
 *    else the one the CPUID policy record gives for every xsave feature the guest
 *    was offered (what a guest that enabled them all has, e.g. Linux). A vcpu whose
 *    area differs from the announced size is refused, naming the size to pass.
 *
 * The extended-info "vcpu" block in the header is written as zeros: a legacy saver put vcpu 0's
 * context there, which a v2 stream has only after the pages. Restores read nothing from it but
 * the PAE extended-CR3 assist, so a 32-bit PAE guest is restored as one without it (legacy Xen
 * then keeps its L3 page tables below 4 GiB); 64-bit guests are unaffected.
 *
 * What legacy cannot express is refused with UnsupportedStreamError: big-endian
 * streams, Remus/COLO checkpoints, PV MSR state, LMCE state, pfns of 2^28 and
 * above, HVM params it has no chunk for (set, non-zero), xenstore data other than
 * physmap entries.
 *
 * What a legacy host sets up for itself is left out, and each thing left out is
 * reported through `onDropped` (once per kind): the CPUID and MSR policies (a host
 * that predates them computes the guest's CPU policy from its own), and the HVM
 * params X87_FIP_WIDTH, MCA_CAP, STORE_EVTCHN and CONSOLE_EVTCHN.
 */
export interface LegacyFromV2Options {
  width: LegacyWidth;
  /** HVM only: the p2m_size to announce (v2 HVM streams carry none). Default 0x100000 (4 GiB of address space). */
  p2mSize?: number;
  /** Told, once per kind, of each record or HVM param left out because a legacy host sets it up itself. */
  onDropped?: (what: string) => void;
  /**
   * PV only: the size of every vcpu's xsave area (an X86_PV_VCPU_XSAVE record's body after
   * its vcpu header; 0: none), announced in the legacy header before the pages. Default: from
   * the CPUID policy record (see above). pvXsaveSize() reads it from the stream itself.
   */
  xsaveSize?: number;
}

/** Bytes of the extended vcpu context a Xen <= 4.5 hypervisor filled in (through the vMCE block's bank 1 MCi_CTL2). */
export const EXT_VCPU_CONTEXT_LEGACY = 56;
/** Offset of the vMCE block (MCG_CAP first) in the extended vcpu context. */
const EXT_VCPU_VMCE = 32;
/** MCG_CAP bit: local machine-check exceptions offered (Xen 4.10 and later). */
const MCG_LMCE_P = 1n << 27n;
/** xcr0 and xcr0_accum before each xsave area. */
const XSAVE_HDR = 16;

/**
 * A PV stream's xsave area size (the common body size of its non-empty X86_PV_VCPU_XSAVE
 * records; 0 when it has none or is not PV), for `xsaveSize`. Reads a PV stream to its end:
 * meant for a first pass over a file. Vcpus with different sizes cannot be expressed in a legacy image.
 */
export async function pvXsaveSize(source: ByteSource | StreamReader): Promise<number> {
  let size = 0;
  for await (const item of decodeV2(source, { format: 'auto' })) {
    if (item.kind === 'domain-header' && item.header.type !== DOMAIN_TYPE.x86_pv) return 0;
    if (item.kind !== 'libxc-record' || item.type !== REC.X86_PV_VCPU_XSAVE || item.body.kind !== 'x86_pv_vcpu') continue;
    const n = item.body.context.byteLength;
    if (!n) continue;
    if (size && n !== size)
      throw new UnsupportedStreamError(`cannot express in a legacy image (offset ${item.offset}): vcpus with xsave areas of ${size} and ${n} bytes (legacy has one size for all)`);
    size = n;
  }
  return size;
}

/**
 * For a vcpu the v2 stream has no extended context for ("extv" was announced before the
 * vcpus were known): the smallest context every hypervisor's set call takes (up to the vMCE
 * block, all zero: no SYSCALL32/SYSENTER callbacks, no vMCE state). All zeros would not do:
 * its size field 0 is refused.
 */
function noExtendedContext(vcpu: number): Uint8Array {
  const out = new Uint8Array(VCPU_EXTENDED_SIZE);
  viewOf(out).setUint32(0, vcpu, LE);
  viewOf(out).setUint32(4, EXT_VCPU_VMCE, LE);
  return out;
}

/**
 * An extended vcpu context as a Xen <= 4.5 saver wrote it (see above): 128 bytes, the
 * 56-byte struct first. A 128-byte context (a legacy image's, converted) goes as it is.
 */
function legacyExtendedContext(ctx: Uint8Array, vcpu: number, at: number): Uint8Array {
  if (ctx.byteLength === VCPU_EXTENDED_SIZE) return ctx;
  if (ctx.byteLength > VCPU_EXTENDED_SIZE || ctx.byteLength < EXT_VCPU_VMCE)
    throw new MalformedStreamError(at, `vcpu ${vcpu} extended context of ${ctx.byteLength} bytes (${EXT_VCPU_VMCE}..${VCPU_EXTENDED_SIZE})`, 'X86_PV_VCPU_EXTENDED');
  const dv = viewOf(ctx);
  const caps = ctx.byteLength >= EXT_VCPU_VMCE + 8 ? dv.getBigUint64(EXT_VCPU_VMCE, LE) : 0n;
  const newer = ctx.subarray(EXT_VCPU_CONTEXT_LEGACY);
  if (newer.some((b) => b !== 0) || caps & MCG_LMCE_P)
    throw new UnsupportedStreamError(
      `cannot express in a legacy image (offset ${at}): vcpu ${vcpu} has LMCE machine-check state (MCG_CAP 0x${caps.toString(16)}, MCG_EXT_CTL 0x${newer.byteLength >= 8 ? viewOf(newer).getBigUint64(0, LE).toString(16) : '0'}), which Xen <= 4.5 cannot hold; keep it on v2 and restore on Xen >= 4.10`,
    );
  const n = Math.min(ctx.byteLength, EXT_VCPU_CONTEXT_LEGACY);
  const out = new Uint8Array(VCPU_EXTENDED_SIZE);
  out.set(ctx.subarray(0, n));
  viewOf(out).setUint32(4, n, LE);
  return out;
}

/** HVM params that legacy hosts set up themselves (they postdate the legacy format); dropped. */
const DROPPED_PARAMS = new Map<number, string>([
  [36, 'X87_FIP_WIDTH'],
  [38, 'MCA_CAP'],
  [2, 'STORE_EVTCHN'],
  [18, 'CONSOLE_EVTCHN'],
]);
const VM86_TSS_SIZED = 37;

const LE = true;

interface Vcpu {
  basic?: Uint8Array;
  extended?: Uint8Array;
  xsave?: Uint8Array;
}

export async function* legacyFromV2(source: ByteSource | StreamReader, opts: LegacyFromV2Options): AsyncGenerator<Uint8Array, void, undefined> {
  const tw = opts.width;
  if (tw !== 32 && tw !== 64) throw new RangeError('legacyFromV2: width must be 32 or 64');
  const wb = tw / 8;
  const ulong = (w: Writer, v: number) => (tw === 32 ? w.u32(v) : w.u64hl(Math.floor(v / 0x1_0000_0000), v >>> 0));
  const unsupported = (offset: number, what: string): never => {
    throw new UnsupportedStreamError(`cannot express in a legacy image (offset ${offset}): ${what}`);
  };
  const droppedSeen = new Set<string>();
  const dropped = (what: string): void => {
    if (droppedSeen.has(what)) return;
    droppedSeen.add(what);
    opts.onDropped?.(what);
  };

  let libxl = false;
  let pv: boolean | undefined;
  let guestWidth: LegacyWidth = 64;
  let p2mSize = 0;
  let headerDone = false;
  let libxcEnded = false;
  let tailDone = false;
  const vcpus = new Map<number, Vcpu>();
  let sharedInfo: Uint8Array | undefined;
  let hvmContext: Uint8Array | undefined;
  const magic = { ioreq: 0n, bufioreq: 0n, store: 0n };
  const paramChunks = new Map<number, bigint>();
  let toolstack: Uint8Array | undefined;
  let physmap: PhysmapEntry[] | undefined;
  let buffered = 0;
  /** From the CPUID policy: the xcr0 features offered and the xsave area they need (leaf 0xD, subleaf 0). */
  let policyXsave: { mask: bigint; size: number } | undefined;
  /** The xsave area size announced in the header ("xcnt"), 0 for none; set when the header is written. */
  let xsaveSize = 0;
  const xsaveHint = (n: number) =>
    `pass xsaveSize ${n} (ferry stream convert --xsave-size ${n}; it finds it itself when the input is a file)`;
  const hold = (n: number, at: number) => {
    buffered += n;
    if (buffered > LEGACY_LIMITS.hvmContextMax + 4096 * 8 * 1024) unsupported(at, 'more than 48 MiB of vcpu/HVM state to hold until the end');
  };

  function header(): Uint8Array[] {
    headerDone = true;
    const out: Uint8Array[] = [];
    const w = new Writer(wb, LE);
    ulong(w, p2mSize);
    out.push(w.bytes);
    return out;
  }

  function* pvHeader(frames: bigint[], at: number): Generator<Uint8Array> {
    yield* header();
    const ctx = vcpuContextSize(guestWidth);
    xsaveSize = opts.xsaveSize ?? (policyXsave ? XSAVE_HDR + policyXsave.size : 0);
    if (!Number.isInteger(xsaveSize) || xsaveSize < 0 || xsaveSize > LEGACY_LIMITS.xsaveMax) throw new RangeError('xsaveSize must be 0..1 MiB');
    if (xsaveSize && xsaveSize < XSAVE_HDR) throw new RangeError(`xsaveSize must be 0 or at least ${XSAVE_HDR}`);
    const xcnt = xsaveSize ? 12 : 0;
    const w = new Writer(wb + 4 + 8 + ctx + 8 + xcnt, LE);
    if (tw === 32) w.u32(0xffffffff);
    else w.u64hl(0xffffffff, 0xffffffff);
    w.u32(8 + ctx + 8 + xcnt).raw(ascii.encode('vcpu')).u32(ctx).zero(ctx).raw(ascii.encode('extv')).u32(0);
    // "xcnt" carries the per-vcpu bytes after the extended context: the u64 mask and u64 size, then the area.
    if (xsaveSize) w.raw(ascii.encode('xcnt')).u32(4).u32(xsaveSize + XSAVE_HDR);
    yield w.bytes;
    const f = new Writer(frames.length * wb, LE);
    for (const fr of frames) {
      if (tw === 32 && fr > 0xffffffffn) unsupported(at, `p2m frame ${fr.toString(16)} does not fit a 32-bit toolstack`);
      if (tw === 32) f.u32(Number(fr));
      else f.u64(fr);
    }
    yield f.bytes;
  }

  function* batches(item: LibxcRecordItem): Generator<Uint8Array> {
    const body = item.body;
    if (body.kind !== 'page_data') return;
    const dv = viewOf(body.pfns);
    // Page contents as a cursor over the segments, handed out as views.
    const segs = body.pages;
    let si = 0;
    let so = 0;
    const take = (n: number): Uint8Array[] => {
      const out: Uint8Array[] = [];
      while (n > 0) {
        const s = segs[si]!;
        const k = Math.min(n, s.byteLength - so);
        out.push(s.subarray(so, so + k));
        so += k;
        n -= k;
        if (so === s.byteLength) {
          si++;
          so = 0;
        }
      }
      return out;
    };
    for (let start = 0; start < body.count; start += MAX_BATCH) {
      const n = Math.min(MAX_BATCH, body.count - start);
      const w = new Writer(4 + n * wb, LE);
      w.i32(n);
      let data = 0;
      for (let i = start; i < start + n; i++) {
        const lo = dv.getUint32(i * 8, LE);
        const hi = dv.getUint32(i * 8 + 4, LE);
        const type = hi >>> 28;
        const pfnHi = hi & 0x000fffff;
        if (pfnHi || lo > LEGACY_PFN_MASK) unsupported(item.offset, `pfn 0x${(pfnHi * 0x1_0000_0000 + lo).toString(16)} is 2^28 or above (legacy pfn entries have 28 bits)`);
        if (!pv && lo >= p2mSize) unsupported(item.offset, `HVM pfn 0x${lo.toString(16)} is not below the announced p2m_size 0x${p2mSize.toString(16)} (pass a larger p2mSize)`);
        if (pv && lo >= p2mSize) throw new MalformedStreamError(item.offset, `pfn 0x${lo.toString(16)} beyond the p2m (size 0x${p2mSize.toString(16)})`, 'PAGE_DATA');
        const entry = ((type << LEGACY_TYPE_SHIFT) >>> 0) + lo;
        if (tw === 32) w.u32(entry);
        else w.u64hl(0, entry);
        if (type <= 4 || (type >= 9 && type <= 0xc)) data++;
      }
      yield w.bytes;
      if (data) yield* take(data * 4096);
    }
  }

  function* tail(): Generator<Uint8Array> {
    tailDone = true;
    // vcpu info: PV from the vcpu records, HVM from the CPU entries of the HVM context.
    let ids: number[];
    if (pv) ids = [...vcpus.keys()].sort((a, b) => a - b);
    else {
      const n = hvmContext ? hvmContextCpus(hvmContext, true) : 1;
      ids = Array.from({ length: Math.max(n, 1) }, (_, i) => i);
    }
    const maxId = ids.length ? ids[ids.length - 1]! : 0;
    if (maxId > MAX_VCPU_ID) unsupported(0, `vcpu id ${maxId} above ${MAX_VCPU_ID}`);
    const words = Math.floor(maxId / 64) + 1;
    const vi = new Writer(8 + words * 8, LE).i32(CHUNK.vcpuInfo).i32(maxId);
    const map = new BigUint64Array(words);
    for (const id of ids) map[id >> 6]! |= 1n << BigInt(id & 63);
    for (const m of map) vi.u64(m);
    yield vi.bytes;
    if (!pv) {
      for (const c of HVM_PARAM_CHUNKS) {
        const v = paramChunks.get(c.param);
        if (v) yield new Writer(16, LE).i32(c.chunk).u32(0).u64(v).bytes;
      }
    }
    const ts = physmap ? encodePhysmap(physmap, tw) : toolstack;
    if (ts) {
      yield new Writer(8, LE).i32(CHUNK.toolstack).u32(ts.byteLength).bytes;
      yield ts;
    }
    yield new Writer(8, LE).i32(CHUNK.lastCheckpoint).i32(CHUNK.end).bytes;
    if (pv) {
      yield new Writer(4, LE).u32(0).bytes; // no unmapped pfns
      const ctx = vcpuContextSize(guestWidth);
      for (const id of ids) {
        const v = vcpus.get(id)!;
        if (!v.basic) throw new MalformedStreamError(0, `vcpu ${id} has no X86_PV_VCPU_BASIC record`, 'X86_PV_VCPU_BASIC');
        if (v.basic.byteLength !== ctx) throw new MalformedStreamError(0, `vcpu ${id} basic context is ${v.basic.byteLength} bytes, not ${ctx}`, 'X86_PV_VCPU_BASIC');
        yield v.basic;
        yield v.extended ?? noExtendedContext(id);
        if (!xsaveSize) continue;
        const xs = v.xsave ?? unsupported(0, `vcpu ${id} has no xsave area, but the legacy header announced ${xsaveSize} bytes for every vcpu; ${xsaveHint(0)}`);
        // The mask is the saving host's xfeature mask, which restores ignore; the guest's offer stands in for it.
        const mask = policyXsave?.mask ?? viewOf(xs).getBigUint64(8, LE);
        yield new Writer(16, LE).u64(mask).u64(BigInt(xsaveSize)).bytes;
        yield xs;
      }
      if (!sharedInfo) throw new MalformedStreamError(0, 'no SHARED_INFO record', 'SHARED_INFO');
      yield sharedInfo;
    } else {
      if (!hvmContext) throw new MalformedStreamError(0, 'no HVM_CONTEXT record', 'HVM_CONTEXT');
      yield new Writer(28, LE).u64(magic.ioreq).u64(magic.bufioreq).u64(magic.store).u32(hvmContext.byteLength).bytes;
      yield hvmContext;
    }
  }

  for await (const item of decodeV2(source, { format: 'auto' })) {
    switch (item.kind) {
      case 'xl-header': {
        const h = item.header;
        if (h.byteOrder !== 'little') unsupported(item.offset, 'a big-endian xl header (legacy images are x86, little-endian)');
        yield* encodeLegacyXlHeader({ mandatoryFlags: h.mandatoryFlags & ~XL_MANDATORY_FLAG_STREAMV2, optionalFlags: h.optionalFlags, optionalData: h.optionalData });
        break;
      }
      case 'libxl-header':
        if (item.header.byteOrder !== 'little') unsupported(item.offset, 'a big-endian libxl stream');
        libxl = true;
        break;
      case 'image-header':
        if (item.header.byteOrder !== 'little') unsupported(item.offset, 'a big-endian libxc stream');
        break;
      case 'domain-header':
        if (item.header.type === DOMAIN_TYPE.x86_pv) pv = true;
        else if (item.header.type === DOMAIN_TYPE.x86_hvm) {
          pv = false;
          p2mSize = opts.p2mSize ?? 0x100000;
          if (p2mSize < 1 || p2mSize > LEGACY_PFN_MASK + 1) throw new RangeError('p2mSize must be 1..2^28');
        } else unsupported(item.offset, `domain type ${item.header.type} (legacy images are x86 PV or HVM)`);
        if (item.header.pageShift !== 12) unsupported(item.offset, `page shift ${item.header.pageShift}`);
        break;
      case 'libxc-record': {
        const b = item.body;
        const at = item.offset;
        switch (item.type) {
          case REC.X86_CPUID_POLICY:
            if (b.kind === 'x86_cpuid_policy') {
              const l = b.leaves.find((e) => e.leaf === 0xd && e.subleaf === 0);
              if (l && (l.a || l.d)) policyXsave = { mask: (BigInt(l.d >>> 0) << 32n) | BigInt(l.a >>> 0), size: l.c >>> 0 };
            }
            dropped(`${REC_NAME[item.type]} (a legacy host computes the guest's CPU policy from its own)`);
            break;
          case REC.X86_PV_INFO:
            if (b.kind === 'x86_pv_info') guestWidth = b.guestWidth === 4 || b.guestWidth === 32 ? 32 : 64;
            break;
          case REC.X86_PV_P2M_FRAMES:
            if (b.kind !== 'x86_pv_p2m_frames') break;
            if (headerDone) unsupported(at, 'a second X86_PV_P2M_FRAMES record (the p2m grew during migration)');
            if (b.startPfn !== 0) unsupported(at, `p2m frames starting at pfn ${b.startPfn}`);
            p2mSize = b.endPfn + 1;
            if (p2mSize > LEGACY_PFN_MASK + 1) unsupported(at, `p2m of 0x${p2mSize.toString(16)} pfns (legacy pfns have 28 bits)`);
            yield* pvHeader(b.frames, at);
            break;
          case REC.PAGE_DATA:
            if (!headerDone) {
              if (pv) throw new MalformedStreamError(at, 'PAGE_DATA before X86_PV_P2M_FRAMES', 'PAGE_DATA');
              yield* header();
            }
            yield* batches(item);
            break;
          case REC.X86_TSC_INFO:
            if (b.kind !== 'x86_tsc_info') break;
            if (!headerDone && !pv) yield* header();
            if (!headerDone) throw new MalformedStreamError(at, 'X86_TSC_INFO before X86_PV_P2M_FRAMES', 'X86_TSC_INFO');
            yield new Writer(24, LE).i32(CHUNK.tscInfo).u32(b.mode).u64(b.nsec).u32(b.khz).u32(b.incarnation).bytes;
            break;
          case REC.VERIFY:
            if (!headerDone && !pv) yield* header();
            yield new Writer(4, LE).i32(CHUNK.enableVerifyMode).bytes;
            break;
          case REC.HVM_PARAMS:
            if (b.kind !== 'hvm_params') break;
            for (const { index, value } of b.params) {
              const i = Number(index);
              if (i === HVM_PARAM.IOREQ_PFN) magic.ioreq = value;
              else if (i === HVM_PARAM.BUFIOREQ_PFN) magic.bufioreq = value;
              else if (i === HVM_PARAM.STORE_PFN) magic.store = value;
              else if (PARAM_CHUNK_BY_PARAM.has(i)) paramChunks.set(i, value);
              else if (i === VM86_TSS_SIZED) paramChunks.set(HVM_PARAM.VM86_TSS, value & 0xffffffffn);
              else if (value === 0n) continue;
              else {
                const name = DROPPED_PARAMS.get(i);
                if (name) dropped(`HVM param ${name} (a legacy host sets it itself)`);
                else unsupported(at, `HVM param ${i} = 0x${value.toString(16)} has no legacy chunk`);
              }
            }
            break;
          case REC.HVM_CONTEXT:
            if (b.kind !== 'blob') break;
            if (b.data.byteLength > LEGACY_LIMITS.hvmContextMax) unsupported(at, 'an HVM context over 16 MiB');
            hold(b.data.byteLength, at);
            hvmContext = new Uint8Array(b.data);
            break;
          case REC.SHARED_INFO:
            if (b.kind !== 'blob') break;
            if (b.data.byteLength !== SHARED_INFO_SIZE) throw new MalformedStreamError(at, 'SHARED_INFO is not 4096 bytes', 'SHARED_INFO');
            sharedInfo = new Uint8Array(b.data);
            break;
          case REC.X86_PV_VCPU_BASIC:
          case REC.X86_PV_VCPU_EXTENDED:
          case REC.X86_PV_VCPU_XSAVE:
          case REC.X86_PV_VCPU_MSRS: {
            if (b.kind !== 'x86_pv_vcpu') break;
            const v = vcpus.get(b.vcpuId) ?? {};
            vcpus.set(b.vcpuId, v);
            if (item.type === REC.X86_PV_VCPU_BASIC) {
              hold(b.context.byteLength, at);
              v.basic = new Uint8Array(b.context);
            } else if (item.type === REC.X86_PV_VCPU_EXTENDED) {
              if (b.context.byteLength) v.extended = legacyExtendedContext(new Uint8Array(b.context), b.vcpuId, at);
            } else if (item.type === REC.X86_PV_VCPU_XSAVE) {
              const n = b.context.byteLength;
              if (!n) break;
              if (n !== xsaveSize)
                unsupported(
                  at,
                  xsaveSize
                    ? `vcpu ${b.vcpuId} has an xsave area of ${n} bytes, but the legacy header (written before the pages) announced ${xsaveSize}; ${xsaveHint(n)}`
                    : `vcpu ${b.vcpuId} has an xsave area of ${n} bytes, but the legacy header (written before the pages) announced none; ${xsaveHint(n)}`,
                );
              hold(n, at);
              v.xsave = new Uint8Array(b.context);
            } else if (b.context.byteLength) {
              unsupported(at, `vcpu ${b.vcpuId} has PV MSR state, which Xen <= 4.5 did not migrate; keep it on v2 and restore on Xen >= 4.6`);
            }
            break;
          }
          case REC.TOOLSTACK:
            if (b.kind === 'blob') toolstack = new Uint8Array(b.data);
            break;
          case REC.STATIC_DATA_END:
            break;
          case REC.X86_MSR_POLICY:
            dropped(`${REC_NAME[item.type]} (a legacy host computes the guest's CPU policy from its own)`);
            break;
          case REC.CHECKPOINT:
          case REC.CHECKPOINT_DIRTY_PFN_LIST:
            unsupported(at, 'a checkpointed (Remus/COLO) stream');
            break;
          case REC.END:
            if (!headerDone) yield* header();
            libxcEnded = true;
            if (!libxl) yield* tail();
            break;
          default:
            if ((item.type & 0x8000_0000) === 0) unsupported(at, `record type 0x${item.type.toString(16)}`);
        }
        break;
      }
      case 'libxl-record': {
        const li = item as LibxlRecordItem;
        const b = li.body;
        switch (li.type) {
          case LIBXL_REC.LIBXC_CONTEXT:
            break;
          case LIBXL_REC.EMULATOR_XENSTORE_DATA: {
            if (b.kind !== 'emulator_xenstore_data') break;
            if (tailDone) unsupported(li.offset, 'emulator xenstore data after the emulator context');
            physmap = physmapFrom(b.pairs, li.offset);
            break;
          }
          case LIBXL_REC.EMULATOR_CONTEXT: {
            if (b.kind !== 'emulator_context') break;
            if (!libxcEnded) throw new MalformedStreamError(li.offset, 'EMULATOR_CONTEXT before the libxc stream ended', 'EMULATOR_CONTEXT');
            if (pv) unsupported(li.offset, 'an emulator context for a PV guest');
            if (tailDone) unsupported(li.offset, 'a second emulator context');
            yield* tail();
            const h = new Writer(25, LE);
            h.raw(ascii.encode(QEMU_SIG_V2)).u32(b.data.byteLength);
            yield h.bytes;
            yield b.data;
            break;
          }
          case LIBXL_REC.END:
            if (!tailDone) yield* tail();
            break;
          default:
            unsupported(li.offset, `libxl record ${li.type} (checkpoints)`);
        }
        break;
      }
    }
  }
  if (!tailDone) throw new MalformedStreamError(0, 'the stream ended without END', 'END');
}

/** EMULATOR_XENSTORE_DATA -> libxl's legacy physmap list (the only keys the legacy format had). */
function physmapFrom(pairs: [string, string][], at: number): PhysmapEntry[] {
  const byPhys = new Map<string, { start?: string; size?: string; name?: string }>();
  for (const [k, v] of pairs) {
    const m = /^physmap\/([0-9a-f]+)\/(start_addr|size|name)$/.exec(k);
    if (!m) throw new UnsupportedStreamError(`cannot express in a legacy image (offset ${at}): emulator xenstore key "${k}"`);
    const e = byPhys.get(m[1]!) ?? {};
    byPhys.set(m[1]!, e);
    if (m[2] === 'start_addr') e.start = v;
    else if (m[2] === 'size') e.size = v;
    else e.name = v;
  }
  const out: PhysmapEntry[] = [];
  for (const [phys, e] of byPhys) {
    if (e.start === undefined || e.size === undefined || e.name === undefined)
      throw new UnsupportedStreamError(`cannot express in a legacy image (offset ${at}): physmap entry ${phys} lacks start_addr, size or name`);
    if (!/^[0-9a-f]+$/.test(e.start) || !/^[0-9a-f]+$/.test(e.size))
      throw new UnsupportedStreamError(`cannot express in a legacy image (offset ${at}): physmap entry ${phys} has non-hex values`);
    out.push({ physOffset: BigInt('0x' + phys), startAddr: BigInt('0x' + e.start), size: BigInt('0x' + e.size), name: e.name });
  }
  return out;
}
