import { Inject, Injectable, Logger } from '@nestjs/common';
import {
  type GuestInventory,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type HostDto,
  type InventoryConflict,
  type RegisterRequest,
  type RegisterResponse,
  type VmDto,
  type VmState,
  hostQueueName,
} from '@ferry/contracts';
import { randomBytes } from 'node:crypto';
import type Redis from 'ioredis';
import { deriveAgentToken } from '@ferry/config';
import { provisionAgentAclUser } from '@ferry/queue';
import { CP_CONFIG, REDIS, type CpConfig } from '../config';
import { fail } from './errors';
import { MetricsService } from './metrics.service';
import { EventsRepository, HostsRepository, VmsRepository, type HostRecord, type VmRecord } from './repos';
import { nowIso } from './redis';

export function hostToDto(h: HostRecord, vms: VmRecord[], cfg: CpConfig, now = Date.now()): HostDto {
  const offline = h.hb === null || now - h.hb > cfg.FERRY_OFFLINE_AFTER_MS;
  const mine = vms.filter((v) => v.hostId === h.id && v.state !== 'suspended');
  return {
    id: h.id,
    hostname: h.info.hostname,
    toolstack: h.info.toolstack,
    byteOrder: h.info.byteOrder,
    state: offline ? 'offline' : h.upgrading || h.agentState === 'upgrading' ? 'upgrading' : 'online',
    draining: h.draining,
    maintenance: h.maintenance,
    capacity: h.info.capacity,
    used: { memoryMiB: mine.reduce((a, v) => a + v.spec.memoryMiB, 0), guests: mine.length },
    lastHeartbeatAt: h.hb === null ? null : nowIso(h.hb),
    registeredAt: h.info.registeredAt,
    bootId: h.info.bootId,
    agentVersion: h.info.agentVersion,
    dataUrl: h.info.dataUrl,
    campaignId: h.campaignId,
    conflicts: h.conflicts,
  };
}

export function vmToDto(v: VmRecord): VmDto {
  return {
    id: v.id,
    name: v.spec.name,
    hostId: v.hostId,
    type: v.spec.type,
    guestWidth: v.spec.guestWidth ?? null,
    memoryMiB: v.spec.memoryMiB,
    vcpus: v.spec.vcpus,
    state: v.state,
    memoryDigest: v.memoryDigest,
    latestCheckpoint: v.checkpoint,
    activeOperationId: v.activeOp,
    conflicts: v.conflicts,
    updatedAt: v.updatedAt,
  };
}

function guestState(g: GuestInventory): VmState {
  switch (g.state) {
    case 'paused':
      return 'paused';
    case 'migrating-in':
    case 'migrating-out':
      return 'migrating';
    case 'suspending':
      return 'suspending';
    case 'resuming':
      return 'resuming';
    default:
      return 'running';
  }
}

@Injectable()
export class HostsService {
  constructor(
    @Inject(CP_CONFIG) private readonly cfg: CpConfig,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly hosts: HostsRepository,
    private readonly vms: VmsRepository,
    private readonly events: EventsRepository,
    private readonly metrics: MetricsService,
  ) {}

  private readonly log = new Logger('Inventory');
  private vmCache: { at: number; vms: Promise<VmRecord[]> } | null = null;

  /** Host list; the per-host "used" figures come from VM records read at most once a second per replica. */
  async list(): Promise<HostDto[]> {
    const now = Date.now();
    if (!this.vmCache || now - this.vmCache.at > 1000) this.vmCache = { at: now, vms: this.vms.allIds().then((ids) => this.vms.many(ids)) };
    const [hosts, vms] = await Promise.all([this.hosts.all(), this.vmCache.vms]);
    return hosts.map((h) => hostToDto(h, vms, this.cfg, now));
  }

  async get(id: string): Promise<HostDto> {
    const dto = await this.find(id);
    if (!dto) throw fail(404, `host '${id}' not found`);
    return dto;
  }

  private async find(id: string): Promise<HostDto | null> {
    const h = await this.hosts.get(id);
    return h ? hostToDto(h, await this.vms.many(await this.vms.idsOnHost(id)), this.cfg) : null;
  }

  async setFlag(id: string, flag: 'draining' | 'maintenance', on: boolean): Promise<HostDto> {
    if (!(await this.hosts.get(id))) throw fail(404, `host '${id}' not found`);
    const dto = await this.updateFlags(id, { [flag]: on });
    if (!dto) throw fail(404, `host '${id}' not found`);
    return dto;
  }

