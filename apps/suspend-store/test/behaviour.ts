import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetentionService } from '../src/checkpoints/retention.service';
import { ADMIN, bodyOf, objectsUnder, sha256, startStore, v2Image, type TestStore } from './helpers';

export interface BackendUnderTest {
  /** Environment for a store on this backend's own folder/bucket (the same on every call of one suite). */
  env(): Record<string, string>;
  /** Environment for a store on a new folder/bucket of its own. */
  isolated(): Promise<Record<string, string>>;
  cleanup?(): Promise<void>;
}

/**
 * The behaviour every backend must show, run once per backend (fs.behaviour.test.ts,
 * s3.behaviour.test.ts). Each test uses its own checkpoint ids and VM names.
 */
export function behaviourSuite(name: string, setup: () => Promise<BackendUnderTest | null>, skipReason: () => string): void {
  describe(`suspend-store behaviour (${name})`, () => {
    let b: BackendUnderTest | null = null;
    let store: TestStore;
    let img: Buffer;

    beforeAll(async () => {
      b = await setup();
      if (!b) {
        console.warn(`[suspend-store ${name}] skipped: ${skipReason()}`);
        return;
      }
      store = await startStore(b.env());
      img = await v2Image({ pages: 300 });
    });

    afterAll(async () => {
      await store?.close();
      await b?.cleanup?.();
    });

    const test = (title: string, fn: () => Promise<void>, timeout?: number): void => {
      it(title, async (ctx) => {
        if (!b) ctx.skip();
        await fn();
      }, timeout);
    };

    const put = (id: string, body: Buffer | Readable, query = 'vm=vm-1', token?: string | null) =>
      store.call('PUT', `/v1/checkpoints/${id}?${query}`, { body, ...(token !== undefined ? { token } : {}) });

    async function expectNothing(id: string): Promise<void> {
      expect((await store.call('GET', `/v1/checkpoints/${id}`)).status).toBe(404);
      expect((await store.call('HEAD', `/v1/checkpoints/${id}`)).status).toBe(404);
      expect(await objectsUnder(store.backend, `checkpoints/${id}/`)).toEqual([]);
    }

    test('serves health, readiness, metrics and the OpenAPI document', async () => {
      expect((await store.call('GET', '/healthz', { token: null })).status).toBe(200);
      const ready = await store.call('GET', '/readyz', { token: null });
      expect(ready.status).toBe(200);
      const doc = (await (await store.call('GET', '/docs-json', { token: null })).json()) as { paths: Record<string, unknown> };
      expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/checkpoints/{id}', '/v1/checkpoints', '/v1/tokens']));
      expect((await store.call('GET', '/docs', { token: null })).status).toBe(200);
      expect(await (await store.call('GET', '/metrics', { token: null })).text()).toContain('ferry_store_bytes_in_total');
    });

    test('stores a v2 image and gives it back byte-identical, with its metadata', async () => {
      const res = await put('basic-1', img, 'vm=vm-basic&label=env=test&label=tier=gold');
      expect(res.status).toBe(201);
      const meta = (await res.json()) as { stats: { pages: number; vcpus: number } } & Record<string, unknown>;
      expect(meta).toMatchObject({
        id: 'basic-1',
        vm: 'vm-basic',
        size: img.length,
        sha256: sha256(img),
        source: { format: 'v2', framing: 'libxl', guest: 'pv', byteOrder: 'little', formatSource: 'detected', sha256: sha256(img), size: img.length },
        stats: { pages: 300 },
        labels: { env: 'test', tier: 'gold' },
      });
      const got = await store.call('GET', '/v1/checkpoints/basic-1');
      expect(got.status).toBe(200);
      expect(got.headers.get('content-length')).toBe(String(img.length));
      expect((await bodyOf(got)).equals(img)).toBe(true);
      const head = await store.call('HEAD', '/v1/checkpoints/basic-1');
      expect(head.status).toBe(200);
      expect(head.headers.get('x-ferry-sha256')).toBe(sha256(img));
      expect(head.headers.get('content-length')).toBe(String(img.length));
      const m = (await (await store.call('GET', '/v1/checkpoints/basic-1/meta')).json()) as Record<string, unknown>;
      expect(m.sha256).toBe(sha256(img));
    });

    test('streams a body sent in small chunks without a length', async () => {
      const chunks = [...Array(Math.ceil(img.length / 7000)).keys()].map((i) => img.subarray(i * 7000, (i + 1) * 7000));
      const res = await put('chunked-1', Readable.from(chunks), 'vm=vm-chunked&format=v2');
      expect(res.status).toBe(201);
      expect(((await res.json()) as { source: { formatSource: string } }).source.formatSource).toBe('declared');
      expect(sha256(await bodyOf(await store.call('GET', '/v1/checkpoints/chunked-1')))).toBe(sha256(img));
    });

    test('checks the client sha256: a match is stored, a mismatch refused with nothing left', async () => {
      expect((await put('sum-ok', img, `vm=vm-sum&sha256=${sha256(img)}`)).status).toBe(201);
      const bad = await put('sum-bad', img, `vm=vm-sum&sha256=${'0'.repeat(64)}`);
      expect(bad.status).toBe(422);
      expect(((await bad.json()) as { detail: string }).detail).toMatch(/sha256/);
      await expectNothing('sum-bad');
    });

    test('refuses malformed and truncated images with 422, a reason, and no trace', async () => {
      const junk = Buffer.alloc(200_000, 0x5a);
      const r1 = await put('junk-1', junk);
      expect(r1.status).toBe(422);
      const e1 = (await r1.json()) as { detail: string };
      expect(e1.detail.length).toBeGreaterThan(10);
      expect(e1.detail).not.toContain('\n');
      await expectNothing('junk-1');
      const r2 = await put('trunc-1', img.subarray(0, Math.floor(img.length / 2)));
      expect(r2.status).toBe(422);
      expect(((await r2.json()) as { reason: string }).reason).toBe('truncated');
      await expectNothing('trunc-1');
      const r3 = await put('empty-1', Buffer.alloc(0));
      expect(r3.status).toBe(422);
      await expectNothing('empty-1');
      const metrics = await (await store.call('GET', '/metrics', { token: null })).text();
      expect(metrics).toMatch(/ferry_store_refusals_total\{reason="truncated"\} [1-9]/);
    });

    test('refuses bad ids and parameters with 400', async () => {
      // ('%2E%2E' never reaches the store as an id: URL parsing makes it '..', so no route: 404.)
      expect((await put('%2E%2E', img)).status).toBe(404);
      for (const id of ['-x', '.hidden', 'a..b', 'x'.repeat(129), 'a%2F..%2Fb', 'a%00b', 'a%20b', 'a:b']) {
        const r = await put(id, img);
        expect(r.status, id).toBe(400);
        expect(((await r.json()) as { detail: string }).detail).toMatch(/invalid checkpoint id/);
      }
      expect((await put('p-1', img, '')).status).toBe(400);
      expect((await put('p-1', img, 'vm=../etc')).status).toBe(400);
      expect((await put('p-1', img, 'vm=v&format=zip')).status).toBe(400);
      expect((await put('p-1', img, 'vm=v&width=16')).status).toBe(400);
      expect((await put('p-1', img, 'vm=v&sha256=xyz')).status).toBe(400);
      expect((await put('p-1', img, 'vm=v&label=nokey')).status).toBe(400);
      expect((await store.call('GET', '/v1/checkpoints?limit=0')).status).toBe(400);
      expect((await store.call('GET', '/v1/checkpoints?cursor=!!!')).status).toBe(400);
      await expectNothing('p-1');
    });

    test('ids are write-once: a second PUT gets 409', async () => {
      expect((await put('once-1', img)).status).toBe(201);
      const again = await put('once-1', img);
      expect(again.status).toBe(409);
    });

    test('serves byte ranges, each checked against its blocks', async () => {
      const big = await v2Image({ pages: 5000, guest: 'hvm' }); // ~20 MiB: three 8 MiB blocks
      expect((await put('range-1', big, 'vm=vm-range')).status).toBe(201);
      const cases: [string, number, number][] = [
        ['bytes=0-99', 0, 99],
        ['bytes=100-', 100, big.length - 1],
        ['bytes=-4096', big.length - 4096, big.length - 1],
        [`bytes=${8 * 1024 * 1024 - 10}-${8 * 1024 * 1024 + 10}`, 8 * 1024 * 1024 - 10, 8 * 1024 * 1024 + 10],
        [`bytes=5-${big.length + 1000}`, 5, big.length - 1],
      ];
      for (const [range, a, z] of cases) {
        const r = await store.call('GET', '/v1/checkpoints/range-1', { headers: { range } });
        expect(r.status, range).toBe(206);
        expect(r.headers.get('content-range')).toBe(`bytes ${a}-${z}/${big.length}`);
        expect((await bodyOf(r)).equals(big.subarray(a, z + 1)), range).toBe(true);
      }
      const r416 = await store.call('GET', '/v1/checkpoints/range-1', { headers: { range: `bytes=${big.length}-` } });
      expect(r416.status).toBe(416);
    });

    test('lists by id with a cursor, optionally for one VM', async () => {
      for (const [id, vm] of [['ls-a1', 'vm-ls-a'], ['ls-a2', 'vm-ls-a'], ['ls-b1', 'vm-ls-b'], ['ls-a3', 'vm-ls-a'], ['ls-a-4', 'vm-ls-a']]) {
        expect((await put(id!, img, `vm=${vm}`)).status).toBe(201);
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const r = await store.call('GET', `/v1/checkpoints?vm=vm-ls-a&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        expect(r.status).toBe(200);
        const page = (await r.json()) as { items: { id: string; vm: string }[]; nextCursor: string | null };
        expect(page.items.length).toBeLessThanOrEqual(2);
        for (const i of page.items) expect(i.vm).toBe('vm-ls-a');
        seen.push(...page.items.map((i) => i.id));
        cursor = page.nextCursor;
        pages++;
      } while (cursor && pages < 10);
      expect(seen.sort()).toEqual(['ls-a-4', 'ls-a1', 'ls-a2', 'ls-a3']);
      const all = (await (await store.call('GET', '/v1/checkpoints?limit=1000')).json()) as { items: { id: string }[] };
      expect(all.items.map((i) => i.id)).toEqual(expect.arrayContaining(['ls-a1', 'ls-b1']));
      expect((all.items as unknown as Record<string, unknown>[])[0]!.blocks).toBeUndefined();
    });

    test('deletes', async () => {
      expect((await put('del-1', img)).status).toBe(201);
      expect((await store.call('DELETE', '/v1/checkpoints/del-1')).status).toBe(204);
      await expectNothing('del-1');
      expect((await store.call('DELETE', '/v1/checkpoints/del-1')).status).toBe(404);
    });

    test('bearer tokens with scopes; tokens made and revoked through the API', async () => {
      expect((await put('auth-1', img, 'vm=v', null)).status).toBe(401);
      expect((await put('auth-1', img, 'vm=v', 'not-a-token-at-all-xxxxxxxxxx')).status).toBe(401);
      expect((await store.call('GET', '/v1/checkpoints', { token: null })).status).toBe(401);
      const mk = await store.call('POST', '/v1/tokens', {
        body: JSON.stringify({ name: 'reader', scopes: ['read'] }),
        headers: { 'content-type': 'application/json' },
      });
      expect(mk.status).toBe(201);
      const { token, id } = (await mk.json()) as { token: string; id: string };
      expect((await put('auth-1', img, 'vm=v', token)).status).toBe(403);
      expect((await store.call('GET', '/v1/checkpoints', { token })).status).toBe(200);
      expect((await store.call('POST', '/v1/tokens', { token, body: '{}', headers: { 'content-type': 'application/json' } })).status).toBe(403);
      const listed = ((await (await store.call('GET', '/v1/tokens')).json()) as { items: { id: string; token?: string; hash?: string }[] }).items;
      expect(listed.find((t) => t.id === id)).toMatchObject({ id, scopes: ['read'] });
      expect(JSON.stringify(listed)).not.toContain(token);
      const bad = await store.call('POST', '/v1/tokens', { body: JSON.stringify({ scopes: ['root'] }), headers: { 'content-type': 'application/json' } });
      expect(bad.status).toBe(400);
      const writer = (await (
        await store.call('POST', '/v1/tokens', { body: JSON.stringify({ scopes: ['write'] }), headers: { 'content-type': 'application/json' } })
      ).json()) as { token: string };
      expect((await put('auth-1', img, 'vm=v', writer.token)).status).toBe(201);
      expect((await store.call('DELETE', `/v1/tokens/${id}`)).status).toBe(204);
      expect((await store.call('GET', '/v1/checkpoints', { token })).status).toBe(401);
      expect(ADMIN.length).toBeGreaterThan(16);
    }, 30_000);

    test('refuses an upload over the size limit with 413 and no trace', async () => {
      const small = await startStore({ ...b!.env(), FERRY_STORE_MAX_UPLOAD: '64KiB' });
      try {
        const r = await small.call('PUT', '/v1/checkpoints/limit-1?vm=v', { body: img });
        expect(r.status).toBe(413);
        const chunks = [img.subarray(0, 50_000), img.subarray(50_000)];
        const r2 = await small.call('PUT', '/v1/checkpoints/limit-2?vm=v', { body: Readable.from(chunks) });
        expect(r2.status).toBe(413);
      } finally {
        await small.close();
      }
      await expectNothing('limit-1');
      await expectNothing('limit-2');
    });

    test('an upload the client abandons leaves no trace', async () => {
      const ac = new AbortController();
      async function* slow(): AsyncGenerator<Uint8Array> {
        yield img.subarray(0, 100_000);
        await sleep(300);
        ac.abort();
        yield img.subarray(100_000);
      }
      const res = fetch(`${store.url}/v1/checkpoints/gone-1?vm=v`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${ADMIN}` },
        body: Readable.toWeb(Readable.from(slow())) as unknown as BodyInit,
        duplex: 'half',
        signal: ac.signal,
      } as RequestInit);
      await expect(res).rejects.toThrow();
      await sleep(500);
      await expectNothing('gone-1');
    });

    test('a corrupted stored image is never served as good', async () => {
      const big = await v2Image({ pages: 3000 }); // ~12 MiB, two blocks
      expect((await put('rot-1', big, 'vm=vm-rot')).status).toBe(201);
      const meta = (await (await store.call('GET', '/v1/checkpoints/rot-1/meta')).json()) as { size: number };
      const objects = await objectsUnder(store.backend, 'checkpoints/rot-1/');
      const imageKey = objects.find((k) => !k.endsWith('meta.json'))!;
      const rotten = Buffer.from(big);
      rotten[9 * 1024 * 1024]! ^= 0x01; // one bit, in the second block
      await store.backend.putBytes(imageKey, rotten);
      expect(meta.size).toBe(rotten.length);
      // Whole read: the transfer breaks instead of ending cleanly.
      const r = await store.call('GET', '/v1/checkpoints/rot-1');
      expect(r.status).toBe(200);
      await expect(bodyOf(r)).rejects.toThrow();
      // A range in the bad block breaks; one in the good block is served.
      // (The whole block is checked before its first byte goes out: here that gives a clean 500.)
      const bad = await store.call('GET', '/v1/checkpoints/rot-1', { headers: { range: `bytes=${9 * 1024 * 1024}-${9 * 1024 * 1024 + 100}` } });
      expect(bad.status).toBe(500);
      expect(((await bad.json()) as { reason: string }).reason).toBe('integrity');
      const good = await store.call('GET', '/v1/checkpoints/rot-1', { headers: { range: 'bytes=0-100' } });
      expect((await bodyOf(good)).equals(big.subarray(0, 101))).toBe(true);
      // A shorter object: HEAD and GET both fail loudly.
      await store.backend.putBytes(imageKey, big.subarray(0, big.length - 1));
      expect((await store.call('HEAD', '/v1/checkpoints/rot-1')).status).toBe(500);
      const short = await store.call('GET', '/v1/checkpoints/rot-1');
      await expect(bodyOf(short)).rejects.toThrow();
      // A missing object: 500 before any byte.
      await store.backend.delete(imageKey);
      expect((await store.call('GET', '/v1/checkpoints/rot-1')).status).toBe(500);
      const metrics = await (await store.call('GET', '/metrics', { token: null })).text();
      expect(metrics).toMatch(/ferry_store_integrity_failures_total [1-9]/);
    });

    test('retention keeps the last N per VM and drops old ones; stale leftovers are swept', async () => {
      const env = { ...(await b!.isolated()), FERRY_RETAIN_LAST: '2', FERRY_RETAIN_MAX_AGE: '1h', FERRY_STALE_UPLOAD_AGE: '0s' };
      const rs = await startStore(env);
      try {
        for (const id of ['ret-a1', 'ret-a2', 'ret-a3', 'ret-a4']) {
          expect((await rs.call('PUT', `/v1/checkpoints/${id}?vm=vm-ret-a`, { body: img })).status).toBe(201);
          await sleep(5);
        }
        expect((await rs.call('PUT', '/v1/checkpoints/ret-b1?vm=vm-ret-b', { body: img })).status).toBe(201);
        await rs.backend.putBytes('checkpoints/ret-orphan/image-x.v2', Buffer.from('left by a crash'));
        const retention = rs.app.get(RetentionService);
        const report = await retention.runOnce(Date.now() + 5_000); // (object stores round times to the second)
        expect(report.expired).toEqual(expect.arrayContaining(['ret-a1', 'ret-a2']));
        expect(report.expired).not.toContain('ret-a3');
        expect(report.expired).not.toContain('ret-b1');
        expect(report.orphansRemoved).toBeGreaterThanOrEqual(1);
        expect(await objectsUnder(rs.backend, 'checkpoints/ret-orphan/')).toEqual([]);
        for (const id of ['ret-a1', 'ret-a2']) expect((await rs.call('HEAD', `/v1/checkpoints/${id}`)).status).toBe(404);
        for (const id of ['ret-a3', 'ret-a4', 'ret-b1']) expect((await rs.call('HEAD', `/v1/checkpoints/${id}`)).status).toBe(200);
        // Two hours later everything of these VMs is past the maximum age.
        const later = await retention.runOnce(Date.now() + 2 * 3600_000);
        expect(later.expired).toEqual(expect.arrayContaining(['ret-a3', 'ret-a4', 'ret-b1']));
      } finally {
        await rs.close();
      }
    });
  });
}
