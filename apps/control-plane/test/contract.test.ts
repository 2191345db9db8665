/**
 * The HTTP contract of the control plane (issue 17): every route is in the OpenAPI document with
 * its errors; every error is a problem (application/problem+json, libs/contracts/src/problem.ts);
 * collections page with limit/cursor; 201/202 carry Location; Idempotency-Key is optional and
 * replays or refuses (422) a repeated key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveAgentToken } from '@ferry/config';
import {
  PROBLEM_CONTENT_TYPE,
  campaignDtoSchema,
  hostDtoSchema,
  migrationDtoSchema,
  operationDtoSchema,
  pageSchemaOf,
  problemSchema,
  problemType,
  vmDtoSchema,
  type MigrationDto,
  type Page,
  type Problem,
} from '@ferry/contracts';
import { CONTROLLERS } from '../src/app';
import { isPublic } from '../src/http/auth';
import { ANSWERS, routesOf } from '../src/http/openapi';
import { ADMIN, LEGACY32, OPERATOR, SECRET, V2_64, VIEWER, World, guest } from './harness';

const w = new World();
let url = '';
const AGENT = deriveAgentToken(SECRET, 'h1');

beforeAll(async () => {
  url = (await w.cp()).url;
  await w.agent(url, { hostId: 'h1', toolstack: V2_64, guests: [guest('vm1'), guest('vm2'), guest('vm3')] });
  await w.agent(url, { hostId: 'h2', toolstack: V2_64 });
  // an old toolstack: what an upgrade campaign selects
  await w.agent(url, { hostId: 'old', toolstack: LEGACY32 });
});
afterAll(() => w.close());

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

async function call(method: string, path: string, opts: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await fetch(url + path, {
    method: method.toUpperCase(),
    headers: {
      ...(opts.token === null ? {} : { authorization: `Bearer ${opts.token ?? ADMIN}` }),
      ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...opts.headers,
    },
    body: opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
  });
  // an SSE route answers 200 and never ends: only its status and headers are read
  const text = res.headers.get('content-type')?.startsWith('text/event-stream') ? (await res.body?.cancel(), '') : await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** Asserts a problem answer of this status; returns the body. */
function expectProblem(a: Answer, status: number, what: string): Problem {
  expect(a.status, `${what}: ${a.text}`).toBe(status);
  expect(a.headers.get('content-type'), what).toMatch(/^application\/problem\+json/);
  const p = problemSchema.strict().parse(a.json);
  expect(p.status, what).toBe(status);
  expect(p.instance, what).toBe(new URL(url + what.split(' ')[1]!).pathname);
  expect(p.detail, what).not.toContain('\n');
  return p;
}

/** A valid body for the POSTs whose body `{}` is not, by the last segment of their path. */
const VALID_BODY: Record<string, unknown> = {
  maintenance: { enabled: true },
  commit: { attempt: 1, bytesReceived: 0, memoryDigest: null },
  resolve: { attempt: 1, reason: 'test' },
};
const routes = routesOf(CONTROLLERS).filter((r) => r.method !== 'all');
const fill = (path: string, id: string): string => path.replace(/\{hostId\}/g, 'h1').replace(/\{id\}/g, id);

