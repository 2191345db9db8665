/**
 * `ferry migrate VM [--to HOST] [--mode live|cold] [--bandwidth 100M] [--detach] [--idempotency-key K]`:
 * queues a migration (POST /v1/migrations) and follows it live over SSE until it ends.
 * `ferry migrate --cancel MIGRATION_ID` cancels one before its point of no return.
 * Exit 0 when completed (or queued with --detach, or cancelled with --cancel), 1 on failure,
 * cancel or API error, 2 on usage errors, 130 when Ctrl-C stopped the following.
 */
import { randomUUID } from 'node:crypto';
import { fail, parse, printJson, usageError } from './operator/common';
import { followMigration } from './operator/follow';

const USAGE = `usage: ferry migrate VM [--to HOST] [--mode live|cold] [--bandwidth 100M] [--detach] [--idempotency-key K]
       ferry migrate --watch MIGRATION_ID    (follow one already queued)
       ferry migrate --cancel MIGRATION_ID
  --bandwidth  cap in MiB/s; suffixes K, M (default), G
  --detach     print the migration id and return instead of following it
  Ctrl-C stops following; the migration continues (cancel it with --cancel).
`;

/** "100M" / "100" -> 100 MiB/s, "1G" -> 1024, "512K" -> 0.5. */
export function parseBandwidth(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg])?(?:i?b?(?:\/s)?)?$/i.exec(s.trim());
  if (!m) return null;
  const n = Number(m[1]) * ({ k: 1 / 1024, m: 1, g: 1024 } as Record<string, number>)[(m[2] ?? 'm').toLowerCase()]!;
  return n > 0 ? n : null;
}

export async function run(argv: string[]): Promise<number> {
  const ctx = parse(
    'migrate',
    argv,
    {
      to: { type: 'string' },
      mode: { type: 'string', default: 'live' },
      bandwidth: { type: 'string' },
      detach: { type: 'boolean', default: false },
      'idempotency-key': { type: 'string' },
      cancel: { type: 'string' },
      watch: { type: 'string' },
    },
    USAGE,
  );
  if (typeof ctx === 'number') return ctx;
  const v = ctx.values;
  const cancelId = v.cancel as string | undefined;
  if (cancelId !== undefined) {
    if (ctx.positionals.length) return usageError(ctx, '--cancel takes a migration id and nothing else');
    try {
      const m = await ctx.client.migrations.cancel(cancelId);
      if (ctx.json) printJson(m);
      else process.stdout.write(`migration ${m.id}: ${m.phase === 'cancelled' ? 'cancelled' : 'cancel requested'}; ${m.vmId} stays on ${m.sourceHostId}\n`);
      return 0;
    } catch (e) {
      return fail(ctx, e, (status, msg) => (status === 409 ? `cannot cancel ${cancelId}: it is past the point of no return or already over (${msg})` : undefined));
    }
  }
  const watchId = v.watch as string | undefined;
  if (watchId !== undefined) {
    if (ctx.positionals.length) return usageError(ctx, '--watch takes a migration id and nothing else');
    try {
      return await followMigration(ctx, watchId);
    } catch (e) {
      return fail(ctx, e);
    }
  }
  if (ctx.positionals.length !== 1) return usageError(ctx, 'needs exactly one VM id');
  const mode = v.mode as string;
  if (mode !== 'live' && mode !== 'cold') return usageError(ctx, '--mode must be live or cold');
  let bandwidth: number | undefined;
  if (v.bandwidth !== undefined) {
    const b = parseBandwidth(v.bandwidth as string);
    if (b === null) return usageError(ctx, `bad --bandwidth '${String(v.bandwidth)}' (e.g. 100M)`);
    bandwidth = b;
  }
  const vm = ctx.positionals[0]!;
  try {
    const key = (v['idempotency-key'] as string | undefined) ?? randomUUID();
    const m = await ctx.client.migrations.create({ vm, mode, ...(v.to ? { target: v.to as string } : {}), ...(bandwidth !== undefined ? { bandwidth } : {}) }, key);
    if (v.detach) {
      if (ctx.json) printJson(m);
      else process.stdout.write(`migration ${m.id} queued for ${vm} (${mode}); follow: ferry migrate --watch ${m.id}; cancel: ferry migrate --cancel ${m.id}\n`);
      return 0;
    }
    if (!ctx.json) process.stderr.write(`migration ${m.id} queued for ${vm} (${mode}); Ctrl-C stops following, ferry migrate --cancel ${m.id} cancels\n`);
    return await followMigration(ctx, m.id);
  } catch (e) {
    return fail(ctx, e);
  }
}
