import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import type Redis from 'ioredis';
import { HostJobProducer } from '@ferry/queue';
import { canReceive, phaseIndex, type MigrationPhase, type RestoreFormat } from '@ferry/contracts';
import { CP_CONFIG, REDIS, type CpConfig } from '../config';
import { PeriodicTask } from '../core/periodic';
import { Lease } from '../core/redis';
import { EventsRepository, HostsRepository, MigrationsRepository, OperationsRepository, VmsRepository, RedisKeys, type HostRecord, type MigrationRecord, type VmRecord } from '../core/repos';
import { MigrationsService } from '../core/migrations.service';
import { OperationsService } from '../core/operations.service';
import { hostToDto } from '../core/hosts.service';

const SCAN_PER_TICK = 2000;

/**
 * The scheduler: one replica at a time (Redis lease). Each tick it marks silent hosts offline,
 * declares stalled migrations (cancelled, VM left on its source), and dispatches queued migrations
 * and operations within the cluster / per-source / per-target limits. Work beyond a limit waits.
 */
@Injectable()
export class SchedulerService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly log = new Logger('scheduler');
  private lease!: Lease;
  private loop: PeriodicTask | null = null;

  constructor(
    @Inject(CP_CONFIG) private readonly cfg: CpConfig,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly k: RedisKeys,
    private readonly hosts: HostsRepository,
    private readonly vms: VmsRepository,
    private readonly migs: MigrationsRepository,
    private readonly ops: OperationsRepository,
    private readonly migrations: MigrationsService,
    private readonly operations: OperationsService,
    private readonly events: EventsRepository,
    private readonly producer: HostJobProducer,
  ) {}

  onApplicationBootstrap(): void {
    this.lease = new Lease(this.redis, this.k.lease('scheduler'), this.cfg.FERRY_LEASE_MS);
    this.loop = new PeriodicTask(this.cfg.FERRY_SCHEDULER_INTERVAL_MS, () => this.tick(), this.log);
    this.loop.start();
  }

  async onModuleDestroy(): Promise<void> {
    await this.loop?.stop();
    await this.lease?.release().catch(() => undefined);
  }

  /** Since when this replica holds the lease (0: it does not). */
  private leaseSince = 0;

  /** One pass; public for tests. */
  async tick(): Promise<void> {
    if (!(await this.lease.tick())) {
      this.leaseSince = 0;
      return;
    }
    const now = Date.now();
    this.leaseSince ||= now;
    // "no progress for FERRY_STALL_AFTER_MS" is judged only after watching that long: a control plane
    // that was down (or a replica that just took over) does not count its own absence as a stall
    const watching = now - this.leaseSince >= this.cfg.FERRY_STALL_AFTER_MS;
    const hosts = await this.hosts.all();
    const online = (h: HostRecord | undefined): boolean => !!h && h.hb !== null && now - h.hb <= this.cfg.FERRY_OFFLINE_AFTER_MS;
    for (const h of hosts) {
      if (!online(h) && !h.offlineMarked) {
        await this.hosts.setFlags(h.id, { offline: true });
        await this.events.publish('host.offline', 'host', h.id, hostToDto(h, [], this.cfg, now));
      }
    }
    // stalls: no progress for FERRY_STALL_AFTER_MS in any in-flight phase. Before the point of no
    // return the migration is cancelled (VM left on its source); in `committing` it ends without
    // the target's confirmation (VM on the target, marked missing until it shows up there).
    for (const m of watching ? await this.migs.many(await this.migs.stalled(now - this.cfg.FERRY_STALL_AFTER_MS)) : []) {
      if (m.phase === 'committing') {
        await this.migrations.commitUnconfirmed(m, this.cfg.FERRY_STALL_AFTER_MS).catch(() => undefined);
        continue;
      }
      if (phaseIndex(m.phase) > phaseIndex('committing') || phaseIndex(m.phase) < phaseIndex('dispatched')) continue;
      await this.migrations
        .cancel(m.id, `stalled: no progress for ${this.cfg.FERRY_STALL_AFTER_MS} ms in phase ${m.phase}; vm left on its source`, 'STALLED')
        .catch(() => undefined);
    }
    await this.dispatchMigrations(hosts.filter(online), now);
    for (const id of await this.ops.activeIds()) {
      if (watching && (await this.operations.failIfStalled(id, this.cfg.FERRY_STALL_AFTER_MS, now).catch(() => false))) continue;
      await this.operations.tryDispatch(id).catch(() => false);
    }
  }

  private usage: { at: number; used: Map<string, { mem: number; guests: number }> } | null = null;

  /** Memory and guests in use per host, from the VM records (cached for a second; in-flight inbound is added from live counters). */
  private async hostUsage(now: number): Promise<Map<string, { mem: number; guests: number }>> {
    if (this.usage && now - this.usage.at < 1000) return this.usage.used;
    const used = new Map<string, { mem: number; guests: number }>();
    for (const v of await this.vms.many(await this.vms.allIds())) {
      if (!v.hostId || v.state === 'suspended') continue;
      const u = used.get(v.hostId) ?? { mem: 0, guests: 0 };
      used.set(v.hostId, { mem: u.mem + v.spec.memoryMiB, guests: u.guests + 1 });
    }
    this.usage = { at: now, used };
    return used;
  }

  private async dispatchMigrations(hosts: HostRecord[], now: number): Promise<void> {
    const due = await this.migs.pendingDue(now, SCAN_PER_TICK);
    if (!due.length) return;
    const load = await this.migs.load();
    let cluster = load.cluster;
    const perSource = load.src;
    const perTarget = load.dst;
    const inboundMem = load.mem;
    const used = await this.hostUsage(now);
    const hostById = new Map(hosts.map((h) => [h.id, h]));
    const wait = async (m: MigrationRecord, reason: string) => {
      if (m.waiting === reason) return;
      await this.migs.update(m.id, { waiting: reason });
      await this.migrations.publish(m.id);
    };
    for (let off = 0; off < due.length; off += 200) {
      if (cluster >= this.cfg.FERRY_LIMIT_CLUSTER && off > 0) break;
      const pending = await this.migs.many(due.slice(off, off + 200));
      const vmById = new Map<string, VmRecord>((await this.vms.many(pending.map((m) => m.vmId))).map((v) => [v.id, v]));
      const writes: Promise<unknown>[] = [];
      for (const m of pending) {
        if (m.phase !== 'queued') continue;
        if (cluster >= this.cfg.FERRY_LIMIT_CLUSTER) {
          writes.push(wait(m, `cluster limit (${this.cfg.FERRY_LIMIT_CLUSTER} concurrent migrations) reached`));
          continue;
        }
        const vm = vmById.get(m.vmId);
        if (!vm || vm.hostId !== m.source) {
          writes.push(this.failQueued(m, 'VM_MOVED', `vm '${m.vmId}' is no longer on '${m.source}'`));
          continue;
        }
        const source = hostById.get(m.source);
        if (!source) {
          writes.push(wait(m, `source host '${m.source}' is offline`));
          continue;
        }
        if ((perSource.get(m.source) ?? 0) >= this.cfg.FERRY_LIMIT_PER_SOURCE) {
          writes.push(wait(m, `per-source limit (${this.cfg.FERRY_LIMIT_PER_SOURCE}) reached on '${m.source}'`));
          continue;
        }
        let reason = '';
        let pick: { h: HostRecord; free: number } | null = null;
        for (const h of m.reqTarget ? [hostById.get(m.reqTarget)].filter((x): x is HostRecord => !!x) : hosts) {
          if (h.id === m.source) continue;
          if (h.draining || h.maintenance || h.upgrading || h.agentState === 'upgrading') {
            reason ||= `target '${h.id}' is ${h.draining ? 'draining' : h.maintenance ? 'in maintenance' : 'upgrading'}`;
            continue;
          }
          const c = canReceive(h.info.toolstack, vm.spec);
          if (!c.ok) {
            reason ||= c.reason;
            continue;
          }
          const u = used.get(h.id) ?? { mem: 0, guests: 0 };
          const free = h.info.capacity.memoryMiB - u.mem - (inboundMem.get(h.id) ?? 0);
          if (free < vm.spec.memoryMiB || u.guests + (perTarget.get(h.id) ?? 0) >= h.info.capacity.maxGuests) {
            reason ||= `target '${h.id}' has no capacity for ${vm.spec.memoryMiB} MiB`;
            continue;
          }
          if ((perTarget.get(h.id) ?? 0) >= this.cfg.FERRY_LIMIT_PER_TARGET) {
            reason ||= `per-target limit (${this.cfg.FERRY_LIMIT_PER_TARGET}) reached on '${h.id}'`;
            continue;
          }
          if (!pick || free > pick.free) pick = { h, free };
        }
        if (m.reqTarget && !hostById.get(m.reqTarget)) reason = `target '${m.reqTarget}' is offline`;
        if (!pick) {
          writes.push(wait(m, reason || 'no compatible online target'));
          continue;
        }
        const c = canReceive(pick.h.info.toolstack, vm.spec);
        if (!c.ok) continue;
        cluster++;
        perSource.set(m.source, (perSource.get(m.source) ?? 0) + 1);
        perTarget.set(pick.h.id, (perTarget.get(pick.h.id) ?? 0) + 1);
        inboundMem.set(pick.h.id, (inboundMem.get(pick.h.id) ?? 0) + vm.spec.memoryMiB);
        writes.push(this.dispatchOne(m, vm, source, pick.h, c.restore, now));
      }
      await Promise.all(writes);
    }
  }

  private async dispatchOne(m: MigrationRecord, vm: VmRecord, source: HostRecord, target: HostRecord, restore: RestoreFormat, now: number): Promise<void> {
    const attempt = m.attempt + 1;
    const streamToken = randomBytes(24).toString('base64url');
    const t = await this.migs.transition(
      m.id,
      ['queued'],
      'dispatched',
      { target: target.id, restore, attempt, streamToken, waiting: '', lastProgressAt: now, progressSig: '', sendDone: false, ...(m.startedAt ? {} : { startedAt: new Date(now).toISOString() }) },
      { conds: { cancelRequested: '0' } },
    );
    if (!t.ok) return;
    await Promise.all([
      this.migs.addHostIndex(m.id, target.id),
      this.producer.dispatch(target.id, 'migrate-receive', {
        operationId: m.id,
        attempt,
        migrationId: m.id,
        vm: vm.spec,
        mode: m.mode,
        source: { hostId: m.source },
        streamToken,
        restore,
        connectTimeoutMs: this.cfg.FERRY_CONNECT_TIMEOUT_MS,
      }),
      this.producer.dispatch(m.source, 'migrate-send', {
        operationId: m.id,
        attempt,
        migrationId: m.id,
        vmId: m.vmId,
        mode: m.mode,
        bandwidthBytesPerSec: m.bwMiBps === null ? null : Math.round(m.bwMiBps * 1024 * 1024),
        target: { hostId: target.id, dataUrl: target.info.dataUrl },
        streamToken,
        sourceFormat: { format: source.info.toolstack.streamFormat, width: source.info.toolstack.bitness },
        downtimeTargetMs: this.cfg.FERRY_DOWNTIME_TARGET_MS,
        maxRounds: this.cfg.FERRY_MAX_ROUNDS,
      }),
    ]);
    await this.migrations.publish(m.id);
  }

  private async failQueued(m: MigrationRecord, code: string, message: string): Promise<void> {
    const t = await this.migs.transition(m.id, ['queued'] as MigrationPhase[], 'failed', { finishedAt: new Date().toISOString(), error: { code, message } });
    if (t.ok) {
      await this.vms.release(m.vmId, m.id);
      await this.migrations.publish(m.id);
    }
  }
}
