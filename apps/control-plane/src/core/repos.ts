/** Redis I/O. Every piece of state lives here; services hold the logic. */
import { Inject, Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import {
  EMPTY_PROGRESS,
  MIGRATION_PHASES,
  type CampaignDoc,
  type CheckpointSummary,
  type FerryEvent,
  type FerryEventType,
  type EventEntity,
  type HostCapacity,
  type InventoryConflict,
  type ByteOrder,
  type MigrationMode,
  type MigrationPhase,
  type MigrationProgress,
  type OperationDto,
  type OperationKind,
  type OperationState,
  type RestoreFormat,
  type Toolstack,
  type VmSpec,
  type VmState,
} from '@ferry/contracts';
import { CP_CONFIG, REDIS, type CpConfig } from '../config';
import { Keys, nowIso, parseJson } from './redis';

export const INFLIGHT_PHASES: MigrationPhase[] = ['dispatched', 'preparing', 'precopy', 'stop-copy', 'verifying', 'committing'];
export const PRE_PONR_ACTIVE: MigrationPhase[] = ['queued', 'dispatched', 'preparing', 'precopy', 'stop-copy', 'verifying'];

@Injectable()
export class RedisKeys extends Keys {
  constructor(@Inject(CP_CONFIG) cfg: CpConfig) {
    super(cfg.FERRY_KEY_PREFIX);
  }
}

// ---------------- hosts ----------------

export interface HostInfo {
  hostname: string;
  toolstack: Toolstack;
  byteOrder: ByteOrder;
  capacity: HostCapacity;
  bootId: string;
  agentVersion: string;
  dataUrl: string;
  registeredAt: string;
}
export interface HostRecord {
  id: string;
  info: HostInfo;
  hb: number | null;
  agentState: 'ready' | 'upgrading';
  draining: boolean;
  maintenance: boolean;
  upgrading: boolean;
  campaignId: string | null;
  offlineMarked: boolean;
  /** Foreign guests its latest inventory listed as running (recomputed at every heartbeat). */
  conflicts: InventoryConflict[];
}

function toHost(id: string, h: Record<string, string>): HostRecord | null {
  if (!h.info) return null;
  return {
    id,
    info: parseJson<HostInfo>(h.info, null as never),
    hb: h.hb ? Number(h.hb) : null,
    agentState: h.agentState === 'upgrading' ? 'upgrading' : 'ready',
    draining: h.draining === '1',
    maintenance: h.maintenance === '1',
    upgrading: h.upgrading === '1',
    campaignId: h.campaignId || null,
    offlineMarked: h.offline === '1',
    conflicts: parseJson<InventoryConflict[]>(h.conflicts, []),
  };
}

@Injectable()
export class HostsRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly k: RedisKeys,
  ) {}

  async get(id: string): Promise<HostRecord | null> {
    return toHost(id, await this.redis.hgetall(this.k.host(id)));
  }
  async all(): Promise<HostRecord[]> {
    const ids = (await this.redis.smembers(this.k.hosts())).sort();
    if (!ids.length) return [];
    const p = this.redis.pipeline();
    for (const id of ids) p.hgetall(this.k.host(id));
    const res = (await p.exec()) ?? [];
    return ids.map((id, i) => toHost(id, (res[i]?.[1] as Record<string, string>) ?? {})).filter((h): h is HostRecord => h !== null);
  }
  /** Register: returns the previous record (null if new). */
  async upsertInfo(id: string, info: HostInfo, now: number): Promise<void> {
    await this.redis
      .multi()
      .hset(this.k.host(id), { info: JSON.stringify(info), hb: String(now), offline: '0', agentState: 'ready' })
      .sadd(this.k.hosts(), id)
      .exec();
  }
  async heartbeat(id: string, fields: { hb: number; agentState: string; info: HostInfo }): Promise<void> {
    await this.redis.hset(this.k.host(id), { hb: String(fields.hb), agentState: fields.agentState, info: JSON.stringify(fields.info), offline: '0' });
  }
  async setConflicts(id: string, conflicts: InventoryConflict[]): Promise<void> {
    await this.redis.hset(this.k.host(id), 'conflicts', JSON.stringify(conflicts));
  }
  async setFlags(id: string, flags: Partial<Record<'draining' | 'maintenance' | 'upgrading' | 'offline', boolean>> & { campaignId?: string | null }): Promise<void> {
    const h: Record<string, string> = {};
    for (const [k, v] of Object.entries(flags)) {
      if (k === 'campaignId') h[k] = (v as string | null) ?? '';
      else h[k] = v ? '1' : '0';
    }
    if (Object.keys(h).length) await this.redis.hset(this.k.host(id), h);
  }
}

