import { randomUUID } from 'node:crypto';
import { deriveAgentToken } from '@ferry/config';
import { startControlPlane } from '/work/main/apps/control-plane/src/app';
import IORedis from 'ioredis';
const id = randomUUID().slice(0, 8);
void (async () => {
  const cp = await startControlPlane({ PORT: '0', HOST: '127.0.0.1', FERRY_ADMIN_TOKEN: 'admin-admin', FERRY_AGENT_SECRET: 'sec-sec-sec', FERRY_KEY_PREFIX: `prof-${id}`, FERRY_QUEUE_PREFIX: `profq-${id}`, FERRY_CONTROL_PLANE_ROLE: process.env.ROLE ?? 'api', FERRY_OFFLINE_AFTER_MS: '3600000', FERRY_LIMIT_CLUSTER: '100000', FERRY_LIMIT_PER_SOURCE: '100000', FERRY_LIMIT_PER_TARGET: '100000' });
  const H = { authorization: 'Bearer admin-admin', 'content-type': 'application/json' };
  for (let h = 0; h < 4; h++) {
    const guests = Array.from({ length: 500 }, (_, i) => ({ vmId: `v-${h}-${i}`, name: 'x', type: 'hvm', memoryMiB: 64, vcpus: 1, state: 'running', memoryDigest: null }));
    const r = await fetch(cp.url + '/v1/agents/register', { method: 'POST', headers: { ...H, authorization: `Bearer ${deriveAgentToken('sec-sec-sec', `h${h}`)}` }, body: JSON.stringify({ hostId: `h${h}`, bootId: 'b', agentVersion: '1', hostname: 'x', toolstack: { xenVersion: '4.17', bitness: 64, streamFormat: 'v2' }, byteOrder: 'little', capacity: { memoryMiB: 1e7, vcpus: 100, maxGuests: 100000 }, dataUrl: 'http://x/', inventory: { guests } }) });
    if (!r.ok) throw new Error(await r.text());
  }
  const time = async (label: string, n: number, f: (i: number) => Promise<Response>) => {
    const ls: number[] = [];
    for (let i = 0; i < n; i++) { const t = performance.now(); const r = await f(i); await r.text(); ls.push(performance.now() - t); }
    ls.sort((a, b) => a - b);
    console.log(label, 'p50', ls[Math.floor(n / 2)]!.toFixed(2), 'p99', ls[Math.floor(n * 0.99)]!.toFixed(2));
  };
  await time('POST', 200, (i) => fetch(cp.url + '/v1/migrations', { method: 'POST', headers: { ...H, 'idempotency-key': `k${i}` }, body: JSON.stringify({ vm: `v-${i % 4}-${Math.floor(i / 4)}`, mode: 'live' }) }));
  await time('GET list', 3000, () => fetch(cp.url + '/v1/migrations', { headers: H }));
  await time('GET healthz', 500, () => fetch(cp.url + '/healthz'));
  await cp.close();
  const r = new IORedis();
  for (const p of [`prof-${id}`, `profq-${id}`]) { const ks = await r.keys(`${p}:*`); if (ks.length) await r.del(...ks); }
  r.disconnect();
})();
