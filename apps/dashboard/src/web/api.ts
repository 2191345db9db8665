/** REST calls to the control plane (same origin: the dashboard server proxies /v1/*). */
import type { ApiError, Page } from '@ferry/contracts';

const TOKEN_KEY = 'ferry.token';

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}
export function setToken(t: string | null): void {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body?: ApiError,
  ) {
    super(message);
  }
}

/** A random id for Idempotency-Key (crypto.randomUUID needs a secure context; fall back to getRandomValues). */
export function newKey(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

export async function api<T>(method: string, path: string, body?: unknown, token = getToken(), extra: Record<string, string> = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', ...extra };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const err = json as ApiError | undefined;
    const detail = err?.detail ?? (text.slice(0, 200) || res.statusText);
    const issues = err?.issues?.map((i) => `${i.field}: ${i.rule}`).join('; ');
    throw new HttpError(res.status, `${method} ${path}: ${res.status} ${Array.isArray(detail) ? detail.join('; ') : detail}${issues ? ` (${issues})` : ''}`, err);
  }
  return json as T;
}

/** Every item of a collection (Page<T>), following nextCursor. */
export async function listAll<T>(path: string, token = getToken()): Promise<T[]> {
  const out: T[] = [];
  const sep = path.includes('?') ? '&' : '?';
  let cursor: string | null = null;
  // bounded: 200 pages of 500
  for (let n = 0; n < 200; n++) {
    const page: Page<T> = await api<Page<T>>('GET', `${path}${sep}limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, undefined, token);
    out.push(...page.items);
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  return out;
}
