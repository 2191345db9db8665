import { Injectable } from '@nestjs/common';
import {
  type StreamFacts,
  AmbiguousStreamError,
  MalformedStreamError,
  NeedMoreBytesError,
  StreamCodecError,
  StreamReader,
  TruncatedStreamError,
  UnsupportedStreamError,
  ingestToV2,
  legacyFromV2,
  sniffV2,
} from '@ferry/stream-codec';

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

/** What the codec learnt about an image while reading it. */
export type ImageFacts = StreamFacts;

/** Why the codec refused an image, for a 422 body and the refusal metric. */
export interface CodecRefusal {
  reason: 'malformed' | 'truncated' | 'unsupported' | 'ambiguous' | 'invalid';
  message: string;
}

@Injectable()
export class ConversionService {
  /**
   * Any input (v2 with libxc/libxl/xl framing, or legacy) -> a verified v2 stream. `output`
   * throws as soon as the input is found bad; `facts` resolves once output is consumed.
   */
  ingest(source: AsyncIterable<Uint8Array>, opts: IngestOptions): { output: AsyncIterable<Uint8Array>; facts: Promise<ImageFacts> } {
    const r = ingestToV2(source, { format: opts.format, width: opts.width, guest: opts.guest });
    // The caller awaits facts only after output succeeded; keep a rejection from being unhandled meanwhile.
    const facts: Promise<ImageFacts> = r.facts;
    facts.catch(() => undefined);
    return { output: r.output, facts };
  }

  /**
   * A stored v2 stream -> legacy at the given toolstack width, for hosts not upgraded yet.
   * `onDropped` hears of what the legacy image leaves out because an old host sets it up itself.
   */
  toLegacy(source: AsyncIterable<Uint8Array>, width: 32 | 64, onDropped?: (what: string) => void): AsyncIterable<Uint8Array> {
    return legacyFromV2(source, { width, onDropped });
  }

  /**
   * Whether the stored stream will be the input byte for byte (a v2 image, passed through),
   * judged from the first chunk (at least 48 bytes): then its size is known in advance.
   */
  async passesThrough(first: Uint8Array, format: DeclaredFormat): Promise<boolean> {
    if (format === 'legacy' || first.byteLength < 48) return false;
    try {
      return await sniffV2(new StreamReader([first]));
    } catch {
      return false;
    }
  }

  /** A codec error as a refusal, or null for anything else (I/O errors, bugs). */
  refusal(e: unknown): CodecRefusal | null {
    if (!(e instanceof StreamCodecError) || e instanceof NeedMoreBytesError) return null;
    const message = e.message.split('\n')[0] ?? e.message;
    if (e instanceof MalformedStreamError) return { reason: 'malformed', message };
    if (e instanceof TruncatedStreamError) return { reason: 'truncated', message };
    if (e instanceof UnsupportedStreamError) return { reason: 'unsupported', message };
    if (e instanceof AmbiguousStreamError) return { reason: 'ambiguous', message };
    return { reason: 'invalid', message };
  }
}
