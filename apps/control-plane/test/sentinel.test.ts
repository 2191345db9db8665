/**
 * Redis that survives a node: a primary, a replica and three sentinels (Debian's redis-server and
 * redis-sentinel, on free loopback ports this test starts itself), REDIS_URL in the sentinel form
 * for the control plane and the agents, each agent on its own ACL user. The primary is killed
 * mid-campaign; the sentinels promote the replica, everyone follows it, the agents find their users
 * there (ACLs are not replicated: the control plane gives them to every node), and the campaign
 * completes with every VM exactly once, its memory intact.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import IORedis from 'ioredis';
import type { CampaignDto, VmDto } from '@ferry/contracts';
import { redisUrlWithCredentials } from '@ferry/config';
import { startControlPlane, type RunningControlPlane } from '../src/app';
import { FakeAgent, digest } from './fake-agent';
import { ADMIN, LEGACY32, SECRET, V2_64, api, guest, until } from './harness';

const haveSentinel = spawnSync('redis-sentinel', ['--version']).status === 0 && spawnSync('redis-server', ['--version']).status === 0;
// CI installs redis-sentinel (.ci/run); there a missing binary is a failure, not a skip.
const skip = !haveSentinel && process.env.FERRY_REQUIRE_SERVICES !== '1';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

const PRIMARY_NAME = 'ferry-primary';
const dir = mkdtempSync(path.join(tmpdir(), 'ferry-sentinel-'));
const procs: ChildProcess[] = [];
const agents: FakeAgent[] = [];
const cps: RunningControlPlane[] = [];
const id = Math.random().toString(36).slice(2, 8);
const keyPrefix = `ferry-sn-${id}`;
const queuePrefix = `ferry-snq-${id}`;

function start(cmd: string, args: string[]): ChildProcess {
  const p = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  procs.push(p);
  return p;
}

async function ping(port: number): Promise<boolean> {
  const c = new IORedis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  try {
    await c.connect();
    return (await c.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}

async function sentinelCall(port: number, ...args: string[]): Promise<unknown> {
  const c = new IORedis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  try {
    return await c.call('SENTINEL', ...args);
  } finally {
    c.disconnect();
  }
}

afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const cp of cps) await cp.close().catch(() => undefined);
  for (const p of procs) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(skip)('Redis Sentinel', () => {
  it('a campaign completes, every VM exactly once, when the primary dies mid-campaign', async () => {
    expect(haveSentinel, 'redis-server and redis-sentinel are required (apt-get install redis-sentinel)').toBe(true);
    const [primaryPort, replicaPort, ...sentinelPorts] = await Promise.all([1, 2, 3, 4, 5].map(() => freePort()));
    const server = (port: number, extra: string[] = []) => start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra]);
    const primary = server(primaryPort!, ['--repl-diskless-sync-delay', '0']);
    server(replicaPort!, ['--replicaof', '127.0.0.1', String(primaryPort)]);
    for (const port of sentinelPorts) {
      const conf = path.join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${PRIMARY_NAME} 127.0.0.1 ${primaryPort} 2`,
          `sentinel down-after-milliseconds ${PRIMARY_NAME} 1000`,
          `sentinel failover-timeout ${PRIMARY_NAME} 10000`,
          `sentinel parallel-syncs ${PRIMARY_NAME} 1`,
          '',
        ].join('\n'),
      );
      start('redis-sentinel', [conf]);
    }
    for (const port of [primaryPort!, replicaPort!, ...sentinelPorts]) await until(`redis on ${port}`, () => ping(port), 10_000);
    // The replica has its first full copy (until then a failover would promote an empty node).
    await until('the replica in sync', async () => {
      const r = new IORedis({ port: replicaPort!, host: '127.0.0.1' });
      try {
        return /master_link_status:up/.test(await r.info('replication'));
      } finally {
        r.disconnect();
      }
    }, 20_000);
    // Every sentinel knows the replica and the other two sentinels before anything depends on them.
    for (const port of sentinelPorts) {
      await until(`sentinel ${port} sees the set`, async () => {
        const replicas = (await sentinelCall(port, 'REPLICAS', PRIMARY_NAME)) as unknown[];
        const peers = (await sentinelCall(port, 'SENTINELS', PRIMARY_NAME)) as unknown[];
        return replicas.length === 1 && peers.length === 2;
      }, 20_000);
    }
    const redisUrl = `redis+sentinel://${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${PRIMARY_NAME}`;

    const cp = await startControlPlane({
      PORT: '0',
      HOST: '127.0.0.1',
      REDIS_URL: redisUrl,
      FERRY_ADMIN_TOKEN: ADMIN,
      FERRY_AGENT_SECRET: SECRET,
      FERRY_KEY_PREFIX: keyPrefix,
      FERRY_QUEUE_PREFIX: queuePrefix,
      FERRY_SCHEDULER_INTERVAL_MS: '30',
      FERRY_HEARTBEAT_INTERVAL_MS: '200',
      FERRY_OFFLINE_AFTER_MS: '8000',
      FERRY_RETRY_BACKOFF_MS: '100',
      FERRY_LEASE_MS: '1000',
    });
    cps.push(cp);

    const fleet = {
      old1: [guest('s-o1-a'), guest('s-o1-b', { type: 'hvm' }), guest('s-o1-c')],
      old2: [guest('s-o2-a'), guest('s-o2-b')],
      new1: [guest('s-n1-a', { guestWidth: 64 })],
      new2: [],
    };
    const digests = new Map(Object.values(fleet).flat().map((g) => [g.vmId, digest(g.memory)]));
    for (const [hostId, guests] of Object.entries(fleet)) {
      // Each agent on its own ACL user, as deployed: minted by the control plane.
      const cred = await api<{ redisUser: string; redisPassword: string }>(cp.url, `/v1/hosts/${hostId}/agent-credentials`, { method: 'POST' });
      expect(cred.status).toBe(200);
      const a = new FakeAgent({
        cpUrl: cp.url,
        secret: SECRET,
        hostId,
        toolstack: hostId.startsWith('old') ? LEGACY32 : V2_64,
        redisUrl: redisUrlWithCredentials(redisUrl, cred.body.redisUser, cred.body.redisPassword),
        queuePrefix,
        guests,
        roundMs: 40,
        rounds: 3,
      });
      agents.push(a);
      await a.start();
    }

    const c = await api<CampaignDto>(cp.url, '/v1/campaigns', {
      body: { hosts: { bitness: 32 }, strategy: 'evacuate-and-return', maxParallelHosts: 1, maxParallelMigrations: 2, onError: 'stop' },
    });
    expect(c.status).toBe(201);
    // Mid-campaign: some migrations done, the campaign not finished. Then the primary dies.
    await until('a migration done', async () => {
      const ms = await api<{ items: { phase: string }[] }>(cp.url, '/v1/migrations?limit=100');
      return ms.body.items.some((m) => m.phase === 'completed');
    }, 30_000);
    const before = (await api<CampaignDto>(cp.url, `/v1/campaigns/${c.body.id}`)).body;
    expect(before.state).toBe('running');
    primary.kill('SIGKILL');

    await until('the replica promoted', async () => {
      const addr = (await sentinelCall(sentinelPorts[0]!, 'GET-MASTER-ADDR-BY-NAME', PRIMARY_NAME)) as string[];
      return Number(addr[1]) === replicaPort;
    }, 30_000);

    const done = await until(
      'campaign finished',
      async () => {
        const x = (await api<CampaignDto>(cp.url, `/v1/campaigns/${c.body.id}`)).body;
        return ['completed', 'failed', 'aborted'].includes(x.state) ? x : null;
      },
      90_000,
    );
    expect(done.error).toBeNull();
    expect(done.state).toBe('completed');
    expect(done.counts).toMatchObject({ hostsTotal: 2, hostsDone: 2, hostsFailed: 0 });

    // Every VM exactly once across the fleet, its memory intact, and the control plane agrees.
    const where = new Map<string, string[]>();
    for (const a of agents) for (const g of a.inventory()) where.set(g.vmId, [...(where.get(g.vmId) ?? []), a.hostId]);
    expect([...where.keys()].sort()).toEqual([...digests.keys()].sort());
    for (const [vmId, hosts] of where) expect(hosts, vmId).toHaveLength(1);
    for (const a of agents) for (const g of a.inventory()) expect(g.memoryDigest, g.vmId).toBe(digests.get(g.vmId));
    const vms = (await api<{ items: VmDto[] }>(cp.url, '/v1/vms?limit=100')).body.items;
    expect(vms.map((v) => v.id).sort()).toEqual([...digests.keys()].sort());
    for (const v of vms) expect(v.hostId, v.id).toBe(where.get(v.id)![0]);
  }, 180_000);
});
