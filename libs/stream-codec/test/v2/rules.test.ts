import { describe, expect, it } from 'vitest';
import { MalformedStreamError, StreamCodecError } from '../../src/errors';
import { LIBXL_REC, REC } from '../../src/v2/constants';
import { pageDataBody } from '../../src/v2/records';
import { synthStream, type SynthOptions } from '../../src/v2/synth';
import type { LibxcBody, LibxlBody, V2Item } from '../../src/v2/types';
import { encodeItems, verifyBytes } from './helpers';

const E = new Uint8Array(0);
const xc = (type: number, body: LibxcBody): V2Item => ({ kind: 'libxc-record', offset: 0, type, length: 0, padding: E, body });
const xl = (type: number, body: LibxlBody): V2Item => ({ kind: 'libxl-record', offset: 0, type, length: 0, padding: E, body });
const isRec = (i: V2Item, t: number) => i.kind === 'libxc-record' && i.type === t;
const isXl = (i: V2Item, t: number) => i.kind === 'libxl-record' && i.type === t;

function items(o: SynthOptions = {}): V2Item[] {
  return [...synthStream({ pages: 8, batch: 4, ...o })];
}
function idx(list: V2Item[], pred: (i: V2Item) => boolean): number {
  const i = list.findIndex(pred);
  if (i < 0) throw new Error('item not found');
  return i;
}
async function verdict(list: V2Item[], opts = {}) {
  return verifyBytes(await encodeItems(list), opts);
}
async function rejects(list: V2Item[], rule: RegExp, opts = {}) {
  const p = verdict(list, opts);
  await expect(p).rejects.toBeInstanceOf(MalformedStreamError);
  await expect(p).rejects.toThrow(rule);
}
function patch<T extends V2Item['kind']>(list: V2Item[], kind: T, f: (i: Extract<V2Item, { kind: T }>) => void): V2Item[] {
  const it = list.find((i) => i.kind === kind) as Extract<V2Item, { kind: T }>;
  f(it);
  return list;
}

describe('headers', () => {
  it('image header: version, reserved option bits and fields', async () => {
    await rejects(patch(items(), 'image-header', (i) => (i.header.version = 4)), /unknown image version 4/);
    await rejects(patch(items(), 'image-header', (i) => (i.header.options |= 0x10)), /reserved bits set in image options/);
    await rejects(patch(items(), 'image-header', (i) => (i.header.reserved2 = 1)), /reserved fields of the image header/);
  });
  it('domain header: type, page_shift, reserved', async () => {
    await rejects(patch(items(), 'domain-header', (i) => (i.header.type = 3)), /unrecognised domain type/);
    await rejects(patch(items(), 'domain-header', (i) => (i.header.pageShift = 13)), /page_shift 13/);
    await rejects(patch(items(), 'domain-header', (i) => (i.header.reserved = 1)), /reserved field/);
  });
  it('libxl header: version and reserved bits; xl mandatory flags', async () => {
    await rejects(patch(items(), 'libxl-header', (i) => (i.header.version = 3)), /unknown libxl version 3/);
    await rejects(patch(items(), 'libxl-header', (i) => (i.header.options |= 0x100)), /reserved bits set in options/);
    await rejects(patch(items({ framing: 'xl' }), 'xl-header', (i) => (i.header.mandatoryFlags |= 0x8)), /unknown mandatory flags 0x8/);
  });
  it('the requested format must match', async () => {
    const b = await encodeItems(items({ framing: 'xl' }));
    await expect(verifyBytes(b, { format: 'libxl' })).rejects.toThrow(/LibxlFmt/);
    await expect(verifyBytes(b, { format: 'libxc' })).rejects.toThrow(/image marker/);
    await expect(verifyBytes(b, { format: 'xl' })).resolves.toBeTruthy();
  });
});

