import { afterEach, describe, expect, it } from 'vitest';
import type { MigrationDto, VmDto } from '@ferry/contracts';
import { digest } from './fake-agent';
import { deriveAgentToken } from '@ferry/config';
import { LEGACY32, SECRET, V2_64, World, api, guest, until } from './harness';

let w: World;
afterEach(() => w?.close());

async function migrate(url: string, body: Record<string, unknown>, key = `k-${Math.random()}`) {
  return api<MigrationDto>(url, '/v1/migrations', { body, headers: { 'idempotency-key': key } });
}
const getM = async (url: string, id: string) => (await api<MigrationDto>(url, `/v1/migrations/${id}`)).body;
const done = (url: string, id: string, phases = ['completed', 'failed', 'cancelled']) => until(`migration ${id} to finish`, async () => {
  const m = await getM(url, id);
  return phases.includes(m.phase) ? m : null;
});

describe('migrations with fake agents', () => {
  it('live-migrates a VM: 202, true progress, digest kept, VM moves; idempotent', async () => {
    w = new World();
    const { url } = await w.cp();
    const g = guest('vm-a');
    await w.agent(url, { hostId: 'src', toolstack: LEGACY32, guests: [g], roundMs: 30, rounds: 4 });
    await w.agent(url, { hostId: 'dst', toolstack: V2_64 });
    const r = await migrate(url, { vm: 'vm-a', mode: 'live', bandwidth: 100 }, 'same-key');
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ phase: 'queued', cancellable: true, pointOfNoReturn: { phase: 'committing', passed: false } });
    const again = await migrate(url, { vm: 'vm-a', mode: 'live', bandwidth: 100 }, 'same-key');
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(r.body.id);
    expect((await migrate(url, { vm: 'vm-a', mode: 'cold' }, 'same-key')).status).toBe(422);
    const seen = new Set<string>();
    const m = await until('completion and measured downtime', async () => {
      const x = await getM(url, r.body.id);
      seen.add(x.phase);
      return x.phase === 'completed' && x.progress.downtimeMs !== null ? x : null;
    });
    expect(m.targetHostId).toBe('dst');
    expect(m.restore).toEqual({ format: 'v2' });
    expect(m.progress.bytesDone).toBe(512 * 1048576);
    expect(m.progress.round).toBeGreaterThanOrEqual(4);
    expect(m.progress.downtimeMs).not.toBeNull();
    expect(m.cancellable).toBe(false);
    expect(m.pointOfNoReturn.passed).toBe(true);
    expect(seen.has('precopy')).toBe(true);
    const vm = (await api<VmDto>(url, '/v1/vms/vm-a')).body;
    expect(vm).toMatchObject({ hostId: 'dst', state: 'running', memoryDigest: digest(g.memory), activeOperationId: null });
    const list = await api<{ items: MigrationDto[]; total: number }>(url, '/v1/migrations?vm=vm-a&phase=completed&limit=10');
    expect(list.body.total).toBe(1);
    const byHost = await api<{ total: number }>(url, '/v1/migrations?host=dst&active=false');
    expect(byHost.body.total).toBe(1);
  });

  it('refuses an incompatible explicit target (64-bit PV guest to a 32-bit legacy toolstack) and the scheduler never picks one', async () => {
    w = new World();
    const { url } = await w.cp();
    await w.agent(url, { hostId: 'src', toolstack: V2_64, guests: [guest('vm64', { guestWidth: 64 })] });
    await w.agent(url, { hostId: 'old', toolstack: LEGACY32 });
    const r = await migrate(url, { vm: 'vm64', mode: 'live', target: 'old' });
    expect(r.status).toBe(422);
    const q = await migrate(url, { vm: 'vm64', mode: 'live' });
    expect(q.status).toBe(202);
    const waiting = await until('a waiting reason', async () => (await getM(url, q.body.id)).waitingReason?.includes('64-bit PV') && (await getM(url, q.body.id)));
    expect(waiting.phase).toBe('queued');
    // a compatible host appears: the queued migration proceeds (queue, never reject)
    await w.agent(url, { hostId: 'new', toolstack: V2_64 });
    expect((await done(url, q.body.id)).phase).toBe('completed');
  });

  it('a cancel before the point of no return leaves the VM on its source; after it, cancel is refused', async () => {
    w = new World();
    const { url } = await w.cp();
    const g = guest('vm-c');
    await w.agent(url, { hostId: 'src', toolstack: V2_64, guests: [g, guest('vm-d')], roundMs: 100, rounds: 20 });
    const dst = await w.agent(url, { hostId: 'dst', toolstack: V2_64 });
    const r = await migrate(url, { vm: 'vm-c', mode: 'live' });
    await until('precopy', async () => (await getM(url, r.body.id)).phase === 'precopy');
    const c = await api<MigrationDto>(url, `/v1/migrations/${r.body.id}/cancel`, { method: 'POST' });
    expect(c.status).toBe(200);
    expect(c.body).toMatchObject({ phase: 'cancelled', cancellable: false });
    await until('vm back to running on src', async () => {
      const v = (await api<VmDto>(url, '/v1/vms/vm-c')).body;
      return v.hostId === 'src' && v.state === 'running' && !v.activeOperationId;
    });
    await new Promise((res) => setTimeout(res, 300));
    expect(w.agents[0]!.guests.get('vm-c')?.state).toBe('running');
    expect(dst.guests.has('vm-c')).toBe(false);
    // cancelling it again is a no-op that answers with the migration as it is
    const again = await api<MigrationDto>(url, `/v1/migrations/${r.body.id}/cancel`, { method: 'POST' });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ id: r.body.id, phase: 'cancelled', finishedAt: c.body.finishedAt, updatedAt: (await getM(url, r.body.id)).updatedAt });

    // past the point of no return: hold the target just after restore, then after commit
    let release!: () => void;
    dst.pauseBeforeCommit = new Promise<void>((res) => (release = res));
    const r2 = await migrate(url, { vm: 'vm-d', mode: 'cold' });
    await until('verifying', async () => (await getM(url, r2.body.id)).phase === 'verifying');
    const m2 = await getM(url, r2.body.id);
    expect(m2.cancellable).toBe(true);
    release();
    await until('committing or completed', async () => ['committing', 'completed'].includes((await getM(url, r2.body.id)).phase));
    const refused = await api<{ message: string }>(url, `/v1/migrations/${r2.body.id}/cancel`, { method: 'POST' });
    expect(refused.status).toBe(409);
    expect((await done(url, r2.body.id)).phase).toBe('completed');
  });

  it('a cancel racing the commit: the commit is refused and the VM stays on its source', async () => {
    w = new World();
    const { url } = await w.cp();
    await w.agent(url, { hostId: 'src', toolstack: V2_64, guests: [guest('vm-r')] });
    const dst = await w.agent(url, { hostId: 'dst', toolstack: V2_64 });
    let release!: () => void;
    dst.pauseBeforeCommit = new Promise<void>((res) => (release = res));
    const r = await migrate(url, { vm: 'vm-r', mode: 'live' });
    await until('verifying', async () => (await getM(url, r.body.id)).phase === 'verifying');
    expect((await api(url, `/v1/migrations/${r.body.id}/cancel`, { method: 'POST' })).status).toBe(200);
    release();
    await until('guest back on source', async () => w.agents[0]!.guests.get('vm-r')?.state === 'running' && !dst.guests.has('vm-r'));
    expect((await getM(url, r.body.id)).phase).toBe('cancelled');
    expect((await api<VmDto>(url, '/v1/vms/vm-r')).body.hostId).toBe('src');
  });

  it('no progress for the stall time: declared stalled, cancelled, VM left on the source', async () => {
    w = new World();
    const { url } = await w.cp({ FERRY_STALL_AFTER_MS: '400' });
    const src = await w.agent(url, { hostId: 'src', toolstack: V2_64, guests: [guest('vm-s')], roundMs: 100, rounds: 50 });
    await w.agent(url, { hostId: 'dst', toolstack: V2_64 });
    const r = await migrate(url, { vm: 'vm-s', mode: 'live' });
    await until('precopy', async () => (await getM(url, r.body.id)).phase === 'precopy');
    src.hang = true;
    const m = await done(url, r.body.id);
    expect(m.phase).toBe('cancelled');
    expect(m.error?.code).toBe('STALLED');
    await until('source guest running', async () => src.guests.get('vm-s')?.state === 'running');
    expect((await api<VmDto>(url, '/v1/vms/vm-s')).body.hostId).toBe('src');
  });

  it('a suspend with no progress for the stall time fails STALLED and is cancelled; one that finishes anyway still counts', async () => {
    w = new World();
    const { url } = await w.cp({ FERRY_STALL_AFTER_MS: '400' });
    const h = await w.agent(url, { hostId: 'h1', toolstack: V2_64, guests: [guest('vm-p'), guest('vm-q')] });
    const op = async (id: string) => (await api<{ state: string; error: { code: string } | null }>(url, `/v1/operations/${id}`)).body;
    // 1. the agent honours the cancel: the VM stays running where it was
    let open!: (v: 'cancel-ok' | 'past-ponr') => void;
    h.suspendGate = new Promise((r) => (open = r));
    const s1 = await api<{ id: string }>(url, '/v1/vms/vm-p/suspend', { body: {} });
    const failed = await until('stalled', async () => ((await op(s1.body.id)).state === 'failed' ? op(s1.body.id) : null));
    expect(failed.error?.code).toBe('STALLED');
    expect((await api<VmDto>(url, '/v1/vms/vm-p')).body).toMatchObject({ state: 'running', hostId: 'h1' });
    open('cancel-ok');
    await until('agent kept the guest', async () => h.guests.get('vm-p')?.state === 'running');
    // 2. the agent was past its point of no return: its late completion stands
    h.suspendGate = new Promise((r) => (open = r));
    const s2 = await api<{ id: string }>(url, '/v1/vms/vm-q/suspend', { body: {} });
    await until('stalled', async () => (await op(s2.body.id)).state === 'failed');
    open('past-ponr');
    await until('late completion', async () => (await op(s2.body.id)).state === 'completed');
    expect((await api<VmDto>(url, '/v1/vms/vm-q')).body).toMatchObject({ state: 'suspended', hostId: null });
  });

  it('a control plane down longer than the stall bound does not count its own absence as a stall', async () => {
    w = new World();
    const { url } = await w.cp({ FERRY_STALL_AFTER_MS: '1500' });
    const port = new URL(url).port; // restarted on the same port, as a real control plane would be
    await w.agent(url, { hostId: 'src', toolstack: V2_64, guests: [guest('vm-d')], roundMs: 300, rounds: 12 });
    await w.agent(url, { hostId: 'dst', toolstack: V2_64 });
    const r = await migrate(url, { vm: 'vm-d', mode: 'live' });
    await until('precopy', async () => (await getM(url, r.body.id)).phase === 'precopy');
    await w.cps.shift()!.close();
    await new Promise((res) => setTimeout(res, 2500));
    await w.cp({ PORT: port, FERRY_STALL_AFTER_MS: '1500' });
    const m = await done(url, r.body.id);
    expect([m.phase, m.error]).toEqual(['completed', null]);
  });

  it('a completed report delivered late, after the VM moved on, does not pull the VM record back', async () => {
    w = new World();
    const { url } = await w.cp();
    await w.agent(url, { hostId: 'src', toolstack: V2_64, guests: [guest('vm-l')] });
    const dst = await w.agent(url, { hostId: 'dst', toolstack: V2_64 });
    let deliver!: () => void;
    dst.delayCompletedReport = new Promise<void>((res) => (deliver = res));
    const r1 = await migrate(url, { vm: 'vm-l', mode: 'live', target: 'dst' });
    // the guest runs on dst: its inventory completes the migration before the report comes
    expect((await done(url, r1.body.id)).phase).toBe('completed');
    await until('vm idle on dst', async () => {
      const v = (await api<VmDto>(url, '/v1/vms/vm-l')).body;
      return v.hostId === 'dst' && !v.activeOperationId && v.state === 'running';
    });
    const r2 = await migrate(url, { vm: 'vm-l', mode: 'live', target: 'src' });
    expect((await done(url, r2.body.id)).phase).toBe('completed');
    deliver();
    // (a wrong record would be healed by src's next heartbeat: look often, not once)
    const seen = new Set<string>();
    for (const until = Date.now() + 800; Date.now() < until; await new Promise((res) => setTimeout(res, 15))) seen.add(String((await api<VmDto>(url, '/v1/vms/vm-l')).body.hostId));
    expect([...seen]).toEqual(['src']);
  });

  it('a VM claimed by a migration create() that died before storing it is freed by its host\'s heartbeat', async () => {
    w = new World();
    const { url } = await w.cp();
    await w.agent(url, { hostId: 'src', toolstack: V2_64, guests: [guest('vm-o')] });
    await w.agent(url, { hostId: 'dst', toolstack: V2_64 });
    await until('vm-o known', async () => (await api<VmDto>(url, '/v1/vms/vm-o')).status === 200);
    // what a control plane killed between vms.claim() and repo.create() leaves: a claim naming no migration
    await w.redis.hset(`${w.keyPrefix}:vm:vm-o`, 'activeOp', `mig-${(Date.now() - 20_000).toString(36)}0123456789`);
    expect((await migrate(url, { vm: 'vm-o', mode: 'live' })).status).toBe(409);
    await until('claim released', async () => (await api<VmDto>(url, '/v1/vms/vm-o')).body.activeOperationId === null);
    const r = await migrate(url, { vm: 'vm-o', mode: 'live' });
    expect(r.status).toBe(202);
    expect((await done(url, r.body.id)).phase).toBe('completed');
  });

  it('a late progress report of an ended attempt does not bring it back from queued (its commit would be granted)', async () => {
    w = new World();
    const { url } = await w.cp({ FERRY_RETRY_BACKOFF_MS: '5000' });
    const src = await w.agent(url, { hostId: 'src', toolstack: V2_64, guests: [guest('vm-q2')] });
    await w.agent(url, { hostId: 'dst', toolstack: V2_64 });
    src.failSend = { code: 'STREAM_ERROR', retryable: true };
    const r = await migrate(url, { vm: 'vm-q2', mode: 'live', target: 'dst' });
    await until('queued for a retry', async () => (await getM(url, r.body.id)).phase === 'queued' && (await getM(url, r.body.id)).attempt === 1);
    const late = { type: 'progress', operationId: r.body.id, attempt: 1, job: 'migrate-receive', seq: 1, at: new Date().toISOString(), phase: 'verifying', bytesDone: 1, bytesTotal: 1, round: 0, dirtyRate: 0, rate: 0, etaMs: null, expectedDowntimeMs: null, downtimeMs: null };
    expect((await api(url, '/v1/agents/dst/reports', { token: deriveAgentToken(SECRET, 'dst'), body: { reports: [late] } })).status).toBe(200);
    const commit = await api<{ commit: boolean }>(url, `/v1/agents/dst/migrations/${r.body.id}/commit`, { token: deriveAgentToken(SECRET, 'dst'), body: { attempt: 1, bytesReceived: 1, memoryDigest: null } });
    expect([(await getM(url, r.body.id)).phase, commit.body.commit]).toEqual(['queued', false]);
  });

  it('retries a retryable failure with backoff, then completes', async () => {
    w = new World();
    const { url } = await w.cp();
    const src = await w.agent(url, { hostId: 'src', toolstack: V2_64, guests: [guest('vm-t')] });
    await w.agent(url, { hostId: 'dst', toolstack: V2_64 });
    src.failSend = { code: 'STREAM_ERROR', retryable: true };
    const r = await migrate(url, { vm: 'vm-t', mode: 'live' });
    const m = await done(url, r.body.id);
    expect(m.phase).toBe('completed');
    expect(m.attempt).toBe(2);
    expect(m.error).toBeNull(); // the first attempt's STREAM_ERROR is history, not the outcome
  });

  it('a target silent after the commit: committing ends within the stall bound, slot freed, VM missing on the target; its late report completes it', async () => {
    w = new World();
    const { url } = await w.cp({ FERRY_STALL_AFTER_MS: '400', FERRY_LIMIT_PER_SOURCE: '1' });
    await w.agent(url, { hostId: 'src', toolstack: V2_64, guests: [guest('vm-c1'), guest('vm-c2')] });
    const dst = await w.agent(url, { hostId: 'dst', toolstack: V2_64 });
    let back!: () => void;
    dst.holdAfterCommit = new Promise<void>((res) => (back = res));
    const r1 = await migrate(url, { vm: 'vm-c1', mode: 'live', target: 'dst' });
    const m1 = await done(url, r1.body.id);
    expect(m1).toMatchObject({ phase: 'failed', error: { code: 'COMMIT_UNCONFIRMED' }, pointOfNoReturn: { passed: true } });
    expect((await api<VmDto>(url, '/v1/vms/vm-c1')).body).toMatchObject({ hostId: 'dst', state: 'missing', activeOperationId: null });
    // the per-source slot (limit 1) was freed: the next migration from src runs
    const r2 = await migrate(url, { vm: 'vm-c2', mode: 'live', target: 'dst' });
    expect((await done(url, r2.body.id)).phase).toBe('completed');
    back(); // the target comes back and reports
    const late = await done(url, r1.body.id, ['completed']);
    expect(late.error).toBeNull();
    expect((await api<VmDto>(url, '/v1/vms/vm-c1')).body).toMatchObject({ hostId: 'dst', state: 'running' });
  });

  it('suspend and resume through the store keep the memory digest', async () => {
    w = new World();
    const { url } = await w.cp();
    const g = guest('vm-z');
    await w.agent(url, { hostId: 'h1', toolstack: V2_64, guests: [g] });
    await w.agent(url, { hostId: 'h2', toolstack: LEGACY32 });
    const s = await api<{ id: string }>(url, '/v1/vms/vm-z/suspend', { body: {} });
    expect(s.status).toBe(202);
    const v = await until('suspended', async () => {
      const x = (await api<VmDto>(url, '/v1/vms/vm-z')).body;
      return x.state === 'suspended' ? x : null;
    });
    expect(v.hostId).toBeNull();
    expect(v.latestCheckpoint?.memoryDigest).toBe(digest(g.memory));
    const res = await api<{ id: string }>(url, '/v1/vms/vm-z/resume', { body: { host: 'h2' } });
    expect(res.status).toBe(202);
    const back = await until('resumed', async () => {
      const x = (await api<VmDto>(url, '/v1/vms/vm-z')).body;
      return x.state === 'running' && x.hostId === 'h2' ? x : null;
    });
    expect(back.memoryDigest).toBe(digest(g.memory));
    expect((await api<{ state: string }>(url, `/v1/operations/${res.body.id}`)).body.state).toBe('completed');
  });

  it('progress is true: never above the total, 100 % once finished (migration, suspend, resume)', async () => {
    w = new World();
    const { url } = await w.cp();
    // 11 MiB more than the guest's 512 MiB go out, as a real image's headers and state do
    const extra = 11 * 1048576;
    await w.agent(url, { hostId: 'src', toolstack: V2_64, guests: [guest('vm-t')], roundMs: 10, rounds: 2, overheadBytes: extra });
    await w.agent(url, { hostId: 'dst', toolstack: V2_64, overheadBytes: extra });
    const r = await migrate(url, { vm: 'vm-t', mode: 'live', target: 'dst' });
    const m = await until('completion and measured downtime', async () => {
      const x = await getM(url, r.body.id);
      expect(x.progress.bytesDone).toBeLessThanOrEqual(x.progress.bytesTotal);
      return x.phase === 'completed' && x.progress.downtimeMs !== null ? x : null;
    });
    expect(m.progress.bytesDone).toBe(512 * 1048576 + extra);
    expect(m.progress.bytesTotal).toBe(m.progress.bytesDone);
    expect(m.progress.etaMs).toBe(0);

    const s = await api<{ id: string }>(url, '/v1/vms/vm-t/suspend', { body: {} });
    const so = await until('suspended', async () => {
      const x = (await api<{ state: string; progress: { bytesDone: number; bytesTotal: number } }>(url, `/v1/operations/${s.body.id}`)).body;
      return x.state === 'completed' ? x : null;
    });
    expect(so.progress).toEqual({ bytesDone: 512 * 1048576 + extra, bytesTotal: 512 * 1048576 + extra });

    const res = await api<{ id: string }>(url, '/v1/vms/vm-t/resume', { body: { host: 'src' } });
    const ro = await until('resumed', async () => {
      const x = (await api<{ state: string; progress: { bytesDone: number; bytesTotal: number } }>(url, `/v1/operations/${res.body.id}`)).body;
      return x.state === 'completed' ? x : null;
    });
    expect(ro.progress.bytesDone).toBe(ro.progress.bytesTotal);
  });
});
