import { describe, expect, it } from 'vitest';
import { ConfigError } from '@ferry/config';
import { agentHostname, loadAgentConfig, parseGuests, parseToolstack } from './config';
import { RateLimiter, throttle } from './stream-utils';

const base = { FERRY_HOST_ID: 'h1', FERRY_CONTROL_PLANE_URL: 'http://127.0.0.1:1', FERRY_AGENT_TOKEN: 'fa1.h1.xxxxxxxx', REDIS_URL: 'redis://127.0.0.1:6379' };

describe('agent config', () => {
  it('parses toolstacks and guest lists', () => {
    expect(parseToolstack('4.4-32')).toEqual({ xenVersion: '4.4', bitness: 32, streamFormat: 'legacy' });
    expect(parseToolstack('4.17-64')).toEqual({ xenVersion: '4.17', bitness: 64, streamFormat: 'v2' });
    expect(parseToolstack('4.5-64:v2').streamFormat).toBe('v2');
    expect(parseGuests('vm1:pv64:256M:2,vm2:hvm:1G:1:1234:8M')).toEqual([
      { spec: { vmId: 'vm1', name: 'vm1', type: 'pv', guestWidth: 64, memoryMiB: 256, vcpus: 2 }, seed: null, dirtyRate: null },
      { spec: { vmId: 'vm2', name: 'vm2', type: 'hvm', memoryMiB: 1024, vcpus: 1 }, seed: 1234, dirtyRate: 8 * 1024 * 1024 },
    ]);
  });

  it('defaults, and the state dir follows the host id', () => {
    const c = loadAgentConfig(base);
    expect(c.FERRY_DRIVER).toBe('sim');
    expect(c.stateDir).toBe('.state/agents/h1');
    expect(c.FERRY_SIM_TOOLSTACK.streamFormat).toBe('v2');
  });

  it('hostname: the host id for sim hosts (they share one machine), the machine name for xl, or FERRY_HOSTNAME', () => {
    expect(agentHostname(loadAgentConfig(base), 'vm')).toBe('h1');
    expect(agentHostname(loadAgentConfig({ ...base, FERRY_DRIVER: 'xl' }), 'dom0-7')).toBe('dom0-7');
    expect(agentHostname(loadAgentConfig({ ...base, FERRY_HOSTNAME: 'rack4-u12' }), 'vm')).toBe('rack4-u12');
    expect(() => loadAgentConfig({ ...base, FERRY_HOSTNAME: 'no spaces' })).toThrow(/FERRY_HOSTNAME/);
  });

  it('fails fast naming every bad variable', () => {
    let err: unknown;
    try {
      loadAgentConfig({ ...base, FERRY_HOST_ID: 'bad id', FERRY_DRIVER: 'kvm', FERRY_SIM_GUESTS: 'vm1:pv99:1M:1', FERRY_SIM_TOOLSTACK: 'xen' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const vars = (err as ConfigError).issues.map((i) => i.variable);
    expect(vars).toEqual(expect.arrayContaining(['FERRY_HOST_ID', 'FERRY_DRIVER', 'FERRY_SIM_GUESTS', 'FERRY_SIM_TOOLSTACK']));
    expect(() => loadAgentConfig({ ...base, FERRY_AGENT_TOKEN: 'fa1.other.xxxxxxxx' })).toThrow(/FERRY_AGENT_TOKEN/);
    expect(() => loadAgentConfig({ FERRY_HOST_ID: 'h1' })).toThrow(/FERRY_CONTROL_PLANE_URL: is required/);
  });
});

async function* toAsync(xs: Uint8Array[]): AsyncGenerator<Uint8Array> {
  yield* xs;
}

describe('bandwidth caps', () => {
  it('a stream under two limiters goes at the lower rate', async () => {
    const chunks = Array.from({ length: 8 }, () => new Uint8Array(256 * 1024)); // 2 MiB
    const t0 = Date.now();
    let n = 0;
    for await (const c of throttle(toAsync(chunks), [new RateLimiter(8 * 1024 * 1024), new RateLimiter(4 * 1024 * 1024)])) n += c.byteLength;
    const ms = Date.now() - t0;
    expect(n).toBe(2 * 1024 * 1024);
    expect(ms).toBeGreaterThanOrEqual(300); // 2 MiB at 4 MiB/s = 500 ms (minus one burst)
    expect(ms).toBeLessThan(3000);
  });
});
