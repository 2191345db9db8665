/**
 * Every network-facing parser is total: a suspend-store, a control plane and a host agent, each a real
 * process started from source, get malformed requests from a seeded random generator (bad
 * percent-encoding, huge paths, odd methods, malformed and oversized headers, malformed, oversized and
 * truncated bodies) at every route. Each request is built so that it must be refused: the answer must
 * be a 4xx (never a 5xx, never an empty reply), and every process must still answer afterwards.
 * Black box: raw sockets, nothing imported from the services.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, dropRedisPrefix, redisUnavailable } from './stack';

const SEED = Number(process.env.FERRY_FUZZ_SEED ?? 0x5eed13);
const PER_TARGET = Number(process.env.FERRY_FUZZ_COUNT ?? 300);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADMIN = `fuzz-admin-${randomBytes(8).toString('hex')}`;
const SECRET = `fuzz-secret-${randomBytes(8).toString('hex')}`;
const HOST = 'fuzz-1';
const AGENT_TOKEN = `fa1.${HOST}.${createHmac('sha256', SECRET).update(`ferry-agent:${HOST}`).digest('base64url')}`;
const prefix = `fuzz${randomBytes(4).toString('hex')}`;
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-fuzz-'));

/** mulberry32: small, seeded, good enough to pick cases reproducibly. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Service {
  name: string;
  url: string;
  child: ChildProcess;
  output: () => string;
}

async function start(name: string, entry: string, env: Record<string, string>, ready: RegExp): Promise<Service> {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'apps/cli/bin/run-ts.js'), path.join(REPO_ROOT, entry)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 1200; i++) {
    const m = ready.exec(out);
    if (m) return { name, url: m[1]!, child, output: () => out };
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`${name} did not start:\n${out.slice(-3000)}`);
}

/** Sends raw bytes; resolves with the first final status (1xx skipped), or 0 when the connection ends without one. */
function send(url: string, bytes: Buffer, halfClose: boolean, timeoutMs = 10_000): Promise<number> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = net.connect({ host: u.hostname, port: Number(u.port), allowHalfOpen: true });
    let text = '';
    let done = false;
    const finish = (status: number): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(status);
    };
    const timer = setTimeout(() => finish(0), timeoutMs);
    s.on('connect', () => {
      s.write(bytes, () => undefined);
      if (halfClose) s.end();
    });
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      for (const m of text.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3})/g)) {
        const st = Number(m[1]);
        if (st >= 200 || st < 100) return finish(st);
      }
    });
    s.on('error', () => undefined);
    s.on('end', () => setTimeout(() => finish(0), 50));
    s.on('close', () => setTimeout(() => finish(0), 50));
  });
}

// ---------------------------------------------------------------- the generator

interface Route {
  method: string;
  path: string; // ':x' segments are filled in
  /** Refuses without a valid token (so a bad or missing token alone must give a 4xx). */
  auth: boolean;
  /** Takes a body that is parsed or read before the handler answers (JSON routes, uploads). */
  body: boolean;
  /** Query parameters are validated (a bad value is a 400 once authorised). */
  query?: boolean;
  /** ... and so are unknown or repeated ones (the suspend-store ignores unknown ones and takes the last of repeated ones). */
  strictQuery?: boolean;
}

