import { describe, expect, it } from 'vitest';
import { canReceive, isCancellable, pastPointOfNoReturn, hostQueueName, HOST_JOB_NAMES } from './index';

describe('canReceive (the one compatibility rule)', () => {
  const v2_32 = { xenVersion: '4.17', bitness: 32 as const, streamFormat: 'v2' as const };
  const leg32 = { xenVersion: '4.4', bitness: 32 as const, streamFormat: 'legacy' as const };
  const leg64 = { xenVersion: '4.4', bitness: 64 as const, streamFormat: 'legacy' as const };
  it('v2 targets restore anything as v2', () => {
    expect(canReceive(v2_32, { type: 'pv', guestWidth: 64 })).toEqual({ ok: true, restore: { format: 'v2' } });
  });
  it('legacy targets take HVM and PV guests no wider than the toolstack', () => {
    expect(canReceive(leg32, { type: 'hvm' })).toEqual({ ok: true, restore: { format: 'legacy', width: 32 } });
    expect(canReceive(leg32, { type: 'pv', guestWidth: 32 })).toEqual({ ok: true, restore: { format: 'legacy', width: 32 } });
    expect(canReceive(leg64, { type: 'pv', guestWidth: 64 })).toEqual({ ok: true, restore: { format: 'legacy', width: 64 } });
    const no = canReceive(leg32, { type: 'pv', guestWidth: 64 });
    expect(no.ok).toBe(false);
    if (!no.ok) expect(no.reason).toMatch(/64-bit PV/);
  });
});

describe('phases', () => {
  it('cancel is possible only before committing', () => {
    expect(isCancellable('stop-copy')).toBe(true);
    expect(isCancellable('verifying')).toBe(true);
    expect(isCancellable('committing')).toBe(false);
    expect(isCancellable('completed')).toBe(false);
    expect(isCancellable('queued', true)).toBe(false);
    expect(pastPointOfNoReturn('committing')).toBe(true);
    expect(pastPointOfNoReturn('verifying')).toBe(false);
  });
  it('names', () => {
    expect(hostQueueName('h1')).toBe('ferry.host.h1');
    expect(new Set(HOST_JOB_NAMES).size).toBe(HOST_JOB_NAMES.length);
  });
});
