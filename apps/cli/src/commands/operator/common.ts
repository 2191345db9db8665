/**
 * Shared plumbing for the operator verbs (hosts, vms, migrate, suspend, resume, campaign):
 * common options (--url, --token, --json, -h), one-line errors with exit codes
 * (1 = API / network error, 2 = usage), tables, and following an entity live over SSE.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { FerryApiError, FerryClient, sseMessages, type ApiError, type EventEntity, type FerryEvent } from '@ferry/contracts';

export const COMMON_USAGE = `common options:
  --url URL      control plane (default $FERRY_URL, else http://127.0.0.1:8080)
  --token T      bearer token (default $FERRY_TOKEN)
  --json         machine-readable output
  -h, --help     this help
`;

type Options = NonNullable<ParseArgsConfig['options']>;

export class UsageError extends Error {}

export interface Ctx {
  verb: string;
  url: string;
  token: string;
  json: boolean;
  client: FerryClient;
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** Parses argv with the common options added. Returns the exit code instead when done (help or usage error). */
export function parse(verb: string, argv: string[], options: Options, usage: string): Ctx | number {
  let a;
  try {
    a = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        ...options,
        url: { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    process.stderr.write(`ferry ${verb}: ${(e as Error).message} (see ferry ${verb} --help)\n`);
    return 2;
  }
  const v = a.values as Record<string, string | boolean | undefined>;
  if (v.help) {
    process.stdout.write(usage + COMMON_USAGE);
    return 0;
  }
  const url = (v.url as string | undefined) ?? process.env.FERRY_URL ?? 'http://127.0.0.1:8080';
  const token = (v.token as string | undefined) ?? process.env.FERRY_TOKEN ?? '';
  return { verb, url, token, json: v.json === true, client: new FerryClient({ baseUrl: url, token }), values: v, positionals: a.positionals };
}

export function usageError(ctx: { verb: string }, msg: string): number {
  process.stderr.write(`ferry ${ctx.verb}: ${msg} (see ferry ${ctx.verb} --help)\n`);
  return 2;
}

/** One line on stderr; exit 1 for API and network errors, 2 for usage errors. Rethrows bugs. */
export function fail(ctx: { verb: string; url: string }, e: unknown, hint?: (status: number, msg: string) => string | undefined): number {
  if (e instanceof UsageError) {
    process.stderr.write(`ferry ${ctx.verb}: ${e.message} (see ferry ${ctx.verb} --help)\n`);
    return 2;
  }
  if (e instanceof FerryApiError) {
    const body = e.body as ApiError | string;
    let msg = typeof body === 'string' ? body.trim() || 'no message' : body.message;
    if (typeof body !== 'string' && body.issues?.length) msg += ` (${body.issues.map((i) => `${i.field}: ${i.rule}`).join('; ')})`;
    msg = msg.replace(/\s*\n\s*/g, ' ');
    const extra = hint?.(e.status, msg);
    process.stderr.write(`ferry ${ctx.verb}: ${extra ?? msg} (HTTP ${e.status})\n`);
    return 1;
  }
  if (e instanceof TypeError && /fetch failed/.test(e.message)) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    process.stderr.write(`ferry ${ctx.verb}: cannot reach the control plane at ${ctx.url}: ${cause?.code ?? cause?.message ?? e.message}\n`);
    return 1;
  }
  throw e;
}

export function printJson(x: unknown): void {
  process.stdout.write(JSON.stringify(x, null, 2) + '\n');
}

/** A plain text table: header row, then rows, columns padded to fit. */
export function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  // null / undefined print as "-"; '' stays blank (continuation rows)
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

