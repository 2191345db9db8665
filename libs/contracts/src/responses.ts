/**
 * zod schemas of the control plane's main answer bodies: the OpenAPI document describes answers
 * with them and the contract test checks real answers against them. Each is tied to its interface
 * in api.ts both ways (below), so the two cannot drift apart.
 */
import { z } from 'zod';
import type { CampaignDto, CampaignPlanDto, HostDto, MigrationDto, OperationDto, VmDto } from './api';
import { MIGRATION_PHASES } from './migration';

const iso = z.string().describe('ISO-8601 time');
const bitness = z.union([z.literal(32), z.literal(64)]);
const toolstack = z.object({ xenVersion: z.string(), bitness, streamFormat: z.enum(['legacy', 'v2']) });
const errorInfo = z.object({ code: z.string(), message: z.string() }).nullable();
const conflict = z.object({
  vmId: z.string(),
  hostId: z.string(),
  ownerHostId: z.string().nullable(),
  reportedState: z.enum(['running', 'paused', 'migrating-out', 'migrating-in', 'suspending', 'resuming']),
  reportedDigest: z.string().nullable(),
  since: iso,
});

export const hostDtoSchema = z
  .object({
    id: z.string(),
    hostname: z.string(),
    toolstack,
    byteOrder: z.enum(['little', 'big']),
    state: z.enum(['online', 'offline', 'upgrading']),
    draining: z.boolean(),
    maintenance: z.boolean(),
    capacity: z.object({ memoryMiB: z.number(), vcpus: z.number(), maxGuests: z.number() }),
    used: z.object({ memoryMiB: z.number(), guests: z.number() }),
    lastHeartbeatAt: iso.nullable(),
    registeredAt: iso,
    bootId: z.string(),
    agentVersion: z.string(),
    dataUrl: z.string(),
    campaignId: z.string().nullable(),
    conflicts: z.array(conflict),
  })
  .describe('a host and its agent');

export const vmDtoSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    hostId: z.string().nullable(),
    type: z.enum(['pv', 'hvm']),
    guestWidth: bitness.nullable(),
    memoryMiB: z.number(),
    vcpus: z.number(),
    state: z.enum(['running', 'paused', 'migrating', 'suspending', 'suspended', 'resuming', 'missing']),
    memoryDigest: z.string().nullable(),
    latestCheckpoint: z
      .object({ id: z.string(), vmId: z.string(), createdAt: iso, sourceHostId: z.string(), bytes: z.number(), sha256: z.string(), memoryDigest: z.string().nullable() })
      .nullable(),
    activeOperationId: z.string().nullable(),
    conflicts: z.array(conflict),
    updatedAt: iso,
  })
  .describe('a VM');

export const operationDtoSchema = z
  .object({
    id: z.string(),
    kind: z.enum(['suspend', 'resume', 'upgrade', 'inventory']),
    vmId: z.string().nullable(),
    hostId: z.string().nullable(),
    state: z.enum(['queued', 'running', 'completed', 'failed', 'cancelled']),
    phase: z.string(),
    progress: z.object({ bytesDone: z.number(), bytesTotal: z.number() }),
    checkpointId: z.string().nullable(),
    campaignId: z.string().nullable(),
    error: errorInfo,
    createdAt: iso,
    updatedAt: iso,
  })
  .describe('a suspend, resume, upgrade or inventory operation');

export const migrationDtoSchema = z
  .object({
    id: z.string(),
    vmId: z.string(),
    sourceHostId: z.string(),
    targetHostId: z.string().nullable(),
    requestedTargetHostId: z.string().nullable(),
    mode: z.enum(['live', 'cold']),
    bandwidthMiBps: z.number().nullable(),
    phase: z.enum(MIGRATION_PHASES),
    progress: z.object({
      bytesDone: z.number(),
      bytesTotal: z.number(),
      round: z.number(),
      roundBytesDone: z.number(),
      roundBytesTotal: z.number(),
      dirtyRate: z.number(),
      rate: z.number(),
      etaMs: z.number().nullable(),
      expectedDowntimeMs: z.number().nullable(),
      downtimeMs: z.number().nullable(),
    }),
    cancellable: z.boolean(),
    cancelRequested: z.boolean(),
    pointOfNoReturn: z.object({ phase: z.literal('committing'), passed: z.boolean() }),
    waitingReason: z.string().nullable(),
    restore: z.union([z.object({ format: z.literal('v2') }), z.object({ format: z.literal('legacy'), width: bitness })]).nullable(),
    attempt: z.number(),
    maxAttempts: z.number(),
    nextAttemptAt: iso.nullable(),
    error: errorInfo,
    campaignId: z.string().nullable(),
    createdAt: iso,
    updatedAt: iso,
    startedAt: iso.nullable(),
    finishedAt: iso.nullable(),
  })
  .describe('a migration');

