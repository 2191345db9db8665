import { Inject, Injectable } from '@nestjs/common';
import {
  nextOffsetCursor,
  DEFAULT_UPGRADE_TOOLSTACK,
  canReceive,
  sameToolstack,
  type CampaignBlocker,
  campaignWithTiming,
  type CampaignDoc,
  type CampaignDto,
  type CampaignHostPlan,
  type CampaignPlanDto,
  type CreateCampaignRequest,
  type HostSelector,
  type Page,
} from '@ferry/contracts';
import { CP_CONFIG, type CpConfig } from '../config';
import { fail } from './errors';
import { CampaignsRepository, EventsRepository, HostsRepository, VmsRepository, type HostRecord } from './repos';
import { newId, nowIso } from './redis';

export function matchesSelector(h: HostRecord, s: HostSelector): boolean {
  if (s.ids && !s.ids.includes(h.id)) return false;
  if (s.bitness !== undefined && h.info.toolstack.bitness !== s.bitness) return false;
  if (s.streamFormat !== undefined && h.info.toolstack.streamFormat !== s.streamFormat) return false;
  if (s.xenVersion !== undefined && h.info.toolstack.xenVersion !== s.xenVersion) return false;
  return true;
}

@Injectable()
export class CampaignsService {
  constructor(
    @Inject(CP_CONFIG) private readonly cfg: CpConfig,
    private readonly repo: CampaignsRepository,
    private readonly hosts: HostsRepository,
    private readonly vms: VmsRepository,
    private readonly events: EventsRepository,
  ) {}

  /** The full per-host, per-VM plan and every blocker; moves nothing. */
  async plan(req: CreateCampaignRequest): Promise<CampaignPlanDto> {
    const target = req.targetToolstack ?? DEFAULT_UPGRADE_TOOLSTACK;
    const now = Date.now();
    const all = await this.hosts.all();
    const vms = await this.vms.many(await this.vms.allIds());
    const online = (h: HostRecord) => h.hb !== null && now - h.hb <= this.cfg.FERRY_OFFLINE_AFTER_MS;
    const blockers: CampaignBlocker[] = [];
    const selected = all.filter((h) => matchesSelector(h, req.hosts) && !sameToolstack(h.info.toolstack, target));
    if (!selected.length) blockers.push({ hostId: null, vmId: null, code: 'NO_HOSTS', message: 'the selector matches no host that still needs the upgrade' });
    const selectedIds = new Set(selected.map((h) => h.id));
    const usedMem = new Map<string, number>();
    const usedGuests = new Map<string, number>();
    for (const v of vms) if (v.hostId && v.state !== 'suspended') {
      usedMem.set(v.hostId, (usedMem.get(v.hostId) ?? 0) + v.spec.memoryMiB);
      usedGuests.set(v.hostId, (usedGuests.get(v.hostId) ?? 0) + 1);
    }
    const plans: CampaignHostPlan[] = [];
    const order = [...selected].sort((a, b) => a.id.localeCompare(b.id));
    // Hosts are processed in waves of maxParallelHosts; parked VMs return before the next wave,
    // so capacity is reserved per wave. Upgraded hosts of earlier waves may host parked VMs.
    const upgraded = new Set<string>();
    for (let w = 0; w < order.length; w += req.maxParallelHosts) {
      const wave = order.slice(w, w + req.maxParallelHosts);
      const waveIds = new Set(wave.map((h) => h.id));
      const reserved = new Map<string, { mem: number; guests: number }>();
      for (const h of wave) {
        if (!online(h)) blockers.push({ hostId: h.id, vmId: null, code: 'HOST_OFFLINE', message: `host '${h.id}' is offline` });
        if (h.campaignId) blockers.push({ hostId: h.id, vmId: null, code: 'IN_OTHER_CAMPAIGN', message: `host '${h.id}' is in campaign '${h.campaignId}'` });
        const plan: CampaignHostPlan = { hostId: h.id, order: plans.length, toolstackBefore: h.info.toolstack, toolstackAfter: target, vms: [] };
        for (const v of vms.filter((x) => x.hostId === h.id && x.state !== 'suspended')) {
          if (v.activeOp) blockers.push({ hostId: h.id, vmId: v.id, code: 'HOST_BUSY', message: `vm '${v.id}' has an active operation ${v.activeOp}` });
          const back = canReceive(target, v.spec);
          if (!back.ok) blockers.push({ hostId: h.id, vmId: v.id, code: 'NO_COMPATIBLE_TARGET', message: `vm '${v.id}' cannot return to '${h.id}' after the upgrade: ${back.reason}` });
          if (req.strategy === 'suspend-and-resume') {
            plan.vms.push({ vmId: v.id, action: 'suspend', parkOn: null });
            continue;
          }
          const cands = all
            .filter((p) => !waveIds.has(p.id) && (!selectedIds.has(p.id) || upgraded.has(p.id)) && online(p) && !p.draining && !p.maintenance && !p.upgrading)
            .filter((p) => canReceive(upgraded.has(p.id) ? target : p.info.toolstack, v.spec).ok);
          const fits = cands
            .map((p) => {
              const r = reserved.get(p.id) ?? { mem: 0, guests: 0 };
              return { p, freeMem: p.info.capacity.memoryMiB - (usedMem.get(p.id) ?? 0) - r.mem, freeGuests: p.info.capacity.maxGuests - (usedGuests.get(p.id) ?? 0) - r.guests };
            })
            .filter((x) => x.freeMem >= v.spec.memoryMiB && x.freeGuests > 0)
            .sort((a, b) => b.freeMem - a.freeMem);
          const pick = fits[0];
          if (!pick) {
            blockers.push(
              cands.length
                ? { hostId: h.id, vmId: v.id, code: 'NO_CAPACITY', message: `no compatible host has room for vm '${v.id}' (${v.spec.memoryMiB} MiB) while '${h.id}' upgrades` }
                : { hostId: h.id, vmId: v.id, code: 'NO_COMPATIBLE_TARGET', message: `no online host outside the wave can receive vm '${v.id}' (${v.spec.type}${v.spec.guestWidth ? ` ${v.spec.guestWidth}-bit` : ''})` },
            );
            plan.vms.push({ vmId: v.id, action: 'migrate', parkOn: null });
            continue;
          }
          const r = reserved.get(pick.p.id) ?? { mem: 0, guests: 0 };
          reserved.set(pick.p.id, { mem: r.mem + v.spec.memoryMiB, guests: r.guests + 1 });
          plan.vms.push({ vmId: v.id, action: 'migrate', parkOn: pick.p.id });
        }
        plans.push(plan);
      }
      for (const h of wave) upgraded.add(h.id);
    }
    return { request: req, hosts: plans, blockers, feasible: blockers.length === 0 };
  }

