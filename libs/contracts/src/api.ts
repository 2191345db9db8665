/**
 * REST DTOs shared by the control plane, the dashboard and the CLI (all under /v1).
 * Times are ISO-8601 strings. Lists are `Page<T>` (page.ts) with `limit`/`cursor` query parameters;
 * errors are problem details (problem.ts).
 */
import type { Bitness, ByteOrder, GuestType, RestoreFormat, StreamFormat, Toolstack } from './toolstack';
import type { MigrationMode, MigrationPhase, MigrationProgress } from './migration';
import type { GuestRunState, HostCapacity } from './jobs';
import type { CheckpointDto } from './checkpoints';
import type { Problem } from './problem';

export type Role = 'viewer' | 'operator' | 'admin';
/** In rising rank: each may do what the ones before it may. */
export const ROLES: readonly Role[] = ['viewer', 'operator', 'admin'];

/** Body of every 4xx/5xx answer: an RFC 9457 problem (problem.ts). */
export type ApiError = Problem;

// ---------- hosts ----------

/** online: heartbeating; offline: no heartbeat for offlineAfterMs; upgrading: toolstack restart in progress. */
export type HostState = 'online' | 'offline' | 'upgrading';

export interface HostDto {
  id: string;
  hostname: string;
  toolstack: Toolstack;
  byteOrder: ByteOrder;
  state: HostState;
  /** Operator/campaign flags: no new work lands on a draining or maintenance host. */
  draining: boolean;
  maintenance: boolean;
  capacity: HostCapacity;
  used: { memoryMiB: number; guests: number };
  lastHeartbeatAt: string | null;
  registeredAt: string;
  bootId: string;
  agentVersion: string;
  dataUrl: string;
  /** Campaign currently working on this host, if any. */
  campaignId: string | null;
  /** Guests this host's inventory lists as running that the control plane has elsewhere (flagged, not applied). */
  conflicts: InventoryConflict[];
}

/**
 * A host's inventory lists a guest as running whose record belongs to another host (or to the store):
 * the control plane trusts a host only about itself, so it flags the claim instead of applying it
 * (docs/jobs.md, "Inventory"). Gone once that host stops listing the guest or may adopt it.
 */
export interface InventoryConflict {
  vmId: string;
  /** The host whose inventory lists the guest. */
  hostId: string;
  /** Where the VM's record is (null: suspended, in the store). */
  ownerHostId: string | null;
  reportedState: GuestRunState;
  reportedDigest: string | null;
  /** First heartbeat or registration that made the claim. */
  since: string;
}

export interface MaintenanceRequest {
  enabled: boolean;
}
export interface DrainRequest {
  /** true (default): also move the guests away (live migrations to compatible hosts). */
  evacuate?: boolean;
}

// ---------- vms ----------

export type VmState = 'running' | 'paused' | 'migrating' | 'suspending' | 'suspended' | 'resuming' | 'missing';

/** What every view of a checkpoint carries (CheckpointDto and the control plane's record extend it). */
export interface CheckpointSummary {
  id: string;
  vmId: string;
  createdAt: string;
  /** The host the VM was suspended from. */
  sourceHostId: string;
  /** Size and sha256 the agent reported for its upload. */
  bytes: number;
  sha256: string;
  memoryDigest: string | null;
}

export interface VmDto {
  id: string;
  name: string;
  /** null while suspended (it lives in the suspend-store). */
  hostId: string | null;
  type: GuestType;
  guestWidth: Bitness | null;
  memoryMiB: number;
  vcpus: number;
  state: VmState;
  /** Sim guests: digest of guest memory as last reported by the agent. */
  memoryDigest: string | null;
  latestCheckpoint: CheckpointSummary | null;
  /** Active migration or operation, if any. */
  activeOperationId: string | null;
  /** Other hosts that list this VM as running on them (see InventoryConflict). */
  conflicts: InventoryConflict[];
  updatedAt: string;
}

export interface SuspendRequest {
  /** nothing yet; reserved */
  reason?: string;
}
export interface ResumeRequest {
  /** Host to resume on; the scheduler picks a compatible one when absent. */
  host?: string;
  /** Checkpoint to resume from (any checkpoint of this VM, see GET /v1/checkpoints?vm=); default: the latest. */
  checkpointId?: string;
}