describe('OpenAPI document', () => {
  it('has every route with its parameters, errors as Problem, Location on 201/202 and pages on collections', async () => {
    const doc = (await call('get', '/docs/openapi.json', { token: null })).json as {
      paths: Record<string, Record<string, { parameters?: { name: string; in: string }[]; responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }>; headers?: Record<string, unknown> }> }>>;
      components: { schemas: Record<string, unknown> };
    };
    expect(doc.components.schemas.Problem).toBeDefined();
    expect(routes.length).toBeGreaterThan(30);
    for (const r of routes) {
      const op = doc.paths[r.path]?.[r.method];
      expect(op, `${r.method} ${r.path} is missing from the document`).toBeDefined();
      for (const [code, resp] of Object.entries(op!.responses)) {
        if (Number(code) >= 400) expect(resp.content?.[PROBLEM_CONTENT_TYPE]?.schema.$ref, `${r.method} ${r.path} ${code}`).toBe('#/components/schemas/Problem');
        if (code === '201' || code === '202') expect(resp.headers?.Location, `${r.method} ${r.path} ${code} Location`).toBeDefined();
      }
      if (!isPublic(r.handler)) expect(op!.responses['401'], `${r.method} ${r.path} 401`).toBeDefined();
      if (r.path.includes('{')) expect(op!.responses['404'], `${r.method} ${r.path} 404`).toBeDefined();
    }
    for (const list of ['/v1/hosts', '/v1/vms', '/v1/operations', '/v1/migrations', '/v1/campaigns', '/v1/checkpoints']) {
      const names = doc.paths[list]!.get!.parameters!.map((p) => p.name);
      expect(names, list).toEqual(expect.arrayContaining(['limit', 'cursor']));
    }
    expect(doc.paths['/v1/migrations']!.get!.parameters!.map((p) => p.name)).toEqual(expect.arrayContaining(['phase', 'vm', 'host', 'campaign', 'active']));
    for (const [key, [status, name, page]] of Object.entries(ANSWERS)) {
      const [method, path] = key.split(' ') as [string, string];
      const schema = (doc.paths[path]![method]!.responses[String(status)]!.content!['application/json']!.schema as unknown) as { $ref?: string; properties?: { items: { items: { $ref: string } } } };
      expect(page ? schema.properties?.items.items.$ref : schema.$ref, key).toBe(`#/components/schemas/${name}`);
      expect(doc.components.schemas[name], name).toBeDefined();
    }
    const idem = doc.paths['/v1/migrations']!.post!.parameters!.find((p) => p.name === 'Idempotency-Key') as { required?: boolean } | undefined;
    expect(idem?.required).toBe(false);
  });
});

