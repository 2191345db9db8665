/**
 * Redis out of reach: the control plane and a host agent (real processes) pointed at a closed port
 * log one line saying so, never ioredis' "Unhandled error event" stack per reconnection attempt.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { deriveAgentToken } from '@ferry/config';
import { ADMIN, SECRET, World } from './harness';

const root = path.resolve(__dirname, '../../..');
const procs: ChildProcess[] = [];
const w = new World();
const stateDir = mkdtempSync(path.join(tmpdir(), 'ferry-redis-down-'));

/** A loopback port with nothing listening on it. */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Runs a service from source; resolves once `ready` matches its output, with its output so far and later. */
async function run(entry: string, env: Record<string, string>, ready: RegExp): Promise<{ out: () => string; err: () => string }> {
  const p = spawn(process.execPath, [path.join(root, 'apps/cli/bin/run-ts.js'), path.join(root, entry)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(p);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  for (let i = 0; i < 600 && !ready.test(out + err); i++) {
    if (p.exitCode !== null) throw new Error(`${entry} exited (${p.exitCode}): ${err}`);
    await sleep(100);
  }
  expect(out + err).toMatch(ready);
  return { out: () => out, err: () => err };
}

/** stderr holds no stack; the one line saying Redis is out of reach is on stderr or stdout (Nest logs warnings there). */
function expectOneLine(svc: { out: () => string; err: () => string }, who: string): void {
  const all = svc.out() + svc.err();
  expect(svc.err(), who).not.toMatch(/Unhandled error event/);
  expect(all, who).not.toMatch(/^\s+at /m); // no stack at all
  expect(all.match(/Redis unavailable \(.*ECONNREFUSED.*\); retrying/g) ?? [], `${who}:\n${all}`).toHaveLength(1);
}

afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await w.close();
  rmSync(stateDir, { recursive: true, force: true });
});

describe('Redis out of reach', () => {
  it('the control plane logs one line, no stacks', async () => {
    const port = await closedPort();
    const cp = await run('apps/control-plane/src/main.ts', { ...w.env(), REDIS_URL: `redis://127.0.0.1:${port}`, FERRY_LOG_LEVEL: '' }, /listening on/);
    await sleep(3000); // ioredis retries every 50 ms, 100 ms, ... meanwhile
    expectOneLine(cp, 'control plane');
  }, 60_000);

  it('a host agent logs one line, no stacks', async () => {
    const port = await closedPort();
    const cp = await w.cp();
    const agent = await run(
      'apps/host-agent/src/main.ts',
      {
        FERRY_HOST_ID: 'rd-1',
        FERRY_CONTROL_PLANE_URL: cp.url,
        FERRY_AGENT_TOKEN: deriveAgentToken(SECRET, 'rd-1'),
        REDIS_URL: `redis://127.0.0.1:${port}`,
        FERRY_QUEUE_PREFIX: w.queuePrefix,
        FERRY_DRIVER: 'sim',
        FERRY_STATE_DIR: path.join(stateDir, 'rd-1'),
        FERRY_SIM_TOOLSTACK: '4.17-64',
        FERRY_ADMIN_TOKEN: ADMIN,
      },
      // it settles the jobs a predecessor left (read from its queue) before it says ready, so with
      // Redis out of reach the one line is all it says
      /Redis unavailable|ready: driver/,
    );
    await sleep(3000);
    expectOneLine(agent, 'host agent');
  }, 60_000);
});
