/**
 * The agent's edge of the data path: everything on the wire is v2.
 *  - `toWire`: a legacy source's own image -> v2 (ingestToV2 when the codec exports it, else its
 *    LegacyConverter), with the toolstack width DETECTED from the stream and cross-checked against
 *    the width the host declared; a v2 source passes through.
 *  - `fromWire`: v2 -> what the target toolstack reads (v2 as is, or legacyFromV2 at its width).
 *  - `verifyWire`: checks the v2 wire stream while it flows (the codec's verifying tee).
 */
import * as codec from '@ferry/stream-codec';
import type { Bitness, RestoreFormat } from '@ferry/contracts';

type Facts = { toolstackWidth?: number; widthSource?: string; guest?: string; guestWidth?: number };
interface IngestApi {
  ingestToV2(source: AsyncIterable<Uint8Array>, opts: { format: 'legacy' | 'v2' | 'auto'; width: 'auto' | Bitness }): { output: AsyncIterable<Uint8Array>; facts: Promise<Facts> };
}
interface DownApi {
  legacyFromV2(source: AsyncIterable<Uint8Array>, opts: { width: Bitness }): AsyncIterable<Uint8Array>;
}

const api = codec as unknown as Partial<IngestApi & DownApi>;

export class WidthMismatchError extends Error {
  override name = 'WidthMismatchError';
}

/** Converts a source image to the v2 wire stream; throws WidthMismatchError if the detected width is not the declared one. */
export function toWire(stream: AsyncIterable<Uint8Array>, source: { format: 'legacy' | 'v2'; width: Bitness }): AsyncIterable<Uint8Array> {
  if (source.format === 'v2') return stream;
  const check = (w: number | undefined): void => {
    if (w !== undefined && w !== source.width) {
      throw new WidthMismatchError(`the image reads as a ${w}-bit legacy toolstack's, but this host declared ${source.width}-bit`);
    }
  };
  if (typeof api.ingestToV2 === 'function') {
    const { output, facts } = api.ingestToV2(stream, { format: 'legacy', width: 'auto' });
    return (async function* () {
      yield* output;
      check((await facts).toolstackWidth);
    })();
  }
  const { output, summary } = codec.convertLegacy(stream, { width: 'auto', format: 'libxl' });
  return (async function* () {
    let checked = false;
    for await (const chunk of output) {
      if (!checked && summary.toolstackWidth !== undefined) {
        check(summary.toolstackWidth);
        checked = true;
      }
      yield chunk;
    }
    check(summary.toolstackWidth);
  })();
}

/** The v2 wire stream -> what the restoring toolstack reads. */
export function fromWire(stream: AsyncIterable<Uint8Array>, restore: RestoreFormat): AsyncIterable<Uint8Array> {
  if (restore.format === 'v2') return stream;
  if (typeof api.legacyFromV2 !== 'function') {
    throw new codec.UnsupportedStreamError('this build of the stream codec has no legacyFromV2 (v2 -> legacy down-conversion)');
  }
  return api.legacyFromV2(stream, { width: restore.width });
}

/** Verifies the v2 wire stream as it flows; `facts` rejects if it is bad. */
export function verifyWire(stream: AsyncIterable<Uint8Array>): { output: AsyncIterable<Uint8Array>; facts: Promise<codec.V2Facts> } {
  return codec.verifyingTee(stream);
}

export function isCodecError(e: unknown): boolean {
  return e instanceof codec.StreamCodecError;
}
