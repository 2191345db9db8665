/**
 * Checkpoints as a control-plane resource, against a real suspend-store (local-folder backend) and real
 * Redis: fake agents upload real v2 images to the store on suspend and download them on resume.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckpointDto, CheckpointPage, OperationDto, VmDto } from '@ferry/contracts';
// eslint-disable-next-line @nx/enforce-module-boundaries -- test-only: a real suspend-store in this process
import { startSuspendStore, type RunningStore } from '@ferry/suspend-store';
import { retentionOf } from '../src/core/checkpoint-retention';
import type { FakeAgent } from './fake-agent';
import { OPERATOR, V2_64, VIEWER, World, api, guest, until } from './harness';

const STORE_TOKEN = 'store-admin-token-0123456789';
const w = new World();
const dir = mkdtempSync(path.join(tmpdir(), 'ferry-cp-ckpt-'));
let store: RunningStore;
let url = '';
let agent: FakeAgent;

const storeCall = (method: string, p: string) => fetch(store.url + p, { method, headers: { authorization: `Bearer ${STORE_TOKEN}` } });
const op = async (id: string) => (await api<OperationDto>(url, `/v1/operations/${id}`)).body;
const ended = (id: string) => until(`operation ${id} ends`, async () => ((await op(id)).state === 'completed' || (await op(id)).state === 'failed' ? op(id) : null));

async function suspend(vm: string): Promise<string> {
  const r = await api<OperationDto>(url, `/v1/vms/${vm}/suspend`, { body: {} });
  expect(r.status).toBe(202);
  const o = await ended(r.body.id);
  expect(o.state).toBe('completed');
  return o.checkpointId!;
}
async function resume(vm: string, body: Record<string, string> = {}): Promise<OperationDto> {
  const r = await api<OperationDto>(url, `/v1/vms/${vm}/resume`, { body });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  return ended(r.body.id);
}

beforeAll(async () => {
  store = await startSuspendStore({
    PORT: '0',
    HOST: '127.0.0.1',
    FERRY_ADMIN_TOKEN: STORE_TOKEN,
    FERRY_STORE_BACKEND: 'fs',
    FERRY_STORE_DIR: dir,
    FERRY_RETAIN_LAST: '3',
    FERRY_RETAIN_MAX_AGE: '30d',
    FERRY_LOG_LEVEL: 'error',
  });
  url = (await w.cp({ FERRY_STORE_URL: store.url, FERRY_STORE_TOKEN: STORE_TOKEN })).url;
  agent = await w.agent(url, { hostId: 'h1', toolstack: V2_64, guests: [guest('vm1'), guest('vm2'), guest('vm3', { type: 'hvm' })], storeToken: STORE_TOKEN });
});
afterAll(async () => {
  await w.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('checkpoints', () => {
  let c1 = '';
  let c2 = '';
  let c3 = '';
  let d1 = '';

  it('each suspend records a checkpoint: listed newest first, by VM, paged, with the store image and retention', async () => {
    c1 = await suspend('vm1');
    await resume('vm1');
    c2 = await suspend('vm1');
    await resume('vm1');
    c3 = await suspend('vm1');
    d1 = await suspend('vm2');
    await suspend('vm3');

    const page = await api<CheckpointPage>(url, '/v1/checkpoints?vm=vm1', { token: VIEWER });
    expect(page.status).toBe(200);
    expect(page.body).toMatchObject({ total: 3, limit: 50, nextCursor: null });
    expect(page.body.items.map((c) => c.id)).toEqual([c3, c2, c1]);
    expect(page.body.retentionPolicy).toMatchObject({ keepLast: 3, maxAgeMs: 30 * 86_400_000, intervalMs: 600_000, lastPassAt: null });
    const next = Date.parse(page.body.retentionPolicy!.nextPassAt) - Date.now();
    expect(next > 0 && next <= 600_000).toBe(true);
    const [newest, , oldest] = page.body.items as [CheckpointDto, CheckpointDto, CheckpointDto];
    expect(newest).toMatchObject({ vmId: 'vm1', sourceHostId: 'h1', latest: true, onlyImageOfSuspendedVm: false, inUseBy: null, imageUrl: `/v1/checkpoints/${c3}/image` });
    expect(newest.image).toMatchObject({ sourceFormat: 'v2', framing: 'libxl', guest: 'pv' });
    expect(newest.vm).toMatchObject({ vmId: 'vm1', type: 'pv' });
    expect(oldest.retention).toMatchObject({ state: 'kept', rank: 3, newerUntilRemoval: 1, rule: 'max-age' });
    expect(Date.parse(oldest.retention.expiresAt!) - Date.parse(oldest.createdAt)).toBe(30 * 86_400_000);
    expect(oldest.retention.summary).toMatch(/kept until .* \(max age 30d\); removed once 1 newer checkpoint of its VM exist \(keep last 3\)/);

    const first = await api<CheckpointPage>(url, '/v1/checkpoints?vm=vm1&limit=2');
    expect(first.body.items.map((c) => c.id)).toEqual([c3, c2]);
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const second = await api<CheckpointPage>(url, `/v1/checkpoints?vm=vm1&limit=2&cursor=${first.body.nextCursor!}`);
    expect(second.body.items.map((c) => c.id)).toEqual([c1]);
    expect(second.body.nextCursor).toBeNull();
    expect(second.body.total).toBe(3);
    const all = await api<CheckpointPage>(url, '/v1/checkpoints');
    expect(all.body.total).toBe(5);
    expect(all.body.items[1]!.id).toBe(d1);
    expect((await api<CheckpointPage>(url, '/v1/checkpoints?vm=nobody')).body).toMatchObject({ total: 0, items: [] });

    const vm1 = (await api<VmDto>(url, '/v1/vms/vm1')).body;
    expect(vm1.latestCheckpoint?.id).toBe(c3);
    const shown = await api<CheckpointDto>(url, `/v1/checkpoints/${c2}`, { token: VIEWER });
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({ id: c2, latest: false, retention: { rank: 2 } });
  });

  it("a suspended VM's latest checkpoint from before checkpoints were a resource is recorded at start", async () => {
    const k = w.keyPrefix;
    await w.redis.multi().del(`${k}:ckpt:${d1}`).zrem(`${k}:ckpts`, d1).zrem(`${k}:ckpts:vm:vm2`, d1).exec();
    expect((await api(url, `/v1/checkpoints/${d1}`)).status).toBe(404);
    await w.cp({ FERRY_STORE_URL: store.url, FERRY_STORE_TOKEN: STORE_TOKEN });
    // recorded beside the start, so shortly after the service answers
    await expect.poll(async () => (await api(url, `/v1/checkpoints/${d1}`)).status, { timeout: 10_000 }).toBe(200);
    const back = await api<CheckpointDto>(url, `/v1/checkpoints/${d1}`);
    expect(back.body).toMatchObject({ id: d1, vmId: 'vm2', operationId: null, latest: true, vm: { vmId: 'vm2' } });
  });

  it('bad ids and queries are 400 naming the field; unknown ids 404', async () => {
    const bad = await api<{ issues: { field: string }[] }>(url, '/v1/checkpoints?limit=0');
    expect(bad.status).toBe(400);
    expect(bad.body.issues[0]!.field).toBe('limit');
    expect((await api(url, '/v1/checkpoints?vm=a%20b')).status).toBe(400);
    expect((await api(url, '/v1/checkpoints?color=red')).status).toBe(400);
    expect((await api(url, '/v1/checkpoints/a..b')).status).toBe(400);
    expect((await api(url, '/v1/checkpoints/-x')).status).toBe(400);
    const none = await api<{ detail: string }>(url, '/v1/checkpoints/ckpt-nope');
    expect(none.status).toBe(404);
    expect(none.body.detail).toBe("checkpoint 'ckpt-nope' not found");
    expect((await api(url, '/v1/checkpoints/ckpt-nope', { method: 'DELETE' })).status).toBe(404);
    expect((await api(url, '/v1/checkpoints/ckpt-nope/image')).status).toBe(404);
  });

  it('resume from any checkpoint of the VM; 404/409 with a clear message otherwise', async () => {
    let r = await api<{ detail: string }>(url, '/v1/vms/vm1/resume', { body: { checkpointId: 'ckpt-nope' } });
    expect(r.status).toBe(404);
    expect(r.body.detail).toMatch(/checkpoint 'ckpt-nope' not found/);
    r = await api(url, '/v1/vms/vm2/resume', { body: { checkpointId: c1 } });
    expect(r.status).toBe(409);
    expect(r.body.detail).toBe(`checkpoint '${c1}' belongs to vm 'vm1', not 'vm2'`);
    r = await api(url, '/v1/vms/vm1/resume', { body: { checkpointId: '../x' } });
    expect(r.status).toBe(400);

    // vm2 is suspended with one checkpoint: deleting it would lose the VM
    const only = await api<{ detail: string }>(url, `/v1/checkpoints/${d1}`, { method: 'DELETE' });
    expect(only.status).toBe(409);
    expect(only.body.detail).toMatch(/only image of suspended vm 'vm2'/);
    expect((await api<CheckpointDto>(url, `/v1/checkpoints/${d1}`)).body.onlyImageOfSuspendedVm).toBe(true);

    // a running resume pins its checkpoint
    let open!: () => void;
    agent.resumeGate = new Promise<void>((res) => (open = res));
    const started = await api<OperationDto>(url, '/v1/vms/vm1/resume', { body: { checkpointId: c1 } });
    expect(started.status).toBe(202);
    expect(started.body.checkpointId).toBe(c1);
    await until('resume running', async () => (await op(started.body.id)).state === 'running');
    const busy = await api<{ detail: string }>(url, `/v1/checkpoints/${c1}`, { method: 'DELETE' });
    expect(busy.status).toBe(409);
    expect(busy.body.detail).toBe(`checkpoint '${c1}' is in use: resume ${started.body.id} of vm 'vm1' reads it; delete it once that operation ends`);
    expect((await api<CheckpointDto>(url, `/v1/checkpoints/${c1}`)).body.inUseBy).toBe(started.body.id);
    // a second resume of a VM that is resuming
    r = await api(url, '/v1/vms/vm1/resume', { body: { checkpointId: c2 } });
    expect(r.status).toBe(409);
    expect(r.body.detail).toMatch(/vm 'vm1' is not suspended \(state resuming\)/);
    agent.resumeGate = null;
    open();
    expect((await ended(started.body.id)).state).toBe('completed');
    expect((await api<VmDto>(url, '/v1/vms/vm1')).body).toMatchObject({ state: 'running', hostId: 'h1' });
    expect((await api<CheckpointDto>(url, `/v1/checkpoints/${c1}`)).body.inUseBy).toBeNull();
  });

  it('download streams the image through the control plane (operator role), Range and legacy included', async () => {
    expect((await api(url, `/v1/checkpoints/${c2}/image`, { token: VIEWER })).status).toBe(403);
    const res = await fetch(`${url}/v1/checkpoints/${c2}/image`, { headers: { authorization: `Bearer ${OPERATOR}` } });
    expect(res.status).toBe(200);
    const bytes = Buffer.from(await res.arrayBuffer());
    const direct = Buffer.from(await (await storeCall('GET', `/v1/checkpoints/${c2}`)).arrayBuffer());
    expect(bytes.equals(direct)).toBe(true);
    expect(res.headers.get('content-length')).toBe(String(bytes.length));
    expect(res.headers.get('x-ferry-sha256')).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${c2}.v2"`);

    // a browser's link: short-lived, signed, no bearer header
    expect((await api(url, `/v1/checkpoints/${c2}/download-link`, { method: 'POST', token: VIEWER })).status).toBe(403);
    const link = await api<{ url: string; expiresAt: string }>(url, `/v1/checkpoints/${c2}/download-link`, { method: 'POST', token: OPERATOR });
    expect(link.status).toBe(200);
    expect(Date.parse(link.body.expiresAt) - Date.now()).toBeLessThanOrEqual(60_000);
    const viaLink = await fetch(url + link.body.url);
    expect(viaLink.status).toBe(200);
    expect(Buffer.from(await viaLink.arrayBuffer()).equals(bytes)).toBe(true);
    const forged = await api<{ detail: string }>(url, link.body.url.replace('format=v2', 'format=legacy&width=64'), { token: null });
    expect(forged.status).toBe(403);
    expect(forged.body.detail).toMatch(/signature does not match/);
    const otherId = await api(url, link.body.url.replace(c2, c3), { token: null });
    expect(otherId.status).toBe(403);
    const expired = link.body.url.replace(/expires=\d+/, 'expires=1000');
    expect((await api(url, expired, { token: null })).status).toBe(403);

    const part = await fetch(`${url}/v1/checkpoints/${c2}/image`, { headers: { authorization: `Bearer ${OPERATOR}`, range: 'bytes=0-15' } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(0, 16))).toBe(true);

    const legacy = await fetch(`${url}/v1/checkpoints/${c2}/image?format=legacy&width=64`, { headers: { authorization: `Bearer ${OPERATOR}` } });
    // this PV image has a vcpu context no legacy image can hold: whatever the store does, never a clean 200
    const outcome = legacy.status === 200 ? await legacy.arrayBuffer().then(() => 'clean 200', () => 'cut') : legacy.status;
    expect(outcome).not.toBe('clean 200');
    // the store's refusal (this synthetic HVM image has no legacy form either) comes back as its one-line 422
    const h1 = await api<CheckpointPage>(url, '/v1/checkpoints?vm=vm3');
    const hvm = await api<{ detail: string }>(url, `/v1/checkpoints/${h1.body.items[0]!.id}/image?format=legacy&width=64`);
    expect(hvm.status).toBe(422);
    expect(hvm.body.detail).toMatch(/^checkpoint \S+ cannot be sent as legacy 64-bit: [^\n]+$/);
    const noWidth = await api<{ issues: { field: string; rule: string }[] }>(url, `/v1/checkpoints/${c2}/image?format=legacy`);
    expect(noWidth.status).toBe(400);
    expect(noWidth.body.issues[0]).toMatchObject({ field: 'width', rule: 'is required with format=legacy (32 or 64)' });
    const outside = await fetch(`${url}/v1/checkpoints/${c2}/image`, { headers: { authorization: `Bearer ${OPERATOR}`, range: `bytes=${bytes.length + 10}-` } });
    expect(outside.status).toBe(416);
  });

  it('delete goes through the store with the control plane credential; a checkpoint gone from the store is forgotten', async () => {
    expect((await api(url, `/v1/checkpoints/${c1}`, { method: 'DELETE', token: VIEWER })).status).toBe(403);
    expect((await api(url, `/v1/checkpoints/${c1}`, { method: 'DELETE', token: OPERATOR })).status).toBe(204);
    expect((await storeCall('GET', `/v1/checkpoints/${c1}/meta`)).status).toBe(404);
    expect((await api(url, `/v1/checkpoints/${c1}`)).status).toBe(404);
    expect((await api(url, '/v1/vms/vm1/resume', { body: { checkpointId: c1 } })).status).toBe(409); // vm1 runs

    // removed behind the control plane's back (the store's retention, or someone with a store token)
    expect((await storeCall('DELETE', `/v1/checkpoints/${c2}`)).status).toBe(204);
    const gone = await api<{ detail: string }>(url, `/v1/checkpoints/${c2}`);
    expect(gone.status).toBe(404);
    expect(gone.body.detail).toBe(`checkpoint '${c2}' is no longer in the suspend-store (removed by its retention, or deleted there)`);
    expect((await api<CheckpointPage>(url, '/v1/checkpoints?vm=vm1')).body.items.map((c) => c.id)).toEqual([c3]);

    // deleting the VM's latest checkpoint: the VM then points at its newest remaining one (none here)
    expect((await api(url, `/v1/checkpoints/${c3}`, { method: 'DELETE' })).status).toBe(204);
    expect((await api<VmDto>(url, '/v1/vms/vm1')).body.latestCheckpoint).toBeNull();

    // vm2 still resumes from its latest
    expect((await resume('vm2')).state).toBe('completed');
    expect((await api(url, `/v1/checkpoints/${d1}`, { method: 'DELETE' })).status).toBe(204);
  });

  it('the store answers for itself: a wrong store token is a 502 that says which variable to set', async () => {
    const other = await w.cp({ FERRY_STORE_URL: store.url, FERRY_STORE_TOKEN: 'not-the-store-token' });
    const c = await suspend('vm1');
    const r = await api<{ detail: string }>(other.url, `/v1/checkpoints/${c}`);
    expect(r.status).toBe(502);
    expect(r.body.detail).toMatch(/refused the control plane's token .* set FERRY_STORE_TOKEN/);
    const list = await api<CheckpointPage>(other.url, '/v1/checkpoints?vm=vm1');
    expect(list.status).toBe(200);
    expect(list.body.retentionPolicy).toBeNull();
    expect(list.body.items[0]!.retention.state).toBe('unknown');
  });
});

describe('retentionOf', () => {
  const policy = { keepLast: 2, maxAgeMs: 86_400_000, intervalMs: 600_000, lastPassAt: null, nextPassAt: '2026-01-01T00:10:00.000Z' };
  const now = Date.parse('2026-01-01T00:00:00.000Z');
  it('keep-last and max-age, kept or expiring, with when', () => {
    expect(retentionOf('2025-12-31T12:00:00.000Z', 1, policy, now)).toMatchObject({ state: 'kept', newerUntilRemoval: 2, expiresAt: '2026-01-01T12:00:00.000Z', removalAt: '2026-01-01T12:10:00.000Z', rule: 'max-age' });
    expect(retentionOf('2025-12-31T12:00:00.000Z', 3, policy, now)).toMatchObject({ state: 'expiring', rule: 'keep-last', removalAt: '2026-01-01T00:10:00.000Z' });
    expect(retentionOf('2025-12-30T00:00:00.000Z', 1, policy, now)).toMatchObject({ state: 'expiring', rule: 'max-age' });
    expect(retentionOf('2025-12-30T00:00:00.000Z', 1, { ...policy, keepLast: null, maxAgeMs: null }, now)).toMatchObject({ state: 'kept', rule: null, summary: 'kept until deleted (the store has no retention policy)' });
    expect(retentionOf('2025-12-30T00:00:00.000Z', 1, null, now).state).toBe('unknown');
  });
});
