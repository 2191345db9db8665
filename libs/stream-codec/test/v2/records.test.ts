import { describe, expect, it } from 'vitest';
import { concatBytes } from '../../src/source';
import { LIBXL_REC, REC } from '../../src/v2/constants';
import { decodeLibxlBody, encodeLibxlBody, encodeXenstorePairs, xenstorePairs } from '../../src/v2/libxl';
import { decodeLibxcBody, encodeLibxcBody, pageDataBody, pfnEntry } from '../../src/v2/records';
import { hvmContextBlob } from '../../src/v2/synth';
import type { LibxcBody, LibxlBody } from '../../src/v2/types';
import { MalformedStreamError } from '../../src/errors';
import { viewOf } from '../../src/bytes';

const ORDERS = [true, false] as const;
const blob = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

const LIBXC_CASES: [string, number, LibxcBody][] = [
  ['END', REC.END, { kind: 'empty' }],
  ['X86_PV_INFO', REC.X86_PV_INFO, { kind: 'x86_pv_info', guestWidth: 8, ptLevels: 4, reserved1: 0, reserved2: 0 }],
  ['X86_PV_P2M_FRAMES', REC.X86_PV_P2M_FRAMES, { kind: 'x86_pv_p2m_frames', startPfn: 0, endPfn: 0x57ff, frames: [0x1234n, 0xfffffffffffn, 7n] }],
  ['X86_PV_VCPU_BASIC', REC.X86_PV_VCPU_BASIC, { kind: 'x86_pv_vcpu', vcpuId: 3, reserved: 0, context: blob(5168) }],
  ['X86_PV_VCPU_EXTENDED', REC.X86_PV_VCPU_EXTENDED, { kind: 'x86_pv_vcpu', vcpuId: 0, reserved: 0, context: blob(64) }],
  ['X86_PV_VCPU_XSAVE', REC.X86_PV_VCPU_XSAVE, { kind: 'x86_pv_vcpu', vcpuId: 1, reserved: 0, context: blob(848) }],
  ['X86_PV_VCPU_MSRS', REC.X86_PV_VCPU_MSRS, { kind: 'x86_pv_vcpu', vcpuId: 2, reserved: 0, context: new Uint8Array(0) }],
  ['SHARED_INFO', REC.SHARED_INFO, { kind: 'blob', data: blob(4096) }],
  ['X86_TSC_INFO', REC.X86_TSC_INFO, { kind: 'x86_tsc_info', mode: 2, khz: 2596126, nsec: 37146058672n, incarnation: 1, reserved: 0 }],
  ['HVM_CONTEXT', REC.HVM_CONTEXT, { kind: 'blob', data: hvmContextBlob(2, true) }],
  ['HVM_PARAMS', REC.HVM_PARAMS, { kind: 'hvm_params', count: 2, reserved: 0, params: [{ index: 1n, value: 0xfeffcn }, { index: 37n, value: 0x180fc100280n }] }],
  ['TOOLSTACK', REC.TOOLSTACK, { kind: 'blob', data: blob(13) }],
  ['VERIFY', REC.VERIFY, { kind: 'empty' }],
  ['CHECKPOINT', REC.CHECKPOINT, { kind: 'empty' }],
  ['CHECKPOINT_DIRTY_PFN_LIST', REC.CHECKPOINT_DIRTY_PFN_LIST, { kind: 'pfn_list', pfns: [1n, 0xfffffn, 42n] }],
  ['STATIC_DATA_END', REC.STATIC_DATA_END, { kind: 'empty' }],
  ['X86_CPUID_POLICY', REC.X86_CPUID_POLICY, { kind: 'x86_cpuid_policy', leaves: [{ leaf: 0, subleaf: 0xffffffff, a: 0xd, b: 1, c: 2, d: 3 }] }],
  ['X86_MSR_POLICY', REC.X86_MSR_POLICY, { kind: 'x86_msr_policy', entries: [{ idx: 0xce, flags: 0, val: 0x8000000000000001n }] }],
  ['optional 0x80000123', 0x80000123, { kind: 'blob', data: blob(5) }],
];

