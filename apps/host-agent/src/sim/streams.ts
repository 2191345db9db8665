/**
 * What a simulated toolstack writes and reads. The writer is one pluggable function per stream
 * format (`StreamWriter`): v2 through the codec's encoder, legacy through the codec's legacy writer.
 * The reader (`readImage`) accepts only what the toolstack could read and feeds the pages to a
 * GuestMemory (which derives the digest from the bytes).
 */
import {
  DOMAIN_TYPE,
  LIBXL_REC,
  REC,
  Writer,
  convertLegacy,
  decodeV2,
  encodeV2,
  hvmContextBlob,
  pageDataBody,
  writeLegacy,
  type LegacyBodyItem,
  type LegacyVcpu,
  type V2Item,
  type LibxcBody,
  type LibxlBody,
} from '@ferry/stream-codec';
import type { Bitness, Toolstack } from '@ferry/contracts';
import { PAGE_SIZE, type GuestMemory } from './memory';

/** One batch of pages: pfns[i]'s contents are data[i*4096, (i+1)*4096). */
export interface PageBatch {
  pfns: Uint32Array;
  data: Uint8Array;
}

export interface SimImage {
  guest: 'pv' | 'hvm';
  /** PV only. */
  guestWidth: Bitness;
  vcpus: number;
  /** pfns in the guest's physmap. */
  pages: number;
  xenVersion: string;
  /** All rounds, in order (a pfn may come again). Pull-driven. */
  batches: AsyncIterable<PageBatch>;
}

export type StreamWriter = (img: SimImage) => AsyncIterable<Uint8Array>;

/** Xen's HVM param numbers (public/hvm/params.h). */
const HVM_PARAM_IDENT_PT = 12;
const HVM_PARAM_ACPI_IOPORTS_LOCATION = 19;
const VCPU_CTXT = { 32: 0xaf0, 64: 0x1430 } as const;
const EMPTY = new Uint8Array(0);

function vcpuContext(width: Bitness, id: number): Uint8Array {
  return new Uint8Array(VCPU_CTXT[width]).fill(id + 1);
}

function xenVersionParts(v: string): [number, number] {
  const [a, b] = v.split('.').map((x) => Number.parseInt(x, 10));
  return [Number.isFinite(a) ? a! : 4, Number.isFinite(b) ? b! : 17];
}