  async create(req: CreateCampaignRequest): Promise<CampaignDto> {
    const plan = await this.plan(req);
    if (!plan.feasible) throw fail(422, `campaign is blocked: ${plan.blockers.map((b) => b.message).join('; ')}`);
    const now = nowIso();
    const c: CampaignDoc = {
      id: newId('camp'),
      name: req.name ?? defaultCampaignName(await this.repo.nextNumber(), req, plan.hosts),
      state: 'running',
      request: req,
      hosts: plan.hosts.map((h) => ({ ...h, state: 'pending', error: null, startedAt: null, finishedAt: null, upgradeOperationId: null, vms: h.vms.map((v) => ({ ...v, state: 'pending', outOperationId: null, backOperationId: null, error: null })) })),
      blockers: [],
      counts: { hostsTotal: plan.hosts.length, hostsDone: 0, hostsFailed: 0 },
      error: null,
      createdAt: now,
      updatedAt: now,
      finishedAt: null,
    };
    await this.repo.save(c, true);
    await this.repo.setControl(c.id, 'run');
    const dto = campaignWithTiming(c, Date.now());
    await this.events.publish('campaign.updated', 'campaign', c.id, dto);
    return dto;
  }

  async get(id: string): Promise<CampaignDto> {
    const c = await this.repo.get(id);
    if (!c) throw fail(404, `campaign '${id}' not found`);
    const { control: _c, ...doc } = c;
    return campaignWithTiming(doc, Date.now());
  }

  async list(limit: number, offset: number): Promise<Page<CampaignDto>> {
    const { items, total } = await this.repo.list(limit, offset);
    const now = Date.now();
    return { items: items.map((c) => campaignWithTiming(c, now)), total, limit, nextCursor: nextOffsetCursor(offset, items.length, total) };
  }

  /** pause / resume / abort: recorded as the campaign's control flag; the runner acts on it. */
  async control(id: string, action: 'pause' | 'resume' | 'abort'): Promise<CampaignDto> {
    const c = await this.repo.get(id);
    if (!c) throw fail(404, `campaign '${id}' not found`);
    if (['completed', 'aborted', 'failed'].includes(c.state)) throw fail(409, `campaign '${id}' is ${c.state}`);
    if (action === 'resume' && c.control === 'abort') throw fail(409, `campaign '${id}' is being aborted`);
    await this.repo.setControl(id, action === 'pause' ? 'pause' : action === 'abort' ? 'abort' : 'run');
    const { control: _c, ...doc } = c;
    const next = campaignWithTiming({ ...doc, state: action === 'pause' ? 'paused' : action === 'abort' ? 'aborting' : 'running' }, Date.now());
    await this.events.publish('campaign.updated', 'campaign', id, next);
    return next;
  }
}

/** "#3 upgrade xen-a, xen-b to Xen 4.17 64-bit v2": numbered in the fleet, so two campaigns never share a default name. */
export function defaultCampaignName(n: number, req: CreateCampaignRequest, hosts: Pick<CampaignHostPlan, 'hostId'>[]): string {
  const t = req.targetToolstack ?? DEFAULT_UPGRADE_TOOLSTACK;
  const ids = hosts.map((h) => h.hostId);
  const list = ids.length > 4 ? `${ids.slice(0, 3).join(', ')} and ${ids.length - 3} more` : ids.join(', ');
  return `#${n} upgrade ${list} to Xen ${t.xenVersion} ${t.bitness}-bit ${t.streamFormat}`;
}
