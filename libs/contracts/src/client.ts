/**
 * A small typed HTTP client for the control plane's REST API (fetch-based, no dependencies,
 * runs in Node >= 20 and browsers). Used by the `ferry` CLI and the dashboard.
 *
 *   const c = new FerryClient({ baseUrl: 'http://127.0.0.1:8080', token });
 *   const m = await c.migrations.create({ vm: 'vm1', mode: 'live' });
 *   for await (const e of c.events({ entity: 'migration', id: m.id })) ...
 */
import { sseMessages } from './sse';
import type {
  ApiError,
  CampaignDto,
  CampaignPlanDto,
  CreateCampaignRequest,
  CreateMigrationRequest,
  EventEntity,
  FerryEvent,
  HealthDto,
  HostDto,
  MigrationDto,
  MigrationListQuery,
  HostState,
  OperationDto,
  VmDto,
} from './api';
import type { Page } from './page';
import type { CheckpointDownloadLinkDto, CheckpointDto, CheckpointImageQuery, CheckpointListQuery, CheckpointPage } from './checkpoints';

export class FerryApiError extends Error {
  override name = 'FerryApiError';
  constructor(
    readonly status: number,
    readonly body: ApiError | string,
  ) {
    super(typeof body === 'string' ? `HTTP ${status}: ${body}` : `HTTP ${status}: ${body.detail}`);
  }
  /** The problem's `type` URI (libs/contracts/src/problem.ts), when the answer was a problem. */
  get type(): string | undefined {
    return typeof this.body === 'string' ? undefined : this.body.type;
  }
}

export interface FerryClientOptions {
  baseUrl: string;
  token: string;
  fetch?: typeof fetch;
}

type Query = Record<string, string | number | boolean | undefined>;

function qs(q: Query = {}): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

function newKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID ? c.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

const enc = encodeURIComponent;
const idem = (key: string | undefined): Record<string, string> => (key ? { 'idempotency-key': key } : {});

export class FerryClient {
  private readonly base: string;
  private readonly f: typeof fetch;

