import type { CheckpointRetentionDto, RetentionPolicyDto } from '@ferry/contracts';

/** 30d, 12h, 90m, 45s: the largest whole unit. */
export function duration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)}s` : `${ms}ms`;
}

/** The store's first pass at or after `at`: passes start at nextPassAt and follow every intervalMs. */
function firstPassFrom(at: number, policy: RetentionPolicyDto): number {
  const next = Date.parse(policy.nextPassAt);
  if (at <= next) return next;
  return next + Math.ceil((at - next) / policy.intervalMs) * policy.intervalMs;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * What the suspend-store's retention (apps/suspend-store retention.service.ts) will do to a checkpoint
 * created at `createdAt` that is the `rank`-th newest of its VM. The store keeps the newest keepLast per
 * VM and removes those older than maxAgeMs, on each pass; this mirrors that rule, so it holds as long as
 * the store's checkpoints of the VM are the ones the control plane recorded.
 */
export function retentionOf(createdAt: string, rank: number, policy: RetentionPolicyDto | null, now = Date.now()): CheckpointRetentionDto {
  if (!policy) {
    return { state: 'unknown', rank, expiresAt: null, removalAt: null, newerUntilRemoval: null, rule: null, summary: 'unknown: the suspend-store did not say its retention policy' };
  }
  const { keepLast, maxAgeMs } = policy;
  const expires = maxAgeMs === null ? null : Date.parse(createdAt) + maxAgeMs;
  const tooMany = keepLast !== null && rank > keepLast;
  const tooOld = expires !== null && now > expires;
  const base = { rank, expiresAt: expires === null ? null : iso(expires) };
  if (tooMany || tooOld) {
    const removalAt = iso(firstPassFrom(now, policy));
    const why = tooMany
      ? `${rank - 1} newer checkpoint${rank - 1 === 1 ? '' : 's'} of its VM exist and the store keeps the last ${keepLast}`
      : `older than the store's maximum age of ${duration(maxAgeMs!)}`;
    return { ...base, state: 'expiring', removalAt, newerUntilRemoval: 0, rule: tooMany ? 'keep-last' : 'max-age', summary: `expiring at the store's next retention pass (${removalAt}): ${why}` };
  }
  const newerUntilRemoval = keepLast === null ? null : keepLast - rank + 1;
  const parts: string[] = [];
  if (expires !== null) parts.push(`kept until ${iso(expires)} (max age ${duration(maxAgeMs!)})`);
  if (newerUntilRemoval !== null) parts.push(`removed once ${newerUntilRemoval} newer checkpoint${newerUntilRemoval === 1 ? '' : 's'} of its VM exist (keep last ${keepLast})`);
  return {
    ...base,
    state: 'kept',
    removalAt: expires === null ? null : iso(firstPassFrom(expires + 1, policy)),
    newerUntilRemoval,
    rule: expires !== null ? 'max-age' : keepLast !== null ? 'keep-last' : null,
    summary: parts.length ? parts.join('; ') : 'kept until deleted (the store has no retention policy)',
  };
}
