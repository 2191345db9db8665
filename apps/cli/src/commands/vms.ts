/**
 * `ferry vms [list] [--host H] [--state S] | get ID`. Exit 0 on success, 1 on an API error,
 * 2 on usage errors.
 */
import type { VmDto } from '@ferry/contracts';
import { fail, parse, printJson, usageError } from './operator/common';
import { vmDetail, vmsTable } from './operator/format';

const USAGE = `usage: ferry vms [list] [--host H] [--state S]
       ferry vms get ID   (host, type, guest width, memory, state, memory digest, latest checkpoint)
`;

export async function run(argv: string[]): Promise<number> {
  const ctx = parse('vms', argv, { host: { type: 'string' }, state: { type: 'string' } }, USAGE);
  if (typeof ctx === 'number') return ctx;
  const [sub = 'list', id] = ctx.positionals;
  try {
    if (sub === 'list') {
      if (ctx.positionals.length > 1) return usageError(ctx, 'list takes no arguments');
      // every page: the API caps a page at 500
      const items: VmDto[] = await ctx.client.collect((cursor) =>
        ctx.client.vms.list({ host: ctx.values.host as string | undefined, state: ctx.values.state as string | undefined, limit: 500, cursor }),
      );
      if (ctx.json) printJson(items);
      else process.stdout.write(items.length ? vmsTable(items) : 'no VMs\n');
      return 0;
    }
    if (sub === 'get') {
      if (!id || ctx.positionals.length !== 2) return usageError(ctx, 'get needs one VM id');
      const v = await ctx.client.vms.get(id);
      if (ctx.json) printJson(v);
      else process.stdout.write(vmDetail(v));
      return 0;
    }
    return usageError(ctx, `unknown subcommand '${sub}'`);
  } catch (e) {
    return fail(ctx, e);
  }
}