// ---------------- vms ----------------

export interface VmRecord {
  id: string;
  spec: VmSpec;
  hostId: string | null;
  state: VmState;
  memoryDigest: string | null;
  checkpoint: CheckpointSummary | null;
  activeOp: string | null;
  updatedAt: string;
  /** Other hosts' running claims on this VM (flagged, not applied). */
  conflicts: InventoryConflict[];
}

function toVm(id: string, h: Record<string, string>, claims: Record<string, string> = {}): VmRecord | null {
  if (!h.spec) return null;
  return {
    id,
    spec: parseJson<VmSpec>(h.spec, null as never),
    hostId: h.hostId || null,
    state: (h.state as VmState) || 'running',
    memoryDigest: h.memoryDigest || null,
    checkpoint: parseJson<CheckpointSummary | null>(h.checkpoint, null),
    activeOp: h.activeOp || null,
    updatedAt: h.updatedAt ?? nowIso(),
    conflicts: Object.keys(claims)
      .sort()
      .map((k) => parseJson<InventoryConflict | null>(claims[k], null))
      .filter((c): c is InventoryConflict => c !== null),
  };
}

@Injectable()
export class VmsRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly k: RedisKeys,
  ) {}
  async get(id: string): Promise<VmRecord | null> {
    const [vm, claims] = await Promise.all([this.redis.hgetall(this.k.vm(id)), this.redis.hgetall(this.k.vmClaims(id))]);
    return toVm(id, vm, claims);
  }
  async many(ids: string[]): Promise<VmRecord[]> {
    if (!ids.length) return [];
    const p = this.redis.pipeline();
    for (const id of ids) p.hgetall(this.k.vm(id)).hgetall(this.k.vmClaims(id));
    const res = (await p.exec()) ?? [];
    return ids
      .map((id, i) => toVm(id, (res[2 * i]?.[1] as Record<string, string>) ?? {}, (res[2 * i + 1]?.[1] as Record<string, string>) ?? {}))
      .filter((v): v is VmRecord => v !== null);
  }
  /** Records (or refreshes) host `c.hostId`'s claim on VM `c.vmId`; one hash field per host, so claims never race. */
  async setClaim(c: InventoryConflict): Promise<void> {
    await this.redis.hset(this.k.vmClaims(c.vmId), c.hostId, JSON.stringify(c));
  }
  async dropClaim(vmId: string, hostId: string): Promise<void> {
    await this.redis.hdel(this.k.vmClaims(vmId), hostId);
  }
  async allIds(): Promise<string[]> {
    return (await this.redis.smembers(this.k.vms())).sort();
  }
  async idsOnHost(hostId: string): Promise<string[]> {
    return (await this.redis.smembers(this.k.hostVms(hostId))).sort();
  }
  /** Writes fields; moves host membership when hostId changes. */
  async put(id: string, fields: Partial<Omit<VmRecord, 'id' | 'conflicts'>>, prevHostId?: string | null): Promise<void> {
    const h: Record<string, string> = { updatedAt: nowIso() };
    if (fields.spec) h.spec = JSON.stringify(fields.spec);
    if (fields.hostId !== undefined) h.hostId = fields.hostId ?? '';
    if (fields.state) h.state = fields.state;
    if (fields.memoryDigest !== undefined) h.memoryDigest = fields.memoryDigest ?? '';
    if (fields.checkpoint !== undefined) h.checkpoint = fields.checkpoint ? JSON.stringify(fields.checkpoint) : '';
    if (fields.activeOp !== undefined) h.activeOp = fields.activeOp ?? '';
    const m = this.redis.multi().hset(this.k.vm(id), h).sadd(this.k.vms(), id);
    if (fields.hostId !== undefined) {
      if (prevHostId && prevHostId !== fields.hostId) m.srem(this.k.hostVms(prevHostId), id);
      if (fields.hostId) m.sadd(this.k.hostVms(fields.hostId), id);
    }
    await m.exec();
  }
  /** Sets activeOp only if free (or already ours). */
  async claim(id: string, opId: string): Promise<boolean> {
    return (await this.redis.claimActiveOp(this.k.vm(id), opId)) === 1;
  }
  async release(id: string, opId: string): Promise<void> {
    await this.redis.releaseActiveOp(this.k.vm(id), opId);
  }
}