describe('records', () => {
  it('unknown mandatory records fail, optional ones pass untouched', async () => {
    const l = items();
    l.splice(idx(l, (i) => isRec(i, REC.X86_TSC_INFO)), 0, xc(0x80001234, { kind: 'blob', data: new Uint8Array(3) }));
    await expect(verdict(l)).resolves.toBeTruthy();
    const m = items();
    m.splice(idx(m, (i) => isRec(i, REC.X86_TSC_INFO)), 0, xc(0x13, { kind: 'blob', data: new Uint8Array(3) }));
    await rejects(m, /unrecognised mandatory record type 0x13/);
    const x = items();
    x.splice(idx(x, (i) => isXl(i, LIBXL_REC.END)), 0, xl(0x6, { kind: 'blob', data: E }), xl(0x80000006, { kind: 'blob', data: E }));
    await rejects(x, /unrecognised mandatory record type 0x6/);
  });

  it('PAGE_DATA: reserved, types, duplicates, data exactly for the types that carry it', async () => {
    const page = new Uint8Array(4096);
    const withPd = (body: LibxcBody) => {
      const l = items();
      l.splice(idx(l, (i) => isRec(i, REC.X86_TSC_INFO)), 0, xc(REC.PAGE_DATA, body));
      return l;
    };
    await rejects(withPd(pageDataBody([{ type: 0, pfn: 100 }, { type: 0, pfn: 100 }], [page, page], true)), /duplicate pfn 0x64/);
    // Rising pfns need no set; the check still holds after the order breaks, against pfns seen before.
    const pd = (pfns: number[]) => withPd(pageDataBody(pfns.map((pfn) => ({ type: 0, pfn })), pfns.map(() => page), true));
    await rejects(pd([1, 2, 3, 2]), /duplicate pfn 0x2 in pfn\[3\]/);
    await rejects(pd([7, 9, 4, 5, 9]), /duplicate pfn 0x9 in pfn\[4\]/);
    await rejects(pd([0x1_0000_0005, 0x5, 0x1_0000_0005]), /duplicate pfn 0x100000005/);
    await expect(verdict(pd([9, 3, 1, 2, 0x1_0000_0003]))).resolves.toBeTruthy();
    await rejects(withPd(pageDataBody([{ type: 5, pfn: 100 }], [page], true)), /invalid page type 0x5/);
    await rejects(withPd(pageDataBody([{ type: 0xf, pfn: 100 }], [page], true)), /0 of 1 pfns carry data/);
    await rejects(withPd(pageDataBody([{ type: 0x1, pfn: 100 }], [], true)), /1 of 1 pfns carry data/);
    const resv = pageDataBody([{ type: 0, pfn: 100 }], [page], true);
    resv.pfns[6] = 0x10; // bits 52-59
    await rejects(withPd(resv), /reserved bits set in pfn\[0\]/);
    await rejects(withPd({ ...pageDataBody([{ type: 0, pfn: 1 }], [page], true), reserved: 1 }), /reserved field/);
    await expect(verdict(withPd(pageDataBody([{ type: 0xd, pfn: 1000 }, { type: 0xe, pfn: 1001 }, { type: 0xc, pfn: 1002 }], [page], true)))).resolves.toBeTruthy();
  });

  it('SHARED_INFO is exactly one page; X86_PV_INFO fields; P2M frame count', async () => {
    await rejects(
      items().map((i) => (isRec(i, REC.SHARED_INFO) ? xc(REC.SHARED_INFO, { kind: 'blob', data: new Uint8Array(4000) }) : i)),
      /exactly one page/,
    );
    await rejects(
      items().map((i) => (isRec(i, REC.X86_PV_INFO) ? xc(REC.X86_PV_INFO, { kind: 'x86_pv_info', guestWidth: 5, ptLevels: 4, reserved1: 0, reserved2: 0 }) : i)),
      /guest width 5/,
    );
    await rejects(
      items().map((i) => (isRec(i, REC.X86_PV_P2M_FRAMES) ? xc(REC.X86_PV_P2M_FRAMES, { kind: 'x86_pv_p2m_frames', startPfn: 0, endPfn: 7, frames: [1n, 2n] }) : i)),
      /2 p2m frames .* \(expected 1\)/,
    );
  });

  it('errata: zero-content vcpu and HVM_PARAMS records are tolerated with a warning', async () => {
    const pv = items().map((i) => (isRec(i, REC.X86_PV_VCPU_XSAVE) ? xc(REC.X86_PV_VCPU_XSAVE, { kind: 'x86_pv_vcpu', vcpuId: 0, reserved: 0, context: E }) : i));
    expect((await verdict(pv)).warnings.join()).toMatch(/zero content/);
    const hvm = items({ guest: 'hvm' }).map((i) => (isRec(i, REC.HVM_PARAMS) ? xc(REC.HVM_PARAMS, { kind: 'hvm_params', count: 0, reserved: 0, params: [] }) : i));
    expect((await verdict(hvm)).warnings.join()).toMatch(/zero content/);
    await rejects(items({ guest: 'hvm' }).map((i) => (isRec(i, REC.HVM_CONTEXT) ? xc(REC.HVM_CONTEXT, { kind: 'blob', data: E }) : i)), /zero-length HVM_CONTEXT/);
  });

  it('TOOLSTACK is accepted with a warning; CHECKPOINT_DIRTY_PFN_LIST only on the back channel', async () => {
    const t = items();
    t.splice(idx(t, (i) => isRec(i, REC.END)), 0, xc(REC.TOOLSTACK, { kind: 'blob', data: new Uint8Array(5) }));
    expect((await verdict(t)).warnings.join()).toMatch(/TOOLSTACK/);
    const d = items();
    d.splice(idx(d, (i) => isRec(i, REC.END)), 0, xc(REC.CHECKPOINT_DIRTY_PFN_LIST, { kind: 'pfn_list', pfns: [1n] }));
    await rejects(d, /back channel/);
    await expect(verdict(d, { backChannel: true })).resolves.toBeTruthy();
  });

  it('padding must be zero; bytes after END fail', async () => {
    const b = await encodeItems(items({ framing: 'libxc' }));
    // X86_PV_INFO is the first record (offset 40), body 8: no padding. CPUID policy: 48 bytes. Use X86_PV_VCPU_XSAVE? Simpler: append.
    const extra = new Uint8Array(b.byteLength + 8);
    extra.set(b);
    await expect(verifyBytes(extra)).rejects.toThrow(/bytes after the final END/);
    const l = items();
    l.splice(idx(l, (i) => isRec(i, REC.END)), 0, xc(0x80000001, { kind: 'blob', data: new Uint8Array(3) }));
    const bytes = await encodeItems(l);
    const endAt = bytes.byteLength - 8 /* libxl END */ - 8; /* libxc END */
    bytes[endAt - 1] = 1; // last padding byte of the optional record
    await expect(verifyBytes(bytes)).rejects.toThrow(/padding contains non-zero bytes/);
  });

  it('lengths are checked against the caps before anything is read', async () => {
    const b = await encodeItems(items({ framing: 'libxc' }));
    const bad = b.slice(0, 48);
    new DataView(bad.buffer).setUint32(44, 0xfffffff8, true); // first record's body_length
    await expect(verifyBytes(bad)).rejects.toThrow(/exceeds the cap/);
  });
});

