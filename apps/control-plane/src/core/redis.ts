import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';

/** All Redis keys of the control plane's state, under one prefix (FERRY_KEY_PREFIX). */
export class Keys {
  constructor(readonly p: string) {}
  host = (id: string) => `${this.p}:host:${id}`;
  hosts = () => `${this.p}:hosts`;
  vm = (id: string) => `${this.p}:vm:${id}`;
  vms = () => `${this.p}:vms`;
  hostVms = (hostId: string) => `${this.p}:hostvms:${hostId}`;
  /** Per VM: other hosts' claims on it (field hostId -> InventoryConflict JSON). */
  vmClaims = (vmId: string) => `${this.p}:vmclaims:${vmId}`;
  mig = (id: string) => `${this.p}:mig:${id}`;
  migs = () => `${this.p}:migs`;
  migsPhase = (phase: string) => `${this.p}:migs:phase:${phase}`;
  migsVm = (vmId: string) => `${this.p}:migs:vm:${vmId}`;
  migsHost = (hostId: string) => `${this.p}:migs:host:${hostId}`;
  migsCampaign = (id: string) => `${this.p}:migs:campaign:${id}`;
  migsPending = () => `${this.p}:migs:pending`;
  migsInflight = () => `${this.p}:migs:inflight`;
  migsLoad = () => `${this.p}:migs:load`;
  migsProgress = () => `${this.p}:migs:progress`;
  op = (id: string) => `${this.p}:op:${id}`;
  ops = () => `${this.p}:ops`;
  opsActive = () => `${this.p}:ops:active`;
  camp = (id: string) => `${this.p}:camp:${id}`;
  camps = () => `${this.p}:camps`;
  campsActive = () => `${this.p}:camps:active`;
  ckpt = (id: string) => `${this.p}:ckpt:${id}`;
  ckpts = () => `${this.p}:ckpts`;
  ckptsVm = (vmId: string) => `${this.p}:ckpts:vm:${vmId}`;
  campsSeq = () => `${this.p}:camps:seq`;
  idem = (key: string) => `${this.p}:idem:${key}`;
  /** Idempotency-Key of an acting HTTP request (apps/control-plane/src/http/acting.ts). */
  idemHttp = (key: string) => `${this.p}:idem-http:${key}`;
  events = () => `${this.p}:events`;
  lease = (name: string) => `${this.p}:lease:${name}`;
  seq = (name: string) => `${this.p}:seq:${name}`;
}

/** Lua: compare-and-set over a hash. ARGV: field, allowedCSV, nConds, cond pairs..., set pairs... -> {ok(0/1), current}. */
export const CAS_HSET = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return {0, false} end
local ok = false
for p in string.gmatch(ARGV[2], '[^,]+') do if p == cur then ok = true end end
if not ok then return {0, cur} end
local n = tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v ~= ARGV[i + 1] then return {0, cur} end
  i = i + 2
end
local sets = {}
for j = i, #ARGV do sets[#sets + 1] = ARGV[j] end
if #sets > 0 then redis.call('HSET', KEYS[1], unpack(sets)) end
return {1, cur}
`;

/**
 * Lua: migration phase transition with its indexes. KEYS[1] = migration hash.
 * ARGV: prefix, id, allowedCSV, newPhase, pendingScore ('-' = not pending), inflightCSV, nConds, conds..., sets...
 */
export const MIG_TRANSITION = `
local cur = redis.call('HGET', KEYS[1], 'phase')
if not cur then return {0, false} end
local ok = false
for p in string.gmatch(ARGV[3], '[^,]+') do if p == cur then ok = true end end
if not ok then return {0, cur} end
local n = tonumber(ARGV[7])
local i = 8
for _ = 1, n do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v ~= ARGV[i + 1] then return {0, cur} end
  i = i + 2