// ---------------- migrations ----------------

export interface MigrationRecord {
  id: string;
  vmId: string;
  source: string;
  reqTarget: string | null;
  target: string | null;
  mode: MigrationMode;
  bwMiBps: number | null;
  phase: MigrationPhase;
  attempt: number;
  maxAttempts: number;
  cancelRequested: boolean;
  progress: MigrationProgress;
  waiting: string | null;
  restore: RestoreFormat | null;
  error: { code: string; message: string } | null;
  campaignId: string | null;
  createdAt: string;
  updatedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  nextAttemptAt: number | null;
  lastProgressAt: number | null;
  progressSig: string;
  streamToken: string;
  sendDone: boolean;
  memMiB: number;
  /** The attempt the control plane let pass the point of no return (0: none). Kept when the migration ends. */
  committedAttempt: number;
}

function toMig(id: string, h: Record<string, string>): MigrationRecord | null {
  if (!h.vmId) return null;
  return {
    id,
    vmId: h.vmId,
    source: h.source ?? '',
    reqTarget: h.reqTarget || null,
    target: h.target || null,
    mode: (h.mode as MigrationMode) ?? 'live',
    bwMiBps: h.bw ? Number(h.bw) : null,
    phase: (h.phase as MigrationPhase) ?? 'queued',
    attempt: Number(h.attempt ?? 0),
    maxAttempts: Number(h.maxAttempts ?? 1),
    cancelRequested: h.cancelRequested === '1',
    progress: { ...EMPTY_PROGRESS, ...parseJson<Partial<MigrationProgress>>(h.progress, EMPTY_PROGRESS) },
    waiting: h.waiting || null,
    restore: parseJson<RestoreFormat | null>(h.restore, null),
    error: parseJson<{ code: string; message: string } | null>(h.error, null),
    campaignId: h.campaignId || null,
    createdAt: h.createdAt ?? nowIso(),
    updatedAt: h.updatedAt ?? nowIso(),
    startedAt: h.startedAt || null,
    finishedAt: h.finishedAt || null,
    nextAttemptAt: h.nextAttemptAt ? Number(h.nextAttemptAt) : null,
    lastProgressAt: h.lastProgressAt ? Number(h.lastProgressAt) : null,
    progressSig: h.progressSig ?? '',
    streamToken: h.streamToken ?? '',
    sendDone: h.sendDone === '1',
    memMiB: Number(h.mem ?? 0),
    committedAttempt: Number(h.committedAttempt ?? 0),
  };
}

export type Fields = Record<string, string | number | null | boolean | object>;
function flat(sets: Fields): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(sets)) {
    out.push(k, v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
  }
  return out;
}

