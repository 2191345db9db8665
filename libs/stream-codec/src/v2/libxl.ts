/**
 * The libxl layer (header and records) and the xl save-file header: decode and
 * encode, byte for byte. As in records.ts, decoding checks lengths only; the
 * spec's rules are enforced by the verifier.
 */
import { Cursor, Writer, ascii, bytesEqual, type ByteOrder } from '../bytes';
import { MalformedStreamError } from '../errors';
import {
  LIBXL_HDR_SIZE,
  LIBXL_IDENT,
  LIBXL_OPT_BIG_ENDIAN,
  LIBXL_OPT_LEGACY,
  LIBXL_REC,
  LIBXL_REC_NAME,
  OPTIONAL_RECORD_BIT,
  XL_BYTEORDER_MARKER,
  XL_HDR_SIZE,
  XL_MAGIC,
  XL_MAGIC_SIZE,
} from './constants';
import type { LibxlBody, LibxlHeader, XlHeader } from './types';

export const XL_MAGIC_BYTES = ascii.encode(XL_MAGIC);
export const LIBXL_IDENT_BYTES = ascii.encode(LIBXL_IDENT);

export function libxlRecordName(type: number): string {
  const n = LIBXL_REC_NAME[type];
  if (n) return n;
  return (type & OPTIONAL_RECORD_BIT) !== 0 ? `OPTIONAL_0x${type.toString(16)}` : `UNKNOWN_0x${type.toString(16)}`;
}

/** The fixed 48 bytes of the xl header (without the optional data). */
export function decodeXlHeaderFixed(b: Uint8Array, offset: number): { byteOrder: ByteOrder; mandatoryFlags: number; optionalFlags: number; optionalDataLength: number } {
  if (b.byteLength < XL_HDR_SIZE) throw new MalformedStreamError(offset, 'xl header too short', 'xl header');
  if (!bytesEqual(b.subarray(0, XL_MAGIC_SIZE), XL_MAGIC_BYTES)) throw new MalformedStreamError(offset, 'bad xl magic', 'xl header');
  const dv = new DataView(b.buffer, b.byteOffset + XL_MAGIC_SIZE, 16);
  let le: boolean;
  if (dv.getUint32(0, true) === XL_BYTEORDER_MARKER) le = true;
  else if (dv.getUint32(0, false) === XL_BYTEORDER_MARKER) le = false;
  else throw new MalformedStreamError(offset + XL_MAGIC_SIZE, `byte-order marker 0x${dv.getUint32(0, false).toString(16)} is neither order of 0x01020304`, 'xl header');
  return {
    byteOrder: le ? 'little' : 'big',
    mandatoryFlags: dv.getUint32(4, le),
    optionalFlags: dv.getUint32(8, le),
    optionalDataLength: dv.getUint32(12, le),
  };
}

export function encodeXlHeaderFull(h: XlHeader): Uint8Array[] {
  const w = new Writer(XL_HDR_SIZE, h.byteOrder === 'little');
  w.raw(XL_MAGIC_BYTES).u32(XL_BYTEORDER_MARKER).u32(h.mandatoryFlags).u32(h.optionalFlags).u32(h.optionalData.byteLength);
  return h.optionalData.byteLength ? [w.bytes, h.optionalData] : [w.bytes];
}

/**
 * The domain config xl stores in the optional data: a u32 length (header byte
 * order), then that many bytes of text (JSON when the CONFIG_JSON flag is set,
 * NUL-terminated). Returns undefined when the data is not laid out that way.
 */
export function xlConfigText(h: XlHeader): string | undefined {
  const d = h.optionalData;
  if (d.byteLength < 4) return undefined;
  const n = new DataView(d.buffer, d.byteOffset, 4).getUint32(0, h.byteOrder === 'little');
  if (n > d.byteLength - 4) return undefined;
  let text = d.subarray(4, 4 + n);
  if (text.byteLength && text[text.byteLength - 1] === 0) text = text.subarray(0, text.byteLength - 1);
  return new TextDecoder('utf-8', { fatal: false }).decode(text);
}

/** Builds xl optional data holding a config text the way xl writes it. */
export function xlOptionalDataFor(config: string, byteOrder: ByteOrder): Uint8Array {
  const text = new TextEncoder().encode(config);
  const w = new Writer(4 + text.byteLength + 1, byteOrder === 'little');
  w.u32(text.byteLength + 1).raw(text).u8(0);
  return w.bytes;
}

