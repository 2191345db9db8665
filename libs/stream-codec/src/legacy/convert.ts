import { LITTLE_HOST, Writer, ascii, viewOf } from '../bytes';
import { MalformedStreamError, UnsupportedStreamError } from '../errors';
import { StreamReader } from '../reader';
import type { ByteSource } from '../source';
import { DOMAIN_TYPE, LIBXL_REC, REC, XL_MAGIC, XL_MAGIC_SIZE, XL_MANDATORY_FLAG_STREAMV2 } from '../v2/constants';
import { encodeDomainHeader, encodeImageHeader, encodeLibxlHeader, encodeRecordHeader, recordParts } from '../v2/frame';
import { PfnSet } from '../v2/pfnset';
import {
  CHUNK,
  CHUNK_NAME,
  HVM_PARAM,
  LEGACY_LIMITS,
  LIBXL_TOOLSTACK_VERSION,
  MAX_BATCH,
  MAX_VCPU_ID,
  PARAM_CHUNK_BY_ID,
  PHYSMAP_HDR,
  QEMU_SIG_EOF,
  QEMU_SIG_REMUS,
  QEMU_SIG_SIZE,
  QEMU_SIG_V2,
  SHARED_INFO_SIZE,
  TSC_CHUNK_BODY,
  VCPU_CTXT_32,
  VCPU_CTXT_64,
  VCPU_EXTENDED_SIZE,
  XTAB_FILLER,
} from './constants';
import { DETECT_PREFIX, detectLegacy, type LegacyDetection } from './detect';
import type { LegacyGuest, LegacyWidth } from './writer';

/**
 * Legacy image -> v2 (libxc or libxl framing), streaming. For every image Xen's
 * convert-legacy-stream converts into a stream its own verifier accepts, the output
 * is byte-identical to that script's for the same options. Where the script would
 * produce a stream its verifier rejects, crash, or allocate what a lying length
 * asks for, this stops with one StreamCodecError naming the offset and the rule.
 *
 * Memory is bounded whatever the guest size: page data leaves as views of the input
 * chunks; only small, capped structures (toolstack data, vcpu map) are buffered.
 */

export interface LegacyConvertOptions {
  /** Toolstack width; 'auto' decides from the stream (default 'auto'). */
  width?: LegacyWidth | 'auto';
  guest?: LegacyGuest | 'auto';
  /** Output framing (default 'libxc', as the script). */
  format?: 'libxc' | 'libxl';
  /** Is an xl header in front? 'auto' looks for its magic (default 'auto'). */
  xl?: boolean | 'auto';
  /** Process the qemu tail of an HVM image in libxc format (default true; false = --skip-qemu). */
  qemu?: boolean;
  /** HVM: accept an image that ends right after the HVM context (toolstacks that saved qemu apart); Xen's script requires the tail for libxl output. */
  qemuOptional?: boolean;
  /** What follows the end of the image: refuse it (default), or leave it unread. */
  trailing?: 'refuse' | 'ignore';
  /** Verbose progress lines (what the script prints with -v). */
  onInfo?: (line: string) => void;
}

export interface LegacyConvertSummary {
  toolstackWidth?: LegacyWidth;
  guest?: LegacyGuest;
  guestWidth?: LegacyWidth;
  widthSource?: 'declared' | 'detected';
  guestSource?: 'declared' | 'detected';
  xl: boolean;
  detection?: LegacyDetection;
  p2mSize: number;
  pages: number;
  vcpus: number;
  records: number;
  bytesIn: number;
  bytesOut: number;
}

const LE = true;
const TWO32 = 0x1_0000_0000;
const PAGE = 4096;

function hex(n: number | bigint): string {
  return '0x' + n.toString(16);
}

export class LegacyConverter {
  readonly summary: LegacyConvertSummary = { xl: false, p2mSize: 0, pages: 0, vcpus: 0, records: 0, bytesIn: 0, bytesOut: 0 };
  private readonly r: StreamReader;
  /** Duplicate-pfn check of one batch, reused (nothing allocated per batch). */
  private readonly seen = new PfnSet();
  /** An aligned copy of a batch's pfn entries when they do not sit 4-byte aligned in the input (words()). */
  private scratch = new Uint32Array(0);
  private readonly libxl: boolean;
  private tw: LegacyWidth = 32;
  private pv = false;
  // PV state
  private basicLen = 0;
  private extd = false;
  private xsaveLen = 0;
  private guestBytes = 0;
  private online: number[] = [];
  private sawVcpuInfo = false;
  private emuXenstore: Uint8Array[] = [];
  private emuXenstoreLen = 0;