@Injectable()
export class MigrationsRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly k: RedisKeys,
  ) {}

  async create(m: MigrationRecord, createdMs: number): Promise<void> {
    const mm = this.redis
      .multi()
      .hset(this.k.mig(m.id), {
        vmId: m.vmId,
        source: m.source,
        reqTarget: m.reqTarget ?? '',
        target: m.target ?? '',
        mode: m.mode,
        bw: m.bwMiBps === null ? '' : String(m.bwMiBps),
        phase: m.phase,
        attempt: String(m.attempt),
        maxAttempts: String(m.maxAttempts),
        cancelRequested: '0',
        progress: JSON.stringify(m.progress),
        mem: String(m.memMiB),
        waiting: m.waiting ?? '',
        campaignId: m.campaignId ?? '',
        createdAt: m.createdAt,
        updatedAt: m.updatedAt,
      })
      .zadd(this.k.migs(), createdMs, m.id)
      .zadd(this.k.migsPhase(m.phase), createdMs, m.id)
      .zadd(this.k.migsVm(m.vmId), createdMs, m.id)
      .zadd(this.k.migsHost(m.source), createdMs, m.id)
      .zadd(this.k.migsPending(), createdMs, m.id);
    if (m.reqTarget) mm.zadd(this.k.migsHost(m.reqTarget), createdMs, m.id);
    if (m.campaignId) mm.zadd(this.k.migsCampaign(m.campaignId), createdMs, m.id);
    await mm.exec();
  }

  async get(id: string): Promise<MigrationRecord | null> {
    return toMig(id, await this.redis.hgetall(this.k.mig(id)));
  }
  async many(ids: string[]): Promise<MigrationRecord[]> {
    if (!ids.length) return [];
    const p = this.redis.pipeline();
    for (const id of ids) p.hgetall(this.k.mig(id));
    const res = (await p.exec()) ?? [];
    return ids.map((id, i) => toMig(id, (res[i]?.[1] as Record<string, string>) ?? {})).filter((v): v is MigrationRecord => v !== null);
  }

  /** Atomic phase change guarded by the allowed current phases and field conditions. */
  async transition(
    id: string,
    from: readonly MigrationPhase[],
    to: MigrationPhase,
    sets: Fields = {},
    opts: { conds?: Record<string, string>; pendingScore?: number } = {},
  ): Promise<{ ok: boolean; phase: MigrationPhase | null }> {
    const conds = Object.entries(opts.conds ?? {}).flat();
    const res = await this.redis.migTransition(
      this.k.mig(id),
      this.k.p,
      id,
      from.join(','),
      to,
      opts.pendingScore === undefined ? '-' : String(opts.pendingScore),
      INFLIGHT_PHASES.join(','),
      String(conds.length / 2),
      ...conds,
      ...flat({ updatedAt: nowIso(), ...sets }),
    );
    return { ok: res[0] === 1, phase: (res[1] as MigrationPhase | null) ?? null };
  }

  async update(id: string, sets: Fields): Promise<void> {
    await this.redis.hset(this.k.mig(id), ...flat({ updatedAt: nowIso(), ...sets }));
  }
  async addHostIndex(id: string, hostId: string): Promise<void> {
    const score = await this.redis.zscore(this.k.migs(), id);
    await this.redis.zadd(this.k.migsHost(hostId), score ?? Date.now(), id);
  }

  async list(q: { phase?: MigrationPhase; vm?: string; host?: string; campaign?: string; active?: boolean; limit: number; offset: number }): Promise<{ items: MigrationRecord[]; total: number }> {
    const filters: ((m: MigrationRecord) => boolean)[] = [];
    let index = this.k.migs();
    const pick = (key: string) => {
      if (index === this.k.migs()) {
        index = key;
        return true;
      }
      return false;
    };
    if (q.vm !== undefined && !pick(this.k.migsVm(q.vm))) filters.push((m) => m.vmId === q.vm);
    if (q.campaign !== undefined && !pick(this.k.migsCampaign(q.campaign))) filters.push((m) => m.campaignId === q.campaign);
    if (q.phase !== undefined && !pick(this.k.migsPhase(q.phase))) filters.push((m) => m.phase === q.phase);
    if (q.host !== undefined && !pick(this.k.migsHost(q.host))) filters.push((m) => m.source === q.host || m.target === q.host);
    if (q.active !== undefined) filters.push((m) => (q.active ? !['completed', 'failed', 'cancelled'].includes(m.phase) : ['completed', 'failed', 'cancelled'].includes(m.phase)));
    if (!filters.length) {
      const [total, ids] = await Promise.all([this.redis.zcard(index), this.redis.zrevrange(index, q.offset, q.offset + q.limit - 1)]);
      return { items: await this.many(ids), total };
    }
    const ids = await this.redis.zrevrange(index, 0, -1);
    const all = (await this.many(ids)).filter((m) => filters.every((f) => f(m)));
    return { items: all.slice(q.offset, q.offset + q.limit), total: all.length };
  }

  /** The DTO JSON as last published (read path for lists: no parse / stringify per item). */
  async saveJson(id: string, json: string): Promise<void> {
    await this.redis.hset(this.k.mig(id), 'json', json);
  }
  /** Page of pre-serialized DTOs from an index, or null when a filter needs the full records. */
  async listJson(q: { vm?: string; host?: string; campaign?: string; phase?: MigrationPhase; active?: boolean; limit: number; offset: number }): Promise<{ items: string[]; total: number } | null> {
    const given = [q.vm, q.host, q.campaign, q.phase, q.active].filter((x) => x !== undefined).length;
    if (given > 1 || q.active !== undefined) return null;
    const index =
      q.vm !== undefined ? this.k.migsVm(q.vm) : q.host !== undefined ? this.k.migsHost(q.host) : q.campaign !== undefined ? this.k.migsCampaign(q.campaign) : q.phase !== undefined ? this.k.migsPhase(q.phase) : this.k.migs();
    const [total, ids] = await Promise.all([this.redis.zcard(index), this.redis.zrevrange(index, q.offset, q.offset + q.limit - 1)]);
    if (!ids.length) return { items: [], total };
    const p = this.redis.pipeline();
    for (const id of ids) p.hget(this.k.mig(id), 'json');
    const res = (await p.exec()) ?? [];
    const items: string[] = [];
    for (const [err, v] of res) {
      if (err || typeof v !== 'string' || !v) return null;
      items.push(v);
    }
    return { items, total };
  }

  async pendingDue(now: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.k.migsPending(), '-inf', now, 'LIMIT', 0, limit);
  }
  async pendingCount(): Promise<number> {
    return this.redis.zcard(this.k.migsPending());
  }
  /** Cluster / per-source / per-target in-flight counts and inbound memory, kept by the transition script. */
  async load(): Promise<{ cluster: number; src: Map<string, number>; dst: Map<string, number>; mem: Map<string, number> }> {
    const h = await this.redis.hgetall(this.k.migsLoad());
    const out = { cluster: Number(h.cluster ?? 0), src: new Map<string, number>(), dst: new Map<string, number>(), mem: new Map<string, number>() };
    for (const [k, v] of Object.entries(h)) {
      const i = k.indexOf(':');
      if (i < 0) continue;
      const kind = k.slice(0, i) as 'src' | 'dst' | 'mem';
      if (kind in out) (out[kind] as Map<string, number>).set(k.slice(i + 1), Number(v));
    }
    return out;
  }
  /** In-flight migrations whose last progress is older than `before` (ms). */
  async stalled(before: number, limit = 500): Promise<string[]> {
    return this.redis.zrangebyscore(this.k.migsProgress(), '-inf', before, 'LIMIT', 0, limit);
  }
  /** Records progress time (only for in-flight migrations). */
  async touch(id: string, at: number): Promise<void> {
    await this.redis.zadd(this.k.migsProgress(), 'XX', at, id);
  }
  /** The VM's most recent migration id. */
  async latestForVm(vmId: string): Promise<string | null> {
    return (await this.redis.zrevrange(this.k.migsVm(vmId), 0, 0))[0] ?? null;
  }
  async inflightIds(): Promise<string[]> {
    return this.redis.smembers(this.k.migsInflight());
  }
  async countByPhase(): Promise<Record<MigrationPhase, number>> {
    const p = this.redis.pipeline();
    for (const ph of MIGRATION_PHASES) p.zcard(this.k.migsPhase(ph));
    const res = (await p.exec()) ?? [];
    return Object.fromEntries(MIGRATION_PHASES.map((ph, i) => [ph, Number(res[i]?.[1] ?? 0)])) as Record<MigrationPhase, number>;
  }
  /**
   * Idempotency: first writer wins; returns the stored value. The key is held `pendingSec` until
   * keepIdempotent() (once the record exists): a request cut short by a crash frees its key.
   */
  async idempotent(key: string, value: string, pendingSec = 30): Promise<string> {
    const k = this.k.idem(key);
    const ok = await this.redis.set(k, value, 'EX', pendingSec, 'NX');
    if (ok === 'OK') return value;
    return (await this.redis.get(k)) ?? value;
  }
  async keepIdempotent(key: string): Promise<void> {
    await this.redis.expire(this.k.idem(key), 24 * 3600);
  }
  async forgetIdempotent(key: string): Promise<void> {
    await this.redis.del(this.k.idem(key));
  }
}