async function* v2Items(img: SimImage): AsyncGenerator<V2Item, void, undefined> {
  let off = 0;
  const xc = (type: number, body: LibxcBody): V2Item => ({ kind: 'libxc-record', offset: off++, type, length: 0, padding: EMPTY, body });
  const xl = (type: number, body: LibxlBody): V2Item => ({ kind: 'libxl-record', offset: off++, type, length: 0, padding: EMPTY, body });
  const pv = img.guest === 'pv';
  const [xenMajor, xenMinor] = xenVersionParts(img.xenVersion);
  yield { kind: 'libxl-header', offset: off++, header: { version: 2, options: 0, byteOrder: 'little', legacy: false } };
  if (!pv) yield xl(LIBXL_REC.EMULATOR_XENSTORE_DATA, { kind: 'emulator_xenstore_data', emulatorId: 2, index: 0, pairs: [['physmap/f0000000/start_addr', 'f0000000'], ['physmap/f0000000/size', '800000'], ['physmap/f0000000/name', 'vga.vram']] });
  yield xl(LIBXL_REC.LIBXC_CONTEXT, { kind: 'empty' });
  yield { kind: 'image-header', offset: off++, header: { marker: new Uint8Array(8).fill(0xff), version: 3, options: 0, byteOrder: 'little', reserved1: 0, reserved2: 0 } };
  yield { kind: 'domain-header', offset: off++, header: { type: pv ? DOMAIN_TYPE.x86_pv : DOMAIN_TYPE.x86_hvm, pageShift: 12, reserved: 0, xenMajor, xenMinor } };
  const wbytes = img.guestWidth === 64 ? 8 : 4;
  if (pv) yield xc(REC.X86_PV_INFO, { kind: 'x86_pv_info', guestWidth: wbytes, ptLevels: wbytes === 8 ? 4 : 3, reserved1: 0, reserved2: 0 });
  yield xc(REC.X86_CPUID_POLICY, { kind: 'x86_cpuid_policy', leaves: [{ leaf: 0, subleaf: 0xffffffff, a: 0xd, b: 0x756e6547, c: 0x6c65746e, d: 0x49656e69 }] });
  yield xc(REC.X86_MSR_POLICY, { kind: 'x86_msr_policy', entries: [{ idx: 0xce, flags: 0, val: 0n }] });
  yield xc(REC.STATIC_DATA_END, { kind: 'empty' });
  if (pv) {
    const fpp = PAGE_SIZE / wbytes;
    const frames: bigint[] = [];
    for (let i = 0; i <= Math.floor((img.pages - 1) / fpp); i++) frames.push(BigInt(0x10000 + i));
    yield xc(REC.X86_PV_P2M_FRAMES, { kind: 'x86_pv_p2m_frames', startPfn: 0, endPfn: img.pages - 1, frames });
  }
  for await (const b of img.batches) {
    const entries = Array.from(b.pfns, (pfn) => ({ type: 0, pfn }));
    yield xc(REC.PAGE_DATA, pageDataBody(entries, [b.data], true));
  }
  yield xc(REC.X86_TSC_INFO, { kind: 'x86_tsc_info', mode: 0, khz: 2_600_000, nsec: 37_146_058_672n, incarnation: 1, reserved: 0 });
  if (pv) {
    yield xc(REC.SHARED_INFO, { kind: 'blob', data: new Uint8Array(PAGE_SIZE) });
    for (let v = 0; v < img.vcpus; v++) {
      yield xc(REC.X86_PV_VCPU_BASIC, { kind: 'x86_pv_vcpu', vcpuId: v, reserved: 0, context: vcpuContext(img.guestWidth, v) });
      yield xc(REC.X86_PV_VCPU_EXTENDED, { kind: 'x86_pv_vcpu', vcpuId: v, reserved: 0, context: new Uint8Array(128) });
    }
  } else {
    yield xc(REC.HVM_PARAMS, { kind: 'hvm_params', count: 2, reserved: 0, params: [{ index: 12n, value: 0xfeffc000n }, { index: 19n, value: 1n }] });
    yield xc(REC.HVM_CONTEXT, { kind: 'blob', data: hvmContextBlob(img.vcpus, true) });
  }
  yield xc(REC.END, { kind: 'empty' });
  if (!pv) {
    const qevm = new Writer(16, false).raw(new Uint8Array([0x51, 0x45, 0x56, 0x4d])).u32(3).u8(0x1f).bytes;
    yield xl(LIBXL_REC.EMULATOR_CONTEXT, { kind: 'emulator_context', emulatorId: 2, index: 0, data: qevm.subarray(0, 9) });
  }
  yield xl(LIBXL_REC.END, { kind: 'empty' });
}

/** A v2 toolstack (Xen >= 4.6): libxl framing around a libxc v3 image, little-endian. */
export const writeV2: StreamWriter = (img) => encodeV2(v2Items(img));

async function* legacyPages(batches: AsyncIterable<PageBatch>): AsyncGenerator<LegacyBodyItem, void, undefined> {
  for await (const b of batches) {
    for (let i = 0; i < b.pfns.length; i++) yield { pfn: b.pfns[i]!, type: 0, data: b.data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE) };
    // an empty raw item ends the writer's batch here: a legacy batch never mixes two rounds (no pfn twice)
    yield { raw: EMPTY };
  }
}

/** A legacy toolstack (Xen <= 4.5) of the given dom0 width: what xc_domain_save + libxl put on the wire. */
export function legacyWriter(toolstackWidth: Bitness): StreamWriter {
  return (img) => {
    const pv = img.guest === 'pv';
    const vcpus: LegacyVcpu[] = [];
    for (let v = 0; v < img.vcpus; v++) vcpus.push(pv ? { id: v, basic: vcpuContext(img.guestWidth, v), extended: new Uint8Array(128) } : { id: v });
    return writeLegacy({
      guest: img.guest,
      toolstackWidth,
      ...(pv ? { guestWidth: img.guestWidth } : {}),
      p2mSize: img.pages,
      vcpus,
      pages: legacyPages(img.batches),
      tsc: { mode: 0, nsec: 37_146_058_672n, khz: 2_600_000, incarnation: 1 },
      ...(pv
        ? {}
        : {
            magicPfns: { ioreq: 0xfeff0, bufioreq: 0xfeff1, store: 0xfeff2 },
            hvmContext: hvmContextBlob(img.vcpus, true),
            hvmParams: { [HVM_PARAM_IDENT_PT]: 0xfeffc000, [HVM_PARAM_ACPI_IOPORTS_LOCATION]: 1 },
            toolstack: { physmap: [{ physOffset: 0xf0000000, startAddr: 0xf0000000, size: 0x800000, name: 'vga.vram' }] },
            qemu: new Uint8Array([0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3, 0x1f]),
          }),
    });
  };
}

