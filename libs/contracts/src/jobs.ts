/**
 * Queues and jobs: the single source of truth. See docs/jobs.md.
 *
 * One BullMQ queue per host, `ferry.host.{hostId}`, consumed ONLY by that host's agent.
 * BullMQ keys live under `{prefix}:{queueName}:*` (prefix default `ferry`), so an agent's Redis
 * ACL user is limited to `{prefix}:ferry.host.{hostId}:*`.
 * The control plane's own work (scheduling, campaigns, stall detection) runs on leases in Redis,
 * not on agent-visible queues.
 */
import type { Bitness, GuestType, RestoreFormat, Toolstack } from './toolstack';
import type { AgentMigrationPhase, MigrationMode } from './migration';

export const HOST_QUEUE_PREFIX = 'ferry.host.';
export const DEFAULT_QUEUE_PREFIX = 'ferry';

/** Queue of one host's agent. hostId: [A-Za-z0-9_.-]{1,64}. */
export function hostQueueName(hostId: string): string {
  return `${HOST_QUEUE_PREFIX}${hostId}`;
}
export const HOST_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
export const VM_ID_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;

/** Control-plane queues (consumed by `worker.ts`, never by agents). */
export const CONTROL_PLANE_QUEUES = {
  /** Wake-ups for the scheduler (payload-free ticks; the state itself lives in Redis). */
  scheduler: 'ferry.cp.scheduler',
} as const;

export const HOST_JOB_NAMES = [
  'migrate-send',
  'migrate-receive',
  'suspend',
  'resume',
  'inventory',
  'upgrade',
  'cancel',
] as const;
export type HostJobName = (typeof HOST_JOB_NAMES)[number];

/** Every job carries the operation it belongs to; reports about it quote the same id. */
interface JobBase {
  /** Migration id for migrate-*, operation id otherwise. Unique per attempt target. */
  operationId: string;
  /** 1-based attempt number (the control plane retries by dispatching a new attempt). */
  attempt: number;
}

export interface VmSpec {
  vmId: string;
  name: string;
  type: GuestType;
  /** PV only. */
  guestWidth?: Bitness;
  memoryMiB: number;
  vcpus: number;
}

export interface MigrateSendPayload extends JobBase {
  migrationId: string;
  vmId: string;
  mode: MigrationMode;
  /** Cap on the wire, bytes/s; null = unlimited. */
  bandwidthBytesPerSec: number | null;
  target: {
    hostId: string;
    /** Base URL of the target agent's stream endpoint (from its register call). */
    dataUrl: string;
  };
  /** Bearer token for the target agent's stream endpoint, valid for this migration only. */
  streamToken: string;
  /** How the source reads its own image: legacy sources convert to v2 at their edge (ingestToV2). */
  sourceFormat: { format: 'legacy' | 'v2'; width: Bitness };
  /** Live: stop pre-copy when expected downtime <= this, or after maxRounds. */
  downtimeTargetMs: number;
  maxRounds: number;
}

export interface MigrateReceivePayload extends JobBase {
  migrationId: string;
  vm: VmSpec;
  mode: MigrationMode;
  source: { hostId: string };
  /** The sender must present this token. */
  streamToken: string;
  /** The wire is v2; write it as v2 or down-convert to legacy at this width (legacyFromV2). */
  restore: RestoreFormat;
  /** Give up (fail with code TIMEOUT) if the sender has not connected within this time. */
  connectTimeoutMs: number;
}

/** Where a checkpoint lives in the suspend-store (FERRY_STORE_URL). */
export interface StoreRef {
  /** Base URL of the suspend-store. */
  url: string;
  /** Checkpoint id in the store. */
  checkpointId: string;
}

export interface SuspendPayload extends JobBase {
  vmId: string;
  store: StoreRef;
  /** Keep the guest's domain after the image is safely stored? false = destroy it (normal suspend). */
  keepRunning: boolean;
}

export interface ResumePayload extends JobBase {
  vm: VmSpec;
  store: StoreRef;
  /** Store images are v2; write as v2 or down-convert at this width. */
  restore: RestoreFormat;
}

