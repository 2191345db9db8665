/**
 * The README's scenario, as a new user runs it: `npm start`, then with the printed token plan and
 * start a 32->64-bit upgrade campaign over the 32-bit hosts, wait until it is done, check every VM
 * runs with the memory it had and both hosts are 64-bit, then Ctrl-C and check nothing is left.
 *
 * Guests are quiet here (FERRY_SIM_DIRTY_RATE=0) so "unchanged memory digest" is a meaningful check:
 * a guest that dirties memory changes its digest on its own.
 */
import * as fs from 'node:fs';
import type { CampaignDto, CampaignPlanDto, HostDto, VmDto } from '@ferry/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, call, freePort, list, redisUnavailable, startStack, waitUntil, type Stack } from './stack';

const skip = redisUnavailable();
if (skip && process.env.FERRY_REQUIRE_SERVICES === '1') throw new Error(`[e2e] required (FERRY_REQUIRE_SERVICES=1): ${skip}`);
if (skip) console.log(`[e2e] skipped: ${skip}`);

describe.skipIf(skip !== null)('npm start -> a finished 32->64 campaign', () => {
  let stack: Stack;
  let stopped = false;
  let port = 0;

  beforeAll(async () => {
    port = await freePort();
    stack = await startStack({ via: 'npm', env: { PORT: String(port), FERRY_SIM_DIRTY_RATE: '0' } });
    expect(new URL(stack.url).port).toBe(String(port));
  }, 300_000);

  afterAll(async () => {
    if (stack && !stopped) await stack.stop();
    if (stack) fs.rmSync(stack.stateDir, { recursive: true, force: true });
  }, 120_000);

  it('upgrades both 32-bit hosts and keeps every VM whole', async () => {
    const hosts = await list<HostDto>(stack, '/v1/hosts');
    expect(hosts).toHaveLength(4);
    const old = hosts.filter((h) => h.toolstack.bitness === 32).map((h) => h.id).sort();
    expect(old).toHaveLength(2);

    // Every VM with a digest before we start.
    const before = await waitUntil(
      'a memory digest for every VM',
      async () => {
        const vms = await list<VmDto>(stack, '/v1/vms?limit=500');
        return vms.length >= 12 && vms.every((v) => v.memoryDigest && v.state === 'running') ? vms : null;
      },
      60_000,
    );

    const req = { hosts: { bitness: 32 as const }, strategy: 'evacuate-and-return' as const, maxParallelHosts: 1, maxParallelMigrations: 2, onError: 'stop' as const };
    const plan = await call<CampaignPlanDto>(stack, 'POST', '/v1/campaigns/plan', req);
    expect(plan.blockers).toEqual([]);
    expect(plan.feasible).toBe(true);
    expect(plan.hosts.map((h) => h.hostId).sort()).toEqual(old);

    const started = await call<CampaignDto>(stack, 'POST', '/v1/campaigns', req);
    const done = await waitUntil(
      'the campaign to finish',
      async () => {
        const c = await call<CampaignDto>(stack, 'GET', `/v1/campaigns/${started.id}`);
        if (['failed', 'aborted'].includes(c.state)) throw new Error(`campaign ${c.state}: ${c.error ?? ''} ${JSON.stringify(c.hosts.map((h) => [h.hostId, h.state, h.error]))}`);
        return c.state === 'completed' ? c : null;
      },
      600_000,
      1000,
    ).catch((e: unknown) => {
      throw new Error(`${e instanceof Error ? e.message : String(e)}\n--- ferry up output (tail) ---\n${stack.output().slice(-8000)}`);
    });
    expect(done.counts).toMatchObject({ hostsTotal: 2, hostsDone: 2, hostsFailed: 0 });

    const after = await list<HostDto>(stack, '/v1/hosts');
    for (const id of old) {
      const h = after.find((x) => x.id === id)!;
      expect(h.toolstack).toMatchObject({ bitness: 64, streamFormat: 'v2' });
      expect(h.state).toBe('online');
    }
    const vms = await waitUntil(
      'every VM running again',
      async () => {
        const v = await list<VmDto>(stack, '/v1/vms?limit=500');
        return v.every((x) => x.state === 'running' && x.hostId) ? v : null;
      },
      60_000,
    );
    expect(vms.map((v) => v.id).sort()).toEqual(before.map((v) => v.id).sort());
    for (const v of vms) expect({ vm: v.id, digest: v.memoryDigest }).toEqual({ vm: v.id, digest: before.find((b) => b.id === v.id)!.memoryDigest });
    // evacuate-and-return: every guest is back on its home host.
    for (const v of vms) expect({ vm: v.id, host: v.hostId }).toEqual({ vm: v.id, host: before.find((b) => b.id === v.id)!.hostId });
  }, 900_000);

  it('Ctrl-C stops every process it started', async () => {
    expect(stack.pids.size).toBeGreaterThanOrEqual(7);
    const e = await stack.stop();
    stopped = true;
    expect(e.code === 0 || e.signal === 'SIGINT').toBe(true);
    await waitUntil('every service to exit', async () => [...stack.pids.values()].every((p) => !alive(p)), 20_000, 200);
    expect(stack.output()).toContain('all services stopped');
  }, 120_000);
});
