import { Writer, ascii, padTo8 } from '../bytes';
import {
  DHDR_SIZE,
  IHDR_ID,
  IHDR_OPT_BIG_ENDIAN,
  IHDR_SIZE,
  LIBXL_HDR_SIZE,
  LIBXL_IDENT,
  LIBXL_OPT_BIG_ENDIAN,
  LIBXL_OPT_LEGACY,
  LIBXL_VERSION,
  RHDR_SIZE,
  XL_BYTEORDER_MARKER,
  XL_HDR_SIZE,
  XL_MAGIC,
} from './constants';

/**
 * Framing encoders shared by the v2 encoder and the legacy converter. Each returns
 * the exact bytes; bodies given as several parts are never joined (page data stays
 * the caller's view).
 */

const ZEROS = new Uint8Array(8);

/** The 24-byte libxc image header (always big-endian fields). */
export function encodeImageHeader(version: number, bigEndian: boolean): Uint8Array {
  return new Writer(IHDR_SIZE, false)
    .u32(0xffffffff)
    .u32(0xffffffff)
    .u32(IHDR_ID)
    .u32(version)
    .u16(bigEndian ? IHDR_OPT_BIG_ENDIAN : 0)
    .u16(0)
    .u32(0).bytes;
}

/** The 16-byte libxc domain header in the stream's byte order. */
export function encodeDomainHeader(
  type: number,
  pageShift: number,
  xenMajor: number,
  xenMinor: number,
  le: boolean,
): Uint8Array {
  return new Writer(DHDR_SIZE, le).u32(type).u16(pageShift).u16(0).u32(xenMajor).u32(xenMinor).bytes;
}

/** The 16-byte libxl header (always big-endian fields). */
export function encodeLibxlHeader(bigEndian: boolean, legacy: boolean): Uint8Array {
  const w = new Writer(LIBXL_HDR_SIZE, false);
  w.raw(ascii.encode(LIBXL_IDENT));
  w.u32(LIBXL_VERSION);
  w.u32((bigEndian ? LIBXL_OPT_BIG_ENDIAN : 0) | (legacy ? LIBXL_OPT_LEGACY : 0));
  return w.bytes;
}

/** The 48-byte xl header (fields in the writer's byte order, announced by the byte-order marker). */
export function encodeXlHeader(mandatoryFlags: number, optionalFlags: number, optionalDataLength: number, le: boolean): Uint8Array {
  const w = new Writer(XL_HDR_SIZE, le);
  w.raw(ascii.encode(XL_MAGIC));
  w.u32(XL_BYTEORDER_MARKER).u32(mandatoryFlags).u32(optionalFlags).u32(optionalDataLength);
  return w.bytes;
}

/** Record header (type, body_length) in the stream's byte order. */
export function encodeRecordHeader(type: number, length: number, le: boolean): Uint8Array {
  return new Writer(RHDR_SIZE, le).u32(type).u32(length).bytes;
}

/**
 * One record as a list of byte arrays: header, the body parts as given (views,
 * not copies), and zero padding to a multiple of 8. Works for libxc and libxl records.
 */
export function recordParts(type: number, body: readonly Uint8Array[], le: boolean): Uint8Array[] {
  let length = 0;
  for (const b of body) length += b.byteLength;
  const out = [encodeRecordHeader(type, length, le), ...body];
  const pad = padTo8(length);
  if (pad) out.push(ZEROS.subarray(0, pad));
  return out;
}
