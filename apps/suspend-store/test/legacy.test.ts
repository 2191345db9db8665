import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeLegacy, type LegacyImage, type LegacyWidth } from '@ferry/stream-codec';
import { bodyOf, sha256, startStore, tempDir, v2Image, type TestStore } from './helpers';

/**
 * Legacy images (pre-v2, as 32- and 64-bit toolstacks wrote them) go in with width=auto, are
 * converted to v2 on the way in, and what comes out passes verify-stream-v2; a stored image
 * goes back out as legacy for hosts not upgraded yet.
 */
const ROOT = path.resolve(__dirname, '../../..');

function page(seed: number): Uint8Array {
  const p = new Uint8Array(4096);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < 4096; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    p[i] = x >>> 24;
    p[i + 1] = seed & 0xff;
  }
  return p;
}
const filled = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

/** A PV guest saved by a legacy toolstack of the given width, behind an xl header (as `xl save` wrote it). */
function legacyPv(width: LegacyWidth, pages: number): LegacyImage {
  const ctx = 0x1430; // a 64-bit PV guest's vcpu context
  return {
    guest: 'pv',
    toolstackWidth: width,
    guestWidth: 64,
    p2mSize: pages + 16,
    vcpus: [0, 1].map((id) => ({ id, basic: filled(ctx, id + 1), extended: filled(128, id + 100) })),
    extInfoContext: filled(ctx, 9),
    sharedInfo: filled(4096, 33),
    pages: Array.from({ length: pages }, (_, pfn) => ({ pfn, type: pfn % 50 === 1 ? 1 : 0, data: page(pfn + width) })),
    tsc: { mode: 0, nsec: 123456789n, khz: 2_400_000, incarnation: 1 },
    xl: { mandatoryFlags: 1, optionalFlags: 0, optionalData: new TextEncoder().encode('\x10\x00\x00\x00{"c_info":{}}\n\x00\x00') },
  };
}

async function bytes(img: LegacyImage): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of writeLegacy(img)) parts.push(c);
  return Buffer.concat(parts);
}

/** Runs the verify-stream-v2 drop-in (asynchronously: the store under test shares this event loop). */
async function verifyStreamV2(data: Buffer, format: string, dir: string): Promise<{ status: number | null; out: string }> {
  const file = path.join(dir, `verify-${Date.now()}-${Math.random().toString(36).slice(2)}.v2`);
  fs.writeFileSync(file, data);
  try {
    return await new Promise((resolve) => {
      execFile(process.execPath, [path.join(ROOT, 'apps/cli/bin/verify-stream-v2.js'), '-i', file, '-f', format], (err, stdout, stderr) => {
        const status = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ status, out: `${stdout}${stderr}` });
      });
    });
  } finally {
    fs.rmSync(file, { force: true });
  }
}

describe('legacy images through the store', () => {
  let dir: string;
  let store: TestStore;
  beforeAll(async () => {
    dir = tempDir('legacy');
    store = await startStore({ FERRY_STORE_BACKEND: 'fs', FERRY_STORE_DIR: path.join(dir, 'store') });
  });
  afterAll(async () => {
    await store?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const width of [32, 64] as const) {
    it(`a legacy ${width}-bit image with width=auto is stored as v2 that passes verify-stream-v2`, async () => {
      const legacy = await bytes(legacyPv(width, 600));
      const id = `legacy-${width}`;
      const res = await store.call('PUT', `/v1/checkpoints/${id}?vm=vm-legacy-${width}&width=auto&format=auto&guest=auto`, { body: legacy });
      const meta = (await res.json()) as { size: number; sha256: string; source: Record<string, unknown>; stats: { pages: number; vcpus: number } };
      expect(res.status, JSON.stringify(meta)).toBe(201);
      expect(meta.source).toMatchObject({ format: 'legacy', width, widthSource: 'detected', guest: 'pv', sha256: sha256(legacy), size: legacy.length });
      expect(meta.stats).toMatchObject({ pages: 600, vcpus: 2 });
      const v2 = await bodyOf(await store.call('GET', `/v1/checkpoints/${id}`));
      expect(v2.length).toBe(meta.size);
      expect(sha256(v2)).toBe(meta.sha256);
      const verdict = await verifyStreamV2(v2, String(meta.source.framing), dir);
      expect(verdict.status, verdict.out).toBe(0);
      expect(verdict.out).not.toMatch(/not implemented/);
      // (and the checker does say no to a damaged stream)
      expect((await verifyStreamV2(v2.subarray(0, v2.length - 9), String(meta.source.framing), dir)).status).not.toBe(0);
      const metrics = await (await store.call('GET', '/metrics', { token: null })).text();
      expect(metrics).toContain(`ferry_store_conversions_total{direction="legacy_to_v2",width="${width}"}`);
    });

    it(`a stored image goes back out as legacy ${width}-bit, which converts in again to the same v2`, async () => {
      const id = `legacy-${width}`;
      const stored = await bodyOf(await store.call('GET', `/v1/checkpoints/${id}`));
      const res = await store.call('GET', `/v1/checkpoints/${id}?format=legacy&width=${width}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('x-ferry-format')).toBe(`legacy-${width}`);
      const legacy = await bodyOf(res);
      const again = await store.call('PUT', `/v1/checkpoints/${id}-again?vm=vm-legacy&format=legacy&width=${width}`, { body: legacy });
      const meta = (await again.json()) as { sha256: string; source: { widthSource: string } };
      expect(again.status, JSON.stringify(meta)).toBe(201);
      expect(meta.source.widthSource).toBe('declared');
      expect(meta.sha256).toBe(sha256(stored));
    });
  }

  it('down-conversion asks for a width, and refuses what legacy cannot express with 422', async () => {
    expect((await store.call('GET', '/v1/checkpoints/legacy-64?format=legacy')).status).toBe(400);
    expect((await store.call('GET', '/v1/checkpoints/legacy-64?format=legacy&width=16')).status).toBe(400);
    // A synthetic v2 image of a big-endian guest has no legacy form.
    const be = await v2Image({ pages: 64, byteOrder: 'big' } as Parameters<typeof v2Image>[0]);
    expect((await store.call('PUT', '/v1/checkpoints/be-1?vm=vm-be', { body: be })).status).toBe(201);
    const r = await store.call('GET', '/v1/checkpoints/be-1?format=legacy&width=64');
    expect(r.status).toBe(422);
    expect(((await r.json()) as { detail: string }).detail).toMatch(/legacy 64-bit/);
  });

  it('a legacy image declared with the wrong format is refused with 422 and no trace', async () => {
    const legacy = await bytes(legacyPv(64, 50));
    const r = await store.call('PUT', '/v1/checkpoints/wrong-1?vm=v&format=v2', { body: legacy });
    expect(r.status).toBe(422);
    expect((await store.call('HEAD', '/v1/checkpoints/wrong-1')).status).toBe(404);
    expect(fs.existsSync(path.join(dir, 'store', 'checkpoints', 'wrong-1'))).toBe(false);
  });
});
