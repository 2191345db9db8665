/**
 * Tells the outermost framing of a stream from its first bytes (32 are enough):
 * the xl save-file magic, the libxl "LibxlFmt" ident, or the libxc image marker
 * (eight 0xff octets). Anything else is 'legacy' when it could be a pre-v2 libxc
 * image (the marker test of the libxc spec), else undefined.
 */
import { bytesEqual } from './bytes';
import { LIBXL_IDENT_BYTES, XL_MAGIC_BYTES } from './v2/libxl';
import type { Framing } from './v2/types';

export function sniffFraming(first: Uint8Array): Framing | 'legacy' | undefined {
  if (first.byteLength >= 32 && bytesEqual(first.subarray(0, 32), XL_MAGIC_BYTES)) return 'xl';
  if (first.byteLength < 32 && bytesEqual(first, XL_MAGIC_BYTES.subarray(0, first.byteLength))) return undefined; // too short to tell
  if (first.byteLength >= 8 && bytesEqual(first.subarray(0, 8), LIBXL_IDENT_BYTES)) return 'libxl';
  if (first.byteLength >= 8 && isV2Marker(first)) return 'libxc';
  if (first.byteLength >= 8) return 'legacy';
  return undefined;
}

/** The libxc image marker: eight 0xff octets. Legacy images have a zero bit in there. */
export function isV2Marker(b: Uint8Array): boolean {
  if (b.byteLength < 8) return false;
  for (let i = 0; i < 8; i++) if (b[i] !== 0xff) return false;
  return true;
}
