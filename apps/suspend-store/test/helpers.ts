import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import * as codec from '@ferry/stream-codec';
import type { S3TestConfig } from '@ferry/testing';
import { startSuspendStore, type RunningStore } from '../src/index';
import { OBJECT_BACKEND, type ObjectBackend } from '../src/backends/backend';

export const ADMIN = 'admin-token-for-tests-0123456789';

export interface TestStore extends RunningStore {
  backend: ObjectBackend;
  /** fetch against the store with the admin token unless `token` says otherwise (null: none). */
  call(method: string, p: string, init?: { token?: string | null; body?: BodyInit | Readable | Buffer; headers?: Record<string, string> }): Promise<Response>;
}

export async function startStore(env: Record<string, string>): Promise<TestStore> {
  const store = await startSuspendStore({ PORT: '0', HOST: '127.0.0.1', FERRY_ADMIN_TOKEN: ADMIN, FERRY_LOG_LEVEL: 'error', ...env });
  const backend = store.app.get<ObjectBackend>(OBJECT_BACKEND);
  return {
    ...store,
    backend,
    call: (method, p, init = {}) => {
      const headers: Record<string, string> = { ...(init.headers ?? {}) };
      const token = init.token === undefined ? ADMIN : init.token;
      if (token) headers.authorization = `Bearer ${token}`;
      let body = init.body as BodyInit | undefined;
      if (init.body instanceof Readable) body = Readable.toWeb(init.body) as unknown as BodyInit;
      return fetch(store.url + p, { method, headers, ...(body !== undefined ? { body, duplex: 'half' } : {}) } as RequestInit);
    },
  };
}

/** A temporary folder of the test's own. */
export function tempDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ferry-store-${tag}-`));
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function collect(src: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of src) parts.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  return Buffer.concat(parts);
}

/** A valid synthetic v2 image from the codec's test generator (pages of 4 KiB). */
export async function v2Image(opts: codec.SynthOptions = {}): Promise<Buffer> {
  return collect(codec.encodeV2(codec.synthStream({ guest: 'pv', framing: 'libxl', pages: 64, ...opts })));
}

/** Reads a whole response body; rejects when the transfer is cut. */
export async function bodyOf(res: Response): Promise<Buffer> {
  return Buffer.from(await res.arrayBuffer());
}

export function s3Client(c: S3TestConfig): S3Client {
  return new S3Client({
    endpoint: c.endpoint,
    region: c.region,
    credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey },
    forcePathStyle: c.forcePathStyle,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** Empties and removes a test bucket. */
export async function dropBucket(c: S3TestConfig, bucket: string): Promise<void> {
  const s3 = s3Client(c);
  try {
    for (;;) {
      const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
      const keys = (r.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (keys.length === 0) break;
      await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
    }
    await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
  } catch {
    // best effort
  } finally {
    s3.destroy();
  }
}

/** Every object key under a prefix, through the store's own backend (what a client can never see). */
export async function objectsUnder(backend: ObjectBackend, prefix: string): Promise<string[]> {
  return (await backend.listObjects(prefix)).map((o) => o.key);
}
