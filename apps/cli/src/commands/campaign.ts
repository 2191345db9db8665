/**
 * `ferry campaign plan|start|watch|list|get|pause|resume|abort`: upgrade campaigns.
 * plan prints the per-host, per-VM plan and every blocker (moves nothing); start creates one
 * (optionally --watch); watch follows one live over SSE until completed / failed / aborted.
 * Exit 0 on success (watch: completed), 1 on an API error or a failed / aborted campaign,
 * 2 on usage errors, 3 when plan finds the campaign infeasible (so `plan && start` can be scripted),
 * 130 when Ctrl-C stopped watching.
 */
import type { CampaignDto, CampaignHostPlan, CampaignPlanDto, CampaignStrategy, CreateCampaignRequest } from '@ferry/contracts';
import { UsageError, duration, fail, follow, interrupt, parse, printJson, table, usageError, type Ctx } from './operator/common';
import { toolstack } from './operator/format';

const USAGE = `usage: ferry campaign plan  SELECTOR [--strategy S] [--max-parallel-hosts N] [--max-parallel-migrations N] [--on-error stop|continue] [--name NAME]
       ferry campaign start SELECTOR [same options] [--watch]
       ferry campaign watch ID
       ferry campaign list | get ID | pause ID | resume ID | abort ID
  SELECTOR: --bitness 32|64, --hosts ID,ID,..., --stream-format legacy|v2, --xen-version 4.4 (at least one)
  --strategy  evacuate-and-return (default) | suspend-and-resume
  defaults: --max-parallel-hosts 1 --max-parallel-migrations 2 --on-error stop
  exit codes: 0 ok (watch: completed), 1 API error or failed/aborted campaign, 2 usage,
              3 plan is infeasible (blockers listed), 130 Ctrl-C stopped watching
`;

/** `ferry campaign plan` when the plan has blockers: distinct from API (1) and usage (2) errors. */
export const EXIT_INFEASIBLE = 3;

const TERMINAL = ['completed', 'failed', 'aborted'];

function request(v: Ctx['values']): CreateCampaignRequest {
  const hosts: CreateCampaignRequest['hosts'] = {};
  if (v.bitness !== undefined) {
    if (v.bitness !== '32' && v.bitness !== '64') throw new UsageError('--bitness must be 32 or 64');
    hosts.bitness = Number(v.bitness) as 32 | 64;
  }
  if (v.hosts !== undefined) hosts.ids = String(v.hosts).split(',').map((s) => s.trim()).filter(Boolean);
  if (v['stream-format'] !== undefined) {
    if (v['stream-format'] !== 'legacy' && v['stream-format'] !== 'v2') throw new UsageError('--stream-format must be legacy or v2');
    hosts.streamFormat = v['stream-format'];
  }
  if (v['xen-version'] !== undefined) hosts.xenVersion = String(v['xen-version']);
  if (!Object.keys(hosts).length) throw new UsageError('select hosts with --bitness, --hosts, --stream-format or --xen-version');
  const strategy = String(v.strategy);
  if (strategy !== 'evacuate-and-return' && strategy !== 'suspend-and-resume') throw new UsageError('--strategy must be evacuate-and-return or suspend-and-resume');
  const int = (name: string): number => {
    const s = String(v[name]);
    if (!/^\d+$/.test(s) || Number(s) < 1) throw new UsageError(`--${name} must be a positive integer`);
    return Number(s);
  };
  const onError = String(v['on-error']);
  if (onError !== 'stop' && onError !== 'continue') throw new UsageError('--on-error must be stop or continue');
  return {
    ...(v.name ? { name: String(v.name) } : {}),
    hosts,
    strategy: strategy as CampaignStrategy,
    maxParallelHosts: int('max-parallel-hosts'),
    maxParallelMigrations: int('max-parallel-migrations'),
    onError,
  };
}

