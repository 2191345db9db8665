/**
 * The incremental v2 decoder: `decodeV2(source)` pulls chunks of any size and
 * yields every header and record as soon as its last byte has arrived, with
 * `raw` (the exact input bytes, as views) on every item. Memory is bounded by
 * one record plus one chunk; PAGE_DATA contents are views of the input chunks.
 *
 * It follows the framing: xl header -> libxl stream -> (LIBXC_CONTEXT) libxc
 * stream -> back to libxl at the libxc END, and for checkpointed streams back
 * to libxl at each libxc CHECKPOINT until CHECKPOINT_END hands over again.
 * It checks only what it needs to find the next item (idents, lengths against
 * the caps); the spec's rules are V2Verifier's. Errors: TruncatedStreamError
 * when the input ends inside an item, MalformedStreamError otherwise.
 */
import { ascii, padTo8, viewOf } from '../bytes';
import { MalformedStreamError, UnsupportedStreamError } from '../errors';
import { StreamReader } from '../reader';
import { isV2Marker, sniffFraming } from '../sniff';
import type { ByteSource } from '../source';
import { DHDR_SIZE, IHDR_SIZE, LIBXL_HDR_SIZE, LIBXL_REC, LIMITS, REC, RHDR_SIZE, XL_HDR_SIZE, XL_MANDATORY_FLAG_STREAMV2 } from './constants';
import { decodeLibxlBody, decodeLibxlHeader, decodeXlHeaderFixed, libxlRecordName } from './libxl';
import { decodeLibxcBody, decodePageDataHead, libxcRecordName } from './records';
import type { DomainHeaderItem, Framing, ImageHeaderItem, LibxcRecordItem, LibxlRecordItem, V2Item, XlHeaderItem } from './types';

export interface DecodeOptions {
  /** Outermost framing; 'auto' (default) sniffs it from the first bytes. */
  format?: 'auto' | Framing;
  /** Bytes after the final END: 'error' (default, the spec says END is last) or 'ignore' (stop reading). */
  trailing?: 'error' | 'ignore';
  /**
   * PAGE_DATA contents: 'view' (default) yields them as views of the input in
   * `pages` and `raw`; 'discard' reads past them without holding them (`pages`
   * is empty, `raw` lacks them, the record's small parts are copies), so a
   * recycling source keeps reusing the same few buffers. For verifiers.
   */
  pageContents?: 'view' | 'discard';
}

const EMPTY = new Uint8Array(0);

/** Decodes a v2 stream item by item. Pass a StreamReader to share its offset/onChunk. */
export async function* decodeV2(source: ByteSource | StreamReader, opts: DecodeOptions = {}): AsyncGenerator<V2Item, void, undefined> {
  const r = source instanceof StreamReader ? source : new StreamReader(source);
  let framing = opts.format ?? 'auto';
  if (framing === 'auto') framing = await sniff(r);
  if (framing === 'xl') {
    const item = await readXlHeader(r);
    yield item;
    framing = item.header.mandatoryFlags & XL_MANDATORY_FLAG_STREAMV2 ? 'libxl' : 'libxc';
    if (framing === 'libxc' && !isV2Marker(await r.peek(8)))
      throw new UnsupportedStreamError(`xl image holds a legacy (pre-v2) libxc stream at offset ${r.offset}; convert it first`);
  }
  const discard = opts.pageContents === 'discard';
  if (framing === 'libxl') yield* libxlStream(r, discard);
  else yield* libxcStream(r, false, discard);
  if (opts.trailing !== 'ignore' && !(await r.atEnd())) throw new MalformedStreamError(r.offset, 'bytes after the final END record (END shall be the last record)', 'END');
}

async function sniff(r: StreamReader): Promise<Framing> {
  const first = await r.peek(32);
  const f = sniffFraming(first);
  if (f === 'legacy') throw new UnsupportedStreamError('not a v2 stream: no xl magic, "LibxlFmt" ident or libxc image marker (a legacy image? convert it first)');
  if (f === undefined) {
    if (first.byteLength === 0) throw new MalformedStreamError(0, 'empty input', 'header');
    await r.read(32, 'stream header'); // throws TruncatedStreamError
    throw new MalformedStreamError(0, 'unrecognised stream header', 'header');
  }
  return f;
}

