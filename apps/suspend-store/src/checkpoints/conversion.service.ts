import { Injectable } from '@nestjs/common';
import * as codec from '@ferry/stream-codec';

/**
 * The one place that calls the stream codec (@ferry/stream-codec, API in docs/codec-api.md).
 * Everything else in the store sees only these types.
 */

export type DeclaredFormat = 'auto' | 'v2' | 'legacy';
export type DeclaredWidth = 'auto' | 32 | 64;
export type DeclaredGuest = 'auto' | 'pv' | 'hvm';

export interface IngestOptions {
  format: DeclaredFormat;
  width: DeclaredWidth;
  guest: DeclaredGuest;
}

/** What the codec learnt about an image while reading it (mirrors the codec's StreamFacts). */
export interface ImageFacts {
  framing: 'xl' | 'libxl' | 'libxc';
  input: 'v2' | 'legacy';
  byteOrder: 'little' | 'big';
  guest: 'pv' | 'hvm';
  guestWidth?: 32 | 64;
  toolstackWidth?: 32 | 64;
  widthSource?: 'declared' | 'detected';
  guestSource?: 'declared' | 'detected';
  xenVersion?: string;
  pages: number;
  vcpus: number;
  records: number;
  bytesIn: number;
  bytesOut: number;
}

/** Why the codec refused an image, for a 422 body and the refusal metric. */
export interface CodecRefusal {
  reason: 'malformed' | 'truncated' | 'unsupported' | 'ambiguous' | 'invalid';
  message: string;
}

type ByteSource = AsyncIterable<Uint8Array>;
interface CodecApi {
  ingestToV2(
    source: ByteSource,
    opts?: { format?: DeclaredFormat; width?: DeclaredWidth; guest?: DeclaredGuest },
  ): { output: AsyncIterable<Uint8Array>; facts: Promise<ImageFacts> };
  legacyFromV2(source: ByteSource, opts: { width: 32 | 64 }): AsyncIterable<Uint8Array>;
}

/** Interim, while the codec's ingestToV2/legacyFromV2 are not in this build: v2 only, verified. */
const interim: CodecApi = {
  ingestToV2(source, opts) {
    if (opts?.format === 'legacy') throw new codec.UnsupportedStreamError('legacy input needs ingestToV2, not in this codec build');
    const t = codec.verifyingTee(source);
    return { output: t.output, facts: t.facts.then((f) => codec.streamFactsOf(f) as ImageFacts) };
  },
  legacyFromV2() {
    throw new codec.UnsupportedStreamError('down-conversion needs legacyFromV2, not in this codec build');
  },
};

function api(): CodecApi {
  const c = codec as unknown as Partial<CodecApi>;
  if (typeof c.ingestToV2 !== 'function' || typeof c.legacyFromV2 !== 'function') return interim;
  return c as CodecApi;
}

@Injectable()
export class ConversionService {
  /**
   * Any input (v2 with libxc/libxl/xl framing, or legacy) -> a verified v2 stream. `output`
   * throws as soon as the input is found bad; `facts` resolves once output is consumed.
   */
  ingest(source: AsyncIterable<Uint8Array>, opts: IngestOptions): { output: AsyncIterable<Uint8Array>; facts: Promise<ImageFacts> } {
    const r = api().ingestToV2(source, { format: opts.format, width: opts.width, guest: opts.guest });
    // The caller awaits facts only after output succeeded; keep a rejection from being unhandled meanwhile.
    r.facts.catch(() => undefined);
    return r;
  }

  /** A stored v2 stream -> legacy at the given toolstack width, for hosts not upgraded yet. */
  toLegacy(source: AsyncIterable<Uint8Array>, width: 32 | 64): AsyncIterable<Uint8Array> {
    return api().legacyFromV2(source, { width });
  }

  /** A codec error as a refusal, or null for anything else (I/O errors, bugs). */
  refusal(e: unknown): CodecRefusal | null {
    if (!(e instanceof codec.StreamCodecError) || e instanceof codec.NeedMoreBytesError) return null;
    const message = e.message.split('\n')[0] ?? e.message;
    if (e instanceof codec.MalformedStreamError) return { reason: 'malformed', message };
    if (e instanceof codec.TruncatedStreamError) return { reason: 'truncated', message };
    if (e instanceof codec.UnsupportedStreamError) return { reason: 'unsupported', message };
    if (e instanceof codec.AmbiguousStreamError) return { reason: 'ambiguous', message };
    return { reason: 'invalid', message };
  }
}
