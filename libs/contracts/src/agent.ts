/**
 * Agent <-> control plane protocol. ONE way:
 *  - control plane -> agent: BullMQ jobs on `ferry.host.{hostId}` (see jobs.ts)
 *  - agent -> control plane: HTTP (JSON) with `Authorization: Bearer <agent token>` on the paths below.
 * See docs/jobs.md for the sequence diagrams.
 */
import type { AgentMigrationPhase } from './migration';
import type { ByteOrder, Toolstack } from './toolstack';
import type { AgentError, HostCapacity, HostInventory, HostJobName, HostJobResults } from './jobs';

export const AGENT_API = {
  register: '/v1/agents/register',
  heartbeat: (hostId: string) => `/v1/agents/${encodeURIComponent(hostId)}/heartbeat`,
  reports: (hostId: string) => `/v1/agents/${encodeURIComponent(hostId)}/reports`,
  /** Ask to pass the point of no return (target agent, after restoring the guest paused). */
  commit: (hostId: string, migrationId: string) =>
    `/v1/agents/${encodeURIComponent(hostId)}/migrations/${encodeURIComponent(migrationId)}/commit`,
  /** Decision lookup (read only). */
  decision: (hostId: string, migrationId: string) =>
    `/v1/agents/${encodeURIComponent(hostId)}/migrations/${encodeURIComponent(migrationId)}/decision`,
  /**
   * Final decision for one attempt, aborting it unless it was committed (`ResolveRequest` ->
   * `ResolveResponse`): asked by an agent that lost its peer or its own process (restart) while
   * it holds a copy of the guest (a source whose guest is paused, a target with a restored copy).
   */
  resolve: (hostId: string, migrationId: string) =>
    `/v1/agents/${encodeURIComponent(hostId)}/migrations/${encodeURIComponent(migrationId)}/resolve`,
} as const;

/** Paths each agent serves on its `dataUrl` (agent <-> agent, v2 stream). */
export const AGENT_DATA_API = {
  /** PUT, body = v2 stream (application/octet-stream), `Authorization: Bearer <streamToken>`.
   *  Responds 200 `StreamReceiveResponse` after the target has decided commit/discard. */
  stream: (migrationId: string) => `/v1/streams/${encodeURIComponent(migrationId)}`,
} as const;

/**
 * A live migration between two `xl` hosts upgrades the same stream endpoint (GET, same bearer token
 * and attempt header, `Connection: Upgrade`, `Upgrade: <this>`) to a raw duplex byte stream after
 * auth: `101 Switching Protocols`, then xl's migration protocol both ways (docs/jobs.md).
 */
export const XL_MIGRATE_UPGRADE = 'ferry-xl-migrate';

export interface StreamReceiveResponse {
  committed: boolean;
  bytesReceived: number;
  reason?: string;
}

export interface RegisterRequest {
  hostId: string;
  /** Changes on every agent (or sim toolstack) restart: the control plane sees restarts/upgrades by it. */
  bootId: string;
  agentVersion: string;
  hostname: string;
  toolstack: Toolstack;
  byteOrder: ByteOrder;
  capacity: HostCapacity;
  /** Base URL other agents PUT streams to, e.g. http://10.0.0.5:7701 */
  dataUrl: string;
  inventory: HostInventory;
}

export interface RegisterResponse {
  hostId: string;
  /** BullMQ queue to consume, and the BullMQ prefix. */
  queueName: string;
  queuePrefix: string;
  heartbeatIntervalMs: number;
  /** The control plane marks the host offline after this long without a heartbeat. */
  offlineAfterMs: number;
  serverTime: string;
}

export type AgentHostState = 'ready' | 'upgrading';

export interface HeartbeatRequest {
  bootId: string;
  toolstack: Toolstack;
  state: AgentHostState;
  capacity: HostCapacity;
  inventory: HostInventory;
  /** Operation ids the agent is working on right now. */
  activeOperations: string[];
}

export interface HeartbeatResponse {
  ok: true;
  /** If true the agent must call register again (e.g. the control plane lost or never saw it). */
  reregister: boolean;
  /** Operations the control plane wants cancelled (belt and braces next to the `cancel` job). */
  cancelOperations: string[];
}

/** Progress of an operation. For migrations: the source reports transfer figures, the target `verifying`. */
export interface ProgressReport {
  type: 'progress';
  operationId: string;
  /** `attempt` from the job payload: reports of an older attempt are ignored. */
  attempt: number;
  job: HostJobName;
  /** Monotonic per operation and agent; stale reports (lower seq) are ignored. */
  seq: number;
  at: string;
  phase: AgentMigrationPhase | 'suspending' | 'uploading' | 'downloading' | 'restoring' | 'upgrading' | 'inventory';
  /** Never more than bytesTotal: a total that turns out larger than estimated grows instead. */
  bytesDone: number;
  bytesTotal: number;
  round: number;
  /** Migrations: bytes of the current round sent so far, and what the round has to send. */
  roundBytesDone?: number;
  roundBytesTotal?: number;
  /** Bytes/s dirtied by the guest during the last round. */
  dirtyRate: number;
  /** Bytes/s on the wire. */
  rate: number;
  etaMs: number | null;
  expectedDowntimeMs: number | null;
  /** Measured, once known (target after unpause). */
  downtimeMs: number | null;
}

export type CompletedReport = {
  [K in HostJobName]: { type: 'completed'; operationId: string; attempt: number; job: K; seq: number; at: string; result: HostJobResults[K] };
}[HostJobName];

export interface FailedReport {
  type: 'failed';
  operationId: string;
  attempt: number;
  job: HostJobName;
  seq: number;
  at: string;
  error: AgentError;
}

export type AgentReport = ProgressReport | CompletedReport | FailedReport;

/** POST reports: a batch; reports are idempotent (operationId, job, seq). */
export interface ReportsRequest {
  reports: AgentReport[];
}
export interface ReportsResponse {
  accepted: number;
  /** Operations among those reported that the control plane wants cancelled. */
  cancelOperations: string[];
}

export interface CommitRequest {
  /** The attempt from the migrate-receive payload: a stale attempt is always refused. */
  attempt: number;
  bytesReceived: number;
  /** Digest of the restored (paused) guest's memory. */
  memoryDigest: string | null;
}
/** commit=true: the migration is now in `committing` (point of no return): unpause on target.
 *  commit=false: cancelled / failed meanwhile: discard the target copy (the source resumes). */
export interface CommitResponse {
  commit: boolean;
  reason?: string;
}
export interface DecisionResponse {
  /** 'commit': target owns the guest, source destroys its copy. 'abort': source resumes. 'pending': ask again. */
  decision: 'commit' | 'abort' | 'pending';
}

export interface ResolveRequest {
  /** The attempt whose copy the agent holds. */
  attempt: number;
  /** Why the agent cannot go on (logged in the migration's error when this aborts it). */
  reason: string;
}
/**
 * 'commit': that attempt passed the point of no return: the target keeps (unpauses) its copy and
 * reports `completed`, the source destroys its copy. 'abort': it never will (the control plane
 * has just ended it, or it had ended): the target discards its copy, the source resumes its guest.
 */
export interface ResolveResponse {
  decision: 'commit' | 'abort';
}

/** Header the sender puts on the stream PUT. */
export const STREAM_ATTEMPT_HEADER = 'x-ferry-attempt';
