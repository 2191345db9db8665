import { afterAll, expect, it } from 'vitest';
import { FerryApiError, FerryClient, type MigrationDto } from '@ferry/contracts';
import { ADMIN, LEGACY32, V2_64, VIEWER, World, guest } from './harness';

const w = new World();
afterAll(() => w.close());

it('the typed client drives the API: hosts, vms, migrate with live progress, plan, errors', async () => {
  const { url } = await w.cp();
  await w.agent(url, { hostId: 'old', toolstack: LEGACY32, guests: [guest('c1'), guest('c2')], rounds: 4 });
  await w.agent(url, { hostId: 'new', toolstack: V2_64 });
  const c = new FerryClient({ baseUrl: url + '/', token: ADMIN });
  expect((await c.hosts.all()).map((h) => h.id)).toEqual(['new', 'old']);
  expect((await c.vms.list({ host: 'old' })).total).toBe(2);
  const m = await c.migrations.create({ vm: 'c1', mode: 'live' });
  const seen: MigrationDto[] = [];
  const end = await c.watchMigration(m.id, (x) => seen.push(x));
  expect(end.phase).toBe('completed');
  expect(seen.some((x) => x.phase === 'precopy' && x.progress.bytesDone > 0)).toBe(true);
  const plan = await c.campaigns.plan({ hosts: { bitness: 32 }, strategy: 'suspend-and-resume', maxParallelHosts: 1, maxParallelMigrations: 1, onError: 'stop' });
  expect(plan.feasible).toBe(true);
  expect(plan.hosts[0]!.vms.map((v) => v.vmId)).toEqual(['c2']);
  const viewer = new FerryClient({ baseUrl: url, token: VIEWER });
  await expect(viewer.migrations.create({ vm: 'c2', mode: 'live' })).rejects.toSatisfy((e: unknown) => e instanceof FerryApiError && e.status === 403);
  await expect(c.migrations.create({ vm: 'c2', mode: 'bogus' as 'live' })).rejects.toThrow(/mode/);
});
