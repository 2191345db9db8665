/**
 * V2Verifier: the rules of the libxc (revision 3) and libxl (revision 2) stream
 * specifications and of the xl save-file header, checked item by item.
 *
 * The hook for other code (ingestToV2, converters):
 *
 *     const v = new V2Verifier({ format: 'auto' });
 *     for await (const item of decodeV2(source)) {   // or items you build yourself
 *       v.push(item);                                 // throws MalformedStreamError at the first broken rule
 *       ...forward item.raw (the exact input bytes) or encode item...
 *     }
 *     const facts = v.end(bytesConsumed);             // throws if the stream stopped early (no END)
 *
 * `push` is synchronous and keeps O(1) state per stream (plus a reusable pfn
 * table), so it can sit in any hot path. Every error names the offset (the
 * item's `offset`, or the exact field when known), the record and the rule.
 * For byte-level use (verify while passing chunks through) see verifyingTee in
 * ../verify.ts, which drives decodeV2 + V2Verifier for you.
 *
 * Deliberate choices where the spec and real Xen differ (documented in the report):
 * - HVM_PARAMS before HVM_CONTEXT: the spec says so, but Xen 4.17's own save code
 *   writes HVM_CONTEXT first (and its restore accepts both). Reported as a warning;
 *   `strictOrder: true` makes it an error.
 * - TOOLSTACK (deprecated) is accepted with a warning.
 * - CHECKPOINT_DIRTY_PFN_LIST belongs to the COLO back channel only: an error in a
 *   forward stream unless `backChannel: true`.
 */
import { LITTLE_HOST, viewOf } from '../bytes';
import { MalformedStreamError } from '../errors';
import {
  DOMAIN_TYPE,
  IHDR_OPT_RESERVED_MASK,
  IHDR_VERSION_MAX,
  IHDR_VERSION_MIN,
  LIBXL_OPT_RESERVED_MASK,
  LIBXL_REC,
  LIBXL_VERSION,
  LIMITS,
  OPTIONAL_RECORD_BIT,
  PAGE_SHIFT,
  PAGE_SIZE,
  REC,
  REC_NAME,
  XL_MANDATORY_FLAG_JSON,
  XL_MANDATORY_FLAG_STREAMV2,
} from './constants';
import { libxlRecordName, xlConfigText } from './libxl';
import { PfnSet } from './pfnset';
import { libxcRecordName } from './records';
import type { Framing, LibxcRecordItem, LibxlRecordItem, PageDataBody, V2Facts, V2Item } from './types';

export interface VerifierOptions {
  /** Expected outermost framing; 'auto' (default) takes it from the first item. */
  format?: 'auto' | Framing;
  /** Treat the spec's HVM_PARAMS-before-HVM_CONTEXT order as a rule (default: warning). */
  strictOrder?: boolean;
  /** Accept CHECKPOINT_DIRTY_PFN_LIST (a COLO back-channel stream). */
  backChannel?: boolean;
  /** Called with each warning as it is found (they are also collected in the facts). */
  onWarning?: (message: string) => void;
  /** Called with a one-line summary of each header and record (like Xen's `-v`). */
  onInfo?: (message: string) => void;
}

type Phase = 'start' | 'xl' | 'libxl' | 'ihdr' | 'dhdr' | 'libxc' | 'done';

const XL_KNOWN_MANDATORY = XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMV2;
const KEY_CHARS = /^[A-Za-z0-9\-/_@]*$/;
const STATIC_RECORDS = new Set<number>([REC.X86_PV_INFO, REC.X86_CPUID_POLICY, REC.X86_MSR_POLICY]);
const DYNAMIC_RECORDS = new Set<number>([
  REC.PAGE_DATA,
  REC.X86_PV_P2M_FRAMES,
  REC.X86_PV_VCPU_BASIC,
  REC.X86_PV_VCPU_EXTENDED,
  REC.X86_PV_VCPU_XSAVE,
  REC.X86_PV_VCPU_MSRS,
  REC.SHARED_INFO,
  REC.X86_TSC_INFO,
  REC.HVM_CONTEXT,
  REC.HVM_PARAMS,
]);
const PV_ONLY = new Set<number>([
  REC.X86_PV_INFO,
  REC.X86_PV_P2M_FRAMES,
  REC.X86_PV_VCPU_BASIC,
  REC.X86_PV_VCPU_EXTENDED,
  REC.X86_PV_VCPU_XSAVE,
  REC.X86_PV_VCPU_MSRS,
  REC.SHARED_INFO,
]);
const HVM_ONLY = new Set<number>([REC.HVM_CONTEXT, REC.HVM_PARAMS]);