describe('problem details on every route where each applies', () => {
  it('401 without a token or with an unknown one, with WWW-Authenticate: Bearer', async () => {
    for (const r of routes.filter((x) => !isPublic(x.handler))) {
      const what = `${r.method} ${fill(r.path, 'x1')}`;
      for (const token of [null, 'not-a-token-at-all']) {
        const a = await call(r.method, fill(r.path, 'x1'), { token, body: r.method === 'get' || r.method === 'delete' ? undefined : {} });
        const p = expectProblem(a, 401, what);
        expect(p.type).toBe(problemType('unauthorized'));
        expect(a.headers.get('www-authenticate'), what).toMatch(/^Bearer realm="ferry"/);
      }
    }
  });

  it('403 for a token of the wrong kind or rank', async () => {
    for (const r of routes.filter((x) => !isPublic(x.handler))) {
      const agentRoute = r.path.startsWith('/v1/agents');
      const what = `${r.method} ${fill(r.path, 'x1')}`;
      // operator routes refuse an agent token; agent routes refuse an operator token
      const a = await call(r.method, fill(r.path, 'x1'), { token: agentRoute ? ADMIN : AGENT, body: r.method === 'get' || r.method === 'delete' ? undefined : {} });
      expect(expectProblem(a, 403, what).type).toBe(problemType('forbidden'));
    }
    const viewer = await call('post', '/v1/migrations', { token: VIEWER, body: { vm: 'vm1', mode: 'live' } });
    expect(expectProblem(viewer, 403, 'post /v1/migrations').detail).toMatch(/needs 'operator'/);
  });

  it('400 naming the field on every route with a path parameter, a query or a body', async () => {
    for (const r of routes.filter((x) => !isPublic(x.handler) && x.path.includes('{id}'))) {
      const path = fill(r.path, 'not%20valid');
      const token = r.path.startsWith('/v1/agents') ? AGENT : ADMIN;
      // a valid body, so that the path parameter is what is refused
      const a = await call(r.method, path, { token, body: r.method === 'post' ? (VALID_BODY[r.path.split('/').pop()!] ?? {}) : undefined });
      const p = expectProblem(a, 400, `${r.method} ${path}`);
      expect(p.type).toBe(problemType('validation-failed'));
      expect(p.issues?.map((i) => i.field), `${r.method} ${path}`).toContain('id');
    }
    for (const path of ['/v1/hosts', '/v1/vms', '/v1/operations', '/v1/migrations', '/v1/campaigns', '/v1/checkpoints', '/v1/events']) {
      const p = expectProblem(await call('get', `${path}?bogus=1`), 400, `get ${path}`);
      expect(p.issues).toEqual([{ field: 'bogus', rule: 'unknown query parameter' }]);
    }
    for (const [path, token] of [
      ['/v1/migrations', OPERATOR],
      ['/v1/campaigns', ADMIN],
      ['/v1/campaigns/plan', VIEWER],
      ['/v1/vms/vm1/resume', OPERATOR],
      ['/v1/vms/vm1/suspend', OPERATOR],
      ['/v1/hosts/h1/drain', OPERATOR],
      ['/v1/hosts/h1/maintenance', OPERATOR],
      ['/v1/agents/register', AGENT],
      ['/v1/agents/h1/heartbeat', AGENT],
      ['/v1/agents/h1/reports', AGENT],
    ] as const) {
      const p = expectProblem(await call('post', path, { token, body: { unknownField: 1 } }), 400, `post ${path}`);
      expect(p.issues!.length, path).toBeGreaterThan(0);
    }
    const malformed = expectProblem(await call('post', '/v1/migrations', { body: '{"vm":' }), 400, 'post /v1/migrations');
    expect(malformed.type).toBe(problemType('bad-request'));
  });

  it('404 for an unknown resource on every route that names one', async () => {
    const cases: [string, string][] = [
      ['get', '/v1/hosts/nohost'],
      ['post', '/v1/hosts/nohost/drain'],
      ['delete', '/v1/hosts/nohost/drain'],
      ['post', '/v1/hosts/nohost/maintenance'],
      ['get', '/v1/vms/novm'],
      ['post', '/v1/vms/novm/suspend'],
      ['post', '/v1/vms/novm/resume'],
      ['get', '/v1/operations/op-none'],
      ['get', '/v1/migrations/mig-none'],
      ['post', '/v1/migrations/mig-none/cancel'],
      ['get', '/v1/campaigns/camp-none'],
      ['post', '/v1/campaigns/camp-none/pause'],
      ['post', '/v1/campaigns/camp-none/resume'],
      ['post', '/v1/campaigns/camp-none/abort'],
      ['get', '/v1/nowhere'],
    ];
    const bodies: Record<string, unknown> = { '/v1/hosts/nohost/drain': {}, '/v1/hosts/nohost/maintenance': { enabled: true }, '/v1/vms/novm/suspend': {}, '/v1/vms/novm/resume': {} };
    for (const [method, path] of cases) {
      const body = method === 'post' ? (bodies[path] ?? undefined) : undefined;
      expect(expectProblem(await call(method, path, { body }), 404, `${method} ${path}`).type).toBe(problemType('not-found'));
    }
    expect(expectProblem(await call('post', '/v1/migrations', { body: { vm: 'novm', mode: 'live' } }), 404, 'post /v1/migrations').detail).toBe("vm 'novm' not found");
  });

  it('409 and 422 on the routes that act', async () => {
    const incompatible = await call('post', '/v1/migrations', { body: { vm: 'vm1', mode: 'live', target: 'h1' } });
    expect(expectProblem(incompatible, 409, 'post /v1/migrations').type).toBe(problemType('conflict'));
    const m = await call('post', '/v1/migrations', { body: { vm: 'vm3', mode: 'live', target: 'h2' }, headers: { 'idempotency-key': 'c-409' } });
    expect(m.status).toBe(202);
    const busy = await call('post', '/v1/vms/vm3/suspend', { body: {} });
    expect(expectProblem(busy, 409, 'post /v1/vms/vm3/suspend').detail).toMatch(/active operation/);
    const reused = await call('post', '/v1/migrations', { body: { vm: 'vm3', mode: 'cold', target: 'h2' }, headers: { 'idempotency-key': 'c-409' } });
    expect(expectProblem(reused, 422, 'post /v1/migrations').type).toBe(problemType('idempotency-key-reused'));
  });
});