  constructor(private readonly opts: FerryClientOptions) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    this.f = opts.fetch ?? ((...a: Parameters<typeof fetch>) => fetch(...a));
  }

  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const res = await this.f(this.base + path, {
      method,
      headers: { authorization: `Bearer ${this.opts.token}`, accept: 'application/json, application/problem+json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    if (!res.ok) throw new FerryApiError(res.status, (parsed as ApiError | string) ?? res.statusText);
    return parsed as T;
  }

  readonly hosts = {
    list: (q: { state?: HostState; limit?: number; cursor?: string } = {}) => this.request<Page<HostDto>>('GET', `/v1/hosts${qs(q)}`),
    /** Every host, following nextCursor. */
    all: () => this.collect((cursor) => this.hosts.list({ limit: 500, cursor })),
    get: (id: string) => this.request<HostDto>('GET', `/v1/hosts/${enc(id)}`),
    drain: (id: string, evacuate = true, idempotencyKey?: string) =>
      this.request<HostDto & { migrations: string[] }>('POST', `/v1/hosts/${enc(id)}/drain`, { evacuate }, idem(idempotencyKey)),
    undrain: (id: string) => this.request<HostDto>('DELETE', `/v1/hosts/${enc(id)}/drain`),
    maintenance: (id: string, enabled: boolean) => this.request<HostDto>('POST', `/v1/hosts/${enc(id)}/maintenance`, { enabled }),
  };

  readonly vms = {
    list: (q: { host?: string; state?: string; limit?: number; cursor?: string } = {}) => this.request<Page<VmDto>>('GET', `/v1/vms${qs(q)}`),
    get: (id: string) => this.request<VmDto>('GET', `/v1/vms/${enc(id)}`),
    suspend: (id: string, idempotencyKey?: string) => this.request<OperationDto>('POST', `/v1/vms/${enc(id)}/suspend`, {}, idem(idempotencyKey)),
    /** From the latest checkpoint unless `checkpointId` names another of this VM's. */
    resume: (id: string, host?: string, checkpointId?: string, idempotencyKey?: string) =>
      this.request<OperationDto>('POST', `/v1/vms/${enc(id)}/resume`, { ...(host ? { host } : {}), ...(checkpointId ? { checkpointId } : {}) }, idem(idempotencyKey)),
  };

  readonly operations = {
    list: (q: { limit?: number; cursor?: string } = {}) => this.request<Page<OperationDto>>('GET', `/v1/operations${qs(q)}`),
    get: (id: string) => this.request<OperationDto>('GET', `/v1/operations/${enc(id)}`),
  };

  readonly migrations = {
    /** 202; pass the same idempotencyKey to retry safely (one is generated otherwise). */
    create: (req: CreateMigrationRequest, idempotencyKey: string = newKey()) => this.request<MigrationDto>('POST', '/v1/migrations', req, { 'idempotency-key': idempotencyKey }),
    list: (q: MigrationListQuery = {}) => this.request<Page<MigrationDto>>('GET', `/v1/migrations${qs(q as Query)}`),
    get: (id: string) => this.request<MigrationDto>('GET', `/v1/migrations/${enc(id)}`),
    cancel: (id: string) => this.request<MigrationDto>('POST', `/v1/migrations/${enc(id)}/cancel`),
  };

  readonly campaigns = {
    plan: (req: CreateCampaignRequest) => this.request<CampaignPlanDto>('POST', '/v1/campaigns/plan', req),
    /** 201; pass the same idempotencyKey to retry safely (one is generated otherwise). */
    create: (req: CreateCampaignRequest, idempotencyKey: string = newKey()) => this.request<CampaignDto>('POST', '/v1/campaigns', req, idem(idempotencyKey)),
    list: (q: { limit?: number; cursor?: string } = {}) => this.request<Page<CampaignDto>>('GET', `/v1/campaigns${qs(q)}`),
    get: (id: string) => this.request<CampaignDto>('GET', `/v1/campaigns/${enc(id)}`),
    pause: (id: string) => this.request<CampaignDto>('POST', `/v1/campaigns/${enc(id)}/pause`),
    resume: (id: string) => this.request<CampaignDto>('POST', `/v1/campaigns/${enc(id)}/resume`),
    abort: (id: string) => this.request<CampaignDto>('POST', `/v1/campaigns/${enc(id)}/abort`),
  };

  readonly checkpoints = {
    /** Newest first; `vm` filters to one VM's checkpoints. */
    list: (q: CheckpointListQuery = {}) => this.request<CheckpointPage>('GET', `/v1/checkpoints${qs(q as Query)}`),
    get: (id: string) => this.request<CheckpointDto>('GET', `/v1/checkpoints/${enc(id)}`),
    /** 204; 409 while a resume reads it, or when it is the only image of a suspended VM. */
    delete: (id: string) => this.request<void>('DELETE', `/v1/checkpoints/${enc(id)}`),
    /** A URL that downloads the image without a bearer header, valid for a minute (for browsers' own downloads). */
    downloadLink: (id: string, q: CheckpointImageQuery = {}) => this.request<CheckpointDownloadLinkDto>('POST', `/v1/checkpoints/${enc(id)}/download-link${qs(q as Query)}`),
    /**
     * The image bytes, streamed (the response body is not read here). Headers carry
     * content-length and x-ferry-sha256 (of the v2 image). A non-2xx answer throws FerryApiError.
     */
    download: async (id: string, q: CheckpointImageQuery = {}, opts: { signal?: AbortSignal; range?: string } = {}): Promise<Response> => {
      const res = await this.f(`${this.base}/v1/checkpoints/${enc(id)}/image${qs(q as Query)}`, {
        headers: { authorization: `Bearer ${this.opts.token}`, ...(opts.range ? { range: opts.range } : {}) },
        signal: opts.signal,
      });
      if (!res.ok) {
        const text = await res.text();
        let body: ApiError | string = text || res.statusText;
        try {
          body = JSON.parse(text) as ApiError;
        } catch {
          /* not JSON */
        }
        throw new FerryApiError(res.status, body);
      }
      return res;
    },
  };

  health = () => this.request<HealthDto>('GET', '/readyz');

  /** Every item of a collection, page after page (following nextCursor). */
  async collect<T>(page: (cursor: string | undefined) => Promise<Page<T>>): Promise<T[]> {
    const out: T[] = [];
    let cursor: string | undefined;
    do {
      const p = await page(cursor);
      out.push(...p.items);
      cursor = p.nextCursor ?? undefined;
    } while (cursor);
    return out;
  }

  /**
   * Server-sent events (GET /v1/events) as an async iterable. Filter by entity and id;
   * `lastEventId` replays what was missed. Stops when `signal` aborts.
   */
  async *events(opts: { entity?: EventEntity; id?: string; lastEventId?: string; signal?: AbortSignal } = {}): AsyncGenerator<FerryEvent> {
    const res = await this.f(`${this.base}/v1/events${qs({ entity: opts.entity, id: opts.id })}`, {
      headers: { authorization: `Bearer ${this.opts.token}`, accept: 'text/event-stream', ...(opts.lastEventId ? { 'last-event-id': opts.lastEventId } : {}) },
      signal: opts.signal,
    });
    if (!res.ok || !res.body) throw new FerryApiError(res.status, await res.text());
    for await (const msg of sseMessages(res.body)) {
      if (msg.event === 'hello') continue;
      yield JSON.parse(msg.data) as FerryEvent;
    }
  }

  /** Follows one migration until it ends (completed / failed / cancelled), calling onUpdate on each change. */
  async watchMigration(id: string, onUpdate: (m: MigrationDto) => void, signal?: AbortSignal): Promise<MigrationDto> {
    let m = await this.migrations.get(id);
    onUpdate(m);
    if (['completed', 'failed', 'cancelled'].includes(m.phase)) return m;
    const ctrl = new AbortController();
    const link = (): void => ctrl.abort();
    signal?.addEventListener('abort', link, { once: true });
    // an event between the GET and the subscription could be missed: re-check every 2 s
    const poll = setInterval(() => {
      this.migrations.get(id).then(
        (x) => {
          if (['completed', 'failed', 'cancelled'].includes(x.phase)) ctrl.abort();
        },
        () => undefined,
      );
    }, 2000);
    try {
      for await (const e of this.events({ entity: 'migration', id, signal: ctrl.signal })) {
        m = e.data as MigrationDto;
        onUpdate(m);
        if (['completed', 'failed', 'cancelled'].includes(m.phase)) break;
      }
    } catch (e) {
      if (!ctrl.signal.aborted) throw e;
    } finally {
      // the caller's signal may outlive many watches: leave no listener on it
      signal?.removeEventListener('abort', link);
      clearInterval(poll);
      ctrl.abort();
    }
    m = await this.migrations.get(id);
    onUpdate(m);
    return m;
  }
}
