/**
 * Constants of the v2 formats, written from the specifications
 * (libxc domain image format revision 3, libxl domain image format revision 2,
 * and the xl save-file header).
 */

/** libxc image header: marker, "XENF", version, options; always big-endian. 24 bytes. */
export const IHDR_SIZE = 24;
export const IHDR_ID = 0x58454e46; // "XENF"
export const IHDR_OPT_BIG_ENDIAN = 0x0001;
export const IHDR_OPT_RESERVED_MASK = 0xfffe;
export const IHDR_VERSION_MIN = 2;
export const IHDR_VERSION_MAX = 3;

/** libxc domain header: type, page_shift, reserved, xen_major, xen_minor. 16 bytes. */
export const DHDR_SIZE = 16;
export const DOMAIN_TYPE = { x86_pv: 1, x86_hvm: 2 } as const;
export type DomainTypeName = 'x86_pv' | 'x86_hvm';

/** Record header: type and body_length, in the stream's byte order. */
export const RHDR_SIZE = 8;
export const OPTIONAL_RECORD_BIT = 0x8000_0000;

export const REC = {
  END: 0x00,
  PAGE_DATA: 0x01,
  X86_PV_INFO: 0x02,
  X86_PV_P2M_FRAMES: 0x03,
  X86_PV_VCPU_BASIC: 0x04,
  X86_PV_VCPU_EXTENDED: 0x05,
  X86_PV_VCPU_XSAVE: 0x06,
  SHARED_INFO: 0x07,
  X86_TSC_INFO: 0x08,
  HVM_CONTEXT: 0x09,
  HVM_PARAMS: 0x0a,
  TOOLSTACK: 0x0b,
  X86_PV_VCPU_MSRS: 0x0c,
  VERIFY: 0x0d,
  CHECKPOINT: 0x0e,
  CHECKPOINT_DIRTY_PFN_LIST: 0x0f,
  STATIC_DATA_END: 0x10,
  X86_CPUID_POLICY: 0x11,
  X86_MSR_POLICY: 0x12,
} as const;
export type RecordTypeName = keyof typeof REC;
export const REC_NAME: Readonly<Record<number, RecordTypeName>> = Object.fromEntries(
  Object.entries(REC).map(([k, v]) => [v, k as RecordTypeName]),
);

/** PAGE_DATA pfn entries: type in bits 63-60, reserved 59-52, pfn 51-0. */
export const PAGE_TYPE = {
  NOTAB: 0x0,
  L1TAB: 0x1,
  L2TAB: 0x2,
  L3TAB: 0x3,
  L4TAB: 0x4,
  L1TAB_PIN: 0x9,
  L2TAB_PIN: 0xa,
  L3TAB_PIN: 0xb,
  L4TAB_PIN: 0xc,
  BROKEN: 0xd,
  XALLOC: 0xe,
  XTAB: 0xf,
} as const;
/** Page types that carry page_data in a PAGE_DATA record. */
export function pageTypeHasData(t: number): boolean {
  return t <= 0x4 || (t >= 0x9 && t <= 0xc);
}
export function pageTypeValid(t: number): boolean {
  return t <= 0x4 || t >= 0x9;
}
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;

/**
 * Caps on lengths read from a stream, checked before anything is allocated.
 * REC_LENGTH_MAX matches what Xen's own restore code accepts for one record.
 */
export const LIMITS = {
  recordLengthMax: 128 * 1024 * 1024,
  /** Largest non-PAGE_DATA record body we decode into typed fields. */
  smallRecordMax: 16 * 1024 * 1024,
  pageDataCountMax: 1024 * 1024,
  xlOptionalDataMax: 16 * 1024 * 1024,
  vcpuIdMax: 4095,
} as const;

/** libxl stream header: "LibxlFmt", version, options; always big-endian. 16 bytes. */
export const LIBXL_HDR_SIZE = 16;
export const LIBXL_IDENT = 'LibxlFmt';
export const LIBXL_VERSION = 2;
export const LIBXL_OPT_BIG_ENDIAN = 0x1;
export const LIBXL_OPT_LEGACY = 0x2;
export const LIBXL_OPT_RESERVED_MASK = 0xffff_fffc;

export const LIBXL_REC = {
  END: 0x0,
  LIBXC_CONTEXT: 0x1,
  EMULATOR_XENSTORE_DATA: 0x2,
  EMULATOR_CONTEXT: 0x3,
  CHECKPOINT_END: 0x4,
  CHECKPOINT_STATE: 0x5,
} as const;
export type LibxlRecordTypeName = keyof typeof LIBXL_REC;
export const LIBXL_REC_NAME: Readonly<Record<number, LibxlRecordTypeName>> = Object.fromEntries(
  Object.entries(LIBXL_REC).map(([k, v]) => [v, k as LibxlRecordTypeName]),
);
export const EMULATOR_ID = { unknown: 0, qemu_traditional: 1, qemu_upstream: 2 } as const;

/** xl save-file header: 32-byte magic, then byteorder, mandatory flags, optional flags, optional data length. */
export const XL_MAGIC = 'Xen saved domain, xl format\n \0 \r';
export const XL_MAGIC_SIZE = 32;
export const XL_HDR_SIZE = 48;
export const XL_BYTEORDER_MARKER = 0x01020304;
export const XL_MANDATORY_FLAG_JSON = 0x1;
export const XL_MANDATORY_FLAG_STREAMV2 = 0x2;