  constructor(
    source: ByteSource | StreamReader,
    private readonly opts: LegacyConvertOptions = {},
  ) {
    this.r = source instanceof StreamReader ? source : new StreamReader(source);
    this.libxl = opts.format === 'libxl';
  }

  private info(s: string): void {
    this.opts.onInfo?.(s);
  }

  private bad(rule: string, record?: string, offset = this.r.offset): never {
    throw new MalformedStreamError(offset, rule, record);
  }

  // 4-byte reads without a DataView each: the chunk id before every batch is one.
  private async u32(ctx: string): Promise<number> {
    return (await this.i32(ctx)) >>> 0;
  }
  private async i32(ctx: string): Promise<number> {
    const b = await this.r.read(4, ctx);
    return b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24);
  }
  /** An unsigned long of the toolstack's width, as [hi, lo]. */
  private async ulong(ctx: string): Promise<[number, number]> {
    const b = viewOf(await this.r.read(this.tw / 8, ctx));
    return this.tw === 32 ? [0, b.getUint32(0, LE)] : [b.getUint32(4, LE), b.getUint32(0, LE)];
  }

  private *emit(parts: Uint8Array[]): Generator<Uint8Array> {
    for (const p of parts) {
      this.summary.bytesOut += p.byteLength;
      yield p;
    }
  }
  private *record(type: number, body: Uint8Array[]): Generator<Uint8Array> {
    this.summary.records++;
    yield* this.emit(recordParts(type, body, LE));
  }

  /** The converted stream. Throws a StreamCodecError at the first fault. */
  async *run(): AsyncGenerator<Uint8Array, void, undefined> {
    const o = this.opts;
    const r = this.r;
    const start = r.offset;

    // xl header
    let xl = o.xl ?? 'auto';
    if (xl === 'auto') {
      const head = await r.peek(XL_MAGIC_SIZE);
      xl = ascii.decode(head) === XL_MAGIC;
    }
    if (xl) yield* this.xlHeader();
    else if (o.xl === false && ascii.decode(await r.peek(XL_MAGIC_SIZE)) === XL_MAGIC)
      this.bad('the image starts with an xl header: pass -x/--xl (or let it be detected)', 'xl header', r.offset);
    this.summary.xl = xl;

    // libxl's header first, before anything is read that can be refused (Xen's script writes it
    // right after p2m_size): libxl 4.17, reading a helper that wrote nothing at all, fails with
    // "Invalid ident" and xl crashes, leaving the half-built domain behind; after a header it
    // fails cleanly and destroys the domain.
    if (this.libxl) {
      yield* this.emit([encodeLibxlHeader(false, true)]);
      yield* this.record(LIBXL_REC.LIBXC_CONTEXT, []);
    }

    // Width and guest type: declared, detected, and checked against each other.
    const prefix = await r.peek(DETECT_PREFIX);
    const complete = prefix.byteLength < DETECT_PREFIX;
    const declaredWidth = o.width === undefined || o.width === 'auto' ? undefined : o.width;
    const declaredGuest = o.guest === undefined || o.guest === 'auto' ? undefined : o.guest;
    const det = detectLegacy(prefix, { complete, width: declaredWidth, guest: declaredGuest, base: r.offset, xl });
    this.summary.detection = det;
    this.tw = declaredWidth ?? det.width;
    this.pv = (declaredGuest ?? det.guest) === 'pv';
    this.summary.toolstackWidth = this.tw;
    this.summary.guest = this.pv ? 'pv' : 'hvm';
    this.summary.widthSource = declaredWidth ? 'declared' : 'detected';
    this.summary.guestSource = declaredGuest ? 'declared' : 'detected';

    // Header: p2m_size.
    const p2mAt = r.offset;
    const [hi, lo] = await this.ulong('p2m_size');
    const p2mSize = hi * TWO32 + lo;
    this.info(`P2M Size: ${hex(p2mSize)}`);
    if (p2mSize > LEGACY_LIMITS.p2mSizeMax)
      this.bad(`p2m_size ${hex((BigInt(hi) << 32n) | BigInt(lo))} is impossible (more than 2^32 pages): is this a 32-bit image read as 64-bit?`, 'header', p2mAt);
    if (p2mSize === 0 && this.pv) this.bad('p2m_size is 0', 'header', p2mAt);
    this.summary.p2mSize = p2mSize;

    yield* this.emit([encodeImageHeader(3, false), encodeDomainHeader(this.pv ? DOMAIN_TYPE.x86_pv : DOMAIN_TYPE.x86_hvm, 12, 0, 1, LE)]);

    if (this.pv) yield* this.extendedInfo();
    yield* this.record(REC.STATIC_DATA_END, []);
    if (this.pv) yield* this.p2mFrames(p2mSize);

    yield* this.chunks();

    if (this.pv) yield* this.pvTail(p2mSize);
    else yield* this.hvmTail();

    if (this.libxl && this.emuXenstoreLen) {
      const hdr = new Writer(8, LE).u32(0).u32(0).bytes;
      yield* this.record(LIBXL_REC.EMULATOR_XENSTORE_DATA, [hdr, ...this.emuXenstore]);
    }
    let qemuDone = false;
    if (!this.pv && (this.libxl || (o.qemu ?? true)) && !(o.qemuOptional && (await r.atEnd()))) {
      yield* this.qemu();
      qemuDone = true;
    }
    if (this.libxl) yield* this.record(LIBXL_REC.END, []);

    if ((o.trailing ?? 'refuse') === 'refuse') await this.checkEnd(!this.pv && !qemuDone);
    this.summary.bytesIn = r.offset - start;
  }

  private async *xlHeader(): AsyncGenerator<Uint8Array> {
    const r = this.r;
    const at = r.offset;
    // Copied at once: held across the next read (a caller may recycle consumed input buffers).
    const magic = new Uint8Array(await r.read(XL_MAGIC_SIZE, 'xl header'));
    if (ascii.decode(magic) !== XL_MAGIC) this.bad('no xl header (bad magic)', 'xl header', at);
    const fields = await r.read(16, 'xl header');
    const dv = viewOf(fields);
    const byteorder = dv.getUint32(0, LE);
    let mflags = dv.getUint32(4, LE);
    const oflags = dv.getUint32(8, LE);
    const optlen = dv.getUint32(12, LE);
    if (this.libxl) mflags = (mflags | XL_MANDATORY_FLAG_STREAMV2) >>> 0;
    const out = new Writer(16, LE).u32(byteorder).u32(mflags).u32(oflags).u32(optlen).bytes;
    yield* this.emit([magic, out]);
    // The optional data (xl's JSON config) streams through; a lying length costs no memory.
    for await (const piece of r.stream(optlen, 'xl header optional data')) yield* this.emit([piece]);
    this.info('Processed xl header');
  }

  private async *extendedInfo(): AsyncGenerator<Uint8Array> {
    const r = this.r;
    const at = r.offset;
    const [mhi, mlo] = await this.ulong('extended info marker');
    const full = this.tw === 32 ? mlo === 0xffffffff : mhi === 0xffffffff && mlo === 0xffffffff;
    if (!full) this.bad(`unexpected extended info marker ${hex((BigInt(mhi) << 32n) | BigInt(mlo))}`, 'extended info', at);
    const total = await this.u32('extended info length');
    this.info(`Extended Info: length ${hex(total)}`);
    if (total > LEGACY_LIMITS.extInfoMax) this.bad(`extended info length ${hex(total)} is implausible (over ${LEGACY_LIMITS.extInfoMax} bytes)`, 'extended info', at);
    let soFar = 0;
    let sawVcpu = false;
    while (soFar < total) {
      const bat = r.offset;
      if (total - soFar < 8) this.bad(`extended info block header overruns the extended info length by ${8 - (total - soFar)} bytes`, 'extended info', bat);
      const h = await r.read(8, 'extended info block');
      const id = ascii.decode(h.subarray(0, 4));
      const size = viewOf(h).getUint32(4, LE);
      soFar += 8;
      if (size > total - soFar) this.bad(`block "${id}" of ${size} bytes overruns the extended info length by ${size - (total - soFar)} bytes`, 'extended info', bat);
      soFar += size;
      this.info(`  Record type: ${id}, size ${hex(size)}`);
      const data = await r.read(size, `extended info block "${id}"`);
      if (id === 'vcpu') {
        if (sawVcpu) this.bad('a second "vcpu" block', 'extended info', bat);
        sawVcpu = true;
        this.basicLen = size;
        let width: number, levels: number;
        if (size === VCPU_CTXT_64) [width, levels] = [8, 4];
        else if (size === VCPU_CTXT_32) [width, levels] = [4, 3];
        else this.bad(`unable to determine guest width/levels from a vcpu context of ${hex(size)} bytes (expected 0xaf0 or 0x1430)`, 'extended info', bat);
        this.guestBytes = width;
        this.summary.guestWidth = width === 8 ? 64 : 32;
        yield* this.record(REC.X86_PV_INFO, [new Writer(8, LE).u8(width).u8(levels).u16(0).u32(0).bytes]);
      } else if (id === 'extv') {
        this.extd = true;
      } else if (id === 'xcnt') {
        if (size < 4) this.bad(`"xcnt" block of ${size} bytes (needs 4)`, 'extended info', bat);
        this.xsaveLen = viewOf(data).getUint32(0, LE);
        if (this.xsaveLen < 16 || this.xsaveLen - 16 > LEGACY_LIMITS.xsaveMax)
          this.bad(`"xcnt" xsave size ${hex(this.xsaveLen)} is implausible`, 'extended info', bat);
      } else {
        this.bad(`unrecognised extended info block "${id.replace(/[^\x20-\x7e]/g, '?')}"`, 'extended info', bat);
      }
    }
    if (!sawVcpu) this.bad('no "vcpu" block: the guest width is unknown', 'extended info', at);
  }

  private async *p2mFrames(p2mSize: number): AsyncGenerator<Uint8Array> {
    const fpp = PAGE / this.guestBytes;
    const n = Math.floor((p2mSize - 1) / fpp) + 1;
    this.info(`P2M frames: fpp ${fpp}, p2m_frame_len ${n}`);
    this.summary.records++;
    const len = 8 + n * 8;
    yield* this.emit([encodeRecordHeader(REC.X86_PV_P2M_FRAMES, len, LE), new Writer(8, LE).u32(0).u32(p2mSize - 1).bytes]);
    // Streamed in pieces: a large p2m_size never becomes one large buffer.
    const wb = this.tw / 8;
    for (let done = 0; done < n; ) {
      const k = Math.min(n - done, 65536);
      const src = viewOf(await this.r.read(k * wb, 'p2m frame list'));
      const out = new Writer(k * 8, LE);
      for (let i = 0; i < k; i++) {
        if (wb === 4) out.u64hl(0, src.getUint32(i * 4, LE));
        else out.u64hl(src.getUint32(i * 8 + 4, LE), src.getUint32(i * 8, LE));
      }
      yield* this.emit([out.bytes]);
      done += k;
    }
  }

  private async *chunks(): AsyncGenerator<Uint8Array> {
    const r = this.r;
    const params: [number, Uint8Array][] = [];
    let meta = 0;
    for (;;) {
      const at = r.offset;
      const marker = await this.i32('chunk id');
      if (marker > 0) {
        if (marker > MAX_BATCH) this.bad(`page batch of ${marker} exceeds the maximum of ${MAX_BATCH}`, 'page batch', at);
        yield* this.batch(marker, at);
        continue;
      }
      if (++meta > LEGACY_LIMITS.metaChunksMax) this.bad(`more than ${LEGACY_LIMITS.metaChunksMax} metadata chunks in the body (no end marker?)`, 'chunk', at);
      const name = CHUNK_NAME[marker];
      this.info(`Chunk: ${marker} - ${name ?? 'unknown'}`);
      if (name === undefined) this.bad(`unrecognised chunk ${marker}`, 'chunk', at);
      switch (marker) {
        case CHUNK.end:
          if (params.length) yield* this.hvmParams(params);
          return;
        case CHUNK.enableVerifyMode:
        case CHUNK.lastCheckpoint:
          break;
        case CHUNK.vcpuInfo: {
          const maxId = await this.i32('vcpu info');
          if (maxId > MAX_VCPU_ID || maxId < 0) this.bad(`vcpu max_id ${maxId} out of range 0..${MAX_VCPU_ID}`, 'vcpu info', at);
          if (this.sawVcpuInfo) this.bad('a second vcpu info chunk', 'vcpu info', at);
          this.sawVcpuInfo = true;
          const words = Math.floor(maxId / 64) + 1;
          const map = viewOf(await r.read(words * 8, 'vcpu info bitmap'));
          for (let i = 0; i < words; i++) {
            for (let half = 0; half < 2; half++) {
              let word = map.getUint32(i * 8 + half * 4, LE);
              for (let bit = 0; word; bit++, word >>>= 1) if (word & 1) this.online.push(i * 64 + half * 32 + bit);
            }
          }
          this.info(`  Vcpu info: max_id ${maxId}, online map [${this.online.join(', ')}]`);
          break;
        }
        case CHUNK.tscInfo: {
          const b = viewOf(await r.read(TSC_CHUNK_BODY, 'tsc info'));
          const mode = b.getUint32(0, LE);
          const nsec = b.getBigUint64(4, LE);
          const khz = b.getUint32(12, LE);
          const incarn = b.getUint32(16, LE);
          yield* this.record(REC.X86_TSC_INFO, [new Writer(24, LE).u32(mode).u32(khz).u64(nsec).u32(incarn).u32(0).bytes]);
          break;
        }
        case CHUNK.toolstack: {
          const size = await this.u32('toolstack chunk');
          if (!size) break;
          this.info(`  Toolstack Data: sz ${hex(size)}`);
          if (!this.libxl) {
            await r.skip(size, 'toolstack data');
            break;
          }
          if (size > LEGACY_LIMITS.toolstackMax) this.bad(`toolstack data of ${size} bytes is implausible (over ${LEGACY_LIMITS.toolstackMax})`, 'toolstack', at);
          this.libxlToolstack(await r.read(size, 'toolstack data'), at);
          break;
        }
        case CHUNK.tmem:
        case CHUNK.tmemExtra:
        case CHUNK.compressedData:
        case CHUNK.enableCompression:
          throw new UnsupportedStreamError(`${name} chunk at offset ${at}: tmem and Remus compression cannot be converted`);
        default: {
          const p = PARAM_CHUNK_BY_ID.get(marker)!;
          const b = await r.read(12, name);
          if (this.pv) this.bad(`HVM-only ${name} chunk in a PV image`, 'chunk', at);
          if (params.length >= LEGACY_LIMITS.hvmParamsMax) this.bad(`more than ${LEGACY_LIMITS.hvmParamsMax} HVM param chunks`, 'chunk', at);
          const v = new Writer(16, LE).u64(p.param).bytes;
          v.set(b.subarray(4, 12), 8);
          params.push([p.param, v]);
          this.info(`  ${p.name}: ${hex(viewOf(b).getBigUint64(4, LE))}`);
        }
      }
    }
  }

  private *hvmParams(params: [number, Uint8Array][]): Generator<Uint8Array> {
    yield* this.record(REC.HVM_PARAMS, [new Writer(8, LE).u32(params.length).u32(0).bytes, ...params.map((p) => p[1])]);
  }

  private async *batch(count: number, at: number): AsyncGenerator<Uint8Array> {
    const r = this.r;
    const wb = this.tw / 8;
    const rawBytes = await r.read(count * wb, 'page batch pfns');
    // The record: its header (type, length, count, reserved) and the v2 pfn entries, one buffer.
    const bytes = new Uint8Array(16 + count * 8);
    let n: number;
    let withData: number;
    // The common case (pfns rising, no invalid type) in one pass over typed arrays; anything else,
    // or a big-endian host, goes through the full check, which names the first fault.
    const words = LITTLE_HOST ? new Uint32Array(bytes.buffer) : undefined;
    const fast = words ? risingLegacyBatch(this.words(rawBytes), wb, words.subarray(4)) : -1;
    if (fast >= 0) {
      n = fast >>> 16;
      withData = fast & 0xffff;
    } else [n, withData] = this.checkBatch(viewOf(rawBytes), count, wb, at, bytes);
    if (n === 0) this.bad(`a batch of ${count} entries that are all XTAB fillers (an empty PAGE_DATA record is invalid)`, 'page batch', at);
    const bodyLen = 8 + n * 8 + withData * PAGE;
    if (words) {
      words[0] = REC.PAGE_DATA;
      words[1] = bodyLen;
      words[2] = n;
    } else {
      const dv = viewOf(bytes);
      dv.setUint32(0, REC.PAGE_DATA, LE);
      dv.setUint32(4, bodyLen, LE);
      dv.setUint32(8, n, LE);
    }
    this.summary.records++;
    this.summary.pages += withData;
    yield* this.emit([n === count ? bytes : bytes.subarray(0, 16 + n * 8)]);
    // Streamed as the bytes arrive, never held whole, and nothing read before is held (the pfns
    // went into `bytes`): a recycling source can refill the same buffer over and over.
    // (With r.forward set, part of them may reach the output without being yielded: counted here.)
    this.summary.bytesOut += withData * PAGE;
    if (withData) yield* r.passOn(withData * PAGE, 'page data');
    else r.unheldBefore = r.offset;
  }

  /** The full check of a batch's pfns, writing them to `bytes` from offset 16: [entries kept, entries with data]. */
  private checkBatch(raw: DataView, count: number, wb: number, at: number, bytes: Uint8Array): [number, number] {
    const out = viewOf(bytes);
    const seen = this.seen;
    // No duplicate is possible while the pfns rise strictly (as Xen writes them): the set is
    // filled only from the first step down, with every entry kept so far.
    let rising = true;
    let prev = -1;
    let n = 0;
    let withData = 0;
    const filler = XTAB_FILLER; // a local: imported bindings compile to property reads in CommonJS
    for (let i = 0; i < count; i++) {
      let x: number;
      if (wb === 4) x = raw.getUint32(i * 4, LE);
      else {
        if (raw.getUint32(i * 8 + 4, LE) !== 0)
          this.bad(`pfn entry ${i} ${hex(raw.getBigUint64(i * 8, LE))} has bits above 32 set`, 'page batch', at + 4 + i * 8);
        x = raw.getUint32(i * 8, LE);
      }
      if (x === filler) continue;
      const type = x >>> 28;
      if (type >= 5 && type <= 8) this.bad(`pfn entry ${i} ${hex(x)} has invalid page type ${hex(type)}`, 'page batch', at + 4 + i * wb);
      if (rising && (x & 0x0fffffff) > prev) prev = x & 0x0fffffff;
      else {
        if (rising) {
          rising = false;
          seen.reset(count);
          for (let j = 0; j < i; j++) {
            const y = raw.getUint32(j * wb, LE); // the low word: 64-bit entries passed the high-bits check
            if (y !== filler) seen.add(0, y);
          }
        }
        if (!seen.add(0, x)) this.bad(`duplicate pfn entry ${hex(x)} in one batch`, 'page batch', at + 4 + i * wb);
      }
      out.setUint32(16 + n * 8, x & 0x0fffffff, LE);
      out.setUint32(20 + n * 8, (x & 0xf0000000) >>> 0, LE);
      n++;
      if (type < 0xd) withData++;
    }
    return [n, withData];
  }

  /** The batch's pfn entries as 32-bit words: a view when 4-byte aligned, else a copy into a reused buffer. */
  private words(raw: Uint8Array): Uint32Array {
    if (raw.byteOffset % 4 === 0) return new Uint32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    if (this.scratch.byteLength < raw.byteLength) this.scratch = new Uint32Array(raw.byteLength / 4);
    new Uint8Array(this.scratch.buffer, 0, raw.byteLength).set(raw);
    return this.scratch.subarray(0, raw.byteLength / 4);
  }

  private libxlToolstack(data: Uint8Array, at: number): void {
    const dv = viewOf(data);
    if (data.byteLength < 8) this.bad('overly short libxl toolstack data', 'toolstack', at);
    const ver = dv.getUint32(0, LE);
    const count = dv.getUint32(4, LE);
    if (ver !== LIBXL_TOOLSTACK_VERSION) this.bad(`cannot decode libxl toolstack version ${ver}`, 'toolstack', at);
    this.info(`    Version ${ver}, count ${count}`);
    let p = 8;
    const enc = (s: string) => ascii.encode(s);
    for (let i = 0; i < count; i++) {
      if (data.byteLength - p < PHYSMAP_HDR) this.bad('remaining data too short for physmap header', 'toolstack', at);
      const phys = dv.getBigUint64(p, LE);
      const startAddr = dv.getBigUint64(p + 8, LE);
      const size = dv.getBigUint64(p + 16, LE);
      let namelen = dv.getUint32(p + 24, LE);
      p += PHYSMAP_HDR;
      if (namelen === 0) this.bad('no physmap info name', 'toolstack', at);
      // A 64-bit libxl leaked the struct's 4 bytes of tail padding after the name.
      const pad = this.tw === 64 ? 4 : 0;
      namelen += pad;
      if (data.byteLength - p < namelen) this.bad('remaining data too short for physmap name', 'toolstack', at);
      const name = data.subarray(p, p + namelen - pad);
      p += namelen;
      if (name[name.byteLength - 1] !== 0) this.bad('physmap name not NUL terminated', 'toolstack', at);
      const root = `physmap/${phys.toString(16)}`;
      const parts = [
        enc(`${root}/start_addr`),
        enc(startAddr.toString(16)),
        enc(`${root}/size`),
        enc(size.toString(16)),
        enc(`${root}/name`),
        name.subarray(0, name.byteLength - 1),
      ];
      for (const part of parts) {
        const z = new Uint8Array(part.byteLength + 1);
        z.set(part);
        this.emuXenstore.push(z);
        this.emuXenstoreLen += z.byteLength;
      }
      if (this.emuXenstoreLen > LEGACY_LIMITS.toolstackMax) this.bad('emulator xenstore data grows past its limit', 'toolstack', at);
    }
  }

  private async *pvTail(p2mSize: number): AsyncGenerator<Uint8Array> {
    const r = this.r;
    const at = r.offset;
    const nUnmapped = await this.u32('unmapped pfn count');
    if (nUnmapped > p2mSize)
      this.bad(`${nUnmapped} unmapped pfns claimed but p2m_size is only ${p2mSize}`, 'PV tail', at);
    if (nUnmapped) {
      this.info(`discarding ${nUnmapped} bogus 'unmapped pfns'`);
      await r.skip(nUnmapped * (this.tw / 8), 'unmapped pfn list');
    }
    for (const id of this.online) {
      const vat = r.offset;
      const basic = await r.read(this.basicLen, `vcpu ${id} context`);
      const hdr = () => new Writer(8, LE).u32(id).u32(0).bytes;
      yield* this.record(REC.X86_PV_VCPU_BASIC, [hdr(), basic]);
      if (this.extd) yield* this.record(REC.X86_PV_VCPU_EXTENDED, [hdr(), await r.read(VCPU_EXTENDED_SIZE, `vcpu ${id} extended context`)]);
      if (this.xsaveLen) {
        const h = viewOf(await r.read(16, `vcpu ${id} xsave header`));
        const size = h.getBigUint64(8, LE);
        if (size !== BigInt(this.xsaveLen - 16))
          this.bad(`vcpu ${id} xsave size ${hex(size)} differs from the ${hex(this.xsaveLen - 16)} announced in "xcnt"`, 'PV tail', vat);
        yield* this.record(REC.X86_PV_VCPU_XSAVE, [hdr(), await r.read(this.xsaveLen - 16, `vcpu ${id} xsave`)]);
      }
      this.summary.vcpus++;
    }
    yield* this.record(REC.SHARED_INFO, [await r.read(SHARED_INFO_SIZE, 'shared info page')]);
    yield* this.record(REC.END, []);
  }

  private async *hvmTail(): AsyncGenerator<Uint8Array> {
    const r = this.r;
    const magic = await r.read(24, 'HVM magic pfns');
    const params = new Writer(8 + 48, LE).u32(3).u32(0);
    params.u64(HVM_PARAM.IOREQ_PFN).raw(magic.subarray(0, 8));
    params.u64(HVM_PARAM.BUFIOREQ_PFN).raw(magic.subarray(8, 16));
    params.u64(HVM_PARAM.STORE_PFN).raw(magic.subarray(16, 24));
    yield* this.record(REC.HVM_PARAMS, [params.bytes]);
    const at = r.offset;
    const size = await this.u32('HVM context length');
    this.info(`Got HVM Context (${hex(size)} bytes)`);
    if (size === 0) this.bad('zero-length HVM context', 'HVM tail', at);
    if (size > LEGACY_LIMITS.hvmContextMax) this.bad(`HVM context of ${size} bytes is implausible (over ${LEGACY_LIMITS.hvmContextMax})`, 'HVM tail', at);
    this.summary.vcpus = this.online.length;
    yield* this.streamRecord(REC.HVM_CONTEXT, [], size, 'HVM context');
    yield* this.record(REC.END, []);
  }

  /** A record whose body ends with `len` input bytes streamed through (never buffered). */
  private async *streamRecord(type: number, head: Uint8Array[], len: number, ctx: string): AsyncGenerator<Uint8Array> {
    let total = len;
    for (const h of head) total += h.byteLength;
    this.summary.records++;
    yield* this.emit([encodeRecordHeader(type, total, LE), ...head]);
    for await (const piece of this.r.stream(len, ctx)) yield* this.emit([piece]);
    const pad = (8 - (total & 7)) & 7;
    if (pad) yield* this.emit([new Uint8Array(pad)]);
  }

  private async *qemu(): AsyncGenerator<Uint8Array> {
    const r = this.r;
    const at = r.offset;
    const rawsig = new Uint8Array(await r.read(QEMU_SIG_SIZE, 'qemu signature')); // held across the next read
    const sig = ascii.decode(rawsig);
    if (sig !== QEMU_SIG_V2) {
      if (sig === QEMU_SIG_EOF || sig === QEMU_SIG_REMUS)
        throw new UnsupportedStreamError(`qemu tail "${sig}" at offset ${at} cannot be converted (only "${QEMU_SIG_V2}")`);
      this.bad(`unrecognised qemu signature "${sig.replace(/[^\x20-\x7e]/g, '?')}"`, 'qemu tail', at);
    }
    const rawsz = await r.read(4, 'qemu record length');
    const size = viewOf(rawsz).getUint32(0, LE);
    this.info(`Qemu signature: ${sig}, ${size} bytes`);
    if (size > LEGACY_LIMITS.qemuMax) this.bad(`qemu record of ${size} bytes is implausible (over ${LEGACY_LIMITS.qemuMax})`, 'qemu tail', at);
    if (this.libxl) {
      yield* this.streamRecord(LIBXL_REC.EMULATOR_CONTEXT, [new Writer(8, LE).u32(0).u32(0).bytes], size, 'qemu record');
    } else {
      yield* this.emit([rawsig, new Uint8Array(rawsz)]);
      for await (const piece of r.stream(size, 'qemu record')) yield* this.emit([piece]);
    }
  }

  /** Nothing may follow the image; with --skip-qemu an HVM image may still end in its qemu record. */
  private async checkEnd(qemuMayFollow: boolean): Promise<void> {
    const r = this.r;
    if (await r.atEnd()) return;
    const at = r.offset;
    if (qemuMayFollow) {
      const head = await r.peek(QEMU_SIG_SIZE + 4);
      const sig = ascii.decode(head.subarray(0, QEMU_SIG_SIZE));
      if (sig === QEMU_SIG_EOF) {
        await r.skip(Number.MAX_SAFE_INTEGER, 'qemu record').catch(() => undefined);
        return;
      }
      if ((sig === QEMU_SIG_V2 || sig === QEMU_SIG_REMUS) && head.byteLength === QEMU_SIG_SIZE + 4) {
        await r.skip(QEMU_SIG_SIZE + 4 + viewOf(head).getUint32(QEMU_SIG_SIZE, LE), 'skipped qemu record');
        if (await r.atEnd()) return;
      }
    }
    const left = await r.peek(64 * 1024);
    this.bad(`${left.byteLength >= 64 * 1024 ? 'at least 64 KiB' : `${left.byteLength} bytes`} after the end of the image`, 'trailing data', r.offset > at ? r.offset : at);
  }
}

