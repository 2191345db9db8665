/**
 * Error types of the codec. Every error carries a one-line message fit for an
 * operator; callers map them to exit codes (CLI) or 4xx (HTTP) without parsing text.
 *
 * - NeedMoreBytesError: incremental decoding stopped because the bytes so far end
 *   inside a header or record. Not an error in the stream: feed more bytes.
 *   The async APIs never let it escape: at end of input it becomes TruncatedStreamError.
 * - TruncatedStreamError: the input ended inside a header or record.
 * - MalformedStreamError: the bytes break the format; names the offset, record and rule.
 * - UnsupportedStreamError: valid input that this operation cannot express.
 * - AmbiguousStreamError: legacy width/guest type cannot be decided from the bytes.
 */
export class StreamCodecError extends Error {
  override name = 'StreamCodecError';
}

export class NeedMoreBytesError extends StreamCodecError {
  override name = 'NeedMoreBytesError';
  constructor(
    /** Absolute offset at which decoding must resume. */
    readonly offset: number,
    /** How many bytes from `offset` are needed at least. */
    readonly needed: number,
  ) {
    super(`need ${needed} more bytes at offset ${offset}`);
  }
}

export class TruncatedStreamError extends StreamCodecError {
  override name = 'TruncatedStreamError';
  constructor(
    readonly offset: number,
    readonly needed: number,
    readonly context: string,
  ) {
    super(`stream truncated at offset ${offset}: ${context} needs ${needed} more byte${needed === 1 ? '' : 's'}`);
  }
}

export class MalformedStreamError extends StreamCodecError {
  override name = 'MalformedStreamError';
  constructor(
    readonly offset: number,
    readonly rule: string,
    readonly record?: string,
  ) {
    super(`malformed stream at offset ${offset}${record ? ` (${record})` : ''}: ${rule}`);
  }
}

export class UnsupportedStreamError extends StreamCodecError {
  override name = 'UnsupportedStreamError';
}

export class AmbiguousStreamError extends StreamCodecError {
  override name = 'AmbiguousStreamError';
  constructor(
    message: string,
    readonly candidates: readonly string[],
  ) {
    super(message);
  }
}

export function isStreamCodecError(e: unknown): e is StreamCodecError {
  return e instanceof StreamCodecError;
}
