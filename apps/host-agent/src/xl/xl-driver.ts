/**
 * `xl`: drives a real Xen dom0 through the xl toolstack.
 *   save     `xl save -p <dom> <fifo>`  (the agent reads the FIFO; -p leaves the domain paused)
 *   restore  `xl restore -p <fifo>`     (the agent writes the FIFO; -p leaves it paused)
 *   pause / unpause / destroy           `xl pause|unpause|destroy <dom>`
 *   inventory                           `xl list -l` (JSON) + `xl list` (run state)
 *   toolstack                           `xl info` (xen_major/xen_minor); dom0 width from this process
 *   live migration  `xl migrate -s '' <dom> '<transport>'` / `xl migrate-receive -p` (xenLive; the
 *                   agent carries the protocol between the two, src/migration/xl-live.ts)
 * `xl save` has no pre-copy: suspends and cold migrations save paused from the start.
 * Memory digests are null (real guests' memory is not ours to hash).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { constants as fsc, createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Bitness, ByteOrder, GuestInventory, GuestRunState, GuestType, HostCapacity, Toolstack, VmSpec } from '@ferry/contracts';
import { DriverError, type HypervisorDriver, type MigrateInProcess, type XenLiveMigration, type RestoreOptions, type RestoreResult, type SaveHandle, type SaveOptions, type SaveSummary } from '../driver';

export interface XlDriverOptions {
  xlPath: string;
  /** Where FIFOs are made. */
  workDir: string;
  capacity: HostCapacity;
  /** Timeout of short commands (list, pause, ...), ms. */
  commandTimeoutMs?: number;
  /** How long a save that stops early may take to resume the domain and exit before xl is killed, ms. */
  saveStopGraceMs?: number;
}

const SAVE_STOP_GRACE_MS = 120_000;

/**
 * One domain of `xl list -l` (libxl's JSON of the domain config). As xl 4.17 prints it: c_info.type is
 * "pv", "pvh" or "hvm", and b_info carries the type-specific part under a key "type.pv" / "type.pvh" /
 * "type.hvm" (libxl's keyed-union spelling), not under b_info.type.
 */
interface XlListEntry {
  domid: number;
  config?: { c_info?: { name?: string; type?: string }; b_info?: { max_memkb?: number; target_memkb?: number; max_vcpus?: number; 'type.hvm'?: unknown; 'type.pvh'?: unknown } };
}

/**
 * A PVH domain saves as an x86 HVM stream (libxc's HVM save path; the codec reads its image header as
 * HVM, as seen on real Xen 4.17), so it is an 'hvm' guest to the rest of Ferry.
 */
function guestTypeOf(d: XlListEntry): GuestType {
  const t = d.config?.c_info?.type;
  const b = d.config?.b_info ?? {};
  return t === 'hvm' || t === 'pvh' || b['type.hvm'] !== undefined || b['type.pvh'] !== undefined ? 'hvm' : 'pv';
}

export class XlDriver implements HypervisorDriver {
  readonly kind = 'xl' as const;
  private ts: Toolstack = { xenVersion: '0.0', bitness: 64, streamFormat: 'v2' };
  private readonly states = new Map<string, { state: GuestRunState; migration: { migrationId: string; attempt: number; committed?: boolean } | null }>();

  constructor(private readonly opts: XlDriverOptions) {}

