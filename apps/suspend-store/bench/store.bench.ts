/**
 * Suspend-store throughput: uploads and downloads a v2 image (1 GiB by default) through the
 * service (a child process, S3 backend) and, in the same run, to the same S3 server raw
 * (one PutObject / GetObject of the same bytes), and prints MB/s side by side with the
 * service's peak RSS (VmHWM) for two image sizes (RSS must not grow with the image).
 *
 *   source tools/s3/swift-s3.sh   # or any S3: S3_ENDPOINT, S3_ACCESS_KEY_ID, ...
 *   node apps/cli/bin/run-ts.js apps/suspend-store/bench/store.bench.ts [MiB=1024] [small MiB=256] [rounds=3]
 *
 * Rounds alternate raw and service (best of each counts: the machine may be shared).
 * Target: service >= 70% of raw, peak RSS independent of the image size.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { dataPathNodeFlags } from '@ferry/config';
import { encodeV2, synthStream } from '@ferry/stream-codec';
import { cpuSeconds, s3ConfigFromEnv, s3StoreEnv, uniqueBucket } from '@ferry/testing';
import { dropBucket, s3Client } from '../test/helpers';

const ROOT = path.resolve(__dirname, '../../..');
const TOKEN = 'bench-admin-token-0123456789';
const MiB = 1024 * 1024;

async function makeImage(file: string, mib: number): Promise<number> {
  const pages = Math.floor((mib * MiB) / 4096);
  await pipeline(encodeV2(synthStream({ guest: 'pv', framing: 'libxl', pages })), fs.createWriteStream(file, { highWaterMark: 4 * MiB }));
  return fs.statSync(file).size;
}

function startService(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  // BENCH_PROFILE_DIR=dir: a V8 CPU profile of the service per image size.
  const prof = process.env.BENCH_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] : [];
  // As `ferry serve` / `ferry up` start it: with the GC flags for this host's size (FERRY_NODE_GC).
  const child = spawn(process.execPath, [...dataPathNodeFlags(), ...prof, path.join(ROOT, 'apps/cli/bin/run-ts.js'), path.join(ROOT, 'apps/suspend-store/src/main.ts')], {
    env: { ...process.env, ...env, PORT: '0', HOST: '127.0.0.1', FERRY_ADMIN_TOKEN: TOKEN, FERRY_LOG_LEVEL: 'error' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ child, url: m[1]! });
    });
    child.once('exit', (c) => reject(new Error(`service exited with ${c}`)));
  });
}

function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function request(method: string, url: string, body?: Readable, length?: number): Promise<{ status: number; bytes: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
    // A client sending a file knows its size: with it the store sends one streamed PutObject (without, multipart).
    if (length !== undefined) headers['content-length'] = String(length);
    const req = http.request(url, { method, headers }, (res) => {
      let bytes = 0;
      let text = '';
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (text.length < 2000 && (res.statusCode ?? 0) >= 300) text += c.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body) body.pipe(req);
    else req.end();
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<{ s: number; r: T }> {
  const t = process.hrtime.bigint();
  const r = await fn();
  return { s: Number(process.hrtime.bigint() - t) / 1e9, r };
}

async function main(): Promise<void> {
  const c = s3ConfigFromEnv();
  if (!c) {
    console.error('store.bench: set S3_ENDPOINT etc. (source tools/s3/swift-s3.sh) to compare against raw S3');
    process.exit(2);
  }
  const bigMiB = Number(process.argv[2] ?? 1024);
  const smallMiB = Number(process.argv[3] ?? 256);
  const rounds = Number(process.argv[4] ?? 3);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-'));
  const bucket = uniqueBucket('ferry-bench');
  const s3 = s3Client(c);
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const rows: string[] = [];
  try {
    for (const mib of [smallMiB, bigMiB]) {
      const file = path.join(dir, `image-${mib}.v2`);
      const size = await makeImage(file, mib);
      const mb = size / 1e6;
      const best = { rawPut: Infinity, rawGet: Infinity, put: Infinity, get: Infinity };
      // Through the service: a fresh process per size, so its peak RSS belongs to this size.
      const { child, url } = await startService(s3StoreEnv(c, bucket));
      try {
        // Rounds alternate raw and service so both see the same machine; the best of each counts.
        for (let round = 0; round < rounds; round++) {
          const rawPut = await timed(() =>
            s3.send(new PutObjectCommand({ Bucket: bucket, Key: `raw-${mib}`, Body: fs.createReadStream(file, { highWaterMark: 4 * MiB }), ContentLength: size })),
          );
          const rawGet = await timed(async () => {
            const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `raw-${mib}` }));
            let n = 0;
            for await (const chunk of r.Body as Readable) n += (chunk as Buffer).length;
            return n;
          });
          if (rawGet.r !== size) throw new Error(`raw GET returned ${rawGet.r} of ${size} bytes`);
          await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: `raw-${mib}` }));
          const id = `bench-${mib}-${round}`;
          const cpu0 = cpuSeconds(child.pid!);
          const put = await timed(() => request('PUT', `${url}/v1/checkpoints/${id}?vm=bench`, fs.createReadStream(file, { highWaterMark: 4 * MiB }), size));
          if (put.r.status !== 201) throw new Error(`service PUT: ${put.r.status} ${put.r.text}`);
          const cpu1 = cpuSeconds(child.pid!);
          const get = await timed(() => request('GET', `${url}/v1/checkpoints/${id}`));
          const cpu2 = cpuSeconds(child.pid!);
          if (get.r.status !== 200 || get.r.bytes !== size) throw new Error(`service GET: ${get.r.status}, ${get.r.bytes} of ${size} bytes`);
          await request('DELETE', `${url}/v1/checkpoints/${id}`);
          best.rawPut = Math.min(best.rawPut, rawPut.s);
          best.rawGet = Math.min(best.rawGet, rawGet.s);
          best.put = Math.min(best.put, put.s);
          best.get = Math.min(best.get, get.s);
          console.log(
            `  round ${round + 1}/${rounds}, ${mib} MiB: put ${(mb / put.s).toFixed(0)} vs raw ${(mb / rawPut.s).toFixed(0)} MB/s, get ${(mb / get.s).toFixed(0)} vs raw ${(mb / rawGet.s).toFixed(0)} MB/s; service CPU s per GiB: put ${(((cpu1 - cpu0) * 1024) / mib).toFixed(2)}, get ${(((cpu2 - cpu1) * 1024) / mib).toFixed(2)}`,
          );
        }
        const rss = peakRssMiB(child.pid!);
        rows.push(
          `${String(mib).padStart(5)} MiB | upload   service ${(mb / best.put).toFixed(0).padStart(5)} MB/s   raw PutObject ${(mb / best.rawPut).toFixed(0).padStart(5)} MB/s   ${((best.rawPut / best.put) * 100).toFixed(0).padStart(3)}% of raw`,
          `${String(mib).padStart(5)} MiB | download service ${(mb / best.get).toFixed(0).padStart(5)} MB/s   raw GetObject ${(mb / best.rawGet).toFixed(0).padStart(5)} MB/s   ${((best.rawGet / best.get) * 100).toFixed(0).padStart(3)}% of raw   service peak RSS ${rss.toFixed(0)} MiB`,
        );
      } finally {
        child.kill('SIGTERM');
      }
      fs.rmSync(file, { force: true });
    }
  } finally {
    s3.destroy();
    await dropBucket(c, bucket);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\nsuspend-store bench against ${c.endpoint} (node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}, best of ${rounds})\n${rows.join('\n')}`);
}

main().catch((e: unknown) => {
  console.error(`store.bench: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
