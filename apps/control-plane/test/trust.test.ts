/**
 * The control plane trusts a host only about itself (docs/jobs.md, "Inventory" and "Reports"): with
 * real Redis, hosts played over HTTP with their own agent tokens, and what they say about other
 * hosts' VMs and other hosts' jobs is flagged or refused, never applied.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveAgentToken } from '@ferry/config';
import { AGENT_API, type AgentReport, type GuestInventory, type HostDto, type MigrationDto, type OperationDto, type VmDto } from '@ferry/contracts';
import { SECRET, V2_64, World, api, until } from './harness';

const w = new World();
let url = '';
const ZERO = `sha256:${'0'.repeat(64)}`;

/** A host played by the test: registers and heartbeats with exactly the inventory it is given. */
class Host {
  readonly token: string;
  readonly bootId = randomUUID();
  private seq = 0;
  constructor(readonly id: string) {
    this.token = deriveAgentToken(SECRET, id);
  }
  private async post<T>(path: string, body: unknown): Promise<T> {
    const r = await api<T>(url, path, { token: this.token, body });
    expect(r.status, `${path}: ${JSON.stringify(r.body)}`).toBe(200);
    return r.body;
  }
  register(guests: GuestInventory[]): Promise<unknown> {
    return this.post(AGENT_API.register, {
      hostId: this.id,
      bootId: this.bootId,
      agentVersion: 'test',
      hostname: `${this.id}.test`,
      toolstack: V2_64,
      byteOrder: 'little',
      capacity: { memoryMiB: 16384, vcpus: 16, maxGuests: 32 },
      dataUrl: `http://127.0.0.1:9/${this.id}`,
      inventory: { guests },
    });
  }
  heartbeat(guests: GuestInventory[]): Promise<unknown> {
    return this.post(AGENT_API.heartbeat(this.id), {
      bootId: this.bootId,
      toolstack: V2_64,
      state: 'ready',
      capacity: { memoryMiB: 16384, vcpus: 16, maxGuests: 32 },
      inventory: { guests },
      activeOperations: [],
    });
  }
  report(r: Record<string, unknown>): Promise<unknown> {
    return this.post(AGENT_API.reports(this.id), { reports: [{ ...r, seq: ++this.seq, at: new Date().toISOString() } as unknown as AgentReport] });
  }
}

const g = (vmId: string, digest: string, state: GuestInventory['state'] = 'running'): GuestInventory => ({ vmId, name: vmId, type: 'pv', guestWidth: 64, memoryMiB: 256, vcpus: 1, state, memoryDigest: digest });
const vm = async (id: string): Promise<VmDto> => (await api<VmDto>(url, `/v1/vms/${id}`)).body;
const host = async (id: string): Promise<HostDto> => (await api<HostDto>(url, `/v1/hosts/${id}`)).body;
const metric = async (line: RegExp): Promise<number> => Number(line.exec((await api<string>(url, '/metrics', { token: null })).body)?.[1] ?? 0);

beforeAll(async () => {
  url = (await w.cp()).url;
});
afterAll(() => w.close());

