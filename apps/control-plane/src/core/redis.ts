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

/** A Redis lease: at most one holder at a time; expires when its holder dies. Needs the client's scripts (defineScripts). */
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
      const r = await this.redis.renewLease(this.key, this.owner, String(this.ttlMs));
      this.held = r === 1;
    }
    if (!this.held) {
      const r = await this.redis.set(this.key, this.owner, 'PX', this.ttlMs, 'NX');
      this.held = r === 'OK';
    }
    return this.held;
  }

  async release(): Promise<void> {
    if (this.held) await this.redis.releaseLease(this.key, this.owner);
    this.held = false;
  }
}

export function newId(prefix: string): string {
  // time-ordered, unique: base36 ms + random
  return `${prefix}-${Date.now().toString(36)}${randomUUID().replace(/-/g, '').slice(0, 10)}`;
}

/** When an id from newId() was made (ms), or null for an id of another shape. */
export function idTime(id: string): number | null {
  const m = /^[a-z]+-([0-9a-z]+)[0-9a-f]{10}$/.exec(id);
  const t = m ? parseInt(m[1]!, 36) : NaN;
  return Number.isFinite(t) ? t : null;
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