describe('pagination', () => {
  it('every collection pages with limit and nextCursor; a foreign cursor is a 400 on cursor', async () => {
    for (const path of ['/v1/hosts', '/v1/vms', '/v1/operations', '/v1/migrations', '/v1/campaigns', '/v1/checkpoints']) {
      const seen: unknown[] = [];
      let cursor: string | null = null;
      let total = -1;
      for (let n = 0; n < 20; n++) {
        const a = await call('get', `${path}?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
        expect(a.status, path).toBe(200);
        const page = a.json as Page<{ id: string }>;
        expect(Object.keys(page), path).toEqual(expect.arrayContaining(['items', 'nextCursor', 'limit', 'total']));
        expect(page.items.length, path).toBeLessThanOrEqual(1);
        seen.push(...page.items.map((i) => i.id));
        total = page.total;
        cursor = page.nextCursor;
        if (!cursor) break;
      }
      expect(seen.length, path).toBe(total);
      expect(new Set(seen).size, path).toBe(seen.length);
      const bad = expectProblem(await call('get', `${path}?cursor=zzz`), 400, `get ${path}`);
      expect(bad.issues).toEqual([{ field: 'cursor', rule: 'must be a nextCursor of a previous page' }]);
    }
    const hosts = (await call('get', '/v1/hosts?limit=1')).json as Page<{ id: string }>;
    expect(hosts.total).toBe(3);
    expect(hosts.nextCursor).toEqual(expect.any(String));
  });
});

describe('Location and Idempotency-Key', () => {
  it('a migration without a key is accepted; 202 carries Location; a repeated key replays', async () => {
    const body = { vm: 'vm2', mode: 'cold', target: 'h2' };
    const first = await call('post', '/v1/migrations', { token: OPERATOR, body, headers: { 'idempotency-key': 'loc-1' } });
    expect(first.status).toBe(202);
    const m = first.json as MigrationDto;
    expect(first.headers.get('location')).toBe(`/v1/migrations/${m.id}`);
    const again = await call('post', '/v1/migrations', { token: OPERATOR, body, headers: { 'idempotency-key': 'loc-1' } });
    expect(again.status).toBe(202);
    expect((again.json as MigrationDto).id).toBe(m.id);
    expect((await call('get', first.headers.get('location')!)).status).toBe(200);
    // no key at all: a plain request works (here refused on its merits, not for the missing header)
    const plain = await call('post', '/v1/migrations', { token: OPERATOR, body });
    expect(expectProblem(plain, 409, 'post /v1/migrations').detail).toMatch(/already has an active operation/);
  });

  it('a campaign: 201 with Location; same key replays the same campaign, another body under it is 422', async () => {
    const body = { name: 'c1', hosts: { ids: ['old'] }, strategy: 'evacuate-and-return', maxParallelHosts: 1, maxParallelMigrations: 1, onError: 'stop' };
    const a = await call('post', '/v1/campaigns', { body, headers: { 'idempotency-key': 'camp-1' } });
    expect(a.status, a.text).toBe(201);
    const id = (a.json as { id: string }).id;
    expect(a.headers.get('location')).toBe(`/v1/campaigns/${id}`);
    const b = await call('post', '/v1/campaigns', { body, headers: { 'idempotency-key': 'camp-1' } });
    expect(b.status).toBe(201);
    expect((b.json as { id: string }).id).toBe(id);
    expect(b.headers.get('location')).toBe(`/v1/campaigns/${id}`);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    const c = await call('post', '/v1/campaigns', { body: { ...body, name: 'c2' }, headers: { 'idempotency-key': 'camp-1' } });
    expect(expectProblem(c, 422, 'post /v1/campaigns').type).toBe(problemType('idempotency-key-reused'));
    const list = (await call('get', '/v1/campaigns')).json as Page<{ id: string }>;
    expect(list.items.filter((x) => x.id === id)).toHaveLength(1);
    expect(list.total).toBe(1);
    const malformedKey = await call('post', '/v1/campaigns', { body, headers: { 'idempotency-key': 'a key with spaces' } });
    expect(expectProblem(malformedKey, 400, 'post /v1/campaigns').issues?.[0]?.field).toBe('Idempotency-Key');
  });

  it('drain, suspend and resume accept a key: a retry does not act twice', async () => {
    const d1 = await call('post', '/v1/hosts/h2/drain', { token: OPERATOR, body: { evacuate: false }, headers: { 'idempotency-key': 'drain-1' } });
    expect(d1.status, d1.text).toBe(200);
    const d2 = await call('post', '/v1/hosts/h2/drain', { token: OPERATOR, body: { evacuate: false }, headers: { 'idempotency-key': 'drain-1' } });
    expect(d2.json).toEqual(d1.json);
    expect(d2.headers.get('idempotent-replayed')).toBe('true');
    const d3 = await call('post', '/v1/hosts/h2/drain', { token: OPERATOR, body: { evacuate: true }, headers: { 'idempotency-key': 'drain-1' } });
    expect(d3.status).toBe(422);
    // the same key on another route is another request: 422
    const s = await call('post', '/v1/vms/vm1/suspend', { token: OPERATOR, body: {}, headers: { 'idempotency-key': 'drain-1' } });
    expect(expectProblem(s, 422, 'post /v1/vms/vm1/suspend').type).toBe(problemType('idempotency-key-reused'));
  });
});

describe('answers match their documented schemas', () => {
  it('hosts, vms, operations, migrations and campaigns, one by one and in pages (strict: no undocumented field)', async () => {
    const check = async (path: string, schema: { parse(v: unknown): unknown }): Promise<void> => {
      const a = await call('get', path);
      expect(a.status, path).toBe(200);
      expect(() => schema.parse(a.json), `${path}: ${a.text.slice(0, 300)}`).not.toThrow();
    };
    await check('/v1/hosts', pageSchemaOf(hostDtoSchema.strict()).strict());
    await check('/v1/hosts/h1', hostDtoSchema.strict());
    await check('/v1/vms', pageSchemaOf(vmDtoSchema.strict()).strict());
    await check('/v1/vms/vm1', vmDtoSchema.strict());
    await check('/v1/migrations', pageSchemaOf(migrationDtoSchema.strict()).strict());
    const ops = (await call('get', '/v1/operations')).json as Page<{ id: string }>;
    await check('/v1/operations', pageSchemaOf(operationDtoSchema.strict()).strict());
    for (const o of ops.items.slice(0, 3)) await check(`/v1/operations/${o.id}`, operationDtoSchema.strict());
    const migs = (await call('get', '/v1/migrations')).json as Page<{ id: string }>;
    expect(migs.items.length).toBeGreaterThan(0);
    for (const m of migs.items) await check(`/v1/migrations/${m.id}`, migrationDtoSchema.strict());
    const camps = (await call('get', '/v1/campaigns')).json as Page<{ id: string }>;
    expect(camps.items.length).toBeGreaterThan(0);
    await check('/v1/campaigns', pageSchemaOf(campaignDtoSchema.strict()).strict());
    for (const c of camps.items) await check(`/v1/campaigns/${c.id}`, campaignDtoSchema.strict());
  });
});