export class V2Verifier {
  private phase: Phase = 'start';
  private framing: Framing | undefined;
  private byteOrder: 'little' | 'big' = 'little';
  // libxl
  private libxlSeen = false;
  private libxcContextSeen = false;
  private libxcEnded = false;
  private libxlRecords = 0;
  // libxc
  private version = 0;
  private guest: 'pv' | 'hvm' | undefined;
  private xenVersion = '';
  private guestWidth: 32 | 64 | undefined;
  private pvInfo = false;
  private p2mFrames = false;
  private pageDataSeen = false;
  private vcpuSeen = false;
  private staticDataEnd = false;
  private hvmParams = false;
  private hvmContext = false;
  private records = 0;
  private pages = 0;
  private readonly vcpuIds = new Set<number>();
  private hvmVcpus = 0;
  private squashed = 0;
  private readonly pfnSet = new PfnSet();
  private readonly warnings: string[] = [];
  private lastOffset = 0;

  constructor(private readonly opts: VerifierOptions = {}) {}

  /** Checks one item; throws MalformedStreamError at the first rule it breaks. */
  push(item: V2Item): void {
    this.lastOffset = item.offset;
    switch (item.kind) {
      case 'xl-header':
        return this.xlHeader(item);
      case 'libxl-header':
        return this.libxlHeader(item);
      case 'image-header':
        return this.imageHeader(item);
      case 'domain-header':
        return this.domainHeader(item);
      case 'libxl-record':
        return this.libxlRecord(item);
      case 'libxc-record':
        return this.libxcRecord(item);
    }
  }

  /** The stream ended after `bytes` bytes: it must have been complete. Returns what it was. */
  end(bytes = 0): V2Facts {
    if (this.phase !== 'done') {
      const where = this.phase === 'start' ? 'the header' : this.phase === 'libxl' ? 'the libxl END record' : 'the END record';
      throw new MalformedStreamError(bytes || this.lastOffset, `stream ended before ${where}`, 'END');
    }
    this.flushSquashed();
    const facts: V2Facts = {
      framing: this.framing ?? 'libxc',
      byteOrder: this.byteOrder,
      guest: this.guest ?? 'pv',
      xenVersion: this.xenVersion,
      imageVersion: this.version,
      pages: this.pages,
      vcpus: this.guest === 'hvm' ? this.hvmVcpus : this.vcpuIds.size,
      records: this.records,
      libxlRecords: this.libxlRecords,
      bytes,
      warnings: this.warnings,
    };
    if (this.guestWidth) facts.guestWidth = this.guestWidth;
    return facts;
  }

  // ---- helpers --------------------------------------------------------------

  private fail(offset: number, rule: string, record?: string): never {
    throw new MalformedStreamError(offset, rule, record);
  }
  private warn(msg: string): void {
    this.warnings.push(msg);
    this.opts.onWarning?.(msg);
  }
  private info(msg: string): void {
    this.opts.onInfo?.(msg);
  }
  private first(kind: Framing, offset: number, what: string): void {
    if (this.phase !== 'start') return;
    const want = this.opts.format ?? 'auto';
    if (want !== 'auto' && want !== kind) this.fail(offset, `expected a ${want} stream, found a ${what}`, what);
    this.framing = kind;
  }
  private expectPhase(p: Phase, offset: number, what: string): void {
    if (this.phase !== p) this.fail(offset, `${what} not expected here (${this.phase === 'done' ? 'after the final END' : `while expecting ${describePhase(this.phase)}`})`, what);
  }
  private checkPadding(item: LibxcRecordItem | LibxlRecordItem, name: string): void {
    const p = item.padding;
    for (let i = 0; i < p.byteLength; i++) if (p[i] !== 0) this.fail(item.offset + 8 + item.length + i, 'padding contains non-zero bytes', name);
  }

