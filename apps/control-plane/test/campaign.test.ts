import { afterAll, expect, it } from 'vitest';
import type { CampaignDto, CampaignPlanDto, FerryEvent, HostDto, VmDto } from '@ferry/contracts';
import { digest } from './fake-agent';
import { LEGACY32, V2_64, World, api, guest, until } from './harness';

const w = new World();
afterAll(() => w.close());

const camp = { hosts: { bitness: 32 }, strategy: 'evacuate-and-return', maxParallelHosts: 1, maxParallelMigrations: 2, onError: 'stop' };

it('plan shows every host, VM and blocker without moving anything', async () => {
  const { url } = await w.cp();
  await w.agent(url, { hostId: 'old-x', toolstack: LEGACY32, guests: [guest('px', { guestWidth: 32 })] });
  // no other host at all: every VM is blocked
  const p = await api<CampaignPlanDto>(url, '/v1/campaigns/plan', { body: camp });
  expect(p.status).toBe(200);
  expect(p.body.feasible).toBe(false);
  expect(p.body.blockers[0]).toMatchObject({ hostId: 'old-x', vmId: 'px', code: 'NO_COMPATIBLE_TARGET' });
  expect((await api(url, '/v1/campaigns', { body: camp })).status).toBe(422);
  const none = await api<CampaignPlanDto>(url, '/v1/campaigns/plan', { body: { ...camp, hosts: { ids: ['zzz'] } } });
  expect(none.body.blockers[0]!.code).toBe('NO_HOSTS');
  await w.agents.pop()!.stop();
  await w.redis.del(`${w.keyPrefix}:hosts`);
});

it('upgrades two 32-bit legacy hosts host by host, survives a control-plane crash mid-campaign, with two replicas', async () => {
  // two replicas against the same Redis; the first one "crashes" mid-campaign (closed without
  // finishing), its lease expires, the survivor continues from the persisted step.
  const a = await w.cp();
  const b = await w.cp();
  const gs = {
    old1: [guest('o1-a'), guest('o1-b', { type: 'hvm' })],
    old2: [guest('o2-a')],
    new1: [guest('n1-a', { guestWidth: 64 })],
  };
  for (const [hostId, guests] of Object.entries(gs)) {
    await w.agent(a.url, { hostId, toolstack: hostId.startsWith('old') ? LEGACY32 : V2_64, guests, roundMs: 20, rounds: 3 });
  }
  await w.agent(b.url, { hostId: 'new2', toolstack: V2_64 });
  const digests = new Map(Object.values(gs).flat().map((g) => [g.vmId, digest(g.memory)]));

  const plan = await api<CampaignPlanDto>(a.url, '/v1/campaigns/plan', { body: camp });
  expect(plan.body.feasible).toBe(true);
  expect(plan.body.hosts.map((h) => h.hostId)).toEqual(['old1', 'old2']);
  expect(plan.body.hosts[0]!.vms.map((v) => v.parkOn).every((p) => p === 'new1' || p === 'new2')).toBe(true);
  expect((await api<HostDto>(a.url, '/v1/hosts/old1')).body.draining).toBe(false); // plan moved nothing

  const c = await api<CampaignDto>(a.url, '/v1/campaigns', { body: camp });
  expect(c.status).toBe(201);
  const id = c.body.id;
  expect(c.body.timing).toMatchObject({ etaMs: null, meanHostMs: null });
  // wait until the first host is done, then crash replica A (B keeps running)
  const mid = await until('first host done', async () => {
    const x = (await api<CampaignDto>(b.url, `/v1/campaigns/${id}`)).body;
    return x.hosts[0]!.state === 'done' ? x : null;
  }, 30_000);
  // with one host done there is something to go by: a mean host time and an ETA
  expect(mid.timing.meanHostMs).toBeGreaterThan(0);
  expect(mid.timing.etaMs).not.toBeNull();
  expect(mid.hosts[0]!.durationMs).toBe(Date.parse(mid.hosts[0]!.finishedAt!) - Date.parse(mid.hosts[0]!.startedAt!));
  await w.cps.shift()!.close();
  const done = await until(
    'campaign completed',
    async () => {
      const x = (await api<CampaignDto>(b.url, `/v1/campaigns/${id}`)).body;
      return ['completed', 'failed', 'aborted'].includes(x.state) ? x : null;
    },
    45_000,
  );
  expect(done.error).toBeNull();
  expect(done.state).toBe('completed');
  expect(done.counts).toEqual({ hostsTotal: 2, hostsDone: 2, hostsFailed: 0 });
  expect(done.timing.etaMs).toBe(0);
  expect(done.timing.elapsedMs).toBe(Date.parse(done.finishedAt!) - Date.parse(done.createdAt));
  expect(done.hosts.every((h) => typeof h.durationMs === 'number' && h.durationMs > 0)).toBe(true);
  for (const h of ['old1', 'old2']) {
    const host = (await api<HostDto>(b.url, `/v1/hosts/${h}`)).body;
    expect(host).toMatchObject({ toolstack: V2_64, draining: false, campaignId: null, state: 'online' });
  }
  // watchers saw the hosts' campaign flags come and go (host.updated events, not just the final state)
  const hostEvents = (await w.redis.xrange(`${w.keyPrefix}:events`, '-', '+'))
    .map(([, f]) => JSON.parse(f[1]!) as FerryEvent)
    .filter((e) => e.type === 'host.updated' && e.entityId === 'old1')
    .map((e) => e.data as HostDto);
  expect(hostEvents.some((h) => h.draining && h.campaignId === id)).toBe(true);
  expect(hostEvents.at(-1)).toMatchObject({ draining: false, campaignId: null });
  // every VM is back home with the same memory
  const vms = (await api<{ items: VmDto[] }>(b.url, '/v1/vms?limit=100')).body.items;
  for (const [home, guests] of Object.entries(gs)) {
    for (const g of guests) {
      const v = vms.find((x) => x.id === g.vmId)!;
      expect(v.hostId, g.vmId).toBe(home);
      expect(v.memoryDigest).toBe(digests.get(g.vmId));
    }
  }
});

