/**
 * `ferry serve <service>`: runs one Ferry service in this process, configured by the
 * environment (see the README for each service's variables). A bad or missing
 * setting stops it at start with a one-line message naming the variable.
 * SIGINT, SIGTERM and SIGHUP stop it.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { deriveAgentToken, missingNodeFlags, refusePlaceholderSecrets } from '@ferry/config';

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** bin/lifeline.js: a child started with an IPC channel stops when that channel closes (its parent is gone). */
const LIFELINE = path.resolve(__dirname, '..', '..', 'bin', 'lifeline.js');

interface Running {
  url?: string;
  close(): Promise<void>;
}
type Starter = (env: NodeJS.ProcessEnv) => Promise<Running>;

const SERVICES: Record<string, { summary: string; start: (role: string) => Starter[] }> = {
  'control-plane': {
    summary: 'REST API (/v1, /docs) and, with --role all (default), the scheduler and campaign runner',
    start: (role) => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const cp = require('@ferry/control-plane') as typeof import('@ferry/control-plane');
      // The HTTP app runs the worker modules too unless its role is `api`.
      const http: Starter = (env) => cp.startControlPlane({ ...env, FERRY_CONTROL_PLANE_ROLE: role === 'http' ? 'api' : 'all' });
      const worker: Starter = (env) => cp.startControlPlaneWorker(env);
      return [role === 'worker' ? worker : http];
    },
  },
  'control-plane-worker': {
    summary: 'only the control plane\'s queue worker (same as control-plane --role worker)',
    start: () => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const cp = require('@ferry/control-plane') as typeof import('@ferry/control-plane');
      return [(env) => cp.startControlPlaneWorker(env)];
    },
  },
  'suspend-store': {
    summary: 'checkpoint images in object storage (local folder or S3)',
    start: () => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const s = require('@ferry/suspend-store') as typeof import('@ferry/suspend-store');
      return [(env) => s.startSuspendStore(env)];
    },
  },
  'host-agent': {
    summary: 'the agent of one hypervisor host (sim or xl driver)',
    start: () => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const a = require('@ferry/host-agent') as { startHostAgent: Starter };
      return [(env) => a.startHostAgent(withDerivedAgentToken(env))];
    },
  },
};

/**
 * Small deployments (docker-compose) may give agents the shared FERRY_AGENT_SECRET instead of a
 * per-host FERRY_AGENT_TOKEN; the token is then derived here. Production should hand each host
 * its own token (POST /v1/hosts/{id}/agent-credentials), so that no agent can act for another.
 */
function withDerivedAgentToken(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (env.FERRY_AGENT_TOKEN || !env.FERRY_AGENT_SECRET || !env.FERRY_HOST_ID) return env;
  process.stderr.write('host-agent: FERRY_AGENT_TOKEN derived from FERRY_AGENT_SECRET (use per-host tokens in production)\n');
  return { ...env, FERRY_AGENT_TOKEN: deriveAgentToken(env.FERRY_AGENT_SECRET, env.FERRY_HOST_ID) };
}

function usage(): string {
  const lines = ['usage: ferry serve <service> [--role http|worker|all]', '', 'services:'];
  for (const [n, s] of Object.entries(SERVICES)) lines.push(`  ${n.padEnd(22)} ${s.summary}`);
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { role: { type: 'string', default: 'all' }, help: { type: 'boolean', short: 'h' } },
  });
  const name = positionals[0];
  if (values.help || !name) {
    process.stdout.write(usage() + '\n');
    return values.help ? 0 : 2;
  }
  const svc = SERVICES[name];
  if (!svc) {
    process.stderr.write(`ferry serve: unknown service '${name}'\n${usage()}\n`);
    return 2;
  }
  if (!['http', 'worker', 'all'].includes(values.role ?? 'all')) {
    process.stderr.write(`ferry serve: --role must be http, worker or all\n`);
    return 2;
  }
  // The example values of the deployment files are refused by every service in the same words.
  try {
    refusePlaceholderSecrets(process.env);
  } catch (e) {
    process.stderr.write(`ferry serve ${name}: ${(e as Error).message}\n`);
    return 1;
  }
  if (name === 'suspend-store' || name === 'host-agent') {
    let flags: string[];
    try {
      flags = missingNodeFlags(process.env);
    } catch (e) {
      process.stderr.write(`ferry serve ${name}: ${(e as Error).message}\n`);
      return 1;
    }
    if (flags.length) return reexec(flags);
  }
  const running: Running[] = [];
  try {
    for (const start of svc.start(values.role ?? 'all')) {
      const r = await start(process.env);
      running.push(r);
      process.stdout.write(`ferry ${name}${r.url ? ` listening on ${r.url}` : ' running'}\n`);
    }
  } catch (e) {
    await Promise.allSettled(running.map((r) => r.close()));
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`${msg.startsWith(`${name}:`) ? msg : `ferry serve ${name}: ${msg}`}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    // Stays subscribed: a second signal (a terminal's Ctrl-C reaches a re-executed child twice,
    // from the terminal and forwarded) must not fall back to the default of dying on the spot.
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      void Promise.allSettled(running.map((r) => r.close())).then(() => resolve(0));
    };
    for (const sig of STOP_SIGNALS) process.on(sig, stop);
  });
}

/**
 * Runs this same command again in a node started with `flags` (V8's GC flags cannot be switched on
 * once a process runs, and NODE_OPTIONS does not accept them), passing signals on and returning its
 * exit code. The child never outlives us: it has an IPC channel to us and preloads bin/lifeline.js,
 * so when we go, even by `kill -9`, it gets SIGTERM and stops.
 */
function reexec(flags: string[]): Promise<number> {
  const child = spawn(process.execPath, [...flags, '-r', LIFELINE, ...process.execArgv, ...process.argv.slice(1)], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
  const forward = (sig: NodeJS.Signals): void => void child.kill(sig);
  for (const sig of STOP_SIGNALS) process.on(sig, forward);
  return new Promise<number>((resolve) => {
    const done = (code: number): void => {
      for (const sig of STOP_SIGNALS) process.off(sig, forward);
      resolve(code);
    };
    child.on('exit', (code, signal) => done(code ?? (signal ? 1 : 0)));
    child.on('error', (e) => {
      process.stderr.write(`ferry serve: cannot start node: ${e.message}\n`);
      done(1);
    });
  });
}
