import { describe, expect, it } from 'vitest';
import { bytes, duration, percent, rate, shortDigest } from './format';

describe('format', () => {
  it('bytes and rates in binary units', () => {
    expect(bytes(0)).toBe('0 B');
    expect(bytes(1536)).toBe('1.50 KiB');
    expect(bytes(256 * 1024 * 1024)).toBe('256 MiB');
    expect(rate(12.5 * 1024 * 1024)).toBe('12.5 MiB/s');
    expect(bytes(null)).toBe('-');
  });
  it('durations from ms to hours', () => {
    expect(duration(250)).toBe('250 ms');
    expect(duration(4200)).toBe('4.2 s');
    expect(duration(125_000)).toBe('2m 05s');
    expect(duration(3 * 3600_000 + 7 * 60_000)).toBe('3h 07m');
    expect(duration(null)).toBe('-');
  });
  it('percent is clamped and safe with zero totals', () => {
    expect(percent(5, 0)).toBe(0);
    expect(percent(50, 100)).toBe(50);
    expect(percent(150, 100)).toBe(100);
  });
  it('digests are shortened after their algorithm prefix', () => {
    expect(shortDigest('sha256:0123456789abcdef0123')).toBe('0123456789ab');
  });
});