const campaignRequest = z.object({
  name: z.string().optional(),
  hosts: z.object({ ids: z.array(z.string()).optional(), bitness: bitness.optional(), streamFormat: z.enum(['legacy', 'v2']).optional(), xenVersion: z.string().optional() }),
  strategy: z.enum(['evacuate-and-return', 'suspend-and-resume']),
  maxParallelHosts: z.number(),
  maxParallelMigrations: z.number(),
  onError: z.enum(['stop', 'continue']),
  targetToolstack: toolstack.optional(),
});
const campaignHost = z.object({
  hostId: z.string(),
  order: z.number(),
  toolstackBefore: toolstack,
  toolstackAfter: toolstack,
  vms: z.array(
    z.object({
      vmId: z.string(),
      action: z.enum(['migrate', 'suspend']),
      parkOn: z.string().nullable(),
      state: z.enum(['pending', 'moving-out', 'parked', 'moving-back', 'returned', 'failed']).optional(),
      outOperationId: z.string().nullable().optional(),
      backOperationId: z.string().nullable().optional(),
      error: z.string().nullable().optional(),
    }),
  ),
  state: z.enum(['pending', 'draining', 'upgrading', 'awaiting-return', 'refilling', 'done', 'failed', 'skipped']).optional(),
  upgradeOperationId: z.string().nullable().optional(),
  upgradeRetries: z.number().optional(),
  error: z.string().nullable().optional(),
  startedAt: iso.nullable().optional(),
  finishedAt: iso.nullable().optional(),
  durationMs: z.number().nullable().optional(),
});
const blocker = z.object({
  hostId: z.string().nullable(),
  vmId: z.string().nullable(),
  code: z.enum(['NO_HOSTS', 'HOST_OFFLINE', 'NO_COMPATIBLE_TARGET', 'NO_CAPACITY', 'HOST_BUSY', 'ALREADY_UPGRADED', 'IN_OTHER_CAMPAIGN']),
  message: z.string(),
});

export const campaignPlanDtoSchema = z
  .object({ request: campaignRequest, hosts: z.array(campaignHost), blockers: z.array(blocker), feasible: z.boolean() })
  .describe('the plan of an upgrade campaign and every blocker');

export const campaignDtoSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    state: z.enum(['running', 'paused', 'aborting', 'aborted', 'completed', 'failed']),
    request: campaignRequest,
    hosts: z.array(campaignHost),
    blockers: z.array(blocker),
    counts: z.object({ hostsTotal: z.number(), hostsDone: z.number(), hostsFailed: z.number() }),
    error: z.string().nullable(),
    createdAt: iso,
    updatedAt: iso,
    finishedAt: iso.nullable(),
    timing: z.object({ elapsedMs: z.number(), meanHostMs: z.number().nullable(), etaMs: z.number().nullable() }),
  })
  .describe('an upgrade campaign');

/** A page of items of this schema (page.ts). */
export function pageSchemaOf<T extends z.ZodTypeAny>(item: T) {
  return z.object({ items: z.array(item), nextCursor: z.string().nullable(), limit: z.number().int(), total: z.number().int() });
}

// Both ways: a field added to an interface and not here (or the reverse) fails the typecheck.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const same = <T extends true>(): T => true as T;
same<Same<z.infer<typeof hostDtoSchema>, HostDto>>();
same<Same<z.infer<typeof vmDtoSchema>, VmDto>>();
same<Same<z.infer<typeof operationDtoSchema>, OperationDto>>();
same<Same<z.infer<typeof migrationDtoSchema>, MigrationDto>>();
same<Same<z.infer<typeof campaignDtoSchema>, CampaignDto>>();
same<Same<z.infer<typeof campaignPlanDtoSchema>, CampaignPlanDto>>();
