/**
 * `inspectStream`: a description of a v2 stream for operators (`ferry stream
 * inspect`): headers (with the xl domain config), per-record-type counts and
 * sizes, pages by type, vcpus, the emulator context, xenstore data, and the
 * verifier's verdict. Streams through the input like the verifier; keeps only
 * small summaries (never page data).
 */
import { ascii, viewOf } from './bytes';
import { isStreamCodecError } from './errors';
import { StreamReader } from './reader';
import type { ByteSource } from './source';
import { EMULATOR_ID, REC, XL_MANDATORY_FLAG_JSON, XL_MANDATORY_FLAG_STREAMV2 } from './v2/constants';
import { decodeV2 } from './v2/decoder';
import { libxlRecordName, xlConfigText } from './v2/libxl';
import { libxcRecordName } from './v2/records';
import type { Framing, LibxcRecordItem, LibxlRecordItem, V2Facts, V2Item } from './v2/types';
import { V2Verifier, hvmContextCpus } from './v2/verifier';

export interface RecordStat {
  count: number;
  bytes: number;
}

export interface EmulatorInfo {
  emulator: string;
  index: number;
  bytes: number;
  /** e.g. "QEMU VM state v3" or "qemu-traditional DeviceModelRecord0002". */
  format: string;
  /** Device sections found in a QEMU VM state (by scanning for section headers). */
  sections?: string[];
}

export interface InspectReport {
  framing?: Framing;
  bytes: number;
  xl?: { byteOrder: string; mandatoryFlags: string[]; optionalFlags: number; optionalDataBytes: number; config?: unknown; configText?: string };
  libxl?: { version: number; byteOrder: string; legacy: boolean; records: { offset: number; name: string; length: number }[] };
  libxc?: {
    version: number;
    byteOrder: string;
    guest: string;
    pageShift: number;
    xen: string;
    records: Record<string, RecordStat>;
    pages: { entries: number; withData: number; byType: Record<string, number>; pfnMin?: number; pfnMax?: number };
    vcpus: number[];
    pvInfo?: { guestWidth: number; ptLevels: number };
    p2m?: { startPfn: number; endPfn: number; frames: number };
    tsc?: { mode: number; khz: number; nsec: string; incarnation: number };
    hvmParams?: { index: string; value: string }[];
    cpuidLeaves?: number;
    msrs?: number;
    optionalRecords: number;
  };
  emulators: EmulatorInfo[];
  xenstore: { emulator: string; index: number; pairs: [string, string][] }[];
  verdict: { valid: boolean; error?: string; errorName?: string; warnings: string[]; facts?: V2Facts };
}

const PAGE_TYPE_NAMES = ['NOTAB', 'L1TAB', 'L2TAB', 'L3TAB', 'L4TAB', 'R5', 'R6', 'R7', 'R8', 'L1TAB_PIN', 'L2TAB_PIN', 'L3TAB_PIN', 'L4TAB_PIN', 'BROKEN', 'XALLOC', 'XTAB'];

function emulatorName(id: number): string {
  const e = Object.entries(EMULATOR_ID).find(([, v]) => v === id);
  return e ? e[0] : `0x${id.toString(16)}`;
}

export async function inspectStream(source: ByteSource, opts: { format?: 'auto' | Framing; onChunk?: (c: Uint8Array) => void } = {}): Promise<InspectReport> {
  const r = new StreamReader(source);
  r.onChunk = opts.onChunk;
  const warnings: string[] = [];
  const v = new V2Verifier({ onWarning: (w) => warnings.push(w) });
  const rep: InspectReport = { bytes: 0, emulators: [], xenstore: [], verdict: { valid: false, warnings } };
  const vcpus = new Set<number>();
  try {
    for await (const item of decodeV2(r, { format: opts.format ?? 'auto' })) {
      describe(rep, item, vcpus);
      v.push(item);
    }
    rep.verdict.facts = v.end(r.offset);
    rep.verdict.valid = true;
  } catch (e) {
    if (!isStreamCodecError(e)) throw e;
    rep.verdict.error = e.message;
    rep.verdict.errorName = e.name;
  }
  if (rep.libxc) rep.libxc.vcpus = [...vcpus].sort((a, b) => a - b);
  rep.bytes = r.offset;
  return rep;
}

function describe(rep: InspectReport, item: V2Item, vcpus: Set<number>): void {
  switch (item.kind) {
    case 'xl-header': {
      const h = item.header;
      rep.framing ??= 'xl';
      const flags: string[] = [];
      if (h.mandatoryFlags & XL_MANDATORY_FLAG_JSON) flags.push('CONFIG_JSON');
      if (h.mandatoryFlags & XL_MANDATORY_FLAG_STREAMV2) flags.push('STREAM_V2');
      const rest = h.mandatoryFlags & ~3;
      if (rest) flags.push(`0x${rest.toString(16)}`);
      rep.xl = { byteOrder: h.byteOrder, mandatoryFlags: flags, optionalFlags: h.optionalFlags, optionalDataBytes: h.optionalData.byteLength };
      const text = xlConfigText(h);
      if (text !== undefined) {
        try {
          rep.xl.config = (h.mandatoryFlags & XL_MANDATORY_FLAG_JSON) !== 0 ? JSON.parse(text) : undefined;
        } catch {
          /* not JSON: keep the text */
        }
        if (rep.xl.config === undefined) rep.xl.configText = text;
      }
      return;
    }
    case 'libxl-header':
      rep.framing ??= 'libxl';
      rep.libxl = { version: item.header.version, byteOrder: item.header.byteOrder, legacy: item.header.legacy, records: [] };
      return;
    case 'libxl-record':
      return describeLibxl(rep, item);
    case 'image-header':
      rep.framing ??= 'libxc';
      rep.libxc = {
        version: item.header.version,
        byteOrder: item.header.byteOrder,
        guest: '?',
        pageShift: 0,
        xen: '?',
        records: {},
        pages: { entries: 0, withData: 0, byType: {} },
        vcpus: [],
        optionalRecords: 0,
      };
      return;
    case 'domain-header':
      if (rep.libxc) {
        const h = item.header;
        rep.libxc.guest = h.type === 1 ? 'x86 PV' : h.type === 2 ? 'x86 HVM' : `0x${h.type.toString(16)}`;
        rep.libxc.pageShift = h.pageShift;
        rep.libxc.xen = h.xenMajor === 0 ? `converted (tool version ${h.xenMinor})` : `${h.xenMajor}.${h.xenMinor}`;
      }
      return;
    case 'libxc-record':
      return describeLibxc(rep, item, vcpus);
  }
}

