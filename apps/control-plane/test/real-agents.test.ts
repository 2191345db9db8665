/**
 * Real host-agent processes (sim driver) against the control plane: a legacy 32-bit host and two
 * v2 64-bit hosts; a live migration legacy -> v2 keeps the guest's memory digest; then an upgrade
 * campaign of the legacy host during which the control plane is killed and restarted.
 * Spawns processes (about 15 s); part of npm test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { deriveAgentToken } from '@ferry/config';
import type { CampaignDto, HostDto, MigrationDto, VmDto } from '@ferry/contracts';
import { REDIS_URL, SECRET, World, api, until } from './harness';

const root = path.resolve(__dirname, '../../..');
const w = new World();
const procs: ChildProcess[] = [];
const stateDir = mkdtempSync(path.join(tmpdir(), 'ferry-real-'));

/** `dirtyRate` is the host's FERRY_SIM_DIRTY_RATE: what a guest restored there dirties once it runs. */
function agent(cpUrl: string, hostId: string, toolstack: string, guests: string, dirtyRate = '4M'): ChildProcess {
  const p = spawn(process.execPath, [path.join(root, 'apps/cli/bin/run-ts.js'), path.join(root, 'apps/host-agent/src/main.ts')], {
    env: {
      ...process.env,
      FERRY_HOST_ID: hostId,
      FERRY_CONTROL_PLANE_URL: cpUrl,
      FERRY_AGENT_TOKEN: deriveAgentToken(SECRET, hostId),
      REDIS_URL,
      FERRY_QUEUE_PREFIX: w.queuePrefix,
      FERRY_DRIVER: 'sim',
      FERRY_STATE_DIR: path.join(stateDir, hostId),
      FERRY_SIM_TOOLSTACK: toolstack,
      FERRY_SIM_GUESTS: guests,
      FERRY_SIM_DIRTY_RATE: dirtyRate,
      FERRY_HEARTBEAT_MS: '300',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  procs.push(p);
  return p;
}

afterAll(async () => {
  for (const p of procs) p.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  await w.close();
  rmSync(stateDir, { recursive: true, force: true });
});

it('real agents: legacy -> v2 live migration keeps the digest; campaign survives a control-plane restart', async () => {
  const port = String(20000 + Math.floor(Math.random() * 20000));
  let cp = await w.cp({ PORT: port, FERRY_OFFLINE_AFTER_MS: '5000' });
  agent(cp.url, 'old1', '4.4-32', 'r1:pv32:16M:1:7:0,r2:hvm:16M:1:8');
  // r1 keeps still on new1 too: a sim guest restored there dirties at new1's rate, and the
  // inventory new1 reports after the move must still show the digest r1 had before it
  agent(cp.url, 'new1', '4.17-64', '', '0');
  agent(cp.url, 'new2', '4.17-64', 'r3:pv64:16M:1:9');
  await until('3 hosts online', async () => (await api<{ items: HostDto[] }>(cp.url, '/v1/hosts')).body.items.filter((h) => h.state === 'online').length === 3, 60_000);
  // r1 dirties no memory (rate 0), so its digest must survive the move unchanged
  const before = (await api<VmDto>(cp.url, '/v1/vms/r1')).body;
  expect(before.memoryDigest).toBeTruthy();

  const m = await api<MigrationDto>(cp.url, '/v1/migrations', { body: { vm: 'r1', mode: 'live', target: 'new1' }, headers: { 'idempotency-key': 'real-1' } });
  expect(m.status).toBe(202);
  const done = await until('migration to finish', async () => {
    const x = (await api<MigrationDto>(cp.url, `/v1/migrations/${m.body.id}`)).body;
    return ['completed', 'failed', 'cancelled'].includes(x.phase) ? x : null;
  }, 60_000);
  expect(done.error).toBeNull();
  expect(done.phase).toBe('completed');
  const after = await until('vm on new1 with digest', async () => {
    const v = (await api<VmDto>(cp.url, '/v1/vms/r1')).body;
    return v.hostId === 'new1' && v.memoryDigest ? v : null;
  });
  expect(after.memoryDigest).toBe(before.memoryDigest);

  // campaign: upgrade old1 (r2 on it); kill the control plane once draining started, restart it on the same port
  const c = await api<CampaignDto>(cp.url, '/v1/campaigns', { body: { hosts: { bitness: 32 }, strategy: 'evacuate-and-return', maxParallelHosts: 1, maxParallelMigrations: 1, onError: 'stop' } });
  expect(c.status, JSON.stringify(c.body)).toBe(201);
  await until('draining', async () => (await api<CampaignDto>(cp.url, `/v1/campaigns/${c.body.id}`)).body.hosts[0]!.state !== 'pending');
  await w.cps.shift()!.close();
  cp = await w.cp({ PORT: port, FERRY_OFFLINE_AFTER_MS: '5000' });
  const end = await until('campaign end', async () => {
    const x = (await api<CampaignDto>(cp.url, `/v1/campaigns/${c.body.id}`)).body;
    return ['completed', 'failed', 'aborted'].includes(x.state) ? x : null;
  }, 120_000);
  expect(end.error).toBeNull();
  expect(end.state).toBe('completed');
  const old1 = (await api<HostDto>(cp.url, '/v1/hosts/old1')).body;
  expect(old1.toolstack).toMatchObject({ bitness: 64, streamFormat: 'v2' });
  const r2 = (await api<VmDto>(cp.url, '/v1/vms/r2')).body;
  expect(r2.hostId).toBe('old1');
}, 240_000);