export function writerFor(ts: Toolstack): StreamWriter {
  return ts.streamFormat === 'v2' ? writeV2 : legacyWriter(ts.bitness);
}

export interface ReadFacts {
  guest: 'pv' | 'hvm';
  guestWidth?: Bitness;
  pagesRestored: number;
  vcpus: number;
}

export class RestoreRefused extends Error {
  override name = 'RestoreRefused';
}

/**
 * Reads a save stream the way toolstack `ts` would and restores its pages into `mem`.
 * A legacy toolstack reads legacy images of ITS width only (a 64-bit one fed a 32-bit image fails
 * in the width check, as xc_domain_restore did); a v2 toolstack reads v2.
 */
export async function readImage(ts: Toolstack, stream: AsyncIterable<Uint8Array>, mem: GuestMemory, onBytes?: (n: number) => void): Promise<ReadFacts> {
  let v2: AsyncIterable<Uint8Array> = stream;
  if (ts.streamFormat === 'legacy') {
    v2 = convertLegacy(stream, { width: ts.bitness, format: 'libxl' }).output;
  }
  const facts: ReadFacts = { guest: 'pv', pagesRestored: 0, vcpus: 0 };
  const scratch = new Uint8Array(PAGE_SIZE);
  let sawEnd = false;
  for await (const item of decodeV2(v2)) {
    if (item.kind === 'domain-header') facts.guest = item.header.type === DOMAIN_TYPE.x86_hvm ? 'hvm' : 'pv';
    if (item.kind !== 'libxc-record') continue;
    const body = item.body;
    if (body.kind === 'x86_pv_info') facts.guestWidth = body.guestWidth === 8 ? 64 : 32;
    else if (body.kind === 'x86_pv_vcpu' && item.type === REC.X86_PV_VCPU_BASIC) facts.vcpus++;
    else if (item.type === REC.HVM_CONTEXT) facts.vcpus = Math.max(facts.vcpus, 1);
    else if (item.type === REC.END) sawEnd = true;
    else if (body.kind === 'page_data') {
      const pv = new DataView(body.pfns.buffer, body.pfns.byteOffset, body.pfns.byteLength);
      let seg = 0;
      let segOff = 0;
      for (let i = 0; i < body.count; i++) {
        // inline pfnEntry: no object per page
        const hi = pv.getUint32(i * 8 + 4, true);
        if (hi >>> 28 >= 0xd) continue; // broken / xalloc / xtab: no data
        const pfn = (hi & 0xfffff) * 0x1_0000_0000 + pv.getUint32(i * 8, true);
        // the page may sit inside one segment or straddle two
        let cur = body.pages[seg]!;
        while (segOff >= cur.byteLength) {
          seg++;
          segOff = 0;
          cur = body.pages[seg]!;
        }
        if (segOff + PAGE_SIZE <= cur.byteLength) {
          mem.acceptAt(pfn, cur, segOff);
          segOff += PAGE_SIZE;
        } else {
          let got = 0;
          while (got < PAGE_SIZE) {
            cur = body.pages[seg]!;
            const n = Math.min(PAGE_SIZE - got, cur.byteLength - segOff);
            scratch.set(cur.subarray(segOff, segOff + n), got);
            got += n;
            segOff += n;
            if (segOff >= cur.byteLength && got < PAGE_SIZE) {
              seg++;
              segOff = 0;
            }
          }
          mem.acceptAt(pfn, scratch, 0);
        }
        facts.pagesRestored++;
      }
      onBytes?.(body.count * PAGE_SIZE);
    }
  }
  if (!sawEnd) throw new RestoreRefused('stream ended without an END record');
  return facts;
}
