/**
 * `ferry up` (= `npm start`): the whole fleet on this machine, one command.
 *
 *   redis       REDIS_URL, else a Redis answering on localhost:6379, else (or with --own-redis) a
 *               redis-server we start (data in <state>/redis, a password of its own, and it dies
 *               with us); with none of these it stops and says how to get one
 *   store       the suspend-store on a local folder (<state>/store)
 *   cp, worker  the control plane: HTTP API and its worker (scheduler, campaign runner)
 *   agent-*     four sim hosts: two 32-bit legacy (Xen 4.4), two 64-bit v2 (Xen 4.17), a dozen VMs
 *   dashboard   the web UI on PORT (default 8080), proxying the API, on 127.0.0.1 unless told otherwise
 *
 * Each agent gets only its own credentials: its agent token and Redis ACL user, minted by the
 * control plane (`POST /v1/hosts/{id}/agent-credentials`), and a suspend-store token with the
 * checkpoint scopes (read, write). The admin token goes to the store and the control plane only.
 * The fleet's Redis keys live under a prefix kept in the state folder (up/state.ts), so a fresh
 * folder is a fresh fleet; `--reset` deletes that prefix's keys and the folder's contents first.
 *
 * It stops every service it started on SIGINT, SIGTERM or SIGHUP, and when its parent process goes
 * (`npm start` under a supervisor that signals npm only, a closed terminal); the services stop on
 * their own when `ferry up` itself dies (their IPC lifeline, bin/lifeline.js). A service that dies
 * takes the whole fleet down.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { dataPathNodeFlags } from '@ferry/config';
import { FLEET, simGuestsEnv } from '../up/fleet';
import { NO_REDIS_HELP, dropRedisState, pingRedis, redisServerVersion, which } from '../up/redis';
import { REPO_ROOT, adminToken, redisPassword, redisPrefix, removeOwnedState, saveApiUrl, savedRedisPrefix, stateDirFrom } from '../up/state';
import { LIFELINE, Supervisor, type Service } from '../up/supervisor';

const RUN_TS = path.join(REPO_ROOT, 'apps', 'cli', 'bin', 'run-ts.js');
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** Environment no service inherits as is: each gets only the secrets it needs. */
const SECRETS = ['FERRY_ADMIN_TOKEN', 'FERRY_TOKEN', 'FERRY_AGENT_SECRET', 'FERRY_AGENT_TOKEN', 'FERRY_STORE_TOKEN', 'FERRY_STORE_TOKENS', 'REDIS_URL'];

const HELP = `usage: ferry up [--quiet] [--no-dashboard] [--reset] [--own-redis]

Runs the whole fleet on this machine (what \`npm start\` does): Redis (found or started), the
suspend-store on a local folder, the control plane (HTTP + worker), four sim hosts (two 32-bit
legacy, two 64-bit v2) with a dozen VMs, and the dashboard. Prints the dashboard URL and a token.
SIGINT (Ctrl-C), SIGTERM or SIGHUP stop everything, and so does the end of its parent process
(e.g. npm, when a supervisor stops it); a second signal a second later kills what is left.

  --quiet          show only warnings and errors of the services
  --no-dashboard   skip the web UI (the API is then printed instead)
  --reset          start from nothing: delete this state folder's Redis keys (its prefix) and
                   agent ACL users, and what ferry up keeps in the folder, then start fresh
  --own-redis      start a redis-server of our own (data in <state>/redis, password in
                   <state>/redis-password) even when REDIS_URL is set or one answers on localhost

environment:
  PORT                   dashboard port (default 8080; 0 = any free port)
  FERRY_DASHBOARD_HOST   address the dashboard listens on (default 127.0.0.1; HOST is read too;
                         0.0.0.0 exposes it to the network)
  FERRY_ADMIN_TOKEN      admin token (default: made once and kept in <state>/admin-token, where
                         the ferry CLI finds it)
  REDIS_URL              Redis to use (default: localhost:6379 if it answers, else a redis-server of
                         our own); its user must be allowed ACL SETUSER (each agent gets its own user)
  FERRY_STATE_DIR        state folder (default .state at the repo root)
  FERRY_KEY_PREFIX       prefix of the fleet's Redis keys (default: random, kept in <state>/redis-prefix)
  FERRY_QUEUE_PREFIX     BullMQ prefix of the host queues (default: FERRY_KEY_PREFIX's value)
  FERRY_SIM_DIRTY_RATE   bytes per second each sim guest writes to its memory (default 4M; 0 =
                         guests whose memory digest stays the same across migrations)
`;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

