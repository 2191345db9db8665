/**
 * libxc record bodies: decode a body (already cut to body_length) into its typed
 * form and encode it back, byte for byte, in either byte order. Decoding checks
 * only what it needs to cut fields (lengths); the rules of the spec (reserved
 * fields zero, widths, ordering...) are the verifier's job (v2/verifier.ts).
 *
 * PAGE_DATA is decoded in two steps by the decoder (its head, then the page
 * contents as views), see `decodePageDataHead`.
 */
import { Cursor, Writer } from '../bytes';
import { MalformedStreamError } from '../errors';
import { LIMITS, OPTIONAL_RECORD_BIT, REC, REC_NAME } from './constants';
import type { LibxcBody, PageDataBody } from './types';

export function libxcRecordName(type: number): string {
  const n = REC_NAME[type];
  if (n) return n;
  return (type & OPTIONAL_RECORD_BIT) !== 0 ? `OPTIONAL_0x${type.toString(16)}` : `UNKNOWN_0x${type.toString(16)}`;
}

function need(cond: boolean, offset: number, rule: string, record: string): void {
  if (!cond) throw new MalformedStreamError(offset, rule, record);
}

/** The PAGE_DATA head (count, reserved) and how many pfn bytes follow; checks the length fits. */
export function decodePageDataHead(head: Uint8Array, le: boolean, length: number, offset: number): { count: number; reserved: number } {
  need(length >= 8, offset, `body of ${length} bytes is shorter than the 8-byte PAGE_DATA header`, 'PAGE_DATA');
  const c = new Cursor(head, le);
  const count = c.u32();
  const reserved = c.u32();
  need(count > 0, offset, 'count must be > 0', 'PAGE_DATA');
  need(count <= LIMITS.pageDataCountMax, offset, `count ${count} exceeds the cap of ${LIMITS.pageDataCountMax}`, 'PAGE_DATA');
  need(8 + count * 8 <= length, offset, `count ${count} needs ${8 + count * 8} bytes of pfns but body_length is ${length}`, 'PAGE_DATA');
  return { count, reserved };
}

/** Decodes any libxc body except PAGE_DATA (whose pages come as segments). */
export function decodeLibxcBody(type: number, body: Uint8Array, le: boolean, offset: number): LibxcBody {
  const name = libxcRecordName(type);
  const len = body.byteLength;
  const c = new Cursor(body, le, offset);
  switch (type) {
    case REC.END:
    case REC.VERIFY:
    case REC.CHECKPOINT:
    case REC.STATIC_DATA_END:
      need(len === 0, offset, `${name} record must have body_length 0, not ${len}`, name);
      return { kind: 'empty' };
    case REC.PAGE_DATA: {
      const { count, reserved } = decodePageDataHead(body.subarray(0, 8), le, len, offset);
      return { kind: 'page_data', count, reserved, pfns: body.subarray(8, 8 + count * 8), pages: len > 8 + count * 8 ? [body.subarray(8 + count * 8)] : [] };
    }
    case REC.X86_PV_INFO:
      need(len === 8, offset, `X86_PV_INFO body must be 8 bytes, not ${len}`, name);
      return { kind: 'x86_pv_info', guestWidth: c.u8(), ptLevels: c.u8(), reserved1: c.u16(), reserved2: c.u32() };
    case REC.X86_PV_P2M_FRAMES: {
      need(len >= 8 && len % 8 === 0, offset, `X86_PV_P2M_FRAMES body must be a multiple of 8 and at least 8 bytes, not ${len}`, name);
      const startPfn = c.u32();
      const endPfn = c.u32();
      const frames: bigint[] = [];
      while (c.remaining >= 8) frames.push(c.u64big());
      return { kind: 'x86_pv_p2m_frames', startPfn, endPfn, frames };
    }
    case REC.X86_PV_VCPU_BASIC:
    case REC.X86_PV_VCPU_EXTENDED:
    case REC.X86_PV_VCPU_XSAVE:
    case REC.X86_PV_VCPU_MSRS:
      need(len >= 8, offset, `${name} body must be at least 8 bytes (vcpu_id, reserved), not ${len}`, name);
      return { kind: 'x86_pv_vcpu', vcpuId: c.u32(), reserved: c.u32(), context: body.subarray(8) };
    case REC.X86_TSC_INFO:
      need(len === 24, offset, `X86_TSC_INFO body must be 24 bytes, not ${len}`, name);
      return { kind: 'x86_tsc_info', mode: c.u32(), khz: c.u32(), nsec: c.u64big(), incarnation: c.u32(), reserved: c.u32() };
    case REC.HVM_PARAMS: {
      need(len >= 8, offset, `HVM_PARAMS body must be at least 8 bytes, not ${len}`, name);
      const count = c.u32();
      const reserved = c.u32();
      need(len === 8 + count * 16, offset, `HVM_PARAMS with count ${count} must be ${8 + count * 16} bytes, not ${len}`, name);
      const params: { index: bigint; value: bigint }[] = [];
      for (let i = 0; i < count; i++) params.push({ index: c.u64big(), value: c.u64big() });
      return { kind: 'hvm_params', count, reserved, params };
    }
    case REC.CHECKPOINT_DIRTY_PFN_LIST: {
      need(len % 8 === 0, offset, `CHECKPOINT_DIRTY_PFN_LIST body must be a multiple of 8, not ${len}`, name);
      const pfns: bigint[] = [];
      while (c.remaining >= 8) pfns.push(c.u64big());
      return { kind: 'pfn_list', pfns };
    }
    case REC.X86_CPUID_POLICY: {
      need(len % 24 === 0, offset, `X86_CPUID_POLICY body must be a multiple of 24 bytes, not ${len}`, name);
      const leaves: { leaf: number; subleaf: number; a: number; b: number; c: number; d: number }[] = [];
      while (c.remaining >= 24) leaves.push({ leaf: c.u32(), subleaf: c.u32(), a: c.u32(), b: c.u32(), c: c.u32(), d: c.u32() });
      return { kind: 'x86_cpuid_policy', leaves };
    }
    case REC.X86_MSR_POLICY: {
      need(len % 16 === 0, offset, `X86_MSR_POLICY body must be a multiple of 16 bytes, not ${len}`, name);
      const entries: { idx: number; flags: number; val: bigint }[] = [];
      while (c.remaining >= 16) entries.push({ idx: c.u32(), flags: c.u32(), val: c.u64big() });
      return { kind: 'x86_msr_policy', entries };
    }
    default:
      // SHARED_INFO, HVM_CONTEXT, TOOLSTACK, optional and unknown records: opaque.
      return { kind: 'blob', data: body };
  }
}