  /** Sets flags (operators: draining, maintenance; campaigns: draining, upgrading, campaignId) and tells watchers. */
  async updateFlags(id: string, flags: Parameters<HostsRepository['setFlags']>[1]): Promise<HostDto | null> {
    await this.hosts.setFlags(id, flags);
    const dto = await this.find(id);
    if (dto) await this.events.publish('host.updated', 'host', id, dto);
    return dto;
  }

  async register(req: RegisterRequest): Promise<RegisterResponse> {
    const now = Date.now();
    const prev = await this.hosts.get(req.hostId);
    await this.hosts.upsertInfo(
      req.hostId,
      {
        hostname: req.hostname,
        toolstack: req.toolstack,
        byteOrder: req.byteOrder,
        capacity: req.capacity,
        bootId: req.bootId,
        agentVersion: req.agentVersion,
        dataUrl: req.dataUrl,
        registeredAt: prev?.info.registeredAt ?? nowIso(now),
      },
      now,
    );
    // A fresh boot (e.g. after an upgrade) ends the host's "upgrading" state.
    if (prev?.upgrading && prev.info.bootId !== req.bootId) await this.hosts.setFlags(req.hostId, { upgrading: false });
    await this.reconcile(req.hostId, req.inventory.guests, prev?.conflicts ?? []);
    await this.events.publish('host.updated', 'host', req.hostId, await this.get(req.hostId));
    return {
      hostId: req.hostId,
      queueName: hostQueueName(req.hostId),
      queuePrefix: this.cfg.FERRY_QUEUE_PREFIX,
      heartbeatIntervalMs: this.cfg.FERRY_HEARTBEAT_INTERVAL_MS,
      offlineAfterMs: this.cfg.FERRY_OFFLINE_AFTER_MS,
      serverTime: nowIso(now),
    };
  }

  async heartbeat(hostId: string, req: HeartbeatRequest, terminal: (opId: string) => Promise<boolean>): Promise<HeartbeatResponse> {
    const h = await this.hosts.get(hostId);
    if (!h || h.info.bootId !== req.bootId) return { ok: true, reregister: true, cancelOperations: [] };
    const wasOffline = h.offlineMarked;
    const info = { ...h.info, toolstack: req.toolstack, capacity: req.capacity };
    await this.hosts.heartbeat(hostId, { hb: Date.now(), agentState: req.state, info });
    const changed = await this.reconcile(hostId, req.inventory.guests, h.conflicts);
    if (wasOffline || changed || h.agentState !== req.state || JSON.stringify(h.info.toolstack) !== JSON.stringify(req.toolstack)) {
      await this.events.publish('host.updated', 'host', hostId, await this.get(hostId));
    }
    const cancelOperations: string[] = [];
    for (const op of req.activeOperations) if (await terminal(op)) cancelOperations.push(op);
    return { ok: true, reregister: false, cancelOperations };
  }

  /**
   * Folds an agent's inventory into the VM records. A host is trusted only about itself: it creates
   * records of guests nobody knows and updates the records it owns; a guest whose record is elsewhere
   * is adopted only when its owner has itself reported it gone (`missing`) and nothing is moving it.
   * Any other running claim on a foreign VM is a conflict: flagged on the host and the VM, logged and
   * counted once, never applied (docs/jobs.md, "Inventory"). `previous` are the host's conflicts of
   * its last inventory. Returns whether anything changed.
   */
  async reconcile(hostId: string, guests: GuestInventory[], previous: InventoryConflict[]): Promise<boolean> {
    let changed = false;
    const seen = new Set<string>();
    const before = new Map(previous.map((c) => [c.vmId, c]));
    const conflicts: InventoryConflict[] = [];
    const existing = new Map((await this.vms.many(guests.map((g) => g.vmId))).map((v) => [v.id, v]));
    for (const g of guests) {
      seen.add(g.vmId);
      const { state: _s, memoryDigest, ...spec } = g;
      const v = existing.get(g.vmId);
      const state = guestState(g);
      if (!v) {
        await this.vms.put(g.vmId, { spec, hostId, state, memoryDigest, activeOp: null });
      } else if (v.hostId !== hostId) {
        // A migration or operation moves the record itself when it ends (a paused copy on a target is
        // not the VM); until then the claim is part of its protocol, not a conflict.
        if (v.activeOp || g.state !== 'running') continue;
        if (!this.adoptable(v)) {
          conflicts.push(before.get(g.vmId) ?? { vmId: g.vmId, hostId, ownerHostId: v.hostId, reportedState: g.state, reportedDigest: memoryDigest, since: nowIso() });
          continue;
        }
        await this.vms.put(g.vmId, { spec, hostId, state, memoryDigest }, v.hostId);
      } else if (v.memoryDigest === memoryDigest && v.state === state && JSON.stringify(v.spec) === JSON.stringify(spec)) {
        continue;
      } else {
        await this.vms.put(g.vmId, { spec, state: v.activeOp && state === 'running' ? v.state : state, memoryDigest });
      }
      changed = true;
      const nv = await this.vms.get(g.vmId);
      if (nv) await this.events.publish('vm.updated', 'vm', g.vmId, vmToDto(nv));
    }
    for (const id of await this.vms.idsOnHost(hostId)) {
      if (seen.has(id)) continue;
      const v = await this.vms.get(id);
      if (!v || v.activeOp || v.state === 'missing' || v.state === 'suspended') continue;
      await this.vms.put(id, { state: 'missing' });
      changed = true;
      const nv = await this.vms.get(id);
      if (nv) await this.events.publish('vm.updated', 'vm', id, vmToDto(nv));
    }
    return (await this.recordConflicts(hostId, before, conflicts)) || changed;
  }

