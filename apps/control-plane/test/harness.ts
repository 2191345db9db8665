import { randomUUID } from 'node:crypto';
import IORedis from 'ioredis';
import type { Toolstack } from '@ferry/contracts';
import { startControlPlane, type RunningControlPlane } from '../src/app';
import { FakeAgent, type FakeAgentOptions } from './fake-agent';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const ADMIN = 'admin-token-123456';
export const OPERATOR = 'operator-token-123456';
export const VIEWER = 'viewer-token-123456';
export const SECRET = 'agent-secret-123456';

export const LEGACY32: Toolstack = { xenVersion: '4.4', bitness: 32, streamFormat: 'legacy' };
export const V2_64: Toolstack = { xenVersion: '4.17', bitness: 64, streamFormat: 'v2' };

/** One test world: unique Redis key + queue prefixes, its control planes and fake agents, and cleanup. */
export class World {
  readonly id = randomUUID().slice(0, 8);
  readonly keyPrefix = `ferry-t-${this.id}`;
  readonly queuePrefix = `ferry-tq-${this.id}`;
  readonly cps: RunningControlPlane[] = [];
  readonly agents: FakeAgent[] = [];
  readonly redis = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });

  env(extra: Record<string, string> = {}): Record<string, string> {
    return {
      PORT: '0',
      HOST: '127.0.0.1',
      REDIS_URL,
      FERRY_ADMIN_TOKEN: ADMIN,
      FERRY_API_TOKENS: `operator:${OPERATOR},viewer:${VIEWER}`,
      FERRY_AGENT_SECRET: SECRET,
      FERRY_KEY_PREFIX: this.keyPrefix,
      FERRY_QUEUE_PREFIX: this.queuePrefix,
      FERRY_SCHEDULER_INTERVAL_MS: '30',
      FERRY_HEARTBEAT_INTERVAL_MS: '200',
      FERRY_OFFLINE_AFTER_MS: '3000',
      FERRY_RETRY_BACKOFF_MS: '50',
      FERRY_LEASE_MS: '1000',
      ...extra,
    };
  }

  async cp(extra: Record<string, string> = {}): Promise<RunningControlPlane> {
    const cp = await startControlPlane(this.env(extra));
    this.cps.push(cp);
    return cp;
  }

  async agent(cpUrl: string, o: Omit<FakeAgentOptions, 'cpUrl' | 'secret' | 'redisUrl' | 'queuePrefix'>): Promise<FakeAgent> {
    const a = new FakeAgent({ cpUrl, secret: SECRET, redisUrl: REDIS_URL, queuePrefix: this.queuePrefix, ...o });
    this.agents.push(a);
    return a.start();
  }

  async close(): Promise<void> {
    for (const a of this.agents) await a.stop();
    for (const cp of this.cps) await cp.close().catch(() => undefined);
    for (const prefix of [this.keyPrefix, this.queuePrefix]) {
      let cursor = '0';
      do {
        const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await this.redis.del(...keys);
      } while (cursor !== '0');
    }
    await this.redis.quit();
  }
}

export async function api<T = unknown>(url: string, path: string, opts: { method?: string; token?: string | null; body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; body: T }> {
  const res = await fetch(url + path, {
    method: opts.method ?? (opts.body !== undefined ? 'POST' : 'GET'),
    headers: {
      ...(opts.token === null ? {} : { authorization: `Bearer ${opts.token ?? ADMIN}` }),
      ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...opts.headers,
    },
    body: opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* text */
  }
  return { status: res.status, body: body as T };
}

export async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export function guest(vmId: string, over: Partial<{ type: 'pv' | 'hvm'; guestWidth: 32 | 64; memoryMiB: number }> = {}) {
  return { vmId, name: vmId, type: over.type ?? ('pv' as const), guestWidth: over.guestWidth ?? (32 as const), memoryMiB: over.memoryMiB ?? 512, vcpus: 1, memory: `mem-of-${vmId}-${Math.random()}` };
}
