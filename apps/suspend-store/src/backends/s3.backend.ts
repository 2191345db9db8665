import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { assertSafeKey, compareChildNames, type ByteRange, type ObjectBackend, type ObjectInfo } from './backend';

/** Largest object sent as one PutObject (S3's limit is 5 GiB); larger or unknown sizes go multipart. */
const SINGLE_PUT_MAX = 5 * 1024 ** 3;

export interface S3BackendOptions {
  endpoint?: string;
  bucket: string;
  region: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  forcePathStyle: boolean;
  /** Multipart part size in bytes (>= 5 MiB). Memory per upload is about partSize * queueSize. */
  partSize: number;
  /** Parts in flight per upload. */
  queueSize: number;
  /** Create the bucket at start when it is missing. */
  createBucket?: boolean;
}

/**
 * S3 through AWS SDK v3: AWS S3, MinIO, Ceph RGW and OpenStack Swift's s3api. Large objects
 * go up as multipart uploads (streamed, `queueSize` parts of `partSize` in memory at most); an
 * upload that fails is aborted, one that a killed process left is aborted by sweepStaleUploads.
 * Checksums are only sent when an operation requires them (Swift refuses aws-chunked bodies).
 */
export class S3Backend implements ObjectBackend {
  readonly kind = 's3' as const;
  readonly description: string;
  private readonly client: S3Client;