describe('libxc record bodies: encode/decode round trips', () => {
  for (const [name, type, body] of LIBXC_CASES) {
    for (const le of ORDERS) {
      it(`${name} (${le ? 'little' : 'big'}-endian)`, () => {
        const bytes = concatBytes([new Uint8Array(0), ...encodeLibxcBody(body, le)]);
        const back = decodeLibxcBody(type, bytes, le, 0);
        expect(back).toEqual(body);
        expect(concatBytes([new Uint8Array(0), ...encodeLibxcBody(back, le)])).toEqual(bytes);
      });
    }
  }

  for (const le of ORDERS) {
    it(`PAGE_DATA (${le ? 'little' : 'big'}-endian): pfns as halves, types, pages as views`, () => {
      const pages = blob(2 * 4096);
      const body = pageDataBody([{ type: 0, pfn: 5 }, { type: 0xf, pfn: 0xf_ffff_ffff_ffff }, { type: 0x9, pfn: 0x1_0000_0001 }], [pages.subarray(0, 4096), pages.subarray(4096)], le);
      const bytes = concatBytes(encodeLibxcBody(body, le));
      expect(bytes.byteLength).toBe(8 + 24 + 8192);
      const back = decodeLibxcBody(REC.PAGE_DATA, bytes, le, 0);
      if (back.kind !== 'page_data') throw new Error('kind');
      expect(back.count).toBe(3);
      const dv = viewOf(back.pfns);
      expect(pfnEntry(dv, 0, le)).toEqual({ type: 0, reserved: 0, pfn: 5 });
      expect(pfnEntry(dv, 1, le)).toEqual({ type: 0xf, reserved: 0, pfn: 0xf_ffff_ffff_ffff });
      expect(pfnEntry(dv, 2, le)).toEqual({ type: 9, reserved: 0, pfn: 0x1_0000_0001 });
      expect(concatBytes(back.pages)).toEqual(pages);
      expect(back.pages[0]!.buffer).toBe(bytes.buffer); // a view, not a copy
    });
  }

  it('the two byte orders differ exactly where fields are', () => {
    const body: LibxcBody = { kind: 'x86_tsc_info', mode: 1, khz: 2, nsec: 3n, incarnation: 4, reserved: 0 };
    const le = concatBytes(encodeLibxcBody(body, true));
    const be = concatBytes(encodeLibxcBody(body, false));
    expect(le[0]).toBe(1);
    expect(be[3]).toBe(1);
    expect(be[15]).toBe(3);
  });

  it('length errors are MalformedStreamError naming the record', () => {
    expect(() => decodeLibxcBody(REC.X86_PV_INFO, new Uint8Array(4), true, 100)).toThrow(MalformedStreamError);
    expect(() => decodeLibxcBody(REC.X86_TSC_INFO, new Uint8Array(16), true, 100)).toThrow(/X86_TSC_INFO/);
    expect(() => decodeLibxcBody(REC.HVM_PARAMS, new Uint8Array(16), true, 0)).toThrow(/count/);
    expect(() => decodeLibxcBody(REC.END, new Uint8Array(8), true, 0)).toThrow(/body_length 0/);
    expect(() => decodeLibxcBody(REC.PAGE_DATA, new Uint8Array(8), true, 0)).toThrow(/count must be > 0/);
  });
});

const LIBXL_CASES: [string, number, LibxlBody][] = [
  ['END', LIBXL_REC.END, { kind: 'empty' }],
  ['LIBXC_CONTEXT', LIBXL_REC.LIBXC_CONTEXT, { kind: 'empty' }],
  ['EMULATOR_XENSTORE_DATA', LIBXL_REC.EMULATOR_XENSTORE_DATA, { kind: 'emulator_xenstore_data', emulatorId: 2, index: 0, pairs: [['physmap/1/start_addr', 'f0000000'], ['a', '']] }],
  ['EMULATOR_CONTEXT', LIBXL_REC.EMULATOR_CONTEXT, { kind: 'emulator_context', emulatorId: 1, index: 0, data: blob(100) }],
  ['CHECKPOINT_END', LIBXL_REC.CHECKPOINT_END, { kind: 'empty' }],
  ['CHECKPOINT_STATE', LIBXL_REC.CHECKPOINT_STATE, { kind: 'checkpoint_state', controlId: 2, rest: new Uint8Array(0) }],
  ['optional', 0x80000001, { kind: 'blob', data: blob(3) }],
];

describe('libxl record bodies: encode/decode round trips', () => {
  for (const [name, type, body] of LIBXL_CASES) {
    for (const le of ORDERS) {
      it(`${name} (${le ? 'little' : 'big'}-endian)`, () => {
        const bytes = concatBytes([new Uint8Array(0), ...encodeLibxlBody(body, le)]);
        const back = decodeLibxlBody(type, bytes, le, 0);
        expect(back).toEqual(body);
        expect(concatBytes([new Uint8Array(0), ...encodeLibxlBody(back, le)])).toEqual(bytes);
      });
    }
  }
  it('xenstore data: NUL-terminated pairs', () => {
    const d = encodeXenstorePairs([['k', 'v'], ['x/y', '1']]);
    expect(new TextDecoder().decode(d)).toBe('k\x00v\x00x/y\x001\x00');
    expect(xenstorePairs(d, 0)).toEqual([['k', 'v'], ['x/y', '1']]);
    expect(() => xenstorePairs(d.subarray(0, d.length - 1), 0)).toThrow(/NUL terminated/);
    expect(() => xenstorePairs(new TextEncoder().encode('a\0b\0c\0'), 0)).toThrow(/even number/);
  });
});
