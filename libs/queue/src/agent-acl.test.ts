/**
 * An agent's Redis ACL user, against the real Redis: everything that reaches past its own queue is
 * refused, and a BullMQ worker logged in as that user still consumes its queue.
 *
 * Each forbidden command is first asked of `ACL DRYRUN` (as the admin connection), which answers
 * without running it; only a command DRYRUN refuses is then sent for real as the agent. So a rule
 * that regresses fails this test without swapping, pausing or flushing the shared Redis.
 */
import { randomUUID } from 'node:crypto';
import IORedis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST_JOB_NAMES, type HostJobName } from '@ferry/contracts';
import { HandlerRegistry, HostJobProducer, agentRedisOptions, provisionAgentAclUser, startHostWorker, type HostJobHandler } from './index';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `ferry-acl-${randomUUID().slice(0, 8)}`;
const user = `${prefix}-agent-host-a`;
const pass = randomUUID();
const admin = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
let agent: IORedis;

beforeAll(async () => {
  await provisionAgentAclUser(admin, user, pass, 'host-a', prefix);
  const u = new URL(REDIS_URL);
  u.username = user;
  u.password = pass;
  agent = new IORedis(u.toString(), agentRedisOptions);
});

afterAll(async () => {
  agent?.disconnect();
  await admin.call('ACL', 'DELUSER', user);
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await admin.del(...keys);
  } while (cursor !== '0');
  await admin.quit();
});

const own = `${prefix}:ferry.host.host-a`;
/** What an agent must never be able to run, with the arguments tried. */
const FORBIDDEN: string[][] = [
  ['SWAPDB', '0', '1'],
  ['CLIENT', 'PAUSE', '10', 'ALL'],
  ['CLIENT', 'KILL', 'USER', 'default'],
  ['CLIENT', 'LIST'],
  ['CLIENT', 'NO-EVICT', 'on'],
  ['SCAN', '0'],
  ['RANDOMKEY'],
  ['KEYS', `${own}:*`],
  ['DBSIZE'],
  ['INFO'],
  ['INFO', 'keyspace'],
  ['SCRIPT', 'FLUSH'],
  ['SCRIPT', 'LOAD', 'return 1'],
  ['FUNCTION', 'FLUSH'],
  ['FUNCTION', 'LIST'],
  ['FLUSHALL'],
  ['FLUSHDB'],
  ['CONFIG', 'GET', 'maxmemory'],
  ['ACL', 'WHOAMI'],
  ['ACL', 'LIST'],
  ['MONITOR'],
  ['SHUTDOWN', 'NOSAVE'],
  ['PUBLISH', `${own}:x`, 'hi'],
  ['PUBSUB', 'CHANNELS'],
  ['MOVE', `${own}:x`, '1'],
  ['SORT', `${own}:x`],
  ['GET', `${prefix}:ferry.host.host-b:meta`],
  ['SET', `${prefix}:ferry.host.host-b:meta`, 'x'],
  ['GET', 'ferry:state:anything'],
  ['DEL', `${prefix}:cp:anything`],
];

describe('an agent ACL user', () => {
  it('is refused every command that reaches past its own queue (ACL DRYRUN)', async () => {
    const allowed: string[] = [];
    for (const cmd of FORBIDDEN) {
      const r = String(await admin.call('ACL', 'DRYRUN', user, ...cmd));
      if (r === 'OK') allowed.push(cmd.join(' '));
    }
    expect(allowed).toEqual([]);
  });

  it('is refused them when it sends them', async () => {
    for (const cmd of FORBIDDEN) {
      // Only what DRYRUN refuses is sent (see the header): a regression must not touch the shared Redis.
      if (String(await admin.call('ACL', 'DRYRUN', user, ...cmd)) === 'OK') continue;
      await expect(agent.call(cmd[0]!, ...cmd.slice(1)), cmd.join(' ')).rejects.toThrow(/NOPERM|no permissions/);
    }
    // A script runs under the same rules (DRYRUN checks only EVAL itself, so only a harmless read is tried).
    await expect(agent.eval(`return redis.call('GET', KEYS[1])`, 1, `${prefix}:ferry.host.host-b:meta`)).rejects.toThrow(/NOPERM|no permissions/);
    // Its own keys it may use.
    await agent.set(`${own}:probe`, '1');
    expect(await agent.get(`${own}:probe`)).toBe('1');
    expect(await agent.call('CLIENT', 'SETNAME', 'probe')).toBe('OK');
  });

  it('still consumes its own queue with a real BullMQ worker (with a failing and a slow job)', async () => {
    const seen: string[] = [];
    const handlers = Object.fromEntries(HOST_JOB_NAMES.map((n) => [n, async () => ({})])) as unknown as { [K in HostJobName]: HostJobHandler<K> };
    handlers.inventory = async (p, ctx) => {
      seen.push(p.operationId);
      await ctx.job.updateProgress(50);
      if (p.operationId === 'fails') throw new Error('boom');
      // Longer than the lock: BullMQ must extend it under this user.
      if (p.operationId === 'slow') await new Promise((r) => setTimeout(r, 1500));
      return { inventory: { guests: [] } };
    };
    // Its own user, so that ACL LOG's refusals of it are the worker's alone.
    const wuser = `${user}-w`;
    await provisionAgentAclUser(admin, wuser, pass, 'host-a', prefix);
    const u = new URL(REDIS_URL);
    u.username = wuser;
    u.password = pass;
    const conn = new IORedis(u.toString(), agentRedisOptions);
    const worker = startHostWorker({ hostId: 'host-a', registry: HandlerRegistry.from(handlers), connection: conn, prefix, lockDurationMs: 1000 });
    const errors: string[] = [];
    worker.on('error', (e) => errors.push(e.message));
    const finished = new Promise<void>((resolve) => {
      let n = 0;
      const one = (): void => void (++n === 3 && resolve());
      worker.on('completed', one);
      worker.on('failed', one);
    });
    const producer = new HostJobProducer({ connection: admin, prefix });
    for (const op of ['first', 'fails', 'slow']) await producer.dispatch('host-a', 'inventory', { operationId: op, attempt: 1 });
    await finished;
    expect(seen.sort()).toEqual(['fails', 'first', 'slow']);
    await worker.close();
    await producer.close();
    conn.disconnect();
    await admin.call('ACL', 'DELUSER', wuser);
    expect(errors).toEqual([]);
    // Nothing the worker sent was refused (ACL LOG keeps the latest refusals of every user).
    const entries = (await admin.call('ACL', 'LOG', '128')) as unknown[][];
    const refused = entries
      .map((e) => Object.fromEntries(Array.from({ length: e.length / 2 }, (_, i) => [String(e[2 * i]), e[2 * i + 1]])))
      .filter((e) => e.username === wuser)
      .map((e) => `${String(e.reason)} ${String(e.object)}`);
    expect(refused).toEqual([]);
  });
});