const CP_ROUTES: Route[] = [
  { method: 'GET', path: '/v1/hosts', auth: true, body: false },
  { method: 'GET', path: '/v1/hosts/:id', auth: true, body: false },
  { method: 'POST', path: '/v1/hosts/:id/drain', auth: true, body: true },
  { method: 'DELETE', path: '/v1/hosts/:id/drain', auth: true, body: false },
  { method: 'POST', path: '/v1/hosts/:id/maintenance', auth: true, body: true },
  { method: 'GET', path: '/v1/vms', auth: true, body: false, query: true, strictQuery: true },
  { method: 'GET', path: '/v1/vms/:id', auth: true, body: false },
  { method: 'POST', path: '/v1/vms/:id/suspend', auth: true, body: true },
  { method: 'POST', path: '/v1/vms/:id/resume', auth: true, body: true },
  { method: 'GET', path: '/v1/operations', auth: true, body: false, query: true, strictQuery: true },
  { method: 'GET', path: '/v1/operations/:id', auth: true, body: false },
  { method: 'POST', path: '/v1/migrations', auth: true, body: true },
  { method: 'GET', path: '/v1/migrations', auth: true, body: false, query: true, strictQuery: true },
  { method: 'GET', path: '/v1/migrations/:id', auth: true, body: false },
  { method: 'POST', path: '/v1/migrations/:id/cancel', auth: true, body: true },
  { method: 'POST', path: '/v1/campaigns/plan', auth: true, body: true },
  { method: 'POST', path: '/v1/campaigns', auth: true, body: true },
  { method: 'GET', path: '/v1/campaigns', auth: true, body: false, query: true, strictQuery: true },
  { method: 'GET', path: '/v1/campaigns/:id', auth: true, body: false },
  { method: 'POST', path: '/v1/campaigns/:id/pause', auth: true, body: true },
  { method: 'POST', path: '/v1/campaigns/:id/abort', auth: true, body: true },
  { method: 'POST', path: '/v1/agents/register', auth: true, body: true },
  { method: 'POST', path: '/v1/agents/:host/heartbeat', auth: true, body: true },
  { method: 'POST', path: '/v1/agents/:host/reports', auth: true, body: true },
  { method: 'POST', path: '/v1/agents/:host/migrations/:id/commit', auth: true, body: true },
  { method: 'GET', path: '/v1/agents/:host/migrations/:id/decision', auth: true, body: false },
  { method: 'GET', path: '/v1/me', auth: true, body: false },
  { method: 'GET', path: '/healthz', auth: false, body: false },
  { method: 'GET', path: '/readyz', auth: false, body: false },
  { method: 'GET', path: '/metrics', auth: false, body: false },
];

const STORE_ROUTES: Route[] = [
  { method: 'PUT', path: '/v1/checkpoints/:id', auth: true, body: true, query: true },
  { method: 'GET', path: '/v1/checkpoints/:id', auth: true, body: false },
  { method: 'HEAD', path: '/v1/checkpoints/:id', auth: true, body: false },
  { method: 'DELETE', path: '/v1/checkpoints/:id', auth: true, body: false },
  { method: 'GET', path: '/v1/checkpoints/:id/meta', auth: true, body: false },
  { method: 'GET', path: '/v1/checkpoints', auth: true, body: false, query: true },
  { method: 'POST', path: '/v1/tokens', auth: true, body: true },
  { method: 'GET', path: '/v1/tokens', auth: true, body: false },
  { method: 'DELETE', path: '/v1/tokens/:id', auth: true, body: false },
  { method: 'GET', path: '/healthz', auth: false, body: false },
  { method: 'GET', path: '/metrics', auth: false, body: false },
];

const AGENT_ROUTES: Route[] = [
  { method: 'PUT', path: '/v1/streams/:id', auth: true, body: true },
  { method: 'GET', path: '/healthz', auth: false, body: false },
];

const BAD_SEGMENTS = ['%E0%A4%A', '%', '%zz', '%C0%AE%C0%AE', '%ED%A0%80', '%F4%90%80%80', '%00', '%FF%FE', 'a%2', '%%41'];
const ODD_METHODS = ['PATCH', 'PROPFIND', 'PURGE', 'LINK', 'UNLOCK', 'MKCOL', 'FOO', 'get', 'GE T', 'G\u00c9T', ''];
const BAD_HEADER_LINES = [
  'Content-Length: abc',
  'Content-Length: -1',
  'Content-Length: 1\r\nContent-Length: 2',
  'Content-Length: 99999999999999999999999',
  'Transfer-Encoding: chunked\r\nContent-Length: 3',
  'Transfer-Encoding: gzip, chunked, identity',
  'No colon here',
  ' Leading: space',
  'Bad Name: x',
  'X-Nul: a\u0000b',
  'X-Bad(): y',
  `X-Huge: ${'h'.repeat(20_000)}`,
  Array.from({ length: 300 }, (_, i) => `X-Many-${i}: ${'m'.repeat(60)}`).join('\r\n'),
];
const BAD_JSON = ['{"a":', '{', ']', 'nul', '{"a":1,}', "{'a':1}", '\u0000\u0001\u0002', '{"a":"\\uZZZZ"}', '['.repeat(100_000), '{"a":' + '1'.repeat(50) + 'e99999}x'];

