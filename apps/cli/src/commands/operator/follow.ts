/** Following a migration or an operation to its end, with the live bar and Ctrl-C handling. */
import { isTerminalPhase, type MigrationDto, type OperationDto } from '@ferry/contracts';
import { follow, interrupt, printJson, secs, type Ctx } from './common';
import { LiveBar, fromMigration, fromOperation } from './progress';

const DOWNTIME_GRACE_MS = 3000;

/** Exit codes: 0 completed, 1 failed/cancelled, 130 stopped following (Ctrl-C). */
export async function followMigration(ctx: Ctx, id: string): Promise<number> {
  const bar = ctx.json ? null : new LiveBar(`migration ${id}`);
  const intr = interrupt();
  // The measured downtime can land just after `completed`: keep listening for it a little while.
  const settle = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const onUpdate = (x: MigrationDto): void => {
    bar?.update(fromMigration(x));
    if (x.phase === 'completed' && !timer) timer = setTimeout(() => settle.abort(), DOWNTIME_GRACE_MS);
  };
  let m: MigrationDto | null;
  try {
    const done = (x: MigrationDto): boolean => isTerminalPhase(x.phase) && (x.phase !== 'completed' || x.progress.downtimeMs !== null);
    m = await follow<MigrationDto>(ctx, 'migration', id, () => ctx.client.migrations.get(id), done, onUpdate, intr.signal, settle.signal);
  } finally {
    clearTimeout(timer);
    intr.dispose();
    bar?.finish();
  }
  if (!m) {
    process.stderr.write(`stopped following migration ${id}; it continues. To cancel it: ferry migrate --cancel ${id}\n`);
    return 130;
  }
  if (ctx.json) printJson(m);
  else process.stdout.write(migrationOutcome(m) + '\n');
  return m.phase === 'completed' ? 0 : 1;
}

export function migrationOutcome(m: MigrationDto): string {
  if (m.phase === 'completed') {
    const rounds = m.mode === 'live' ? `, ${m.progress.round} pre-copy round(s)` : '';
    return `migration ${m.id} completed: ${m.vmId} now runs on ${m.targetHostId}; downtime ${m.progress.downtimeMs === null ? 'not reported yet' : secs(m.progress.downtimeMs)}${rounds}`;
  }
  const why = m.error ? `${m.error.code}: ${m.error.message}` : m.cancelRequested ? 'cancelled on request' : 'no reason given';
  return `migration ${m.id} ${m.phase}: ${why}; ${m.vmId} stays on ${m.sourceHostId}`;
}

const OP_DONE = ['completed', 'failed', 'cancelled'];

export async function followOperation(ctx: Ctx, op: OperationDto): Promise<number> {
  const id = op.id;
  const bar = ctx.json ? null : new LiveBar(`${op.kind} ${op.vmId ?? ''}`.trim());
  const intr = interrupt();
  let o: OperationDto | null;
  try {
    o = await follow<OperationDto>(ctx, 'operation', id, () => ctx.client.operations.get(id), (x) => OP_DONE.includes(x.state), (x) => bar?.update(fromOperation(x)), intr.signal);
  } finally {
    intr.dispose();
    bar?.finish();
  }
  if (!o) {
    process.stderr.write(`stopped following operation ${id}; it continues (ferry vms get ${op.vmId ?? ''} shows its state)\n`);
    return 130;
  }
  if (ctx.json) printJson(o);
  else if (o.state === 'completed') process.stdout.write(`${o.kind} of ${o.vmId} completed${o.hostId ? ` (host ${o.hostId})` : ''}${o.checkpointId ? `, checkpoint ${o.checkpointId}` : ''}\n`);
  else process.stdout.write(`${o.kind} of ${o.vmId} ${o.state}: ${o.error ? `${o.error.code}: ${o.error.message}` : 'no reason given'}\n`);
  return o.state === 'completed' ? 0 : 1;
}