/** Key: value lines, keys aligned. */
export function kv(pairs: [string, string | number | boolean | null | undefined][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(w)} ${v === null || v === undefined || v === '' ? '-' : String(v)}`).join('\n') + '\n';
}

export const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(bytes >= 10 * 1048576 || bytes === 0 ? 0 : 1)} MiB`;
/** A duration for people: "850 ms", "42 s", "3m 05s", "1h 02m"; "?" when unknown. */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '?';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
export const secs = (ms: number | null | undefined): string => (ms === null || ms === undefined ? '?' : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);

/**
 * Reads /v1/events for one entity. `onOpen` runs once the server has subscribed us (its
 * `hello` message), so a GET made there cannot miss a change that follows it; whatever `onOpen`
 * throws (the API's 404 for an unknown id) ends the stream at once, it is not a dropped connection.
 * Reconnects with Last-Event-ID when the stream drops. Ends when `signal` aborts. Each connection
 * has its own AbortController linked to `signal` only while it lasts, so reconnecting never adds
 * listeners to `signal`.
 */
export async function* events(ctx: Ctx, entity: EventEntity, id: string, onOpen: () => Promise<void>, signal: AbortSignal): AsyncGenerator<FerryEvent> {
  let lastId: string | undefined;
  let opened = false;
  let failures = 0;
  while (!signal.aborted) {
    const conn = new AbortController();
    const link = (): void => conn.abort();
    signal.addEventListener('abort', link, { once: true });
    let openFailed: { error: unknown } | undefined;
    try {
      let res: Response;
      try {
        res = await fetch(`${ctx.url.replace(/\/+$/, '')}/v1/events?entity=${entity}&id=${encodeURIComponent(id)}`, {
          headers: { authorization: `Bearer ${ctx.token}`, accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) },
          signal: conn.signal,
        });
      } catch (e) {
        if (signal.aborted) return;
        if (++failures > 5) throw e;
        await sleep(500 * failures, signal);
        continue;
      }
      if (!res.ok || !res.body) throw new FerryApiError(res.status, await res.text().then((t) => { try { return JSON.parse(t) as ApiError; } catch { return t; } }));
      try {
        for await (const msg of sseMessages(res.body)) {
          if (msg.event === 'hello') {
            // (re)subscribed: read the current state unless Last-Event-ID replays what we missed
            if (!opened || !lastId) {
              try {
                await onOpen();
              } catch (e) {
                openFailed = { error: e };
                break;
              }
              opened = true;
            }
            failures = 0;
            continue;
          }
          if (msg.id && msg.id !== '0-0') lastId = msg.id;
          yield JSON.parse(msg.data) as FerryEvent;
        }
      } catch (e) {
        if (signal.aborted) return;
        if (++failures > 5) throw e;
      }
    } finally {
      signal.removeEventListener('abort', link);
      conn.abort();
    }
    if (openFailed) throw openFailed.error;
    if (!signal.aborted) await sleep(200, signal);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts; leaves no listener on `signal` either way. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((res) => {
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      res();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Follows one entity until `isDone` (or `settle` aborts): subscribes to its events, GETs it once subscribed, then
 * reacts to each event (no polling). Returns the last state, or null when `signal` aborted first.
 */
export async function follow<T>(ctx: Ctx, entity: EventEntity, id: string, get: () => Promise<T>, isDone: (x: T) => boolean, onUpdate: (x: T) => void, signal: AbortSignal, settle?: AbortSignal): Promise<T | null> {
  const inner = new AbortController();
  const stop = (): void => inner.abort();
  signal.addEventListener('abort', stop, { once: true });
  // `settle` ends the following early but still returns the last state seen
  settle?.addEventListener('abort', stop, { once: true });
  let last: T | null = null;
  try {
    const onOpen = async (): Promise<void> => {
      const x = await get();
      last = x;
      onUpdate(x);
      if (isDone(x)) inner.abort();
    };
    for await (const e of events(ctx, entity, id, onOpen, inner.signal)) {
      const x = e.data as T;
      last = x;
      onUpdate(x);
      if (isDone(x)) break;
    }
  } finally {
    signal.removeEventListener('abort', stop);
    settle?.removeEventListener('abort', stop);
    inner.abort();
  }
  if (signal.aborted) return null;
  return last;
}

/** An AbortSignal fired by the first Ctrl-C (the handler is removed by `dispose`). */
export function interrupt(): { signal: AbortSignal; dispose: () => void } {
  const c = new AbortController();
  const on = (): void => c.abort();
  process.once('SIGINT', on);
  return { signal: c.signal, dispose: () => process.off('SIGINT', on) };
}
