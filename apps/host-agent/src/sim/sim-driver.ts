/**
 * `sim`: a simulated Xen host. Its toolstack (Xen version, dom0 width, stream format) decides what
 * `save` writes and what `restore` accepts; its guests' memory is deterministic from a seed and is
 * dirtied at a configurable rate while they run (lazily, by elapsed time, whenever someone looks).
 * State (toolstack, guests, page versions) is persisted under the agent's state dir so a restarted
 * agent finds its guests again, as a real hypervisor would.
 */
import { randomInt } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { Bitness, ByteOrder, GuestInventory, GuestRunState, HostCapacity, Toolstack, VmSpec } from '@ferry/contracts';
import { DriverError, type HypervisorDriver, type RestoreOptions, type RestoreResult, type RoundStats, type SaveHandle, type SaveOptions, type SaveSummary } from '../driver';
import { GuestMemory, PAGE_SIZE, PAGES_PER_MIB, renderPages } from './memory';
import { readImage, writerFor, type PageBatch, type StreamWriter } from './streams';

export interface SimGuestConfig {
  spec: VmSpec;
  seed: number;
  /** Bytes/s the guest dirties while it runs. */
  dirtyRate: number;
}

export interface SimDriverOptions {
  stateDir: string;
  toolstack: Toolstack;
  capacity: HostCapacity;
  guests: SimGuestConfig[];
  /** Default dirty rate (bytes/s) of guests restored here. */
  dirtyRate: number;
  /** Pages per PAGE_DATA batch (default 1024). */
  batchPages?: number;
  /** Simulated toolstack restart time for `upgrade` (default 300 ms). */
  restartMs?: number;
  /** Replace the stream writer (tests). Default: the toolstack's own. */
  writer?: (ts: Toolstack) => StreamWriter;
  /**
   * How long the simulated toolstack takes to build a restored domain, and to unpause or destroy
   * one (default 0). Real toolstacks take a noticeable time for each; tests use it to hold the
   * `verifying` and `committing` phases open.
   */
  toolstackLatencyMs?: number;
}

type Migration = { migrationId: string; attempt: number; committed?: boolean };

class SimGuest {
  paused = false;
  state: GuestRunState = 'running';
  migration: Migration | null = null;
  private rng: number;
  private last = Date.now();
  private carry = 0;
  private log: Uint8Array | null = null;
  private logged: number[] = [];
  dirtied = 0;

  constructor(
    readonly spec: VmSpec,
    readonly mem: GuestMemory,
    public dirtyRate: number,
  ) {
    this.rng = (mem.seed ^ 0x9e3779b9) >>> 0 || 1;
  }

  /** Applies the writes the guest did since the last look. */
  advance(now = Date.now()): void {
    const dt = now - this.last;
    this.last = now;
    if (this.paused || dt <= 0 || this.dirtyRate <= 0) return;
    const want = (dt / 1000) * (this.dirtyRate / PAGE_SIZE) + this.carry;
    let n = Math.floor(want);
    this.carry = want - n;
    n = Math.min(n, this.mem.pages * 2);
    const pages = this.mem.pages;
    let x = this.rng;
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      const pfn = x % pages;
      this.mem.bump(pfn);
      if (this.log && !this.log[pfn]) {
        this.log[pfn] = 1;
        this.logged.push(pfn);
      }
    }
    this.rng = x;
    this.dirtied += n;
  }

  pause(): void {
    this.advance();
    this.paused = true;
  }
  unpause(): void {
    this.last = Date.now();
    this.paused = false;
  }
  startLog(): void {
    this.log = new Uint8Array(this.mem.pages);
    this.logged = [];
  }
  stopLog(): void {
    this.log = null;
    this.logged = [];
  }
  get dirtyCount(): number {
    return this.logged.length;
  }
  /** The dirty pfns (sorted), and a clean log. */
  takeDirty(): Uint32Array {
    const out = Uint32Array.from(this.logged).sort();
    if (this.log) for (const p of this.logged) this.log[p] = 0;
    this.logged = [];
    return out;
  }
}

interface PersistedGuest {
  spec: VmSpec;
  seed: number;
  dirtyRate: number;
  paused: boolean;
  state: GuestRunState;
  migration: Migration | null;
}
interface PersistedState {
  version: 1;
  toolstack: Toolstack;
  guests: PersistedGuest[];
}

