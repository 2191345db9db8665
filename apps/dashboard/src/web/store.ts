/** Client-side state: snapshots from REST, kept current by SSE events. */
import type { CampaignDto, FerryEvent, HostDto, MigrationDto, MigrationProgress, OperationDto, Role, VmDto } from '@ferry/contracts';
import { ROLES, isTerminalPhase } from '@ferry/contracts';

export interface Sample {
  t: number;
  /** Sum of the wire rates of the migrations moving at t (bytes/s). */
  rate: number;
  active: number;
}

export class Store {
  hosts = new Map<string, HostDto>();
  vms = new Map<string, VmDto>();
  migrations = new Map<string, MigrationDto>();
  campaigns = new Map<string, CampaignDto>();
  operations = new Map<string, OperationDto>();
  /** Per-migration rate history, for sparklines. */
  rateHistory = new Map<string, { t: number; rate: number; done: number }[]>();
  /** Fleet throughput over time (one sample per second while the page is open). */
  samples: Sample[] = [];
  lastEventAt = 0;
  events = 0;
  /** The signed-in token's role (GET /v1/me); actions it may not take are not offered. Null until known. */
  role: Role | null = null;
  private listeners = new Set<() => void>();
  private scheduled = false;

  /** Whether the signed-in role may do what needs `min` (viewer < operator < admin). */
  can(min: Role): boolean {
    return this.role !== null && ROLES.indexOf(this.role) >= ROLES.indexOf(min);
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Coalesces bursts of events into one render per animation frame. */
  changed(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const run = (): void => {
      this.scheduled = false;
      for (const l of this.listeners) l();
    };
    if (typeof requestAnimationFrame === 'function' && document.visibilityState === 'visible') requestAnimationFrame(run);
    else setTimeout(run, 50);
  }

  load(s: { hosts?: HostDto[]; vms?: VmDto[]; migrations?: MigrationDto[]; campaigns?: CampaignDto[] }): void {
    if (s.hosts) this.hosts = new Map(s.hosts.map((x) => [x.id, x]));
    if (s.vms) this.vms = new Map(s.vms.map((x) => [x.id, x]));
    if (s.migrations) {
      const m = new Map(s.migrations.map((x) => [x.id, x]));
      this.migrations = m;
    }
    if (s.campaigns) this.campaigns = new Map(s.campaigns.map((x) => [x.id, x]));
    this.changed();
  }

  apply(ev: FerryEvent): void {
    this.events++;
    this.lastEventAt = Date.now();
    const d = ev.data as unknown as Record<string, unknown>;
    switch (ev.entity) {
      case 'host':
        if (isFull(d)) this.hosts.set(ev.entityId, d as unknown as HostDto);
        else this.patch(this.hosts, ev.entityId, d);
        break;
      case 'vm':
        if (isFull(d)) this.vms.set(ev.entityId, d as unknown as VmDto);
        else this.patch(this.vms, ev.entityId, d);
        break;
      case 'campaign':
        if (isFull(d)) this.campaigns.set(ev.entityId, d as unknown as CampaignDto);
        else this.patch(this.campaigns, ev.entityId, d);
        break;
      case 'operation':
        if (isFull(d)) this.operations.set(ev.entityId, d as unknown as OperationDto);
        break;
      case 'migration': {
        const prev = this.migrations.get(ev.entityId);
        let next: MigrationDto | undefined;
        if (isFull(d) && 'phase' in d && 'vmId' in d) next = d as unknown as MigrationDto;
        else if (prev) {
          // migration.progress may carry only the figures: { progress } or the progress itself.
          const progress = (d.progress ?? pickProgress(d)) as Partial<MigrationProgress> | undefined;
          next = { ...prev, ...(d as Partial<MigrationDto>), progress: { ...prev.progress, ...(progress ?? {}) } };
        }
        if (next) {
          this.migrations.set(ev.entityId, next);
          this.track(next);
        }
        break;
      }
    }
    this.changed();
  }

  private patch<T>(map: Map<string, T>, id: string, d: Record<string, unknown>): void {
    const prev = map.get(id);
    if (prev) map.set(id, { ...prev, ...(d as Partial<T>) });
  }

  private track(m: MigrationDto): void {
    if (isTerminalPhase(m.phase)) return;
    let h = this.rateHistory.get(m.id);
    if (!h) this.rateHistory.set(m.id, (h = []));
    h.push({ t: Date.now(), rate: m.progress.rate, done: m.progress.bytesDone });
    if (h.length > 600) h.splice(0, h.length - 600);
  }

  /** Called once a second: a point on the fleet throughput chart (client-side only). */
  sample(now = Date.now()): void {
    let rate = 0;
    let active = 0;
    for (const m of this.migrations.values()) {
      if (isTerminalPhase(m.phase) || m.phase === 'queued') continue;
      active++;
      // A figure older than 5 s is stale (the agent reports at least once a second while moving).
      const h = this.rateHistory.get(m.id);
      const last = h?.[h.length - 1];
      if (last && now - last.t < 5000) rate += last.rate;
    }
    this.samples.push({ t: now, rate, active });
    const cutoff = now - 30 * 60_000;
    while (this.samples.length > 0 && this.samples[0]!.t < cutoff) this.samples.shift();
  }
}

/**
 * Fleet throughput per bucket over [now - windowMs, now]: live rate reports for migrations seen
 * moving while the page was open, and each finished migration's average rate over its run for
 * the rest (so the chart has history right after a reload).
 */
export function throughputSeries(store: Store, windowMs: number, bucketMs: number, now = Date.now()): { t: number; v: number }[] {
  const t0 = now - windowMs;
  const n = Math.ceil(windowMs / bucketMs);
  const sums = new Array<number>(n + 1).fill(0);
  const add = (from: number, to: number, rate: number): void => {
    for (let t = Math.max(from, t0); t <= Math.min(to, now); t += bucketMs) {
      const i = Math.floor((t - t0) / bucketMs);
      if (i >= 0 && i <= n) sums[i] = sums[i]! + rate;
    }
  };
  for (const m of store.migrations.values()) {
    const hist = store.rateHistory.get(m.id);
    if (hist && hist.length > 0) {
      // Live figures: each report holds until the next one (at most 5 s); per bucket, the highest.
      const mine = new Map<number, number>();
      for (let i = 0; i < hist.length; i++) {
        const a = hist[i]!;
        const end = Math.min(hist[i + 1]?.t ?? now, a.t + 5000);
        const first = Math.floor((a.t - t0) / bucketMs);
        const last = Math.floor((end - t0) / bucketMs);
        for (let j = Math.max(first, 0); j <= Math.min(last, n); j++) mine.set(j, Math.max(mine.get(j) ?? 0, a.rate));
      }
      for (const [j, r] of mine) sums[j] = sums[j]! + r;
      continue;
    }
    if (!m.startedAt || !m.finishedAt) continue;
    const s0 = Date.parse(m.startedAt);
    const s1 = Date.parse(m.finishedAt);
    if (!(s1 > s0) || s1 < t0) continue;
    add(s0, s1, Math.max(m.progress.bytesDone, m.progress.bytesTotal) / ((s1 - s0) / 1000));
  }
  return sums.map((v, i) => ({ t: t0 + i * bucketMs, v }));
}

function isFull(d: Record<string, unknown>): boolean {
  return typeof d.id === 'string' && ('updatedAt' in d || 'registeredAt' in d || 'createdAt' in d);
}

function pickProgress(d: Record<string, unknown>): Partial<MigrationProgress> | undefined {
  const keys = ['bytesDone', 'bytesTotal', 'round', 'roundBytesDone', 'roundBytesTotal', 'dirtyRate', 'rate', 'etaMs', 'expectedDowntimeMs', 'downtimeMs'] as const;
  const out: Record<string, unknown> = {};
  for (const k of keys) if (k in d) out[k] = d[k];
  return Object.keys(out).length ? (out as Partial<MigrationProgress>) : undefined;
}
