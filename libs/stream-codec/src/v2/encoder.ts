/**
 * The v2 encoder: typed items (as decodeV2 yields them, or built by hand) to
 * bytes, in the stream's own byte order or converted to the other one.
 * `encodeV2` yields chunks: small parts (headers, fields) are gathered into
 * buffers of up to 64 KiB, large parts (page contents, blobs) are yielded as the
 * caller's views, never copied. Round trip: encodeV2(decodeV2(x)) === x for every
 * valid stream.
 *
 * Converting the byte order rewrites every header and typed field; opaque blobs
 * whose inner layout is the guest's or the emulator's (vcpu contexts, HVM context,
 * SHARED_INFO, emulator context, optional records) are passed through unchanged.
 */
import type { ByteOrder } from '../bytes';
import { Writer, viewOf } from '../bytes';
import { encodeImageHeader, recordParts } from './frame';
import { encodeLibxlBody, encodeLibxlHeaderFull, encodeXlHeaderFull } from './libxl';
import { encodeLibxcBody, encodePageData } from './records';
import type { DomainHeader, ImageHeader, LibxlHeader, V2Item, XlHeader } from './types';
import { DHDR_SIZE, IHDR_OPT_BIG_ENDIAN, LIBXL_OPT_BIG_ENDIAN } from './constants';

export interface EncodeOptions {
  /** Write in this byte order (default: the order each header declares). */
  byteOrder?: ByteOrder;
}

const COALESCE = 64 * 1024;

/** Encodes items to the bytes of a stream, as chunks. */
export async function* encodeV2(items: AsyncIterable<V2Item> | Iterable<V2Item>, opts: EncodeOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
  const enc = new ItemEncoder(opts);
  let buf: Uint8Array[] = [];
  let n = 0;
  const flush = (): Uint8Array | undefined => {
    if (n === 0) return undefined;
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of buf) {
      out.set(p, o);
      o += p.byteLength;
    }
    buf = [];
    n = 0;
    return out;
  };
  for await (const item of items) {
    for (const part of enc.encode(item)) {
      if (part.byteLength === 0) continue;
      if (part.byteLength >= COALESCE) {
        const f = flush();
        if (f) yield f;
        yield part;
        continue;
      }
      buf.push(part);
      n += part.byteLength;
      if (n >= COALESCE) yield flush()!;
    }
  }
  const f = flush();
  if (f) yield f;
}

/** Encodes one item at a time (keeps the byte orders of the stream it is in). */
export class ItemEncoder {
  private srcLibxlLe = true;
  private srcLibxcLe = true;
  private outLibxlLe = true;
  private outLibxcLe = true;
  constructor(private readonly opts: EncodeOptions = {}) {}

  private target(src: ByteOrder): boolean {
    return (this.opts.byteOrder ?? src) === 'little';
  }

  /** The parts of one item (views where possible). */
  encode(item: V2Item): Uint8Array[] {
    switch (item.kind) {
      case 'xl-header':
        return encodeXlHeaderFull(this.xlHeader(item.header));
      case 'libxl-header': {
        this.srcLibxlLe = item.header.byteOrder === 'little';
        this.outLibxlLe = this.target(item.header.byteOrder);
        return [encodeLibxlHeaderFull(withLibxlOrder(item.header, this.outLibxlLe))];
      }
      case 'image-header': {
        this.srcLibxcLe = item.header.byteOrder === 'little';
        this.outLibxcLe = this.target(item.header.byteOrder);
        return [encodeImageHeaderFull(item.header, this.outLibxcLe)];
      }
      case 'domain-header':
        return [encodeDomainHeaderFull(item.header, this.outLibxcLe)];
      case 'libxl-record':
        return recordParts(item.type, encodeLibxlBody(item.body, this.outLibxlLe), this.outLibxlLe);
      case 'libxc-record': {
        const le = this.outLibxcLe;
        const body = item.body.kind === 'page_data' ? encodePageData(item.body, le, this.srcLibxcLe) : encodeLibxcBody(item.body, le);
        return recordParts(item.type, body, le);
      }
    }
  }

  private xlHeader(h: XlHeader): XlHeader {
    const out = this.opts.byteOrder ?? h.byteOrder;
    if (out === h.byteOrder || h.optionalData.byteLength < 4) return { ...h, byteOrder: out };
    // xl's optional data starts with the config length in the header's byte order.
    const d = h.optionalData.slice();
    const len = viewOf(d).getUint32(0, h.byteOrder === 'little');
    if (len <= d.byteLength - 4) viewOf(d).setUint32(0, len, out === 'little');
    return { ...h, byteOrder: out, optionalData: d };
  }
}

function withLibxlOrder(h: LibxlHeader, le: boolean): LibxlHeader {
  const options = le ? h.options & ~LIBXL_OPT_BIG_ENDIAN : h.options | LIBXL_OPT_BIG_ENDIAN;
  return { ...h, options, byteOrder: le ? 'little' : 'big' };
}

function encodeImageHeaderFull(h: ImageHeader, le: boolean): Uint8Array {
  const b = encodeImageHeader(h.version, !le);
  const dv = viewOf(b);
  const options = le ? h.options & ~IHDR_OPT_BIG_ENDIAN : h.options | IHDR_OPT_BIG_ENDIAN;
  b.set(h.marker.subarray(0, 8), 0);
  dv.setUint16(16, options, false);
  dv.setUint16(18, h.reserved1, false);
  dv.setUint32(20, h.reserved2, false);
  return b;
}

function encodeDomainHeaderFull(h: DomainHeader, le: boolean): Uint8Array {
  return new Writer(DHDR_SIZE, le).u32(h.type).u16(h.pageShift).u16(h.reserved).u32(h.xenMajor).u32(h.xenMinor).bytes;
}

