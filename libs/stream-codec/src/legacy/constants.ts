/**
 * Constants of the legacy (pre-Xen 4.6) libxc/libxl save image, written from the
 * migration spec's "Legacy Images" section and the layouts documented for the
 * legacy save/restore code. Legacy images are x86 only, so always little-endian;
 * "unsigned long" fields are as wide as the toolstack that wrote the image.
 */

/** Negative chunk ids in the body phase (XC_SAVE_ID_*); 0 ends the body, > 0 is a page batch. */
export const CHUNK = {
  end: 0,
  enableVerifyMode: -1,
  vcpuInfo: -2,
  hvmIdentPt: -3,
  hvmVm86Tss: -4,
  tmem: -5,
  tmemExtra: -6,
  tscInfo: -7,
  hvmConsolePfn: -8,
  lastCheckpoint: -9,
  hvmAcpiIoportsLocation: -10,
  hvmViridian: -11,
  compressedData: -12,
  enableCompression: -13,
  hvmGenerationIdAddr: -14,
  hvmPagingRingPfn: -15,
  hvmMonitorRingPfn: -16,
  hvmSharingRingPfn: -17,
  toolstack: -18,
  hvmIoreqServerPfn: -19,
  hvmNrIoreqServerPages: -20,
} as const;
export type ChunkName = keyof typeof CHUNK;
export const CHUNK_NAME: Readonly<Record<number, ChunkName>> = Object.fromEntries(
  Object.entries(CHUNK).map(([k, v]) => [v, k as ChunkName]),
);
export const CHUNK_MIN = -20;

/** HVM params named in legacy images (xen/include/public/hvm/params.h numbering). */
export const HVM_PARAM = {
  STORE_PFN: 1,
  IOREQ_PFN: 5,
  BUFIOREQ_PFN: 6,
  VIRIDIAN: 9,
  IDENT_PT: 12,
  VM86_TSS: 15,
  CONSOLE_PFN: 17,
  ACPI_IOPORTS_LOCATION: 19,
  PAGING_RING_PFN: 27,
  MONITOR_RING_PFN: 28,
  SHARING_RING_PFN: 29,
  IOREQ_SERVER_PFN: 32,
  NR_IOREQ_SERVER_PAGES: 33,
  VM_GENERATION_ID_ADDR: 34,
} as const;

/**
 * The "{int id; uint32 pad; uint64 data}" chunks that each carry one HVM param, in the
 * order the legacy saver wrote them (it skipped params whose value was 0).
 */
export const HVM_PARAM_CHUNKS: readonly { chunk: number; param: number; name: string }[] = [
  { chunk: CHUNK.hvmGenerationIdAddr, param: HVM_PARAM.VM_GENERATION_ID_ADDR, name: 'generation id address' },
  { chunk: CHUNK.hvmIdentPt, param: HVM_PARAM.IDENT_PT, name: 'EPT identity pagetable' },
  { chunk: CHUNK.hvmPagingRingPfn, param: HVM_PARAM.PAGING_RING_PFN, name: 'paging ring pfn' },
  { chunk: CHUNK.hvmMonitorRingPfn, param: HVM_PARAM.MONITOR_RING_PFN, name: 'monitor ring pfn' },
  { chunk: CHUNK.hvmSharingRingPfn, param: HVM_PARAM.SHARING_RING_PFN, name: 'sharing ring pfn' },
  { chunk: CHUNK.hvmVm86Tss, param: HVM_PARAM.VM86_TSS, name: 'VM86 TSS' },
  { chunk: CHUNK.hvmConsolePfn, param: HVM_PARAM.CONSOLE_PFN, name: 'console pfn' },
  { chunk: CHUNK.hvmAcpiIoportsLocation, param: HVM_PARAM.ACPI_IOPORTS_LOCATION, name: 'ACPI ioport location' },
  { chunk: CHUNK.hvmViridian, param: HVM_PARAM.VIRIDIAN, name: 'viridian' },
  { chunk: CHUNK.hvmIoreqServerPfn, param: HVM_PARAM.IOREQ_SERVER_PFN, name: 'ioreq server pfn' },
  { chunk: CHUNK.hvmNrIoreqServerPages, param: HVM_PARAM.NR_IOREQ_SERVER_PAGES, name: 'ioreq server pages' },
];
export const PARAM_CHUNK_BY_ID: ReadonlyMap<number, { chunk: number; param: number; name: string }> = new Map(
  HVM_PARAM_CHUNKS.map((c) => [c.chunk, c]),
);
export const PARAM_CHUNK_BY_PARAM: ReadonlyMap<number, { chunk: number; param: number; name: string }> = new Map(
  HVM_PARAM_CHUNKS.map((c) => [c.param, c]),
);
/** Size of a param chunk after its id: uint32 pad + uint64 value. */
export const PARAM_CHUNK_BODY = 12;
/** TSC chunk after its id: uint32 mode, uint64 nsec, uint32 khz, uint32 incarnation (packed). */
export const TSC_CHUNK_BODY = 20;