describe('inventory: a host is trusted only about itself', () => {
  it("a stranger's heartbeat cannot move, change or take over a VM its owner still reports; the claim is flagged", async () => {
    const a = new Host('xen-a');
    const c = new Host('xen-c');
    const real = `sha256:${'c'.repeat(64)}`;
    await c.register([g('api-1', real)]);
    await a.register([g('a-1', `sha256:${'a'.repeat(64)}`)]);
    // xen-a lists api-1 (xen-c's) as running with a zero digest and twice the memory
    await a.heartbeat([g('a-1', `sha256:${'a'.repeat(64)}`), { ...g('api-1', ZERO), memoryMiB: 512 }]);
    let v = await vm('api-1');
    expect(v).toMatchObject({ hostId: 'xen-c', memoryDigest: real, memoryMiB: 256, state: 'running' });
    expect(v.conflicts).toEqual([expect.objectContaining({ vmId: 'api-1', hostId: 'xen-a', ownerHostId: 'xen-c', reportedState: 'running', reportedDigest: ZERO })]);
    expect((await host('xen-a')).conflicts.map((x) => x.vmId)).toEqual(['api-1']);
    expect((await api<{ items: VmDto[] }>(url, '/v1/vms?host=xen-a')).body.items.map((x) => x.id)).toEqual(['a-1']);
    expect(await metric(/^ferry_inventory_conflicts_total\{host="xen-a"\} (\d+)/m)).toBe(1);
    // repeated heartbeats keep the flag (counted once); xen-c's own heartbeat changes nothing of it
    await a.heartbeat([g('api-1', ZERO)]);
    await c.heartbeat([g('api-1', real)]);
    v = await vm('api-1');
    expect(v).toMatchObject({ hostId: 'xen-c', memoryDigest: real });
    expect(v.conflicts).toHaveLength(1);
    expect(await metric(/^ferry_inventory_conflicts_total\{host="xen-a"\} (\d+)/m)).toBe(1);
    // a registration (a restarted agent) is held to the same rule
    await a.register([g('api-1', ZERO)]);
    expect(await vm('api-1')).toMatchObject({ hostId: 'xen-c', memoryDigest: real });
    // once xen-a stops listing it, the flag goes
    await a.heartbeat([]);
    expect((await vm('api-1')).conflicts).toEqual([]);
    expect((await host('xen-a')).conflicts).toEqual([]);
  });

  it('a guest its owner reported gone is adopted by the host that runs it', async () => {
    const b = new Host('xen-b');
    const d = new Host('xen-d');
    const digest = `sha256:${'d'.repeat(64)}`;
    await d.register([g('mv-1', digest)]);
    await b.register([]);
    await b.heartbeat([g('mv-1', digest)]); // xen-d still reports it: flagged only
    expect(await vm('mv-1')).toMatchObject({ hostId: 'xen-d', state: 'running' });
    await d.heartbeat([]); // xen-d says it is gone
    expect(await vm('mv-1')).toMatchObject({ hostId: 'xen-d', state: 'missing' });
    await b.heartbeat([g('mv-1', digest)]);
    const v = await vm('mv-1');
    expect(v).toMatchObject({ hostId: 'xen-b', state: 'running', memoryDigest: digest });
    expect(v.conflicts).toEqual([]);
    // and now the old owner cannot take it back by listing it again
    await d.heartbeat([g('mv-1', digest)]);
    expect(await vm('mv-1')).toMatchObject({ hostId: 'xen-b' });
    expect((await vm('mv-1')).conflicts.map((x) => x.hostId)).toEqual(['xen-d']);
  });
});

