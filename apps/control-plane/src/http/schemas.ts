import {
  AGENT_ERROR_CODES,
  checkpointListQuerySchema,
  cursorPageQuery,
  decodeOffsetCursor,
  HOST_ID_PATTERN,
  HOST_JOB_NAMES,
  MIGRATION_PHASES,
  VM_ID_PATTERN,
  nextOffsetCursor,
  resumeRequestSchema,
  type Page,
} from '@ferry/contracts';
import { z } from './validation';

export const hostId = z.string().regex(HOST_ID_PATTERN, 'must match [A-Za-z0-9_.-]{1,64}');
export const vmId = z.string().regex(VM_ID_PATTERN, 'must match [A-Za-z0-9_.-]{1,128}');
export const anyId = z.string().regex(/^[A-Za-z0-9_.-]{1,200}$/, 'must match [A-Za-z0-9_.-]{1,200}');
/** `Idempotency-Key` (optional on every acting POST): 1-200 printable ASCII characters. */
export const idemKey = z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');

export const pageQuery = cursorPageQuery;

/**
 * A collection's query (filters + limit + cursor) that also yields the position the cursor names;
 * a cursor this service did not hand out is a 400 on `cursor`.
 */
export function paged<T extends z.ZodRawShape>(schema: z.ZodObject<T, 'strict'>) {
  return schema.transform((q, ctx) => {
    const cursor = (q as { cursor?: string }).cursor;
    const offset = cursor === undefined ? 0 : decodeOffsetCursor(cursor);
    if (offset === null) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['cursor'], message: 'must be a nextCursor of a previous page' });
      return z.NEVER;
    }
    return { ...q, offset };
  });
}

/** One page of an in-memory list, in the shape every collection answers with. */
export function pageOf<T>(all: T[], q: { limit: number; offset: number }): Page<T> {
  const items = all.slice(q.offset, q.offset + q.limit);
  return { items, total: all.length, limit: q.limit, nextCursor: nextOffsetCursor(q.offset, items.length, all.length) };
}

export const pageSchema = paged(z.object(pageQuery).strict());
export const hostQuery = paged(z.object({ state: z.enum(['online', 'offline', 'upgrading']).optional(), ...pageQuery }).strict());

const bool = z.enum(['true', 'false'], { errorMap: () => ({ message: 'must be true or false' }) }).transform((v) => v === 'true');

export const toolstack = z
  .object({
    xenVersion: z.string().regex(/^\d+\.\d+(\.\d+)?$/, 'must look like 4.17'),
    bitness: z.union([z.literal(32), z.literal(64)], { errorMap: () => ({ message: 'must be 32 or 64' }) }),
    streamFormat: z.enum(['legacy', 'v2']),
  })
  .strict();

export const createMigration = z
  .object({
    vm: vmId,
    target: hostId.optional(),
    mode: z.enum(['live', 'cold']),
    bandwidth: z.number().positive('must be > 0').max(100_000, 'must be <= 100000 MiB/s').optional(),
  })
  .strict();

export const migrationQuery = paged(
  z
    .object({
      phase: z.enum(MIGRATION_PHASES).optional(),
      vm: vmId.optional(),
      host: hostId.optional(),
      campaign: anyId.optional(),
      active: bool.optional(),
      ...pageQuery,
    })
    .strict(),
);

export const vmQuery = paged(z.object({ host: hostId.optional(), state: z.string().max(32).optional(), ...pageQuery }).strict());
export const checkpointQuery = paged(checkpointListQuerySchema);

export const maintenance = z.object({ enabled: z.boolean() }).strict();
export const drain = z.object({ evacuate: z.boolean().optional() }).strict();
export const resumeBody = resumeRequestSchema;
export const suspendBody = z.object({ reason: z.string().max(500).optional() }).strict();

export const createCampaign = z
  .object({
    name: z.string().min(1).max(200).optional(),
    hosts: z
      .object({
        ids: z.array(hostId).min(1).max(1000).optional(),
        bitness: z.union([z.literal(32), z.literal(64)], { errorMap: () => ({ message: 'must be 32 or 64' }) }).optional(),
        streamFormat: z.enum(['legacy', 'v2']).optional(),
        xenVersion: z.string().max(32).optional(),
      })
      .strict()
      .refine((s) => Object.keys(s).length > 0, 'must select by ids, bitness, streamFormat or xenVersion'),
    strategy: z.enum(['evacuate-and-return', 'suspend-and-resume']),
    maxParallelHosts: z.number().int('must be an integer').min(1).max(100),
    maxParallelMigrations: z.number().int('must be an integer').min(1).max(1000),
    onError: z.enum(['stop', 'continue']),
    targetToolstack: toolstack.optional(),
  })
  .strict();

