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
    const detail = err?.message ?? (text.slice(0, 200) || res.statusText);
    const issues = err?.issues?.map((i) => `${i.field}: ${i.rule}`).join('; ');
    throw new HttpError(res.status, `${method} ${path}: ${res.status} ${Array.isArray(detail) ? detail.join('; ') : detail}${issues ? ` (${issues})` : ''}`, err);
  }
  return json as T;
}

/** Lists are Page<T>; accept a bare array too. Fetches every page. */
export async function listAll<T>(path: string, token = getToken()): Promise<T[]> {
  const out: T[] = [];
  const limit = 500;
  for (let offset = 0; offset < 100_000; offset += limit) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api<Page<T> | T[]>('GET', `${path}${sep}limit=${limit}&offset=${offset}`, undefined, token);
    if (Array.isArray(page)) return page;
    out.push(...page.items);
    if (page.items.length < limit || out.length >= page.total) break;
  }
  return out;
}