function build(r: () => number, routes: Route[], token: string): { bytes: Buffer; halfClose: boolean; label: string } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const route = pick(routes);
  const applicable: string[] = ['segment', 'method', 'header'];
  if (r() < 0.2) applicable.push('hugePath'); // a 431 says little about the routes behind it
  if (route.auth) applicable.push('auth');
  if (route.body) applicable.push('truncated', 'json');
  if (route.query && route.auth) applicable.push('query');
  const chosen = new Set<string>();
  const n = 1 + Math.floor(r() * 3);
  for (let i = 0; i < n; i++) chosen.add(pick(applicable));
  // the segment mutation needs a segment to mutate
  if (chosen.has('segment') && !route.path.includes(':')) {
    chosen.delete('segment');
    if (!chosen.size) chosen.add('method');
  }
  let method = route.method;
  let target = route.path.replace(/:host/g, HOST).replace(/:id/g, () => pick(['vm-1', 'x', 'mig-1', 'ckpt-1', 'tok-1']));
  if (chosen.has('segment')) {
    const segs = target.split('/');
    const idx = segs.findIndex((s, i) => i > 1 && route.path.split('/')[i]?.startsWith(':'));
    segs[idx] = pick(['', 'a', 'vm']) + pick(BAD_SEGMENTS) + pick(['', 'b']);
    target = segs.join('/');
  }
  if (chosen.has('hugePath')) target += '/' + 'p'.repeat(17_000 + Math.floor(r() * 50_000));
  if (chosen.has('query')) {
    const bad = ['limit=%E0%A4%A', 'limit=-5', 'vm=%00', 'limit=' + '9'.repeat(400), 'limit=%00&vm=%E0%A4%A'];
    const strict = ['bogus=1', 'limit=1&limit=2', '__proto__[x]=1&bogus=1', 'constructor[prototype][x]=1&bogus=1', 'a[b][c][d][e][f]=1&bogus'];
    target += '?' + pick(route.strictQuery ? [...bad, ...strict] : bad);
  }
  if (chosen.has('method')) method = pick(ODD_METHODS.filter((m) => m !== route.method));
  const headers: string[] = [`Host: 127.0.0.1`];
  let auth = `Authorization: Bearer ${token}`;
  if (chosen.has('auth')) auth = pick(['', 'Authorization: Bearer', 'Authorization: Bearer x', 'Authorization: Basic YTpi', `Authorization: Bearer ${'t'.repeat(8000)}`, `Authorization: Bearer ${token}x`, 'Authorization: bearer', `Authorization: Bearer fa1.${HOST}.AAAA`]);
  if (auth) headers.push(auth);
  if (chosen.has('header')) headers.push(pick(BAD_HEADER_LINES));
  let body = Buffer.alloc(0);
  let halfClose = false;
  let declared: number | null = null;
  if (route.body || chosen.has('json') || chosen.has('truncated')) {
    body = Buffer.from(chosen.has('json') ? pick(BAD_JSON) : pick(['{}', '{"vm":"vm-1","mode":"live"}', '{"name":"n","scopes":["read"]}', '']), 'latin1');
    // a malformed body must be sent as what it claims to be, or a route that ignores other types may take it
    headers.push(`Content-Type: ${chosen.has('json') ? pick(['application/json', 'application/json; charset=utf-8']) : pick(['application/json', 'application/octet-stream'])}`);
    declared = body.length;
  }
  if (chosen.has('truncated')) {
    declared = body.length + 1 + Math.floor(r() * 1_000_000);
    halfClose = true;
  }
  if (declared !== null) headers.push(`Content-Length: ${declared}`);
  const head = `${method} ${target} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`;
  return { bytes: Buffer.concat([Buffer.from(head, 'latin1'), body]), halfClose: halfClose || chosen.has('header') || chosen.has('method'), label: `${[...chosen].join('+')} ${route.method} ${route.path}` };
}

// ---------------------------------------------------------------- the services

const skip = redisUnavailable();
let store: Service;
let cp: Service;
let agent: Service;