  constructor(private readonly opts: S3BackendOptions) {
    this.description = `s3 ${opts.endpoint ?? 'aws'} bucket ${opts.bucket}`;
    this.client = new S3Client({
      region: opts.region,
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      forcePathStyle: opts.forcePathStyle,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  private get bucket(): string {
    return this.opts.bucket;
  }

  async init(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (e) {
      if (this.opts.createBucket === false || statusOf(e) !== 404) throw e;
      try {
        await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
      } catch (e2) {
        const name = (e2 as Error).name;
        if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw e2;
      }
    }
  }

  async ready(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
  }

  async putStream(key: string, body: AsyncIterable<Uint8Array>, signal?: AbortSignal, expected?: number): Promise<{ size: number }> {
    assertSafeKey(key);
    let size = 0;
    let sourceError: unknown;
    async function* counted(): AsyncGenerator<Uint8Array> {
      try {
        for await (const c of body) {
          size += c.byteLength;
          if (expected !== undefined && size > expected) throw new Error(`body is longer than the announced ${expected} bytes`);
          yield c;
        }
        // Ending short would leave the request waiting for bytes that never come: fail it instead.
        if (expected !== undefined && size !== expected) throw new Error(`body has ${size} bytes, ${expected} were announced`);
      } catch (e) {
        sourceError = e;
        throw e;
      }
    }
    if (expected !== undefined && expected <= SINGLE_PUT_MAX) {
      // One streamed PUT: the object appears only if every announced byte arrived.
      const stream = quiet(Readable.from(counted(), { objectMode: false, highWaterMark: 1 }));
      const onAbort = (): void => void stream.destroy(new Error('upload aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: stream, ContentLength: expected }), {
          ...(signal ? { abortSignal: signal } : {}),
        });
        signal?.throwIfAborted();
        return { size };
      } catch (e) {
        stream.destroy();
        if (!sourceError && !signal?.aborted) await this.delete(key).catch(() => undefined);
        throw sourceError ?? e;
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    }
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: quiet(Readable.from(counted(), { objectMode: false, highWaterMark: 1 })) },
      partSize: this.opts.partSize,
      queueSize: this.opts.queueSize,
      leavePartsOnError: false,
    });
    const onAbort = (): void => {
      void upload.abort().catch(() => undefined);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await upload.done();
      signal?.throwIfAborted();
      return { size };
    } catch (e) {
      // lib-storage aborts the multipart upload on failure; the original cause is what matters.
      await this.delete(key).catch(() => undefined);
      throw sourceError ?? e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async putBytes(key: string, data: Uint8Array): Promise<void> {
    assertSafeKey(key);
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data, ContentLength: data.byteLength }));
  }

  async getBytes(key: string): Promise<Buffer | null> {
    const s = await this.getStream(key);
    if (!s) return null;
    const parts: Buffer[] = [];
    for await (const c of s) parts.push(c as Buffer);
    return Buffer.concat(parts);
  }

  async getStream(key: string, range?: ByteRange): Promise<Readable | null> {
    assertSafeKey(key);
    try {
      const r = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }),
      );
      return r.Body as Readable;
    } catch (e) {
      if (statusOf(e) === 404) return null;
      throw e;
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    assertSafeKey(key);
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { key, size: r.ContentLength ?? 0, modified: r.LastModified ?? new Date(0) };
    } catch (e) {
      if (statusOf(e) === 404) return null;
      throw e;
    }
  }

  async delete(key: string): Promise<void> {
    assertSafeKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (e) {
      if (statusOf(e) !== 404) throw e;
    }
  }

  async listChildren(prefix: string, after: string | undefined, limit: number): Promise<{ names: string[]; truncated: boolean }> {
    assertSafeKey(prefix);
    const names: string[] = [];
    // Everything under `prefix + after + '/'` sorts before `prefix + after + '0'` ('0' follows '/').
    let startAfter = after !== undefined ? `${prefix}${after}0` : undefined;
    let token: string | undefined;
    for (;;) {
      const r = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          Delimiter: '/',
          MaxKeys: Math.min(1000, limit + 1),
          ...(token ? { ContinuationToken: token } : startAfter ? { StartAfter: startAfter } : {}),
        }),
      );
      for (const p of r.CommonPrefixes ?? []) {
        const name = (p.Prefix ?? '').slice(prefix.length).replace(/\/$/, '');
        if (name && (after === undefined || compareChildNames(name, after) > 0)) names.push(name);
      }
      if (names.length > limit || !r.IsTruncated) break;
      token = r.NextContinuationToken;
      if (!token) {
        const last = r.CommonPrefixes?.at(-1)?.Prefix ?? r.Contents?.at(-1)?.Key;
        if (!last) break;
        startAfter = last.endsWith('/') ? last.slice(0, -1) + '0' : last;
      }
    }
    names.sort(compareChildNames);
    return { names: names.slice(0, limit), truncated: names.length > limit };
  }

  async listObjects(prefix: string): Promise<ObjectInfo[]> {
    assertSafeKey(prefix);
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const r = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', ...(token ? { ContinuationToken: token } : {}) }),
      );
      for (const o of r.Contents ?? []) {
        if (o.Key) out.push({ key: o.Key, size: o.Size ?? 0, modified: o.LastModified ?? new Date(0) });
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async sweepStaleUploads(olderThanMs: number): Promise<number> {
    const now = Date.now();
    let n = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const r = await this.client.send(
        new ListMultipartUploadsCommand({
          Bucket: this.bucket,
          ...(keyMarker ? { KeyMarker: keyMarker } : {}),
          ...(uploadIdMarker ? { UploadIdMarker: uploadIdMarker } : {}),
        }),
      );
      for (const u of r.Uploads ?? []) {
        if (!u.Key || !u.UploadId) continue;
        if (u.Initiated && now - u.Initiated.getTime() < olderThanMs) continue;
        await this.client
          .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }))
          .then(() => n++)
          .catch(() => undefined);
      }
      if (!r.IsTruncated) break;
      keyMarker = r.NextKeyMarker;
      uploadIdMarker = r.NextUploadIdMarker;
      if (!keyMarker && !uploadIdMarker) break;
    }
    return n;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

function statusOf(e: unknown): number | undefined {
  if (e instanceof S3ServiceException) return e.$metadata.httpStatusCode;
  const m = (e as { $metadata?: { httpStatusCode?: number } }).$metadata;
  return m?.httpStatusCode;
}

/**
 * The body's own error (a refused or truncated image) is kept in `sourceError` and rethrown by
 * the caller; the SDK does not always listen on the body, and an 'error' event nobody listens to
 * would take the whole process down. This listener makes sure it never does.
 */
function quiet<T extends Readable>(stream: T): T {
  stream.on('error', () => undefined);
  return stream;
}