async function readXlHeader(r: StreamReader): Promise<XlHeaderItem> {
  const offset = r.offset;
  const fixed = await r.read(XL_HDR_SIZE, 'xl header');
  const h = decodeXlHeaderFixed(fixed, offset);
  if (h.optionalDataLength > LIMITS.xlOptionalDataMax)
    throw new MalformedStreamError(offset + 44, `optional data length ${h.optionalDataLength} exceeds the cap of ${LIMITS.xlOptionalDataMax}`, 'xl header');
  const optionalData = await r.read(h.optionalDataLength, 'xl optional data');
  return {
    kind: 'xl-header',
    offset,
    header: { byteOrder: h.byteOrder, mandatoryFlags: h.mandatoryFlags, optionalFlags: h.optionalFlags, optionalData },
    raw: [fixed, optionalData],
  };
}

async function* libxlStream(r: StreamReader, discard: boolean): AsyncGenerator<V2Item, void, undefined> {
  const offset = r.offset;
  const hb = await r.read(LIBXL_HDR_SIZE, 'libxl header');
  const header = decodeLibxlHeader(hb, offset);
  yield { kind: 'libxl-header', offset, header, raw: [hb] };
  const le = header.byteOrder === 'little';
  let libxc: LibxcState | undefined;
  for (;;) {
    const rec = await readLibxlRecord(r, le);
    yield rec;
    if (rec.type === LIBXL_REC.END) return;
    if (rec.type === LIBXL_REC.LIBXC_CONTEXT) {
      libxc = { le: true };
      yield* libxcHeaders(r, libxc);
      yield* libxcRecords(r, libxc, true, discard);
    } else if (rec.type === LIBXL_REC.CHECKPOINT_END && libxc?.atCheckpoint) {
      libxc.atCheckpoint = false;
      yield* libxcRecords(r, libxc, true, discard);
    }
  }
}

interface LibxcState {
  le: boolean;
  /** The libxc part stopped at a CHECKPOINT and handed the stream to libxl. */
  atCheckpoint?: boolean;
}

async function* libxcStream(r: StreamReader, embedded: boolean, discard: boolean): AsyncGenerator<V2Item, void, undefined> {
  const st: LibxcState = { le: true };
  yield* libxcHeaders(r, st);
  yield* libxcRecords(r, st, embedded, discard);
}

async function* libxcHeaders(r: StreamReader, st: LibxcState): AsyncGenerator<V2Item, void, undefined> {
  const ih = await readImageHeader(r);
  yield ih;
  st.le = ih.header.byteOrder === 'little';
  yield await readDomainHeader(r, st.le);
}

async function* libxcRecords(r: StreamReader, st: LibxcState, embedded: boolean, discard: boolean): AsyncGenerator<V2Item, void, undefined> {
  for (;;) {
    const rec = await readLibxcRecord(r, st.le, discard);
    yield rec;
    if (rec.type === REC.END) return;
    if (rec.type === REC.CHECKPOINT && embedded) {
      st.atCheckpoint = true;
      return;
    }
  }
}

async function readImageHeader(r: StreamReader): Promise<ImageHeaderItem> {
  const offset = r.offset;
  const b = await r.read(IHDR_SIZE, 'libxc image header');
  const dv = viewOf(b);
  if (!isV2Marker(b)) throw new MalformedStreamError(offset, 'bad image marker (expected 0xffffffffffffffff; a legacy image?)', 'image header');
  const id = dv.getUint32(8, false);
  if (id !== 0x58454e46) throw new MalformedStreamError(offset + 8, `bad image id 0x${id.toString(16)} (expected 0x58454e46 "XENF")`, 'image header');
  const options = dv.getUint16(16, false);
  return {
    kind: 'image-header',
    offset,
    header: { marker: b.subarray(0, 8), version: dv.getUint32(12, false), options, byteOrder: options & 1 ? 'big' : 'little', reserved1: dv.getUint16(18, false), reserved2: dv.getUint32(20, false) },
    raw: [b],
  };
}

