import { Inject, Injectable } from '@nestjs/common';
import type { CheckpointImageDto, RetentionPolicyDto } from '@ferry/contracts';
import { CP_CONFIG, type CpConfig } from '../config';
import { fail } from './errors';

/** What the suspend-store answers for `GET /v1/checkpoints/{id}/meta` (the fields read here). */
interface StoreMeta {
  id: string;
  vm: string;
  created: string;
  size: number;
  sha256: string;
  source: { format: 'v2' | 'legacy'; framing: string; byteOrder: string; guest: string; guestWidth?: number; width?: number; widthSource?: string; xenVersion?: string };
  stats?: { pages: number; vcpus: number };
}

/** Calls that answer JSON give up after this long: a slow store must not hold an API request for long. */
const TIMEOUT_MS = 5_000;
/** The retention policy changes only when the store restarts: it is asked at most this often. */
const POLICY_TTL_MS = 5_000;

/**
 * The control plane's client of the suspend-store's checkpoint API, with its own store credential
 * (FERRY_STORE_TOKEN, default the admin token). Store failures become 502/504 answers naming the store.
 */
@Injectable()
export class SuspendStoreClient {
  private readonly base: string;
  private policyCache: { at: number; value: RetentionPolicyDto | null } | null = null;

  constructor(@Inject(CP_CONFIG) private readonly cfg: CpConfig) {
    this.base = cfg.FERRY_STORE_URL.replace(/\/+$/, '');
  }

  private async call(method: string, path: string, init: { signal?: AbortSignal; headers?: Record<string, string> } = {}): Promise<Response> {
    try {
      return await fetch(this.base + path, {
        method,
        headers: { authorization: `Bearer ${this.cfg.storeToken}`, ...init.headers },
        signal: init.signal ?? AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (e) {
      const err = e as Error & { cause?: { code?: string } };
      if (err.name === 'TimeoutError') throw fail(504, `suspend-store at ${this.base} did not answer within ${TIMEOUT_MS} ms`, 'gateway-timeout');
      const code = err.cause?.code ?? err.message;
      const unreachable = /^(ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|UND_ERR_CONNECT_TIMEOUT)$/.test(code);
      throw fail(502, `suspend-store at ${this.base} ${unreachable ? 'is unreachable' : 'broke off its answer'}: ${code}`, 'bad-gateway');
    }
  }

  private async refused(res: Response, what: string): Promise<never> {
    const text = await res.text().catch(() => '');
    let message = text.slice(0, 300);
    try {
      message = (JSON.parse(text) as { detail?: string }).detail ?? message;
    } catch {
      /* not JSON */
    }
    if (res.status === 401 || res.status === 403) {
      throw fail(502, `suspend-store refused the control plane's token (${res.status}: ${message}); set FERRY_STORE_TOKEN to a store token with read and write scopes`, 'bad-gateway');
    }
    throw fail(502, `suspend-store answered ${res.status} to ${what}: ${message}`, 'bad-gateway');
  }

  /** The store's metadata of a checkpoint, or null when the store does not have it. */
  async image(id: string): Promise<CheckpointImageDto | null> {
    const res = await this.call('GET', `/v1/checkpoints/${encodeURIComponent(id)}/meta`);
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) return this.refused(res, `GET meta of ${id}`);
    const m = (await res.json()) as StoreMeta;
    return {
      bytes: m.size,
      sha256: m.sha256,
      sourceFormat: m.source.format,
      framing: m.source.framing,
      byteOrder: m.source.byteOrder,
      guest: m.source.guest,
      guestWidth: m.source.guestWidth ?? null,
      width: m.source.width ?? null,
      widthSource: m.source.widthSource ?? null,
      xenVersion: m.source.xenVersion ?? null,
      pages: m.stats?.pages ?? null,
      vcpus: m.stats?.vcpus ?? null,
    };
  }

  /** Deletes a checkpoint; 'absent' when the store no longer had it (retention got there first). */
  async delete(id: string): Promise<'deleted' | 'absent'> {
    const res = await this.call('DELETE', `/v1/checkpoints/${encodeURIComponent(id)}`);
    await res.body?.cancel();
    if (res.status === 404) return 'absent';
    if (!res.ok) return this.refused(res, `DELETE ${id}`);
    return 'deleted';
  }

  /** The policy last read, without asking the store (null when none was read lately). */
  cachedRetention(now = Date.now()): RetentionPolicyDto | null {
    return this.policyCache && now - this.policyCache.at < POLICY_TTL_MS ? this.policyCache.value : null;
  }

  /** The store's retention policy (cached briefly), or null when the store cannot be asked. */
  async retention(now = Date.now()): Promise<RetentionPolicyDto | null> {
    if (this.policyCache && now - this.policyCache.at < POLICY_TTL_MS) return this.policyCache.value;
    let value: RetentionPolicyDto | null = null;
    try {
      const res = await this.call('GET', '/v1/retention', { signal: AbortSignal.timeout(2_000) });
      if (res.ok) value = (await res.json()) as RetentionPolicyDto;
      else await res.body?.cancel();
    } catch {
      value = null;
    }
    this.policyCache = { at: now, value };
    return value;
  }

  /**
   * Opens the image for download: the store's response, not yet read. 404 and 416 and 422 are the
   * store's answers to the client, passed on with its message; anything else unexpected is a 502.
   */
  async open(id: string, q: { format: 'v2' | 'legacy'; width?: '32' | '64' }, range: string | undefined, signal: AbortSignal): Promise<Response> {
    const query = q.format === 'legacy' ? `?format=legacy&width=${q.width ?? '64'}` : '';
    const res = await this.call('GET', `/v1/checkpoints/${encodeURIComponent(id)}${query}`, { signal, headers: range ? { range } : {} });
    if (res.ok) return res;
    if (res.status === 404) {
      await res.body?.cancel();
      throw fail(404, `checkpoint '${id}' is not in the suspend-store (removed by its retention, or deleted there)`);
    }
    if (res.status === 416 || res.status === 422) {
      const text = await res.text().catch(() => '');
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { detail?: string }).detail ?? message;
      } catch {
        /* not JSON */
      }
      throw fail(res.status, message, res.status === 416 ? 'range-not-satisfiable' : undefined);
    }
    return this.refused(res, `GET ${id}`);
  }
}