  /**
   * May a host that reports this foreign VM running take its record? Only when the owner's own
   * inventory no longer lists it (`missing`), or the record names no host and is not suspended (a
   * suspended VM lives in the store until a resume moves it). Another host's word never moves a VM its
   * owner still reports, whatever state or digest it claims.
   */
  private adoptable(v: VmRecord): boolean {
    if (v.activeOp) return false;
    return v.state === 'missing' || (v.hostId === null && v.state !== 'suspended');
  }

  /** Stores the host's conflicts of this inventory; flags new ones on their VMs (one log line, one count each) and clears ended ones. */
  private async recordConflicts(hostId: string, before: Map<string, InventoryConflict>, now: InventoryConflict[]): Promise<boolean> {
    const current = new Set(now.map((c) => c.vmId));
    const touched = new Set<string>();
    for (const c of now) {
      if (before.has(c.vmId)) continue;
      this.log.warn(
        `host '${hostId}' reports vm '${c.vmId}' ${c.reportedState} (digest ${c.reportedDigest ?? 'none'}), which ${c.ownerHostId ? `runs on '${c.ownerHostId}'` : 'is suspended'}: flagged, not applied`,
      );
      this.metrics.inventoryConflicts.inc({ host: hostId });
      await this.vms.setClaim(c);
      touched.add(c.vmId);
    }
    for (const vmId of before.keys()) {
      if (current.has(vmId)) continue;
      await this.vms.dropClaim(vmId, hostId);
      touched.add(vmId);
    }
    if (!touched.size) return false;
    await this.hosts.setConflicts(hostId, now);
    for (const v of await this.vms.many([...touched])) await this.events.publish('vm.updated', 'vm', v.id, vmToDto(v));
    return true;
  }

  /**
   * Credentials for one host's agent: its bearer token (HMAC of FERRY_AGENT_SECRET) and a fresh Redis ACL
   * user limited to its own queue keys (`{prefix}:ferry.host.{hostId}:*`). Calling again rotates the password.
   * The user is named after the queue prefix too, so two Ferry stacks sharing one Redis never share a user.
   */
  async agentCredentials(hostId: string): Promise<{ hostId: string; token: string; redisUser: string; redisPassword: string; queueName: string; queuePrefix: string }> {
    const user = `${this.cfg.FERRY_QUEUE_PREFIX}-agent-${hostId}`;
    const password = randomBytes(24).toString('base64url');
    await provisionAgentAclUser(this.redis, user, password, hostId, this.cfg.FERRY_QUEUE_PREFIX);
    return { hostId, token: deriveAgentToken(this.cfg.agentSecret, hostId), redisUser: user, redisPassword: password, queueName: hostQueueName(hostId), queuePrefix: this.cfg.FERRY_QUEUE_PREFIX };
  }

  async listVms(q: { host?: string; state?: string; limit: number; offset: number }): Promise<{ items: VmDto[]; total: number }> {
    const ids = q.host ? await this.vms.idsOnHost(q.host) : await this.vms.allIds();
    let vms = await this.vms.many(ids);
    if (q.state) vms = vms.filter((v) => v.state === q.state);
    return { items: vms.slice(q.offset, q.offset + q.limit).map(vmToDto), total: vms.length };
  }

  async getVm(id: string): Promise<VmDto> {
    const v = await this.vms.get(id);
    if (!v) throw fail(404, `vm '${id}' not found`);
    return vmToDto(v);
  }
}