  // ---- xl ---------------------------------------------------------------------

  private xlHeader(item: Extract<V2Item, { kind: 'xl-header' }>): void {
    this.first('xl', item.offset, 'xl header');
    this.expectPhase('start', item.offset, 'xl header');
    const h = item.header;
    const unknown = h.mandatoryFlags & ~XL_KNOWN_MANDATORY;
    if (unknown) this.fail(item.offset + 36, `unknown mandatory flags 0x${unknown.toString(16)}`, 'xl header');
    if (h.mandatoryFlags & XL_MANDATORY_FLAG_JSON) {
      const text = xlConfigText(h);
      if (text === undefined) this.warn('xl header: CONFIG_JSON set but the optional data holds no config');
      else {
        try {
          JSON.parse(text);
        } catch {
          this.warn('xl header: the domain config is not valid JSON');
        }
      }
    }
    this.info('Processed xl header');
    this.phase = h.mandatoryFlags & XL_MANDATORY_FLAG_STREAMV2 ? 'xl' : 'ihdr';
  }

  // ---- libxl ------------------------------------------------------------------

  private libxlHeader(item: Extract<V2Item, { kind: 'libxl-header' }>): void {
    this.first('libxl', item.offset, 'libxl header');
    if (this.phase !== 'start' && this.phase !== 'xl') this.expectPhase('start', item.offset, 'libxl header');
    const h = item.header;
    if (h.version !== LIBXL_VERSION) this.fail(item.offset + 8, `unknown libxl version ${h.version} (expected ${LIBXL_VERSION})`, 'libxl header');
    const res = h.options & LIBXL_OPT_RESERVED_MASK;
    if (res) this.fail(item.offset + 12, `reserved bits set in options: 0x${res.toString(16)}`, 'libxl header');
    this.byteOrder = h.byteOrder;
    this.libxlSeen = true;
    this.info(`Libxl Header: ${h.byteOrder} endian${h.legacy ? ', legacy converted' : ''}`);
    this.phase = 'libxl';
  }

  private libxlRecord(item: LibxlRecordItem): void {
    const name = libxlRecordName(item.type);
    this.expectPhase('libxl', item.offset, `libxl ${name} record`);
    this.libxlRecords++;
    this.info(`Libxl Record: ${name}, length ${item.length}`);
    this.checkPadding(item, name);
    const b = item.body;
    switch (item.type) {
      case LIBXL_REC.END:
        if (!this.libxcContextSeen) this.fail(item.offset, 'libxl END before any LIBXC_CONTEXT record', name);
        if (!this.libxcEnded) this.fail(item.offset, 'libxl END while the libxc stream is at a CHECKPOINT (expected CHECKPOINT_END)', name);
        this.phase = 'done';
        return;
      case LIBXL_REC.LIBXC_CONTEXT:
        if (this.libxcContextSeen) this.fail(item.offset, 'a second LIBXC_CONTEXT record', name);
        this.libxcContextSeen = true;
        this.phase = 'ihdr';
        return;
      case LIBXL_REC.CHECKPOINT_END:
        if (!this.libxcContextSeen || this.libxcEnded) this.fail(item.offset, 'CHECKPOINT_END without a libxc CHECKPOINT to end', name);
        this.phase = 'libxc';
        return;
      case LIBXL_REC.EMULATOR_XENSTORE_DATA:
      case LIBXL_REC.EMULATOR_CONTEXT:
        if (b.kind === 'emulator_xenstore_data' || b.kind === 'emulator_context') {
          if (b.emulatorId > 2) this.fail(item.offset + 8, `unrecognised emulator id 0x${b.emulatorId.toString(16)}`, name);
          if (b.kind === 'emulator_xenstore_data')
            for (const [k] of b.pairs) if (!KEY_CHARS.test(k)) this.fail(item.offset + 16, `xenstore key '${k}' has characters outside alphanumerics and -/_@`, name);
        }
        return;
      case LIBXL_REC.CHECKPOINT_STATE:
        if (b.kind === 'checkpoint_state') {
          if (b.controlId > 3) this.fail(item.offset + 8, `unknown checkpoint control_id ${b.controlId}`, name);
          if (b.rest.some((x) => x !== 0)) this.fail(item.offset + 12, 'non-zero padding after control_id', name);
        }
        return;
      default:
        if (!(item.type & OPTIONAL_RECORD_BIT)) this.fail(item.offset, `unrecognised mandatory record type 0x${item.type.toString(16)}`, name);
        this.info(`  optional record 0x${item.type.toString(16)} ignored`);
    }
  }

