/**
 * `ferry suspend VM [--detach]`: POST /v1/vms/{id}/suspend and follow the operation to its end.
 * Exit 0 when completed, 1 on failure or API error, 2 on usage errors, 130 on Ctrl-C.
 */
import { fail, parse, printJson, usageError } from './operator/common';
import { followOperation } from './operator/follow';

const USAGE = `usage: ferry suspend VM [--detach]
`;

export async function run(argv: string[]): Promise<number> {
  const ctx = parse('suspend', argv, { detach: { type: 'boolean', default: false } }, USAGE);
  if (typeof ctx === 'number') return ctx;
  if (ctx.positionals.length !== 1) return usageError(ctx, 'needs exactly one VM id');
  try {
    const op = await ctx.client.vms.suspend(ctx.positionals[0]!);
    if (ctx.values.detach) {
      if (ctx.json) printJson(op);
      else process.stdout.write(`operation ${op.id}: suspend of ${op.vmId} ${op.state}\n`);
      return 0;
    }
    return await followOperation(ctx, op);
  } catch (e) {
    return fail(ctx, e);
  }
}
