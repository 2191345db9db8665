/**
 * A small in-test fake host agent that speaks the contract (docs/jobs.md): it registers and
 * heartbeats over HTTP, consumes its BullMQ host queue with the typed handler registry, and reports
 * progress / completion / failure. The "data path" between fake agents is in-process (a shared
 * network map keyed by dataUrl); the commit (point of no return) goes through the control plane.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Worker } from 'bullmq';
import type IORedis from 'ioredis';
import { deriveAgentToken } from '@ferry/config';
import {
  AGENT_API,
  HOST_JOB_NAMES,
  type AgentReport,
  type GuestInventory,
  type HeartbeatResponse,
  type HostJobName,
  type HostJobResults,
  type RegisterResponse,
  type Toolstack,
  type VmSpec,
} from '@ferry/contracts';
import { HandlerRegistry, agentRedisOptions, createRedisConnection, startHostWorker, type HostJobHandler } from '@ferry/queue';
import { encodeV2, synthStream } from '@ferry/stream-codec';

export interface FakeGuest extends VmSpec {
  state: GuestInventory['state'];
  memory: string; // sim memory content; digest = sha256 of it
}

const network = new Map<string, FakeAgent>();
export const fakeStore = new Map<string, FakeGuest>();

export interface FakeAgentOptions {
  cpUrl: string;
  secret: string;
  hostId: string;
  toolstack: Toolstack;
  redisUrl: string;
  queuePrefix: string;
  guests?: Omit<FakeGuest, 'state'>[];
  capacity?: { memoryMiB: number; vcpus: number; maxGuests: number };
  /** ms per pre-copy round */
  roundMs?: number;
  rounds?: number;
  heartbeatMs?: number;
  /** When set, suspends upload a small real v2 image to the suspend-store (p.store.url) and resumes download it. */
  storeToken?: string;
  /** Bytes a migration or suspend sends beyond the guest's memory (stream headers, vCPU and device state), as real images do. */
  overheadBytes?: number;
}

/** A small valid v2 image, as a sim guest's suspend would store. */
async function storeImage(guest: 'pv' | 'hvm'): Promise<Blob> {
  const parts: Uint8Array<ArrayBuffer>[] = [];
  for await (const c of encodeV2(synthStream({ guest, framing: 'libxl', pages: 16 }))) parts.push(new Uint8Array(c));
  return new Blob(parts);
}

export function digest(s: string): string {
  return `sha256:${createHash('sha256').update(s).digest('hex')}`;
}

class Cancelled extends Error {}
type ReportIn = AgentReport extends infer R ? (R extends AgentReport ? Omit<R, 'seq' | 'at'> : never) : never;

