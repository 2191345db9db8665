/**
 * Two agents in this process (startHostAgent), real Redis, the test coordinator: the stream endpoint
 * over TLS (self-signed fixture, trusted through FERRY_TLS_CA), the one-time token, a bandwidth cap.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VmSpec } from '@ferry/contracts';
import { startHostAgent, type HostAgentHandle } from '../src/index';
import { Coordinator, REDIS_URL } from './coordinator';

const FIX = path.join(__dirname, 'fixtures');
let cp: Coordinator;
const agents: HostAgentHandle[] = [];
const dirs: string[] = [];

async function agent(hostId: string, env: Record<string, string>): Promise<HostAgentHandle> {
  const dir = await mkdtemp(path.join(tmpdir(), `ferry-dp-${hostId}-`));
  dirs.push(dir);
  const a = await startHostAgent(
    { FERRY_HOST_ID: hostId, FERRY_CONTROL_PLANE_URL: cp.url, FERRY_AGENT_TOKEN: cp.token(hostId), REDIS_URL, FERRY_QUEUE_PREFIX: cp.prefix, FERRY_STATE_DIR: dir, FERRY_SIM_DIRTY_RATE: '0', ...env },
    { log: () => undefined },
  );
  agents.push(a);
  return a;
}

beforeAll(async () => {
  cp = new Coordinator();
  await cp.start();
});
afterAll(async () => {
  for (const a of agents) await a.close();
  await cp.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('data path', () => {
  it('streams over TLS under a bandwidth cap; a PUT for a migration it does not expect is refused before any byte', async () => {
    const tls = { FERRY_TLS_CERT: path.join(FIX, 'tls-cert.pem'), FERRY_TLS_KEY: path.join(FIX, 'tls-key.pem'), FERRY_TLS_CA: path.join(FIX, 'tls-cert.pem') };
    await agent('tls-src', { ...tls, FERRY_SIM_TOOLSTACK: '4.4-64', FERRY_SIM_GUESTS: 'vm1:pv64:8M:1:77' });
    const dst = await agent('tls-dst', { ...tls, FERRY_SIM_TOOLSTACK: '4.17-64' });
    expect(dst.dataUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);

    // a PUT with a wrong token is refused before any byte of the stream
    const refused = await new Promise<number>((resolve, reject) => {
      const req = https.request(`${dst.dataUrl}/v1/streams/nope`, { method: 'PUT', ca: readFileSync(path.join(FIX, 'tls-cert.pem')), headers: { authorization: 'Bearer wrong' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(refused).toBe(404);

    const vm: VmSpec = { vmId: 'vm1', name: 'vm1', type: 'pv', guestWidth: 64, memoryMiB: 8, vcpus: 1 };
    const before = cp.guests('tls-src')[0]!.memoryDigest;
    const t0 = Date.now();
    const id = await cp.migrate({ vm, from: 'tls-src', to: 'tls-dst', mode: 'cold', bandwidth: 4 * 1024 * 1024 });
    const send = await cp.waitFinal(id, 'migrate-send');
    const recv = await cp.waitFinal(id, 'migrate-receive');
    expect(send.type).toBe('completed');
    expect(recv.type === 'completed' && (recv.result as { memoryDigest: string }).memoryDigest).toBe(before);
    expect(Date.now() - t0).toBeGreaterThan(1500); // 8 MiB at 4 MiB/s
    expect(cp.migrations.get(id)!.state).toBe('committed');
  });

  it('answers a malformed migration id with 400 before any token check, and lives on', async () => {
    const a = await agent('dp-malformed', { FERRY_SIM_TOOLSTACK: '4.17-64' });
    const put = (p: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = http.request(`${a.dataUrl}${p}`, { method: 'PUT', headers: { authorization: 'Bearer x' } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await put('/v1/streams/%E0%A4%A')).toBe(400);
    expect(await put('/v1/streams/%')).toBe(400);
    expect(await put('/v1/streams/ok%20id')).toBe(404);
    expect((await fetch(`${a.dataUrl}/healthz`)).status).toBe(200);
  });
});
