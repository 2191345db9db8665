import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { FLEET, simGuestsEnv } from './fleet';
import { pingRedis } from './redis';
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
