/**
 * Synthetic v2 streams for tests, benchmarks and demos: a valid PV or HVM
 * stream of any size in either byte order, with xl/libxl/libxc framing, as
 * items (feed them to encodeV2). Page contents are views of one shared buffer
 * (filled with a pattern), so even a multi-GiB stream costs no memory.
 */
import type { ByteOrder } from '../bytes';
import { Writer } from '../bytes';
import { IHDR_OPT_BIG_ENDIAN, LIBXL_OPT_BIG_ENDIAN, LIBXL_REC, PAGE_SIZE, REC, XL_MANDATORY_FLAG_JSON, XL_MANDATORY_FLAG_STREAMV2 } from './constants';
import { xlOptionalDataFor } from './libxl';
import { pageDataBody } from './records';
import type { LibxcBody, LibxlBody, V2Item } from './types';

export interface SynthOptions {
  guest?: 'pv' | 'hvm';
  framing?: 'xl' | 'libxl' | 'libxc';
  byteOrder?: ByteOrder;
  /** Pages with data (default 64). */
  pages?: number;
  /** Pages per PAGE_DATA record (default 1024, as Xen's save code). */
  batch?: number;
  vcpus?: number;
  /** libxc image version 2 or 3 (default 3). */
  version?: 2 | 3;
  /** Every n-th pfn is sent as XTAB (no data), 0 = none. */
  xtabEvery?: number;
  guestWidth?: 4 | 8;
}

const EMPTY = new Uint8Array(0);

function sharedPages(n: number): Uint8Array {
  const b = new Uint8Array(n * PAGE_SIZE);
  for (let i = 0; i < b.length; i += 64) b[i] = (i / 64) & 0xff;
  return b;
}

