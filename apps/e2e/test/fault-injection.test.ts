/**
 * Fault injection on the commit protocol (docs/jobs.md, "A migration, step by step"): real
 * control-plane and host-agent processes, real Redis. Lanes of two hosts each move their quiet
 * guest (FERRY_SIM_DIRTY_RATE=0) back and forth while the test SIGKILLs the source agent, the
 * target agent or the control plane at a chosen phase (preparing .. committing, and just after
 * the commit) with random timing, and restarts the killed process after a random delay.
 *
 * Afterwards: no migration is left in flight, the next migration from each lane's source
 * completes, and with every agent stopped, the hosts' own state shows every VM exactly once,
 * running, on the host the API names, with the memory digest it had before.
 *
 * Phases are held open on purpose: a bandwidth cap for precopy / stop-copy (cold moves), and a
 * simulated toolstack latency (FERRY_SIM_LATENCY_MS) for building the domain (verifying) and
 * unpausing it (committing). Prints kills per side and phase, and the outcomes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { deriveAgentToken } from '@ferry/config';
import type { MigrationDto, MigrationPhase, VmDto } from '@ferry/contracts';
import { REPO_ROOT, dropRedisPrefix, freePort, redisUnavailable } from './stack';

const skip = redisUnavailable();
if (skip && process.env.FERRY_REQUIRE_SERVICES === '1') throw new Error(`[fault injection] required (FERRY_REQUIRE_SERVICES=1): ${skip}`);
if (skip) console.log(`[fault injection] skipped: ${skip}`);

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADMIN = `admin-${randomBytes(8).toString('hex')}`;
const SECRET = `agent-secret-${randomBytes(8).toString('hex')}`;
const PREFIX = `fault${randomBytes(4).toString('hex')}`;
const LANES = 4;
const GUEST_MIB = 8;
/** MiB/s: a guest's transfer takes about GUEST_MIB / BANDWIDTH seconds. */
const BANDWIDTH = 8;
const SIM_LATENCY_MS = 400;
const STALL_MS = 5000;

type Side = 'source' | 'target' | 'control-plane';
type KillAt = 'preparing' | 'precopy' | 'stop-copy' | 'verifying' | 'committing' | 'after-commit';
const SIDES: Side[] = ['source', 'target', 'control-plane'];
const KILL_AT: KillAt[] = ['preparing', 'precopy', 'stop-copy', 'verifying', 'committing', 'after-commit'];
/** Kills per (side, phase): 4 x 6 x 2 agents + 1 x 6 control plane (each of those stops every lane) = 54. */
const REPEATS: Record<Side, number> = { source: 4, target: 4, 'control-plane': 1 };
const TERMINAL = ['completed', 'failed', 'cancelled'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One service process (run from source); SIGKILL and start again at will. */
class Proc {
  child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private tail: string[] = [];
  starts = 0;
  constructor(
    readonly name: string,
    private readonly entry: string,
    private readonly env: Record<string, string>,
    private readonly readyLine: RegExp,
  ) {}

  /** Starts it; resolves once it printed its ready line. */
  async start(): Promise<void> {
    this.starts++;
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'apps/cli/bin/run-ts.js'), path.join(REPO_ROOT, this.entry)], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((r) => child.once('exit', () => r()));
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    const onData = (d: Buffer): void => {
      const text = d.toString();
      for (const line of text.split('\n')) if (line) this.tail.push(line);
      if (this.tail.length > 300) this.tail.splice(0, this.tail.length - 300);
      if (process.env.FERRY_TEST_VERBOSE) process.stderr.write(`[${this.name}] ${text}`);
      if (this.readyLine.test(text)) ready();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    const died = this.exited.then(() => {
      throw new Error(`${this.name} exited before it was ready:\n${this.output()}`);
    });
    died.catch(() => undefined);
    await Promise.race([isReady, died, sleep(90_000).then(() => Promise.reject(new Error(`${this.name} not ready in 90 s:\n${this.output()}`)))]);
  }

  async kill9(): Promise<void> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child?.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(t);
  }

  output(): string {
    return this.tail.slice(-60).join('\n');
  }
}