export class FakeAgent {
  readonly hostId: string;
  toolstack: Toolstack;
  bootId = randomUUID();
  readonly guests = new Map<string, FakeGuest>();
  readonly dataUrl: string;
  readonly token: string;
  /** test knobs */
  hang = false; // stop reporting progress (to provoke a stall)
  /** Holds a suspend after its first progress report until it resolves: 'cancel-ok' gives up if cancelled meanwhile; 'past-ponr' completes regardless. */
  suspendGate: Promise<'cancel-ok' | 'past-ponr'> | null = null;
  pauseBeforeCommit: Promise<void> | null = null;
  /** One-shot: after the commit was granted, hold (guest paused, nothing reported) until it resolves, as a target that died there and came back. */
  holdAfterCommit: Promise<void> | null = null;
  /** Holds a resume after its first progress report until it resolves. */
  resumeGate: Promise<void> | null = null;
  /** One-shot: the guest runs after the commit, but the completed report waits until this resolves (a report delivered late). */
  delayCompletedReport: Promise<void> | null = null;
  failSend: { code: 'STREAM_ERROR'; retryable: boolean } | null = null;
  /** Fails every upgrade (TOOLSTACK_ERROR) and keeps the old toolstack. */
  failUpgrade = false;
  readonly jobsSeen: string[] = [];
  private readonly cancelled = new Set<string>();
  private readonly receives = new Map<string, { token: string; attempt: number; resolve: (g: FakeGuest) => void; guest: Promise<FakeGuest> }>();
  private seq = 0;
  private worker: Worker | null = null;
  private conn: IORedis | null = null;
  private hb: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly o: FakeAgentOptions) {
    this.hostId = o.hostId;
    this.toolstack = o.toolstack;
    this.dataUrl = `fake://${o.hostId}`;
    this.token = deriveAgentToken(o.secret, o.hostId);
    for (const g of o.guests ?? []) this.guests.set(g.vmId, { ...g, state: 'running' });
  }

  private async call<T>(path: string, body: unknown, method = 'POST'): Promise<T> {
    const res = await fetch(this.o.cpUrl + path, {
      method,
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
      body: method === 'GET' ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text) as T;
  }

  inventory(): GuestInventory[] {
    return [...this.guests.values()].map(({ memory, ...g }) => ({ ...g, memoryDigest: digest(memory) }));
  }

  async register(): Promise<RegisterResponse> {
    return this.call<RegisterResponse>(AGENT_API.register, {
      hostId: this.hostId,
      bootId: this.bootId,
      agentVersion: 'fake-1',
      hostname: `${this.hostId}.test`,
      toolstack: this.toolstack,
      byteOrder: 'little',
      capacity: this.o.capacity ?? { memoryMiB: 16384, vcpus: 16, maxGuests: 32 },
      dataUrl: this.dataUrl,
      inventory: { guests: this.inventory() },
    });
  }

  async heartbeat(): Promise<HeartbeatResponse> {
    const r = await this.call<HeartbeatResponse>(AGENT_API.heartbeat(this.hostId), {
      bootId: this.bootId,
      toolstack: this.toolstack,
      state: 'ready',
      capacity: this.o.capacity ?? { memoryMiB: 16384, vcpus: 16, maxGuests: 32 },
      inventory: { guests: this.inventory() },
      activeOperations: [],
    });
    if (r.reregister) await this.register();
    return r;
  }

  private async report(r: ReportIn): Promise<void> {
    if (this.hang && r.type === 'progress') return;
    const body = { reports: [{ ...r, seq: ++this.seq, at: new Date().toISOString() }] };
    // like a real agent: retry on network errors / 5xx (reports are idempotent)
    for (let i = 0; ; i++) {
      try {
        await this.call(AGENT_API.reports(this.hostId), body);
        return;
      } catch (e) {
        if (i >= 100 || this.closed || /: 4\d\d /.test(String(e))) throw e;
        await sleep(100);
      }
    }
  }

  private progress(operationId: string, attempt: number, job: HostJobName, phase: string, extra: Partial<Record<'bytesDone' | 'bytesTotal' | 'round' | 'dirtyRate' | 'rate', number>> & { etaMs?: number | null; expectedDowntimeMs?: number | null; downtimeMs?: number | null } = {}) {
    return this.report({
      type: 'progress',
      operationId,
      attempt,
      job,
      phase: phase as never,
      bytesDone: extra.bytesDone ?? 0,
      bytesTotal: extra.bytesTotal ?? 0,
      round: extra.round ?? 0,
      dirtyRate: extra.dirtyRate ?? 0,
      rate: extra.rate ?? 0,
      etaMs: extra.etaMs ?? null,
      expectedDowntimeMs: extra.expectedDowntimeMs ?? null,
      downtimeMs: extra.downtimeMs ?? null,
    });
  }

  private check(op: string, attempt: number): void {
    if (this.cancelled.has(`${op}#${attempt}`) || this.closed) throw new Cancelled('cancelled');
  }

  private handlers(): { [K in HostJobName]: HostJobHandler<K> } {
    return {
      'migrate-receive': async (p) => {
        let resolve!: (g: FakeGuest) => void;
        const guest = new Promise<FakeGuest>((r) => (resolve = r));
        this.receives.set(p.migrationId, { token: p.streamToken, attempt: p.attempt, resolve, guest });
        try {
          const g = await Promise.race([
            guest,
            new Promise<never>((_, rej) => setTimeout(() => rej(new Error('timeout')), p.connectTimeoutMs)),
            this.cancelWatch(p.migrationId, p.attempt),
          ]);
          await this.progress(p.migrationId, p.attempt, 'migrate-receive', 'verifying', { bytesDone: g.memoryMiB, bytesTotal: g.memoryMiB });
          this.guests.set(g.vmId, { ...g, state: 'paused' });
          if (this.pauseBeforeCommit) await this.pauseBeforeCommit;
          const c = await this.call<{ commit: boolean }>(AGENT_API.commit(this.hostId, p.migrationId), { attempt: p.attempt, bytesReceived: g.memoryMiB * 1048576, memoryDigest: digest(g.memory) });
          if (!c.commit) {
            this.guests.delete(g.vmId);
            throw new Cancelled('commit refused');
          }
          const hold = this.holdAfterCommit;
          this.holdAfterCommit = null;
          if (hold) await hold;
          this.guests.set(g.vmId, { ...g, state: 'running' });
          const late = this.delayCompletedReport;
          this.delayCompletedReport = null;
          if (late) await late;
          const result: HostJobResults['migrate-receive'] = { migrationId: p.migrationId, bytesReceived: g.memoryMiB * 1048576, memoryDigest: digest(g.memory), outcome: 'running-on-target' };
          await this.report({ type: 'completed', operationId: p.migrationId, attempt: p.attempt, job: 'migrate-receive', result });
          return result;
        } catch (e) {
          await this.report({ type: 'failed', operationId: p.migrationId, attempt: p.attempt, job: 'migrate-receive', error: { code: e instanceof Cancelled ? 'CANCELLED' : 'TIMEOUT', message: String(e), retryable: !(e instanceof Cancelled) } }).catch(() => undefined);
          throw e;
        } finally {
          if (this.receives.get(p.migrationId)?.attempt === p.attempt) this.receives.delete(p.migrationId);
        }
      },
      'migrate-send': async (p) => {
        const g = this.guests.get(p.vmId);
        if (!g) {
          await this.report({ type: 'failed', operationId: p.migrationId, attempt: p.attempt, job: 'migrate-send', error: { code: 'VM_NOT_FOUND', message: p.vmId, retryable: false } });
          throw new Error('vm not found');
        }
        const total = g.memoryMiB * 1048576;
        const rounds = this.o.rounds ?? 3;
        let pausedAt = 0;
        try {
          await this.progress(p.migrationId, p.attempt, 'migrate-send', 'preparing', { bytesTotal: total });
          g.state = 'migrating-out';
          for (let r = 1; r <= (p.mode === 'live' ? rounds : 0); r++) {
            this.check(p.migrationId, p.attempt);
            await sleep(this.o.roundMs ?? 20);
            this.check(p.migrationId, p.attempt);
            if (this.failSend) {
              const f = this.failSend;
              this.failSend = null;
              g.state = 'running';
              await this.report({ type: 'failed', operationId: p.migrationId, attempt: p.attempt, job: 'migrate-send', error: { code: f.code, message: 'injected', retryable: f.retryable } });
              throw new Error('injected');
            }
            const done = Math.round((total * r) / (rounds + 1));
            await this.progress(p.migrationId, p.attempt, 'migrate-send', 'precopy', { bytesDone: done, bytesTotal: total, round: r, dirtyRate: 1_000_000, rate: 50_000_000, etaMs: 100, expectedDowntimeMs: 30 });
          }
          this.check(p.migrationId, p.attempt);
          g.state = 'paused';
          pausedAt = Date.now();
          await this.progress(p.migrationId, p.attempt, 'migrate-send', 'stop-copy', { bytesDone: total, bytesTotal: total, round: rounds + 1, expectedDowntimeMs: 20 });
          // hand the stream to the target (in-process "PUT {dataUrl}/v1/streams/{id}")
          const target = network.get(p.target.dataUrl);
          const deadline = Date.now() + 10_000;
          let rcv = target?.receives.get(p.migrationId);
          while (!rcv || rcv.attempt !== p.attempt) {
            this.check(p.migrationId, p.attempt);
            if (Date.now() > deadline) throw new Error('target never listened');
            await sleep(10);
            rcv = target?.receives.get(p.migrationId);
          }
          if (rcv.token !== p.streamToken) throw new Error('bad stream token');
          rcv.resolve({ ...g, state: 'migrating-in' });
          // wait for the decision (the real agent learns it from the PUT answer)
          for (;;) {
            const d = await this.call<{ decision: string }>(AGENT_API.decision(this.hostId, p.migrationId), null, 'GET');
            if (d.decision === 'commit') break;
            if (d.decision === 'abort') throw new Cancelled('aborted');
            await sleep(25);
          }
          this.guests.delete(p.vmId);
          const result: HostJobResults['migrate-send'] = { migrationId: p.migrationId, bytesSent: total + (this.o.overheadBytes ?? 0), rounds, downtimeMs: Date.now() - pausedAt, outcome: 'handed-off' };
          await this.report({ type: 'completed', operationId: p.migrationId, attempt: p.attempt, job: 'migrate-send', result });
          return result;
        } catch (e) {
          if (this.guests.has(p.vmId)) this.guests.get(p.vmId)!.state = 'running';
          if (e instanceof Cancelled || String(e).includes('target never')) {
            await this.report({ type: 'failed', operationId: p.migrationId, attempt: p.attempt, job: 'migrate-send', error: { code: e instanceof Cancelled ? 'CANCELLED' : 'TIMEOUT', message: String(e), retryable: !(e instanceof Cancelled) } }).catch(() => undefined);
          }
          throw e;
        }
      },
      suspend: async (p) => {
        const g = this.guests.get(p.vmId);
        if (!g) throw new Error('no vm');
        await this.progress(p.operationId, p.attempt, 'suspend', 'uploading', { bytesDone: 1, bytesTotal: 2 });
        if (this.suspendGate && (await this.suspendGate) === 'cancel-ok' && this.cancelled.has(`${p.operationId}#${p.attempt}`)) {
          await this.report({ type: 'failed', operationId: p.operationId, attempt: p.attempt, job: 'suspend', error: { code: 'CANCELLED', message: 'cancelled', retryable: false } });
          throw new Cancelled('cancelled');
        }
        if (this.o.storeToken) {
          const url = `${p.store.url}/v1/checkpoints/${encodeURIComponent(p.store.checkpointId)}?vm=${encodeURIComponent(p.vmId)}`;
          const res = await fetch(url, { method: 'PUT', headers: { authorization: `Bearer ${this.o.storeToken}`, 'content-type': 'application/octet-stream' }, body: await storeImage(g.type) });
          if (!res.ok) {
            const message = `store refused the upload: ${res.status} ${await res.text()}`;
            await this.report({ type: 'failed', operationId: p.operationId, attempt: p.attempt, job: 'suspend', error: { code: 'STREAM_ERROR', message, retryable: false } });
            throw new Error(message);
          }
          await res.arrayBuffer();
        }
        fakeStore.set(p.store.checkpointId, { ...g });
        this.guests.delete(p.vmId);
        const { memory, state: _s, ...spec } = g;
        const result: HostJobResults['suspend'] = { checkpoint: { checkpointId: p.store.checkpointId, vmId: p.vmId, bytes: g.memoryMiB * 1048576 + (this.o.overheadBytes ?? 0), sha256: digest(memory).slice(7), memoryDigest: digest(memory), vm: spec } };
        await this.report({ type: 'completed', operationId: p.operationId, attempt: p.attempt, job: 'suspend', result });
        return result;
      },
      resume: async (p) => {
        const g = fakeStore.get(p.store.checkpointId);
        if (!g) throw new Error('no checkpoint');
        await this.progress(p.operationId, p.attempt, 'resume', 'downloading', { bytesDone: 1, bytesTotal: 2 });
        if (this.resumeGate) await this.resumeGate;
        if (this.o.storeToken) {
          const res = await fetch(`${p.store.url}/v1/checkpoints/${encodeURIComponent(p.store.checkpointId)}`, { headers: { authorization: `Bearer ${this.o.storeToken}` } });
          const body = await res.arrayBuffer();
          if (!res.ok) {
            const message = `store: ${res.status} ${Buffer.from(body).toString().slice(0, 200)}`;
            await this.report({ type: 'failed', operationId: p.operationId, attempt: p.attempt, job: 'resume', error: { code: 'STREAM_ERROR', message, retryable: false } });
            throw new Error(message);
          }
        }
        this.guests.set(g.vmId, { ...g, state: 'running' });
        const result = { vmId: g.vmId, memoryDigest: digest(g.memory) };
        await this.report({ type: 'completed', operationId: p.operationId, attempt: p.attempt, job: 'resume', result });
        return result;
      },
      inventory: async () => {
        await this.heartbeat();
        return { inventory: { guests: this.inventory() } };
      },
      upgrade: async (p) => {
        if (this.failUpgrade) {
          await this.report({ type: 'failed', operationId: p.operationId, attempt: p.attempt, job: 'upgrade', error: { code: 'TOOLSTACK_ERROR', message: 'injected', retryable: false } });
          throw new Error('injected');
        }
        if (this.guests.size) {
          await this.report({ type: 'failed', operationId: p.operationId, attempt: p.attempt, job: 'upgrade', error: { code: 'GUESTS_PRESENT', message: `${this.guests.size} guests remain`, retryable: false } });
          throw new Error('guests present');
        }
        const previous = this.toolstack;
        await this.report({ type: 'completed', operationId: p.operationId, attempt: p.attempt, job: 'upgrade', result: { previous, toolstack: p.toolstack } });
        await sleep(50); // "restart the toolstack"
        this.toolstack = p.toolstack;
        this.bootId = randomUUID();
        await this.register();
        return { previous, toolstack: p.toolstack };
      },
      cancel: async (p) => {
        for (let a = 1; a <= p.targetAttempt; a++) this.cancelled.add(`${p.targetOperationId}#${a}`);
        return { targetOperationId: p.targetOperationId, cancelled: true };
      },
    };
  }

  private cancelWatch(op: string, attempt: number): Promise<never> {
    return new Promise<never>((_, rej) => {
      const t = setInterval(() => {
        if (this.cancelled.has(`${op}#${attempt}`) || this.closed) {
          clearInterval(t);
          rej(new Cancelled('cancelled'));
        }
      }, 10);
    });
  }

  async start(): Promise<this> {
    network.set(this.dataUrl, this);
    await this.register();
    // Either REDIS_URL form (a sentinel set too), and an agent's own ACL user works as the default user does.
    this.conn = createRedisConnection(this.o.redisUrl, { ...agentRedisOptions });
    const registry = HandlerRegistry.from(this.handlers());
    registry.assertComplete(HOST_JOB_NAMES);
    this.worker = startHostWorker({ hostId: this.hostId, registry, connection: this.conn, prefix: this.o.queuePrefix, concurrency: 8 });
    this.worker.on('failed', (job) => this.jobsSeen.push(`failed:${job?.name}`));
    this.worker.on('completed', (job) => this.jobsSeen.push(`completed:${job.name}`));
    const beat = () => {
      if (this.closed) return;
      this.hb = setTimeout(() => {
        this.heartbeat()
          .catch(() => undefined)
          .finally(beat);
      }, this.o.heartbeatMs ?? 200);
    };
    beat();
    return this;
  }

  async stop(): Promise<void> {
    this.closed = true;
    if (this.hb) clearTimeout(this.hb);
    network.delete(this.dataUrl);
    await this.worker?.close(true).catch(() => undefined);
    this.conn?.disconnect();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
