import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import type Redis from 'ioredis';
import { campaignWithTiming, sameToolstack, type CampaignDoc, type CampaignHostPlan, type CampaignVmPlan } from '@ferry/contracts';
import { CP_CONFIG, REDIS, type CpConfig } from '../config';
import { PeriodicTask } from '../core/periodic';
import { Lease, nowIso } from '../core/redis';
import { CampaignsRepository, EventsRepository, HostsRepository, MigrationsRepository, OperationsRepository, RedisKeys, VmsRepository } from '../core/repos';
import { MigrationsService } from '../core/migrations.service';
import { OperationsService } from '../core/operations.service';
import { HostsService } from '../core/hosts.service';

type Camp = CampaignDoc & { control: 'run' | 'pause' | 'abort' };
const ACTIVE_STEPS = ['draining', 'upgrading', 'awaiting-return', 'refilling'];
const MAX_UPGRADE_RETRIES = 10;
/** How long a drained VM waits for its source to report the hand-off done before the upgrade goes ahead anyway. */
const SOURCE_FINISH_GRACE_MS = 30_000;

/**
 * Runs campaigns host by host: drain -> upgrade -> wait for the new toolstack -> refill -> next.
 * Every decision is persisted before the next one, and every operation it starts has a
 * deterministic id / idempotency key, so a replica that takes over (Redis lease per campaign)
 * after a crash continues exactly where the last one stopped.
 */