/** Converts a legacy image; see LegacyConverter. The summary fills in as the output is consumed. */
export function convertLegacy(source: ByteSource | StreamReader, opts: LegacyConvertOptions = {}): { output: AsyncGenerator<Uint8Array, void, undefined>; summary: LegacyConvertSummary } {
  const c = new LegacyConverter(source, opts);
  return { output: c.run(), summary: c.summary };
}

/**
 * A legacy batch's pfn entries (32-bit words, little-endian host: `wb` 4 or 8 bytes an entry) to
 * v2 entries as [lo, hi] word pairs in `out`, in one tight pass, for the common case: every
 * 64-bit entry's high word zero, no invalid page type (0x5-0x8), pfns strictly rising (so no
 * duplicate), XTAB fillers dropped. Returns (entries kept << 16) | entries with data, or -1 when
 * anything is off. A short-lived converter runs this loop mostly before the JIT has optimised
 * it, so it avoids a DataView call per entry (docs/perf.md, 2026-11-26).
 */
function risingLegacyBatch(w: Uint32Array, wb: number, out: Uint32Array): number {
  const step = wb >> 2;
  const count = w.length / step;
  let prev = -1;
  let n = 0;
  let withData = 0;
  for (let i = 0, k = 0; i < count; i++, k += step) {
    if (step === 2 && w[k + 1] !== 0) return -1;
    const x = w[k]!;
    if (x === 0xf000_0000) continue; // XTAB_FILLER
    const type = x >>> 28;
    const pfn = x & 0x0fffffff;
    if ((type >= 5 && type <= 8) || pfn <= prev) return -1;
    prev = pfn;
    out[2 * n] = pfn;
    out[2 * n + 1] = (x & 0xf0000000) >>> 0;
    n++;
    if (type < 0xd) withData++;
  }
  return n === 0 ? -1 : (n << 16) | withData;
}
