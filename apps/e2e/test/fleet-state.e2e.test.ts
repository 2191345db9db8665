/**
 * What one `ferry up` owns: its Redis prefix (per state folder, so two fleets on one Redis never see
 * each other and `--reset` starts from nothing), and what each agent is given (its own token, Redis
 * ACL user and a checkpoints-only store token; never the admin token). Black box: HTTP, the state
 * folder, Redis, and the agents' environment in /proc (Linux).
 */
import * as fs from 'node:fs';
import type { HostDto, VmDto } from '@ferry/contracts';
import { afterAll, describe, expect, it } from 'vitest';
import { call, dropRedisPrefix, list, redisCommands, redisUnavailable, startStack, type Stack } from './stack';

const skip = process.platform !== 'linux' ? 'reads /proc (Linux only)' : redisUnavailable();
if (skip && process.env.FERRY_REQUIRE_SERVICES === '1' && process.platform === 'linux') throw new Error(`[e2e] required (FERRY_REQUIRE_SERVICES=1): ${skip}`);
if (skip) console.log(`[fleet-state] skipped: ${skip}`);

const ARGS = ['--no-dashboard', '--quiet'];

function environ(pid: number): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) m.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return m;
}

/** The shared Redis the fleets use (ferry up prints REDIS_URL without its password: take ours). */
function redisOf(stack: Stack): string {
  expect(stack.output()).toMatch(/^ferry up: Redis: redis:\/\/\S+ \((?:REDIS_URL|found on localhost)\)/m);
  return process.env.REDIS_URL || 'redis://127.0.0.1:6379';
}

describe.skipIf(skip !== null)('a ferry up fleet owns its state folder and its Redis prefix', () => {
  const stacks: Stack[] = [];
  afterAll(async () => {
    for (const s of stacks) {
      await s.stop();
      fs.rmSync(s.stateDir, { recursive: true, force: true });
    }
  }, 120_000);

  it('two fleets on one Redis do not see each other; --reset starts from nothing', async () => {
    const [a, b] = await Promise.all([
      startStack({ via: 'node', args: ARGS, prefixFromState: true }),
      startStack({ via: 'node', args: ARGS, prefixFromState: true }),
    ]);
    stacks.push(a, b);
    expect(a.prefix).toMatch(/^fu-[0-9a-f]{10}$/);
    expect(b.prefix).toMatch(/^fu-[0-9a-f]{10}$/);
    expect(a.prefix).not.toBe(b.prefix);
    for (const s of [a, b]) {
      expect(await list<HostDto>(s, '/v1/hosts')).toHaveLength(4);
      expect(await list<VmDto>(s, '/v1/vms')).toHaveLength(12);
    }
    await call(a, 'POST', '/v1/hosts/xen-a/maintenance', { enabled: true });
    expect((await call<HostDto>(a, 'GET', '/v1/hosts/xen-a')).maintenance).toBe(true);
    expect((await call<HostDto>(b, 'GET', '/v1/hosts/xen-a')).maintenance).toBe(false);
    // Each fleet's admin token is its own.
    await expect(call({ url: b.url, token: a.token }, 'GET', '/v1/hosts')).rejects.toThrow(/401/);

    // Restarted with --reset in the same folder: a new prefix, the old one's keys and users gone.
    await a.stop();
    stacks.splice(stacks.indexOf(a), 1);
    const old = { prefix: a.prefix, token: a.token };
    const a2 = await startStack({ via: 'node', args: [...ARGS, '--reset'], prefixFromState: true, stateDir: a.stateDir });
    stacks.push(a2);
    expect(a2.output()).toMatch(/reset: deleted \d+ Redis keys under fu-/);
    expect(a2.prefix).toMatch(/^fu-/);
    expect(a2.prefix).not.toBe(old.prefix);
    expect(a2.token).not.toBe(old.token);
    expect(await dropRedisPrefix(redisOf(a2), old.prefix)).toBe(0);
    expect(await redisCommands(redisOf(a2), [['ACL', 'GETUSER', `${old.prefix}-agent-xen-a`]])).toMatch(/^[$*]-1\r\n/);
    expect((await call<HostDto>(a2, 'GET', '/v1/hosts/xen-a')).maintenance).toBe(false);
    expect(await list<VmDto>(a2, '/v1/vms')).toHaveLength(12);
  }, 180_000);

  it('gives each agent its own token, Redis user and a checkpoints-only store token, never the admin token', async () => {
    const s = stacks[0]!;
    const seen = new Set<string>();
    for (const host of ['xen-a', 'xen-b', 'xen-c', 'xen-d']) {
      const env = environ(s.pids.get(`agent-${host}`)!);
      expect(env.has('FERRY_ADMIN_TOKEN')).toBe(false);
      expect([...env.values()].some((v) => v.includes(s.token))).toBe(false);
      const redis = new URL(env.get('REDIS_URL')!);
      expect(decodeURIComponent(redis.username)).toBe(`${s.prefix}-agent-${host}`);
      const agentToken = env.get('FERRY_AGENT_TOKEN')!;
      const storeToken = env.get('FERRY_STORE_TOKEN')!;
      for (const t of [agentToken, storeToken, redis.password]) {
        expect(seen.has(t)).toBe(false);
        seen.add(t);
      }
      // The agent token is refused by the operator API; the store token reads and writes checkpoints only.
      await expect(call({ url: s.url, token: agentToken }, 'GET', '/v1/vms')).rejects.toThrow(/403/);
      const store = env.get('FERRY_STORE_URL')!;
      const auth = { Authorization: `Bearer ${storeToken}` };
      expect((await fetch(`${store}/v1/checkpoints`, { headers: auth })).status).toBe(200);
      const mint = await fetch(`${store}/v1/tokens`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{"scopes":["admin"]}' });
      expect(mint.status).toBe(403);
    }
  }, 60_000);
});
