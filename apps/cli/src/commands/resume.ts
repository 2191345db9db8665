/**
 * `ferry resume VM [--host H] [--checkpoint ID] [--detach]`: POST /v1/vms/{id}/resume (the scheduler
 * picks a compatible host without --host; the VM's latest checkpoint without --checkpoint) and follow
 * the operation to its end.
 * Exit 0 when completed, 1 on failure or API error, 2 on usage errors, 130 on Ctrl-C.
 */
import { fail, parse, printJson, usageError } from './operator/common';
import { followOperation } from './operator/follow';

const USAGE = `usage: ferry resume VM [--host H] [--checkpoint ID] [--detach]
  --checkpoint ID   resume from this checkpoint of the VM (ferry checkpoints list --vm VM); default: its latest
`;

export async function run(argv: string[]): Promise<number> {
  const ctx = parse('resume', argv, { host: { type: 'string' }, checkpoint: { type: 'string' }, detach: { type: 'boolean', default: false } }, USAGE);
  if (typeof ctx === 'number') return ctx;
  if (ctx.positionals.length !== 1) return usageError(ctx, 'needs exactly one VM id');
  try {
    const op = await ctx.client.vms.resume(ctx.positionals[0]!, ctx.values.host as string | undefined, ctx.values.checkpoint as string | undefined);
    if (ctx.values.detach) {
      if (ctx.json) printJson(op);
      else process.stdout.write(`operation ${op.id}: resume of ${op.vmId} from ${op.checkpointId ?? 'its latest checkpoint'} ${op.state}\n`);
      return 0;
    }
    return await followOperation(ctx, op);
  } catch (e) {
    return fail(ctx, e);
  }
}