// ---------- agent protocol ----------

const capacity = z.object({ memoryMiB: z.number().int().min(0), vcpus: z.number().int().min(0), maxGuests: z.number().int().min(0) }).strict();
const guest = z
  .object({
    vmId,
    name: z.string().min(1).max(200),
    type: z.enum(['pv', 'hvm']),
    guestWidth: z.union([z.literal(32), z.literal(64)]).optional(),
    memoryMiB: z.number().int().min(1),
    vcpus: z.number().int().min(1),
    state: z.enum(['running', 'paused', 'migrating-out', 'migrating-in', 'suspending', 'resuming']),
    memoryDigest: z.string().max(200).nullable(),
  })
  .strict();
const inventory = z.object({ guests: z.array(guest).max(100_000) }).strict();

export const register = z
  .object({
    hostId,
    bootId: z.string().min(1).max(200),
    agentVersion: z.string().min(1).max(100),
    hostname: z.string().min(1).max(255),
    toolstack,
    byteOrder: z.enum(['little', 'big']),
    capacity,
    dataUrl: z.string().url(),
    inventory,
  })
  .strict();

export const heartbeat = z
  .object({
    bootId: z.string().min(1).max(200),
    toolstack,
    state: z.enum(['ready', 'upgrading']),
    capacity,
    inventory,
    activeOperations: z.array(anyId).max(10_000),
  })
  .strict();

const num = z.number().min(0);
const nnum = z.number().min(0).nullable();
const base = { operationId: anyId, attempt: z.number().int().min(1), job: z.enum(HOST_JOB_NAMES), seq: z.number().int().min(0), at: z.string().max(64) };
export const report = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('progress'),
    ...base,
    phase: z.string().min(1).max(32),
    bytesDone: num,
    bytesTotal: num,
    round: z.number().int().min(0),
    roundBytesDone: num.optional(),
    roundBytesTotal: num.optional(),
    dirtyRate: num,
    rate: num,
    etaMs: nnum,
    expectedDowntimeMs: nnum,
    downtimeMs: nnum,
  }),
  z.object({ type: z.literal('completed'), ...base, result: z.record(z.unknown()) }),
  z.object({
    type: z.literal('failed'),
    ...base,
    error: z.object({ code: z.enum(AGENT_ERROR_CODES), message: z.string().max(2000), retryable: z.boolean() }),
  }),
]);
export const reports = z.object({ reports: z.array(report).min(1).max(1000) }).strict();
export const commit = z.object({ attempt: z.number().int().min(1), bytesReceived: num, memoryDigest: z.string().max(200).nullable() }).strict();
export const resolve = z.object({ attempt: z.number().int().min(1), reason: z.string().max(1000) }).strict();

const vmSpec = z.object({ vmId, name: z.string().min(1).max(200), type: z.enum(['pv', 'hvm']), guestWidth: z.union([z.literal(32), z.literal(64)]).optional(), memoryMiB: z.number().int().min(1), vcpus: z.number().int().min(1) });
const digest = z.string().max(200).nullable();
export const jobResults = {
  'migrate-send': z.object({ migrationId: anyId, bytesSent: num, rounds: z.number().int().min(0), downtimeMs: num, outcome: z.literal('handed-off') }),
  'migrate-receive': z.object({ migrationId: anyId, bytesReceived: num, memoryDigest: digest, outcome: z.literal('running-on-target') }),
  suspend: z.object({ checkpoint: z.object({ checkpointId: anyId, vmId, bytes: num, sha256: z.string().max(128), memoryDigest: digest, vm: vmSpec }) }),
  resume: z.object({ vmId, memoryDigest: digest }),
  inventory: z.object({ inventory }),
  upgrade: z.object({ previous: toolstack, toolstack }),
  cancel: z.object({ targetOperationId: anyId, cancelled: z.boolean() }),
} as const;