  // ---- libxc headers ----------------------------------------------------------

  private imageHeader(item: Extract<V2Item, { kind: 'image-header' }>): void {
    this.first('libxc', item.offset, 'libxc image header');
    if (this.phase === 'start') this.phase = 'ihdr';
    this.expectPhase('ihdr', item.offset, 'libxc image header');
    const h = item.header;
    if (h.marker.some((x) => x !== 0xff)) this.fail(item.offset, 'bad image marker', 'image header');
    if (h.version < IHDR_VERSION_MIN || h.version > IHDR_VERSION_MAX)
      this.fail(item.offset + 12, `unknown image version ${h.version} (expected ${IHDR_VERSION_MIN} to ${IHDR_VERSION_MAX})`, 'image header');
    const res = h.options & IHDR_OPT_RESERVED_MASK;
    if (res) this.fail(item.offset + 16, `reserved bits set in image options: 0x${res.toString(16)}`, 'image header');
    if (h.reserved1 || h.reserved2) this.fail(item.offset + 18, 'reserved fields of the image header are not zero', 'image header');
    if (this.libxlSeen && h.byteOrder !== this.byteOrder) this.fail(item.offset + 16, `libxc stream is ${h.byteOrder}-endian inside a ${this.byteOrder}-endian libxl stream`, 'image header');
    this.version = h.version;
    this.byteOrder = h.byteOrder;
    this.info(`Libxc Image Header: Version ${h.version}, ${h.byteOrder} endian`);
    this.phase = 'dhdr';
  }

  private domainHeader(item: Extract<V2Item, { kind: 'domain-header' }>): void {
    this.expectPhase('dhdr', item.offset, 'libxc domain header');
    const h = item.header;
    if (h.type === DOMAIN_TYPE.x86_pv) this.guest = 'pv';
    else if (h.type === DOMAIN_TYPE.x86_hvm) this.guest = 'hvm';
    else this.fail(item.offset, `unrecognised domain type 0x${h.type.toString(16)}`, 'domain header');
    if (h.pageShift !== PAGE_SHIFT) this.fail(item.offset + 4, `page_shift ${h.pageShift} (expected ${PAGE_SHIFT} on x86)`, 'domain header');
    if (h.reserved) this.fail(item.offset + 6, `reserved field not zero: 0x${h.reserved.toString(16)}`, 'domain header');
    this.xenVersion = h.xenMajor === 0 ? 'converted' : `${h.xenMajor}.${h.xenMinor}`;
    const g = this.guest === 'pv' ? 'x86 PV' : 'x86 HVM';
    this.info(h.xenMajor === 0 ? `Domain Header: legacy converted ${g}` : `Domain Header: ${g} from Xen ${h.xenMajor}.${h.xenMinor}`);
    this.phase = 'libxc';
  }

  // ---- libxc records ----------------------------------------------------------

  private flushSquashed(): void {
    if (this.squashed) this.info(`Squashed ${this.squashed} Page Data records together`);
    this.squashed = 0;
  }

  private libxcRecord(item: LibxcRecordItem): void {
    const name = libxcRecordName(item.type);
    this.expectPhase('libxc', item.offset, `libxc ${name} record`);
    this.records++;
    if (item.type === REC.PAGE_DATA) this.squashed++;
    else {
      this.flushSquashed();
      this.info(`Libxc Record: ${name}, length ${item.length}`);
    }
    this.checkPadding(item, name);
    const known = REC_NAME[item.type] !== undefined;
    if (!known) {
      if (!(item.type & OPTIONAL_RECORD_BIT)) this.fail(item.offset, `unrecognised mandatory record type 0x${item.type.toString(16)}`, name);
      return; // optional: the spec lets a reader ignore it
    }
    this.checkLayout(item, name);
    this.checkBody(item, name);
  }