export class SimDriver implements HypervisorDriver {
  readonly kind = 'sim' as const;
  private ts: Toolstack;
  private readonly guestsById = new Map<string, SimGuest>();
  /** Guests whose restore is still reading its stream: not a domain yet, so never persisted. */
  private readonly restoring = new Set<string>();
  private flushTimer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly opts: SimDriverOptions) {
    this.ts = opts.toolstack;
  }

  private get stateFile(): string {
    return path.join(this.opts.stateDir, 'sim.json');
  }
  private versionsFile(vmId: string): string {
    return path.join(this.opts.stateDir, 'guests', `${vmId}.versions`);
  }

  async start(): Promise<void> {
    await mkdir(path.join(this.opts.stateDir, 'guests'), { recursive: true });
    let saved: PersistedState | null = null;
    try {
      saved = JSON.parse(await readFile(this.stateFile, 'utf8')) as PersistedState;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`sim state ${this.stateFile} is unreadable: ${(e as Error).message}`);
    }
    if (saved) {
      this.ts = saved.toolstack;
      for (const g of saved.guests) {
        const pages = g.spec.memoryMiB * PAGES_PER_MIB;
        let versions: Uint32Array;
        try {
          const raw = await readFile(this.versionsFile(g.spec.vmId));
          versions = raw.byteLength === pages * 4 ? new Uint32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)) : new Uint32Array(pages);
        } catch {
          versions = new Uint32Array(pages);
        }
        const guest = new SimGuest(g.spec, new GuestMemory(g.seed >>> 0, versions), g.dirtyRate);
        guest.paused = g.paused;
        guest.state = g.state;
        guest.migration = g.migration;
        this.guestsById.set(g.spec.vmId, guest);
      }
    } else {
      for (const g of this.opts.guests) {
        if (this.ts.streamFormat === 'legacy' && g.spec.type === 'pv' && (g.spec.guestWidth ?? 64) > this.ts.bitness) {
          throw new DriverError('INCOMPATIBLE', `guest ${g.spec.vmId}: a ${this.ts.bitness}-bit legacy toolstack cannot run a ${g.spec.guestWidth}-bit PV guest`);
        }
        this.guestsById.set(g.spec.vmId, new SimGuest(g.spec, GuestMemory.fresh(g.seed, g.spec.memoryMiB * PAGES_PER_MIB), g.dirtyRate));
      }
      await this.persist(true);
    }
    await this.removeOrphanVersions();
    this.flushTimer = setInterval(() => void this.persist(true).catch(() => undefined), 5000);
    this.flushTimer.unref();
  }

  /**
   * Page-version files of guests this host does not have (a restore or a destroy cut short by a
   * crash) are removed at start: the state file is the list of domains.
   */
  private async removeOrphanVersions(): Promise<void> {
    const dir = path.join(this.opts.stateDir, 'guests');
    for (const f of await readdir(dir)) {
      const vmId = f.replace(/\.versions(\.tmp)?$/, '');
      if (vmId === f || (this.guestsById.has(vmId) && !f.endsWith('.tmp'))) continue;
      await rm(path.join(dir, f), { force: true });
    }
  }

  private async sleepLatency(): Promise<void> {
    const ms = this.opts.toolstackLatencyMs ?? 0;
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }

  async close(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.flushTimer = null;
    await this.persist(true).catch(() => undefined);
  }

  /**
   * Writes the state file (and, with versions=true, every guest's page versions). Serialized.
   * Every domain is kept, as a hypervisor keeps its domains across a toolstack restart: an
   * arriving guest restored paused but not committed yet included (a restarted agent asks the
   * control plane what to do with it). Only a restore still reading its stream is left out.
   */
  persist(versions = false): Promise<void> {
    const run = async (): Promise<void> => {
      const kept = [...this.guestsById.values()].filter((g) => !this.restoring.has(g.spec.vmId));
      const state: PersistedState = {
        version: 1,
        toolstack: this.ts,
        guests: kept.map((g) => ({ spec: g.spec, seed: g.mem.seed, dirtyRate: g.dirtyRate, paused: g.paused, state: g.state, migration: g.migration })),
      };
      if (versions) {
        // page versions first, then the state file that names them
        for (const g of kept) {
          g.advance();
          const f = this.versionsFile(g.spec.vmId);
          await writeFile(f + '.tmp', g.mem.versions);
          await rename(f + '.tmp', f);
        }
      }
      await writeFile(this.stateFile + '.tmp', JSON.stringify(state));
      await rename(this.stateFile + '.tmp', this.stateFile);
    };
    this.writing = this.writing.then(run, run);
    return this.writing;
  }

  toolstack(): Toolstack {
    return { ...this.ts };
  }
  byteOrder(): ByteOrder {
    return 'little';
  }
  capacity(): HostCapacity {
    return { ...this.opts.capacity };
  }

  private guest(vmId: string): SimGuest {
    const g = this.guestsById.get(vmId);
    if (!g) throw new DriverError('VM_NOT_FOUND', `no guest '${vmId}' on this host`);
    return g;
  }

  async guests(): Promise<GuestInventory[]> {
    return [...this.guestsById.values()].map((g) => {
      g.advance();
      return { ...g.spec, state: g.paused && g.state === 'running' ? 'paused' : g.state, memoryDigest: g.mem.digest() };
    });
  }

  async spec(vmId: string): Promise<VmSpec | null> {
    return this.guestsById.get(vmId)?.spec ?? null;
  }

  async memoryDigest(vmId: string): Promise<string | null> {
    const g = this.guest(vmId);
    g.advance();
    return g.mem.digest();
  }

  async save(vmId: string, opts: SaveOptions): Promise<SaveHandle> {
    const g = this.guest(vmId);
    if (opts.migration) {
      g.migration = { ...opts.migration };
      await this.persist();
    }
    const batchPages = this.opts.batchPages ?? 1024;
    const summary: SaveSummary = { rounds: 0, pageBytes: 0, memoryDigest: null, pausedAt: 0 };
    const pause = (): void => {
      g.pause();
      summary.pausedAt = Date.now();
      opts.onPaused?.(summary.pausedAt);
      void this.persist().catch(() => undefined);
    };
    const pages = g.mem.pages;
    const all = new Uint32Array(pages);
    for (let i = 0; i < pages; i++) all[i] = i;

    // A ring of two page buffers when the consumer finishes each chunk before pulling the next (v2 path).
    const ring = opts.consumesEachChunk && this.ts.streamFormat === 'v2' ? [new Uint8Array(batchPages * PAGE_SIZE), new Uint8Array(batchPages * PAGE_SIZE)] : null;
    let turn = 0;
    async function* send(pfns: Uint32Array): AsyncGenerator<PageBatch, number, undefined> {
      let bytes = 0;
      for (let i = 0; i < pfns.length; i += batchPages) {
        if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new Error('save aborted');
        g.advance();
        const sub = pfns.subarray(i, Math.min(pfns.length, i + batchPages));
        const data = renderPages(g.mem.seed, sub, g.mem.versions, sub.length, ring?.[turn++ & 1]);
        bytes += data.byteLength;
        yield { pfns: sub, data };
      }
      return bytes;
    }

    async function* batches(): AsyncGenerator<PageBatch, void, undefined> {
      try {
        if (!opts.live) {
          pause();
          summary.rounds = 1;
          summary.pageBytes += yield* send(all);
        } else {
          g.startLog();
          let set: Uint32Array = all;
          for (let round = 1; ; round++) {
            const t0 = Date.now();
            const d0 = g.dirtied;
            const bytes = yield* send(set);
            g.advance();
            const dt = Math.max(1, Date.now() - t0);
            summary.rounds = round;
            summary.pageBytes += bytes;
            const rate = (bytes / dt) * 1000;
            const dirtyBytes = g.dirtyCount * PAGE_SIZE;
            const stats: RoundStats = {
              round,
              bytes,
              durationMs: dt,
              rate,
              dirtyRate: (((g.dirtied - d0) * PAGE_SIZE) / dt) * 1000,
              dirtyBytes,
              expectedDowntimeMs: rate > 0 ? (dirtyBytes / rate) * 1000 : 0,
            };
            opts.onRound?.(stats);
            if (round >= opts.live.maxRounds || opts.live.stop(stats)) break;
            set = g.takeDirty();
          }
          pause();
          const last = g.takeDirty();
          summary.pageBytes += yield* send(last);
        }
        summary.memoryDigest = g.mem.digest();
      } finally {
        g.stopLog();
      }
    }

    const writer = (this.opts.writer ?? writerFor)(this.ts);
    const stream = writer({
      guest: g.spec.type,
      guestWidth: g.spec.guestWidth ?? 64,
      vcpus: g.spec.vcpus,
      pages,
      xenVersion: this.ts.xenVersion,
      batches: batches(),
    });
    return { stream, memoryBytes: pages * PAGE_SIZE, summary: () => summary };
  }

  async restore(spec: VmSpec, stream: AsyncIterable<Uint8Array>, opts: RestoreOptions): Promise<RestoreResult> {
    if (this.guestsById.has(spec.vmId)) throw new DriverError('TOOLSTACK_ERROR', `a domain '${spec.vmId}' exists on this host already`);
    if (this.ts.streamFormat === 'legacy' && spec.type === 'pv' && (spec.guestWidth ?? 64) > this.ts.bitness) {
      throw new DriverError('INCOMPATIBLE', `a ${this.ts.bitness}-bit legacy toolstack cannot restore a ${spec.guestWidth ?? 64}-bit PV guest`);
    }
    const used = [...this.guestsById.values()].reduce((a, g) => a + g.spec.memoryMiB, 0);
    if (used + spec.memoryMiB > this.opts.capacity.memoryMiB || this.guestsById.size >= this.opts.capacity.maxGuests) {
      throw new DriverError('NO_CAPACITY', `no room for ${spec.memoryMiB} MiB (${used} of ${this.opts.capacity.memoryMiB} MiB used)`);
    }
    const mem = new GuestMemory(0, new Uint32Array(spec.memoryMiB * PAGES_PER_MIB), 'missing');
    const g = new SimGuest(spec, mem, this.opts.dirtyRate);
    g.paused = true;
    g.state = opts.migration ? 'migrating-in' : 'resuming';
    g.migration = opts.migration ? { ...opts.migration } : null;
    this.guestsById.set(spec.vmId, g);
    this.restoring.add(spec.vmId);
    try {
      const facts = await readImage(this.ts, stream, mem, opts.onBytes);
      if (facts.guest !== spec.type) throw new DriverError('INCOMPATIBLE', `the stream holds a ${facts.guest.toUpperCase()} guest, the VM is ${spec.type.toUpperCase()}`);
      if (spec.type === 'pv' && facts.guestWidth !== undefined && spec.guestWidth !== undefined && facts.guestWidth !== spec.guestWidth) {
        throw new DriverError('INCOMPATIBLE', `the stream holds a ${facts.guestWidth}-bit PV guest, the VM is ${spec.guestWidth}-bit`);
      }
      await this.sleepLatency();
      if (opts.signal?.aborted) throw new Error('restore aborted');
    } catch (e) {
      this.guestsById.delete(spec.vmId);
      this.restoring.delete(spec.vmId);
      throw e;
    }
    this.restoring.delete(spec.vmId);
    await this.persist(true);
    return { memoryDigest: mem.digest() };
  }

  async pause(vmId: string): Promise<void> {
    this.guest(vmId).pause();
    await this.persist();
  }
  async unpause(vmId: string): Promise<void> {
    this.guest(vmId);
    await this.sleepLatency();
    this.guest(vmId).unpause();
    await this.persist();
  }
  async destroy(vmId: string): Promise<void> {
    this.guest(vmId);
    await this.sleepLatency();
    this.guest(vmId);
    this.guestsById.delete(vmId);
    await this.persist();
    await rm(this.versionsFile(vmId), { force: true });
  }
  async setState(vmId: string, state: GuestRunState, migration?: Migration | null): Promise<void> {
    const g = this.guest(vmId);
    g.state = state;
    if (migration !== undefined) g.migration = migration ? { ...migration } : null;
    await this.persist(true);
  }

  async upgrade(to: Toolstack): Promise<void> {
    if (this.guestsById.size > 0) {
      throw new DriverError('GUESTS_PRESENT', `${this.guestsById.size} guest(s) remain on this host (${[...this.guestsById.keys()].join(', ')}); a toolstack restart would lose them`);
    }
    await new Promise((r) => setTimeout(r, this.opts.restartMs ?? 300));
    this.ts = { ...to };
    await this.persist(true);
  }

  async pendingMigrations(): Promise<{ vmId: string; state: GuestRunState; migrationId: string; attempt: number; committed: boolean }[]> {
    return [...this.guestsById.values()]
      .filter((g) => g.migration)
      .map((g) => ({ vmId: g.spec.vmId, state: g.state, migrationId: g.migration!.migrationId, attempt: g.migration!.attempt, committed: g.migration!.committed ?? false }));
  }
}

export function newSeed(): number {
  return randomInt(1, 0x7fffffff);
}

export type { Bitness };
