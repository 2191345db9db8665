import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveAgentToken } from '@ferry/config';
import { ConfigError } from '@ferry/config';
import { startControlPlane } from '../src/app';
import { ADMIN, OPERATOR, SECRET, V2_64, VIEWER, World, api, guest } from './harness';

const w = new World();
let url = '';

beforeAll(async () => {
  url = (await w.cp()).url;
  await w.agent(url, { hostId: 'h1', toolstack: V2_64, guests: [guest('vm1')] });
});
afterAll(() => w.close());

describe('config', () => {
  it('fails fast naming the variable', async () => {
    await expect(startControlPlane({ REDIS_URL: 'redis://x' })).rejects.toThrow(/FERRY_ADMIN_TOKEN: is required/);
    await expect(startControlPlane({ FERRY_ADMIN_TOKEN: 'x'.repeat(10), PORT: 'abc' })).rejects.toThrow(ConfigError);
    await expect(startControlPlane({ FERRY_ADMIN_TOKEN: 'x'.repeat(10), FERRY_API_TOKENS: 'king:abcdefghij' })).rejects.toThrow(/FERRY_API_TOKENS: must be a comma-separated list/);
  });
});

describe('auth', () => {
  it('refuses unauthenticated and wrong-role calls', async () => {
    expect((await api(url, '/v1/hosts', { token: null })).status).toBe(401);
    expect((await api(url, '/v1/hosts', { token: 'nope-nope-nope' })).status).toBe(401);
    expect((await api(url, '/v1/hosts', { token: VIEWER })).status).toBe(200);
    const post = { body: { vm: 'vm1', mode: 'live' }, headers: { 'idempotency-key': 'k-auth' } };
    expect((await api(url, '/v1/migrations', { ...post, token: VIEWER })).status).toBe(403);
    const camp = { hosts: { bitness: 32 }, strategy: 'evacuate-and-return', maxParallelHosts: 1, maxParallelMigrations: 1, onError: 'stop' };
    expect((await api(url, '/v1/campaigns', { body: camp, token: OPERATOR })).status).toBe(403);
    expect((await api(url, '/v1/campaigns/plan', { body: camp, token: VIEWER })).status).toBe(200);
  });
  it('GET /v1/me tells a token its role', async () => {
    expect((await api(url, '/v1/me', { token: null })).status).toBe(401);
    for (const [token, role] of [[VIEWER, 'viewer'], [OPERATOR, 'operator'], [ADMIN, 'admin']] as const) {
      expect((await api<{ role: string }>(url, '/v1/me', { token })).body).toEqual({ role });
    }
  });
  it('agent tokens work only on their own host paths and never on the operator API', async () => {
    const t1 = deriveAgentToken(SECRET, 'h1');
    expect((await api(url, '/v1/hosts', { token: t1 })).status).toBe(403);
    const hb = { bootId: 'x', toolstack: V2_64, state: 'ready', capacity: { memoryMiB: 1, vcpus: 1, maxGuests: 1 }, inventory: { guests: [] }, activeOperations: [] };
    expect((await api(url, '/v1/agents/h2/heartbeat', { token: t1, body: hb })).status).toBe(403);
    expect((await api(url, '/v1/agents/h1/heartbeat', { token: ADMIN, body: hb })).status).toBe(403);
    expect((await api(url, '/v1/agents/h1/heartbeat', { token: deriveAgentToken('other-secret', 'h1'), body: hb })).status).toBe(401);
    const r = await api<{ reregister: boolean }>(url, '/v1/agents/h1/heartbeat', { token: t1, body: hb });
    expect(r.status).toBe(200);
    expect(r.body.reregister).toBe(true); // unknown bootId
  });
});

