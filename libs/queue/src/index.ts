/**
 * BullMQ wiring for Ferry's typed host jobs.
 *
 *  - `HostJobProducer.dispatch(hostId, jobName, payload)`: typed producer onto `ferry.host.{hostId}`.
 *  - `HandlerRegistry`: exactly one handler per job name; `assertComplete()` throws naming the missing
 *    job(s); registering a name twice throws naming it.
 *  - `startHostWorker(...)`: consumes one host's queue and routes by job name.
 *  - Every queue lives under a BullMQ `prefix` so each test (or deployment) owns its keys.
 */
import { Queue, Worker, UnrecoverableError, type ConnectionOptions, type Job, type JobsOptions } from 'bullmq';
import {
  DEFAULT_QUEUE_PREFIX,
  HOST_ID_PATTERN,
  HOST_JOB_NAMES,
  hostQueueName,
  type HostJobName,
  type HostJobPayloads,
  type HostJobResults,
} from '@ferry/contracts';

export { UnrecoverableError };

export interface QueueOptions {
  connection: ConnectionOptions;
  /** BullMQ key prefix (default `ferry`); tests use a unique one each. */
  prefix?: string;
}

/** BullMQ custom job ids may not contain ':'. */
export function hostJobId(jobName: HostJobName, operationId: string, attempt: number): string {
  return `${jobName}.${operationId}.${attempt}`.replace(/:/g, '_');
}

export class HostJobProducer {
  private readonly queues = new Map<string, Queue>();
  readonly prefix: string;

  constructor(private readonly opts: QueueOptions) {
    this.prefix = opts.prefix ?? DEFAULT_QUEUE_PREFIX;
  }

  queue(hostId: string): Queue {
    if (!HOST_ID_PATTERN.test(hostId)) throw new Error(`invalid hostId '${hostId}'`);
    let q = this.queues.get(hostId);
    if (!q) {
      q = new Queue(hostQueueName(hostId), { connection: this.opts.connection, prefix: this.prefix });
      this.queues.set(hostId, q);
    }
    return q;
  }

  /**
   * Adds a job. The job id is derived from (jobName, operationId, attempt), so dispatching the same
   * attempt twice is a no-op (BullMQ dedupes by id). Host jobs are not retried by BullMQ: the
   * control plane retries by dispatching a new attempt.
   */
  async dispatch<K extends HostJobName>(hostId: string, jobName: K, payload: HostJobPayloads[K], opts: JobsOptions = {}): Promise<string> {
    const jobId = hostJobId(jobName, payload.operationId, payload.attempt);
    const job = await this.queue(hostId).add(jobName, payload, {
      jobId,
      attempts: 1,
      removeOnComplete: { age: 3600, count: 1000 },
      removeOnFail: { age: 24 * 3600, count: 1000 },
      // cancel jobs overtake everything else waiting
      priority: jobName === 'cancel' ? 1 : 10,
      ...opts,
    });
    return job.id ?? jobId;
  }

  /** Waiting + active + delayed + prioritized jobs of one host queue. */
  async depth(hostId: string): Promise<number> {
    const counts = await this.queue(hostId).getJobCounts('waiting', 'active', 'delayed', 'prioritized');
    return Object.values(counts).reduce((a, b) => a + b, 0);
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
  }
}

export interface HandlerContext {
  job: Job;
  hostId: string;
  /** Aborted when the worker closes. */
  signal: AbortSignal;
}

export type HostJobHandler<K extends HostJobName> = (payload: HostJobPayloads[K], ctx: HandlerContext) => Promise<HostJobResults[K]>;

type AnyHandler = (payload: never, ctx: HandlerContext) => Promise<unknown>;

export class HandlerRegistry {
  private readonly handlers = new Map<HostJobName, AnyHandler>();

  register<K extends HostJobName>(name: K, handler: HostJobHandler<K>): this {
    if (!(HOST_JOB_NAMES as readonly string[]).includes(name)) throw new Error(`unknown job name '${name}'`);
    if (this.handlers.has(name)) throw new Error(`duplicate handler for job '${name}'`);
    this.handlers.set(name, handler as AnyHandler);
    return this;
  }

