import * as fs from 'node:fs';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { getS3Config, openRealXenImage, REAL_XEN_IMAGES, s3StoreEnv, uniqueBucket, type RealXenImage } from '@ferry/testing';
import { dropBucket, startStore, tempDir, type TestStore } from './helpers';

/**
 * The real Xen 4.17 images (xl framing, as `xl save` writes them) go in and come back
 * byte-identical, on both backends. The images are the repository's fixtures
 * (libs/testing/fixtures/real-xen-4.17).
 */
async function roundTrip(store: TestStore, img: RealXenImage, id: string): Promise<void> {
  const body = openRealXenImage(img);
  const res = await store.call('PUT', `/v1/checkpoints/${id}?vm=vm-real-${img.guest}&width=auto`, { body: Readable.from(body) });
  const meta = (await res.json()) as { stats: { pages: number; vcpus: number } } & Record<string, unknown>;
  expect(res.status, JSON.stringify(meta)).toBe(201);
  expect(meta).toMatchObject({
    size: img.bytes,
    sha256: img.sha256,
    source: { format: 'v2', framing: 'xl', guest: img.guest, byteOrder: 'little', sha256: img.sha256, size: img.bytes },
  });
  expect(meta.stats.pages).toBeGreaterThan(1000);
  expect(meta.stats.vcpus).toBe(1);
  const got = await store.call('GET', `/v1/checkpoints/${id}`);
  expect(got.status).toBe(200);
  const h = createHash('sha256');
  let n = 0;
  for await (const c of got.body as unknown as AsyncIterable<Uint8Array>) {
    h.update(c);
    n += c.byteLength;
  }
  expect(n).toBe(img.bytes);
  expect(h.digest('hex')).toBe(img.sha256);
}

describe('real Xen 4.17 images through the store', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  it('local folder: both images round-trip byte-identical', async () => {
    const dir = tempDir('real');
    const store = await startStore({ FERRY_STORE_BACKEND: 'fs', FERRY_STORE_DIR: dir });
    cleanups.push(async () => {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    for (const img of REAL_XEN_IMAGES) await roundTrip(store, img, `real-${img.guest}`);
  }, 180_000);

  it('S3: both images round-trip byte-identical', async (ctx) => {
    const c = await getS3Config();
    if (!c) ctx.skip();
    const bucket = uniqueBucket('ferry-real');
    const store = await startStore(s3StoreEnv(c!, bucket));
    cleanups.push(async () => {
      await store.close();
      await dropBucket(c!, bucket);
    });
    for (const img of REAL_XEN_IMAGES) await roundTrip(store, img, `real-${img.guest}`);
  }, 300_000);
});
