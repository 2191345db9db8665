import { viewOf } from './bytes';
import { UnsupportedStreamError } from './errors';
import { LegacyConverter } from './legacy/convert';
import { StreamReader } from './reader';
import { sniffFraming } from './sniff';
import type { ByteSource } from './source';
import { XL_BYTEORDER_MARKER, XL_MANDATORY_FLAG_STREAMV2 } from './v2/constants';
import { streamFactsOf, verifyingTee, type StreamFacts } from './verify';

/**
 * Any save image -> a verified v2 stream (docs/codec-api.md). v2 input (libxc, libxl
 * or xl framing) passes through byte-identical, verified on the fly; legacy input is
 * converted to libxl framing (an xl header keeps its place, with STREAM_V2 set) and
 * the converted stream is verified too, so nothing unverified leaves.
 */
export interface IngestOptions {
  format?: 'auto' | 'v2' | 'legacy';
  width?: 'auto' | 32 | 64;
  guest?: 'auto' | 'pv' | 'hvm';
}

/** Everything still unread in a reader, as views of its chunks. */
export async function* readerRemainder(r: StreamReader): AsyncGenerator<Uint8Array, void, undefined> {
  while (!(await r.atEnd())) yield* await r.segments(r.available, 'input');
}

/** Is what the reader holds a v2 stream (true), a legacy image (false)? Looks without consuming. */
export async function sniffV2(r: StreamReader): Promise<boolean> {
  const head = await r.peek(48);
  const f = sniffFraming(head);
  if (f === 'libxl' || f === 'libxc') return true;
  if (f === 'xl') {
    if (head.byteLength < 40) return true; // let the v2 decoder report the truncation
    const dv = viewOf(head);
    const le = dv.getUint32(32, true) === XL_BYTEORDER_MARKER;
    return (dv.getUint32(36, le) & XL_MANDATORY_FLAG_STREAMV2) !== 0;
  }
  return false;
}

export function ingestToV2(source: ByteSource, opts: IngestOptions = {}): { output: AsyncIterable<Uint8Array>; facts: Promise<StreamFacts> } {
  let resolve!: (f: StreamFacts) => void;
  let reject!: (e: unknown) => void;
  const facts = new Promise<StreamFacts>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  facts.catch(() => undefined); // the same error surfaces from output
  async function* output(): AsyncGenerator<Uint8Array, void, undefined> {
    try {
      const r = new StreamReader(source);
      const format = opts.format ?? 'auto';
      const v2 = await sniffV2(r);
      if (format !== 'auto') assertFormat(v2, format);
      if (v2) {
        const tee = verifyingTee(readerRemainder(r));
        yield* tee.output;
        resolve(streamFactsOf(await tee.facts));
        return;
      }
      const conv = new LegacyConverter(r, { width: opts.width ?? 'auto', guest: opts.guest ?? 'auto', format: 'libxl', xl: 'auto', qemuOptional: true });
      const tee = verifyingTee(conv.run(), { format: 'auto' });
      yield* tee.output;
      const f = await tee.facts;
      const s = conv.summary;
      const out: StreamFacts = { ...streamFactsOf(f), input: 'legacy', bytesIn: s.bytesIn, bytesOut: f.bytes };
      if (s.toolstackWidth) out.toolstackWidth = s.toolstackWidth;
      if (s.widthSource) out.widthSource = s.widthSource;
      if (s.guestSource) out.guestSource = s.guestSource;
      resolve(out);
    } catch (e) {
      reject(e);
      throw e;
    }
  }
  return { output: output(), facts };
}

/** Refuses a format the caller pinned when the bytes say otherwise. */
export function assertFormat(isV2: boolean, wanted: 'v2' | 'legacy'): void {
  if ((wanted === 'v2') !== isV2) throw new UnsupportedStreamError(`expected a ${wanted} stream, found a ${isV2 ? 'v2' : 'legacy'} one`);
}
