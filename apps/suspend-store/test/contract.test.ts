/**
 * The suspend-store's side of the HTTP contract (issue 17): every error is a problem
 * (application/problem+json, libs/contracts/src/problem.ts) on every route it applies to, 401
 * carries WWW-Authenticate: Bearer, collections are pages with nextCursor, 201 carries Location.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { problemSchema, problemType, type Problem } from '@ferry/contracts';
import { sha256, startStore, tempDir, v2Image, type TestStore } from './helpers';

const READER = 'reader-token-0123456789abcdef';
const dir = tempDir('contract');
let store: TestStore;
let img: Buffer;

beforeAll(async () => {
  store = await startStore({ FERRY_STORE_BACKEND: 'fs', FERRY_STORE_DIR: dir, FERRY_STORE_TOKENS: `${READER}:read` });
  img = await v2Image();
});
afterAll(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function expectProblem(res: Response, status: number, path: string): Promise<Problem> {
  const text = await res.text();
  expect(res.status, `${path}: ${text}`).toBe(status);
  expect(res.headers.get('content-type'), path).toMatch(/^application\/problem\+json/);
  const p = problemSchema.strict().parse(JSON.parse(text));
  expect(p.status).toBe(status);
  expect(p.instance).toBe(path.split('?')[0]);
  expect(p.detail).not.toContain('\n');
  return p;
}

const ROUTES: [string, string][] = [
  ['PUT', '/v1/checkpoints/c1'],
  ['GET', '/v1/checkpoints'],
  ['GET', '/v1/checkpoints/c1/meta'],
  ['GET', '/v1/checkpoints/c1'],
  ['DELETE', '/v1/checkpoints/c1'],
  ['GET', '/v1/retention'],
  ['POST', '/v1/tokens'],
  ['GET', '/v1/tokens'],
  ['DELETE', '/v1/tokens/0123456789abcdef'],
];

describe('suspend-store problem details', () => {
  it('401 on every protected route, with WWW-Authenticate: Bearer', async () => {
    for (const [method, path] of ROUTES) {
      for (const token of [null, 'unknown-token-0123456789']) {
        const res = await store.call(method, path, { token });
        expect(res.headers.get('www-authenticate'), path).toMatch(/^Bearer realm="ferry-store"/);
        expect((await expectProblem(res, 401, path)).type).toBe(problemType('unauthorized'));
      }
    }
    // HEAD answers without a body, with the same status and header
    const head = await store.call('HEAD', '/v1/checkpoints/c1', { token: null });
    expect(head.status).toBe(401);
    expect(head.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });

  it('403 for a token without the scope', async () => {
    for (const [method, path] of [['PUT', '/v1/checkpoints/c1'], ['DELETE', '/v1/checkpoints/c1'], ['POST', '/v1/tokens'], ['GET', '/v1/tokens'], ['DELETE', '/v1/tokens/0123456789abcdef']] as const) {
      expect((await expectProblem(await store.call(method, path, { token: READER }), 403, path)).type).toBe(problemType('forbidden'));
    }
  });

  it('400 on a bad id, query or body; 404 on an unknown checkpoint', async () => {
    for (const [method, path] of [['PUT', '/v1/checkpoints/..bad'], ['GET', '/v1/checkpoints/..bad/meta'], ['GET', '/v1/checkpoints/..bad'], ['DELETE', '/v1/checkpoints/..bad'], ['GET', '/v1/checkpoints?limit=0'], ['GET', '/v1/checkpoints?cursor=%00'], ['DELETE', '/v1/tokens/zz']] as const) {
      expect((await expectProblem(await store.call(method, path, { body: method === 'PUT' ? img : undefined }), 400, path)).type).toBe(problemType('bad-request'));
    }
    const badBody = await store.call('POST', '/v1/tokens', { body: JSON.stringify({ scopes: ['root'] }), headers: { 'content-type': 'application/json' } });
    await expectProblem(badBody, 400, '/v1/tokens');
    for (const [method, path] of [['GET', '/v1/checkpoints/nope/meta'], ['GET', '/v1/checkpoints/nope'], ['DELETE', '/v1/checkpoints/nope'], ['GET', '/v1/nowhere']] as const) {
      expect((await expectProblem(await store.call(method, path), 404, path)).type).toBe(problemType('not-found'));
    }
  });

  it('201 with Location; 409 on an existing id; 422 on a checksum mismatch (with its reason)', async () => {
    const put = await store.call('PUT', `/v1/checkpoints/c1?vm=vm-1&sha256=${sha256(img)}`, { body: img });
    expect(put.status).toBe(201);
    expect(put.headers.get('location')).toBe('/v1/checkpoints/c1');
    expect((await store.call('GET', put.headers.get('location')! + '/meta')).status).toBe(200);
    const again = await expectProblem(await store.call('PUT', '/v1/checkpoints/c1?vm=vm-1', { body: img }), 409, '/v1/checkpoints/c1');
    expect(again).toMatchObject({ type: problemType('conflict'), reason: 'exists' });
    const wrong = await expectProblem(await store.call('PUT', `/v1/checkpoints/c2?vm=vm-1&sha256=${'0'.repeat(64)}`, { body: img }), 422, '/v1/checkpoints/c2');
    expect(wrong).toMatchObject({ type: problemType('unprocessable'), reason: 'checksum' });
    const token = await store.call('POST', '/v1/tokens', { body: JSON.stringify({ name: 'x', scopes: ['read'] }), headers: { 'content-type': 'application/json' } });
    expect(token.status).toBe(201);
    const id = ((await token.json()) as { id: string }).id;
    expect(token.headers.get('location')).toBe(`/v1/tokens/${id}`);
  });

  it('collections are pages: items, nextCursor (followed to the end), limit', async () => {
    for (const id of ['c3', 'c4']) expect((await store.call('PUT', `/v1/checkpoints/${id}?vm=vm-1`, { body: img })).status).toBe(201);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await store.call('GET', `/v1/checkpoints?limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      const page = (await res.json()) as { items: { id: string }[]; nextCursor: string | null; limit: number };
      expect(page.limit).toBe(1);
      seen.push(...page.items.map((i) => i.id));
      cursor = page.nextCursor;
    } while (cursor && seen.length < 10);
    expect(seen.sort()).toEqual(['c1', 'c3', 'c4']);
    const tokens = (await (await store.call('GET', '/v1/tokens')).json()) as { items: unknown[]; nextCursor: null };
    expect(tokens.nextCursor).toBeNull();
    expect(tokens.items.length).toBe(1);
  });
});

describe('suspend-store OpenAPI document', () => {
  it('describes every error as a Problem, and 401 on every /v1 operation', async () => {
    const doc = (await (await store.call('GET', '/docs-json', { token: null })).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }> }>>;
      components: { schemas: Record<string, unknown> };
    };
    expect(doc.components.schemas.Problem).toBeDefined();
    let ops = 0;
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        ops++;
        if (path.startsWith('/v1/')) expect(op.responses['401'], `${method} ${path}`).toBeDefined();
        for (const [code, r] of Object.entries(op.responses)) {
          if (Number(code) >= 400 && method !== 'head') expect(r.content?.['application/problem+json']?.schema.$ref, `${method} ${path} ${code}`).toBe('#/components/schemas/Problem');
        }
      }
    }
    expect(ops).toBeGreaterThanOrEqual(12);
  });
});
