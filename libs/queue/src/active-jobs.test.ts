import { randomUUID } from 'node:crypto';
import IORedis from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { HOST_JOB_NAMES, type HostJobName } from '@ferry/contracts';
import { HandlerRegistry, HostJobProducer, activeHostJobs, provisionAgentAclUser, startHostWorker, type HostJobHandler } from './index';

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

it('a restarted agent, under its own ACL user, reads the jobs its dead predecessor was running', async () => {
  const user = `${prefix}-agent`;
  const pass = randomUUID();
  await provisionAgentAclUser(redis, user, pass, 'host-x', prefix);
  const u = new URL(REDIS_URL);
  u.username = user;
  u.password = pass;
  const agentConn = new IORedis(u.toString(), { maxRetriesPerRequest: null });
  const producer = new HostJobProducer({ connection: redis, prefix });
  try {
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const handlers = Object.fromEntries(HOST_JOB_NAMES.map((n) => [n, noop()])) as { [K in HostJobName]: HostJobHandler<K> };
    handlers.inventory = () => (started(), new Promise(() => undefined)); // never finishes: the process "dies" in it
    const worker = startHostWorker({ hostId: 'host-x', registry: HandlerRegistry.from(handlers), connection: redis, prefix });
    await producer.dispatch('host-x', 'inventory', { operationId: 'op-x', attempt: 3 });
    await running;
    expect(await activeHostJobs({ hostId: 'host-x', connection: agentConn, prefix })).toEqual([{ name: 'inventory', data: { operationId: 'op-x', attempt: 3 } }]);
    void worker.close(true);
  } finally {
    await producer.close();
    agentConn.disconnect();
    await redis.call('ACL', 'DELUSER', user);
  }
});
