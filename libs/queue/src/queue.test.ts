import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import IORedis from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { HOST_JOB_NAMES, type HostJobName } from '@ferry/contracts';
import { HandlerRegistry, HostJobProducer, RedisStateLog, agentAclRules, agentRedisOptions, hostJobId, provisionAgentAclUser, startHostWorker, type HostJobHandler } from './index';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `ferry-test-${randomUUID().slice(0, 8)}`;
const redis = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });

afterAll(async () => {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
  await redis.quit();
});

function noop<K extends HostJobName>(): HostJobHandler<K> {
  return async () => ({}) as never;
}

describe('RedisStateLog', () => {
  it('one line per change of reachability, whatever the number of clients and errors', () => {
    const lines: string[] = [];
    const state = new RedisStateLog('svc', (l) => lines.push(l));
    const a = state.watch(new EventEmitter());
    const b = state.watch(new EventEmitter());
    for (let i = 0; i < 5; i++) {
      a.emit('error', new Error('connect ECONNREFUSED 127.0.0.1:9'));
      b.emit('error', new Error('connect ECONNREFUSED 127.0.0.1:9'));
    }
    expect(state.available).toBe(false);
    a.emit('ready');
    b.emit('ready');
    expect(lines).toEqual(['svc: Redis unavailable (connect ECONNREFUSED 127.0.0.1:9); retrying', 'svc: Redis available again (after 10 failed attempts)']);
    expect(state.available).toBe(true);
  });
});

describe('HandlerRegistry', () => {
  it('names the missing job at start-up', () => {
    const r = new HandlerRegistry();
    for (const n of HOST_JOB_NAMES) if (n !== 'upgrade' && n !== 'cancel') r.register(n, noop());
    expect(() => r.assertComplete()).toThrow(/no handler for jobs 'upgrade', 'cancel'/);
    expect(() => startHostWorker({ hostId: 'h1', registry: r, connection: redis, prefix })).toThrow(/'upgrade'/);
  });
  it('names a duplicate job', () => {
    const r = new HandlerRegistry().register('suspend', noop());
    expect(() => r.register('suspend', noop())).toThrow(/duplicate handler for job 'suspend'/);
  });
  it('rejects unknown job names', () => {
    expect(() => new HandlerRegistry().register('nope' as HostJobName, noop())).toThrow(/unknown job name 'nope'/);
  });
  it('job ids never contain a colon', () => {
    expect(hostJobId('suspend', 'a:b', 2)).toBe('suspend.a_b.2');
  });
});

describe('producer + worker over real Redis', () => {
  it('routes typed jobs by name on the host queue and dedupes an attempt', async () => {
    const seen: string[] = [];
    const handlers = Object.fromEntries(HOST_JOB_NAMES.map((n) => [n, noop()])) as { [K in HostJobName]: HostJobHandler<K> };
    handlers.inventory = async (p) => {
      seen.push(`inventory:${p.operationId}`);
      return { inventory: { guests: [] } };
    };
    const registry = HandlerRegistry.from(handlers);
    const producer = new HostJobProducer({ connection: redis, prefix });
    const worker = startHostWorker({ hostId: 'host-a', registry, connection: new IORedis(REDIS_URL, { maxRetriesPerRequest: null }), prefix });
    const done = new Promise<unknown>((resolve) => worker.on('completed', (_job, result) => resolve(result)));
    await producer.dispatch('host-a', 'inventory', { operationId: 'op1', attempt: 1 });
    await producer.dispatch('host-a', 'inventory', { operationId: 'op1', attempt: 1 });
    expect(await done).toEqual({ inventory: { guests: [] } });
    expect(seen).toEqual(['inventory:op1']);
    await worker.close();
    await producer.close();
  });

  it('an agent ACL user can consume only its own host queue', async () => {
    const user = `${prefix}-agent`;
    const pass = randomUUID();
    await provisionAgentAclUser(redis, user, pass, 'host-b', prefix);
    expect(agentAclRules('host-b', prefix)).toContain(`~${prefix}:ferry.host.host-b:*`);
    const u = new URL(REDIS_URL);
    u.username = user;
    u.password = pass;
    const agentConn = new IORedis(u.toString(), agentRedisOptions);
    try {
      const handlers = Object.fromEntries(HOST_JOB_NAMES.map((n) => [n, noop()])) as { [K in HostJobName]: HostJobHandler<K> };
      handlers.inventory = async () => ({ inventory: { guests: [] } });
      const worker = startHostWorker({ hostId: 'host-b', registry: HandlerRegistry.from(handlers), connection: agentConn, prefix });
      const done = new Promise<unknown>((resolve) => worker.on('completed', (_j, r) => resolve(r)));
      const producer = new HostJobProducer({ connection: redis, prefix });
      await producer.dispatch('host-b', 'inventory', { operationId: 'op2', attempt: 1 });
      expect(await done).toEqual({ inventory: { guests: [] } });
      await expect(agentConn.get(`${prefix}:ferry.host.host-c:meta`)).rejects.toThrow(/NOPERM/);
      await expect(agentConn.get(`ferry:state:anything`)).rejects.toThrow(/NOPERM/);
      await worker.close();
      await producer.close();
    } finally {
      agentConn.disconnect();
      await redis.call('ACL', 'DELUSER', user);
    }
  });
});
