import { afterAll, expect, it } from 'vitest';
import type { FerryEvent, MigrationDto } from '@ferry/contracts';
import { V2_64, World, api, guest, until } from './harness';

const w = new World();
afterAll(() => w.close());

it('limits hold under 50 simultaneous requests: everything is accepted, waits, and completes', async () => {
  const { url } = await w.cp({ FERRY_LIMIT_CLUSTER: '4', FERRY_LIMIT_PER_SOURCE: '2', FERRY_LIMIT_PER_TARGET: '1' });
  const vms: string[] = [];
  for (let s = 0; s < 5; s++) {
    const gs = Array.from({ length: 10 }, (_, i) => guest(`s${s}-vm${i}`, { memoryMiB: 64 }));
    vms.push(...gs.map((g) => g.vmId));
    await w.agent(url, { hostId: `src${s}`, toolstack: V2_64, guests: gs, roundMs: 5, rounds: 2 });
  }
  for (let t = 0; t < 3; t++) await w.agent(url, { hostId: `dst${t}`, toolstack: V2_64, capacity: { memoryMiB: 65536, vcpus: 64, maxGuests: 100 } });
  // sources are drained so the scheduler only targets dst*
  for (let s = 0; s < 5; s++) await api(url, `/v1/hosts/src${s}/drain`, { body: { evacuate: false } });

  const res = await Promise.all(vms.map((vm) => api<MigrationDto>(url, '/v1/migrations', { body: { vm, mode: 'live' }, headers: { 'idempotency-key': `lim-${vm}` } })));
  expect(res.map((r) => r.status)).toEqual(vms.map(() => 202));
  await until('a migration waiting on a limit', async () => {
    const waiting = await api<{ items: MigrationDto[] }>(url, '/v1/migrations?phase=queued&limit=500');
    return waiting.body.items.some((m) => /limit/.test(m.waitingReason ?? ''));
  });

  const ids = res.map((r) => r.body.id);
  await until(
    'all 50 to complete',
    async () => {
      const l = await api<{ items: MigrationDto[]; total: number }>(url, '/v1/migrations?phase=completed&limit=500');
      return l.body.total === 50;
    },
    140_000,
  );
  // Replay the event stream and check the limits were never exceeded.
  const entries = await w.redis.xrange(`${w.keyPrefix}:events`, '-', '+');
  const inflight = new Map<string, MigrationDto>();
  let maxCluster = 0;
  let maxSource = 0;
  let maxTarget = 0;
  for (const [, fields] of entries) {
    const e = JSON.parse(fields[1]!) as FerryEvent;
    if (e.entity !== 'migration' || !ids.includes(e.entityId)) continue;
    const m = e.data as MigrationDto;
    if (['dispatched', 'preparing', 'precopy', 'stop-copy', 'verifying', 'committing'].includes(m.phase)) inflight.set(m.id, m);
    else inflight.delete(m.id);
    const per = (f: (m: MigrationDto) => string | null) => {
      const c = new Map<string, number>();
      for (const x of inflight.values()) c.set(f(x) ?? '', (c.get(f(x) ?? '') ?? 0) + 1);
      return Math.max(0, ...c.values());
    };
    maxCluster = Math.max(maxCluster, inflight.size);
    maxSource = Math.max(maxSource, per((x) => x.sourceHostId));
    maxTarget = Math.max(maxTarget, per((x) => x.targetHostId));
  }
  expect(maxCluster).toBeLessThanOrEqual(4);
  expect(maxSource).toBeLessThanOrEqual(2);
  expect(maxTarget).toBeLessThanOrEqual(1);
  expect(maxCluster).toBeGreaterThanOrEqual(2);
  const failed = await api<{ total: number }>(url, '/v1/migrations?phase=failed');
  expect(failed.body.total).toBe(0);
}, 180_000);
