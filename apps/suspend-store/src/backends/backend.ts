import type { Readable } from 'node:stream';

/**
 * Where bytes live. Keys are '/'-separated, made only by the store from validated ids
 * (e.g. `checkpoints/{id}/meta.json`); backends still refuse anything that could escape.
 */
export interface ObjectInfo {
  key: string;
  size: number;
  modified: Date;
}

/** Byte range, both ends inclusive (as in HTTP). */
export interface ByteRange {
  start: number;
  end: number;
}

export interface ObjectBackend {
  readonly kind: 'fs' | 's3';
  /** For logs and /readyz: where the objects go. */
  readonly description: string;
  /** Start-up work: create the folder or bucket if missing. */
  init(): Promise<void>;
  /** Throws when the store cannot be reached (readiness). */
  ready(): Promise<void>;
  /**
   * Streams `body` into `key`. Either the whole object is there when this resolves, or it
   * rejects and leaves nothing readable at `key` (a temporary file or a multipart upload is
   * removed; what a killed process leaves is removed later by sweepStaleUploads). `size`, when
   * given, is the exact length the body will have (a body of another length fails the call).
   */
  putStream(key: string, body: AsyncIterable<Uint8Array>, signal?: AbortSignal, size?: number): Promise<{ size: number }>;
  /** Writes a small object atomically (readers see the old one or the new one, never a part). */
  putBytes(key: string, data: Uint8Array): Promise<void>;
  /** A small object whole, or null when absent. */
  getBytes(key: string): Promise<Buffer | null>;
  /** A stream of the object (or of one range of it), or null when absent. */
  getStream(key: string, range?: ByteRange): Promise<Readable | null>;
  head(key: string): Promise<ObjectInfo | null>;
  /** Removes the object; absent is fine. */
  delete(key: string): Promise<void>;
  /**
   * The "folders" right under `prefix` (which ends with '/'), by name, in S3 order (bytewise
   * order of `name + '/'`), strictly after `after`, at most `limit`.
   */
  listChildren(prefix: string, after: string | undefined, limit: number): Promise<{ names: string[]; truncated: boolean }>;
  /** The objects right under `prefix` (which ends with '/'): a handful per checkpoint. */
  listObjects(prefix: string): Promise<ObjectInfo[]>;
  /** Removes leftovers of uploads that never finished (temporary files, multipart uploads) older than the age. */
  sweepStaleUploads(olderThanMs: number): Promise<number>;
  /** Releases clients/handles. */
  close(): Promise<void>;
}

export const OBJECT_BACKEND = Symbol('OBJECT_BACKEND');

const SAFE_KEY = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/?$/;

/** Guards every key a backend touches: no absolute paths, no '..', no odd characters. */
export function assertSafeKey(key: string): void {
  if (!SAFE_KEY.test(key) || key.split('/').some((p) => p === '.' || p === '..')) {
    throw new Error(`refusing unsafe object key '${key}'`);
  }
}

/** S3 lists keys in bytewise order; children are compared as `name + '/'`. */
export function compareChildNames(a: string, b: string): number {
  const x = Buffer.from(a + '/');
  const y = Buffer.from(b + '/');
  return Buffer.compare(x, y);
}