function describeLibxl(rep: InspectReport, item: LibxlRecordItem): void {
  rep.libxl?.records.push({ offset: item.offset, name: libxlRecordName(item.type), length: item.length });
  const b = item.body;
  if (b.kind === 'emulator_xenstore_data') rep.xenstore.push({ emulator: emulatorName(b.emulatorId), index: b.index, pairs: b.pairs });
  if (b.kind === 'emulator_context') rep.emulators.push({ emulator: emulatorName(b.emulatorId), index: b.index, bytes: b.data.byteLength, ...describeEmulatorContext(b.data) });
}

function describeLibxc(rep: InspectReport, item: LibxcRecordItem, vcpus: Set<number>): void {
  const x = rep.libxc;
  if (!x) return;
  const name = libxcRecordName(item.type);
  const st = (x.records[name] ??= { count: 0, bytes: 0 });
  st.count++;
  st.bytes += item.length;
  const b = item.body;
  const le = x.byteOrder === 'little';
  switch (b.kind) {
    case 'page_data': {
      const dv = viewOf(b.pfns);
      for (let i = 0; i < b.count; i++) {
        const hi = dv.getUint32(i * 8 + (le ? 4 : 0), le);
        const lo = dv.getUint32(i * 8 + (le ? 0 : 4), le);
        const t = hi >>> 28;
        const pfn = (hi & 0xfffff) * 0x1_0000_0000 + lo;
        const tn = PAGE_TYPE_NAMES[t]!;
        x.pages.byType[tn] = (x.pages.byType[tn] ?? 0) + 1;
        x.pages.entries++;
        if (t <= 4 || (t >= 9 && t <= 0xc)) x.pages.withData++;
        if (x.pages.pfnMin === undefined || pfn < x.pages.pfnMin) x.pages.pfnMin = pfn;
        if (x.pages.pfnMax === undefined || pfn > x.pages.pfnMax) x.pages.pfnMax = pfn;
      }
      return;
    }
    case 'x86_pv_info':
      x.pvInfo = { guestWidth: b.guestWidth * 8, ptLevels: b.ptLevels };
      return;
    case 'x86_pv_p2m_frames':
      x.p2m = { startPfn: b.startPfn, endPfn: b.endPfn, frames: b.frames.length };
      return;
    case 'x86_pv_vcpu':
      vcpus.add(b.vcpuId);
      return;
    case 'x86_tsc_info':
      x.tsc = { mode: b.mode, khz: b.khz, nsec: b.nsec.toString(), incarnation: b.incarnation };
      return;
    case 'hvm_params':
      x.hvmParams = b.params.map((p) => ({ index: p.index.toString(), value: `0x${p.value.toString(16)}` }));
      return;
    case 'x86_cpuid_policy':
      x.cpuidLeaves = b.leaves.length;
      return;
    case 'x86_msr_policy':
      x.msrs = b.entries.length;
      return;
    case 'blob':
      if (item.type === REC.HVM_CONTEXT) for (let i = 0; i < hvmContextCpus(b.data, le); i++) vcpus.add(i);
      if (item.type & 0x8000_0000) x.optionalRecords++;
      return;
    default:
      return;
  }
}

const QEMU_TRAD_SIGNATURE = 'DeviceModelRecord0002';

/** Recognises the QEMU VM state (qemu-xen) or the qemu-traditional record, and lists QEMU device sections. */
export function describeEmulatorContext(data: Uint8Array): { format: string; sections?: string[] } {
  if (data.byteLength >= 8 && ascii.decode(data.subarray(0, 4)) === 'QEVM') {
    const version = viewOf(data).getUint32(4, false);
    return { format: `QEMU VM state v${version}`, sections: qemuSections(data) };
  }
  if (data.byteLength >= QEMU_TRAD_SIGNATURE.length && ascii.decode(data.subarray(0, QEMU_TRAD_SIGNATURE.length)) === QEMU_TRAD_SIGNATURE)
    return { format: `qemu-traditional ${QEMU_TRAD_SIGNATURE}` };
  return { format: 'unknown' };
}

/** Section names of a QEMU VM state: SECTION_FULL/START headers (type 4/1, id u32, len u8, idstr, instance u32, version u32). */
function qemuSections(d: Uint8Array): string[] {
  const out: string[] = [];
  const ok = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x2d || c === 0x2f || c === 0x3a || c === 0x2e;
  for (let i = 8; i + 6 < d.byteLength; i++) {
    if (d[i] !== 4 && d[i] !== 1) continue;
    const len = d[i + 5]!;
    if (len < 3 || i + 6 + len + 8 > d.byteLength) continue;
    let good = true;
    for (let j = 0; j < len && good; j++) good = ok(d[i + 6 + j]!);
    if (!good) continue;
    out.push(ascii.decode(d.subarray(i + 6, i + 6 + len)));
    i += 5 + len + 8;
  }
  return out;
}
