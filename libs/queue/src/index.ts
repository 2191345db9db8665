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
import { createHash } from 'node:crypto';
import IORedis, { type RedisOptions } from 'ioredis';
import { parseRedisUrl, type RedisEndpoint } from '@ferry/config';
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
  /** Where the queues' and workers' Redis errors go (one line per state change); without it they are only counted. */
  redisState?: RedisStateLog;
}

/** The events of an ioredis client or a BullMQ Queue / Worker that RedisStateLog listens to. */
interface RedisEvents {
  on(event: 'error', listener: (e: Error) => void): unknown;
  on(event: 'ready', listener: () => void): unknown;
}

/**
 * One log line per change of Redis' reachability ("unavailable: <why>", "available again") for every
 * ioredis client and BullMQ queue or worker it watches. Without an 'error' listener ioredis prints
 * an "Unhandled error event" stack for every reconnection attempt, and BullMQ one per queue; each of
 * them must be watched (ioredis retries on its own, so nothing else is needed to recover).
 */
export class RedisStateLog {
  private up = true;
  /** Errors seen while unavailable, for the line that says it is back. */
  private failures = 0;

  constructor(
    private readonly name: string,
    private readonly log: (line: string) => void,
  ) {}

  watch<T extends RedisEvents>(emitter: T): T {
    emitter.on('error', (e: Error) => this.error(e));
    emitter.on('ready', () => this.ready());
    return emitter;
  }

  get available(): boolean {
    return this.up;
  }

  private error(e: Error): void {
    this.failures++;
    if (!this.up) return;
    this.up = false;
    this.log(`${this.name}: Redis unavailable (${String(e.message).split('\n')[0]}); retrying`);
  }

  private ready(): void {
    if (this.up) return;
    this.up = true;
    this.log(`${this.name}: Redis available again (after ${this.failures} failed attempt${this.failures === 1 ? '' : 's'})`);
    this.failures = 0;
  }
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
      this.opts.redisState?.watch(q);
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
      // An agent's ACL user may not run INFO (see agentAclRules); the producer's side checks the version.
      skipVersionCheck: true,
    },
  );
  opts.redisState?.watch(worker);
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
  // an agent's ACL user may not run INFO, so BullMQ's version check is skipped as in startHostWorker
  const queue = new Queue(hostQueueName(opts.hostId), { connection: opts.connection, prefix: opts.prefix ?? DEFAULT_QUEUE_PREFIX, skipVersionCheck: true });
  try {
    return (await queue.getActive()).map((j) => ({ name: j.name as HostJobName, data: j.data as unknown }));
  } finally {
    await queue.close();
  }
}

/**
 * Redis ACL rules for one agent: its own host queue's keys, and only the commands a BullMQ worker runs
 * on them (its Lua scripts run under the same rules). Use as `ACL SETUSER <user> reset on ><password> ...rules`.
 *
 * What an agent can do is bounded to its own queue: no command that reaches the whole server
 * (`@dangerous`, `@admin`: SWAPDB, FLUSHALL, CONFIG, MONITOR, CLIENT KILL/PAUSE/LIST, INFO, DEBUG...),
 * none that lists or counts the keyspace (SCAN, KEYS, RANDOMKEY, DBSIZE), no SCRIPT or FUNCTION
 * management (only EVAL/EVALSHA of BullMQ's scripts), no pub/sub, no MOVE to another database.
 * Of CLIENT it keeps SETNAME, which BullMQ's worker uses to name its blocking connection (a name a
 * queue's `getWorkers()` reads). INFO is refused whole, because Redis ACLs cannot allow INFO without
 * arguments but not `INFO keyspace`: agent connections therefore skip ioredis's ready check and
 * BullMQ's version check (`agentRedisOptions`, `skipVersionCheck` in `startHostWorker`).
 */
export function agentAclRules(hostId: string, prefix = DEFAULT_QUEUE_PREFIX): string[] {
  const base = `${prefix}:${hostQueueName(hostId)}`;
  return [
    'resetkeys',
    `~${base}:*`,
    `~${base}`,
    'resetchannels',
    '-@all',
    '+@read',
    '+@write',
    '+@list',
    '+@hash',
    '+@sortedset',
    '+@set',
    '+@string',
    '+@stream',
    '+@transaction',
    '+eval',
    '+evalsha',
    '+eval_ro',
    '+evalsha_ro',
    '-@dangerous',
    '-@admin',
    '-@pubsub',
    '-scan',
    '-randomkey',
    '-dbsize',
    '-move',
    '-script',
    '-function',
    '+ping',
    '+select',
    '+client|setname',
  ];
}

/**
 * ioredis options for an agent's own connection (its ACL user): no INFO-based ready check, no
 * CLIENT SETINFO (both refused by `agentAclRules`), and BullMQ's `maxRetriesPerRequest: null`.
 */
export const agentRedisOptions = { maxRetriesPerRequest: null, enableReadyCheck: false, disableClientInfo: true } as const;

