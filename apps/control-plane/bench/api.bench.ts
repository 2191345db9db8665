/**
 * API benchmark (not a test). Run: node apps/cli/bin/run-ts.js apps/control-plane/bench/api.bench.ts
 *
 *  1. starts the control plane (src/main.ts) and a bare NestJS endpoint as child processes
 *     (autocannon runs in this process: one core for the server, one for the load),
 *  2. registers 20 hosts x 500 VMs through the agent API,
 *  3. accepts 10k POST /v1/migrations (50 connections) and times accept + dispatch of all 10k
 *     onto the host queues (limits raised so nothing waits),
 *  4. GET /v1/migrations (10k recorded) at 1k req/s next to the bare endpoint at 1k req/s.
 * Target: p99 < 50 ms at 1k req/s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import { deriveAgentToken } from '@ferry/config';

interface AcResult {
  latency: { p50: number; p99: number; average: number; max: number };
  requests: { average: number; total: number };
  non2xx: number;
  errors: number;
  duration: number;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require('autocannon') as (o: Record<string, unknown>) => Promise<AcResult>;

const root = path.resolve(__dirname, '../../..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADMIN = 'bench-admin-token';
const SECRET = 'bench-agent-secret';
const id = randomUUID().slice(0, 8);
const KEYP = `ferry-bench-${id}`;
const QP = `ferry-benchq-${id}`;
const HOSTS = 20;
const PER_HOST = 500;
const N = HOSTS * PER_HOST;

function start(file: string, env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, 'apps/cli/bin/run-ts.js'), path.join(root, file)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /(?:LISTENING (\d+))|(?:listening on (http:\/\/[^\s]+))|(worker running)/.exec(out);
      if (m) resolve({ child, url: m[3] ? '' : (m[2] ?? `http://127.0.0.1:${m[1]}`) });
    });
    child.on('exit', (c) => reject(new Error(`${file} exited ${c}: ${out}`)));
  });
}

async function post(url: string, p: string, token: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(url + p, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${p}: ${r.status} ${await r.text()}`);
  return r.json() as Promise<unknown>;
}

const fmt = (r: AcResult) => `p50 ${r.latency.p50} ms  p99 ${r.latency.p99} ms  max ${r.latency.max} ms  ${Math.round(r.requests.average)} req/s  non2xx ${r.non2xx}  errors ${r.errors}`;

async function main(): Promise<void> {
  const cpEnv = {
    PORT: '0',
    HOST: '127.0.0.1',
    REDIS_URL,
    FERRY_ADMIN_TOKEN: ADMIN,
    FERRY_AGENT_SECRET: SECRET,
    FERRY_KEY_PREFIX: KEYP,
    FERRY_QUEUE_PREFIX: QP,
    FERRY_LIMIT_CLUSTER: '100000',
    FERRY_LIMIT_PER_SOURCE: '100000',
    FERRY_LIMIT_PER_TARGET: '100000',
    FERRY_STALL_AFTER_MS: '3600000',
    FERRY_OFFLINE_AFTER_MS: '3600000',
    FERRY_SCHEDULER_INTERVAL_MS: '50',
  };
  // the deployment shape: HTTP replica (role api) + a separate worker process (scheduler, campaigns)
  const cp = await start('apps/control-plane/src/main.ts', { ...cpEnv, FERRY_CONTROL_PLANE_ROLE: 'api' });
  const worker = await start('apps/control-plane/src/worker.ts', cpEnv);
  const bare = await start('apps/control-plane/bench/bare-nest.ts', { PORT: '0' });
  const redis = new IORedis(REDIS_URL);
  try {
    for (let h = 0; h < HOSTS; h++) {
      const hostId = `bh${h}`;
      const guests = Array.from({ length: PER_HOST }, (_, i) => ({ vmId: `bvm-${h}-${i}`, name: `bvm-${h}-${i}`, type: 'hvm', memoryMiB: 64, vcpus: 1, state: 'running', memoryDigest: null }));
      await post(cp.url, '/v1/agents/register', deriveAgentToken(SECRET, hostId), {
        hostId,
        bootId: randomUUID(),
        agentVersion: 'bench',
        hostname: hostId,
        toolstack: { xenVersion: '4.17', bitness: 64, streamFormat: 'v2' },
        byteOrder: 'little',
        capacity: { memoryMiB: 10_000_000, vcpus: 1000, maxGuests: 100_000 },
        dataUrl: `http://127.0.0.1:1/${hostId}`,
        inventory: { guests },
      });
    }
    // warm up
    await autocannon({ url: `${cp.url}/v1/migrations`, headers: { authorization: `Bearer ${ADMIN}` }, duration: 2, connections: 10 });

    // accept + dispatch 10k
    let n = 0;
    const t0 = Date.now();
    const accept = await autocannon({
      url: `${cp.url}/v1/migrations`,
      connections: 50,
      amount: N,
      requests: [
        {
          method: 'POST',
          setupRequest: (req: Record<string, unknown>) => {
            const i = n++;
            const vm = `bvm-${i % HOSTS}-${Math.floor(i / HOSTS)}`;
            return { ...req, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', 'idempotency-key': `b-${vm}` }, body: JSON.stringify({ vm, mode: 'live' }) };
          },
        },
      ],
    });
    const acceptedMs = Date.now() - t0;
    let dispatchedMs = 0;
    for (;;) {
      const [pending, dispatched] = await Promise.all([redis.zcard(`${KEYP}:migs:pending`), redis.zcard(`${KEYP}:migs:phase:dispatched`)]);
      if (pending === 0 && dispatched >= N) {
        dispatchedMs = Date.now() - t0;
        break;
      }
      if (Date.now() - t0 > 300_000) throw new Error(`dispatch incomplete: pending ${pending} dispatched ${dispatched}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    let jobs = 0;
    for (let h = 0; h < HOSTS; h++) jobs += await redis.zcard(`${QP}:ferry.host.bh${h}:prioritized`).then(Number);

    // GET /v1/migrations with 10k recorded vs bare NestJS, both at 1k req/s
    const load = { connections: 20, overallRate: 1000, duration: 20 };
    const list = await autocannon({ url: `${cp.url}/v1/migrations`, headers: { authorization: `Bearer ${ADMIN}` }, ...load });
    const ref = await autocannon({ url: `${bare.url}/bare`, ...load });
    const one = await autocannon({ url: `${cp.url}/v1/migrations?vm=bvm-3-7`, headers: { authorization: `Bearer ${ADMIN}` }, ...load, duration: 10 });

    const lines = [
      `# control-plane API bench (${new Date().toISOString()}, node ${process.version}, ${cpus().length} cores)`,
      `accept 10k POST /v1/migrations (50 conns): ${acceptedMs} ms total, ${fmt(accept)}`,
      `accept + dispatch 10k onto ${HOSTS} host queues: ${dispatchedMs} ms (${jobs} jobs on the queues = 2 per migration)`,
      `GET /v1/migrations (10k recorded, page of 50) @1k req/s: ${fmt(list)}`,
      `GET /v1/migrations?vm=... (index lookup)      @1k req/s: ${fmt(one)}`,
      `bare NestJS GET /bare (reference)            @1k req/s: ${fmt(ref)}`,
      `target p99 < 50 ms at 1k req/s: ${list.latency.p99 < 50 ? 'MET' : 'NOT MET'}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    cp.child.kill('SIGTERM');
    worker.child.kill('SIGTERM');
    bare.child.kill('SIGTERM');
    for (const p of [KEYP, QP]) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${p}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await redis.del(...keys);
      } while (cursor !== '0');
    }
    redis.disconnect();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