  /** Registers a full, typed map (the compiler already insists on one handler per job name). */
  static from(map: { [K in HostJobName]: HostJobHandler<K> }): HandlerRegistry {
    const r = new HandlerRegistry();
    for (const name of HOST_JOB_NAMES) r.register(name, map[name] as HostJobHandler<typeof name>);
    return r;
  }

  /** Start-up check: every job name has exactly one handler. Throws naming the missing ones. */
  assertComplete(names: readonly HostJobName[] = HOST_JOB_NAMES): void {
    const missing = names.filter((n) => !this.handlers.has(n));
    if (missing.length) throw new Error(`no handler for job${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m}'`).join(', ')}`);
  }

  get(name: string): AnyHandler | undefined {
    return this.handlers.get(name as HostJobName);
  }

  names(): HostJobName[] {
    return [...this.handlers.keys()];
  }
}

export interface HostWorkerOptions extends QueueOptions {
  hostId: string;
  registry: HandlerRegistry;
  /** >= 2 so a `cancel` job runs while a migration job is in progress. Default 4. */
  concurrency?: number;
  /** Jobs whose lock is not renewed for this long are considered stalled by BullMQ (default 30 s). */
  lockDurationMs?: number;
}

/** Consumes `ferry.host.{hostId}`. Runs `registry.assertComplete()` first. */
export function startHostWorker(opts: HostWorkerOptions): Worker {
  opts.registry.assertComplete();
  const abort = new AbortController();
  const worker = new Worker(
    hostQueueName(opts.hostId),
    async (job: Job) => {
      const handler = opts.registry.get(job.name);
      if (!handler) throw new UnrecoverableError(`no handler for job '${job.name}'`);
      return handler(job.data as never, { job, hostId: opts.hostId, signal: abort.signal });
    },
    {
      connection: opts.connection,
      prefix: opts.prefix ?? DEFAULT_QUEUE_PREFIX,
      concurrency: Math.max(2, opts.concurrency ?? 4),
      lockDuration: opts.lockDurationMs ?? 30_000,
      maxStalledCount: 0,
    },
  );
  const close = worker.close.bind(worker);
  worker.close = async (force?: boolean) => {
    abort.abort();
    return close(force);
  };
  return worker;
}

/**
 * The jobs of `ferry.host.{hostId}` marked active. Read by an agent before it starts its worker:
 * those are the jobs a previous process of it was running when it died (BullMQ fails them once
 * their lock expires; with `attempts: 1` nothing runs them again).
 */
export async function activeHostJobs(opts: QueueOptions & { hostId: string }): Promise<{ name: HostJobName; data: unknown }[]> {
  const queue = new Queue(hostQueueName(opts.hostId), { connection: opts.connection, prefix: opts.prefix ?? DEFAULT_QUEUE_PREFIX });
  try {
    return (await queue.getActive()).map((j) => ({ name: j.name as HostJobName, data: j.data as unknown }));
  } finally {
    await queue.close();
  }
}

/**
 * Redis ACL rules for one agent: only its own host queue's keys and BullMQ's channels/commands.
 * Use as `ACL SETUSER <user> on ><password> resetkeys resetchannels ...rules`.
 */
export function agentAclRules(hostId: string, prefix = DEFAULT_QUEUE_PREFIX): string[] {
  const base = `${prefix}:${hostQueueName(hostId)}`;
  return [
    'resetkeys',
    `~${base}:*`,
    `~${base}`,
    'resetchannels',
    `&${base}:*`,
    '-@all',
    '+@read',
    '+@write',
    '+@keyspace',
    '+@list',
    '+@hash',
    '+@sortedset',
    '+@set',
    '+@string',
    '+@stream',
    '+@scripting',
    '+@transaction',
    '+@connection',
    '+@pubsub',
    '+info',
    '+client',
    '-flushall',
    '-flushdb',
    '-keys',
  ];
}

/** Creates/updates an agent's Redis ACL user. `redis` is an ioredis client with ACL rights. */
export async function provisionAgentAclUser(
  redis: { call(...args: string[]): Promise<unknown> },
  user: string,
  password: string,
  hostId: string,
  prefix = DEFAULT_QUEUE_PREFIX,
): Promise<void> {
  await redis.call('ACL', 'SETUSER', user, 'reset', 'on', `>${password}`, ...agentAclRules(hostId, prefix));
}
