/**
 * Agent -> control plane (HTTP/JSON, bearer agent token): register, heartbeat, reports, commit,
 * decision. Reports are batched; every call retries on network errors and 5xx.
 */
import {
  AGENT_API,
  type AgentError,
  type AgentReport,
  type CommitRequest,
  type CommitResponse,
  type DecisionResponse,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type HostJobName,
  type HostJobResults,
  type ProgressReport,
  type RegisterRequest,
  type RegisterResponse,
  type ReportsResponse,
  type ResolveRequest,
  type ResolveResponse,
} from '@ferry/contracts';

export class ControlPlaneError extends Error {
  override name = 'ControlPlaneError';
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
  }
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
export { sleep };

export interface ControlPlaneApi {
  register(body: RegisterRequest): Promise<RegisterResponse>;
  heartbeat(hostId: string, body: HeartbeatRequest): Promise<HeartbeatResponse>;
  reports(hostId: string, reports: AgentReport[]): Promise<ReportsResponse>;
  commit(hostId: string, migrationId: string, body: CommitRequest, signal?: AbortSignal): Promise<CommitResponse>;
  decision(hostId: string, migrationId: string, signal?: AbortSignal): Promise<DecisionResponse>;
  resolve(hostId: string, migrationId: string, body: ResolveRequest, signal?: AbortSignal): Promise<ResolveResponse>;
}

/**
 * The control plane's final decision on one attempt, aborting it unless it was committed; asked
 * until it answers (a copy of the guest must not be kept or dropped on a guess). A migration it
 * does not know, or one this host takes no part in, is an abort. Rejects only when `signal` aborts.
 */
export async function resolveMigration(
  cp: ControlPlaneApi,
  hostId: string,
  migrationId: string,
  body: ResolveRequest,
  signal: AbortSignal,
  log: (msg: string) => void = () => undefined,
): Promise<'commit' | 'abort'> {
  for (;;) {
    try {
      return (await cp.resolve(hostId, migrationId, body, signal)).decision;
    } catch (e) {
      if (e instanceof ControlPlaneError && (e.status === 404 || e.status === 403)) return 'abort';
      if (signal.aborted) throw e;
      log(`no decision for migration ${migrationId} yet: ${(e as Error).message}`);
    }
    await sleep(1000, signal);
  }
}

export class HttpControlPlane implements ControlPlaneApi {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
    private readonly retryForMs = 30_000,
  ) {}

  private async call<T>(method: 'GET' | 'POST', path: string, body?: unknown, opts: { retryForMs?: number; signal?: AbortSignal } = {}): Promise<T> {
    const deadline = Date.now() + (opts.retryForMs ?? this.retryForMs);
    let delay = 100;
    for (;;) {
      let status: number | null = null;
      let message: string;
      try {
        const res = await fetch(new URL(path, this.baseUrl), {
          method,
          headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.any([AbortSignal.timeout(10_000), ...(opts.signal ? [opts.signal] : [])]),
        });
        status = res.status;
        const text = await res.text();
        if (res.ok) return (text ? JSON.parse(text) : {}) as T;
        message = `${method} ${path}: ${res.status} ${text.slice(0, 200)}`;
        if (res.status < 500 && res.status !== 429) throw new ControlPlaneError(message, res.status);
      } catch (e) {
        if (e instanceof ControlPlaneError) throw e;
        if (opts.signal?.aborted) throw e;
        message = `${method} ${path}: ${(e as Error).message}`;
      }
      if (Date.now() + delay > deadline) throw new ControlPlaneError(message, status);
      await sleep(delay, opts.signal);
      delay = Math.min(delay * 2, 2000);
    }
  }

  register(body: RegisterRequest): Promise<RegisterResponse> {
    return this.call('POST', AGENT_API.register, body);
  }
  heartbeat(hostId: string, body: HeartbeatRequest): Promise<HeartbeatResponse> {
    return this.call('POST', AGENT_API.heartbeat(hostId), body, { retryForMs: 1000 });
  }
  reports(hostId: string, reports: AgentReport[]): Promise<ReportsResponse> {
    return this.call('POST', AGENT_API.reports(hostId), { reports });
  }
  commit(hostId: string, migrationId: string, body: CommitRequest, signal?: AbortSignal): Promise<CommitResponse> {
    // idempotent on the control plane side: keep asking until it answers (a lost "yes" must not become a discard)
    return this.call('POST', AGENT_API.commit(hostId, migrationId), body, { retryForMs: 5 * 60_000, ...(signal ? { signal } : {}) });
  }
  decision(hostId: string, migrationId: string, signal?: AbortSignal): Promise<DecisionResponse> {
    return this.call('GET', AGENT_API.decision(hostId, migrationId), undefined, { retryForMs: 10_000, ...(signal ? { signal } : {}) });
  }
  resolve(hostId: string, migrationId: string, body: ResolveRequest, signal?: AbortSignal): Promise<ResolveResponse> {
    return this.call('POST', AGENT_API.resolve(hostId, migrationId), body, { retryForMs: 30_000, ...(signal ? { signal } : {}) });
  }
}