beforeAll(async () => {
  if (skip) return;
  [store, cp] = await Promise.all([
    start('suspend-store', 'apps/suspend-store/src/main.ts', { PORT: '0', HOST: '127.0.0.1', FERRY_ADMIN_TOKEN: ADMIN, FERRY_STORE_BACKEND: 'fs', FERRY_STORE_DIR: path.join(stateDir, 'store'), FERRY_STORE_IDLE_TIMEOUT: '3s', FERRY_LOG_LEVEL: 'error' }, /listening on (http:\/\/\S+)/),
    start(
      'control plane',
      'apps/control-plane/src/main.ts',
      { PORT: '0', HOST: '127.0.0.1', REDIS_URL, FERRY_ADMIN_TOKEN: ADMIN, FERRY_AGENT_SECRET: SECRET, FERRY_KEY_PREFIX: prefix, FERRY_QUEUE_PREFIX: prefix },
      /listening on (http:\/\/\S+?) /,
    ),
  ]);
  agent = await start(
    'host agent',
    'apps/host-agent/src/main.ts',
    {
      FERRY_HOST_ID: HOST,
      FERRY_CONTROL_PLANE_URL: cp.url,
      FERRY_AGENT_TOKEN: AGENT_TOKEN,
      REDIS_URL,
      FERRY_QUEUE_PREFIX: prefix,
      FERRY_DRIVER: 'sim',
      FERRY_STATE_DIR: path.join(stateDir, 'agent'),
      FERRY_SIM_TOOLSTACK: '4.17-64',
      FERRY_SIM_GUESTS: 'vm-1:pv64:4M:1:7',
      FERRY_STORE_URL: store.url,
    },
    /ready: .* data (http:\/\/\S+)/,
  );
}, 240_000);

afterAll(async () => {
  for (const s of [agent, cp, store]) s?.child.kill('SIGKILL');
  if (!skip) await dropRedisPrefix(REDIS_URL, prefix).catch(() => 0);
  fs.rmSync(stateDir, { recursive: true, force: true });
});

describe.skipIf(skip)('hostile input at every route', () => {
  const targets = (): [Service, Route[], string][] => [
    [agent, AGENT_ROUTES, 'not-the-stream-token'],
    [cp, CP_ROUTES, ADMIN],
    [store, STORE_ROUTES, ADMIN],
  ];

  it('the known killers: a malformed stream id, lying lengths, oversized JSON', async () => {
    expect(await send(agent.url, Buffer.from('PUT /v1/streams/%E0%A4%A HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\nContent-Length: 0\r\n\r\n'), false)).toBe(400);
    expect(await send(store.url, Buffer.from(`POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{`), false)).toBe(401);
    expect(await send(store.url, Buffer.from(`POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{`), false)).toBe(413);
    const big = Buffer.from(JSON.stringify({ name: 'x'.repeat(20_000), scopes: ['read'] }));
    expect(await send(store.url, Buffer.concat([Buffer.from(`POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n`), big]), false)).toBe(413);
    const huge = Buffer.alloc(9 * 1024 * 1024, 0x20);
    expect(await send(cp.url, Buffer.concat([Buffer.from(`POST /v1/migrations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nContent-Length: ${huge.length}\r\n\r\n`), huge]), false)).toBe(413);
    for (const [svc] of targets()) expect(await send(svc.url, Buffer.from(`CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n`), false), `${svc.name} CONNECT`).toBe(405);
  }, 120_000);

  it(`${PER_TARGET} generated malformed requests per service (seed ${SEED}): each a 4xx, every process alive`, async () => {
    const r = rng(SEED);
    const bad: string[] = [];
    const counts = new Map<number, number>();
    for (const [svc, routes, token] of targets()) {
      for (let i = 0; i < PER_TARGET; i++) {
        const c = build(r, routes, token);
        const status = await send(svc.url, c.bytes, c.halfClose);
        counts.set(status, (counts.get(status) ?? 0) + 1);
        if (status < 400 || status >= 500) bad.push(`${svc.name}: ${status || 'no answer'} for ${c.label} :: ${JSON.stringify(c.bytes.subarray(0, 160).toString('latin1'))}`);
        if (svc.child.exitCode !== null || svc.child.signalCode !== null) throw new Error(`${svc.name} died at case ${i} (${c.label}):\n${svc.output().slice(-3000)}`);
      }
    }
    console.log(`hostile input: ${PER_TARGET * 3} requests, answers ${JSON.stringify(Object.fromEntries([...counts].sort((a, b) => a[0] - b[0])))}`);
    expect(bad, bad.slice(0, 20).join('\n')).toEqual([]);
    for (const [svc] of targets()) {
      expect(svc.child.exitCode, svc.name).toBeNull();
      expect(await send(svc.url, Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'), false), `${svc.name} still answers`).toBe(200);
    }
  }, 600_000);
});