  readonly xenLive: XenLiveMigration = {
    migrateOut: async (vmId, transport, env, migration) => {
      this.states.set(vmId, { state: 'migrating-out', migration });
      const child = spawn(this.opts.xlPath, ['migrate', '-s', '', vmId, transport], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
      // never killed: xl resumes the domain itself when its transport fails before GO
      await this.exitOf(child, `xl migrate ${vmId}`);
    },
    migrateIn: async (spec, migration): Promise<MigrateInProcess> => {
      if (await this.spec(spec.vmId)) throw new DriverError('TOOLSTACK_ERROR', `a domain '${spec.vmId}' exists already`);
      const child = spawn(this.opts.xlPath, ['migrate-receive', '-p'], { stdio: ['pipe', 'pipe', 'pipe'] });
      const exit = this.exitOf(child, 'xl migrate-receive');
      exit.catch(() => undefined);
      child.stdin!.on('error', () => undefined); // EPIPE when it exits: its exit status tells why
      this.states.set(spec.vmId, { state: 'migrating-in', migration });
      return { stdin: child.stdin!, stdout: child.stdout!, exit };
    },
  };

  private run(args: string[], timeoutMs = this.opts.commandTimeoutMs ?? 30_000): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(this.opts.xlPath, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) reject(new DriverError('TOOLSTACK_ERROR', `xl ${args.join(' ')}: ${(stderr || err.message).trim().split('\n').slice(-3).join(' | ')}`));
        else resolve(stdout);
      });
    });
  }

  async start(): Promise<void> {
    await mkdir(this.opts.workDir, { recursive: true });
    const info = await this.run(['info']);
    const field = (k: string): string | undefined => new RegExp(`^${k}\\s*:\\s*(.+)$`, 'm').exec(info)?.[1]?.trim();
    const major = Number(field('xen_major'));
    const minor = Number(field('xen_minor'));
    if (!Number.isFinite(major) || !Number.isFinite(minor)) throw new DriverError('TOOLSTACK_ERROR', `xl info: no xen_major/xen_minor in its output`);
    const bitness: Bitness = os.arch() === 'ia32' || os.arch() === 'arm' ? 32 : 64;
    this.ts = { xenVersion: `${major}.${minor}`, bitness, streamFormat: major > 4 || (major === 4 && minor >= 6) ? 'v2' : 'legacy' };
  }

  async close(): Promise<void> {}

  toolstack(): Toolstack {
    return { ...this.ts };
  }
  byteOrder(): ByteOrder {
    return os.endianness() === 'BE' ? 'big' : 'little';
  }
  capacity(): HostCapacity {
    return { ...this.opts.capacity };
  }

  private async list(): Promise<{ spec: VmSpec; paused: boolean }[]> {
    const [longText, plain] = await Promise.all([this.run(['list', '-l']), this.run(['list'])]);
    const long = JSON.parse(longText || '[]') as XlListEntry[];
    const pausedByName = new Map<string, boolean>();
    for (const line of plain.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length >= 5) pausedByName.set(cols[0]!, cols[4]!.includes('p'));
    }
    const out: { spec: VmSpec; paused: boolean }[] = [];
    for (const d of long) {
      if (d.domid === 0) continue;
      const name = d.config?.c_info?.name ?? `domain-${d.domid}`;
      const b = d.config?.b_info ?? {};
      const type = guestTypeOf(d);
      const memKiB = b.max_memkb ?? b.target_memkb ?? 0;
      out.push({
        spec: { vmId: name, name, type, memoryMiB: Math.round(memKiB / 1024), vcpus: b.max_vcpus ?? 1 },
        paused: pausedByName.get(name) ?? false,
      });
    }
    return out;
  }

  async guests(): Promise<GuestInventory[]> {
    return (await this.list()).map(({ spec, paused }) => {
      const s = this.states.get(spec.vmId)?.state;
      return { ...spec, state: s && s !== 'running' ? s : paused ? 'paused' : 'running', memoryDigest: null };
    });
  }

  async spec(vmId: string): Promise<VmSpec | null> {
    return (await this.list()).find((g) => g.spec.vmId === vmId)?.spec ?? null;
  }

  private async fifo(): Promise<string> {
    const p = path.join(this.opts.workDir, `stream-${randomUUID()}.fifo`);
    await new Promise<void>((resolve, reject) => {
      execFile('mkfifo', ['-m', '600', p], (err) => (err ? reject(new DriverError('TOOLSTACK_ERROR', `mkfifo: ${err.message}`)) : resolve()));
    });
    return p;
  }

  private exitOf(child: ChildProcess, what: string): Promise<void> {
    const err: Buffer[] = [];
    child.stderr?.on('data', (c: Buffer) => err.push(c));
    return new Promise((resolve, reject) => {
      child.once('error', (e) => reject(new DriverError('TOOLSTACK_ERROR', `${what}: ${e.message}`)));
      child.once('close', (code) => {
        if (code === 0) resolve();
        else reject(new DriverError('TOOLSTACK_ERROR', `${what} exited ${code}: ${Buffer.concat(err).toString().trim().split('\n').slice(-3).join(' | ')}`));
      });
    });
  }

  async save(vmId: string, opts: SaveOptions): Promise<SaveHandle> {
    const spec = await this.spec(vmId);
    if (!spec) throw new DriverError('VM_NOT_FOUND', `no domain '${vmId}'`);
    if (opts.migration) this.states.set(vmId, { state: 'migrating-out', migration: opts.migration });
    const fifo = await this.fifo();
    const summary: SaveSummary = { rounds: 1, pageBytes: 0, memoryDigest: null, pausedAt: 0 };
    const xlPath = this.opts.xlPath;
    const exitOf = (c: ChildProcess, what: string): Promise<void> => this.exitOf(c, what);
    const afterFailedSave = (c: ChildProcess, exit: Promise<void>, rs: { destroy(): void }): Promise<void> => this.afterFailedSave(vmId, c, exit, rs);
    async function* stream(): AsyncGenerator<Uint8Array, void, undefined> {
      const child = spawn(xlPath, ['save', '-p', vmId, fifo], { stdio: ['ignore', 'ignore', 'pipe'] });
      const exit = exitOf(child, `xl save -p ${vmId}`);
      exit.catch(() => undefined);
      const rs = createReadStream(fifo, { highWaterMark: 1024 * 1024 });
      // Cancel by closing our end of the FIFO, never by killing xl: xl save then fails its write,
      // resumes the domain itself and exits. Killed, it leaves the domain suspended for good (real Xen
      // 4.17: `---ss-`, which no xl command undoes).
      const onAbort = (): void => void rs.destroy();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      summary.pausedAt = Date.now();
      opts.onPaused?.(summary.pausedAt);
      let ok = false;
      try {
        // xl failing before it opens the FIFO would leave our open blocked for good: end it with EOF
        unblockIfExitsFirst(exit, rs, fifo);
        try {
          for await (const chunk of rs) {
            summary.pageBytes += (chunk as Buffer).byteLength;
            yield chunk as Buffer;
          }
        } catch (e) {
          // our end closed under xl (abort): xl's exit status says what became of the save
          if (!opts.signal?.aborted) throw e;
        }
        await exit;
        if (opts.signal?.aborted) throw new DriverError('TOOLSTACK_ERROR', `xl save -p ${vmId}: aborted, but xl finished the save`);
        ok = true;
      } finally {
        opts.signal?.removeEventListener('abort', onAbort);
        if (!ok) await afterFailedSave(child, exit, rs);
        await rm(fifo, { force: true });
      }
    }
    return { stream: stream(), memoryBytes: spec.memoryMiB * 1024 * 1024, summary: () => summary };
  }

  /**
   * A save that did not complete (aborted, failed, or its consumer stopped reading): let xl save fail
   * on the closed FIFO and resume the domain (`SAVE_STOP_GRACE_MS`, then SIGTERM as the last resort),
   * then pause the domain, so that it is paused as after a complete `save -p` and the caller's
   * unpause() (cancelled migration) or destroy() works the same either way.
   */
  private async afterFailedSave(vmId: string, child: ChildProcess, exit: Promise<void>, rs: { destroy(): void }): Promise<void> {
    rs.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      let timer: NodeJS.Timeout | undefined;
      const exited = await Promise.race([
        exit.then(() => true, () => true),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), this.opts.saveStopGraceMs ?? SAVE_STOP_GRACE_MS))),
      ]);
      clearTimeout(timer);
      if (!exited) {
        child.kill('SIGTERM');
        await exit.catch(() => undefined);
      }
    }
    const line = (await this.run(['list']).catch(() => '')).split('\n').find((l) => l.trim().split(/\s+/)[0] === vmId);
    const state = line?.trim().split(/\s+/)[4] ?? '';
    if (line && !state.includes('p') && !state.includes('s')) await this.run(['pause', vmId]).catch(() => undefined);
  }

  async restore(spec: VmSpec, stream: AsyncIterable<Uint8Array>, opts: RestoreOptions): Promise<RestoreResult> {
    if (await this.spec(spec.vmId)) throw new DriverError('TOOLSTACK_ERROR', `a domain '${spec.vmId}' exists already`);
    const fifo = await this.fifo();
    const child = spawn(this.opts.xlPath, ['restore', '-p', fifo], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exit = this.exitOf(child, `xl restore -p`);
    exit.catch(() => undefined);
    const onAbort = (): void => void child.kill('SIGTERM');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const ws = createWriteStream(fifo);
      // xl failing before it opens the FIFO would leave our open blocked for good: let it through
      unblockIfExitsFirst(exit, ws, fifo);
      const onBytes = opts.onBytes;
      // pipeline: backpressure and errors (EPIPE when xl dies) without a listener per drain
      const written = pipeline(async function* () {
        for await (const chunk of stream) {
          onBytes?.(chunk.byteLength);
          yield chunk;
        }
      }, ws);
      try {
        await written;
      } catch (e) {
        // xl went away under us: its exit status and stderr say why, better than our EPIPE
        if ((e as NodeJS.ErrnoException).code === 'EPIPE') await exit;
        throw e;
      }
      await exit;
      this.states.set(spec.vmId, { state: opts.migration ? 'migrating-in' : 'resuming', migration: opts.migration ?? null });
      return { memoryDigest: null };
    } catch (e) {
      if (child.exitCode === null) child.kill('SIGTERM');
      await this.run(['destroy', spec.vmId]).catch(() => undefined);
      throw e;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      await rm(fifo, { force: true });
    }
  }

  async pause(vmId: string): Promise<void> {
    await this.run(['pause', vmId]);
  }
  async unpause(vmId: string): Promise<void> {
    await this.run(['unpause', vmId]);
  }
  async destroy(vmId: string): Promise<void> {
    await this.run(['destroy', vmId]);
    this.states.delete(vmId);
  }
  async setState(vmId: string, state: GuestRunState, migration?: { migrationId: string; attempt: number; committed?: boolean } | null): Promise<void> {
    const cur = this.states.get(vmId);
    this.states.set(vmId, { state, migration: migration === undefined ? (cur?.migration ?? null) : migration });
    if (state === 'running' && !migration) this.states.delete(vmId);
  }
  async memoryDigest(): Promise<string | null> {
    return null;
  }
  async upgrade(): Promise<void> {
    throw new DriverError('TOOLSTACK_ERROR', 'a real dom0 is upgraded by its operator, not by the agent');
  }
  async pendingMigrations(): Promise<{ vmId: string; state: GuestRunState; migrationId: string; attempt: number; committed: boolean }[]> {
    return [...this.states.entries()]
      .filter(([, s]) => s.migration)
      .map(([vmId, s]) => ({ vmId, state: s.state, migrationId: s.migration!.migrationId, attempt: s.migration!.attempt, committed: s.migration!.committed ?? false }));
  }
}

/**
 * A FIFO open blocks until the other side opens it. If xl exits before it opened the FIFO (bad
 * arguments, an unknown domain, no memory), nothing ever will: stand in for xl's end with an O_RDWR
 * open (on Linux that never blocks on a FIFO), hold it until our own open has returned (it may
 * still be queued in the thread pool), then close it, so the stream ends (EOF, or EPIPE on write);
 * the caller then reports xl's exit status and stderr. Opening only the other side, non-blocking,
 * would race our open: a writer's open fails with ENXIO while no reader is there yet.
 */
function unblockIfExitsFirst(exit: Promise<void>, s: { once(ev: 'open' | 'close', fn: () => void): unknown }, fifo: string): void {
  let opened = false;
  s.once('open', () => (opened = true));
  const unblock = (): void => {
    if (opened) return;
    open(fifo, fsc.O_RDWR | fsc.O_NONBLOCK)
      .then((fh) => {
        let released = false;
        const release = (): void => {
          if (released) return;
          released = true;
          fh.close().catch(() => undefined);
        };
        if (opened) return release();
        s.once('open', release);
        s.once('close', release);
      })
      .catch(() => undefined); // ENOENT: already cleaned up
  };
  exit.then(unblock, unblock);
}