export function* synthStream(o: SynthOptions = {}): Generator<V2Item, void, undefined> {
  const guest = o.guest ?? 'pv';
  const framing = o.framing ?? 'libxl';
  const byteOrder = o.byteOrder ?? 'little';
  const le = byteOrder === 'little';
  const pages = o.pages ?? 64;
  const batch = o.batch ?? 1024;
  const vcpus = o.vcpus ?? 1;
  const version = o.version ?? 3;
  const width = o.guestWidth ?? 8;
  let off = 0; // offsets are informational for synthetic items
  const xc = (type: number, body: LibxcBody): V2Item => ({ kind: 'libxc-record', offset: off++, type, length: 0, padding: EMPTY, body });
  const xl = (type: number, body: LibxlBody): V2Item => ({ kind: 'libxl-record', offset: off++, type, length: 0, padding: EMPTY, body });
  if (framing === 'xl') {
    const config = JSON.stringify({ c_info: { type: guest, name: `synth-${guest}` }, b_info: { max_memkb: pages * 4, max_vcpus: vcpus } });
    yield { kind: 'xl-header', offset: off++, header: { byteOrder, mandatoryFlags: XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMV2, optionalFlags: 0, optionalData: xlOptionalDataFor(config, byteOrder) } };
  }
  if (framing !== 'libxc') {
    yield { kind: 'libxl-header', offset: off++, header: { version: 2, options: le ? 0 : LIBXL_OPT_BIG_ENDIAN, byteOrder, legacy: false } };
    if (guest === 'hvm') yield xl(LIBXL_REC.EMULATOR_XENSTORE_DATA, { kind: 'emulator_xenstore_data', emulatorId: 2, index: 0, pairs: [['physmap/1/start_addr', 'f0000000'], ['physmap/1/size', '800000']] });
    yield xl(LIBXL_REC.LIBXC_CONTEXT, { kind: 'empty' });
  }
  yield { kind: 'image-header', offset: off++, header: { marker: new Uint8Array(8).fill(0xff), version, options: le ? 0 : IHDR_OPT_BIG_ENDIAN, byteOrder, reserved1: 0, reserved2: 0 } };
  yield { kind: 'domain-header', offset: off++, header: { type: guest === 'pv' ? 1 : 2, pageShift: 12, reserved: 0, xenMajor: 4, xenMinor: 17 } };
  const totalPfns = o.xtabEvery ? pages + Math.floor(pages / (o.xtabEvery - 1)) + 1 : pages;
  if (guest === 'pv') yield xc(REC.X86_PV_INFO, { kind: 'x86_pv_info', guestWidth: width, ptLevels: width === 8 ? 4 : 3, reserved1: 0, reserved2: 0 });
  if (version === 3) {
    yield xc(REC.X86_CPUID_POLICY, { kind: 'x86_cpuid_policy', leaves: [{ leaf: 0, subleaf: 0xffffffff, a: 0xd, b: 0x756e6547, c: 0x6c65746e, d: 0x49656e69 }, { leaf: 1, subleaf: 0xffffffff, a: 0x306c3, b: 0, c: 0x80000000, d: 0x1 }] });
    yield xc(REC.X86_MSR_POLICY, { kind: 'x86_msr_policy', entries: [{ idx: 0xce, flags: 0, val: 0n }] });
    yield xc(REC.STATIC_DATA_END, { kind: 'empty' });
  }
  if (guest === 'pv') {
    const fpp = PAGE_SIZE / width;
    const frames: bigint[] = [];
    for (let i = 0; i <= Math.floor((totalPfns - 1) / fpp); i++) frames.push(BigInt(0x10000 + i));
    yield xc(REC.X86_PV_P2M_FRAMES, { kind: 'x86_pv_p2m_frames', startPfn: 0, endPfn: totalPfns - 1, frames });
  }
  const shared = sharedPages(Math.min(batch, pages));
  let pfn = 0;
  let sent = 0;
  while (sent < pages) {
    const entries: { type: number; pfn: number }[] = [];
    let withData = 0;
    while (entries.length < batch && sent + withData < pages) {
      const xtab = o.xtabEvery && pfn % o.xtabEvery === o.xtabEvery - 1;
      entries.push({ type: xtab ? 0xf : guest === 'pv' && pfn === 1 ? 0x9 : 0, pfn });
      if (!xtab) withData++;
      pfn++;
    }
    sent += withData;
    yield xc(REC.PAGE_DATA, pageDataBody(entries, withData ? [shared.subarray(0, withData * PAGE_SIZE)] : [], le));
  }
  yield xc(REC.X86_TSC_INFO, { kind: 'x86_tsc_info', mode: 0, khz: 2_600_000, nsec: 37_146_058_672n, incarnation: 1, reserved: 0 });
  if (guest === 'pv') {
    yield xc(REC.SHARED_INFO, { kind: 'blob', data: new Uint8Array(PAGE_SIZE) });
    for (let v = 0; v < vcpus; v++) {
      yield xc(REC.X86_PV_VCPU_BASIC, { kind: 'x86_pv_vcpu', vcpuId: v, reserved: 0, context: new Uint8Array(width === 8 ? 5168 : 2800).fill(v) });
      yield xc(REC.X86_PV_VCPU_EXTENDED, { kind: 'x86_pv_vcpu', vcpuId: v, reserved: 0, context: new Uint8Array(64) });
      yield xc(REC.X86_PV_VCPU_XSAVE, { kind: 'x86_pv_vcpu', vcpuId: v, reserved: 0, context: new Uint8Array(848) });
    }
  } else {
    yield xc(REC.HVM_PARAMS, { kind: 'hvm_params', count: 2, reserved: 0, params: [{ index: 1n, value: 0xfeffcn }, { index: 19n, value: 1n }] });
    yield xc(REC.HVM_CONTEXT, { kind: 'blob', data: hvmContextBlob(vcpus, le) });
  }
  yield xc(REC.END, { kind: 'empty' });
  if (framing !== 'libxc') {
    if (guest === 'hvm') {
      const qevm = new Writer(16, false).raw(new Uint8Array([0x51, 0x45, 0x56, 0x4d])).u32(3).u8(0x1f).bytes; // "QEVM" v3, then EOF marker
      yield xl(LIBXL_REC.EMULATOR_CONTEXT, { kind: 'emulator_context', emulatorId: 2, index: 0, data: qevm.subarray(0, 9) });
    }
    yield xl(LIBXL_REC.END, { kind: 'empty' });
  }
}

/** An HVM context blob: HEADER, one CPU entry per vcpu, END (typecode, instance, length, data). */
export function hvmContextBlob(vcpus: number, le: boolean): Uint8Array {
  const cpu = 64;
  const w = new Writer(8 + 24 + vcpus * (8 + cpu) + 8, le);
  w.u16(1).u16(0).u32(24).u32(0x54381286).u32(0).u32(0).u32(0).u64(0);
  for (let v = 0; v < vcpus; v++) w.u16(2).u16(v).u32(cpu).zero(cpu);
  w.u16(0).u16(0).u32(0);
  return w.bytes;
}