// ---------------- operations (suspend / resume / upgrade / inventory) ----------------

export interface OperationRecord extends OperationDto {
  attempt: number;
  payload: Record<string, unknown>;
}

function toOp(id: string, h: Record<string, string>): OperationRecord | null {
  if (!h.kind) return null;
  return {
    id,
    kind: h.kind as OperationKind,
    vmId: h.vmId || null,
    hostId: h.hostId || null,
    state: h.state as OperationState,
    phase: h.phase ?? '',
    progress: parseJson(h.progress, { bytesDone: 0, bytesTotal: 0 }),
    checkpointId: h.checkpointId || null,
    campaignId: h.campaignId || null,
    error: parseJson(h.error, null),
    createdAt: h.createdAt ?? nowIso(),
    updatedAt: h.updatedAt ?? nowIso(),
    attempt: Number(h.attempt ?? 1),
    payload: parseJson(h.payload, {}),
  };
}

@Injectable()
export class OperationsRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly k: RedisKeys,
  ) {}
  async create(op: OperationRecord): Promise<void> {
    await this.redis
      .multi()
      .hset(this.k.op(op.id), ...flat({ ...op, error: op.error }))
      .zadd(this.k.ops(), Date.now(), op.id)
      .sadd(this.k.opsActive(), op.id)
      .exec();
  }
  async get(id: string): Promise<OperationRecord | null> {
    return toOp(id, await this.redis.hgetall(this.k.op(id)));
  }
  async list(limit: number, offset: number): Promise<{ items: OperationRecord[]; total: number }> {
    const [total, ids] = await Promise.all([this.redis.zcard(this.k.ops()), this.redis.zrevrange(this.k.ops(), offset, offset + limit - 1)]);
    const items = await Promise.all(ids.map((id) => this.get(id)));
    return { items: items.filter((o): o is OperationRecord => o !== null), total };
  }
  async activeIds(): Promise<string[]> {
    return this.redis.smembers(this.k.opsActive());
  }
  /** CAS on state. */
  async transition(id: string, from: readonly OperationState[], sets: Fields & { state?: OperationState }): Promise<boolean> {
    const res = await this.redis.casHset(this.k.op(id), 'state', from.join(','), '0', ...flat({ updatedAt: nowIso(), ...sets }));
    if (res[0] === 1 && sets.state && ['completed', 'failed', 'cancelled'].includes(sets.state)) await this.redis.srem(this.k.opsActive(), id);
    return res[0] === 1;
  }
}

