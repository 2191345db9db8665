/**
 * The control plane's REST API drives a live migration between two `xl` hosts (Xen's own pre-copy,
 * `xl migrate` / `xl migrate-receive` carried by the agents): the real control plane and two real
 * agents with FERRY_DRIVER=xl, each on a scripted stand-in for `xl`
 * (apps/host-agent/test/fake-xl/xl) that speaks xl's migration protocol. Then a cancel in pre-copy:
 * the guest stays on its source.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { deriveAgentToken } from '@ferry/config';
import type { MigrationDto, VmDto } from '@ferry/contracts';
import { encodeV2, synthStream } from '@ferry/stream-codec';
import { REPO_ROOT, dropRedisPrefix, freePort, redisUnavailable } from './stack';

const skip = redisUnavailable();
if (skip && process.env.FERRY_REQUIRE_SERVICES === '1') throw new Error(`[xl live e2e] required (FERRY_REQUIRE_SERVICES=1): ${skip}`);
if (skip) console.log(`[xl live e2e] skipped: ${skip}`);

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADMIN = `admin-${randomBytes(8).toString('hex')}`;
const SECRET = `agent-secret-${randomBytes(8).toString('hex')}`;
const PREFIX = `xllive${randomBytes(4).toString('hex')}`;
const FAKE = path.join(REPO_ROOT, 'apps/host-agent/test/fake-xl/xl');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function start(name: string, entry: string, env: Record<string, string>, ready: RegExp): Promise<ChildProcess> {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'apps/cli/bin/run-ts.js'), path.join(REPO_ROOT, entry)], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: string[] = [];
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name} not ready in 90 s:\n${out.join('')}`)), 90_000);
    const onData = (d: Buffer): void => {
      out.push(d.toString());
      if (process.env.FERRY_TEST_VERBOSE) process.stderr.write(`[${name}] ${d.toString()}`);
      if (ready.test(d.toString())) {
        clearTimeout(t);
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', () => reject(new Error(`${name} exited:\n${out.join('')}`)));
  });
}

describe.skipIf(skip !== null)('xl live migration through the control plane (scripted xl)', { timeout: 240_000 }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-xl-e2e-'));
  const procs: ChildProcess[] = [];
  let cpUrl = '';
  afterAll(async () => {
    for (const p of procs) {
      if (p.exitCode === null && p.signalCode === null) {
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGTERM');
        await Promise.race([exited, sleep(15_000)]);
      }
    }
    await dropRedisPrefix(REDIS_URL, PREFIX).catch(() => 0);
    fs.rmSync(root, { recursive: true, force: true });
  }, 60_000);

  async function api<T>(method: string, p: string, body?: unknown): Promise<T> {
    const res = await fetch(`${cpUrl}${p}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, ...(body !== undefined ? { 'content-type': 'application/json', 'idempotency-key': `xl-${randomBytes(8).toString('hex')}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text.slice(0, 300)}`);
    return JSON.parse(text) as T;
  }
  async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, timeoutMs = 90_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await f();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(200);
    }
  }
  const domains = (h: string): { name: string; paused: boolean }[] => JSON.parse(fs.readFileSync(path.join(root, h, 'domains.json'), 'utf8')) as { name: string; paused: boolean }[];

  it('POST /v1/migrations mode live moves the guest with xl pre-copy; a cancel in pre-copy leaves it on its source', async () => {
    const parts: Buffer[] = [];
    for await (const c of encodeV2(synthStream({ guest: 'pv', framing: 'xl', pages: 600, batch: 100, vcpus: 2 }))) parts.push(Buffer.from(c));
    const image = Buffer.concat(parts);
    for (const h of ['xa', 'xb']) {
      fs.mkdirSync(path.join(root, h));
      fs.writeFileSync(path.join(root, h, 'save.img'), image);
      fs.writeFileSync(path.join(root, h, 'domains.json'), JSON.stringify(h === 'xa' ? [{ name: 'synth-pv', domid: 5, type: 'pv', memkb: 262144, vcpus: 2, paused: false }] : []));
      fs.writeFileSync(path.join(root, `xl-${h}`), `#!/bin/sh\nFAKE_XL_DIR='${path.join(root, h)}' exec '${FAKE}' "$@"\n`, { mode: 0o755 });
    }
    const port = await freePort();
    cpUrl = `http://127.0.0.1:${port}`;
    procs.push(
      await start('control-plane', 'apps/control-plane/src/main.ts', {
        PORT: String(port),
        HOST: '127.0.0.1',
        REDIS_URL,
        FERRY_ADMIN_TOKEN: ADMIN,
        FERRY_AGENT_SECRET: SECRET,
        FERRY_KEY_PREFIX: PREFIX,
        FERRY_QUEUE_PREFIX: PREFIX,
        FERRY_SCHEDULER_INTERVAL_MS: '50',
        FERRY_HEARTBEAT_INTERVAL_MS: '500',
      }, /control plane listening/),
    );
    for (const h of ['xa', 'xb']) {
      procs.push(
        await start(h, 'apps/host-agent/src/main.ts', {
          FERRY_HOST_ID: h,
          FERRY_CONTROL_PLANE_URL: cpUrl,
          FERRY_AGENT_TOKEN: deriveAgentToken(SECRET, h),
          REDIS_URL,
          FERRY_QUEUE_PREFIX: PREFIX,
          FERRY_STATE_DIR: path.join(root, `state-${h}`),
          FERRY_DRIVER: 'xl',
          FERRY_XL_PATH: path.join(root, `xl-${h}`),
          FERRY_HEARTBEAT_MS: '500',
        }, /\bready: driver xl/),
      );
    }
    await until('the guest in the inventory', async () => (await api<VmDto>('GET', '/v1/vms/synth-pv').catch(() => null))?.hostId === 'xa');

    const m = await api<MigrationDto>('POST', '/v1/migrations', { vm: 'synth-pv', target: 'xb', mode: 'live' });
    const done = await until('the migration to end', async () => {
      const x = await api<MigrationDto>('GET', `/v1/migrations/${m.id}`);
      return ['completed', 'failed', 'cancelled'].includes(x.phase) && x;
    });
    expect(done.phase).toBe('completed');
    await until('the guest on xb', async () => (await api<VmDto>('GET', '/v1/vms/synth-pv')).hostId === 'xb');
    expect(domains('xa')).toEqual([]);
    expect(domains('xb')).toEqual([expect.objectContaining({ name: 'synth-pv', paused: false })]);

    // back, slowly (the stand-in paces its writes), and cancelled in pre-copy
    fs.writeFileSync(path.join(root, 'xb', 'pace'), '25');
    const back = await api<MigrationDto>('POST', '/v1/migrations', { vm: 'synth-pv', target: 'xa', mode: 'live' });
    await until('pre-copy', async () => (await api<MigrationDto>('GET', `/v1/migrations/${back.id}`)).phase === 'precopy');
    await api('POST', `/v1/migrations/${back.id}/cancel`, {});
    const ended = await until('the cancel', async () => {
      const x = await api<MigrationDto>('GET', `/v1/migrations/${back.id}`);
      return ['completed', 'failed', 'cancelled'].includes(x.phase) && x;
    });
    expect(ended.phase).toBe('cancelled');
    await until('xl migrate to resume the guest', async () => domains('xb').some((d) => d.name === 'synth-pv' && !d.paused));
    expect(domains('xa')).toEqual([]);
    expect((await api<VmDto>('GET', '/v1/vms/synth-pv')).hostId).toBe('xb');
  });
});