export function planText(p: Pick<CampaignPlanDto, 'hosts' | 'blockers'>, running = false): string {
  const rows: (string | number | null | undefined)[][] = [];
  for (const h of [...p.hosts].sort((a, b) => a.order - b.order)) {
    const head = [h.order + 1, h.hostId, `${toolstack(h.toolstackBefore)} -> ${toolstack(h.toolstackAfter)}`];
    const took = h.durationMs === null || h.durationMs === undefined ? null : duration(h.durationMs);
    const hostState = running ? [h.state ?? 'pending', took] : [];
    if (!h.vms.length) rows.push([...head, ...hostState, '(no VMs)', '', '', ...(running ? [''] : [])]);
    h.vms.forEach((vm, i) => {
      const lead = i === 0 ? head : ['', '', ''];
      rows.push([...lead, ...(running ? (i === 0 ? hostState : ['', '']) : []), vm.vmId, vm.action, vm.parkOn ?? (vm.action === 'suspend' ? '(suspend-store)' : null), ...(running ? [vm.error ? `${vm.state ?? ''}: ${vm.error}` : (vm.state ?? 'pending')] : [])]);
    });
  }
  const headers = ['#', 'HOST', 'TOOLSTACK', ...(running ? ['STEP', 'TIME'] : []), 'VM', 'ACTION', 'PARK ON', ...(running ? ['VM STATE'] : [])];
  let out = p.hosts.length ? table(headers, rows) : 'no hosts selected\n';
  if (p.blockers.length) {
    out += `\nblockers (${p.blockers.length}):\n` + table(['CODE', 'HOST', 'VM', 'MESSAGE'], p.blockers.map((b) => [b.code, b.hostId, b.vmId, b.message]));
  }
  return out;
}

export function summary(c: CampaignDto): string {
  const n = c.counts;
  const t = c.timing;
  const ended = ['completed', 'aborted', 'failed'].includes(c.state);
  const time = t ? `, ${ended ? 'took' : 'elapsed'} ${duration(t.elapsedMs)}${ended ? '' : `, ETA ${t.etaMs === null ? 'after the first host' : duration(t.etaMs)}`}` : '';
  return `campaign ${c.id}${c.name && c.name !== c.id ? ` (${c.name})` : ''}: ${c.state}, ${n.hostsDone}/${n.hostsTotal} host(s) done${n.hostsFailed ? `, ${n.hostsFailed} failed` : ''}${time}${c.error ? ` - ${c.error}` : ''}`;
}

function hostLine(h: CampaignHostPlan): string {
  const vms = h.vms.map((v) => `${v.vmId}:${v.state ?? 'pending'}`).join(' ');
  // the running time is left out: it would make a new line each tick in the plain (non-terminal) view
  const took = h.finishedAt && h.durationMs !== null && h.durationMs !== undefined ? ` in ${duration(h.durationMs)}` : '';
  return `host ${h.hostId}: ${h.state ?? 'pending'}${took}${vms ? ` [${vms}]` : ''}${h.error ? ` - ${h.error}` : ''}`;
}

/** Live view: redrawn in place on a terminal; one line per change otherwise. */
async function watch(ctx: Ctx, id: string): Promise<number> {
  const tty = !ctx.json && process.stdout.isTTY === true;
  let drawn = 0;
  const seen = new Map<string, string>();
  const show = (c: CampaignDto): void => {
    if (ctx.json) return;
    if (tty) {
      const text = `${summary(c)}\n${planText(c, true)}`;
      if (drawn) process.stdout.write(`\x1b[${drawn}A\x1b[J`);
      process.stdout.write(text);
      drawn = text.split('\n').length - 1;
      return;
    }
    for (const [k, line] of [...c.hosts.map((h) => [h.hostId, hostLine(h)]), ['', summary(c)]] as [string, string][]) {
      if (seen.get(k) !== line) process.stdout.write(line + '\n');
      seen.set(k, line);
    }
  };
  const intr = interrupt();
  let c: CampaignDto | null;
  try {
    c = await follow<CampaignDto>(ctx, 'campaign', id, () => ctx.client.campaigns.get(id), (x) => TERMINAL.includes(x.state), show, intr.signal);
  } finally {
    intr.dispose();
  }
  if (!c) {
    process.stderr.write(`stopped watching campaign ${id}; it continues (ferry campaign pause|abort ${id})\n`);
    return 130;
  }
  if (ctx.json) printJson(c);
  else if (!tty && seen.get('') !== summary(c)) process.stdout.write(summary(c) + '\n');
  return c.state === 'completed' ? 0 : 1;
}