end
local P, id, new = ARGV[1], ARGV[2], ARGV[4]
local sets = {'phase', new}
for j = i, #ARGV do sets[#sets + 1] = ARGV[j] end
redis.call('HSET', KEYS[1], unpack(sets))
if new ~= cur then
  local created = redis.call('ZSCORE', P .. ':migs', id) or '0'
  redis.call('ZREM', P .. ':migs:phase:' .. cur, id)
  redis.call('ZADD', P .. ':migs:phase:' .. new, created, id)
end
if ARGV[5] == '-' then redis.call('ZREM', P .. ':migs:pending', id) else redis.call('ZADD', P .. ':migs:pending', ARGV[5], id) end
local inflight = false
for p in string.gmatch(ARGV[6], '[^,]+') do if p == new then inflight = true end end
local load = P .. ':migs:load'
local wasIn = redis.call('SISMEMBER', P .. ':migs:inflight', id) == 1
if inflight and not wasIn then
  redis.call('SADD', P .. ':migs:inflight', id)
  local src = redis.call('HGET', KEYS[1], 'source') or ''
  local dst = redis.call('HGET', KEYS[1], 'target') or ''
  local mem = tonumber(redis.call('HGET', KEYS[1], 'mem') or '0') or 0
  redis.call('HSET', KEYS[1], 'countedTarget', dst)
  redis.call('HINCRBY', load, 'cluster', 1)
  redis.call('HINCRBY', load, 'src:' .. src, 1)
  redis.call('HINCRBY', load, 'dst:' .. dst, 1)
  redis.call('HINCRBY', load, 'mem:' .. dst, mem)
elseif wasIn and not inflight then
  redis.call('SREM', P .. ':migs:inflight', id)
  local src = redis.call('HGET', KEYS[1], 'source') or ''
  local dst = redis.call('HGET', KEYS[1], 'countedTarget') or ''
  local mem = tonumber(redis.call('HGET', KEYS[1], 'mem') or '0') or 0
  redis.call('HINCRBY', load, 'cluster', -1)
  redis.call('HINCRBY', load, 'src:' .. src, -1)
  redis.call('HINCRBY', load, 'dst:' .. dst, -1)
  redis.call('HINCRBY', load, 'mem:' .. dst, -mem)
end
if inflight then
  local lp = tonumber(redis.call('HGET', KEYS[1], 'lastProgressAt') or '0') or 0
  redis.call('ZADD', P .. ':migs:progress', lp, id)
else
  redis.call('ZREM', P .. ':migs:progress', id)
end
return {1, cur}
`;

const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** A Redis lease: at most one holder at a time; expires when its holder dies. */
export class Lease {
  private readonly owner = randomUUID();
  held = false;
  constructor(
    private readonly redis: Redis,
    readonly key: string,
    private readonly ttlMs: number,
  ) {}

  /** Acquires or renews. Returns whether we hold it now. */
  async tick(): Promise<boolean> {
    if (this.held) {
      const r = await this.redis.eval(RENEW, 1, this.key, this.owner, String(this.ttlMs));
      this.held = r === 1;
    }
    if (!this.held) {
      const r = await this.redis.set(this.key, this.owner, 'PX', this.ttlMs, 'NX');
      this.held = r === 'OK';
    }
    return this.held;
  }

  async release(): Promise<void> {
    if (this.held) await this.redis.eval(RELEASE, 1, this.key, this.owner);
    this.held = false;
  }
}

export function newId(prefix: string): string {
  // time-ordered, unique: base36 ms + random
  return `${prefix}-${Date.now().toString(36)}${randomUUID().replace(/-/g, '').slice(0, 10)}`;
}

export function nowIso(ms = Date.now()): string {
  return new Date(ms).toISOString();
}

export function parseJson<T>(s: string | undefined | null, fallback: T): T {
  if (s === undefined || s === null || s === '') return fallback;
  try {
    return JSON.parse(s) as T;
  } catch {
    return fallback;
  }
}