@Injectable()
export class CampaignRunnerService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly log = new Logger('campaigns');
  private readonly leases = new Map<string, Lease>();
  private loop: PeriodicTask | null = null;

  constructor(
    @Inject(CP_CONFIG) private readonly cfg: CpConfig,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly k: RedisKeys,
    private readonly repo: CampaignsRepository,
    private readonly hosts: HostsRepository,
    private readonly vms: VmsRepository,
    private readonly migs: MigrationsRepository,
    private readonly ops: OperationsRepository,
    private readonly migrations: MigrationsService,
    private readonly operations: OperationsService,
    private readonly events: EventsRepository,
    private readonly hostFlags: HostsService,
  ) {}

  onApplicationBootstrap(): void {
    this.loop = new PeriodicTask(this.cfg.FERRY_SCHEDULER_INTERVAL_MS, () => this.tick(), this.log);
    this.loop.start();
  }

  async onModuleDestroy(): Promise<void> {
    await this.loop?.stop();
    for (const l of this.leases.values()) await l.release().catch(() => undefined);
  }

  async tick(): Promise<void> {
    for (const id of await this.repo.activeIds()) {
      let lease = this.leases.get(id);
      if (!lease) this.leases.set(id, (lease = new Lease(this.redis, this.k.lease(`campaign:${id}`), this.cfg.FERRY_LEASE_MS)));
      if (!(await lease.tick())) continue;
      const c = await this.repo.get(id);
      if (!c) continue;
      const before = JSON.stringify(c);
      await this.advance(c);
      const terminal = ['completed', 'aborted', 'failed'].includes(c.state);
      if (JSON.stringify(c) !== before || terminal) {
        c.updatedAt = nowIso();
        const { control: _c, ...dto } = c;
        await this.repo.save(dto, !terminal);
        await this.events.publish('campaign.updated', 'campaign', id, campaignWithTiming(dto, Date.now()));
      }
      if (terminal) {
        await lease.release();
        this.leases.delete(id);
      }
    }
  }

  private async advance(c: Camp): Promise<void> {
    if (c.control === 'abort' && c.state !== 'aborting') c.state = 'aborting';
    else if (c.control === 'pause' && c.state === 'running') c.state = 'paused';
    else if (c.control === 'run' && c.state === 'paused') c.state = 'running';
    const starting = c.state === 'running';
    for (const step of c.hosts) if (ACTIVE_STEPS.includes(step.state ?? '')) await this.advanceHost(c, step, starting);
    const failed = c.hosts.filter((h) => h.state === 'failed').length;
    c.counts = { hostsTotal: c.hosts.length, hostsDone: c.hosts.filter((h) => h.state === 'done').length, hostsFailed: failed };
    const active = c.hosts.filter((h) => ACTIVE_STEPS.includes(h.state ?? '')).length;
    const stopNew = c.state !== 'running' || (failed > 0 && c.request.onError === 'stop');
    if (!stopNew) {
      let slots = c.request.maxParallelHosts - active;
      for (const step of c.hosts) {
        if (slots <= 0) break;
        if (step.state !== 'pending') continue;
        await this.startHost(c, step);
        slots--;
      }
    }
    const stillActive = c.hosts.some((h) => ACTIVE_STEPS.includes(h.state ?? ''));
    if (stillActive) return;
    const pendingLeft = c.hosts.some((h) => h.state === 'pending');
    if (c.state === 'aborting') {
      for (const h of c.hosts) if (h.state === 'pending') h.state = 'skipped';
      await this.finish(c, 'aborted', 'aborted by operator');
    } else if (failed > 0 && c.request.onError === 'stop') {
      for (const h of c.hosts) if (h.state === 'pending') h.state = 'skipped';
      await this.finish(c, 'failed', `stopped after host failure: ${c.hosts.find((h) => h.state === 'failed')?.error ?? ''}`);
    } else if (!pendingLeft) {
      await this.finish(c, failed ? 'failed' : 'completed', failed ? `${failed} host(s) failed` : null);
    }
  }

  private async finish(c: Camp, state: 'completed' | 'aborted' | 'failed', error: string | null): Promise<void> {
    c.state = state;
    c.error = error;
    c.finishedAt = nowIso();
  }

  private async startHost(c: Camp, step: CampaignHostPlan): Promise<void> {
    const h = await this.hosts.get(step.hostId);
    if (!h || (h.campaignId && h.campaignId !== c.id)) {
      step.state = 'failed';
      step.error = h ? `host is in campaign '${h.campaignId}'` : 'host not found';
      return;
    }
    await this.hostFlags.updateFlags(step.hostId, { draining: true, campaignId: c.id });
    // VMs that arrived since the plan are drained too.
    const onHost = (await this.vms.many(await this.vms.idsOnHost(step.hostId))).filter((v) => v.state !== 'suspended');
    for (const v of onHost) {
      if (!step.vms.some((p) => p.vmId === v.id)) {
        step.vms.push({ vmId: v.id, action: c.request.strategy === 'suspend-and-resume' ? 'suspend' : 'migrate', parkOn: null, state: 'pending', outOperationId: null, backOperationId: null, error: null });
      }
    }
    step.vms = step.vms.filter((p) => onHost.some((v) => v.id === p.vmId));
    step.state = 'draining';
    step.startedAt = nowIso();
  }

  private async activeMoves(c: Camp): Promise<number> {
    let n = 0;
    for (const h of c.hosts) for (const v of h.vms) if (v.state === 'moving-out' || v.state === 'moving-back') n++;
    return n;
  }

  /** 'done' | 'failed' | 'running' of a migration or operation. */
  private async outcome(id: string, kind: 'migrate' | 'suspend'): Promise<{ s: 'done' | 'failed' | 'running'; target?: string | null; error?: string }> {
    if (kind === 'migrate') {
      const m = await this.migs.get(id);
      if (!m) return { s: 'running' };
      // Completed on the target's report; the source is done once it has reported too (it destroys the
      // copy it handed off). Upgrading before then is refused with GUESTS_PRESENT, so wait for it,
      // for at most SOURCE_FINISH_GRACE_MS (a source agent that died after the commit never reports).
      if (m.phase === 'completed') {
        const since = m.finishedAt ? Date.now() - Date.parse(m.finishedAt) : Infinity;
        return m.sendDone || since > SOURCE_FINISH_GRACE_MS ? { s: 'done', target: m.target } : { s: 'running' };
      }
      if (m.phase === 'failed' || m.phase === 'cancelled') return { s: 'failed', error: m.error?.message ?? m.phase };
      return { s: 'running' };
    }
    const o = await this.ops.get(id);
    if (!o) return { s: 'running' };
    if (o.state === 'completed') return { s: 'done', target: o.hostId };
    if (o.state === 'failed' || o.state === 'cancelled') return { s: 'failed', error: o.error?.message ?? o.state };
    return { s: 'running' };
  }

  private async moveOut(c: Camp, step: CampaignHostPlan, v: CampaignVmPlan): Promise<void> {
    const key = `${c.id}.${step.hostId}.${v.vmId}.out`;
    try {
      if (v.action === 'migrate') {
        const parkOk = v.parkOn ? await this.usable(v.parkOn) : false;
        const r = await this.migrations.create({ vm: v.vmId, mode: 'live', ...(parkOk && v.parkOn ? { target: v.parkOn } : {}) }, `campaign.${key}`, { campaignId: c.id });
        v.outOperationId = r.migration.id;
      } else {
        const o = await this.operations.suspend(v.vmId, c.id, `sus-${key}`);
        v.outOperationId = o.id;
      }
      v.state = 'moving-out';
    } catch (e) {
      v.state = 'failed';
      v.error = e instanceof Error ? e.message : String(e);
    }
  }

  private async usable(hostId: string): Promise<boolean> {
    const h = await this.hosts.get(hostId);
    return !!h && h.hb !== null && Date.now() - h.hb <= this.cfg.FERRY_OFFLINE_AFTER_MS && !h.draining && !h.maintenance && !h.upgrading;
  }

  private async moveBack(c: Camp, step: CampaignHostPlan, v: CampaignVmPlan): Promise<void> {
    const key = `${c.id}.${step.hostId}.${v.vmId}.back`;
    try {
      if (v.action === 'migrate') {
        const r = await this.migrations.create({ vm: v.vmId, mode: 'live', target: step.hostId }, `campaign.${key}`, { campaignId: c.id });
        v.backOperationId = r.migration.id;
      } else {
        const o = await this.operations.resume(v.vmId, step.hostId, c.id, `res-${key}`);
        v.backOperationId = o.id;
      }
      v.state = 'moving-back';
    } catch (e) {
      v.state = 'failed';
      v.error = e instanceof Error ? e.message : String(e);
    }
  }

  private async advanceHost(c: Camp, step: CampaignHostPlan, starting: boolean): Promise<void> {
    const fail = async (msg: string) => {
      step.state = 'failed';
      step.error = msg;
      step.finishedAt = nowIso();
      await this.hostFlags.updateFlags(step.hostId, { draining: false, upgrading: false, campaignId: null });
    };
    if (step.state === 'draining') {
      for (const v of step.vms) {
        if (v.state === 'moving-out' && v.outOperationId) {
          const o = await this.outcome(v.outOperationId, v.action);
          if (o.s === 'done') {
            v.state = 'parked';
            if (v.action === 'migrate') v.parkOn = o.target ?? v.parkOn;
          } else if (o.s === 'failed') {
            v.state = 'failed';
            v.error = o.error ?? 'failed';
          }
        }
      }
      if (starting) {
        let free = c.request.maxParallelMigrations - (await this.activeMoves(c));
        for (const v of step.vms) {
          if (free <= 0) break;
          if (v.state !== 'pending') continue;
          await this.moveOut(c, step, v);
          free--;
        }
      }
      if (step.vms.some((v) => v.state === 'pending' || v.state === 'moving-out')) return;
      if (step.vms.some((v) => v.state === 'failed')) return fail(`drain failed: ${step.vms.filter((v) => v.state === 'failed').map((v) => `${v.vmId}: ${v.error}`).join('; ')}`);
      if (!starting) return; // paused / aborting: do not start the upgrade
      const retry = step.upgradeRetries ? `.${step.upgradeRetries}` : '';
      const o = await this.operations.upgrade(step.hostId, step.toolstackAfter, c.id, `upg-${c.id}.${step.hostId}${retry}`);
      step.upgradeOperationId = o.id;
      step.state = 'upgrading';
      return;
    }
    if (step.state === 'upgrading' || step.state === 'awaiting-return') {
      if (step.upgradeOperationId) {
        const o = await this.ops.get(step.upgradeOperationId);
        if (o?.state === 'failed' && o.error?.code === 'GUESTS_PRESENT' && (step.upgradeRetries ?? 0) < MAX_UPGRADE_RETRIES) {
          // A migration counts as completed on the target's report; the source may still be destroying the
          // copy it handed off when the upgrade arrives. Go back to draining (every VM is parked, so the
          // upgrade is asked again on the next tick, under a new idempotency key).
          step.upgradeRetries = (step.upgradeRetries ?? 0) + 1;
          step.upgradeOperationId = null;
          step.state = 'draining';
          return;
        }
        if (o?.state === 'failed') return fail(`upgrade failed: ${o.error?.message ?? ''}`);
        if (o?.state === 'completed' && step.state === 'upgrading') step.state = 'awaiting-return';
      }
      const h = await this.hosts.get(step.hostId);
      const back = !!h && h.hb !== null && Date.now() - h.hb <= this.cfg.FERRY_OFFLINE_AFTER_MS && !h.upgrading && h.agentState === 'ready' && sameToolstack(h.info.toolstack, step.toolstackAfter);
      if (back) {
        await this.hostFlags.updateFlags(step.hostId, { draining: false });
        step.state = 'refilling';
      } else if (step.startedAt && Date.now() - Date.parse(step.startedAt) > this.cfg.FERRY_UPGRADE_TIMEOUT_MS) {
        return fail(`host did not come back with ${JSON.stringify(step.toolstackAfter)} in time`);
      }
      if (step.state !== 'refilling') return;
    }
    if (step.state === 'refilling') {
      for (const v of step.vms) {
        if (v.state === 'moving-back' && v.backOperationId) {
          const o = await this.outcome(v.backOperationId, v.action === 'migrate' ? 'migrate' : 'suspend');
          if (o.s === 'done') v.state = 'returned';
          else if (o.s === 'failed') {
            v.state = 'failed';
            v.error = o.error ?? 'failed';
          }
        }
      }
      // Returning VMs home is never held back by pause (only new hosts are); abort stops it.
      if (c.state !== 'aborting') {
        let free = c.request.maxParallelMigrations - (await this.activeMoves(c));
        for (const v of step.vms) {
          if (free <= 0) break;
          if (v.state !== 'parked') continue;
          await this.moveBack(c, step, v);
          free--;
        }
      }
      if (step.vms.some((v) => v.state === 'moving-back' || (v.state === 'parked' && c.state !== 'aborting'))) return;
      if (step.vms.some((v) => v.state === 'failed')) return fail(`refill failed: ${step.vms.filter((v) => v.state === 'failed').map((v) => `${v.vmId}: ${v.error}`).join('; ')}`);
      step.state = 'done';
      step.finishedAt = nowIso();
      await this.hostFlags.updateFlags(step.hostId, { draining: false, campaignId: null });
    }
  }
}