/** Most pages in one batch. */
export const MAX_BATCH = 1024;
/** Highest vcpu id a legacy image can describe. */
export const MAX_VCPU_ID = 4095;

/** Page type in bits 31-28 of a legacy pfn entry; the pfn in bits 27-0. */
export const LEGACY_TYPE_SHIFT = 28;
export const LEGACY_PFN_MASK = 0x0fff_ffff;
/** Entry the saver used as a filler for pfns it could not map: type XTAB, pfn 0. Dropped on conversion. */
export const XTAB_FILLER = 0xf000_0000;
/** Legacy types 0xd (broken), 0xe (allocate-only) and 0xf (invalid) carry no page data. */
export function legacyTypeHasData(t: number): boolean {
  return t < 0xd;
}

/** Extended-info block ids and the "vcpu" block sizes that tell the guest width. */
export const EXT_VCPU = 'vcpu';
export const EXT_EXTV = 'extv';
export const EXT_XCNT = 'xcnt';
/** sizeof(vcpu_guest_context_x86_32): a 32-bit guest with 3-level (PAE) paging. */
export const VCPU_CTXT_32 = 0xaf0;
/** sizeof(vcpu_guest_context_x86_64): a 64-bit guest with 4-level paging. */
export const VCPU_CTXT_64 = 0x1430;
export const VCPU_EXTENDED_SIZE = 128;
export const SHARED_INFO_SIZE = 4096;

/** The qemu tail signatures. Only "DeviceModelRecord0002" (length-prefixed) is convertible. */
export const QEMU_SIG_SIZE = 21;
export const QEMU_SIG_V2 = 'DeviceModelRecord0002';
export const QEMU_SIG_EOF = 'QemuDeviceModelRecord';
export const QEMU_SIG_REMUS = 'RemusDeviceModelState';

/** libxl legacy toolstack chunk version and the physmap entry header (u64 phys, start, size; u32 namelen). */
export const LIBXL_TOOLSTACK_VERSION = 1;
export const PHYSMAP_HDR = 28;

/** Caps on lengths read from legacy images, checked before anything is allocated or consumed. */
export const LEGACY_LIMITS = {
  /** The p2m frames record carries p2m_size - 1 in 32 bits. */
  p2mSizeMax: 0x1_0000_0000,
  /** Buffered: toolstack data parsed for libxl output, the HVM context. */
  toolstackMax: 16 * 1024 * 1024,
  hvmContextMax: 16 * 1024 * 1024,
  /** Streamed, never buffered: the qemu save data. */
  qemuMax: 128 * 1024 * 1024,
  /** Per-vcpu xsave area (Xen's largest is a few KiB). */
  xsaveMax: 1024 * 1024,
  extInfoMax: 1024 * 1024,
  hvmParamsMax: 1024,
  /** Metadata (negative-id) chunks in one body; a saver writes a few dozen. */
  metaChunksMax: 65536,
  xlOptionalDataMax: 16 * 1024 * 1024,
} as const;
