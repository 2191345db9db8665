/**
 * Redis keeps ACL users out of its data (they are neither replicated nor in the AOF), so a node that
 * becomes primary, or restarts, may lack the agents' users. provisionAgentAclUser records each one
 * under the queue prefix; reapplyAgentAclUsers gives them back, with the same password.
 */
import { randomUUID } from 'node:crypto';
import IORedis from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { redisUrlWithCredentials } from '@ferry/config';
import { agentAclRegistryKey, agentRedisOptions, createRedisConnection, provisionAgentAclUser, reapplyAgentAclUsers } from './index';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `ferry-aclr-${randomUUID().slice(0, 8)}`;
const users = [`${prefix}-agent-h1`, `${prefix}-agent-h2`];
const admin = createRedisConnection(REDIS_URL, { maxRetriesPerRequest: null });

afterAll(async () => {
  await admin.call('ACL', 'DELUSER', ...users);
  await admin.del(agentAclRegistryKey(prefix));
  await admin.quit();
});

/** True when the connection is this agent's user: its own queue's keys readable, ACL commands refused. */
async function canLogIn(user: string, password: string, hostId: string): Promise<boolean> {
  const c = new IORedis(redisUrlWithCredentials(REDIS_URL, user, password), { ...agentRedisOptions, lazyConnect: true, retryStrategy: () => null });
  c.on('error', () => undefined);
  try {
    await c.connect();
    // A refused AUTH leaves the connection as the default user, which may run anything.
    await c.exists(`${prefix}:ferry.host.${hostId}:meta`);
    const whoami = await c.call('ACL', 'WHOAMI').then(
      () => 'allowed',
      (e: Error) => e.message,
    );
    return /NOPERM/.test(whoami);
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}

it('restores every recorded agent user, password and rules, after the node lost them', async () => {
  const passwords = [randomUUID(), randomUUID()];
  await provisionAgentAclUser(admin, users[0]!, passwords[0]!, 'h1', prefix);
  await provisionAgentAclUser(admin, users[1]!, passwords[1]!, 'h2', prefix);
  const rulesBefore = await admin.call('ACL', 'GETUSER', users[0]!);
  // The record holds no password, only the hash Redis itself keeps.
  const record = await admin.hget(agentAclRegistryKey(prefix), users[0]!);
  expect(record).not.toContain(passwords[0]);

  await admin.call('ACL', 'DELUSER', ...users);
  expect(await canLogIn(users[0]!, passwords[0]!, 'h1')).toBe(false);

  expect(await reapplyAgentAclUsers(admin, prefix)).toBe(2);
  expect(await canLogIn(users[0]!, passwords[0]!, 'h1')).toBe(true);
  expect(await canLogIn(users[1]!, passwords[1]!, 'h2')).toBe(true);
  expect(await canLogIn(users[1]!, passwords[0]!, 'h2')).toBe(false);
  expect(await admin.call('ACL', 'GETUSER', users[0]!)).toEqual(rulesBefore);
});
