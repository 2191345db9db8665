import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import type Redis from 'ioredis';
import { HostJobProducer } from '@ferry/queue';
import { canReceive, phaseIndex, type MigrationPhase } from '@ferry/contracts';
import { CP_CONFIG, REDIS, type CpConfig } from '../config';
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
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;

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
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick()
        .catch((e: unknown) => this.log.error(`tick failed: ${e instanceof Error ? e.message : String(e)}`))
        .finally(() => {
          this.running = null;
          this.schedule(this.cfg.FERRY_SCHEDULER_INTERVAL_MS);
        });
    }, ms);
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    await this.lease?.release().catch(() => undefined);
  }

  /** One pass; public for tests. */
  async tick(): Promise<void> {
    if (!(await this.lease.tick())) return;
    const now = Date.now();
    const hosts = await this.hosts.all();
    const online = (h: HostRecord | undefined): boolean => !!h && h.hb !== null && now - h.hb <= this.cfg.FERRY_OFFLINE_AFTER_MS;
    for (const h of hosts) {
      if (!online(h) && !h.offlineMarked) {
        await this.hosts.setFlags(h.id, { offline: true });
        await this.events.publish('host.offline', 'host', h.id, hostToDto(h, [], this.cfg, now));
      }
    }
    const inflight = await this.migs.many(await this.migs.inflightIds());
    // stalls: no progress for FERRY_STALL_AFTER_MS before the point of no return
    for (const m of inflight) {
      if (phaseIndex(m.phase) >= phaseIndex('committing')) continue;
      if (m.lastProgressAt !== null && now - m.lastProgressAt > this.cfg.FERRY_STALL_AFTER_MS) {
        await this.migrations
          .cancel(m.id, `stalled: no progress for ${this.cfg.FERRY_STALL_AFTER_MS} ms in phase ${m.phase}; vm left on its source`, 'STALLED')
          .catch(() => undefined);
      }
    }
    await this.dispatchMigrations(hosts.filter(online), inflight.filter((m) => !['completed', 'failed', 'cancelled'].includes(m.phase)), now);
    for (const id of await this.ops.activeIds()) await this.operations.tryDispatch(id).catch(() => false);
  }

  private async dispatchMigrations(hosts: HostRecord[], inflight: MigrationRecord[], now: number): Promise<void> {
    const due = await this.migs.pendingDue(now, SCAN_PER_TICK);
    if (!due.length) return;
    let cluster = inflight.length;
    const perSource = new Map<string, number>();
    const perTarget = new Map<string, number>();
    const inbound = new Map<string, { mem: number; guests: number }>();
    const vmIds = new Set<string>(inflight.map((m) => m.vmId));
    for (const m of inflight) {
      perSource.set(m.source, (perSource.get(m.source) ?? 0) + 1);
      if (m.target) perTarget.set(m.target, (perTarget.get(m.target) ?? 0) + 1);
    }
    const pending = await this.migs.many(due);
    for (const m of pending) vmIds.add(m.vmId);
    const allVms = await this.vms.many(await this.vms.allIds());
    const vmById = new Map<string, VmRecord>(allVms.map((v) => [v.id, v]));
    const used = new Map<string, { mem: number; guests: number }>();
    for (const v of allVms) {
      if (!v.hostId || v.state === 'suspended') continue;
      const u = used.get(v.hostId) ?? { mem: 0, guests: 0 };
      used.set(v.hostId, { mem: u.mem + v.spec.memoryMiB, guests: u.guests + 1 });
    }
    for (const m of inflight) {
      const v = vmById.get(m.vmId);
      if (!m.target || !v) continue;
      const u = inbound.get(m.target) ?? { mem: 0, guests: 0 };
      inbound.set(m.target, { mem: u.mem + v.spec.memoryMiB, guests: u.guests + 1 });
    }
    const hostById = new Map(hosts.map((h) => [h.id, h]));
    const wait = async (m: MigrationRecord, reason: string) => {
      if (m.waiting === reason) return;
      await this.migs.update(m.id, { waiting: reason });
      await this.migrations.publish(m.id);
    };
    for (const m of pending) {
      if (m.phase !== 'queued') continue;
      if (cluster >= this.cfg.FERRY_LIMIT_CLUSTER) {
        await wait(m, `cluster limit (${this.cfg.FERRY_LIMIT_CLUSTER} concurrent migrations) reached`);
        continue;
      }
      const vm = vmById.get(m.vmId);
      if (!vm || vm.hostId !== m.source) {
        await this.failQueued(m, 'VM_MOVED', `vm '${m.vmId}' is no longer on '${m.source}'`);
        continue;
      }
      const source = hostById.get(m.source);
      if (!source) {
        await wait(m, `source host '${m.source}' is offline`);
        continue;
      }
      if ((perSource.get(m.source) ?? 0) >= this.cfg.FERRY_LIMIT_PER_SOURCE) {
        await wait(m, `per-source limit (${this.cfg.FERRY_LIMIT_PER_SOURCE}) reached on '${m.source}'`);
        continue;
      }
      let reason = '';
      const cands: { h: HostRecord; free: number }[] = [];
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
        const i = inbound.get(h.id) ?? { mem: 0, guests: 0 };
        const free = h.info.capacity.memoryMiB - u.mem - i.mem;
        if (free < vm.spec.memoryMiB || u.guests + i.guests >= h.info.capacity.maxGuests) {
          reason ||= `target '${h.id}' has no capacity for ${vm.spec.memoryMiB} MiB`;
          continue;
        }
        if ((perTarget.get(h.id) ?? 0) >= this.cfg.FERRY_LIMIT_PER_TARGET) {
          reason ||= `per-target limit (${this.cfg.FERRY_LIMIT_PER_TARGET}) reached on '${h.id}'`;
          continue;
        }
        cands.push({ h, free });
      }
      if (m.reqTarget && !hostById.get(m.reqTarget)) reason = `target '${m.reqTarget}' is offline`;
      const pick = cands.sort((a, b) => b.free - a.free)[0];
      if (!pick) {
        await wait(m, reason || 'no compatible online target');
        continue;
      }
      const c = canReceive(pick.h.info.toolstack, vm.spec);
      if (!c.ok) continue;
      const attempt = m.attempt + 1;
      const streamToken = randomBytes(24).toString('base64url');
      const t = await this.migs.transition(
        m.id,
        ['queued'],
        'dispatched',
        { target: pick.h.id, restore: c.restore, attempt, streamToken, waiting: '', lastProgressAt: now, progressSig: '', sendDone: false, ...(m.startedAt ? {} : { startedAt: new Date(now).toISOString() }) },
        { conds: { cancelRequested: '0' } },
      );
      if (!t.ok) continue;
      await this.migs.addHostIndex(m.id, pick.h.id);
      cluster++;
      perSource.set(m.source, (perSource.get(m.source) ?? 0) + 1);
      perTarget.set(pick.h.id, (perTarget.get(pick.h.id) ?? 0) + 1);
      const ib = inbound.get(pick.h.id) ?? { mem: 0, guests: 0 };
      inbound.set(pick.h.id, { mem: ib.mem + vm.spec.memoryMiB, guests: ib.guests + 1 });
      await this.producer.dispatch(pick.h.id, 'migrate-receive', {
        operationId: m.id,
        attempt,
        migrationId: m.id,
        vm: vm.spec,
        mode: m.mode,
        source: { hostId: m.source },
        streamToken,
        restore: c.restore,
        connectTimeoutMs: this.cfg.FERRY_CONNECT_TIMEOUT_MS,
      });
      await this.producer.dispatch(m.source, 'migrate-send', {
        operationId: m.id,
        attempt,
        migrationId: m.id,
        vmId: m.vmId,
        mode: m.mode,
        bandwidthBytesPerSec: m.bwMiBps === null ? null : Math.round(m.bwMiBps * 1024 * 1024),
        target: { hostId: pick.h.id, dataUrl: pick.h.info.dataUrl },
        streamToken,
        sourceFormat: { format: source.info.toolstack.streamFormat, width: source.info.toolstack.bitness },
        downtimeTargetMs: this.cfg.FERRY_DOWNTIME_TARGET_MS,
        maxRounds: this.cfg.FERRY_MAX_ROUNDS,
      });
      await this.migrations.publish(m.id);
    }
  }

  private async failQueued(m: MigrationRecord, code: string, message: string): Promise<void> {
    const t = await this.migs.transition(m.id, ['queued'] as MigrationPhase[], 'failed', { finishedAt: new Date().toISOString(), error: { code, message } });
    if (t.ok) {
      await this.vms.release(m.vmId, m.id);
      await this.migrations.publish(m.id);
    }
  }
}