/** Encodes a typed body in the given byte order; opaque parts are returned as the caller's views. */
export function encodeLibxcBody(body: LibxcBody, le: boolean): Uint8Array[] {
  switch (body.kind) {
    case 'empty':
      return [];
    case 'page_data':
      return encodePageData(body, le);
    case 'x86_pv_info':
      return [new Writer(8, le).u8(body.guestWidth).u8(body.ptLevels).u16(body.reserved1).u32(body.reserved2).bytes];
    case 'x86_pv_p2m_frames': {
      const w = new Writer(8 + body.frames.length * 8, le).u32(body.startPfn).u32(body.endPfn);
      for (const f of body.frames) w.u64(f);
      return [w.bytes];
    }
    case 'x86_pv_vcpu':
      return [new Writer(8, le).u32(body.vcpuId).u32(body.reserved).bytes, body.context];
    case 'blob':
      return [body.data];
    case 'x86_tsc_info':
      return [new Writer(24, le).u32(body.mode).u32(body.khz).u64(body.nsec).u32(body.incarnation).u32(body.reserved).bytes];
    case 'hvm_params': {
      const w = new Writer(8 + body.params.length * 16, le).u32(body.count).u32(body.reserved);
      for (const p of body.params) w.u64(p.index).u64(p.value);
      return [w.bytes];
    }
    case 'pfn_list': {
      const w = new Writer(body.pfns.length * 8, le);
      for (const p of body.pfns) w.u64(p);
      return [w.bytes];
    }
    case 'x86_cpuid_policy': {
      const w = new Writer(body.leaves.length * 24, le);
      for (const l of body.leaves) w.u32(l.leaf).u32(l.subleaf).u32(l.a).u32(l.b).u32(l.c).u32(l.d);
      return [w.bytes];
    }
    case 'x86_msr_policy': {
      const w = new Writer(body.entries.length * 16, le);
      for (const e of body.entries) w.u32(e.idx).u32(e.flags).u64(e.val);
      return [w.bytes];
    }
  }
}

/**
 * PAGE_DATA: head and pfns in the target byte order (the pfn array is swapped
 * when `pfnsLe` differs from `le`), page contents passed through as views.
 */
export function encodePageData(body: PageDataBody, le: boolean, pfnsLe = le): Uint8Array[] {
  const head = new Writer(8, le).u32(body.count).u32(body.reserved).bytes;
  const pfns = pfnsLe === le ? body.pfns : swap64(body.pfns);
  return [head, pfns, ...body.pages];
}

/** Reverses every 8-byte group (byte-order change of a u64 array) into a new array. */
export function swap64(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.byteLength);
  for (let i = 0; i + 8 <= b.byteLength; i += 8) for (let j = 0; j < 8; j++) out[i + j] = b[i + 7 - j]!;
  return out;
}

/** Builds a PAGE_DATA body from (type, pfn) entries and page contents (helper for encoders/tests). */
export function pageDataBody(entries: readonly { type: number; pfn: number }[], pages: Uint8Array[], le: boolean): PageDataBody {
  const w = new Writer(entries.length * 8, le);
  for (const e of entries) w.u64hl(((e.type & 0xf) << 28) | Math.floor(e.pfn / 0x1_0000_0000), e.pfn >>> 0);
  return { kind: 'page_data', count: entries.length, reserved: 0, pfns: w.bytes, pages };
}

/** The type (bits 63-60), reserved bits (59-52) and pfn (51-0) of entry i, read as 32-bit halves. */
export function pfnEntry(pfns: DataView, i: number, le: boolean): { type: number; reserved: number; pfn: number } {
  const hi = pfns.getUint32(i * 8 + (le ? 4 : 0), le);
  const lo = pfns.getUint32(i * 8 + (le ? 0 : 4), le);
  return { type: hi >>> 28, reserved: (hi >>> 20) & 0xff, pfn: (hi & 0xfffff) * 0x1_0000_0000 + lo };
}
