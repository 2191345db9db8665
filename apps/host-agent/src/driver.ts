/**
 * The one hypervisor interface the agent's services use. Two implementations: `sim` (a simulated
 * Xen host, src/sim) and `xl` (a real dom0 through the xl toolstack, src/xl).
 */
import type { Readable, Writable } from 'node:stream';
import type { ByteOrder, GuestInventory, GuestRunState, HostCapacity, Toolstack, VmSpec } from '@ferry/contracts';

/** Figures of one pre-copy round (live save). */
export interface RoundStats {
  round: number;
  /** Bytes of page data sent in this round. */
  bytes: number;
  durationMs: number;
  /** Bytes/s the round went out at (page data). */
  rate: number;
  /** Bytes/s the guest dirtied during the round. */
  dirtyRate: number;
  /** Bytes dirty now (what the next round, or the stop-copy, has to send). */
  dirtyBytes: number;
  /** dirtyBytes at `rate`, in ms. */
  expectedDowntimeMs: number;
}

export interface SaveOptions {
  /** Live: iterative pre-copy while the guest runs, then pause and stop-copy. Absent: pause first (cold). */
  live?: {
    maxRounds: number;
    /** Return true to stop pre-copy now (pause + stop-copy). Called after every round. */
    stop(stats: RoundStats): boolean;
  };
  onRound?(stats: RoundStats): void;
  /** Called when the guest is paused (cold: before the first byte; live: at stop-copy). */
  onPaused?(at: number): void;
  /** The migration this save belongs to (persisted with the guest so a restarted agent can ask what became of it). */
  migration?: { migrationId: string; attempt: number };
  signal?: AbortSignal;
  /**
   * The consumer is done with every chunk (written to the kernel, hashed) before it pulls the next
   * one: the driver may then reuse its page buffers (no fresh memory per batch, so no page faults).
   */
  consumesEachChunk?: boolean;
}

export interface SaveSummary {
  rounds: number;
  /** Page bytes in the stream (all rounds). */
  pageBytes: number;
  /** Memory digest when the guest was paused (sim), else null. */
  memoryDigest: string | null;
  pausedAt: number;
}

export interface SaveHandle {
  /** The stream exactly as this toolstack writes it (legacy at its width, or v2). Pull-driven: backpressure paces the rounds. */
  stream: AsyncIterable<Uint8Array>;
  /** Page bytes of one full pass (for progress totals). */
  memoryBytes: number;
  /** Resolves once the stream was fully consumed. */
  summary(): SaveSummary;
}

export interface RestoreOptions {
  signal?: AbortSignal;
  /** Incoming migration (persisted with the guest so a restarted agent discards an uncommitted copy). */
  migration?: { migrationId: string; attempt: number };
  /** Called as page bytes are restored. */
  onBytes?(n: number): void;
}

export interface RestoreResult {
  memoryDigest: string | null;
}

/** A running `xl migrate-receive`: its stdin takes the sender's bytes, its stdout gives its answers. */
export interface MigrateInProcess {
  stdin: Writable;
  stdout: Readable;
  /** Resolves when xl exits 0, rejects with its stderr otherwise. */
  exit: Promise<void>;
}

/** Xen's own live migration (xl hosts): pre-copy by libxc while the guest runs. */
export interface XenLiveMigration {
  /**
   * `xl migrate -s '' <vmId> '<transport>'`: xl runs the transport command with `sh -c` (with `env`
   * added to its environment) and speaks the migration protocol over its stdin/stdout. Resolves when
   * xl exits 0 (the target started the guest and xl destroyed it here).
   */
  migrateOut(vmId: string, transport: string, env: Record<string, string>, migration: { migrationId: string; attempt: number }): Promise<void>;
  /** `xl migrate-receive -p`: builds the domain from its stdin, paused even after GO (the agent unpauses it). */
  migrateIn(spec: VmSpec, migration: { migrationId: string; attempt: number }): Promise<MigrateInProcess>;
}

export interface HypervisorDriver {
  /** Present on drivers that can live-migrate with the hypervisor's own protocol (xl). */
  readonly xenLive?: XenLiveMigration;
  readonly kind: 'sim' | 'xl';
  /** Loads persisted state / probes the toolstack. No side effects in constructors. */
  start(): Promise<void>;
  close(): Promise<void>;
  toolstack(): Toolstack;
  byteOrder(): ByteOrder;
  capacity(): HostCapacity;
  guests(): Promise<GuestInventory[]>;
  spec(vmId: string): Promise<VmSpec | null>;
  /** Saves the guest; it stays on this host (paused once the stream ends). */
  save(vmId: string, opts: SaveOptions): Promise<SaveHandle>;
  /** Restores a guest from a stream in this toolstack's own format; it is left PAUSED. Fails like the toolstack would. */
  restore(spec: VmSpec, stream: AsyncIterable<Uint8Array>, opts: RestoreOptions): Promise<RestoreResult>;
  pause(vmId: string): Promise<void>;
  unpause(vmId: string): Promise<void>;
  destroy(vmId: string): Promise<void>;
  setState(vmId: string, state: GuestRunState, migration?: { migrationId: string; attempt: number; committed?: boolean } | null): Promise<void>;
  memoryDigest(vmId: string): Promise<string | null>;
  /** Restart the toolstack as `to` (sim only). Refuses while guests remain. */
  upgrade(to: Toolstack): Promise<void>;
  /** Guests that a previous agent left in a migration (restart recovery). */
  pendingMigrations(): Promise<{ vmId: string; state: GuestRunState; migrationId: string; attempt: number; committed: boolean }[]>;
}

export class DriverError extends Error {
  override name = 'DriverError';
  constructor(
    readonly code: 'VM_NOT_FOUND' | 'GUESTS_PRESENT' | 'INCOMPATIBLE' | 'TOOLSTACK_ERROR' | 'NO_CAPACITY' | 'STREAM_ERROR',
    message: string,
  ) {
    super(message);
  }
}
