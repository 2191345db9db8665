/**
 * Test-only stand-in for the control plane's side of docs/jobs.md: the agent HTTP API
 * (register / heartbeat / reports / commit / decision) and job dispatch through @ferry/queue.
 * Commit and decision are atomic and latch: once a migration is committed it stays committed,
 * once aborted (cancel, or a decision asked before any commit) a commit is refused.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { dataPathNodeFlags, deriveAgentToken, verifyAgentToken } from '@ferry/config';
import {
  canReceive,
  hostQueueName,
  sourceIngest,
  type AgentReport,
  type CommitRequest,
  type HeartbeatRequest,
  type HostJobName,
  type HostJobPayloads,
  type MigrationMode,
  type RegisterRequest,
  type VmSpec,
} from '@ferry/contracts';
import { HostJobProducer } from '@ferry/queue';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROOT = path.resolve(__dirname, '../../..');

export interface MigrationRecord {
  id: string;
  attempt: number;
  state: 'running' | 'committed' | 'aborted';
  cancelRequested: boolean;
  commits: CommitRequest[];
}

export class Coordinator {
  readonly secret = randomBytes(16).toString('hex');
  readonly prefix = `ferry-test-${randomUUID().slice(0, 8)}`;
  readonly hosts = new Map<string, { reg: RegisterRequest; registrations: number; heartbeat: HeartbeatRequest | null }>();
  readonly reports: AgentReport[] = [];
  readonly migrations = new Map<string, MigrationRecord>();
  private conn: Redis | null = null;
  private producerInstance: HostJobProducer | null = null;
  get producer(): HostJobProducer {
    this.conn ??= new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    this.producerInstance ??= new HostJobProducer({ connection: this.conn, prefix: this.prefix });
    return this.producerInstance;
  }
  private server: http.Server | null = null;
  url = '';
  heartbeatIntervalMs = 300;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        try {
          const body = parts.length ? (JSON.parse(Buffer.concat(parts).toString('utf8')) as unknown) : undefined;
          const [status, out] = this.route(req.method ?? 'GET', req.url ?? '/', req.headers.authorization ?? '', body);
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(out));
        } catch (e) {
          res.writeHead(500).end(JSON.stringify({ message: (e as Error).message }));
        }
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private route(method: string, url: string, auth: string, body: unknown): [number, unknown] {
    const token = /^Bearer (\S+)$/.exec(auth)?.[1] ?? '';
    const who = verifyAgentToken(this.secret, token);
    if (!who) return [401, { message: 'bad agent token' }];
    if (method === 'POST' && url === '/v1/agents/register') {
      const reg = body as RegisterRequest;
      if (reg.hostId !== who) return [403, { message: 'token is for another host' }];
      const h = this.hosts.get(reg.hostId);
      this.hosts.set(reg.hostId, { reg, registrations: (h?.registrations ?? 0) + 1, heartbeat: null });
      return [200, { hostId: reg.hostId, queueName: hostQueueName(reg.hostId), queuePrefix: this.prefix, heartbeatIntervalMs: this.heartbeatIntervalMs, offlineAfterMs: 5000, serverTime: new Date().toISOString() }];
    }
    const m = /^\/v1\/agents\/([^/]+)\/(heartbeat|reports|migrations\/([^/]+)\/(commit|decision))$/.exec(url);
    if (!m || decodeURIComponent(m[1]!) !== who) return [404, { message: 'no route' }];
    const hostId = who;
    if (m[2] === 'heartbeat') {
      const h = this.hosts.get(hostId);
      if (!h) return [200, { ok: true, reregister: true, cancelOperations: [] }];
      h.heartbeat = body as HeartbeatRequest;
      // as the control plane does: an operation the agent still runs but that has ended here is cancelled
      return [200, { ok: true, reregister: false, cancelOperations: h.heartbeat.activeOperations.filter((id) => this.ended(id)) }];
    }
    if (m[2] === 'reports') {
      const rs = (body as { reports: AgentReport[] }).reports;
      this.reports.push(...rs);
      return [200, { accepted: rs.length, cancelOperations: [...new Set(rs.filter((r) => r.type === 'progress' && this.ended(r.operationId)).map((r) => r.operationId))] }];
    }
    const mig = this.migrations.get(decodeURIComponent(m[3]!));
    if (!mig) return [404, { message: 'unknown migration' }];
    if (m[4] === 'commit') {
      const c = body as CommitRequest;
      mig.commits.push(c);
      if (c.attempt !== mig.attempt) return [200, { commit: false, reason: 'stale attempt' }];
      if (mig.state === 'committed') return [200, { commit: true }];
      if (mig.state === 'aborted' || mig.cancelRequested) {
        mig.state = 'aborted';
        return [200, { commit: false, reason: 'cancelled' }];
      }
      mig.state = 'committed';
      return [200, { commit: true }];
    }
    // decision
    if (mig.state === 'running') mig.state = 'aborted';
    return [200, { decision: mig.state === 'committed' ? 'commit' : 'abort' }];
  }

  /** An operation with a final report (completed or failed) from any of its jobs. */
  private ended(operationId: string): boolean {
    return this.reports.some((r) => r.operationId === operationId && r.type !== 'progress' && r.job !== 'migrate-send' && r.job !== 'migrate-receive');
  }

  token(hostId: string): string {
    return deriveAgentToken(this.secret, hostId);
  }

  async dispatch<K extends HostJobName>(hostId: string, job: K, payload: HostJobPayloads[K]): Promise<void> {
    await this.producer.dispatch(hostId, job, payload);
  }

  /** Dispatches migrate-receive and migrate-send (same stream token), as the scheduler would. */
  async migrate(o: { vm: VmSpec; from: string; to: string; mode: MigrationMode; bandwidth?: number | null; downtimeTargetMs?: number; maxRounds?: number; id?: string }): Promise<string> {
    const src = this.hosts.get(o.from)!.reg;
    const dst = this.hosts.get(o.to)!.reg;
    const compat = canReceive(dst.toolstack, o.vm);
    if (!compat.ok) throw new Error(compat.reason);
    const id = o.id ?? `mig-${randomUUID().slice(0, 8)}`;
    const streamToken = randomBytes(24).toString('base64url');
    this.migrations.set(id, { id, attempt: 1, state: 'running', cancelRequested: false, commits: [] });
    await this.dispatch(o.to, 'migrate-receive', { operationId: id, attempt: 1, migrationId: id, vm: o.vm, mode: o.mode, source: { hostId: o.from }, streamToken, restore: compat.restore, connectTimeoutMs: 20_000 });
    await this.dispatch(o.from, 'migrate-send', {
      operationId: id,
      attempt: 1,
      migrationId: id,
      vmId: o.vm.vmId,
      mode: o.mode,
      bandwidthBytesPerSec: o.bandwidth ?? null,
      target: { hostId: o.to, dataUrl: dst.dataUrl },
      streamToken,
      sourceFormat: sourceIngest(src.toolstack),
      downtimeTargetMs: o.downtimeTargetMs ?? 50,
      maxRounds: o.maxRounds ?? 8,
    });
    return id;
  }

  async cancel(id: string, hosts: string[]): Promise<void> {
    const mig = this.migrations.get(id);
    if (mig && mig.state !== 'committed') mig.cancelRequested = true;
    for (const h of hosts) await this.dispatch(h, 'cancel', { operationId: `cancel-${id}-${h}`, attempt: 1, targetOperationId: id, targetAttempt: 1, reason: 'test cancel' });
  }

  final(operationId: string, job: HostJobName): AgentReport | undefined {
    return this.reports.find((r) => r.operationId === operationId && r.job === job && r.type !== 'progress');
  }

  async waitFinal(operationId: string, job: HostJobName, timeoutMs = 60_000): Promise<AgentReport> {
    return waitFor(() => this.final(operationId, job), timeoutMs, `final report of ${job} ${operationId}`);
  }

  guests(hostId: string): { vmId: string; state: string; memoryDigest: string | null }[] {
    return this.hosts.get(hostId)?.heartbeat?.inventory.guests ?? this.hosts.get(hostId)?.reg.inventory.guests ?? [];
  }

  /** The freshest inventory: waits for a heartbeat that arrived after now. */
  async freshGuests(hostId: string): Promise<{ vmId: string; state: string; memoryDigest: string | null }[]> {
    const h = this.hosts.get(hostId);
    if (h) h.heartbeat = null;
    await waitFor(() => this.hosts.get(hostId)?.heartbeat, 10_000, `heartbeat of ${hostId}`);
    return this.guests(hostId);
  }

  async close(): Promise<void> {
    await this.producerInstance?.close();
    this.conn?.disconnect();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${this.prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
}

export async function waitFor<T>(f: () => T | undefined | null | false, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface AgentProcess {
  hostId: string;
  child: ChildProcess;
  stderr: string[];
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts a real agent process (`run-ts.js apps/host-agent/src/main.ts`) and waits for it to register. */
export async function spawnAgent(cp: Coordinator, hostId: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<AgentProcess> {
  const before = cp.hosts.get(hostId)?.registrations ?? 0;
  const child = spawn(process.execPath, [...dataPathNodeFlags(), ...nodeArgs, path.join(ROOT, 'apps/cli/bin/run-ts.js'), path.join(ROOT, 'apps/host-agent/src/main.ts')], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      FERRY_HOST_ID: hostId,
      FERRY_CONTROL_PLANE_URL: cp.url,
      FERRY_AGENT_TOKEN: cp.token(hostId),
      REDIS_URL,
      FERRY_QUEUE_PREFIX: cp.prefix,
      FERRY_SIM_DIRTY_RATE: '0',
      ...env,
    },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  const stderr: string[] = [];
  child.stderr!.on('data', (c: Buffer) => {
    stderr.push(c.toString());
    if (process.env.FERRY_TEST_VERBOSE) process.stderr.write(c);
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await Promise.race([
    waitFor(() => (cp.hosts.get(hostId)?.registrations ?? 0) > before, 60_000, `registration of ${hostId}`),
    exited.then(() => {
      throw new Error(`agent ${hostId} exited: ${stderr.join('')}`);
    }),
  ]);
  return {
    hostId,
    child,
    stderr,
    kill: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
}

/** The real suspend-store (apps/suspend-store) as a process on a free loopback port, local-folder backend. */
export async function spawnSuspendStore(dir: string, token: string): Promise<{ url: string; kill(): Promise<void> }> {
  const child = spawn(process.execPath, [...dataPathNodeFlags(), path.join(ROOT, 'apps/cli/bin/run-ts.js'), path.join(ROOT, 'apps/suspend-store/src/main.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', FERRY_STORE_BACKEND: 'fs', FERRY_STORE_DIR: dir, FERRY_ADMIN_TOKEN: token, FERRY_LOG_LEVEL: 'error' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const err: string[] = [];
  child.stderr!.on('data', (c: Buffer) => err.push(c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then(() => reject(new Error(`suspend-store exited: ${err.join('')}`)));
    setTimeout(() => reject(new Error('suspend-store did not start within 60 s')), 60_000).unref();
  });
  return {
    url,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}