it('campaign restart after a full stop: a new control plane continues a persisted campaign (suspend-and-resume)', async () => {
  const first = await w.cp();
  await w.agent(first.url, { hostId: 'old9', toolstack: LEGACY32, guests: [guest('s9-a'), guest('s9-b')] });
  const c = await api<CampaignDto>(first.url, '/v1/campaigns', { body: { ...camp, hosts: { ids: ['old9'] }, strategy: 'suspend-and-resume' } });
  expect(c.status).toBe(201);
  await until('draining started', async () => (await api<CampaignDto>(first.url, `/v1/campaigns/${c.body.id}`)).body.hosts[0]!.state !== 'pending');
  // stop every control plane
  while (w.cps.length) await w.cps.shift()!.close();
  const second = await w.cp();
  for (const a of w.agents) (a as unknown as { o: { cpUrl: string } }).o.cpUrl = second.url;
  let last: unknown;
  const done = await until(
    'campaign completed after restart',
    async () => {
      const x = (await api<CampaignDto>(second.url, `/v1/campaigns/${c.body.id}`)).body;
      last = x;
      return ['completed', 'failed'].includes(x.state) ? x : null;
    },
    30_000,
  ).catch(async (e) => {
    console.error(JSON.stringify(last, null, 1), JSON.stringify((await api(second.url, '/v1/operations')).body, null, 1));
    throw e;
  });
  expect(done.state).toBe('completed');
  const v = (await api<VmDto>(second.url, '/v1/vms/s9-a')).body;
  expect(v).toMatchObject({ hostId: 'old9', state: 'running' });
  expect(v.latestCheckpoint).not.toBeNull();
});

it('two campaigns on the same hosts get different default names, numbered in the fleet', async () => {
  const { url } = await w.cp();
  const h = await w.agent(url, { hostId: 'name-1', toolstack: LEGACY32 });
  h.failUpgrade = true;
  const req = { ...camp, hosts: { ids: ['name-1'] } };
  const first = await api<CampaignDto>(url, '/v1/campaigns', { body: req });
  expect(first.status).toBe(201);
  await until('first campaign failed', async () => (await api<CampaignDto>(url, `/v1/campaigns/${first.body.id}`)).body.state === 'failed');
  const second = await api<CampaignDto>(url, '/v1/campaigns', { body: req });
  expect(second.status).toBe(201);
  expect(second.body.name).not.toBe(first.body.name);
  for (const c of [first.body, second.body]) expect(c.name).toMatch(/^#\d+ upgrade name-1 to Xen 4\.17 64-bit v2$/);
  await until('second campaign failed', async () => (await api<CampaignDto>(url, `/v1/campaigns/${second.body.id}`)).body.state === 'failed');
});
