/**
 * Shared plumbing for the operator verbs (hosts, vms, migrate, suspend, resume, campaign):
 * common options (--url, --token, --json, -h), one-line errors with exit codes
 * (1 = API / network error, 2 = usage), tables, and following an entity live over SSE.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { FerryApiError, FerryClient, sseMessages, type ApiError, type EventEntity, type FerryEvent } from '@ferry/contracts';
import { savedAdminToken, savedApiUrl, stateDirFrom } from '../../up/state';

export const COMMON_USAGE = `common options:
  --url URL      control plane (default $FERRY_URL, else "url" of the config file, else the fleet
                 \`ferry up\` runs from the state folder, else http://127.0.0.1:8080)
  --token T      bearer token (default $FERRY_TOKEN, else "token" of the config file, else, for a
                 control plane on this machine, the admin token \`ferry up\` saved in its state folder)
  --json         machine-readable output
  -h, --help     this help

config file: $XDG_CONFIG_HOME/ferry/config.json (default ~/.config/ferry/config.json), e.g.
  {"url": "https://ferry.example:8080", "token": "..."}
state folder: $FERRY_STATE_DIR, default .state at the repository root (ferry up's admin-token, api-url)
`;

/** The config file the operator verbs read: $XDG_CONFIG_HOME/ferry/config.json, else ~/.config/ferry/config.json. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config'), 'ferry', 'config.json');
}

export interface Connection {
  url: string;
  token: string;
  /** Where the token came from, for error messages ('' = none found). */
  tokenSource: string;
}

function readConfig(file: string): { url?: string; token?: string } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  try {
    const c = JSON.parse(text) as { url?: unknown; token?: unknown };
    return { ...(typeof c.url === 'string' ? { url: c.url } : {}), ...(typeof c.token === 'string' ? { token: c.token } : {}) };
  } catch (e) {
    throw new UsageError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

function isLoopback(url: string): boolean {
  try {
    const h = new URL(url).hostname;
    return h === 'localhost' || h === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(h);
  } catch {
    return false;
  }
}

/**
 * The control plane and token the operator verbs use, each from the first place that has one:
 * the option, the environment (FERRY_URL, FERRY_TOKEN), the config file, then what `ferry up` saved
 * in its state folder. The saved admin token is only ever sent to a control plane on this machine.
 */
export function resolveConnection(opts: { url?: string; token?: string }, env: NodeJS.ProcessEnv = process.env): Connection {
  const cfgFile = configPath(env);
  const cfg = readConfig(cfgFile);
  const stateDir = stateDirFrom(env);
  const url = opts.url ?? env.FERRY_URL ?? cfg.url ?? savedApiUrl(stateDir) ?? 'http://127.0.0.1:8080';
  if (opts.token !== undefined) return { url, token: opts.token, tokenSource: '--token' };
  if (env.FERRY_TOKEN) return { url, token: env.FERRY_TOKEN, tokenSource: '$FERRY_TOKEN' };
  if (cfg.token) return { url, token: cfg.token, tokenSource: cfgFile };
  const saved = isLoopback(url) ? savedAdminToken(stateDir) : null;
  if (saved) return { url, token: saved, tokenSource: path.join(stateDir, 'admin-token') };
  return { url, token: '', tokenSource: '' };
}

/** What a 401 says about where a token comes from. */
export function tokenHelp(tokenSource: string, env: NodeJS.ProcessEnv = process.env): string {
  const used = tokenSource ? `the token from ${tokenSource} was refused` : 'no token was found';
  return `${used}; a token comes from --token, $FERRY_TOKEN, "token" in ${configPath(env)}, or the admin token \`ferry up\` prints and saves in ${path.join(stateDirFrom(env), 'admin-token')}`;
}

type Options = NonNullable<ParseArgsConfig['options']>;

export class UsageError extends Error {}

export interface Ctx {
  verb: string;
  url: string;
  token: string;
  tokenSource: string;
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
  let conn: Connection;
  try {
    conn = resolveConnection({ ...(typeof v.url === 'string' ? { url: v.url } : {}), ...(typeof v.token === 'string' ? { token: v.token } : {}) });
  } catch (e) {
    process.stderr.write(`ferry ${verb}: ${(e as Error).message}\n`);
    return 2;
  }
  const { url, token, tokenSource } = conn;
  return { verb, url, token, tokenSource, json: v.json === true, client: new FerryClient({ baseUrl: url, token }), values: v, positionals: a.positionals };
}

export function usageError(ctx: { verb: string }, msg: string): number {
  process.stderr.write(`ferry ${ctx.verb}: ${msg} (see ferry ${ctx.verb} --help)\n`);
  return 2;
}

/** One line on stderr; exit 1 for API and network errors, 2 for usage errors. Rethrows bugs. */
export function fail(ctx: { verb: string; url: string; tokenSource?: string }, e: unknown, hint?: (status: number, msg: string) => string | undefined): number {
  if (e instanceof UsageError) {
    process.stderr.write(`ferry ${ctx.verb}: ${e.message} (see ferry ${ctx.verb} --help)\n`);
    return 2;
  }
  if (e instanceof FerryApiError) {
    const body = e.body as ApiError | string;
    let msg = typeof body === 'string' ? body.trim() || 'no message' : body.detail;
    if (typeof body !== 'string' && body.issues?.length) msg += ` (${body.issues.map((i) => `${i.field}: ${i.rule}`).join('; ')})`;
    msg = msg.replace(/\s*\n\s*/g, ' ');
    const extra = hint?.(e.status, msg) ?? (e.status === 401 && ctx.tokenSource !== undefined ? `${msg}: ${tokenHelp(ctx.tokenSource)}` : undefined);
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