export type OperationKind = 'suspend' | 'resume' | 'upgrade' | 'inventory';
export type OperationState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface OperationDto {
  id: string;
  kind: OperationKind;
  vmId: string | null;
  hostId: string | null;
  state: OperationState;
  phase: string;
  progress: { bytesDone: number; bytesTotal: number };
  checkpointId: string | null;
  campaignId: string | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

// ---------- migrations ----------

export interface CreateMigrationRequest {
  vm: string;
  /** Target host id; the scheduler picks one when absent. */
  target?: string;
  mode: MigrationMode;
  /** Cap in MiB/s. */
  bandwidth?: number;
}

export interface MigrationDto {
  id: string;
  vmId: string;
  sourceHostId: string;
  /** Chosen target (null while queued without one). */
  targetHostId: string | null;
  requestedTargetHostId: string | null;
  mode: MigrationMode;
  bandwidthMiBps: number | null;
  phase: MigrationPhase;
  progress: MigrationProgress;
  /** A cancel now would leave the VM on its source. */
  cancellable: boolean;
  cancelRequested: boolean;
  pointOfNoReturn: { phase: 'committing'; passed: boolean };
  /** Why it is still queued (limits, no compatible target, backoff), when queued. */
  waitingReason: string | null;
  restore: RestoreFormat | null;
  attempt: number;
  maxAttempts: number;
  nextAttemptAt: string | null;
  error: { code: string; message: string } | null;
  campaignId: string | null;
  createdAt: string;
  updatedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface MigrationListQuery {
  phase?: MigrationPhase;
  vm?: string;
  host?: string;
  campaign?: string;
  /** active = not terminal */
  active?: boolean;
  limit?: number;
  cursor?: string;
}

// ---------- campaigns ----------

export interface HostSelector {
  ids?: string[];
  bitness?: Bitness;
  streamFormat?: StreamFormat;
  xenVersion?: string;
}

export type CampaignStrategy = 'evacuate-and-return' | 'suspend-and-resume';

export interface CreateCampaignRequest {
  name?: string;
  hosts: HostSelector;
  strategy: CampaignStrategy;
  maxParallelHosts: number;
  maxParallelMigrations: number;
  onError: 'stop' | 'continue';
  /** Default: 64-bit v2 (DEFAULT_UPGRADE_TOOLSTACK). */
  targetToolstack?: Toolstack;
}

export type CampaignState = 'running' | 'paused' | 'aborting' | 'aborted' | 'completed' | 'failed';
export type CampaignHostStepState =
  | 'pending'
  | 'draining'
  | 'upgrading'
  | 'awaiting-return'
  | 'refilling'
  | 'done'
  | 'failed'
  | 'skipped';

export interface CampaignVmPlan {
  vmId: string;
  action: 'migrate' | 'suspend';
  /** evacuate-and-return: host the VM is parked on while its home upgrades. */
  parkOn: string | null;
  /** State of this VM's step (only in a running campaign). */
  state?: 'pending' | 'moving-out' | 'parked' | 'moving-back' | 'returned' | 'failed';
  /** Operation/migration ids, as they happen. */
  outOperationId?: string | null;
  backOperationId?: string | null;
  error?: string | null;
}

export interface CampaignHostPlan {
  hostId: string;
  order: number;
  toolstackBefore: Toolstack;
  toolstackAfter: Toolstack;
  vms: CampaignVmPlan[];
  state?: CampaignHostStepState;
  upgradeOperationId?: string | null;
  /** Upgrades refused because a guest was still on the host (its hand-off not yet finished), retried. */
  upgradeRetries?: number;
  error?: string | null;
  startedAt?: string | null;
  finishedAt?: string | null;
  /** Time this host's step took (finished) or has taken so far (running); null before it starts. Computed when served. */
  durationMs?: number | null;
}

export interface CampaignBlocker {
  hostId: string | null;
  vmId: string | null;
  code: 'NO_HOSTS' | 'HOST_OFFLINE' | 'NO_COMPATIBLE_TARGET' | 'NO_CAPACITY' | 'HOST_BUSY' | 'ALREADY_UPGRADED' | 'IN_OTHER_CAMPAIGN';
  message: string;
}

export interface CampaignPlanDto {
  request: CreateCampaignRequest;
  hosts: CampaignHostPlan[];
  blockers: CampaignBlocker[];
  /** true when there are no blockers. */
  feasible: boolean;
}

export interface CampaignDto {
  id: string;
  name: string;
  state: CampaignState;
  request: CreateCampaignRequest;
  hosts: CampaignHostPlan[];
  blockers: CampaignBlocker[];
  counts: { hostsTotal: number; hostsDone: number; hostsFailed: number };
  error: string | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  /** Computed when served (campaignWithTiming); never stored. */
  timing: CampaignTiming;
}

export interface CampaignTiming {
  /** From creation to now, or to finishedAt once the campaign ended. */
  elapsedMs: number;
  /** Mean duration of the host steps finished so far; null before the first one ends. */
  meanHostMs: number | null;
  /**
   * Estimated time left: the running hosts' remaining time at the mean, then the pending hosts in waves of
   * maxParallelHosts at the mean each. 0 once ended; null before the first host finished (nothing to go by).
   */
  etaMs: number | null;
}

/** A campaign as stored: everything but what is computed when served. */
export type CampaignDoc = Omit<CampaignDto, 'timing'>;

const CAMPAIGN_ENDED: readonly CampaignState[] = ['completed', 'aborted', 'failed'];
const HOST_ENDED: readonly CampaignHostStepState[] = ['done', 'failed', 'skipped'];

/** Adds elapsed time, per-host durations and an ETA to a stored campaign, as of `now` (ms since the epoch). */
export function campaignWithTiming(c: CampaignDoc, now: number): CampaignDto {
  const ended = CAMPAIGN_ENDED.includes(c.state);
  const end = ended && c.finishedAt ? Date.parse(c.finishedAt) : now;
  const hosts = c.hosts.map((h) => {
    if (!h.startedAt) return { ...h, durationMs: null };
    const stop = h.finishedAt ? Date.parse(h.finishedAt) : end;
    return { ...h, durationMs: Math.max(0, stop - Date.parse(h.startedAt)) };
  });
  const finished = hosts.filter((h) => h.finishedAt && h.durationMs !== null && h.state === 'done');
  const meanHostMs = finished.length ? Math.round(finished.reduce((a, h) => a + (h.durationMs ?? 0), 0) / finished.length) : null;
  let etaMs: number | null = null;
  if (ended) etaMs = 0;
  else if (meanHostMs !== null) {
    const open = hosts.filter((h) => !HOST_ENDED.includes(h.state ?? 'pending'));
    const running = open.filter((h) => h.startedAt);
    const pending = open.length - running.length;
    const runningLeft = Math.max(0, ...running.map((h) => meanHostMs - (h.durationMs ?? 0)));
    etaMs = Math.round(runningLeft + Math.ceil(pending / Math.max(1, c.request.maxParallelHosts)) * meanHostMs);
  }
  return { ...c, hosts, timing: { elapsedMs: Math.max(0, end - Date.parse(c.createdAt)), meanHostMs, etaMs } };
}

// ---------- events (SSE on GET /v1/events) ----------

export type EventEntity = 'host' | 'vm' | 'migration' | 'campaign' | 'operation' | 'checkpoint';

export type FerryEventType =
  | 'host.updated'
  | 'host.offline'
  | 'vm.updated'
  | 'migration.updated'
  | 'migration.progress'
  | 'operation.updated'
  | 'campaign.updated'
  | 'checkpoint.updated'
  | 'checkpoint.deleted';

/** One SSE message: `id:` = Redis stream id (send Last-Event-ID to resume), `event:` = type, `data:` = JSON of this. */
export interface FerryEvent {
  id: string;
  type: FerryEventType;
  at: string;
  entity: EventEntity;
  entityId: string;
  data: HostDto | VmDto | MigrationDto | OperationDto | CampaignDto | CheckpointDto | Record<string, unknown>;
}

export interface HealthDto {
  status: 'ok' | 'error';
  checks: Record<string, 'ok' | string>;
}