export async function run(argv: string[]): Promise<number> {
  const ctx = parse(
    'campaign',
    argv,
    {
      bitness: { type: 'string' },
      hosts: { type: 'string' },
      'stream-format': { type: 'string' },
      'xen-version': { type: 'string' },
      strategy: { type: 'string', default: 'evacuate-and-return' },
      'max-parallel-hosts': { type: 'string', default: '1' },
      'max-parallel-migrations': { type: 'string', default: '2' },
      'on-error': { type: 'string', default: 'stop' },
      name: { type: 'string' },
      watch: { type: 'boolean', default: false },
      limit: { type: 'string', default: '50' },
    },
    USAGE,
  );
  if (typeof ctx === 'number') return ctx;
  const [sub, id, ...extra] = ctx.positionals;
  const c = ctx.client;
  try {
    switch (sub) {
      case 'plan':
      case 'start': {
        if (id !== undefined) return usageError(ctx, `${sub} takes options, not arguments`);
        const req = request(ctx.values);
        if (sub === 'plan') {
          const p = await c.campaigns.plan(req);
          if (ctx.json) printJson(p);
          else process.stdout.write(`${planText(p)}\nfeasible: ${p.feasible ? 'yes' : `no (${p.blockers.length} blocker(s))`}\n`);
          return p.feasible ? 0 : EXIT_INFEASIBLE;
        }
        const created = await c.campaigns.create(req);
        if (!ctx.values.watch) {
          if (ctx.json) printJson(created);
          else process.stdout.write(`${summary(created)}\nwatch it: ferry campaign watch ${created.id}\n`);
          return 0;
        }
        if (!ctx.json) process.stderr.write(`campaign ${created.id} started\n`);
        return await watch(ctx, created.id);
      }
      case 'watch':
      case 'get':
      case 'pause':
      case 'resume':
      case 'abort': {
        if (!id || extra.length) return usageError(ctx, `${sub} needs one campaign id`);
        if (sub === 'watch') return await watch(ctx, id);
        const x = sub === 'get' ? await c.campaigns.get(id) : await c.campaigns[sub](id);
        if (ctx.json) printJson(x);
        else process.stdout.write(sub === 'get' ? `${summary(x)}\n${planText(x, true)}` : `${summary(x)}\n`);
        return 0;
      }
      case 'list': {
        if (id !== undefined) return usageError(ctx, 'list takes no arguments');
        const p = await c.campaigns.list({ limit: Number(ctx.values.limit) || 50 });
        if (ctx.json) printJson(p);
        else process.stdout.write(p.items.length ? table(['ID', 'NAME', 'STATE', 'STRATEGY', 'HOSTS', 'CREATED'], p.items.map((x) => [x.id, x.name, x.state, x.request.strategy, `${x.counts.hostsDone}/${x.counts.hostsTotal}${x.counts.hostsFailed ? ` (${x.counts.hostsFailed} failed)` : ''}`, x.createdAt])) : 'no campaigns\n');
        return 0;
      }
      case undefined:
        return usageError(ctx, 'needs a subcommand');
      default:
        return usageError(ctx, `unknown subcommand '${sub}'`);
    }
  } catch (e) {
    return fail(ctx, e);
  }
}
