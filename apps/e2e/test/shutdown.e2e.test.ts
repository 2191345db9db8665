/**
 * Nothing outlives the process an operator (or a supervisor) stops. Each case starts one of
 *   - `npm start` (npm -> `ferry up` -> services), signalled at npm's pid only, as systemd's
 *     `KillMode=process`, a container runtime or CI would;
 *   - `ferry up` itself;
 *   - `ferry serve suspend-store`, which re-executes node with GC flags (FERRY_NODE_GC=single);
 * sends it SIGINT, SIGTERM, SIGHUP or SIGKILL, and then checks that no process carrying the case's
 * marker (its own state folder, in every service's environment) is left, and that every port those
 * processes listened on can be bound again.
 *
 * Linux only (reads /proc). The fleets run without the dashboard, so each case takes seconds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, dropAgentUsers, dropRedisPrefix, redisCommands, redisUnavailable } from './stack';

const skip = process.platform !== 'linux' ? 'reads /proc (Linux only)' : redisUnavailable();
if (skip && process.env.FERRY_REQUIRE_SERVICES === '1' && process.platform === 'linux') throw new Error(`[e2e] required (FERRY_REQUIRE_SERVICES=1): ${skip}`);
if (skip) console.log(`[shutdown] skipped: ${skip}`);

const FERRY = path.join(REPO_ROOT, 'apps/cli/bin/ferry.js');

/** Processes whose environment mentions `marker` (the case's temporary folder). */
function processesWith(marker: string): { pid: number; cmd: string }[] {
  const found: { pid: number; cmd: string }[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (!fs.readFileSync(`/proc/${d}/environ`, 'latin1').includes(marker)) continue;
      found.push({ pid: Number(d), cmd: fs.readFileSync(`/proc/${d}/cmdline`, 'latin1').split('\0').join(' ').trim() });
    } catch {
      /* gone, or not ours */
    }
  }
  return found;
}

/** TCP ports the given processes listen on (their socket inodes looked up in /proc/net/tcp{,6}). */
function listeningPorts(pids: number[]): number[] {
  const inodes = new Set<string>();
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        /* closed meanwhile */
      }
    }
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode(9); st 0A = LISTEN
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!)) ports.add(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The process exists and is not a zombie. */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return false;
  }
}

type Target = 'npm start' | 'ferry up' | 'ferry serve';

interface Started {
  child: ChildProcess;
  output: () => string;
}

