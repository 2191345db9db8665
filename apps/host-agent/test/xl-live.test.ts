/**
 * Live migration between two xl hosts with Xen's own pre-copy, end to end through two real agent
 * processes (FERRY_DRIVER=xl) and the test coordinator, with the scripted stand-in for `xl`
 * (test/fake-xl/xl) speaking xl's migration protocol on both dom0s. A TCP relay in front of the
 * target's data endpoint cuts the link at each step of the protocol; the guest must end up running
 * on exactly one host each time: the source before the commit, the target after it.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AgentReport, VmSpec } from '@ferry/contracts';
import { Coordinator, spawnAgent, waitFor, type AgentProcess } from './coordinator';
import { xlMigrationImage } from './xl-image';

const FAKE = path.resolve(__dirname, 'fake-xl/xl');
const vm: VmSpec = { vmId: 'synth-pv', name: 'synth-pv', type: 'pv', memoryMiB: 256, vcpus: 2 };
type Cut = 'none' | 'before-banner' | 'mid-stream' | 'before-ready' | 'before-go' | 'after-go';

/** A relay that forwards the agents' data connection and cuts it at one step of xl's protocol. */
class Link {
  cut: Cut = 'none';
  cutDone = false;
  private server: net.Server | null = null;
  port = 0;
  constructor(
    private readonly target: () => number,
    private readonly imageBytes: number,
  ) {}
  async start(): Promise<void> {
    this.server = net.createServer((a) => {
      const b = net.connect(this.target(), '127.0.0.1');
      let up = 0;
      let tailUp = '';
      let tailDown = '';
      const kill = (): void => {
        this.cutDone = true;
        a.destroy();
        b.destroy();
      };
      a.on('error', () => b.destroy());
      b.on('error', () => a.destroy());
      a.on('data', (c: Buffer) => {
        up += c.length;
        tailUp = (tailUp + c.toString('latin1')).slice(-4096);
        if (this.cut === 'mid-stream' && up > this.imageBytes / 2) return kill();
        if (this.cut === 'before-go' && tailUp.includes('domain is yours')) return kill();
        b.write(c);
      });
      b.on('data', (c: Buffer) => {
        tailDown = (tailDown + c.toString('latin1')).slice(-4096);
        if (this.cut === 'before-banner' && tailDown.includes('xl migration receiver ready')) return kill();
        if (this.cut === 'before-ready' && tailDown.includes('domain received, ready')) return kill();
        if (this.cut === 'after-go' && tailDown.includes('my copy unpause results')) return kill();
        a.write(c);
      });
      a.on('end', () => b.end());
      b.on('end', () => a.end());
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server!.address() as net.AddressInfo).port;
  }
  async close(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

let cp: Coordinator;
let agents: AgentProcess[] = [];
let root: string;
let link: Link;
const dirOf = (h: 'src' | 'dst'): string => path.join(root, h);
const domains = async (h: 'src' | 'dst'): Promise<{ name: string; paused: boolean }[]> => JSON.parse(await readFile(path.join(dirOf(h), 'domains.json'), 'utf8')) as { name: string; paused: boolean }[];
const steps = async (h: 'src' | 'dst'): Promise<string[]> => (await readFile(path.join(dirOf(h), 'migrate.log'), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean);

function failure(r: AgentReport): { code: string; message: string } {
  if (r.type !== 'failed') throw new Error(`expected failed, got ${JSON.stringify(r)}`);
  return r.error;
}
function result<T>(r: AgentReport): T {
  if (r.type !== 'completed') throw new Error(`expected completed, got ${JSON.stringify(r)}`);
  return r.result as T;
}

// every fake `xl` call starts a node process, and agents poll `xl list`: slow on a loaded machine
describe('xl live migration through two agents (scripted xl)', { timeout: 240_000 }, () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'ferry-xl-live-'));
    const image = await xlMigrationImage({ pages: 600, batch: 100, rounds: 3 });
    cp = new Coordinator();
    await cp.start();
    const dataPort = await freePort();
    link = new Link(() => dataPort, image.length);
    await link.start();
    const env: Record<string, Record<string, string>> = {};
    for (const h of ['src', 'dst'] as const) {
      await rm(dirOf(h), { recursive: true, force: true });
      await import('node:fs/promises').then((f) => f.mkdir(dirOf(h), { recursive: true }));
      // the same image on both: the sender sends it, the receiver's stand-in checks it came whole
      await writeFile(path.join(dirOf(h), 'save.img'), image);
      await writeFile(path.join(dirOf(h), 'domains.json'), '[]');
      const xl = path.join(root, `xl-${h}`);
      await writeFile(xl, `#!/bin/sh\nFAKE_XL_DIR='${dirOf(h)}' FAKE_XL_PACE_MS="\${FAKE_XL_PACE_MS:-0}" exec '${FAKE}' "$@"\n`);
      await chmod(xl, 0o755);
      env[h] = { FERRY_DRIVER: 'xl', FERRY_XL_PATH: xl, FERRY_STATE_DIR: path.join(root, `state-${h}`), FERRY_HEARTBEAT_MS: '1000' };
    }
    agents = await Promise.all([
      spawnAgent(cp, 'xl-a', { ...env.src!, FAKE_XL_PACE_MS: '2' }),
      spawnAgent(cp, 'xl-b', { ...env.dst!, FERRY_DATA_PORT: String(dataPort), FERRY_DATA_URL: `http://127.0.0.1:${link.port}` }),
    ]);
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.kill('SIGTERM')));
    await link?.close();
    await cp?.close();
    await rm(root, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await writeFile(path.join(dirOf('src'), 'domains.json'), JSON.stringify([{ name: vm.vmId, domid: 5, type: 'pv', memkb: 262144, vcpus: 2, paused: false }]));
    await writeFile(path.join(dirOf('dst'), 'domains.json'), '[]');
    for (const h of ['src', 'dst'] as const) await rm(path.join(dirOf(h), 'migrate.log'), { force: true });
    await rm(path.join(dirOf('src'), 'pace'), { force: true });
    link.cut = 'none';
    link.cutDone = false;
  });

  const migrate = async (cut: Cut): Promise<string> => {
    link.cut = cut;
    return cp.migrate({ vm, from: 'xl-a', to: 'xl-b', mode: 'live' });
  };
  const expectOnSource = async (id: string): Promise<void> => {
    failure(await cp.waitFinal(id, 'migrate-send'));
    failure(await cp.waitFinal(id, 'migrate-receive'));
    expect(cp.migrations.get(id)!.state).not.toBe('committed');
    expect(await domains('src')).toEqual([expect.objectContaining({ name: vm.vmId, paused: false })]);
    expect(await domains('dst')).toEqual([]);
  };
  const expectOnTarget = async (id: string): Promise<{ rounds: number; downtimeMs: number; bytesSent: number }> => {
    const send = result<{ rounds: number; downtimeMs: number; bytesSent: number; outcome: string }>(await cp.waitFinal(id, 'migrate-send'));
    result(await cp.waitFinal(id, 'migrate-receive'));
    expect(send.outcome).toBe('handed-off');
    expect(cp.migrations.get(id)!.state).toBe('committed');
    expect(await domains('src')).toEqual([]);
    expect(await domains('dst')).toEqual([expect.objectContaining({ name: vm.vmId, paused: false })]);
    expect(await steps('src')).toContain('destroyed: migration successful');
    return send;
  };

  it('moves the guest with xl pre-copy rounds, READY after the commit, then GO and the report', async () => {
    const id = await migrate('none');
    const send = await expectOnTarget(id);
    expect(send.rounds).toBe(3);
    expect(send.downtimeMs).toBeGreaterThanOrEqual(0);
    expect(await steps('src')).toEqual(['banner', 'suspended', 'stream sent', 'ready', 'go', 'destroyed: migration successful']);
    expect(await steps('dst')).toEqual(['receiver: banner', 'receiver: built', 'receiver: ready', 'receiver: go', 'receiver: started']);
    // the commit came between the receiver's READY and the sender's GO
    expect(cp.migrations.get(id)!.commits).toHaveLength(1);
    const progress = cp.reports.filter((r) => r.operationId === id && r.job === 'migrate-send' && r.type === 'progress');
    const phases = new Set(progress.map((r) => (r.type === 'progress' ? r.phase : '')));
    expect([...phases]).toEqual(expect.arrayContaining(['precopy', 'stop-copy']));
    expect(progress.every((r) => r.type === 'progress' && r.bytesDone <= r.bytesTotal)).toBe(true);
    expect(progress.some((r) => r.type === 'progress' && r.round >= 2)).toBe(true);
    expect(progress.some((r) => r.type === 'progress' && r.expectedDowntimeMs !== null)).toBe(true);
  });

  it('link cut before the banner: xl migrate fails at once, the guest never stopped on the source', async () => {
    const id = await migrate('before-banner');
    await expectOnSource(id);
    expect(link.cutDone).toBe(true);
    expect(await steps('src')).toEqual(['no banner']);
  });

  it('link cut mid-stream: xl migrate resumes the guest on the source, the target drops its partial copy', async () => {
    const id = await migrate('mid-stream');
    await expectOnSource(id);
    const src = await steps('src');
    expect(src[0]).toBe('banner');
    expect(src.at(-1)).toMatch(/^resumed: stream/);
    expect(await steps('dst')).toContain('receiver: banner');
    expect(await steps('dst')).not.toContain('receiver: ready');
  });

  it('link cut as READY comes back: the target had committed, so the source asks and hands off', async () => {
    const id = await migrate('before-ready');
    await expectOnTarget(id);
    expect(await steps('dst')).toContain('receiver: go');
  });

  it('link cut as GO goes out: the committed target starts the guest without it', async () => {
    const id = await migrate('before-go');
    await expectOnTarget(id);
  });

  it('link cut after GO (the report lost): the source finishes the handshake for the committed target', async () => {
    const id = await migrate('after-go');
    await expectOnTarget(id);
  });

  it('commit refused at READY: migrate-receive destroys its copy, xl migrate resumes the guest', async () => {
    const id = await migrate('none');
    cp.migrations.get(id)!.cancelRequested = true; // the control plane refuses the commit, nothing else
    await expectOnSource(id);
    expect((await steps('src')).at(-1)).toMatch(/^resumed: ready/);
    expect(await steps('dst')).toEqual(expect.arrayContaining(['receiver: ready', 'receiver: destroyed its copy']));
  });

  it('xl migrate fails after the commit (its rename before GO): the source destroys the copy xl resumed', async () => {
    await writeFile(path.join(dirOf('src'), 'rename-fails'), '');
    try {
      const id = await migrate('none');
      const send = result<{ outcome: string }>(await cp.waitFinal(id, 'migrate-send'));
      result(await cp.waitFinal(id, 'migrate-receive'));
      expect(send.outcome).toBe('handed-off');
      expect((await steps('src')).at(-1)).toMatch(/^resumed: rename/);
      expect(await domains('src')).toEqual([]);
      expect(await domains('dst')).toEqual([expect.objectContaining({ name: vm.vmId, paused: false })]);
    } finally {
      await rm(path.join(dirOf('src'), 'rename-fails'), { force: true });
    }
  });

  it('cancelled during pre-copy: the guest keeps running on the source', async () => {
    await writeFile(path.join(dirOf('src'), 'pace'), '20'); // about 5 s of pre-copy
    const id = await migrate('none');
    await waitFor(() => cp.reports.some((r) => r.operationId === id && r.type === 'progress' && r.job === 'migrate-send' && r.phase === 'precopy' && r.bytesDone > 0), 60_000, 'pre-copy');
    await cp.cancel(id, ['xl-a', 'xl-b']);
    await expectOnSource(id);
    expect((await steps('src')).at(-1)).toMatch(/^resumed/);
  });

  // the last two kill an agent: nothing runs after them
  it('target agent killed in pre-copy: xl migrate resumes the guest on the source', async () => {
    await writeFile(path.join(dirOf('src'), 'pace'), '20');
    const id = await migrate('none');
    await waitFor(() => cp.reports.some((r) => r.operationId === id && r.type === 'progress' && r.job === 'migrate-send' && r.phase === 'precopy' && r.bytesDone > 0), 60_000, 'pre-copy');
    await agents[1]!.kill('SIGKILL');
    failure(await cp.waitFinal(id, 'migrate-send'));
    expect(cp.migrations.get(id)!.state).not.toBe('committed');
    await waitFor(async () => (await steps('src')).some((l) => l.startsWith('resumed')), 30_000, 'xl migrate resuming');
    expect(await domains('src')).toEqual([expect.objectContaining({ name: vm.vmId, paused: false })]);
  });

  it('source agent killed in pre-copy: its xl migrate loses the transport and resumes the guest', async () => {
    await writeFile(path.join(dirOf('src'), 'pace'), '20');
    const dst = await spawnAgent(cp, 'xl-b', { FERRY_DRIVER: 'xl', FERRY_XL_PATH: path.join(root, 'xl-dst'), FERRY_STATE_DIR: path.join(root, 'state-dst'), FERRY_HEARTBEAT_MS: '1000' });
    agents.push(dst);
    const id = await migrate('none');
    await waitFor(() => cp.reports.some((r) => r.operationId === id && r.type === 'progress' && r.job === 'migrate-send' && r.phase === 'precopy' && r.bytesDone > 0), 60_000, 'pre-copy');
    await agents[0]!.kill('SIGKILL');
    failure(await cp.waitFinal(id, 'migrate-receive'));
    await waitFor(async () => (await steps('src')).some((l) => l.startsWith('resumed')), 30_000, 'xl migrate resuming');
    expect(await domains('src')).toEqual([expect.objectContaining({ name: vm.vmId, paused: false })]);
    expect(await domains('dst')).toEqual([]);
  });
});
