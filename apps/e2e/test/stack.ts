/**
 * Starting the whole stack as a user would (`npm start`) and talking to it over HTTP only.
 * Black box: nothing here imports the services.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

function tcpAnswers(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const t = setTimeout(() => (s.destroy(), resolve(false)), timeoutMs);
    s.on('connect', () => (clearTimeout(t), s.destroy(), resolve(true)));
    s.on('error', () => (clearTimeout(t), resolve(false)));
  });
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, cmd)));
}

/** null when `ferry up` will find a Redis (REDIS_URL, localhost:6379 or redis-server), else why not. Synchronous (decides describe.skipIf). */
export function redisUnavailable(): string | null {
  if (process.env.REDIS_URL) return null;
  if (onPath('redis-server')) return null;
  const probe = spawnSync(process.execPath, ['-e', "const s=require('net').connect(6379,'127.0.0.1');s.on('connect',()=>process.exit(0));s.on('error',()=>process.exit(1));setTimeout(()=>process.exit(1),1000)"], { timeout: 5000 });
  if (probe.status === 0) return null;
  return 'no Redis: REDIS_URL unset, nothing on localhost:6379, no redis-server on PATH';
}

export { tcpAnswers };

/** A port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface Stack {
  url: string;
  token: string;
  child: ChildProcess;
  /** pids of the services `ferry up` started, from its start-up report. */
  pids: Map<string, number>;
  output: () => string;
  stateDir: string;
  prefix: string;
  /** SIGINT to the whole process group (a Ctrl-C), then wait for it to exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartOptions {
  /** 'npm' runs `npm start`; 'node' runs `node apps/cli/bin/ferry.js up`. */
  via: 'npm' | 'node';
  env?: Record<string, string>;
  args?: string[];
  timeoutMs?: number;
  /** An existing state folder (default: a new temporary one). */
  stateDir?: string;
  /** Let `ferry up` choose and keep its Redis prefix (no FERRY_KEY_PREFIX); `prefix` is then read from the folder. */
  prefixFromState?: boolean;
}

export async function startStack(opts: StartOptions): Promise<Stack> {
  const stateDir = opts.stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-e2e-'));
  let prefix = `e2e${randomBytes(4).toString('hex')}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '0',
    FERRY_STATE_DIR: stateDir,
    FERRY_KEY_PREFIX: prefix,
    FERRY_QUEUE_PREFIX: prefix,
    NO_COLOR: '1',
    ...opts.env,
  };
  if (opts.prefixFromState) {
    delete env.FERRY_KEY_PREFIX;
    delete env.FERRY_QUEUE_PREFIX;
  }
  delete env.FERRY_ADMIN_TOKEN;
  if (opts.env?.FERRY_ADMIN_TOKEN) env.FERRY_ADMIN_TOKEN = opts.env.FERRY_ADMIN_TOKEN;
  const [cmd, args] =
    opts.via === 'npm' ? ['npm', ['start', ...(opts.args?.length ? ['--', ...opts.args] : [])]] : [process.execPath, [path.join(REPO_ROOT, 'apps/cli/bin/ferry.js'), 'up', ...(opts.args ?? [])]];
  // Its own process group, so stop() can deliver a Ctrl-C to npm, sh and ferry together.
  const child = spawn(cmd as string, args as string[], { cwd: REPO_ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  void exited.then((e) => (exit = e));

  const until = Date.now() + (opts.timeoutMs ?? 240_000);
  let m: RegExpExecArray | null = null;
  while (!(m = /^\s*dashboard\s+(http:\/\/\S+?)\/\?token=(\S+)\s*$/m.exec(out))) {
    if (exit) throw new Error(`ferry up exited (${JSON.stringify(exit)}) before printing the URL:\n${out.slice(-6000)}`);
    if (Date.now() > until) {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
      throw new Error(`ferry up printed no URL in time:\n${out.slice(-6000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  if (opts.prefixFromState) prefix = fs.readFileSync(path.join(stateDir, 'redis-prefix'), 'utf8').trim();
  const pids = new Map<string, number>();
  for (const pm of out.matchAll(/^ferry up:\s+(\S+)\s+pid (\d+)\s*$/gm)) pids.set(pm[1]!, Number(pm[2]));
  return {
    url: m[1]!.replace('localhost', '127.0.0.1'),
    token: decodeURIComponent(m[2]!),
    child,
    pids,
    output: () => out,
    stateDir,
    prefix,
    async stop() {
      if (!exit) {
        try {
          process.kill(-child.pid!, 'SIGINT');
        } catch {
          /* gone */
        }
      }
      const t = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
        for (const pid of pids.values()) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }, 45_000);
      const e = await exited;
      clearTimeout(t);
      // A shared Redis (REDIS_URL or localhost:6379) keeps the stack's keys: drop them. A Redis
      // that `ferry up` started itself keeps its data in the state dir, which the caller removes.
      // (ferry up prints REDIS_URL without its password: take ours.)
      const used = /^ferry up: Redis: (redis:\/\/\S+) \((?:REDIS_URL|found on localhost)\)/m.exec(out) ? process.env.REDIS_URL || 'redis://127.0.0.1:6379' : undefined;
      if (used) await dropRedisPrefix(used, prefix).catch(() => 0);
      if (used) await dropAgentUsers(used, prefix).catch(() => undefined);
      return e;
    },
  };
}

