/**
 * Integration: real agent processes on loopback, real Redis (REDIS_URL, default 127.0.0.1:6379),
 * a test-only coordinator in the control plane's place. Each test owns its queue prefix, ports and
 * state dirs.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentReport, VmSpec } from '@ferry/contracts';
import { Coordinator, spawnAgent, spawnSuspendStore, waitFor, type AgentProcess } from './coordinator';
import { FakeStore } from './fake-store';

let cp: Coordinator;
let store: FakeStore;
let agents: AgentProcess[];
let dirs: string[];

beforeEach(async () => {
  cp = new Coordinator();
  await cp.start();
  store = new FakeStore();
  await store.start();
  agents = [];
  dirs = [];
});

afterEach(async () => {
  await Promise.all(agents.map((a) => a.kill('SIGTERM')));
  await cp.close();
  await store.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function agent(hostId: string, env: Record<string, string>, stateDir?: string): Promise<AgentProcess & { stateDir: string }> {
  const dir = stateDir ?? (await mkdtemp(path.join(tmpdir(), `ferry-agent-${hostId}-`)));
  if (!stateDir) dirs.push(dir);
  const a = await spawnAgent(cp, hostId, { FERRY_STATE_DIR: dir, FERRY_STORE_TOKEN: store.token, ...env });
  agents.push(a);
  return Object.assign(a, { stateDir: dir });
}

const pv32: VmSpec = { vmId: 'pv1', name: 'pv1', type: 'pv', guestWidth: 32, memoryMiB: 64, vcpus: 2 };
const hvm: VmSpec = { vmId: 'hvm1', name: 'hvm1', type: 'hvm', memoryMiB: 64, vcpus: 1 };

function result<T>(r: AgentReport): T {
  if (r.type !== 'completed') throw new Error(`expected completed, got ${JSON.stringify(r)}`);
  return r.result as T;
}
function failure(r: AgentReport): { code: string; message: string } {
  if (r.type !== 'failed') throw new Error(`expected failed, got ${JSON.stringify(r)}`);
  return r.error;
}
const progressOf = (id: string, job: string) => cp.reports.filter((r) => r.operationId === id && r.job === job && r.type === 'progress');

describe('host agents on loopback', () => {
  it('live-migrates PV and HVM guests from a 32-bit legacy host to a 64-bit v2 host with identical memory digests', async () => {
    await Promise.all([
      agent('old32', { FERRY_SIM_TOOLSTACK: '4.4-32', FERRY_SIM_GUESTS: 'pv1:pv32:64M:2:11:4M,hvm1:hvm:64M:1:12:4M' }),
      agent('new64', { FERRY_SIM_TOOLSTACK: '4.17-64' }),
    ]);
    for (const vm of [pv32, hvm]) {
      const id = await cp.migrate({ vm, from: 'old32', to: 'new64', mode: 'live', downtimeTargetMs: 20, maxRounds: 6 });
      const send = result<{ rounds: number; downtimeMs: number; bytesSent: number; sourceMemoryDigest: string }>(await cp.waitFinal(id, 'migrate-send'));
      const recv = result<{ memoryDigest: string; bytesReceived: number }>(await cp.waitFinal(id, 'migrate-receive'));
      expect(recv.memoryDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(recv.memoryDigest).toBe(send.sourceMemoryDigest);
      expect(recv.bytesReceived).toBe(send.bytesSent);
      expect(send.rounds).toBeGreaterThanOrEqual(1);
      expect(send.downtimeMs).toBeGreaterThanOrEqual(0);
      const phases = new Set(progressOf(id, 'migrate-send').map((r) => (r.type === 'progress' ? r.phase : '')));
      expect(phases.has('precopy')).toBe(true);
      // true progress: sent never above the total, which only grows (round by round); each round's part likewise
      let prevTotal = 0;
      for (const r of progressOf(id, 'migrate-send')) {
        if (r.type !== 'progress') continue;
        expect(r.bytesDone).toBeLessThanOrEqual(r.bytesTotal);
        expect(r.bytesTotal).toBeGreaterThanOrEqual(prevTotal);
        expect(r.roundBytesDone ?? 0).toBeLessThanOrEqual(r.roundBytesTotal ?? 0);
        prevTotal = r.bytesTotal;
      }
      expect(prevTotal).toBeLessThanOrEqual(send.bytesSent);
      expect(cp.migrations.get(id)!.state).toBe('committed');
    }
    const target = await cp.freshGuests('new64');
    expect(target.map((g) => g.vmId).sort()).toEqual(['hvm1', 'pv1']);
    expect(target.every((g) => g.state === 'running')).toBe(true);
    expect(await cp.freshGuests('old32')).toEqual([]);
  });

  it('suspends on a 32-bit host, refuses to upgrade while guests remain, upgrades, and resumes on it as 64-bit v2', async () => {
    const h32 = await agent('h32', { FERRY_SIM_TOOLSTACK: '4.4-32', FERRY_SIM_GUESTS: 'hvm1:hvm:64M:1:21:4M' });
    // sim hosts share one machine: each registers its host id as hostname, so they can be told apart
    expect(cp.hosts.get('h32')!.reg.hostname).toBe('h32');
    await cp.dispatch('h32', 'upgrade', { operationId: 'up-0', attempt: 1, campaignId: null, toolstack: { xenVersion: '4.17', bitness: 64, streamFormat: 'v2' } });
    expect(failure(await cp.waitFinal('up-0', 'upgrade')).code).toBe('GUESTS_PRESENT');

    await cp.dispatch('h32', 'suspend', { operationId: 'sus-1', attempt: 1, vmId: 'hvm1', store: { url: store.url, checkpointId: 'ck-hvm1' }, keepRunning: false });
    const sus = result<{ checkpoint: { sha256: string; bytes: number; memoryDigest: string; vm: VmSpec } }>(await cp.waitFinal('sus-1', 'suspend'));
    expect(store.images.get('ck-hvm1')!.sha256).toBe(sus.checkpoint.sha256);
    // the last progress of a finished suspend is the whole image: 100 %
    const lastSus = progressOf('sus-1', 'suspend').at(-1)!;
    expect(lastSus).toMatchObject({ bytesDone: sus.checkpoint.bytes, bytesTotal: sus.checkpoint.bytes });
    expect(progressOf('sus-1', 'suspend').every((r) => r.type === 'progress' && r.bytesDone <= r.bytesTotal)).toBe(true);
    expect(await cp.freshGuests('h32')).toEqual([]);

    const regs = cp.hosts.get('h32')!.registrations;
    await cp.dispatch('h32', 'upgrade', { operationId: 'up-1', attempt: 1, campaignId: null, toolstack: { xenVersion: '4.17', bitness: 64, streamFormat: 'v2' } });
    result(await cp.waitFinal('up-1', 'upgrade'));
    await waitFor(() => cp.hosts.get('h32')!.registrations > regs, 10_000, 're-registration');
    // a successful upgrade is not cancelled on the way (it reports completion before it restarts the toolstack)
    expect(h32.stderr.join('')).not.toMatch(/cancelled up-1/);
    expect(cp.hosts.get('h32')!.reg.toolstack).toEqual({ xenVersion: '4.17', bitness: 64, streamFormat: 'v2' });

    await cp.dispatch('h32', 'resume', { operationId: 'res-1', attempt: 1, vm: sus.checkpoint.vm, store: { url: store.url, checkpointId: 'ck-hvm1' }, restore: { format: 'v2' } });
    const res = result<{ memoryDigest: string }>(await cp.waitFinal('res-1', 'resume'));
    expect(res.memoryDigest).toBe(sus.checkpoint.memoryDigest);
    expect(progressOf('res-1', 'resume').at(-1)).toMatchObject({ bytesDone: sus.checkpoint.bytes, bytesTotal: sus.checkpoint.bytes });
    const guests = await cp.freshGuests('h32');
    expect(guests.map((g) => [g.vmId, g.state])).toEqual([['hvm1', 'running']]);
  });

  it('with the real suspend-store: suspend on a 32-bit legacy host, resume on another one (the store down-converts v2 -> legacy 32)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ferry-store-'));
    dirs.push(dir);
    const token = 'store-admin-token-0123456789';
    const real = await spawnSuspendStore(dir, token);
    try {
      await Promise.all([
        agent('a32', { FERRY_STORE_TOKEN: token, FERRY_SIM_TOOLSTACK: '4.4-32', FERRY_SIM_GUESTS: 'hvm1:hvm:32M:1:61:4M' }),
        agent('b32', { FERRY_STORE_TOKEN: token, FERRY_SIM_TOOLSTACK: '4.4-32' }),
      ]);
      await cp.dispatch('a32', 'suspend', { operationId: 'sus-r', attempt: 1, vmId: 'hvm1', store: { url: real.url, checkpointId: 'ck-real-hvm1' }, keepRunning: false });
      const sus = result<{ checkpoint: { sha256: string; memoryDigest: string; vm: VmSpec } }>(await cp.waitFinal('sus-r', 'suspend'));
      await cp.dispatch('b32', 'resume', { operationId: 'res-r', attempt: 1, vm: sus.checkpoint.vm, store: { url: real.url, checkpointId: 'ck-real-hvm1' }, restore: { format: 'legacy', width: 32 } });
      const res = result<{ memoryDigest: string }>(await cp.waitFinal('res-r', 'resume'));
      expect(res.memoryDigest).toBe(sus.checkpoint.memoryDigest);
      expect((await cp.freshGuests('b32')).map((g) => [g.vmId, g.state])).toEqual([['hvm1', 'running']]);
      expect(await cp.freshGuests('a32')).toEqual([]);
    } finally {
      await real.kill();
    }
  });

  it('cancels a migration mid-transfer: both sides report CANCELLED and the guest runs on the source', async () => {
    await Promise.all([agent('src', { FERRY_SIM_TOOLSTACK: '4.4-32', FERRY_SIM_GUESTS: 'pv1:pv32:64M:2:31:1M' }), agent('dst', { FERRY_SIM_TOOLSTACK: '4.17-64' })]);
    const id = await cp.migrate({ vm: pv32, from: 'src', to: 'dst', mode: 'live', bandwidth: 16 * 1024 * 1024 });
    await waitFor(() => progressOf(id, 'migrate-send').some((r) => r.type === 'progress' && r.bytesDone > 4 * 1024 * 1024), 20_000, 'transfer under way');
    await cp.cancel(id, ['src', 'dst']);
    expect(failure(await cp.waitFinal(id, 'migrate-send')).code).toBe('CANCELLED');
    expect(failure(await cp.waitFinal(id, 'migrate-receive')).code).toBe('CANCELLED');
    expect(cp.migrations.get(id)!.state).not.toBe('committed');
    expect((await cp.freshGuests('src')).map((g) => [g.vmId, g.state])).toEqual([['pv1', 'running']]);
    expect(await cp.freshGuests('dst')).toEqual([]);
  });

  it('destination killed mid-transfer: the guest keeps running on the source', async () => {
    const [, dst] = await Promise.all([agent('src', { FERRY_SIM_TOOLSTACK: '4.4-32', FERRY_SIM_GUESTS: 'hvm1:hvm:64M:1:41:1M' }), agent('dst', { FERRY_SIM_TOOLSTACK: '4.17-64' })]);
    const id = await cp.migrate({ vm: hvm, from: 'src', to: 'dst', mode: 'live', bandwidth: 16 * 1024 * 1024 });
    await waitFor(() => progressOf(id, 'migrate-send').some((r) => r.type === 'progress' && r.bytesDone > 4 * 1024 * 1024), 20_000, 'transfer under way');
    await dst.kill('SIGKILL');
    const err = failure(await cp.waitFinal(id, 'migrate-send'));
    expect(err.code).toMatch(/STREAM_ERROR|TIMEOUT/);
    expect(cp.migrations.get(id)!.state).not.toBe('committed');
    expect((await cp.freshGuests('src')).map((g) => [g.vmId, g.state])).toEqual([['hvm1', 'running']]);
  });

  it('source agent killed mid-transfer: the target discards, the restarted source still has the guest, never two copies', async () => {
    const [src] = await Promise.all([agent('src', { FERRY_SIM_TOOLSTACK: '4.4-32', FERRY_SIM_GUESTS: 'pv1:pv32:64M:2:51:1M' }), agent('dst', { FERRY_SIM_TOOLSTACK: '4.17-64' })]);
    const id = await cp.migrate({ vm: pv32, from: 'src', to: 'dst', mode: 'live', bandwidth: 16 * 1024 * 1024 });
    await waitFor(() => progressOf(id, 'migrate-send').some((r) => r.type === 'progress' && r.bytesDone > 4 * 1024 * 1024), 20_000, 'transfer under way');
    await src.kill('SIGKILL');
    const err = failure(await cp.waitFinal(id, 'migrate-receive'));
    expect(err.code).toMatch(/STREAM_ERROR|INTERNAL/);
    expect(await cp.freshGuests('dst')).toEqual([]);
    await agent('src', { FERRY_SIM_TOOLSTACK: '4.4-32', FERRY_SIM_GUESTS: '' }, src.stateDir);
    const after = await waitFor(() => {
      const g = cp.guests('src');
      return g.length === 1 && g[0]!.state === 'running' ? g : undefined;
    }, 15_000, 'guest running on the restarted source');
    expect(after.map((g) => g.vmId)).toEqual(['pv1']);
    expect(cp.migrations.get(id)!.state).not.toBe('committed');
    expect(await cp.freshGuests('dst')).toEqual([]);
  });

  it('target killed after its commit was granted, before the guest ran: restarted, it runs the guest and reports completed; the source drops its copy', async () => {
    // the target's toolstack takes 1.5 s to build and to unpause a domain: the kill lands between the commit and the unpause
    const [, dst] = await Promise.all([agent('src', { FERRY_SIM_GUESTS: 'hvm1:hvm:64M:1:61:0' }), agent('dst', { FERRY_SIM_LATENCY_MS: '1500' })]);
    const before = (await cp.freshGuests('src'))[0]!.memoryDigest;
    const id = await cp.migrate({ vm: hvm, from: 'src', to: 'dst', mode: 'cold' });
    await waitFor(() => cp.migrations.get(id)!.state === 'committed', 30_000, 'commit granted');
    await dst.kill('SIGKILL');
    expect(cp.final(id, 'migrate-receive')).toBeUndefined();
    await agent('dst', {}, dst.stateDir);
    expect(result<{ memoryDigest: string }>(await cp.waitFinal(id, 'migrate-receive', 20_000)).memoryDigest).toBe(before);
    expect((await cp.freshGuests('dst')).map((g) => [g.vmId, g.state, g.memoryDigest])).toEqual([['hvm1', 'running', before]]);
    // the source never got the target's answer: it asked the control plane, which said commit
    expect(result<{ outcome: string }>(await cp.waitFinal(id, 'migrate-send', 20_000)).outcome).toBe('handed-off');
    expect(await cp.freshGuests('src')).toEqual([]);
  });

  it('a guest sent straight back to the host it just left arrives, though that host is still destroying its old copy', async () => {
    // the source's toolstack takes 1.5 s to destroy a domain: the way back is asked for while it does
    await Promise.all([agent('src', { FERRY_SIM_GUESTS: 'hvm1:hvm:16M:1:71:0', FERRY_SIM_LATENCY_MS: '1500' }), agent('dst', {})]);
    const before = (await cp.freshGuests('src'))[0]!.memoryDigest;
    const there = await cp.migrate({ vm: { ...hvm, memoryMiB: 16 }, from: 'src', to: 'dst', mode: 'live' });
    await cp.waitFinal(there, 'migrate-receive', 20_000);
    const back = await cp.migrate({ vm: { ...hvm, memoryMiB: 16 }, from: 'dst', to: 'src', mode: 'live' });
    expect(result<{ memoryDigest: string }>(await cp.waitFinal(back, 'migrate-receive', 30_000)).memoryDigest).toBe(before);
    expect((await cp.freshGuests('src')).map((g) => [g.vmId, g.state])).toEqual([['hvm1', 'running']]);
    expect(await cp.freshGuests('dst')).toEqual([]);
  });

  it('a migration arriving while the target still discards an earlier one\'s copy of the guest waits for it, then completes', async () => {
    // two sources with the same guest stand for the same VM before and after a retry; the target builds domains slowly (1.5 s)
    await Promise.all([
      agent('srcA', { FERRY_SIM_GUESTS: 'hvm1:hvm:16M:1:81:0' }),
      agent('srcB', { FERRY_SIM_GUESTS: 'hvm1:hvm:16M:1:81:0' }),
      agent('dst', { FERRY_SIM_LATENCY_MS: '1500' }),
    ]);
    const vm = { ...hvm, memoryMiB: 16 };
    const first = await cp.migrate({ vm, from: 'srcA', to: 'dst', mode: 'cold' });
    await waitFor(() => progressOf(first, 'migrate-receive').some((r) => r.type === 'progress' && r.phase === 'verifying'), 20_000, 'first stream in');
    await cp.cancel(first, ['dst']);
    const second = await cp.migrate({ vm, from: 'srcB', to: 'dst', mode: 'cold' });
    expect(failure(await cp.waitFinal(first, 'migrate-receive')).code).toBe('CANCELLED');
    expect(await cp.waitFinal(second, 'migrate-receive', 30_000)).toMatchObject({ type: 'completed' });
    expect((await cp.freshGuests('dst')).map((g) => [g.vmId, g.state])).toEqual([['hvm1', 'running']]);
    expect((await cp.freshGuests('srcA')).map((g) => [g.vmId, g.state])).toEqual([['hvm1', 'running']]);
  });

  it('an agent killed while it waited for a stream ends that attempt when it restarts, rather than leaving it to the stall bound', async () => {
    const dst = await agent('dst', {});
    const id = 'mig-orphan';
    cp.migrations.set(id, { id, attempt: 1, state: 'running', cancelRequested: false, commits: [] });
    await cp.dispatch('dst', 'migrate-receive', { operationId: id, attempt: 1, migrationId: id, vm: hvm, mode: 'live', source: { hostId: 'src' }, streamToken: 'x'.repeat(32), restore: { format: 'v2' }, connectTimeoutMs: 60_000 });
    await waitFor(() => progressOf(id, 'migrate-receive').length > 0, 20_000, 'receive waiting for the stream');
    await dst.kill('SIGKILL');
    expect(cp.migrations.get(id)!.state).toBe('running');
    await agent('dst', {}, dst.stateDir);
    // asked as the restarted agent starts (before it takes jobs); the stream would have been waited for 60 s
    await waitFor(() => cp.migrations.get(id)!.state === 'aborted', 10_000, 'the attempt aborted');
  });

  it('a target stopped (SIGTERM) after its commit was granted never tells the source it discarded: one copy, on the target', async () => {
    const [src, dst] = await Promise.all([agent('src', { FERRY_SIM_GUESTS: 'hvm1:hvm:16M:1:91:0' }), agent('dst', { FERRY_SIM_LATENCY_MS: '1500' })]);
    const id = await cp.migrate({ vm: { ...hvm, memoryMiB: 16 }, from: 'src', to: 'dst', mode: 'cold' });
    await waitFor(() => cp.migrations.get(id)!.state === 'committed', 30_000, 'commit granted');
    await dst.kill('SIGTERM'); // graceful: aborts every operation, the one past its point of no return included
    expect(result<{ outcome: string }>(await cp.waitFinal(id, 'migrate-send', 20_000)).outcome).toBe('handed-off');
    expect(await cp.freshGuests('src')).toEqual([]);
    await agent('dst', {}, dst.stateDir);
    expect((await cp.freshGuests('dst')).map((g) => [g.vmId, g.state])).toEqual([['hvm1', 'running']]);
    expect(src.stderr.join('')).not.toMatch(/CANCELLED/);
  });
});
