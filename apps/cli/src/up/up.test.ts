import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FLEET, simGuestsEnv } from './fleet';
import { pingRedis } from './redis';
import { adminToken, redisPrefix, removeOwnedState, savedAdminToken } from './state';
import { Supervisor } from './supervisor';

const node = process.execPath;

describe('ferry up helpers', () => {
  it('prefixes every output line and reports the first service that dies', async () => {
    const lines: string[] = [];
    const sup = new Supervisor({ out: (l) => lines.push(l), color: false });
    const died = new Promise<string>((r) => sup.onUnexpectedExit((s) => r(s.name)));
    sup.start('steady', node, ['-e', "console.log('up'); setInterval(() => {}, 1000); process.on('SIGTERM', () => { console.log('bye'); process.exit(0); })"], process.env, process.cwd());
    sup.start('flaky', node, ['-e', "console.log('a\\nb'); setTimeout(() => process.exit(3), 200)"], process.env, process.cwd());
    expect(await died).toBe('flaky');
    await sup.stopAll(5000);
    expect(sup.services.every((s) => s.exit !== null)).toBe(true);
    expect(lines).toEqual(expect.arrayContaining(['flaky    | a', 'flaky    | b', 'steady   | up', 'steady   | bye']));
    expect(sup.services.find((s) => s.name === 'flaky')!.exit!.code).toBe(3);
  });

  it('SIGKILLs a service that ignores SIGTERM after the grace period', async () => {
    const sup = new Supervisor({ out: () => undefined, color: false });
    const s = sup.start('stubborn', node, ['-e', "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)"], process.env, process.cwd());
    await new Promise<void>((r) => sup.watch((_s, l) => l === 'ready' && r()));
    await sup.stopAll(300);
    expect(s.exit!.signal).toBe('SIGKILL');
  });

  it('pingRedis says why a Redis does not answer', async () => {
    const srv = net.createServer((c) => c.end('-ERR nope\r\n'));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    expect(await pingRedis(`redis://127.0.0.1:${port}`)).toBe('ERR nope');
    srv.close();
    expect(await pingRedis(`redis://127.0.0.1:${port}`)).toMatch(/ECONNREFUSED/);
    expect(await pingRedis('http://x')).toMatch(/unsupported scheme/);
  });

  it('describes a fleet of two 32-bit legacy and two 64-bit v2 hosts with a dozen VMs', () => {
    expect(FLEET.filter((h) => h.parsed.bitness === 32 && h.parsed.streamFormat === 'legacy')).toHaveLength(2);
    expect(FLEET.filter((h) => h.parsed.bitness === 64 && h.parsed.streamFormat === 'v2')).toHaveLength(2);
    expect(FLEET.flatMap((h) => h.guests)).toHaveLength(12);
    // The host agent's FERRY_SIM_GUESTS format: id:type:memory:vcpus:seed, type pv32|pv64|hvm.
    expect(simGuestsEnv(FLEET[0]!.guests)).toMatch(/^web-1:pv32:128M:1:\d+,web-2:hvm:256M:2:\d+,db-1:pv32:256M:2:\d+$/);
    // 32-bit legacy hosts never hold a 64-bit PV guest (their toolstack could not express it).
    for (const h of FLEET.filter((x) => x.parsed.bitness === 32)) expect(h.guests.some((g) => g.type === 'pv' && g.guestWidth === 64)).toBe(false);
  });
});

describe('ferry up options and state folder', () => {
  it('--help lists every variable it reads, FERRY_SIM_DIRTY_RATE and FERRY_DASHBOARD_HOST included', async () => {
    const { run } = await import('../commands/up');
    let text = '';
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => ((text += chunk), true)) as typeof process.stdout.write;
    try {
      expect(await run(['--help'])).toBe(0);
    } finally {
      process.stdout.write = write;
    }
    for (const v of ['PORT', 'FERRY_DASHBOARD_HOST', 'FERRY_ADMIN_TOKEN', 'REDIS_URL', 'FERRY_STATE_DIR', 'FERRY_KEY_PREFIX', 'FERRY_QUEUE_PREFIX', 'FERRY_SIM_DIRTY_RATE', '--reset', '--own-redis', 'SIGHUP']) {
      expect(text).toContain(v);
    }
  });

  it('binds the dashboard to loopback unless told otherwise', async () => {
    const { dashboardHost } = await import('../commands/up');
    expect(dashboardHost({})).toBe('127.0.0.1');
    expect(dashboardHost({ HOST: '0.0.0.0' })).toBe('0.0.0.0');
    expect(dashboardHost({ HOST: '0.0.0.0', FERRY_DASHBOARD_HOST: '10.0.0.5' })).toBe('10.0.0.5');
  });

  it('keeps a random Redis prefix per folder (an older folder keeps "ferry"); reset removes only its own entries', () => {
    const a = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-state-'));
    const b = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-state-'));
    try {
      const pa = redisPrefix(a);
      expect(pa).toMatch(/^fu-[0-9a-f]{10}$/);
      expect(redisPrefix(a)).toBe(pa);
      expect(redisPrefix(b)).not.toBe(pa);
      const token = adminToken(a, {});
      expect(savedAdminToken(a)).toBe(token);
      expect(adminToken(a, { FERRY_ADMIN_TOKEN: 'x'.repeat(20) })).toBe('x'.repeat(20));

      const legacy = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-state-'));
      fs.writeFileSync(path.join(legacy, 'admin-token'), 'fa-0123456789abcdef0123\n');
      expect(redisPrefix(legacy)).toBe('ferry');
      fs.rmSync(legacy, { recursive: true });

      fs.mkdirSync(path.join(a, 'store', 'x'), { recursive: true });
      fs.writeFileSync(path.join(a, 'notes.txt'), 'mine');
      expect(removeOwnedState(a).sort()).toEqual(['admin-token', 'redis-prefix', 'store']);
      expect(fs.readdirSync(a)).toEqual(['notes.txt']);
      expect(removeOwnedState(b)).toEqual(['redis-prefix']);
      expect(fs.existsSync(b)).toBe(false);
    } finally {
      fs.rmSync(a, { recursive: true, force: true });
      fs.rmSync(b, { recursive: true, force: true });
    }
  });
});