interface PersistedSim {
  guests: { spec: { vmId: string }; paused: boolean; state: string; migration: unknown }[];
}

describe.skipIf(skip !== null)('fault injection: kill -9 either agent or the control plane at every phase of a migration', () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-fault-'));
  const agents = new Map<string, Proc>();
  let cp!: Proc;
  let cpUrl = '';

  afterAll(async () => {
    await Promise.all([...agents.values()].map((a) => a.stop()));
    await cp?.stop();
    await dropRedisPrefix(REDIS_URL, PREFIX).catch(() => 0);
    fs.rmSync(stateDir, { recursive: true, force: true });
  }, 60_000);

  /** The control plane's REST API; retried while the control plane is down (it is killed on purpose). */
  async function api<T>(method: string, p: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const res = await fetch(`${cpUrl}${p}`, {
          method,
          headers: { authorization: `Bearer ${ADMIN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(10_000),
        });
        const text = await res.text();
        if (res.ok) return JSON.parse(text) as T;
        if (res.status < 500) throw Object.assign(new Error(`${method} ${p}: ${res.status} ${text.slice(0, 500)}`), { fatal: true });
      } catch (e) {
        if ((e as { fatal?: boolean }).fatal) throw e;
      }
      if (Date.now() > deadline) throw new Error(`${method} ${p}: no answer for 60 s`);
      await sleep(100);
    }
  }

  /**
   * POST /v1/migrations. A control plane killed inside an earlier create() may hold the VM or the
   * key for a few seconds (it frees both): such a 409 is retried.
   */
  async function createMigration(body: Record<string, unknown>): Promise<MigrationDto> {
    const key = `fi-${randomBytes(8).toString('hex')}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        return await api<MigrationDto>('POST', '/v1/migrations', body, { 'idempotency-key': key });
      } catch (e) {
        if (!/409 .*(still being processed|already has an active operation)/.test((e as Error).message) || Date.now() > deadline) throw e;
      }
      await sleep(500);
    }
  }

  async function waitFor<T>(what: string, f: () => Promise<T | null | undefined | false>, timeoutMs: number, everyMs = 100): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await f();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out (${timeoutMs} ms) waiting for ${what}`);
      await sleep(everyMs);
    }
  }

  it('never loses or duplicates a VM, never leaves a migration in flight, and the next migration proceeds', async () => {
    const t0 = Date.now();
    const port = await freePort();
    cpUrl = `http://127.0.0.1:${port}`;
    cp = new Proc(
      'control-plane',
      'apps/control-plane/src/main.ts',
      {
        PORT: String(port),
        HOST: '127.0.0.1',
        REDIS_URL,
        FERRY_ADMIN_TOKEN: ADMIN,
        FERRY_AGENT_SECRET: SECRET,
        FERRY_KEY_PREFIX: PREFIX,
        FERRY_QUEUE_PREFIX: PREFIX,
        FERRY_SCHEDULER_INTERVAL_MS: '50',
        FERRY_HEARTBEAT_INTERVAL_MS: '300',
        FERRY_OFFLINE_AFTER_MS: '4000',
        FERRY_STALL_AFTER_MS: String(STALL_MS),
        FERRY_RETRY_BACKOFF_MS: '100',
        FERRY_MAX_ATTEMPTS: '3',
        FERRY_CONNECT_TIMEOUT_MS: '8000',
        FERRY_LEASE_MS: '1000',
        FERRY_LIMIT_PER_SOURCE: '1',
      },
      /control plane listening/,
    );
    await cp.start();

    const lanes = Array.from({ length: LANES }, (_, i) => ({ vm: `fi${i}`, hosts: [`fi${i}a`, `fi${i}b`] as const }));
    for (const [i, lane] of lanes.entries()) {
      for (const [j, hostId] of lane.hosts.entries()) {
        // a fixed data port, as a real host has: the URL peers were given stays valid across restarts
        const dataPort = await freePort();
        const a = new Proc(
          hostId,
          'apps/host-agent/src/main.ts',
          {
            FERRY_HOST_ID: hostId,
            FERRY_CONTROL_PLANE_URL: cpUrl,
            FERRY_AGENT_TOKEN: deriveAgentToken(SECRET, hostId),
            REDIS_URL,
            FERRY_QUEUE_PREFIX: PREFIX,
            FERRY_STATE_DIR: path.join(stateDir, hostId),
            FERRY_SIM_TOOLSTACK: '4.17-64',
            FERRY_SIM_GUESTS: j === 0 ? `${lane.vm}:hvm:${GUEST_MIB}M:1:${1000 + i}:0` : '',
            FERRY_SIM_DIRTY_RATE: '0',
            FERRY_SIM_LATENCY_MS: String(SIM_LATENCY_MS),
            FERRY_HEARTBEAT_MS: '300',
            FERRY_CONNECT_TIMEOUT_MS: '8000',
            FERRY_DATA_PORT: String(dataPort),
          },
          /\bready: driver/,
        );
        agents.set(hostId, a);
      }
    }
    await Promise.all([...agents.values()].map((a) => a.start()));
    const before = new Map<string, string>();
    for (const lane of lanes) {
      const vm = await waitFor(`${lane.vm} with a digest`, async () => {
        const v = await api<VmDto>('GET', `/v1/vms/${lane.vm}`);
        return v.memoryDigest && v.state === 'running' ? v : null;
      }, 30_000);
      before.set(lane.vm, vm.memoryDigest!);
    }
    const bootMs = Date.now() - t0;

    // the kills to do, dealt to the lanes in random order
    const plan: { side: Side; at: KillAt }[] = [];
    for (const side of SIDES) for (const at of KILL_AT) for (let k = 0; k < REPEATS[side]; k++) plan.push({ side, at });
    for (let i = plan.length - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [plan[i], plan[j]] = [plan[j]!, plan[i]!];
    }
    const kills = new Map<string, number>(); // `${side} ${observed phase}`
    const missed: string[] = [];
    const migrations: string[] = [];
    // one control-plane kill at a time (lanes run side by side)
    let cpTurn: Promise<void> = Promise.resolve();

    const diagnose = async (): Promise<string> => {
      const out: string[] = [];
      for (const hostId of agents.keys()) out.push(`${hostId}: ${fs.readFileSync(path.join(stateDir, hostId, 'sim.json'), 'utf8')}`);
      for (const lane of lanes) {
        const ms = await api<{ items: MigrationDto[] }>('GET', `/v1/migrations?vm=${lane.vm}&limit=100`);
        out.push(...ms.items.slice(0, 14).map((m) => `${m.id} ${m.vmId} ${m.sourceHostId}->${m.targetHostId} ${m.phase} #${m.attempt} ${JSON.stringify(m.error)}`));
      }
      return out.join('\n');
    };
    /** One migration with one kill; false when the migration never showed the phase (then no kill). */
    const oneRun = async (lane: (typeof lanes)[number], job: { side: Side; at: KillAt }): Promise<boolean> => {
      const mode = job.at === 'precopy' ? 'live' : job.at === 'stop-copy' ? 'cold' : randomInt(2) ? 'live' : 'cold';
      let source = '';
      let m: MigrationDto | null = null;
      while (!m) {
        const vm = await waitFor(`${lane.vm} idle`, async () => {
          const v = await api<VmDto>('GET', `/v1/vms/${lane.vm}`);
          return v.state === 'running' && !v.activeOperationId && v.hostId ? v : null;
        }, 60_000);
        source = vm.hostId!;
        const target = lane.hosts.find((h) => h !== source)!;
        try {
          m = await createMigration({ vm: lane.vm, target, mode, bandwidth: BANDWIDTH });
        } catch (e) {
          // the record caught up with where the guest runs in the meantime (a late confirmation): look again
          if (!/409 .*already runs on/.test((e as Error).message)) throw e;
          console.log(`[fault injection] ${lane.vm} was on ${source} a moment ago: ${(e as Error).message}\n${await diagnose()}`);
        }
      }
      const target = lane.hosts.find((h) => h !== source)!;
      migrations.push(m.id);
      const want: MigrationPhase[] = job.at === 'preparing' ? ['dispatched', 'preparing'] : job.at === 'after-commit' ? ['committing', 'completed'] : [job.at];
      let started = false;
      const seen = await waitFor(`${m.id} to reach ${job.at}`, async () => {
        const x = await api<MigrationDto>('GET', `/v1/migrations/${m.id}`);
        started ||= x.phase !== 'queued';
        return want.includes(x.phase) || TERMINAL.includes(x.phase) || (started && x.phase === 'queued') ? x.phase : null;
      }, 60_000, 25);
      // (queued again = a retry started: take the kill at whatever comes next time round)
      if (!want.includes(seen)) {
        missed.push(`${job.side}@${job.at}: saw ${seen}`);
        await waitFor(`${m.id} to end`, async () => TERMINAL.includes((await api<MigrationDto>('GET', `/v1/migrations/${m.id}`)).phase), 90_000, 200);
        return false;
      }
      await sleep(job.at === 'after-commit' ? 50 + randomInt(400) : randomInt(job.at === 'verifying' || job.at === 'committing' ? 120 : 300));
      const proc = job.side === 'control-plane' ? cp : agents.get(job.side === 'source' ? source : target)!;
      let done = (): void => undefined;
      if (job.side === 'control-plane') {
        const prev = cpTurn;
        cpTurn = new Promise<void>((r) => (done = r));
        await prev;
      }
      const phase = (await api<MigrationDto>('GET', `/v1/migrations/${m.id}`)).phase;
      await proc.kill9();
      const key = `${job.side} ${job.at === 'after-commit' && phase !== 'committing' ? `${phase} (after commit)` : phase}`;
      kills.set(key, (kills.get(key) ?? 0) + 1);
      await sleep(200 + randomInt(1300));
      await proc.start();
      done();
      const end = await waitFor(`${m.id} to end`, async () => {
        const x = await api<MigrationDto>('GET', `/v1/migrations/${m.id}`);
        return TERMINAL.includes(x.phase) ? x : null;
      }, 90_000, 200);
      if (end.error && !['STALLED', 'PEER_LOST', 'STREAM_ERROR', 'TIMEOUT', 'INTERNAL'].includes(end.error.code)) {
        console.log(`[fault injection] ${m.id} ended ${end.phase} ${JSON.stringify(end.error)} after a kill of the ${job.side} in ${phase}:\n${await diagnose()}`);
      }
      return true;
    };

    await Promise.all(
      lanes.map(async (lane, i) => {
        // a phase missed (the migration went past it between two looks) is tried once more
        for (let k = i; k < plan.length; k += LANES) if (!(await oneRun(lane, plan[k]!))) await oneRun(lane, plan[k]!);
      }),
    );
    const killMs = Date.now() - t0 - bootMs;

    // nothing left in flight
    const active = await waitFor('no migration in flight', async () => {
      const page = await api<{ items: MigrationDto[]; total: number }>('GET', '/v1/migrations?active=true&limit=100');
      return page.total === 0 ? page : null;
    }, 60_000, 250);
    expect(active.items).toEqual([]);

    // the next migration from each lane's source proceeds
    const next = await Promise.all(
      lanes.map(async (lane) => {
        const vm = await waitFor(`${lane.vm} idle`, async () => {
          const v = await api<VmDto>('GET', `/v1/vms/${lane.vm}`);
          return v.state === 'running' && !v.activeOperationId && v.hostId ? v : null;
        }, 60_000);
        const target = lane.hosts.find((h) => h !== vm.hostId)!;
        const m = await createMigration({ vm: lane.vm, target, mode: 'live' });
        return waitFor(`${m.id} to end`, async () => {
          const x = await api<MigrationDto>('GET', `/v1/migrations/${m.id}`);
          return TERMINAL.includes(x.phase) ? x : null;
        }, 60_000, 200);
      }),
    );
    const got = next.map((m) => [m.vmId, m.phase, m.error]);
    if (JSON.stringify(got) !== JSON.stringify(lanes.map((l) => [l.vm, 'completed', null]))) console.log(`[fault injection] diagnostics:\n${await diagnose()}`);
    expect(got).toEqual(lanes.map((l) => [l.vm, 'completed', null]));

    // the API's view, once the inventories are in
    const apiView = new Map<string, VmDto>();
    for (const lane of lanes) {
      const v = await waitFor(`${lane.vm} settled`, async () => {
        const x = await api<VmDto>('GET', `/v1/vms/${lane.vm}`);
        return x.state === 'running' && !x.activeOperationId ? x : null;
      }, 30_000);
      expect(v.memoryDigest, `${lane.vm} digest`).toBe(before.get(lane.vm));
      apiView.set(lane.vm, v);
    }

    // outcomes of every migration of the run
    const outcomes = new Map<string, number>();
    for (const id of migrations) {
      const x = await api<MigrationDto>('GET', `/v1/migrations/${id}`);
      expect(TERMINAL, `${id} ended`).toContain(x.phase);
      const key = `${x.phase}${x.error ? ` ${x.error.code}${/in phase (\S+)/.exec(x.error.message)?.[0]?.replace(/^/, ' ') ?? ''}` : ''} (attempts ${x.attempt})`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    }

    // the hosts' own state, with every agent stopped: each VM exactly once, running, where the API says
    await Promise.all([...agents.values()].map((a) => a.stop()));
    const where = new Map<string, string[]>();
    for (const hostId of agents.keys()) {
      const sim = JSON.parse(fs.readFileSync(path.join(stateDir, hostId, 'sim.json'), 'utf8')) as PersistedSim;
      for (const g of sim.guests) {
        expect({ host: hostId, vm: g.spec.vmId, state: g.state, paused: g.paused, migration: g.migration }).toEqual({ host: hostId, vm: g.spec.vmId, state: 'running', paused: false, migration: null });
        where.set(g.spec.vmId, [...(where.get(g.spec.vmId) ?? []), hostId]);
      }
    }
    if (lanes.some((l) => JSON.stringify(where.get(l.vm)) !== JSON.stringify([apiView.get(l.vm)!.hostId]))) console.log(`[fault injection] where: ${JSON.stringify([...where])}`);
    for (const lane of lanes) expect(where.get(lane.vm), `${lane.vm} across all hosts`).toEqual([apiView.get(lane.vm)!.hostId]);

    const total = [...kills.values()].reduce((a, b) => a + b, 0);
    const lines = [
      `[fault injection] ${total} kills (-9) of ${plan.length} planned in ${(killMs / 1000).toFixed(1)} s after ${(bootMs / 1000).toFixed(1)} s of start-up; ${migrations.length} migrations, then ${lanes.length} more without faults`,
      ...[...kills.entries()].sort().map(([k, n]) => `  killed ${k}: ${n}`),
      ...(missed.length ? [`  no kill (phase not seen): ${missed.length}: ${missed.join('; ')}`] : []),
      ...[...outcomes.entries()].sort().map(([k, n]) => `  outcome ${k}: ${n}`),
      `  total ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    ];
    console.log(lines.join('\n'));
    expect(total).toBeGreaterThanOrEqual(50);
    for (const side of SIDES) expect([...kills.entries()].filter(([k]) => k.startsWith(`${side} `)).reduce((a, [, n]) => a + n, 0), `kills of the ${side}`).toBeGreaterThanOrEqual(REPEATS[side] * KILL_AT.length - 4);
  }, 400_000);
});