function start(target: Target, dir: string, extraArgs: string[]): Started {
  const env: NodeJS.ProcessEnv = { ...process.env, FERRY_STATE_DIR: dir, PORT: '0', NO_COLOR: '1' };
  for (const k of ['FERRY_ADMIN_TOKEN', 'FERRY_KEY_PREFIX', 'FERRY_QUEUE_PREFIX', 'FERRY_DASHBOARD_HOST', 'HOST']) delete env[k];
  let cmd: string;
  let args: string[];
  if (target === 'npm start') [cmd, args] = ['npm', ['start', '--', '--no-dashboard', '--quiet', ...extraArgs]];
  else if (target === 'ferry up') [cmd, args] = [process.execPath, [FERRY, 'up', '--no-dashboard', '--quiet', ...extraArgs]];
  else {
    [cmd, args] = [process.execPath, [FERRY, 'serve', 'suspend-store']];
    Object.assign(env, { FERRY_STORE_BACKEND: 'fs', FERRY_STORE_DIR: path.join(dir, 'store'), HOST: '127.0.0.1', FERRY_ADMIN_TOKEN: 'shutdown-test-admin-token', FERRY_NODE_GC: 'single' });
  }
  // Its own process group, so that only the signals this test sends reach it.
  const child = spawn(cmd, args, { cwd: REPO_ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

/**
 * `starting`: signal `ferry up` while it is still starting its services (the control plane up, no agent yet).
 * `ownRedis`: `ferry up --own-redis`, whose redis-server must go too (and asks for a password meanwhile).
 */
async function runCase(target: Target, sig: NodeJS.Signals, { starting = false, ownRedis = false } = {}): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-shutdown-'));
  const s = start(target, dir, ownRedis ? ['--own-redis'] : []);
  const ready = (): boolean =>
    // starting: ferry up, the store, the control plane and its worker are there
    starting ? processesWith(dir).length >= 4 : (target === 'ferry serve' ? /listening on http/ : /the fleet is up/).test(s.output());
  let left: { pid: number; cmd: string }[] = [];
  let redisPid = 0;
  let before: { pid: number; cmd: string }[] = [];
  // A process is done once it is gone or a zombie (its sockets closed). Its environment becomes
  // unreadable earlier in its exit, so the pids seen before the signal are watched too.
  const remaining = (): { pid: number; cmd: string }[] => {
    const now = processesWith(dir);
    for (const p of before) if (!now.some((n) => n.pid === p.pid) && running(p.pid)) now.push(p);
    return now;
  };
  try {
    const until = Date.now() + 60_000;
    while (!ready()) {
      if (s.child.exitCode !== null || Date.now() > until) throw new Error(`${target} did not come up:\n${s.output().slice(-3000)}`);
      await sleep(starting ? 20 : 100);
    }
    before = processesWith(dir);
    // redis-server writes its title over its environment, so it is found by the pid ferry up reports.
    redisPid = Number(/^ferry up:\s+redis\s+pid (\d+)/m.exec(s.output())?.[1] ?? 0);
    if (redisPid) before.push({ pid: redisPid, cmd: fs.readFileSync(`/proc/${redisPid}/cmdline`, 'latin1').split('\0').join(' ') });
    // npm, ferry up and its seven services (sh is replaced by ferry up: `exec` in the script);
    // ferry serve and the node it re-executed with the GC flags.
    expect(before.length, before.map((p) => p.cmd).join('\n')).toBeGreaterThanOrEqual(target === 'ferry serve' ? 2 : starting ? 4 : 8);
    if (starting) expect(s.output()).not.toMatch(/the fleet is up/);
    const ports = listeningPorts(before.map((p) => p.pid));
    if (!starting) expect(ports.length).toBeGreaterThan(0);
    if (ownRedis) {
      expect(before.some((p) => p.cmd.includes('redis-server'))).toBe(true);
      const port = /Redis: started \S+ on redis:\/\/127\.0\.0\.1:(\d+)/.exec(s.output())![1]!;
      expect(await redisCommands(`redis://127.0.0.1:${port}`, [['PING']])).toMatch(/^-NOAUTH/);
    }

    process.kill(s.child.pid!, sig);
    const deadline = Date.now() + 20_000;
    while ((left = remaining()).length && Date.now() < deadline) await sleep(100);
    expect(left.map((p) => p.cmd), `left after ${sig} to ${target}:\n${s.output().slice(-3000)}`).toEqual([]);
    const held: number[] = [];
    for (const p of ports) if (!(await canBind(p))) held.push(p);
    expect(held, `ports still held after ${sig} to ${target}`).toEqual([]);
  } finally {
    for (const p of remaining()) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    const redis = /^ferry up: Redis: (redis:\/\/\S+) \((?:REDIS_URL|found on localhost)\)/m.exec(s.output()) ? process.env.REDIS_URL || 'redis://127.0.0.1:6379' : undefined;
    const prefix = fs.existsSync(path.join(dir, 'redis-prefix')) ? fs.readFileSync(path.join(dir, 'redis-prefix'), 'utf8').trim() : null;
    if (redis && prefix) {
      await dropRedisPrefix(redis, prefix).catch(() => 0);
      await dropAgentUsers(redis, prefix).catch(() => undefined);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGKILL'];

describe.skipIf(skip !== null)('stopping leaves no process and no port behind', () => {
  for (const target of ['npm start', 'ferry up', 'ferry serve'] as const) {
    for (const sig of SIGNALS) {
      it(`${sig} to ${target}`, () => runCase(target, sig), 90_000);
    }
  }
  it('SIGTERM to ferry up while it is starting', () => runCase('ferry up', 'SIGTERM', { starting: true }), 90_000);
  it('SIGKILL to ferry up --own-redis (its redis-server goes too)', () => runCase('ferry up', 'SIGKILL', { ownRedis: true }), 90_000);
  it('SIGTERM to npm start -- --own-redis', () => runCase('npm start', 'SIGTERM', { ownRedis: true }), 90_000);
});
