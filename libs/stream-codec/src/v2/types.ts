/**
 * Typed items of a v2 stream, as the decoder yields them and the encoder and the
 * verifier take them. Every item carries its absolute `offset` (of its first byte)
 * and, from the decoder, `raw`: the exact bytes it was decoded from, as views of
 * the input chunks (header, body, padding), so a pass-through can forward them
 * byte-identical without re-encoding.
 *
 * Byte arrays inside bodies are views of the caller's chunks, never copies
 * (PAGE_DATA page contents come as a list of segments for the same reason).
 */
import type { ByteOrder } from '../bytes';

export type Framing = 'xl' | 'libxl' | 'libxc';

export interface XlHeader {
  byteOrder: ByteOrder;
  mandatoryFlags: number;
  optionalFlags: number;
  /** The optional data as stored (xl: u32 config length, then the config text). */
  optionalData: Uint8Array;
}

export interface LibxlHeader {
  version: number;
  options: number;
  byteOrder: ByteOrder;
  legacy: boolean;
}

export interface ImageHeader {
  marker: Uint8Array; // 8 bytes, all 0xff in a valid stream
  version: number;
  options: number;
  byteOrder: ByteOrder;
  reserved1: number; // u16
  reserved2: number; // u32
}

export interface DomainHeader {
  type: number;
  pageShift: number;
  reserved: number;
  xenMajor: number;
  xenMinor: number;
}

// ---- libxc record bodies -------------------------------------------------

export interface EmptyBody {
  kind: 'empty';
}
export interface PageDataBody {
  kind: 'page_data';
  count: number;
  reserved: number;
  /** count 64-bit entries (type << 60 | pfn), in the stream's byte order; a view. */
  pfns: Uint8Array;
  /** The page contents, N * page size bytes, as views of the input. */
  pages: Uint8Array[];
}
export interface PvInfoBody {
  kind: 'x86_pv_info';
  guestWidth: number;
  ptLevels: number;
  reserved1: number; // u16
  reserved2: number; // u32
}
export interface P2mFramesBody {
  kind: 'x86_pv_p2m_frames';
  startPfn: number;
  endPfn: number;
  frames: bigint[];
}
export interface VcpuBody {
  kind: 'x86_pv_vcpu';
  vcpuId: number;
  reserved: number;
  context: Uint8Array;
}
export interface BlobBody {
  /** SHARED_INFO, HVM_CONTEXT, TOOLSTACK, optional records and anything else opaque. */
  kind: 'blob';
  data: Uint8Array;
}
export interface TscInfoBody {
  kind: 'x86_tsc_info';
  mode: number;
  khz: number;
  nsec: bigint;
  incarnation: number;
  reserved: number;
}
export interface HvmParamsBody {
  kind: 'hvm_params';
  count: number;
  reserved: number;
  params: { index: bigint; value: bigint }[];
}
export interface PfnListBody {
  kind: 'pfn_list';
  pfns: bigint[];
}
export interface CpuidPolicyBody {
  kind: 'x86_cpuid_policy';
  leaves: { leaf: number; subleaf: number; a: number; b: number; c: number; d: number }[];
}
export interface MsrPolicyBody {
  kind: 'x86_msr_policy';
  entries: { idx: number; flags: number; val: bigint }[];
}

export type LibxcBody =
  | EmptyBody
  | PageDataBody
  | PvInfoBody
  | P2mFramesBody
  | VcpuBody
  | BlobBody
  | TscInfoBody
  | HvmParamsBody
  | PfnListBody
  | CpuidPolicyBody
  | MsrPolicyBody;

// ---- libxl record bodies -------------------------------------------------

export interface XenstoreDataBody {
  kind: 'emulator_xenstore_data';
  emulatorId: number;
  index: number;
  pairs: [string, string][];
}
export interface EmulatorContextBody {
  kind: 'emulator_context';
  emulatorId: number;
  index: number;
  data: Uint8Array;
}
export interface CheckpointStateBody {
  kind: 'checkpoint_state';
  controlId: number;
  /** Bytes after control_id inside body_length (normally none). */
  rest: Uint8Array;
}
export type LibxlBody = EmptyBody | XenstoreDataBody | EmulatorContextBody | CheckpointStateBody | BlobBody;

// ---- items ---------------------------------------------------------------

interface ItemBase {
  /** Absolute offset of the item's first byte in the input. */
  offset: number;
  /** The exact input bytes of the item (views), set by the decoder. */
  raw?: Uint8Array[];
}
export interface XlHeaderItem extends ItemBase {
  kind: 'xl-header';
  header: XlHeader;
}
export interface LibxlHeaderItem extends ItemBase {
  kind: 'libxl-header';
  header: LibxlHeader;
}
export interface ImageHeaderItem extends ItemBase {
  kind: 'image-header';
  header: ImageHeader;
}
export interface DomainHeaderItem extends ItemBase {
  kind: 'domain-header';
  header: DomainHeader;
}
interface RecordBase extends ItemBase {
  type: number;
  /** body_length as stored. */
  length: number;
  /** The padding bytes as stored (zero in a valid stream). */
  padding: Uint8Array;
}
export interface LibxlRecordItem extends RecordBase {
  kind: 'libxl-record';
  body: LibxlBody;
}
export interface LibxcRecordItem extends RecordBase {
  kind: 'libxc-record';
  body: LibxcBody;
}

export type V2Item = XlHeaderItem | LibxlHeaderItem | ImageHeaderItem | DomainHeaderItem | LibxlRecordItem | LibxcRecordItem;

/** What a verified stream turned out to be. */
export interface V2Facts {
  framing: Framing;
  byteOrder: ByteOrder;
  guest: 'pv' | 'hvm';
  guestWidth?: 32 | 64;
  /** "4.17" from the domain header, "converted" when xen_major is 0. */
  xenVersion: string;
  imageVersion: number;
  /** Pages that carry data (PAGE_DATA entries of a type with contents). */
  pages: number;
  /** Distinct vcpus (PV: vcpu records; HVM: CPU entries of HVM_CONTEXT). */
  vcpus: number;
  /** libxc records, END included. */
  records: number;
  /** libxl records, END included (0 for a bare libxc stream). */
  libxlRecords: number;
  /** Bytes consumed (the whole stream). */
  bytes: number;
  /** Spec advisories that did not fail the stream (e.g. real Xen's HVM_CONTEXT before HVM_PARAMS). */
  warnings: string[];
}
