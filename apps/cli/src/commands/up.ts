/**
 * `ferry up` (= `npm start`): the whole fleet on this machine, one command.
 *
 *   redis       REDIS_URL, else a Redis answering on localhost:6379, else a redis-server we start
 *               (data in <state>/redis); with none of these it stops and says how to get one
 *   store       the suspend-store on a local folder (<state>/store)
 *   cp, worker  the control plane: HTTP API and its worker (scheduler, campaign runner)
 *   agent-*     four sim hosts: two 32-bit legacy (Xen 4.4), two 64-bit v2 (Xen 4.17), a dozen VMs
 *   dashboard   the web UI on PORT (default 8080), proxying the API
 *
 * Env: PORT, FERRY_ADMIN_TOKEN (else one is made and kept in <state>/admin-token), REDIS_URL,
 * FERRY_STATE_DIR (default .state at the repo root), FERRY_KEY_PREFIX / FERRY_QUEUE_PREFIX.
 * Ctrl-C stops every process it started; a service that dies takes the whole fleet down.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { dataPathNodeFlags, deriveAgentToken } from '@ferry/config';
import { FLEET, simGuestsEnv } from '../up/fleet';
import { NO_REDIS_HELP, pingRedis, redisServerVersion, which } from '../up/redis';
import { Supervisor, type Service } from '../up/supervisor';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const RUN_TS = path.join(REPO_ROOT, 'apps', 'cli', 'bin', 'run-ts.js');

const HELP = `usage: ferry up [--quiet] [--no-dashboard]

Runs the whole fleet on this machine (what \`npm start\` does): Redis (found or started), the
suspend-store on a local folder, the control plane (HTTP + worker), four sim hosts (two 32-bit
legacy, two 64-bit v2) with a dozen VMs, and the dashboard. Prints the dashboard URL and a token.
Ctrl-C stops everything.

  --quiet          show only warnings and errors of the services
  --no-dashboard   skip the web UI (the API is then printed instead)

environment:
  PORT                 dashboard port (default 8080; 0 = any free port)
  FERRY_ADMIN_TOKEN    admin token (default: made once and kept in <state>/admin-token)
  REDIS_URL            Redis to use (default: localhost:6379 if it answers, else a redis-server of our own)
  FERRY_STATE_DIR      state folder (default .state at the repo root)
  FERRY_KEY_PREFIX     prefix of the control plane's Redis keys (default ferry)
  FERRY_QUEUE_PREFIX   BullMQ prefix of the host queues (default ferry)
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

function adminToken(stateDir: string): string {
  if (process.env.FERRY_ADMIN_TOKEN) return process.env.FERRY_ADMIN_TOKEN;
  const file = path.join(stateDir, 'admin-token');
  try {
    const t = fs.readFileSync(file, 'utf8').trim();
    if (t.length >= 16) return t;
  } catch {
    /* make one */
  }
  const t = `fa-${randomBytes(24).toString('base64url')}`;
  fs.writeFileSync(file, `${t}\n`, { mode: 0o600 });
  return t;
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  const unknown = argv.filter((a) => !['--quiet', '--no-dashboard'].includes(a));
  if (unknown.length) {
    process.stderr.write(`ferry up: unknown option ${unknown[0]}\n${HELP}`);
    return 2;
  }
  const quiet = argv.includes('--quiet');
  const withDashboard = !argv.includes('--no-dashboard');
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  const say = (line: string): void => out(`ferry up: ${line}`);

  const stateDir = path.resolve(process.env.FERRY_STATE_DIR ?? path.join(REPO_ROOT, '.state'));
  fs.mkdirSync(stateDir, { recursive: true });
  const token = adminToken(stateDir);
  if (token.length < 16) {
    process.stderr.write('ferry up: FERRY_ADMIN_TOKEN must be at least 16 characters (the suspend-store asks for that)\n');
    return 2;
  }
  const keyPrefix = process.env.FERRY_KEY_PREFIX ?? 'ferry';
  const queuePrefix = process.env.FERRY_QUEUE_PREFIX ?? keyPrefix;
  const dashPortEnv = process.env.PORT;
  const dashPort = dashPortEnv === undefined || dashPortEnv === '' ? 8080 : Number(dashPortEnv);
  if (!Number.isInteger(dashPort) || dashPort < 0 || dashPort > 65535) {
    process.stderr.write(`ferry up: PORT must be a port number, got '${dashPortEnv}'\n`);
    return 2;
  }

  if (withDashboard && dashPort !== 0 && !(await portFree(dashPort, process.env.HOST ?? '0.0.0.0'))) {
    process.stderr.write(`ferry up: port ${dashPort} is in use (another ferry up?); set PORT to a free port, or PORT=0 for any\n`);
    return 1;
  }

  const sup = new Supervisor({ out, color: process.stdout.isTTY === true && !process.env.NO_COLOR, quiet });
  let failure: string | null = null;
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
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts++;
    if (interrupts > 1) {
      say('second interrupt: killing every service');
      sup.killAll();
      resolveDone(130);
      return;
    }
    shutdown(`${sig}`, 0);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  sup.onUnexpectedExit((s) => {
    failure = `${s.name} exited unexpectedly (${s.exit?.signal ?? `exit code ${s.exit?.code}`}); taking the whole fleet down`;
    shutdown(failure, 1);
  });
  const dead = (): Service | undefined => sup.services.find((s) => s.exit !== null && !s.optional);

  const baseEnv: NodeJS.ProcessEnv = { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' };
  delete baseEnv.PORT;
  delete baseEnv.HOST;
  // The data path (store, agents) runs with the GC flags its host size calls for (@ferry/config gc.ts).
  const dataFlags = dataPathNodeFlags(process.env);
  const node = (name: string, entry: string, env: NodeJS.ProcessEnv, flags: string[] = []): Service =>
    sup.start(name, process.execPath, [...flags, RUN_TS, entry], { ...baseEnv, ...env }, REPO_ROOT);

  try {
    // ---- Redis ----
    let redisUrl = process.env.REDIS_URL;
    if (redisUrl) {
      const why = await pingRedis(redisUrl);
      if (why) throw new Error(`REDIS_URL=${redisUrl} does not answer: ${why}`);
      say(`Redis: ${redisUrl} (REDIS_URL)`);
    } else if ((await pingRedis('redis://127.0.0.1:6379')) === null) {
      redisUrl = 'redis://127.0.0.1:6379';
      say(`Redis: ${redisUrl} (found on localhost)`);
    } else {
      const bin = which('redis-server');
      if (!bin || !redisServerVersion(bin)) {
        process.stderr.write(`${NO_REDIS_HELP}\n`);
        return 1;
      }
      const port = await freePort();
      const dir = path.join(stateDir, 'redis');
      fs.mkdirSync(dir, { recursive: true });
      sup.start('redis', bin, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '60 1', '--appendonly', 'no', '--protected-mode', 'yes'], baseEnv, REPO_ROOT);
      redisUrl = `redis://127.0.0.1:${port}`;
      await waitFor('redis-server', async () => (await pingRedis(redisUrl!)) === null, 15_000, dead);
      say(`Redis: started ${bin} on ${redisUrl} (data in ${dir})`);
    }

    // ---- ports ----
    const [cpPort, storePort] = [await freePort(), await freePort()];
    const cpUrl = `http://127.0.0.1:${cpPort}`;
    const storeUrl = `http://127.0.0.1:${storePort}`;
    const common = { REDIS_URL: redisUrl, FERRY_ADMIN_TOKEN: token, FERRY_KEY_PREFIX: keyPrefix, FERRY_QUEUE_PREFIX: queuePrefix, FERRY_STORE_URL: storeUrl };

    // ---- suspend-store ----
    node('store', firstExisting('apps/suspend-store/src/main.ts'), {
      PORT: String(storePort),
      HOST: '127.0.0.1',
      FERRY_STORE_BACKEND: 'fs',
      FERRY_STORE_DIR: path.join(stateDir, 'store'),
      FERRY_ADMIN_TOKEN: token,
    }, dataFlags);
    // ---- control plane: API + worker ----
    node('cp', firstExisting('apps/control-plane/src/main.ts'), { ...common, PORT: String(cpPort), HOST: '127.0.0.1', FERRY_CONTROL_PLANE_ROLE: 'api' });
    node('worker', firstExisting('apps/control-plane/src/worker.ts'), { ...common, FERRY_CONTROL_PLANE_ROLE: 'worker' });
    await waitFor('the suspend-store', async () => (await httpStatus(`${storeUrl}/healthz`)) !== null, 60_000, dead);
    await waitFor('the control plane', async () => (await httpStatus(`${cpUrl}/readyz`))?.status === 200, 60_000, dead);

    // ---- sim hosts ----
    const agentEntry = firstExisting('apps/host-agent/src/main.ts');
    for (const host of FLEET) {
      const dataPort = await freePort();
      node(`agent-${host.hostId}`, agentEntry, {
        ...common,
        FERRY_HOST_ID: host.hostId,
        FERRY_CONTROL_PLANE_URL: cpUrl,
        FERRY_AGENT_TOKEN: deriveAgentToken(token, host.hostId),
        FERRY_STORE_TOKEN: token,
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
      node('dashboard', firstExisting('apps/dashboard/src/main.ts'), { PORT: String(port), HOST: process.env.HOST ?? '0.0.0.0', FERRY_CONTROL_PLANE_URL: cpUrl, FERRY_STORE_URL: storeUrl });
      await waitFor('the dashboard', async () => (await httpStatus(`http://127.0.0.1:${port}/`))?.status === 200, 120_000, dead);
      url = `http://localhost:${port}`;
    }

    out('');
    say(`the fleet is up: ${FLEET.length} hosts (2 x 32-bit legacy, 2 x 64-bit v2), ${vmCount} VMs`);
    for (const s of sup.services) say(`  ${s.name.padEnd(16)} pid ${s.child.pid}`);
    out('');
    out(`  dashboard  ${url}/?token=${encodeURIComponent(token)}`);
    out(`  API        ${url}/v1   (OpenAPI: ${url}/docs)`);
    out(`  token      ${token}   (admin; send as "Authorization: Bearer <token>")`);
    out(`  state      ${stateDir}`);
    out('');
    out('  Press Ctrl-C to stop every process.');
    out('');
  } catch (e) {
    if (!sup.isStopping) shutdown(`cannot start the fleet: ${e instanceof Error ? e.message : String(e)}`, 1);
  }
  const code = await done;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  return code;
}