// ---------------- campaigns ----------------

@Injectable()
export class CampaignsRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly k: RedisKeys,
  ) {}
  async save(c: CampaignDoc, active: boolean): Promise<void> {
    const m = this.redis.multi().hset(this.k.camp(c.id), 'doc', JSON.stringify(c)).zadd(this.k.camps(), Date.parse(c.createdAt), c.id);
    if (active) m.sadd(this.k.campsActive(), c.id);
    else m.srem(this.k.campsActive(), c.id);
    await m.exec();
  }
  async get(id: string): Promise<(CampaignDoc & { control: 'run' | 'pause' | 'abort' }) | null> {
    const h = await this.redis.hgetall(this.k.camp(id));
    if (!h.doc) return null;
    return { ...parseJson<CampaignDoc>(h.doc, null as never), control: (h.control as 'run' | 'pause' | 'abort') || 'run' };
  }
  async setControl(id: string, control: 'run' | 'pause' | 'abort'): Promise<void> {
    await this.redis.hset(this.k.camp(id), 'control', control);
  }
  async list(limit: number, offset: number): Promise<{ items: CampaignDoc[]; total: number }> {
    const [total, ids] = await Promise.all([this.redis.zcard(this.k.camps()), this.redis.zrevrange(this.k.camps(), offset, offset + limit - 1)]);
    const items = await Promise.all(ids.map((id) => this.get(id)));
    return { items: items.filter((c): c is CampaignDoc & { control: 'run' } => c !== null).map(({ control: _c, ...rest }) => rest), total };
  }
  async activeIds(): Promise<string[]> {
    return this.redis.smembers(this.k.campsActive());
  }
  /** 1, 2, 3...: the campaign's number in this fleet (default names carry it, so no two are alike). */
  async nextNumber(): Promise<number> {
    return this.redis.incr(this.k.campsSeq());
  }
}

// ---------------- events ----------------

@Injectable()
export class EventsRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly k: RedisKeys,
    @Inject(CP_CONFIG) private readonly cfg: CpConfig,
  ) {}
  async publish(type: FerryEventType, entity: EventEntity, entityId: string, data: FerryEvent['data']): Promise<void> {
    const body = JSON.stringify({ type, at: nowIso(), entity, entityId, data });
    await this.redis.xadd(this.k.events(), 'MAXLEN', '~', String(this.cfg.FERRY_EVENTS_MAXLEN), '*', 'e', body);
  }
}
