/**
 * The host agent: composition and lifecycle. Registers its host, heartbeats (with inventory),
 * serves the data endpoint, consumes its host's BullMQ queue and routes jobs to the services.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import { Redis } from 'ioredis';
import type { Worker } from 'bullmq';
import {
  type AgentError,
  type HeartbeatRequest,
  type HostInventory,
  type HostJobName,
  type HostJobPayloads,
  type HostJobResults,
  type RegisterResponse,
  type Toolstack,
} from '@ferry/contracts';
import { HandlerRegistry, RedisStateLog, activeHostJobs, agentRedisOptions, createRedisConnection, startHostWorker, type HandlerContext, type HostJobHandler } from '@ferry/queue';
import { WidthMismatchError, isCodecError } from './codec';
import { agentHostname, type AgentConfig } from './config';
import { ControlPlaneError, HttpControlPlane, Reporter, resolveMigration, sleep, type ControlPlaneApi } from './control-plane';
import { DataServer } from './data-path';
import { DriverError, type HypervisorDriver } from './driver';
import { MigrationReceiver } from './migration/receiver';
import { MigrationSender } from './migration/sender';
import { AgentFailure, Operations, type Operation } from './operations';
import { SimDriver, newSeed } from './sim/sim-driver';
import { RateLimiter } from './stream-utils';
import { HttpStoreClient, SuspendService, type StoreClient } from './suspend';
import { XlDriver } from './xl/xl-driver';

export const AGENT_VERSION = '0.1.0';

export interface AgentDeps {
  driver?: HypervisorDriver;
  controlPlane?: ControlPlaneApi;
  store?: StoreClient;
  log?: (msg: string) => void;
}

export function toAgentError(e: unknown): AgentError {
  if (e instanceof AgentFailure) return { code: e.code, message: e.message, retryable: e.retryable };
  if (e instanceof DriverError) {
    const retryable = e.code === 'NO_CAPACITY' || e.code === 'TOOLSTACK_ERROR' || e.code === 'STREAM_ERROR';
    return { code: e.code, message: e.message, retryable };
  }
  if (e instanceof WidthMismatchError) return { code: 'INCOMPATIBLE', message: e.message, retryable: false };
  if (isCodecError(e)) return { code: 'STREAM_ERROR', message: (e as Error).message, retryable: false };
  if (e instanceof ControlPlaneError) return { code: 'INTERNAL', message: e.message, retryable: true };
  return { code: 'INTERNAL', message: e instanceof Error ? e.message : String(e), retryable: true };
}

export function createDriver(c: AgentConfig): HypervisorDriver {
  if (c.FERRY_DRIVER === 'xl') return new XlDriver({ xlPath: c.FERRY_XL_PATH, workDir: c.FERRY_XL_WORK_DIR ?? `${c.stateDir}/xl`, capacity: c.FERRY_SIM_CAPACITY });
  return new SimDriver({
    stateDir: c.stateDir,
    toolstack: c.FERRY_SIM_TOOLSTACK,
    capacity: c.FERRY_SIM_CAPACITY,
    dirtyRate: c.FERRY_SIM_DIRTY_RATE,
    toolstackLatencyMs: c.FERRY_SIM_LATENCY_MS,
    guests: c.FERRY_SIM_GUESTS.map((g) => ({ spec: g.spec, seed: g.seed ?? newSeed(), dirtyRate: g.dirtyRate ?? c.FERRY_SIM_DIRTY_RATE })),
  });
}

export class HostAgent {
  readonly hostId: string;
  private readonly driver: HypervisorDriver;
  private readonly cp: ControlPlaneApi;
  private readonly reporter: Reporter;
  private readonly ops = new Operations();
  private readonly receiver: MigrationReceiver;
  private readonly sender: MigrationSender;
  private readonly suspender: SuspendService;
  private readonly data: DataServer;
  private readonly closing = new AbortController();
  private readonly log: (msg: string) => void;
  private worker: Worker | null = null;
  private redis: Redis | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private bootId = randomUUID();
  private state: 'ready' | 'upgrading' = 'ready';
  private heartbeatMs = 2000;
  dataUrl = '';

  constructor(
    private readonly config: AgentConfig,
    deps: AgentDeps = {},
  ) {
    this.hostId = config.FERRY_HOST_ID;
    this.log = deps.log ?? ((m) => process.stderr.write(`${new Date().toISOString()} host-agent[${this.hostId}] ${m}\n`));
    this.driver = deps.driver ?? createDriver(config);
    this.cp = deps.controlPlane ?? new HttpControlPlane(config.FERRY_CONTROL_PLANE_URL, config.FERRY_AGENT_TOKEN);
    this.reporter = new Reporter(this.cp, this.hostId, 500, this.log);
    this.reporter.onCancel = (ids) => this.cancelMany(ids, 'control plane asked');
    this.receiver = new MigrationReceiver(this.hostId, this.driver, this.cp, this.reporter, this.log, this.closing.signal);
    const ca = config.FERRY_TLS_CA ? readFileSync(config.FERRY_TLS_CA) : undefined;
    this.sender = new MigrationSender(this.driver, this.cp, this.reporter, {
      hostId: this.hostId,
      connectTimeoutMs: config.FERRY_CONNECT_TIMEOUT_MS,
      hostLimiter: config.FERRY_HOST_BANDWIDTH > 0 ? new RateLimiter(config.FERRY_HOST_BANDWIDTH) : null,
      ...(ca ? { tlsCa: ca } : {}),
      closing: this.closing.signal,
      log: this.log,
    });
    this.suspender = new SuspendService(this.driver, deps.store ?? new HttpStoreClient(config.FERRY_STORE_TOKEN), this.reporter);
    const tls = config.FERRY_TLS_CERT && config.FERRY_TLS_KEY ? { cert: readFileSync(config.FERRY_TLS_CERT), key: readFileSync(config.FERRY_TLS_KEY) } : undefined;
    this.data = new DataServer(this.receiver.onStream, tls, this.receiver.onDuplex);
  }

  async start(): Promise<void> {
    await this.driver.start();
    const port = await this.data.listen(this.config.FERRY_DATA_HOST, this.config.FERRY_DATA_PORT);
    const proto = this.config.FERRY_TLS_CERT ? 'https' : 'http';
    this.dataUrl = this.config.FERRY_DATA_URL ?? `${proto}://${this.config.FERRY_DATA_HOST}:${port}`;
    const reg = await this.registerUntilDone();
    this.reporter.start();
    this.scheduleHeartbeat();
    // The client and the worker's own connection report their errors as one line per change of reachability.
    const redisState = new RedisStateLog(`host-agent ${this.hostId}`, this.log);
    this.redis = redisState.watch(createRedisConnection(this.config.REDIS_URL, { ...agentRedisOptions }));
    const prefix = this.config.FERRY_QUEUE_PREFIX ?? reg.queuePrefix;
    // settle what a previous process left half-way before taking new jobs: a new attempt must not
    // find the old attempt's copy of its guest
    await this.recover(await activeHostJobs({ hostId: this.hostId, connection: this.redis, prefix }));
    this.worker = startHostWorker({
      hostId: this.hostId,
      registry: this.registry(),
      connection: this.redis,
      prefix,
      concurrency: 8,
      redisState,
    });
    this.log(`ready: driver ${this.driver.kind}, toolstack ${fmtTs(this.driver.toolstack())}, data ${this.dataUrl}`);
  }

  private async registerUntilDone(): Promise<RegisterResponse> {
    for (;;) {
      try {
        const reg = await this.cp.register({
          hostId: this.hostId,
          bootId: this.bootId,
          agentVersion: AGENT_VERSION,
          hostname: agentHostname(this.config, os.hostname()),
          toolstack: this.driver.toolstack(),
          byteOrder: this.driver.byteOrder(),
          capacity: this.driver.capacity(),
          dataUrl: this.dataUrl,
          inventory: await this.inventory(),
        });
        this.heartbeatMs = this.config.FERRY_HEARTBEAT_MS || reg.heartbeatIntervalMs || 2000;
        return reg;
      } catch (e) {
        if (e instanceof ControlPlaneError && e.status !== null && e.status < 500 && e.status !== 429) throw e;
        this.log(`register: ${(e as Error).message}; retrying`);
        await sleep(1000, this.closing.signal);
      }
    }
  }

  async inventory(): Promise<HostInventory> {
    return { guests: await this.driver.guests() };
  }

  private scheduleHeartbeat(): void {
    if (this.closing.signal.aborted) return;
    this.heartbeatTimer = setTimeout(() => void this.heartbeat().finally(() => this.scheduleHeartbeat()), this.heartbeatMs);
  }

  async heartbeat(): Promise<void> {
    try {
      const body: HeartbeatRequest = {
        bootId: this.bootId,
        toolstack: this.driver.toolstack(),
        state: this.state,
        capacity: this.driver.capacity(),
        inventory: await this.inventory(),
        activeOperations: this.ops.active(),
      };
      const res = await this.cp.heartbeat(this.hostId, body);
      if (res.cancelOperations?.length) this.cancelMany(res.cancelOperations, 'control plane asked (heartbeat)');
      if (res.reregister) await this.registerUntilDone();
    } catch (e) {
      if (!this.closing.signal.aborted) this.log(`heartbeat: ${(e as Error).message}`);
    }
  }

  private cancelMany(ids: string[], reason: string): void {
    for (const id of ids) if (this.ops.cancel(id, Number.MAX_SAFE_INTEGER, reason)) this.log(`cancelled ${id}: ${reason}`);
  }

  /** Thin handlers: track the operation, run the service, report the outcome. */
  /** The guest a job works on, if any. */
  private static guestOf(job: HostJobName, p: HostJobPayloads[HostJobName]): string | null {
    if (job === 'migrate-send' || job === 'suspend') return (p as HostJobPayloads['migrate-send' | 'suspend']).vmId;
    if (job === 'migrate-receive' || job === 'resume') return (p as HostJobPayloads['migrate-receive' | 'resume']).vm.vmId;
    return null;
  }

  /** Per guest, the end of the last job that works on it. */
  private readonly guestTurns = new Map<string, Promise<void>>();

  /**
   * Jobs on one guest run one after the other: a new attempt (or the next migration) starts only
   * once the previous job has let go of the guest, so the old one's clean-up (resume, discard,
   * dropping its migration mark) can never undo what the new one set up.
   */
  private async inTurn<T>(vmId: string | null, fn: () => Promise<T>): Promise<T> {
    if (!vmId) return fn();
    const before = this.guestTurns.get(vmId) ?? Promise.resolve();
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const mine = before.then(() => finished);
    this.guestTurns.set(vmId, mine);
    try {
      await before;
      return await fn();
    } finally {
      done();
      if (this.guestTurns.get(vmId) === mine) this.guestTurns.delete(vmId);
    }
  }

  private wrap<K extends HostJobName>(job: K, run: (p: HostJobPayloads[K], op: Operation) => Promise<HostJobResults[K]>, reportCompleted = true): HostJobHandler<K> {
    return async (payload: HostJobPayloads[K], ctx: HandlerContext) => {
      // begun (so it supersedes an older attempt at once) before it waits for its turn on the guest
      const op = this.ops.begin(payload.operationId, payload.attempt, job, ctx.signal);
      try {
        const result = await this.inTurn(HostAgent.guestOf(job, payload), () => run(payload, op));
        if (reportCompleted) await this.reporter.completed(job, payload.operationId, payload.attempt, result);
        return result;
      } catch (e) {
        const err = toAgentError(e);
        this.log(`${job} ${payload.operationId}#${payload.attempt} failed: ${err.code} ${err.message}`);
        await this.reporter.failed(job, payload.operationId, payload.attempt, err);
        throw new Error(`${err.code}: ${err.message}`);
      } finally {
        this.ops.end(op);
      }
    };
  }

  private registry(): HandlerRegistry {
    return HandlerRegistry.from({
      'migrate-send': this.wrap('migrate-send', (p, op) => this.sender.send(p, op)),
      'migrate-receive': this.wrap('migrate-receive', (p, op) => this.receiver.receive(p, op)),
      suspend: this.wrap('suspend', (p, op) => this.suspender.suspend(p, op)),
      resume: this.wrap('resume', (p, op) => this.suspender.resume(p, op)),
      inventory: this.wrap('inventory', async () => {
        await this.heartbeat();
        return { inventory: await this.inventory() };
      }),
      upgrade: this.wrap('upgrade', (p, op) => this.upgrade(p, op), false),
      cancel: this.wrap('cancel', async (p) => ({
        targetOperationId: p.targetOperationId,
        cancelled: this.ops.cancel(p.targetOperationId, p.targetAttempt, p.reason),
      })),
    });
  }

  private async upgrade(p: HostJobPayloads['upgrade'], op: Operation): Promise<HostJobResults['upgrade']> {
    if (this.driver.kind !== 'sim') throw new AgentFailure('TOOLSTACK_ERROR', 'upgrade is only automated for sim hosts; upgrade a real dom0 by hand', false);
    const guests = await this.driver.guests();
    if (guests.length) {
      throw new AgentFailure('GUESTS_PRESENT', `${guests.length} guest(s) remain on this host (${guests.map((g) => g.vmId).join(', ')}); a toolstack restart would lose them`, false);
    }
    const previous = this.driver.toolstack();
    const result = { previous, toolstack: p.toolstack };
    // Reported completed before the restart (the control plane learns the new toolstack from the re-registration):
    // from here the operation is over for the control plane, which then asks to cancel it while it still runs
    // here. Nothing is left to cancel.
    op.pastPointOfNoReturn = true;
    await this.reporter.completed('upgrade', p.operationId, p.attempt, result);
    this.state = 'upgrading';
    await this.heartbeat();
    await this.driver.upgrade(p.toolstack);
    this.bootId = randomUUID();
    this.state = 'ready';
    await this.registerUntilDone();
    this.log(`toolstack restarted: ${fmtTs(previous)} -> ${fmtTs(this.driver.toolstack())}`);
    return result;
  }

  /**
   * A previous agent process may have left guests mid-operation. Migrations are settled with the
   * control plane's decision on the attempt (`resolve`: abort unless committed): a target keeps a
   * committed copy, unpauses it and reports `completed`, and discards any other; a source destroys
   * a committed guest and resumes any other. A migration job the previous process was running
   * (`orphans`, still marked active in the queue) that left no guest behind is resolved too, so
   * the control plane retries it now instead of waiting for the stall bound.
   */
  private async recover(orphans: { name: HostJobName; data: unknown }[]): Promise<void> {
    const pending = await this.driver.pendingMigrations();
    for (const j of orphans) {
      if (j.name !== 'migrate-send' && j.name !== 'migrate-receive') continue;
      const p = j.data as HostJobPayloads['migrate-send' | 'migrate-receive'];
      if (pending.some((m) => m.migrationId === p.migrationId && m.attempt === p.attempt)) continue;
      try {
        const d = await resolveMigration(this.cp, this.hostId, p.migrationId, { attempt: p.attempt, reason: `agent on ${this.hostId} restarted during ${j.name}` }, this.closing.signal, this.log);
        this.log(`recovered ${j.name} ${p.migrationId}#${p.attempt} (no guest left here): ${d}`);
      } catch (e) {
        if (this.closing.signal.aborted) return;
        this.log(`recovery of ${j.name} ${p.migrationId}: ${(e as Error).message}`);
      }
    }
    for (const m of pending) {
      try {
        if (m.state === 'resuming') {
          await this.driver.destroy(m.vmId);
          continue;
        }
        if (m.state === 'suspending') {
          await this.driver.setState(m.vmId, 'running', null);
          await this.driver.unpause(m.vmId);
          continue;
        }
        this.log(`recovering ${m.vmId}: asking what became of migration ${m.migrationId}#${m.attempt}`);
        const d = await resolveMigration(this.cp, this.hostId, m.migrationId, { attempt: m.attempt, reason: `agent on ${this.hostId} restarted during the migration` }, this.closing.signal, this.log);
        if (m.state === 'migrating-in') {
          if (d === 'commit') {
            const memoryDigest = await this.driver.memoryDigest(m.vmId);
            await this.driver.setState(m.vmId, 'migrating-in', { migrationId: m.migrationId, attempt: m.attempt, committed: true });
            await this.driver.unpause(m.vmId);
            await this.driver.setState(m.vmId, 'running', null);
            await this.reporter.completed('migrate-receive', m.migrationId, m.attempt, { migrationId: m.migrationId, bytesReceived: 0, memoryDigest, outcome: 'running-on-target' });
          } else await this.driver.destroy(m.vmId);
        } else if (d === 'commit') await this.driver.destroy(m.vmId);
        else {
          await this.driver.unpause(m.vmId);
          await this.driver.setState(m.vmId, 'running', null);
        }
        this.log(`recovered ${m.vmId}: ${d}`);
      } catch (e) {
        if (this.closing.signal.aborted) return;
        this.log(`recovery of ${m.vmId}: ${(e as Error).message}`);
      }
    }
  }

  async close(): Promise<void> {
    this.closing.abort(new Error('agent closing'));
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    this.ops.abortAll('agent is shutting down');
    await this.worker?.close().catch(() => undefined);
    await this.reporter.close().catch(() => undefined);
    await this.data.close();
    await this.driver.close();
    this.redis?.disconnect();
  }
}

function fmtTs(t: Toolstack): string {
  return `Xen ${t.xenVersion} ${t.bitness}-bit ${t.streamFormat}`;
}