function httpStatus(url: string, headers: Record<string, string> = {}, timeoutMs = 2000): Promise<{ status: number; body: string } | null> {
  return new Promise((resolve) => {
    const req = http.get(url, { headers, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d.length < 1_000_000 ? d : ''));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until check() returns true; rejects with `what` on timeout or when a service dies meanwhile. */
async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, dead: () => Service | undefined): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const d = dead();
    if (d) throw new Error(`${d.name} exited (${d.exit?.signal ?? `code ${d.exit?.code}`}) while waiting for ${what}`);
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await sleep(250);
  }
}

function firstExisting(...candidates: string[]): string {
  for (const c of candidates) if (fs.existsSync(path.join(REPO_ROOT, c))) return c;
  return candidates[0]!;
}

/** Where the dashboard listens: loopback unless FERRY_DASHBOARD_HOST (or HOST) names another address. */
export function dashboardHost(env: NodeJS.ProcessEnv): string {
  return env.FERRY_DASHBOARD_HOST || env.HOST || '127.0.0.1';
}

/** `url` as it may be printed: its password, if any, replaced by `***`. */
function redacted(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/** `url` with `user`/`password` as its credentials (replacing any it had). */
function withCredentials(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  return u.toString();
}

interface AgentCredentials {
  token: string;
  redisUser: string;
  redisPassword: string;
  queuePrefix: string;
}

/** The control plane mints an agent's token and (re)creates its Redis ACL user. */
async function mintAgentCredentials(cpUrl: string, adminTokenValue: string, hostId: string): Promise<AgentCredentials> {
  const res = await fetch(`${cpUrl}/v1/hosts/${encodeURIComponent(hostId)}/agent-credentials`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${adminTokenValue}` },
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`cannot mint ${hostId}'s credentials (HTTP ${res.status}: ${text.slice(0, 300)}); the Redis user must be allowed ACL SETUSER`);
  return JSON.parse(text) as AgentCredentials;
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  const unknown = argv.filter((a) => !['--quiet', '--no-dashboard', '--reset', '--own-redis'].includes(a));
  if (unknown.length) {
    process.stderr.write(`ferry up: unknown option ${unknown[0]}\n${HELP}`);
    return 2;
  }
  const quiet = argv.includes('--quiet');
  const withDashboard = !argv.includes('--no-dashboard');
  const reset = argv.includes('--reset');
  const ownRedis = argv.includes('--own-redis');
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  const say = (line: string): void => out(`ferry up: ${line}`);

  const stateDir = stateDirFrom(process.env);
  if (process.env.FERRY_ADMIN_TOKEN !== undefined && process.env.FERRY_ADMIN_TOKEN.length < 16) {
    process.stderr.write('ferry up: FERRY_ADMIN_TOKEN must be at least 16 characters (the suspend-store asks for that)\n');
    return 2;
  }
  const dashPortEnv = process.env.PORT;
  const dashPort = dashPortEnv === undefined || dashPortEnv === '' ? 8080 : Number(dashPortEnv);
  if (!Number.isInteger(dashPort) || dashPort < 0 || dashPort > 65535) {
    process.stderr.write(`ferry up: PORT must be a port number, got '${dashPortEnv}'\n`);
    return 2;
  }
  const dashHost = dashboardHost(process.env);
  if (withDashboard && dashPort !== 0 && !(await portFree(dashPort, dashHost))) {
    process.stderr.write(`ferry up: port ${dashPort} is in use (another ferry up?); set PORT to a free port, or PORT=0 for any\n`);
    return 1;
  }

  const sup = new Supervisor({ out, color: process.stdout.isTTY === true && !process.env.NO_COLOR, quiet });
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  const shutdown = (why: string | null, code: number): void => {
    if (sup.isStopping) return;
    if (why) say(why);
    say('stopping every service…');
    sup.stopAll().then(
      () => {
        say('all services stopped');
        resolveDone(code);
      },
      () => resolveDone(code),
    );
  };
  // A signal that arrives with the first one changes nothing: under `npm start` a terminal's Ctrl-C
  // reaches us twice (from the terminal, and forwarded by npm). One a second or more later kills.
  let firstSignalAt = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!sup.isStopping) {
      firstSignalAt = Date.now();
      shutdown(sig, 0);
    } else if (Date.now() - firstSignalAt >= 1000) {
      say(`${sig} again: killing every service`);
      sup.killAll();
      resolveDone(130);
    }
  };
  for (const sig of STOP_SIGNALS) process.on(sig, onSignal);
  // Our parent's end (npm or a shell stopped by a supervisor that signals only its own child, a
  // closed terminal) re-parents us: then nobody is left to stop the fleet but us.
  const parentPid = process.ppid;
  const parentWatch = setInterval(() => {
    if (process.ppid !== parentPid) shutdown(`parent process ${parentPid} is gone`, 0);
  }, 250);
  parentWatch.unref();
  sup.onUnexpectedExit((s) => {
    shutdown(`${s.name} exited unexpectedly (${s.exit?.signal ?? `exit code ${s.exit?.code}`}); taking the whole fleet down`, 1);
  });
  const dead = (): Service | undefined => sup.services.find((s) => s.exit !== null && !s.optional);

  const baseEnv: NodeJS.ProcessEnv = { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' };
  for (const k of ['PORT', 'HOST', ...SECRETS]) delete baseEnv[k];
  // The data path (store, agents) runs with the GC flags its host size calls for (@ferry/config gc.ts).
  const dataFlags = dataPathNodeFlags(process.env);
  const node = (name: string, entry: string, env: NodeJS.ProcessEnv, flags: string[] = []): Service =>
    sup.start(name, process.execPath, ['-r', LIFELINE, ...flags, RUN_TS, entry], { ...baseEnv, ...env }, REPO_ROOT, { lifeline: true });

  try {
    // ---- Redis already there ----
    let redisUrl = ownRedis ? undefined : process.env.REDIS_URL;
    let redisSource = 'REDIS_URL';
    if (ownRedis) {
      /* started below, once the state folder is there */
    } else if (redisUrl) {
      const why = await pingRedis(redisUrl);
      if (why) throw new Error(`REDIS_URL=${redacted(redisUrl)} does not answer: ${why}`);
    } else if ((await pingRedis('redis://127.0.0.1:6379')) === null) {
      redisUrl = 'redis://127.0.0.1:6379';
      redisSource = 'found on localhost';
    }

    // ---- --reset: this folder's keys, ACL users and files ----
    if (reset) {
      const prefix = process.env.FERRY_KEY_PREFIX ?? savedRedisPrefix(stateDir);
      if (redisUrl && prefix) {
        const queuePrefix = process.env.FERRY_QUEUE_PREFIX ?? prefix;
        const r = await dropRedisState(redisUrl, [prefix, queuePrefix], FLEET.map((h) => `${queuePrefix}-agent-${h.hostId}`));
        say(`reset: deleted ${r.keys} Redis keys under ${prefix}:${queuePrefix !== prefix ? ` and ${queuePrefix}:` : ''} and ${r.users} agent ACL users`);
      }
      const removed = removeOwnedState(stateDir);
      say(`reset: removed ${removed.length ? removed.join(', ') : 'nothing'} from ${stateDir}`);
    }
    fs.mkdirSync(stateDir, { recursive: true });
    // The prefix first: a folder with an admin token but no prefix is an older ferry up's (up/state.ts).
    const keyPrefix = process.env.FERRY_KEY_PREFIX ?? redisPrefix(stateDir);
    const token = adminToken(stateDir, process.env);
    const queuePrefix = process.env.FERRY_QUEUE_PREFIX ?? keyPrefix;

    // ---- Redis of our own ----
    if (redisUrl) {
      say(`Redis: ${redacted(redisUrl)} (${redisSource}), keys under ${keyPrefix}:`);
    } else {
      const bin = which('redis-server');
      const version = bin ? redisServerVersion(bin) : null;
      if (!bin || !version) {
        process.stderr.write(`${NO_REDIS_HELP}\n`);
        cleanup();
        return 1;
      }
      const port = await freePort();
      const dir = path.join(stateDir, 'redis');
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      // The default user gets a password (from a 0600 config file, not the command line that `ps`
      // shows), so that on this Redis nobody but the control plane has more than an agent's rights.
      const conf = path.join(dir, 'redis.conf');
      const password = redisPassword(stateDir);
      const lines = [`port ${port}`, 'bind 127.0.0.1', `dir ${JSON.stringify(dir)}`, 'save 60 1', 'appendonly no', 'protected-mode yes', `requirepass ${password}`];
      // Redis >= 7 would otherwise refuse a SIGTERM whose final save fails (its folder gone): exit anyway.
      if (Number(/v=(\d+)\./.exec(version)?.[1] ?? 0) >= 7) lines.push('shutdown-on-sigterm force');
      fs.writeFileSync(conf, `${lines.join('\n')}\n`, { mode: 0o600 });
      // On Linux it also dies with us, even if we are killed with -9 (setpriv's parent-death signal).
      const setpriv = process.platform === 'linux' ? which('setpriv') : null;
      const [cmd, args] = setpriv ? [setpriv, ['--pdeathsig', 'TERM', bin, conf]] : [bin, [conf]];
      sup.start('redis', cmd, args, baseEnv, REPO_ROOT);
      redisUrl = withCredentials(`redis://127.0.0.1:${port}`, '', password);
      const url = redisUrl;
      await waitFor('redis-server', async () => (await pingRedis(url)) === null, 15_000, dead);
      say(`Redis: started ${bin} on redis://127.0.0.1:${port} (data in ${dir}, password in ${path.join(stateDir, 'redis-password')}), keys under ${keyPrefix}:`);
    }

    // ---- ports ----
    const [cpPort, storePort] = [await freePort(), await freePort()];
    const cpUrl = `http://127.0.0.1:${cpPort}`;
    const storeUrl = `http://127.0.0.1:${storePort}`;
    const prefixes = { FERRY_KEY_PREFIX: keyPrefix, FERRY_QUEUE_PREFIX: queuePrefix };
    const cpEnv = { ...prefixes, REDIS_URL: redisUrl, FERRY_ADMIN_TOKEN: token, FERRY_STORE_URL: storeUrl };
    // Each agent's suspend-store token: checkpoints only (read + write), never tokens or admin.
    const storeTokens = new Map(FLEET.map((h) => [h.hostId, `fsa-${randomBytes(24).toString('base64url')}`]));

    // ---- suspend-store ----
    node('store', firstExisting('apps/suspend-store/src/main.ts'), {
      PORT: String(storePort),
      HOST: '127.0.0.1',
      FERRY_STORE_BACKEND: 'fs',
      FERRY_STORE_DIR: path.join(stateDir, 'store'),
      FERRY_ADMIN_TOKEN: token,
      FERRY_STORE_TOKENS: [...storeTokens.values()].map((t) => `${t}:read+write`).join(','),
    }, dataFlags);
    // ---- control plane: API + worker ----
    node('cp', firstExisting('apps/control-plane/src/main.ts'), { ...cpEnv, PORT: String(cpPort), HOST: '127.0.0.1', FERRY_CONTROL_PLANE_ROLE: 'api' });
    node('worker', firstExisting('apps/control-plane/src/worker.ts'), { ...cpEnv, FERRY_CONTROL_PLANE_ROLE: 'worker' });
    await waitFor('the suspend-store', async () => (await httpStatus(`${storeUrl}/healthz`)) !== null, 60_000, dead);
    await waitFor('the control plane', async () => (await httpStatus(`${cpUrl}/readyz`))?.status === 200, 60_000, dead);

    // ---- sim hosts, each with its own credentials ----
    const agentEntry = firstExisting('apps/host-agent/src/main.ts');
    for (const host of FLEET) {
      const cred = await mintAgentCredentials(cpUrl, token, host.hostId);
      const dataPort = await freePort();
      node(`agent-${host.hostId}`, agentEntry, {
        FERRY_QUEUE_PREFIX: cred.queuePrefix,
        REDIS_URL: withCredentials(redisUrl, cred.redisUser, cred.redisPassword),
        FERRY_STORE_URL: storeUrl,
        FERRY_HOST_ID: host.hostId,
        FERRY_CONTROL_PLANE_URL: cpUrl,
        FERRY_AGENT_TOKEN: cred.token,
        FERRY_STORE_TOKEN: storeTokens.get(host.hostId)!,
        FERRY_DRIVER: 'sim',
        FERRY_SIM_TOOLSTACK: host.toolstack,
        FERRY_SIM_GUESTS: simGuestsEnv(host.guests),
        FERRY_SIM_CAPACITY: `${host.capacity.memoryMiB}:${host.capacity.vcpus}:${host.capacity.maxGuests}`,
        FERRY_STATE_DIR: path.join(stateDir, 'agents', host.hostId),
        FERRY_DATA_HOST: '127.0.0.1',
        FERRY_DATA_PORT: String(dataPort),
        FERRY_DATA_URL: `http://127.0.0.1:${dataPort}`,
      }, dataFlags);
    }
    const auth = { Authorization: `Bearer ${token}` };
    let vmCount = 0;
    await waitFor(
      `${FLEET.length} hosts to register`,
      async () => {
        const r = await httpStatus(`${cpUrl}/v1/hosts?limit=500`, auth);
        if (r?.status !== 200) return false;
        const body = JSON.parse(r.body) as { items?: { id: string; state: string }[] } | { id: string; state: string }[];
        const hosts = Array.isArray(body) ? body : (body.items ?? []);
        const online = new Set(hosts.filter((h) => h.state === 'online').map((h) => h.id));
        if (!FLEET.every((f) => online.has(f.hostId))) return false;
        const v = await httpStatus(`${cpUrl}/v1/vms?limit=500`, auth);
        if (v?.status === 200) vmCount = ((JSON.parse(v.body) as { total?: number; items?: unknown[] }).total ?? 0) || 0;
        return true;
      },
      90_000,
      dead,
    );

    // ---- dashboard ----
    let url = `http://localhost:${cpPort}`;
    if (withDashboard) {
      const port = dashPort === 0 ? await freePort() : dashPort;
      node('dashboard', firstExisting('apps/dashboard/src/main.ts'), { PORT: String(port), HOST: dashHost, FERRY_CONTROL_PLANE_URL: cpUrl, FERRY_STORE_URL: storeUrl });
      const probeHost = dashHost === '0.0.0.0' || dashHost === '::' ? '127.0.0.1' : dashHost;
      await waitFor('the dashboard', async () => (await httpStatus(`http://${probeHost.includes(':') ? `[${probeHost}]` : probeHost}:${port}/`))?.status === 200, 120_000, dead);
      url = `http://${dashHost === '127.0.0.1' || dashHost === '0.0.0.0' || dashHost === '::' ? 'localhost' : dashHost}:${port}`;
    }
    saveApiUrl(stateDir, url);

    out('');
    say(`the fleet is up: ${FLEET.length} hosts (2 x 32-bit legacy, 2 x 64-bit v2), ${vmCount} VMs`);
    for (const s of sup.services) say(`  ${s.name.padEnd(16)} pid ${s.child.pid}`);
    out('');
    out(`  dashboard  ${url}/?token=${encodeURIComponent(token)}`);
    out(`  API        ${url}/v1   (OpenAPI: ${url}/docs)`);
    out(`  token      ${token}   (admin; send as "Authorization: Bearer <token>"; the ferry CLI reads it from the state folder)`);
    out(`  state      ${stateDir}   (Redis keys under ${keyPrefix}:; \`ferry up --reset\` starts from nothing)`);
    out('');
    out('  Press Ctrl-C (or send SIGTERM / SIGHUP) to stop every process.');
    out('');
  } catch (e) {
    if (!sup.isStopping) shutdown(`cannot start the fleet: ${e instanceof Error ? e.message : String(e)}`, 1);
  }
  return finish();

  async function finish(): Promise<number> {
    const code = await done;
    cleanup();
    return code;
  }
  function cleanup(): void {
    clearInterval(parentWatch);
    for (const sig of STOP_SIGNALS) process.off(sig, onSignal);
  }
}
