/**
 * The Lua scripts as files: every one is found, its includes inlined, and Redis compiles it; the
 * compare-and-set commands keep their contract on a real Redis (own key prefix).
 */
import { randomUUID } from 'node:crypto';
import IORedis from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { defineScripts, readScripts } from '../src/redis/scripts';
import { REDIS_URL } from './harness';

const redis = defineScripts(new IORedis(REDIS_URL, { maxRetriesPerRequest: null }));
const P = `ferry-test-lua-${randomUUID()}`;

afterAll(async () => {
  const keys = await redis.keys(`${P}:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
});

describe('Lua scripts', () => {
  it('are read from src/redis/scripts with their includes inlined, and Redis compiles each', async () => {
    const scripts = readScripts();
    expect(scripts.map((s) => s.name)).toEqual(
      expect.arrayContaining(['casHset', 'migTransition', 'claimActiveOp', 'releaseActiveOp', 'pinCheckpoint', 'markCheckpointDeleting', 'unmarkCheckpointDeleting', 'renewLease', 'releaseLease']),
    );
    for (const s of scripts) {
      expect(s.numberOfKeys, s.name).toBe(1);
      expect(s.lua, s.name).not.toMatch(/@include/);
      const sha = (await redis.script('LOAD', s.lua)) as string;
      expect(sha, s.name).toMatch(/^[0-9a-f]{40}$/);
    }
    expect(scripts.find((s) => s.name === 'casHset')!.lua).toMatch(/local function compareFields/);
  });

  it('casHset sets only from an allowed value with every condition met', async () => {
    const k = `${P}:op:1`;
    expect(await redis.casHset(k, 'state', 'queued', '0', 'state', 'running')).toEqual([0, null]);
    await redis.hset(k, 'state', 'queued', 'owner', 'a');
    expect(await redis.casHset(k, 'state', 'running,done', '0', 'state', 'failed')).toEqual([0, 'queued']);
    expect(await redis.casHset(k, 'state', 'queued', '1', 'owner', 'b', 'state', 'running')).toEqual([0, 'queued']);
    expect(await redis.casHset(k, 'state', 'x,queued', '1', 'owner', 'a', 'state', 'running', 'by', 'a')).toEqual([1, 'queued']);
    expect(await redis.hgetall(k)).toEqual({ state: 'running', owner: 'a', by: 'a' });
  });

  it('migTransition moves the phase and its indexes, guarded the same way', async () => {
    const k = `${P}:mig:m1`;
    await redis.hset(k, 'phase', 'queued', 'source', 'h1', 'target', 'h2', 'mem', '512');
    await redis.zadd(`${P}:migs`, 7, 'm1');
    expect(await redis.migTransition(k, P, 'm1', 'precopy', 'dispatched', '-', 'dispatched', '0')).toEqual([0, 'queued']);
    expect(await redis.migTransition(k, P, 'm1', 'queued', 'dispatched', '-', 'dispatched', '0', 'updatedAt', 't')).toEqual([1, 'queued']);
    expect(await redis.zscore(`${P}:migs:phase:dispatched`, 'm1')).toBe('7');
    expect(await redis.sismember(`${P}:migs:inflight`, 'm1')).toBe(1);
    expect(await redis.hgetall(`${P}:migs:load`)).toEqual({ cluster: '1', 'src:h1': '1', 'dst:h2': '1', 'mem:h2': '512' });
    expect(await redis.hget(k, 'updatedAt')).toBe('t');
  });
});