export function decodeLibxlHeader(b: Uint8Array, offset: number): LibxlHeader {
  if (b.byteLength < LIBXL_HDR_SIZE || !bytesEqual(b.subarray(0, 8), LIBXL_IDENT_BYTES)) throw new MalformedStreamError(offset, 'bad libxl ident (expected "LibxlFmt")', 'libxl header');
  const c = new Cursor(b, false, offset);
  c.pos = 8;
  const version = c.u32();
  const options = c.u32();
  return { version, options, byteOrder: options & LIBXL_OPT_BIG_ENDIAN ? 'big' : 'little', legacy: (options & LIBXL_OPT_LEGACY) !== 0 };
}

export function encodeLibxlHeaderFull(h: LibxlHeader): Uint8Array {
  const w = new Writer(LIBXL_HDR_SIZE, false);
  return w.raw(LIBXL_IDENT_BYTES).u32(h.version).u32(h.options).bytes;
}

function need(cond: boolean, offset: number, rule: string, record: string): void {
  if (!cond) throw new MalformedStreamError(offset, rule, record);
}

export function decodeLibxlBody(type: number, body: Uint8Array, le: boolean, offset: number): LibxlBody {
  const name = libxlRecordName(type);
  const len = body.byteLength;
  const c = new Cursor(body, le, offset);
  switch (type) {
    case LIBXL_REC.END:
    case LIBXL_REC.LIBXC_CONTEXT:
    case LIBXL_REC.CHECKPOINT_END:
      need(len === 0, offset, `${name} record must have body_length 0, not ${len}`, name);
      return { kind: 'empty' };
    case LIBXL_REC.EMULATOR_XENSTORE_DATA:
      need(len >= 8, offset, `${name} body must be at least 8 bytes (emulator_id, index), not ${len}`, name);
      return { kind: 'emulator_xenstore_data', emulatorId: c.u32(), index: c.u32(), pairs: xenstorePairs(body.subarray(8), offset + 8) };
    case LIBXL_REC.EMULATOR_CONTEXT:
      need(len >= 8, offset, `${name} body must be at least 8 bytes (emulator_id, index), not ${len}`, name);
      return { kind: 'emulator_context', emulatorId: c.u32(), index: c.u32(), data: body.subarray(8) };
    case LIBXL_REC.CHECKPOINT_STATE:
      need(len >= 4, offset, `${name} body must hold a 4-byte control_id, not ${len} bytes`, name);
      return { kind: 'checkpoint_state', controlId: c.u32(), rest: body.subarray(4) };
    default:
      return { kind: 'blob', data: body };
  }
}

export function encodeLibxlBody(body: LibxlBody, le: boolean): Uint8Array[] {
  switch (body.kind) {
    case 'empty':
      return [];
    case 'emulator_xenstore_data':
      return [new Writer(8, le).u32(body.emulatorId).u32(body.index).bytes, encodeXenstorePairs(body.pairs)];
    case 'emulator_context':
      return [new Writer(8, le).u32(body.emulatorId).u32(body.index).bytes, body.data];
    case 'checkpoint_state':
      return [new Writer(4, le).u32(body.controlId).bytes, body.rest];
    case 'blob':
      return [body.data];
  }
}

/** Packed NUL-terminated (key, value) strings; empty data is no pairs. */
export function xenstorePairs(data: Uint8Array, offset: number): [string, string][] {
  const rec = 'EMULATOR_XENSTORE_DATA';
  if (data.byteLength === 0) return [];
  if (data[data.byteLength - 1] !== 0) throw new MalformedStreamError(offset + data.byteLength - 1, 'xenstore data not NUL terminated', rec);
  const parts: string[] = [];
  let start = 0;
  for (let i = 0; i < data.byteLength; i++) {
    if (data[i] === 0) {
      parts.push(ascii.decode(data.subarray(start, i)));
      start = i + 1;
    }
  }
  if (parts.length % 2 !== 0) throw new MalformedStreamError(offset, `expected an even number of strings, got ${parts.length}`, rec);
  const pairs: [string, string][] = [];
  for (let i = 0; i < parts.length; i += 2) pairs.push([parts[i]!, parts[i + 1]!]);
  return pairs;
}

export function encodeXenstorePairs(pairs: readonly (readonly [string, string])[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let n = 0;
  for (const [k, v] of pairs) {
    for (const s of [k, v]) {
      const b = ascii.encode(s);
      parts.push(b);
      n += b.byteLength + 1;
    }
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength + 1;
  }
  return out;
}