/** Figures a progress report carries (the rest is filled in). */
export type Progress = Omit<ProgressReport, 'type' | 'operationId' | 'attempt' | 'job' | 'seq' | 'at'>;

/**
 * Sends one host's reports: progress at most once per `intervalMs` per operation (latest wins,
 * always at least one a second while it moves), completed/failed at once. Ordered by seq.
 */
export class Reporter {
  private seq = Date.now() * 1000;
  private readonly latest = new Map<string, ProgressReport>();
  private queue: AgentReport[] = [];
  private timer: NodeJS.Timeout | null = null;
  private sending: Promise<void> = Promise.resolve();
  /** Called with operations the control plane wants cancelled. */
  onCancel: (ops: string[]) => void = () => undefined;

  constructor(
    private readonly api: ControlPlaneApi,
    private readonly hostId: string,
    private readonly intervalMs = 500,
    private readonly log: (msg: string) => void = () => undefined,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  progress(job: HostJobName, operationId: string, attempt: number, p: Progress): void {
    const prev = this.latest.get(`${job}:${operationId}`);
    if (prev && (prev.phase !== p.phase || prev.round !== p.round)) this.queue.push(prev); // every phase and round is seen
    this.latest.set(`${job}:${operationId}`, { type: 'progress', operationId, attempt, job, seq: ++this.seq, at: new Date().toISOString(), ...p });
  }

  async completed<K extends HostJobName>(job: K, operationId: string, attempt: number, result: HostJobResults[K]): Promise<void> {
    this.takeProgress(job, operationId);
    this.queue.push({ type: 'completed', operationId, attempt, job, seq: ++this.seq, at: new Date().toISOString(), result } as AgentReport);
    await this.flush();
  }

  async failed(job: HostJobName, operationId: string, attempt: number, error: AgentError): Promise<void> {
    this.takeProgress(job, operationId);
    this.queue.push({ type: 'failed', operationId, attempt, job, seq: ++this.seq, at: new Date().toISOString(), error });
    await this.flush();
  }

  private takeProgress(job: HostJobName, operationId: string): void {
    const p = this.latest.get(`${job}:${operationId}`);
    if (p) this.queue.push(p);
    this.latest.delete(`${job}:${operationId}`);
  }

  flush(): Promise<void> {
    const run = async (): Promise<void> => {
      const batch = [...this.queue, ...this.latest.values()].sort((a, b) => a.seq - b.seq);
      this.queue = [];
      this.latest.clear();
      if (!batch.length) return;
      try {
        const res = await this.api.reports(this.hostId, batch);
        if (res.cancelOperations?.length) this.onCancel(res.cancelOperations);
      } catch (e) {
        this.log(`reports not delivered (${(e as Error).message}); ${batch.filter((r) => r.type !== 'progress').length} final report(s) kept`);
        // progress is stale by now; keep the final ones for the next try
        this.queue.unshift(...batch.filter((r) => r.type !== 'progress'));
      }
    };
    this.sending = this.sending.then(run, run);
    return this.sending;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }
}
