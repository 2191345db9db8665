/**
 * Child processes of `ferry up`: each with its own env, its output line by line with a
 * prefix, and one rule: a service that dies takes the whole fleet down.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

/**
 * Preload (`node -r LIFELINE ...`) for node services started with `{ lifeline: true }`: they stop
 * when the IPC channel to their parent closes, i.e. when the parent is gone however it died.
 */
export const LIFELINE = path.resolve(__dirname, '..', '..', 'bin', 'lifeline.js');

const COLORS = [36, 33, 35, 32, 34, 91, 92, 93, 94, 95, 96];

export interface Service {
  name: string;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  /** Stopping it is expected (no "died" alarm). */
  optional?: boolean;
}

export interface SupervisorOptions {
  out: (line: string) => void;
  color: boolean;
  /** Hide the services' ordinary output (stderr is always shown). */
  quiet?: boolean;
}

export class Supervisor {
  readonly services: Service[] = [];
  private stopping = false;
  private width = 8;
  private onDeath: ((s: Service) => void) | null = null;
  private readonly watchers: ((s: Service, line: string) => void)[] = [];

  constructor(private readonly opts: SupervisorOptions) {}

  get isStopping(): boolean {
    return this.stopping;
  }

  /** Called once, with the first service that exits while we are not stopping. */
  onUnexpectedExit(fn: (s: Service) => void): void {
    this.onDeath = fn;
  }

  /** Sees every output line of every service (readiness checks on log lines). */
  watch(fn: (s: Service, line: string) => void): () => void {
    this.watchers.push(fn);
    return () => this.watchers.splice(this.watchers.indexOf(fn), 1);
  }

  prefix(name: string): string {
    const n = name.padEnd(this.width);
    if (!this.opts.color) return `${n} | `;
    let h = 0;
    for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return `\x1b[${COLORS[h % COLORS.length]}m${n}\x1b[0m | `;
  }

  /**
   * `lifeline`: the command is node preloading LIFELINE; it gets an IPC channel (carrying nothing)
   * whose end tells it that we are gone, so a `kill -9` of ours leaves no service behind.
   */
  start(name: string, command: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, opts: { lifeline?: boolean } = {}): Service {
    // A stop that began while the fleet was still starting must not miss a service started after it.
    if (this.stopping) throw new Error(`not starting ${name}: stopping`);
    this.width = Math.max(this.width, name.length);
    // Own process group: a Ctrl-C in the terminal reaches `ferry up` only, which then stops the
    // services in order (and never mistakes their exit for a crash).
    const child = spawn(command, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe', ...(opts.lifeline ? (['ipc'] as const) : [])], detached: true });
    if (this.services.length === 0) process.once('exit', () => this.killAll());
    const svc: Service = { name, child, exit: null, exited: null as unknown as Service['exited'] };
    svc.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        svc.exit = { code, signal };
        resolve(svc.exit);
        if (!this.stopping && !svc.optional) this.onDeath?.(svc);
      });
      child.on('error', (e) => {
        this.opts.out(`${this.prefix(name)}cannot start: ${e.message}`);
        svc.exit = { code: 127, signal: null };
        resolve(svc.exit);
        if (!this.stopping) this.onDeath?.(svc);
      });
    });
    this.pipeLines(svc, child.stdout!, false);
    this.pipeLines(svc, child.stderr!, true);
    this.services.push(svc);
    return svc;
  }

  private pipeLines(svc: Service, stream: NodeJS.ReadableStream, isErr: boolean): void {
    let buf = '';
    stream.setEncoding('utf8');
    const emit = (line: string): void => {
      for (const w of this.watchers) w(svc, line);
      if (!this.opts.quiet || isErr) this.opts.out(this.prefix(svc.name) + line);
    };
    stream.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        emit(buf.slice(0, i).replace(/\r$/, ''));
        buf = buf.slice(i + 1);
      }
    });
    stream.on('end', () => {
      if (buf) emit(buf);
      buf = '';
    });
  }

  /**
   * Stops every service still running: SIGTERM in reverse start order (agents and the UI before
   * the control plane, Redis last), SIGKILL after graceMs.
   */
  async stopAll(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    const alive = [...this.services].reverse().filter((s) => s.exit === null);
    const groups: Service[][] = [];
    // Everything but the infrastructure first, then the infrastructure (store, redis).
    const infra = (s: Service): boolean => s.name === 'redis' || s.name === 'store';
    groups.push(alive.filter((s) => !infra(s)), alive.filter(infra));
    for (const g of groups) {
      for (const s of g) s.child.kill('SIGTERM');
      const killer = setTimeout(() => {
        for (const s of g) if (s.exit === null) s.child.kill('SIGKILL');
      }, graceMs);
      await Promise.all(g.map((s) => s.exited));
      clearTimeout(killer);
    }
  }

  killAll(): void {
    this.stopping = true;
    for (const s of this.services) if (s.exit === null) s.child.kill('SIGKILL');
  }
}
