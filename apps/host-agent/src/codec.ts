/**
 * The agent's edge of the data path: everything on the wire is v2.
 *  - `toWire`: a legacy source's own image -> v2 (the codec's ingestToV2), with the toolstack width
 *    DETECTED from the stream and cross-checked against the width the host declared; a v2 source
 *    passes through.
 *  - `fromWire`: v2 -> what the target toolstack reads (v2 as is, or legacyFromV2 at its width).
 *  - `verifyWire`: checks the v2 wire stream while it flows (the codec's verifying tee).
 */
import * as codec from '@ferry/stream-codec';
import type { Bitness, RestoreFormat } from '@ferry/contracts';

export class WidthMismatchError extends Error {
  override name = 'WidthMismatchError';
}

/** Converts a source image to the v2 wire stream; throws WidthMismatchError if the detected width is not the declared one. */
export function toWire(stream: AsyncIterable<Uint8Array>, source: { format: 'legacy' | 'v2'; width: Bitness }): AsyncIterable<Uint8Array> {
  if (source.format === 'v2') return stream;
  const { output, facts } = codec.ingestToV2(stream, { format: 'legacy', width: 'auto' });
  return (async function* () {
    yield* output;
    const w = (await facts).toolstackWidth;
    if (w !== undefined && w !== source.width) {
      throw new WidthMismatchError(`the image reads as a ${w}-bit legacy toolstack's, but this host declared ${source.width}-bit`);
    }
  })();
}

/**
 * The v2 wire stream -> what the restoring toolstack reads. `onDropped` hears of what a legacy
 * image leaves out because an old host sets it up itself (the CPU policies, a few HVM params).
 */
export function fromWire(stream: AsyncIterable<Uint8Array>, restore: RestoreFormat, onDropped?: (what: string) => void): AsyncIterable<Uint8Array> {
  if (restore.format === 'v2') return stream;
  return codec.legacyFromV2(stream, { width: restore.width, onDropped });
}

/** Verifies the v2 wire stream as it flows; `facts` rejects if it is bad. */
export function verifyWire(stream: AsyncIterable<Uint8Array>): { output: AsyncIterable<Uint8Array>; facts: Promise<codec.V2Facts> } {
  return codec.verifyingTee(stream);
}

export function isCodecError(e: unknown): boolean {
  return e instanceof codec.StreamCodecError;
}