/**
 * An ioredis client for REDIS_URL in either form (`redis://` or `redis+sentinel://`, see
 * @ferry/config parseRedisUrl). With sentinels it finds the primary through them and, after a
 * failover, reconnects to the new one (ioredis's sentinel support; BullMQ works over it unchanged).
 */
export function createRedisConnection(url: string, options: RedisOptions = {}): IORedis {
  const t = parseRedisUrl(url);
  if (t.kind === 'standalone') return new IORedis(t.url, options);
  return new IORedis({
    ...options,
    sentinels: t.sentinels,
    name: t.name,
    db: t.db,
    // Also listen for the sentinels' +switch-master, so a primary that is cut off (not closed) is left too.
    failoverDetector: true,
    ...(t.username ? { username: t.username } : {}),
    ...(t.password ? { password: t.password } : {}),
    ...(t.sentinelUsername ? { sentinelUsername: t.sentinelUsername } : {}),
    ...(t.sentinelPassword ? { sentinelPassword: t.sentinelPassword } : {}),
    ...(t.tls ? { tls: {}, enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
  });
}

/** The hash (under the queue prefix) that records every agent ACL user, so any data node can be given them again. */
export function agentAclRegistryKey(prefix = DEFAULT_QUEUE_PREFIX): string {
  return `${prefix}:agent-acl-users`;
}

type AclClient = { call(...args: string[]): Promise<unknown> };

async function setAclUser(redis: AclClient, user: string, passwordHash: string, hostId: string, prefix: string): Promise<void> {
  await redis.call('ACL', 'SETUSER', user, 'reset', 'on', `#${passwordHash}`, ...agentAclRules(hostId, prefix));
}

/**
 * The data nodes a sentinel set watches (its primary and replicas) other than the one `redis` is
 * connected to, or none for a single server. Redis does not replicate ACL users, so each node must
 * be given them: an agent that reconnects to a promoted replica then finds its user there.
 */
async function otherDataNodes(redis: IORedis): Promise<RedisEndpoint[]> {
  const o = redis.options;
  if (!o.sentinels?.length || !o.name) return [];
  const sentinel = new IORedis({
    ...o.sentinels[0]!,
    ...(o.sentinelUsername ? { username: o.sentinelUsername } : {}),
    ...(o.sentinelPassword ? { password: o.sentinelPassword } : {}),
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
  });
  try {
    await sentinel.connect();
    const replicas = (await sentinel.call('SENTINEL', 'REPLICAS', o.name)) as string[][];
    return replicas
      .map((flat) => Object.fromEntries(flat.flatMap((_, i) => (i % 2 ? [] : [[flat[i], flat[i + 1]]]))) as Record<string, string>)
      .filter((r) => !/s_down|o_down|disconnected/.test(r.flags ?? ''))
      .map((r) => ({ host: r.ip!, port: Number(r.port) }));
  } finally {
    sentinel.disconnect();
  }
}

/**
 * Creates/updates an agent's Redis ACL user on every data node, and records it (its password only as
 * the SHA-256 Redis keeps anyway) so `reapplyAgentAclUsers` can restore it on a node that lacks it.
 * `redis` is a client with ACL rights, made by createRedisConnection.
 */
export async function provisionAgentAclUser(redis: IORedis, user: string, password: string, hostId: string, prefix = DEFAULT_QUEUE_PREFIX): Promise<void> {
  const hash = createHash('sha256').update(password).digest('hex');
  await setAclUser(redis, user, hash, hostId, prefix);
  await redis.hset(agentAclRegistryKey(prefix), user, JSON.stringify({ hostId, hash }));
  await forEachOtherNode(redis, (node) => setAclUser(node, user, hash, hostId, prefix));
}

/**
 * Gives the node `redis` is connected to (and, with sentinels, its replicas) every recorded agent
 * user. Run on each `ready` of the control plane's connection: after a failover the new primary has
 * the records (they are replicated data) but not necessarily the users (ACLs are not replicated).
 */
export async function reapplyAgentAclUsers(redis: IORedis, prefix = DEFAULT_QUEUE_PREFIX): Promise<number> {
  const records = Object.entries(await redis.hgetall(agentAclRegistryKey(prefix))).map(([user, json]) => ({ user, ...(JSON.parse(json) as { hostId: string; hash: string }) }));
  const apply = async (node: AclClient): Promise<void> => {
    for (const r of records) await setAclUser(node, r.user, r.hash, r.hostId, prefix);
  };
  await apply(redis);
  await forEachOtherNode(redis, apply);
  return records.length;
}

async function forEachOtherNode(redis: IORedis, fn: (node: IORedis) => Promise<void>): Promise<void> {
  const o = redis.options;
  for (const ep of await otherDataNodes(redis)) {
    const node = new IORedis({
      ...ep,
      ...(o.username ? { username: o.username } : {}),
      ...(o.password ? { password: o.password } : {}),
      ...(o.tls ? { tls: o.tls } : {}),
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
    });
    try {
      await node.connect();
      await fn(node);
    } catch {
      // A node that cannot be reached now gets the users when it next serves as primary (reapplyAgentAclUsers).
    } finally {
      node.disconnect();
    }
  }
}