async function readDomainHeader(r: StreamReader, le: boolean): Promise<DomainHeaderItem> {
  const offset = r.offset;
  const b = await r.read(DHDR_SIZE, 'libxc domain header');
  const dv = viewOf(b);
  return {
    kind: 'domain-header',
    offset,
    header: { type: dv.getUint32(0, le), pageShift: dv.getUint16(4, le), reserved: dv.getUint16(6, le), xenMajor: dv.getUint32(8, le), xenMinor: dv.getUint32(12, le) },
    raw: [b],
  };
}

async function readRecordHeader(r: StreamReader, le: boolean, nameOf: (t: number) => string, cap: number) {
  const offset = r.offset;
  const hdr = await r.read(RHDR_SIZE, 'record header');
  const dv = viewOf(hdr);
  const type = dv.getUint32(0, le);
  const length = dv.getUint32(4, le);
  if (length > cap) throw new MalformedStreamError(offset + 4, `body_length ${length} exceeds the cap of ${cap}`, nameOf(type));
  return { offset, hdr, type, length };
}

async function readPadding(r: StreamReader, length: number): Promise<Uint8Array> {
  const pad = padTo8(length);
  return pad ? await r.read(pad, 'record padding') : EMPTY;
}

async function readLibxcRecord(r: StreamReader, le: boolean, discard = false): Promise<LibxcRecordItem> {
  const { offset, hdr, type, length } = await readRecordHeader(r, le, libxcRecordName, LIMITS.recordLengthMax);
  const name = libxcRecordName(type);
  const bodyAt = offset + RHDR_SIZE;
  if (type === REC.PAGE_DATA) {
    const head = await r.read(Math.min(8, length), 'PAGE_DATA header');
    const { count, reserved } = decodePageDataHead(head, le, length, bodyAt);
    const pfns = await r.read(count * 8, 'PAGE_DATA pfns');
    if (discard) {
      // Copies of the small parts (8 KiB at most), then nothing of this record is held.
      const [h, hd, pf] = [hdr.slice(), head.slice(), pfns.slice()];
      await r.discard(length - 8 - count * 8, 'PAGE_DATA pages');
      const padding = (await readPadding(r, length)).slice();
      return { kind: 'libxc-record', offset, type, length, padding, body: { kind: 'page_data', count, reserved, pfns: pf, pages: [] }, raw: [h, hd, pf, padding] };
    }
    const pages = await r.segments(length - 8 - count * 8, 'PAGE_DATA pages');
    const padding = await readPadding(r, length);
    return { kind: 'libxc-record', offset, type, length, padding, body: { kind: 'page_data', count, reserved, pfns, pages }, raw: [hdr, head, pfns, ...pages, padding] };
  }
  if (length > LIMITS.smallRecordMax) throw new MalformedStreamError(offset + 4, `body_length ${length} exceeds the cap of ${LIMITS.smallRecordMax} for a ${name} record`, name);
  const body = await r.read(length, `${name} record`);
  const padding = await readPadding(r, length);
  return { kind: 'libxc-record', offset, type, length, padding, body: decodeLibxcBody(type, body, le, bodyAt), raw: [hdr, body, padding] };
}

async function readLibxlRecord(r: StreamReader, le: boolean): Promise<LibxlRecordItem> {
  const { offset, hdr, type, length } = await readRecordHeader(r, le, libxlRecordName, LIMITS.recordLengthMax);
  const body = await r.read(length, `libxl ${libxlRecordName(type)} record`);
  const padding = await readPadding(r, length);
  return { kind: 'libxl-record', offset, type, length, padding, body: decodeLibxlBody(type, body, le, offset + RHDR_SIZE), raw: [hdr, body, padding] };
}

/** For messages: the 8 bytes at the start as ASCII when printable. */
export function describeIdent(b: Uint8Array): string {
  return ascii.decode(b.subarray(0, 8)).replace(/[^\x20-\x7e]/g, '.');
}
