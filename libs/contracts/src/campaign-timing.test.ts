import { describe, expect, it } from 'vitest';
import { campaignWithTiming, type CampaignDoc, type CampaignHostPlan } from './api';

const ts = { xenVersion: '4.4', bitness: 32, streamFormat: 'legacy' } as const;
const T0 = Date.parse('2026-12-01T10:00:00.000Z');
const at = (s: number): string => new Date(T0 + s * 1000).toISOString();
const host = (hostId: string, order: number, x: Partial<CampaignHostPlan>): CampaignHostPlan => ({
  hostId,
  order,
  toolstackBefore: ts,
  toolstackAfter: { xenVersion: '4.17', bitness: 64, streamFormat: 'v2' },
  vms: [],
  state: 'pending',
  startedAt: null,
  finishedAt: null,
  ...x,
});
const camp = (hosts: CampaignHostPlan[], x: Partial<CampaignDoc> = {}): CampaignDoc => ({
  id: 'camp-1',
  name: 'n',
  state: 'running',
  request: { hosts: { bitness: 32 }, strategy: 'evacuate-and-return', maxParallelHosts: 1, maxParallelMigrations: 2, onError: 'stop' },
  hosts,
  blockers: [],
  counts: { hostsTotal: hosts.length, hostsDone: 0, hostsFailed: 0 },
  error: null,
  createdAt: at(0),
  updatedAt: at(0),
  finishedAt: null,
  ...x,
});

describe('campaign timing', () => {
  it('no ETA before the first host finished; elapsed and the running host time so far', () => {
    const c = campaignWithTiming(camp([host('a', 0, { state: 'draining', startedAt: at(5) }), host('b', 1, {})]), T0 + 65_000);
    expect(c.timing).toEqual({ elapsedMs: 65_000, meanHostMs: null, etaMs: null });
    expect(c.hosts.map((h) => h.durationMs)).toEqual([60_000, null]);
  });

  it('ETA from the mean host duration: what the running host has left, then the pending ones in waves', () => {
    const hosts = [
      host('a', 0, { state: 'done', startedAt: at(0), finishedAt: at(100) }),
      host('b', 1, { state: 'upgrading', startedAt: at(100) }),
      host('c', 2, {}),
      host('d', 3, {}),
    ];
    const c = campaignWithTiming(camp(hosts), T0 + 130_000);
    expect(c.hosts.map((h) => h.durationMs)).toEqual([100_000, 30_000, null, null]);
    // b: 70 s left; c and d one after the other (maxParallelHosts 1): 200 s
    expect(c.timing).toEqual({ elapsedMs: 130_000, meanHostMs: 100_000, etaMs: 270_000 });
    const two = campaignWithTiming(camp(hosts, { request: { ...camp([]).request, maxParallelHosts: 2 } }), T0 + 130_000);
    expect(two.timing.etaMs).toBe(170_000);
  });

  it('an ended campaign: elapsed stops at finishedAt, ETA 0, each host its own duration', () => {
    const c = campaignWithTiming(
      camp([host('a', 0, { state: 'done', startedAt: at(1), finishedAt: at(41) }), host('b', 1, { state: 'done', startedAt: at(41), finishedAt: at(101) })], { state: 'completed', finishedAt: at(102) }),
      T0 + 999_000,
    );
    expect(c.timing).toEqual({ elapsedMs: 102_000, meanHostMs: 50_000, etaMs: 0 });
    expect(c.hosts.map((h) => h.durationMs)).toEqual([40_000, 60_000]);
  });
});