/** Sends RESP commands one after the other on one connection; resolves with the raw replies' text. */
export function redisCommands(url: string, cmds: string[][]): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) });
    let buf = '';
    const all = [...(u.password ? [u.username ? ['AUTH', decodeURIComponent(u.username), decodeURIComponent(u.password)] : ['AUTH', decodeURIComponent(u.password)]] : []), ...cmds, ['QUIT']];
    sock.on('connect', () => sock.write(all.map((a) => `*${a.length}\r\n${a.map((x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`).join('')}`).join('')));
    sock.on('data', (d) => (buf += d.toString('utf8')));
    sock.on('end', () => resolve(buf));
    sock.on('error', reject);
  });
}

/** Deletes every key under `prefix:` (the stack's Redis state) from a shared Redis. */
export async function dropRedisPrefix(url: string, prefix: string): Promise<number> {
  let cursor = '0';
  let n = 0;
  do {
    const reply = await redisCommands(url, [['SCAN', cursor, 'MATCH', `${prefix}:*`, 'COUNT', '1000']]);
    // *2\r\n$<n>\r\n<cursor>\r\n*<k>\r\n($<n>\r\n<key>\r\n)*
    const lines = reply.split('\r\n');
    const i = lines.findIndex((l) => l === '*2');
    cursor = lines[i + 2] ?? '0';
    const keys: string[] = [];
    for (let j = i + 5; j < lines.length; j += 2) if (lines[j - 1]?.startsWith('$')) keys.push(lines[j]!);
    const mine = keys.filter((k) => k.startsWith(`${prefix}:`));
    if (mine.length) await redisCommands(url, [['UNLINK', ...mine]]);
    n += mine.length;
  } while (cursor !== '0');
  return n;
}

/** The four sim hosts of `ferry up`. */
export const FLEET_HOSTS = ['xen-a', 'xen-b', 'xen-c', 'xen-d'];

/** Deletes the Redis ACL users the control plane made for the fleet's agents (named `{queue prefix}-agent-{host}`). */
export async function dropAgentUsers(url: string, prefix: string): Promise<void> {
  await redisCommands(url, [['ACL', 'DELUSER', ...FLEET_HOSTS.map((h) => `${prefix}-agent-${h}`)]]);
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** JSON over HTTP with the bearer token; throws with the body on a non-2xx answer. */
export async function call<T>(stack: { url: string; token: string }, method: string, p: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(`${stack.url}${p}`, {
    method,
    headers: { Authorization: `Bearer ${stack.token}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text.slice(0, 2000)}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

export async function waitUntil<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs: number, everyMs = 1000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${last instanceof Error ? last.message : String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Lists come as Page<T> ({ items, total, ... }); accept a bare array too. */
export async function list<T>(stack: { url: string; token: string }, p: string): Promise<T[]> {
  const r = await call<{ items: T[] } | T[]>(stack, 'GET', p);
  return Array.isArray(r) ? r : r.items;
}