  /** Guest-type, static-data and ordering rules of the spec's Layout section. */
  private checkLayout(item: LibxcRecordItem, name: string): void {
    const t = item.type;
    const at = item.offset;
    if (this.guest === 'hvm' && PV_ONLY.has(t)) this.fail(at, `${name} record in an HVM stream`, name);
    if (this.guest === 'pv' && HVM_ONLY.has(t)) this.fail(at, `${name} record in a PV stream`, name);
    // v2 streams: STATIC_DATA_END is inferred at the first P2M_FRAMES (PV) or PAGE_DATA (HVM).
    if (this.version < 3 && !this.staticDataEnd && t === (this.guest === 'pv' ? REC.X86_PV_P2M_FRAMES : REC.PAGE_DATA)) this.staticDataEnd = true;
    if (STATIC_RECORDS.has(t) && this.staticDataEnd) this.fail(at, `${name} (static data) after STATIC_DATA_END`, name);
    if (DYNAMIC_RECORDS.has(t) && !this.staticDataEnd) this.fail(at, `${name} before STATIC_DATA_END (v3 streams send all static data first)`, name);
    switch (t) {
      case REC.X86_PV_INFO:
        if (this.pvInfo) this.fail(at, 'a second X86_PV_INFO record', name);
        this.pvInfo = true;
        break;
      case REC.X86_PV_P2M_FRAMES:
        if (!this.pvInfo) this.fail(at, 'X86_PV_P2M_FRAMES before X86_PV_INFO', name);
        this.p2mFrames = true;
        break;
      case REC.PAGE_DATA:
        if (this.guest === 'pv' && !this.p2mFrames) this.fail(at, 'PAGE_DATA before X86_PV_P2M_FRAMES', name);
        this.pageDataSeen = true;
        break;
      case REC.X86_PV_VCPU_BASIC:
      case REC.X86_PV_VCPU_EXTENDED:
      case REC.X86_PV_VCPU_XSAVE:
      case REC.X86_PV_VCPU_MSRS:
        if (!this.pageDataSeen) this.fail(at, `${name} before any PAGE_DATA (vcpu records come after the memory)`, name);
        this.vcpuSeen = true;
        break;
      case REC.HVM_PARAMS:
        this.hvmParams = true;
        break;
      case REC.HVM_CONTEXT:
        if (!this.hvmParams) {
          const msg = `HVM_CONTEXT at offset ${at} before HVM_PARAMS (the spec orders HVM_PARAMS first; Xen's own save writes this order)`;
          if (this.opts.strictOrder) this.fail(at, 'HVM_CONTEXT before HVM_PARAMS', name);
          if (!this.hvmContext) this.warn(msg);
        }
        this.hvmContext = true;
        break;
      case REC.STATIC_DATA_END:
        if (this.version < 3) this.fail(at, 'STATIC_DATA_END record in a v2 stream', name);
        if (this.staticDataEnd) this.fail(at, 'a second STATIC_DATA_END record', name);
        this.staticDataEnd = true;
        break;
      case REC.X86_CPUID_POLICY:
      case REC.X86_MSR_POLICY:
        if (this.version < 3) this.fail(at, `${name} record in a v2 stream`, name);
        break;
      case REC.CHECKPOINT:
        if (this.libxlSeen) this.phase = 'libxl';
        break;
      case REC.END:
        this.endRecord(item, name);
        break;
    }
  }

  private endRecord(item: LibxcRecordItem, name: string): void {
    const at = item.offset;
    if (this.version >= 3 && !this.staticDataEnd) this.fail(at, 'END without STATIC_DATA_END (required in v3 streams)', name);
    if (this.guest === 'pv') {
      if (!this.pvInfo) this.fail(at, 'PV stream without X86_PV_INFO', name);
      if (!this.p2mFrames) this.fail(at, 'PV stream without X86_PV_P2M_FRAMES', name);
      if (!this.pageDataSeen) this.fail(at, 'PV stream without PAGE_DATA', name);
      if (!this.vcpuSeen) this.fail(at, 'PV stream without vcpu records', name);
    }
    this.libxcEnded = true;
    this.phase = this.libxlSeen ? 'libxl' : 'done';
  }

