/**
 * Migration phases, in order, and the point of no return.
 *
 *  queued      waiting in the control plane's queue (limits, no compatible target yet, retry backoff)
 *  dispatched  migrate-receive / migrate-send jobs are on the target / source host queues
 *  preparing   agents set up: receiver listening on its dataUrl, sender connected
 *  precopy     live only: iterative memory rounds while the guest runs on the source
 *  stop-copy   guest paused on the source; last dirty pages + vCPU state flow (downtime runs)
 *  verifying   target holds the complete stream, verifies it and restores the guest PAUSED
 *  committing  POINT OF NO RETURN: the control plane granted the commit (target unpauses,
 *              source destroys its copy). From here a cancel is refused.
 *  completed   guest runs on the target
 *  failed / cancelled  guest runs on the SOURCE (never lost): every failure or cancel before
 *              `committing` resumes the guest on the source.
 *
 * Cold migrations skip `precopy` (the guest is paused from the start of `stop-copy`).
 */
export const MIGRATION_PHASES = [
  'queued',
  'dispatched',
  'preparing',
  'precopy',
  'stop-copy',
  'verifying',
  'committing',
  'completed',
  'failed',
  'cancelled',
] as const;
export type MigrationPhase = (typeof MIGRATION_PHASES)[number];

/** Phases an agent may report in a progress event. */
export const AGENT_MIGRATION_PHASES = ['preparing', 'precopy', 'stop-copy', 'verifying', 'committing'] as const;
export type AgentMigrationPhase = (typeof AGENT_MIGRATION_PHASES)[number];

export const POINT_OF_NO_RETURN: MigrationPhase = 'committing';
export const TERMINAL_MIGRATION_PHASES: readonly MigrationPhase[] = ['completed', 'failed', 'cancelled'];

export function phaseIndex(p: MigrationPhase): number {
  return MIGRATION_PHASES.indexOf(p);
}
export function isTerminalPhase(p: MigrationPhase): boolean {
  return TERMINAL_MIGRATION_PHASES.includes(p);
}
/** True once the migration can no longer be undone (commit granted or done). */
export function pastPointOfNoReturn(p: MigrationPhase): boolean {
  return p === 'committing' || p === 'completed';
}
/** A cancel is possible while the migration is not terminal and has not reached `committing`. */
export function isCancellable(p: MigrationPhase, cancelRequested = false): boolean {
  return !cancelRequested && !isTerminalPhase(p) && phaseIndex(p) < phaseIndex(POINT_OF_NO_RETURN);
}

export type MigrationMode = 'live' | 'cold';

/** Progress figures, as last reported by the agents (source for transfer, target for verify). */
export interface MigrationProgress {
  /** Bytes sent so far; never more than bytesTotal. */
  bytesDone: number;
  /**
   * Bytes this migration will have sent: grows at each pre-copy round (what was sent before it plus what the
   * round has to send); equal to bytesDone once the migration completed.
   */
  bytesTotal: number;
  /** Pre-copy round (1-based); 0 before the first round. */
  round: number;
  /** Bytes of the current round (pre-copy round or stop-copy) sent so far, and what it has to send. */
  roundBytesDone: number;
  roundBytesTotal: number;
  /** Bytes/s of memory dirtied by the guest during the last round. */
  dirtyRate: number;
  /** Bytes/s actually sent. */
  rate: number;
  /** Estimated time to completion in ms, or null when unknown. */
  etaMs: number | null;
  /** Downtime the sender expects if it stops now (remaining dirty bytes / rate). */
  expectedDowntimeMs: number | null;
  /** Measured downtime (pause on source -> unpause on target), known once resumed on the target. */
  downtimeMs: number | null;
}

export const EMPTY_PROGRESS: MigrationProgress = {
  bytesDone: 0,
  bytesTotal: 0,
  round: 0,
  roundBytesDone: 0,
  roundBytesTotal: 0,
  dirtyRate: 0,
  rate: 0,
  etaMs: null,
  expectedDowntimeMs: null,
  downtimeMs: null,
};