describe('validation: 400 with the field and the rule', () => {
  const post = (body: unknown, headers: Record<string, string> = { 'idempotency-key': 'k1' }) => api<{ issues: { field: string; rule: string }[] }>(url, '/v1/migrations', { body, headers });
  it('bad enum, unknown field, wrong type, malformed header', async () => {
    let r = await post({ vm: 'vm1', mode: 'warp' });
    expect(r.status).toBe(400);
    expect(r.body.issues[0]).toMatchObject({ field: 'mode' });
    expect(r.body.issues[0]!.rule).toMatch(/live.*cold/);
    r = await post({ vm: 'vm1', mode: 'live', extra: 1 });
    expect(r.status).toBe(400);
    expect(r.body.issues[0]!.rule).toMatch(/unknown field\(s\): extra/);
    r = await post({ vm: 'vm1', mode: 'live', bandwidth: -1 });
    expect(r.body.issues[0]).toMatchObject({ field: 'bandwidth', rule: 'must be > 0' });
    r = await post({ mode: 'live' });
    expect(r.body.issues[0]).toMatchObject({ field: 'vm', rule: 'is required' });
    r = await post({ vm: '../etc', mode: 'live' });
    expect(r.body.issues[0]!.field).toBe('vm');
    r = await post({ vm: 'vm1', mode: 'live' }, { 'idempotency-key': 'has a space' });
    expect(r.status).toBe(400);
    expect(r.body.issues[0]).toMatchObject({ field: 'Idempotency-Key' });
  });
  it('bad query, bad path param, malformed JSON, arrays and nulls never crash', async () => {
    let r = await api<{ issues: { field: string }[] }>(url, '/v1/migrations?limit=0');
    expect(r.status).toBe(400);
    expect(r.body.issues[0]!.field).toBe('limit');
    r = await api(url, '/v1/migrations?phase=flying');
    expect(r.status).toBe(400);
    r = await api(url, '/v1/hosts/' + encodeURIComponent('a b'));
    expect(r.status).toBe(400);
    for (const body of ['{"vm":', 'null', '[]', '"str"', '{"vm":{"$gt":""},"mode":"live"}']) {
      const x = await api(url, '/v1/migrations', { body, headers: { 'idempotency-key': 'k2' } });
      expect(x.status, body).toBe(400);
    }
    const c = await api<{ issues: { field: string; rule: string }[] }>(url, '/v1/campaigns/plan', { body: { hosts: {}, strategy: 'evacuate-and-return', maxParallelHosts: 0, maxParallelMigrations: 1.5, onError: 'stop' } });
    expect(c.status).toBe(400);
    expect(c.body.issues.map((i) => i.field).sort()).toEqual(['hosts', 'maxParallelHosts', 'maxParallelMigrations']);
  });
  it('an unknown query parameter is named as such, never as "(body)"', async () => {
    for (const path of ['/v1/migrations?bogus=1', '/v1/vms?limit=5&bogus=1', '/v1/operations?bogus=1', '/v1/campaigns?bogus=1']) {
      const r = await api<{ issues: { field: string; rule: string }[]; detail: string }>(url, path);
      expect(r.status, path).toBe(400);
      expect(r.body.issues, path).toEqual([{ field: 'bogus', rule: 'unknown query parameter' }]);
      expect(r.body.detail).toBe('bogus: unknown query parameter');
    }
  });
  it('unknown resources are 404', async () => {
    expect((await api(url, '/v1/migrations', { body: { vm: 'nope', mode: 'live' }, headers: { 'idempotency-key': 'k3' } })).status).toBe(404);
    expect((await api(url, '/v1/vms/nope')).status).toBe(404);
    expect((await api(url, '/v1/migrations/mig-nope')).status).toBe(404);
  });
});

describe('ops endpoints', () => {
  it('healthz, readyz, metrics, docs', async () => {
    expect((await api(url, '/healthz', { token: null })).status).toBe(200);
    expect((await api(url, '/readyz', { token: null })).body).toMatchObject({ status: 'ok' });
    const m = await api<string>(url, '/metrics', { token: null });
    expect(m.body).toContain('ferry_migrations{phase="queued"}');
    expect(m.body).toContain('ferry_queue_depth');
    const d = await api<{ paths: Record<string, unknown> }>(url, '/docs/openapi.json', { token: null });
    expect(Object.keys(d.body.paths)).toContain('/v1/migrations');
  });
  it('hosts and vms show toolstack, state and the sim memory digest', async () => {
    const h = await api<{ items: { toolstack: unknown; state: string }[] }>(url, '/v1/hosts');
    expect(h.body.items[0]).toMatchObject({ toolstack: V2_64, state: 'online' });
    const v = await api<{ memoryDigest: string; hostId: string }>(url, '/v1/vms/vm1');
    expect(v.body.hostId).toBe('h1');
    expect(v.body.memoryDigest).toMatch(/^sha256:/);
  });
});

describe('agent credentials', () => {
  it('admin mints a token and a Redis ACL user limited to the host queue', async () => {
    expect((await api(url, '/v1/hosts/h9/agent-credentials', { method: 'POST', token: OPERATOR })).status).toBe(403);
    const r = await api<{ token: string; redisUser: string; redisPassword: string; queueName: string }>(url, '/v1/hosts/h9/agent-credentials', { method: 'POST' });
    expect(r.status).toBe(200);
    expect(r.body.token).toBe(deriveAgentToken(SECRET, 'h9'));
    expect(r.body.queueName).toBe('ferry.host.h9');
    expect(r.body.redisUser).toBe(`${w.queuePrefix}-agent-h9`); // one user per stack sharing a Redis
    const rules = String(await w.redis.call('ACL', 'GETUSER', r.body.redisUser));
    expect(rules).toContain(`${w.queuePrefix}:ferry.host.h9:*`);
    await w.redis.call('ACL', 'DELUSER', r.body.redisUser);
  });
});
