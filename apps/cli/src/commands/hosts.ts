/**
 * `ferry hosts [list] | get ID | drain ID [--off] [--no-evacuate] | maintenance ID on|off`.
 * Exit 0 on success, 1 on an API error, 2 on usage errors.
 */
import { fail, parse, printJson, usageError } from './operator/common';
import { hostDetail, hostsTable } from './operator/format';

const USAGE = `usage: ferry hosts [list]
       ferry hosts get ID
       ferry hosts drain ID [--off] [--no-evacuate]   (--off: accept work again)
       ferry hosts maintenance ID on|off
`;

export async function run(argv: string[]): Promise<number> {
  const ctx = parse('hosts', argv, { off: { type: 'boolean', default: false }, 'no-evacuate': { type: 'boolean', default: false } }, USAGE);
  if (typeof ctx === 'number') return ctx;
  const [sub = 'list', id, arg, ...extra] = ctx.positionals;
  const c = ctx.client;
  const need = (n: number): boolean => ctx.positionals.length === n;
  try {
    switch (sub) {
      case 'list': {
        if (!need(ctx.positionals.length ? 1 : 0)) return usageError(ctx, 'list takes no arguments');
        const hs = await c.hosts.all();
        if (ctx.json) printJson(hs);
        else process.stdout.write(hs.length ? hostsTable(hs) : 'no hosts\n');
        return 0;
      }
      case 'get': {
        if (!id || !need(2)) return usageError(ctx, 'get needs one host id');
        const h = await c.hosts.get(id);
        if (ctx.json) printJson(h);
        else process.stdout.write(hostDetail(h));
        return 0;
      }
      case 'drain': {
        if (!id || !need(2)) return usageError(ctx, 'drain needs one host id');
        if (ctx.values.off) {
          const h = await c.hosts.undrain(id);
          if (ctx.json) printJson(h);
          else process.stdout.write(`host ${h.id}: no longer draining\n`);
          return 0;
        }
        const h = await c.hosts.drain(id, !ctx.values['no-evacuate']);
        if (ctx.json) printJson(h);
        else {
          const ms = h.migrations ?? [];
          process.stdout.write(`host ${h.id}: draining${ms.length ? `, ${ms.length} migration(s) queued: ${ms.join(' ')}` : ''}\n`);
        }
        return 0;
      }
      case 'maintenance': {
        if (!id || (arg !== 'on' && arg !== 'off') || extra.length) return usageError(ctx, 'maintenance needs a host id and on|off');
        const h = await c.hosts.maintenance(id, arg === 'on');
        if (ctx.json) printJson(h);
        else process.stdout.write(`host ${h.id}: maintenance ${h.maintenance ? 'on' : 'off'}\n`);
        return 0;
      }
      default:
        return usageError(ctx, `unknown subcommand '${sub}'`);
    }
  } catch (e) {
    return fail(ctx, e);
  }
}