describe('ordering and layout', () => {
  it('PV: X86_PV_INFO -> X86_PV_P2M_FRAMES -> PAGE_DATA -> vcpu records', async () => {
    const l = items({ version: 2, framing: 'libxc' });
    const p2m = l.splice(idx(l, (i) => isRec(i, REC.X86_PV_P2M_FRAMES)), 1)[0]!;
    l.splice(idx(l, (i) => isRec(i, REC.X86_PV_INFO)), 0, p2m);
    await rejects(l, /X86_PV_P2M_FRAMES before X86_PV_INFO/);
    const m = items();
    const pd = m.splice(idx(m, (i) => isRec(i, REC.PAGE_DATA)), 1)[0]!;
    m.splice(idx(m, (i) => isRec(i, REC.X86_PV_P2M_FRAMES)), 0, pd);
    await rejects(m, /PAGE_DATA before X86_PV_P2M_FRAMES/);
    const v = items();
    const vc = v.splice(idx(v, (i) => isRec(i, REC.X86_PV_VCPU_BASIC)), 1)[0]!;
    v.splice(idx(v, (i) => isRec(i, REC.PAGE_DATA)), 0, vc);
    await rejects(v, /before any PAGE_DATA/);
    await rejects(items().filter((i) => !isRec(i, REC.X86_PV_VCPU_BASIC) && !isRec(i, REC.X86_PV_VCPU_EXTENDED) && !isRec(i, REC.X86_PV_VCPU_XSAVE)), /without vcpu records/);
  });

  it('HVM: PV records are refused; HVM_CONTEXT before HVM_PARAMS is a warning (an error with strictOrder)', async () => {
    const l = items({ guest: 'hvm' });
    const params = l.splice(idx(l, (i) => isRec(i, REC.HVM_PARAMS)), 1)[0]!;
    l.splice(idx(l, (i) => isRec(i, REC.END)), 0, params);
    expect((await verdict(l)).warnings.join()).toMatch(/HVM_CONTEXT .* before HVM_PARAMS/);
    await rejects(l, /HVM_CONTEXT before HVM_PARAMS/, { strictOrder: true });
    const s = items({ guest: 'hvm' });
    s.splice(idx(s, (i) => isRec(i, REC.END)), 0, xc(REC.SHARED_INFO, { kind: 'blob', data: new Uint8Array(4096) }));
    await rejects(s, /SHARED_INFO record in an HVM stream/);
  });

  it('STATIC_DATA_END: required in v3, refused in v2, static records before it', async () => {
    await rejects(items().filter((i) => !isRec(i, REC.STATIC_DATA_END)), /before STATIC_DATA_END/);
    await rejects(items({ guest: 'hvm' }).filter((i) => !isRec(i, REC.STATIC_DATA_END) && !isRec(i, REC.PAGE_DATA) && !isRec(i, REC.HVM_CONTEXT) && !isRec(i, REC.HVM_PARAMS) && !isRec(i, REC.X86_TSC_INFO)), /without STATIC_DATA_END/);
    const v2 = items({ version: 2 });
    v2.splice(idx(v2, (i) => isRec(i, REC.END)), 0, xc(REC.STATIC_DATA_END, { kind: 'empty' }));
    await rejects(v2, /STATIC_DATA_END record in a v2 stream/);
    const late = items();
    late.splice(idx(late, (i) => isRec(i, REC.END)), 0, xc(REC.X86_MSR_POLICY, { kind: 'x86_msr_policy', entries: [{ idx: 1, flags: 0, val: 0n }] }));
    await rejects(late, /after STATIC_DATA_END/);
  });

  it('libxl: LIBXC_CONTEXT once, END last, checkpoints hand over and back', async () => {
    await rejects(items().filter((i) => !(i.kind === 'libxl-record' && i.type === LIBXL_REC.LIBXC_CONTEXT) && i.kind !== 'image-header' && i.kind !== 'domain-header' && i.kind !== 'libxc-record'), /before any LIBXC_CONTEXT/);
    // A checkpointed stream: libxc CHECKPOINT -> libxl records -> CHECKPOINT_END -> libxc continues.
    const c = items();
    const at = idx(c, (i) => isRec(i, REC.X86_TSC_INFO));
    c.splice(at, 0, xc(REC.CHECKPOINT, { kind: 'empty' }), xl(LIBXL_REC.CHECKPOINT_STATE, { kind: 'checkpoint_state', controlId: 0, rest: E }), xl(LIBXL_REC.CHECKPOINT_END, { kind: 'empty' }));
    await expect(verdict(c)).resolves.toBeTruthy();
    const bad = items();
    bad.splice(idx(bad, (i) => isXl(i, LIBXL_REC.END)), 0, xl(LIBXL_REC.CHECKPOINT_END, { kind: 'empty' }));
    await rejects(bad, /CHECKPOINT_END without a libxc CHECKPOINT/);
    const st = items();
    st.splice(idx(st, (i) => isXl(i, LIBXL_REC.END)), 0, xl(LIBXL_REC.CHECKPOINT_STATE, { kind: 'checkpoint_state', controlId: 9, rest: E }));
    await rejects(st, /control_id 9/);
  });

  it('libxl emulator records: known emulator ids, xenstore key characters', async () => {
    const h = items({ guest: 'hvm' }).map((i) =>
      isXl(i, LIBXL_REC.EMULATOR_XENSTORE_DATA) ? xl(LIBXL_REC.EMULATOR_XENSTORE_DATA, { kind: 'emulator_xenstore_data', emulatorId: 2, index: 0, pairs: [['bad key!', 'v']] }) : i,
    );
    await rejects(h, /xenstore key/);
    const e = items({ guest: 'hvm' }).map((i) => (isXl(i, LIBXL_REC.EMULATOR_CONTEXT) ? xl(LIBXL_REC.EMULATOR_CONTEXT, { kind: 'emulator_context', emulatorId: 7, index: 0, data: E }) : i));
    await rejects(e, /unrecognised emulator id 0x7/);
  });

  it('every failure is a StreamCodecError with offset, rule and record', async () => {
    try {
      await verdict(patch(items(), 'domain-header', (i) => (i.header.type = 9)));
      throw new Error('accepted');
    } catch (e) {
      expect(e).toBeInstanceOf(StreamCodecError);
      expect(e).toMatchObject({ offset: 48, record: 'domain header' });
      expect((e as MalformedStreamError).rule).toMatch(/domain type/);
    }
  });
});