  /** Field rules of each record body. */
  private checkBody(item: LibxcRecordItem, name: string): void {
    const b = item.body;
    const at = item.offset + 8;
    switch (b.kind) {
      case 'page_data':
        return this.pageData(b, item, name);
      case 'x86_pv_info':
        if (b.guestWidth !== 4 && b.guestWidth !== 8) this.fail(at, `guest width ${b.guestWidth} (expected 4 or 8)`, name);
        if (b.ptLevels !== 3 && b.ptLevels !== 4) this.fail(at + 1, `page-table levels ${b.ptLevels} (expected 3 or 4)`, name);
        if (b.reserved1 || b.reserved2) this.fail(at + 2, 'reserved fields not zero', name);
        this.guestWidth = b.guestWidth === 4 ? 32 : 64;
        this.info(`  ${this.guestWidth}bit guest, ${b.ptLevels} levels of pagetables`);
        return;
      case 'x86_pv_p2m_frames': {
        if (b.startPfn > b.endPfn) this.fail(at, `p2m_start_pfn 0x${b.startPfn.toString(16)} > p2m_end_pfn 0x${b.endPfn.toString(16)}`, name);
        const fpp = PAGE_SIZE / (this.guestWidth === 32 ? 4 : 8);
        const want = Math.floor(b.endPfn / fpp) - Math.floor(b.startPfn / fpp) + 1;
        if (b.frames.length !== want) this.fail(at, `${b.frames.length} p2m frames for pfns 0x${b.startPfn.toString(16)}-0x${b.endPfn.toString(16)} (expected ${want})`, name);
        this.info(`  Start pfn 0x${b.startPfn.toString(16)}, End 0x${b.endPfn.toString(16)}`);
        return;
      }
      case 'x86_pv_vcpu':
        if (b.reserved) this.fail(at + 4, 'reserved field not zero', name);
        if (b.vcpuId > LIMITS.vcpuIdMax) this.fail(at, `vcpu_id ${b.vcpuId} exceeds ${LIMITS.vcpuIdMax}`, name);
        if (b.context.byteLength === 0) this.warn(`${name} record with zero content at offset ${item.offset} (tolerated, errata 1)`);
        this.vcpuIds.add(b.vcpuId);
        this.info(`  vcpu${b.vcpuId} ${name.slice(12).toLowerCase()} context, ${b.context.byteLength} bytes`);
        return;
      case 'x86_tsc_info':
        if (b.reserved) this.fail(at + 20, 'reserved field not zero', name);
        this.info(`  Mode ${b.mode}, ${b.khz} kHz, ${b.nsec} ns, incarnation ${b.incarnation}`);
        return;
      case 'hvm_params':
        if (b.reserved) this.fail(at + 4, 'reserved field not zero', name);
        if (b.count === 0) this.warn(`HVM_PARAMS record with zero content at offset ${item.offset} (tolerated, errata 1)`);
        return;
      case 'pfn_list':
        if (!this.opts.backChannel) this.fail(item.offset, 'CHECKPOINT_DIRTY_PFN_LIST belongs to the COLO back channel, not a forward stream', name);
        return;
      case 'x86_cpuid_policy':
      case 'x86_msr_policy':
        if (item.length === 0) this.fail(at, `empty ${name} record`, name);
        return;
      case 'blob':
        return this.blob(item, name);
      case 'empty':
        return;
    }
  }

  private blob(item: LibxcRecordItem, name: string): void {
    const len = item.length;
    switch (item.type) {
      case REC.SHARED_INFO:
        if (len !== PAGE_SIZE) this.fail(item.offset + 4, `SHARED_INFO must be exactly one page (${PAGE_SIZE} bytes), not ${len}`, name);
        return;
      case REC.HVM_CONTEXT:
        if (len === 0) this.fail(item.offset + 4, 'zero-length HVM_CONTEXT', name);
        if (item.body.kind === 'blob') this.hvmVcpus = Math.max(this.hvmVcpus, hvmContextCpus(item.body.data, this.byteOrder === 'little'));
        return;
      case REC.TOOLSTACK:
        this.warn(`deprecated TOOLSTACK record at offset ${item.offset}`);
        return;
    }
  }

