import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { getS3Config, s3StoreEnv, uniqueBucket, type S3TestConfig } from '@ferry/testing';
import { RetentionService } from '../src/checkpoints/retention.service';
import { ADMIN, dropBucket, objectsUnder, s3Client, startStore, tempDir, v2Image } from './helpers';

/**
 * A real service process is killed with SIGKILL in the middle of an upload: afterwards nothing
 * of it is visible, and the clean-up pass removes what it left (a temporary file, a multipart upload).
 */
const ROOT = path.resolve(__dirname, '../../..');

function startChild(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'apps/cli/bin/run-ts.js'), path.join(ROOT, 'apps/suspend-store/src/main.ts')], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', FERRY_ADMIN_TOKEN: ADMIN, FERRY_LOG_LEVEL: 'error', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`service did not start: ${err}`)), 60_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]! });
      }
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`service exited (${code}) before listening: ${err}`));
    });
  });
}

async function bytesIn(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^ferry_store_bytes_in_total (\d+)/m.exec(text)?.[1] ?? 0);
}

async function killMidUpload(env: Record<string, string>, id: string): Promise<void> {
  const img = await v2Image({ pages: 12_000 }); // ~48 MiB
  const { child, url } = await startChild(env);
  const exited = new Promise((r) => child.once('exit', r));
  try {
    let sent = 0;
    async function* slowly(): AsyncGenerator<Uint8Array> {
      for (let off = 0; off < img.length; off += 1 << 20) {
        sent = off;
        yield img.subarray(off, off + (1 << 20));
        if (off > 36 << 20) await sleep(50); // the tail trickles, so the kill lands mid-upload
      }
    }
    const upload = fetch(`${url}/v1/checkpoints/${id}?vm=vm-crash`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN}` },
      body: Readable.toWeb(Readable.from(slowly())) as unknown as BodyInit,
      duplex: 'half',
    } as RequestInit).catch((e: unknown) => e);
    for (let i = 0; i < 600 && (await bytesIn(url)) < 34 << 20; i++) await sleep(50);
    expect(sent).toBeLessThan(img.length - (1 << 20));
    child.kill('SIGKILL');
    await exited;
    expect(await upload).toBeInstanceOf(Error);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

describe('a service killed mid-upload', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  it('local folder: nothing visible afterwards, the temporary file is swept', async () => {
    const dir = tempDir('crash');
    cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
    const env = { FERRY_STORE_BACKEND: 'fs', FERRY_STORE_DIR: dir };
    await killMidUpload(env, 'crash-1');
    expect(fs.readdirSync(path.join(dir, 'tmp')).length).toBe(1); // the partial upload, invisible
    const store = await startStore({ ...env, FERRY_STALE_UPLOAD_AGE: '0s' });
    try {
      expect((await store.call('GET', '/v1/checkpoints/crash-1')).status).toBe(404);
      expect((await store.call('HEAD', '/v1/checkpoints/crash-1')).status).toBe(404);
      expect(((await (await store.call('GET', '/v1/checkpoints')).json()) as { items: unknown[] }).items).toEqual([]);
      expect(await objectsUnder(store.backend, 'checkpoints/crash-1/')).toEqual([]);
      const report = await store.app.get(RetentionService).runOnce();
      expect(report.staleUploadsRemoved).toBe(1);
      expect(fs.readdirSync(path.join(dir, 'tmp'))).toEqual([]);
    } finally {
      await store.close();
    }
  }, 120_000);

  it('S3: nothing visible afterwards, the multipart upload is aborted', async (ctx) => {
    const c: S3TestConfig | null = await getS3Config();
    if (!c) ctx.skip();
    const bucket = uniqueBucket('ferry-crash');
    cleanups.push(() => dropBucket(c!, bucket));
    const env = s3StoreEnv(c!, bucket);
    await killMidUpload(env, 'crash-1');
    const s3 = s3Client(c!);
    try {
      const before = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      expect(before.Uploads?.length ?? 0).toBe(1); // parts are there, but no object
      const store = await startStore({ ...env, FERRY_STALE_UPLOAD_AGE: '0s' });
      try {
        expect((await store.call('GET', '/v1/checkpoints/crash-1')).status).toBe(404);
        expect((await store.call('HEAD', '/v1/checkpoints/crash-1')).status).toBe(404);
        expect(((await (await store.call('GET', '/v1/checkpoints')).json()) as { items: unknown[] }).items).toEqual([]);
        expect(await objectsUnder(store.backend, 'checkpoints/crash-1/')).toEqual([]);
        const report = await store.app.get(RetentionService).runOnce(Date.now() + 5_000);
        expect(report.staleUploadsRemoved).toBe(1);
      } finally {
        await store.close();
      }
      const after = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      expect(after.Uploads?.length ?? 0).toBe(0);
    } finally {
      s3.destroy();
    }
  }, 120_000);
});