describe('reports: only from the host the job was dispatched to', () => {
  it('the source cannot complete (or fail) the receive, nor the target the send', async () => {
    const src = new Host('src-1');
    const dst = new Host('dst-1');
    const digest = `sha256:${'e'.repeat(64)}`;
    await src.register([g('mig-vm', digest)]);
    await dst.register([]);
    const created = await api<MigrationDto>(url, '/v1/migrations', { body: { vm: 'mig-vm', mode: 'cold', target: 'dst-1' }, headers: { 'idempotency-key': `trust-${randomUUID()}` } });
    expect(created.status).toBe(202);
    const id = created.body.id;
    const m = await until('dispatched', async () => {
      const x = (await api<MigrationDto>(url, `/v1/migrations/${id}`)).body;
      return x.phase === 'dispatched' ? x : null;
    });
    const base = { operationId: id, attempt: m.attempt };
    // before the point of no return: the source speaking for the target cannot fail the migration
    await src.report({ ...base, type: 'failed', job: 'migrate-receive', error: { code: 'STREAM_ERROR', message: 'forged', retryable: false } });
    expect((await api<MigrationDto>(url, `/v1/migrations/${id}`)).body.phase).toBe('dispatched');
    const commit = await api<{ commit: boolean }>(url, AGENT_API.commit('dst-1', id), { token: dst.token, body: { attempt: m.attempt, bytesReceived: 1, memoryDigest: digest } });
    expect(commit.body.commit).toBe(true);
    // the source forges the target's completion: refused, still committing
    const receiveResult = { migrationId: id, bytesReceived: 1, memoryDigest: ZERO, outcome: 'running-on-target' };
    await src.report({ ...base, type: 'completed', job: 'migrate-receive', result: receiveResult });
    // the target forges the source's failure: refused
    await dst.report({ ...base, type: 'failed', job: 'migrate-send', error: { code: 'STREAM_ERROR', message: 'forged', retryable: false } });
    expect((await api<MigrationDto>(url, `/v1/migrations/${id}`)).body.phase).toBe('committing');
    expect(await vm('mig-vm')).toMatchObject({ hostId: 'src-1', memoryDigest: digest });
    expect(await metric(/^ferry_agent_reports_rejected_total\{host="src-1",job="migrate-receive"\} (\d+)/m)).toBe(2);
    expect(await metric(/^ferry_agent_reports_rejected_total\{host="dst-1",job="migrate-send"\} (\d+)/m)).toBe(1);
    // the real reports, each from its own side, finish it
    await src.report({ ...base, type: 'completed', job: 'migrate-send', result: { migrationId: id, bytesSent: 1, rounds: 1, downtimeMs: 5, outcome: 'handed-off' } });
    expect((await api<MigrationDto>(url, `/v1/migrations/${id}`)).body.phase).toBe('committing');
    await dst.report({ ...base, type: 'completed', job: 'migrate-receive', result: { ...receiveResult, memoryDigest: digest } });
    expect((await api<MigrationDto>(url, `/v1/migrations/${id}`)).body.phase).toBe('completed');
    expect(await vm('mig-vm')).toMatchObject({ hostId: 'dst-1', memoryDigest: digest, state: 'running' });
  });

  it("an operation's report counts only from its host and for its own job", async () => {
    const own = new Host('own-1');
    const other = new Host('other-1');
    const digest = `sha256:${'f'.repeat(64)}`;
    await own.register([g('sus-vm', digest)]);
    await other.register([]);
    const op = await api<OperationDto>(url, '/v1/vms/sus-vm/suspend', { body: {} });
    expect(op.status).toBe(202);
    await until('dispatched', async () => (await api<OperationDto>(url, `/v1/operations/${op.body.id}`)).body.state === 'running');
    const result = { checkpoint: { checkpointId: op.body.checkpointId, vmId: 'sus-vm', bytes: 1, sha256: 'a'.repeat(64), memoryDigest: digest, vm: { vmId: 'sus-vm', name: 'sus-vm', type: 'pv', guestWidth: 64, memoryMiB: 256, vcpus: 1 } } };
    await other.report({ type: 'completed', operationId: op.body.id, attempt: 1, job: 'suspend', result });
    await other.report({ type: 'failed', operationId: op.body.id, attempt: 1, job: 'suspend', error: { code: 'STORE_ERROR', message: 'forged', retryable: false } });
    await own.report({ type: 'failed', operationId: op.body.id, attempt: 1, job: 'resume', error: { code: 'STORE_ERROR', message: 'wrong job', retryable: false } });
    expect((await api<OperationDto>(url, `/v1/operations/${op.body.id}`)).body.state).toBe('running');
    expect(await vm('sus-vm')).toMatchObject({ hostId: 'own-1', state: 'suspending' });
    await own.report({ type: 'completed', operationId: op.body.id, attempt: 1, job: 'suspend', result });
    expect((await api<OperationDto>(url, `/v1/operations/${op.body.id}`)).body.state).toBe('completed');
    expect(await vm('sus-vm')).toMatchObject({ hostId: null, state: 'suspended' });
  });
});