  /** PAGE_DATA: reserved zero, valid types, no duplicate pfn, data exactly for the types that carry it. */
  private pageData(b: PageDataBody, item: LibxcRecordItem, name: string): void {
    const at = item.offset + 8;
    if (b.reserved) this.fail(at + 4, 'reserved field not zero', name);
    const le = this.byteOrder === 'little';
    const fast = le && LITTLE_HOST && b.pfns.byteOffset % 4 === 0 ? risingPfnsWithData(new Uint32Array(b.pfns.buffer, b.pfns.byteOffset, b.count * 2)) : -1;
    if (fast >= 0) return this.pageDataLength(fast, b, item, name);
    // Anything off, or a big-endian stream or host: every entry checked, the first fault named.
    const dv = viewOf(b.pfns);
    const hiAt = le ? 4 : 0;
    const loAt = le ? 0 : 4;
    const set = this.pfnSet;
    set.reset(b.count);
    let withData = 0;
    for (let i = 0; i < b.count; i++) {
      const hi = dv.getUint32(i * 8 + hiAt, le);
      const lo = dv.getUint32(i * 8 + loAt, le);
      const type = hi >>> 28;
      if (hi & 0x0ff00000) this.fail(at + 8 + i * 8, `reserved bits set in pfn[${i}]`, name);
      if (type >= 5 && type <= 8) this.fail(at + 8 + i * 8, `invalid page type 0x${type.toString(16)} in pfn[${i}]`, name);
      if (type <= 4 || (type >= 9 && type <= 0xc)) withData++;
      if (!set.add(hi & 0xfffff, lo)) this.fail(at + 8 + i * 8, `duplicate pfn 0x${((hi & 0xfffff) * 0x1_0000_0000 + lo).toString(16)} in pfn[${i}]`, name);
    }
    this.pageDataLength(withData, b, item, name);
  }

  private pageDataLength(withData: number, b: PageDataBody, item: LibxcRecordItem, name: string): void {
    const dataLen = item.length - 8 - b.count * 8;
    if (dataLen !== withData * PAGE_SIZE)
      this.fail(item.offset + 8, `${withData} of ${b.count} pfns carry data, so ${withData * PAGE_SIZE} bytes of pages were expected, not ${dataLen}`, name);
    this.pages += withData;
  }
}

/**
 * The common case in one tight pass over the pfn words (little-endian, as [lo, hi] pairs): no
 * reserved bits, no invalid type, pfns strictly rising. Returns how many entries carry data, or
 * -1 when anything is off, for the full check to find and name it.
 */
function risingPfnsWithData(w: Uint32Array): number {
  let prevHi = -1;
  let prevLo = 0;
  let withData = 0;
  for (let i = 0; i < w.length; i += 2) {
    const lo = w[i]!;
    const hi = w[i + 1]!;
    const type = hi >>> 28;
    if ((hi & 0x0ff00000) !== 0 || (type >= 5 && type <= 8)) return -1;
    const pHi = hi & 0xfffff;
    if (pHi < prevHi || (pHi === prevHi && lo <= prevLo)) return -1;
    prevHi = pHi;
    prevLo = lo;
    if (type <= 4 || (type >= 9 && type <= 0xc)) withData++;
  }
  return withData;
}

function describePhase(p: Phase): string {
  switch (p) {
    case 'start':
      return 'a stream header';
    case 'xl':
      return 'the libxl header after the xl header';
    case 'libxl':
      return 'a libxl record';
    case 'ihdr':
      return 'a libxc image header';
    case 'dhdr':
      return 'a libxc domain header';
    case 'libxc':
      return 'a libxc record';
    case 'done':
      return 'nothing';
  }
}

/** Counts the CPU entries (typecode 2) of an HVM context blob; stops quietly at anything odd. */
export function hvmContextCpus(data: Uint8Array, le: boolean): number {
  const dv = viewOf(data);
  const seen = new Set<number>();
  let o = 0;
  while (o + 8 <= data.byteLength) {
    const typecode = dv.getUint16(o, le);
    const instance = dv.getUint16(o + 2, le);
    const length = dv.getUint32(o + 4, le);
    if (typecode === 0) break;
    if (typecode === 2) seen.add(instance);
    o += 8 + length;
  }
  return seen.size;
}