export interface InventoryPayload extends JobBase {
  /** nothing else: the agent answers with a heartbeat carrying its inventory, and a completed report. */
  reason?: string;
}

export interface UpgradePayload extends JobBase {
  campaignId: string | null;
  /** Toolstack to come back with (sim hosts: restart the toolstack as 64-bit v2). */
  toolstack: Toolstack;
}

export interface CancelPayload extends JobBase {
  /** The operation (migration id or operation id) to cancel. */
  targetOperationId: string;
  /** Cancel this attempt (and any older one) of that operation, never a newer one. */
  targetAttempt: number;
  reason: string;
}

/** The cancel job for one attempt of an operation (its own id is derived, so a repeat is idempotent). */
export function cancelPayload(targetOperationId: string, targetAttempt: number, reason: string): CancelPayload {
  return { operationId: `cancel-${targetOperationId}-${targetAttempt}`, attempt: 1, targetOperationId, targetAttempt, reason };
}

export interface HostJobPayloads {
  'migrate-send': MigrateSendPayload;
  'migrate-receive': MigrateReceivePayload;
  suspend: SuspendPayload;
  resume: ResumePayload;
  inventory: InventoryPayload;
  upgrade: UpgradePayload;
  cancel: CancelPayload;
}

// ---------- results (sent in the `completed` report; also returned from the BullMQ handler) ----------

export interface MigrateSendResult {
  migrationId: string;
  bytesSent: number;
  rounds: number;
  /** Source pause -> the target's 200 answer on the stream PUT (sent after it unpaused): the measured downtime. */
  downtimeMs: number;
  /** Commit granted, source copy destroyed. (If the guest stays on the source the agent sends a `failed` report instead.) */
  outcome: 'handed-off';
}
export interface MigrateReceiveResult {
  migrationId: string;
  bytesReceived: number;
  /** Digest of the guest's (sim) memory after restore on the target. */
  memoryDigest: string | null;
  outcome: 'running-on-target';
}
export interface CheckpointInfo {
  checkpointId: string;
  vmId: string;
  bytes: number;
  /** sha256 of the stored (v2) image, hex. */
  sha256: string;
  memoryDigest: string | null;
  vm: VmSpec;
}
export interface SuspendResult {
  checkpoint: CheckpointInfo;
}
export interface ResumeResult {
  vmId: string;
  memoryDigest: string | null;
}
export interface InventoryResult {
  inventory: HostInventory;
}
export interface UpgradeResult {
  previous: Toolstack;
  toolstack: Toolstack;
}
export interface CancelResult {
  targetOperationId: string;
  /** false if the operation was unknown, finished, or past its point of no return. */
  cancelled: boolean;
}

export interface HostJobResults {
  'migrate-send': MigrateSendResult;
  'migrate-receive': MigrateReceiveResult;
  suspend: SuspendResult;
  resume: ResumeResult;
  inventory: InventoryResult;
  upgrade: UpgradeResult;
  cancel: CancelResult;
}

// ---------- inventory ----------

export type GuestRunState = 'running' | 'paused' | 'migrating-out' | 'migrating-in' | 'suspending' | 'resuming';

export interface GuestInventory extends VmSpec {
  state: GuestRunState;
  /** Sim guests: digest of guest memory ("sha256:<hex>"); real guests: null. */
  memoryDigest: string | null;
}

export interface HostInventory {
  guests: GuestInventory[];
}

export interface HostCapacity {
  memoryMiB: number;
  vcpus: number;
  maxGuests: number;
}

/** Error codes an agent puts in a `failed` report. `retryable` tells the control plane whether to try again. */
export const AGENT_ERROR_CODES = [
  'VM_NOT_FOUND',
  'GUESTS_PRESENT',
  'INCOMPATIBLE',
  'STREAM_ERROR',
  'STORE_ERROR',
  'TIMEOUT',
  'CANCELLED',
  'COMMIT_REFUSED',
  'NO_CAPACITY',
  'TOOLSTACK_ERROR',
  'INTERNAL',
] as const;
export type AgentErrorCode = (typeof AGENT_ERROR_CODES)[number];

export interface AgentError {
  code: AgentErrorCode;
  message: string;
  retryable: boolean;
}

export type { AgentMigrationPhase };
