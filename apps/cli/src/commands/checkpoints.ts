/**
 * `ferry checkpoints [list] [--vm VM] | show ID | delete ID | download ID -o FILE [--legacy 32|64]`:
 * the control plane's checkpoint resource (GET/DELETE /v1/checkpoints...). Resume from one with
 * `ferry resume VM --checkpoint ID`. Exit 0 on success, 1 on an API, network or integrity error,
 * 2 on usage errors.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream } from 'node:stream/web';
import { FerryApiError, type CheckpointDto, type CheckpointImageQuery } from '@ferry/contracts';
import { fail, interrupt, kv, mib, parse, printJson, table, usageError, type Ctx } from './operator/common';

const USAGE = `usage: ferry checkpoints [list] [--vm VM]           newest first, with what the store's retention will do
       ferry checkpoints show ID
       ferry checkpoints delete ID                  (refused while a resume reads it, or for a suspended VM's only image)
       ferry checkpoints download ID -o FILE [--legacy 32|64]
                                                    the v2 image (checked against its sha256), or down-converted
                                                    for a legacy toolstack; FILE appears only once complete ('-': stdout)
resume from any checkpoint: ferry resume VM --checkpoint ID
`;

function flags(c: CheckpointDto): string {
  return [c.latest ? 'latest' : '', c.inUseBy ? `in use by ${c.inUseBy}` : '', c.onlyImageOfSuspendedVm ? 'only image of suspended VM' : ''].filter(Boolean).join(', ');
}

function source(c: CheckpointDto): string | null {
  const i = c.image;
  if (!i) return null;
  return i.sourceFormat === 'legacy' ? `legacy ${i.width ?? '?'}-bit${i.widthSource ? ` (${i.widthSource})` : ''}` : `v2 ${i.framing}`;
}

function retentionShort(c: CheckpointDto): string {
  const r = c.retention;
  if (r.state === 'expiring') return `expiring ${r.removalAt ?? ''}`.trim();
  if (r.state === 'unknown') return 'unknown';
  return r.expiresAt ? `until ${r.expiresAt}` : r.newerUntilRemoval !== null ? `after ${r.newerUntilRemoval} newer` : 'kept';
}

export function checkpointsTable(cs: CheckpointDto[]): string {
  return table(
    ['ID', 'VM', 'CREATED', 'FROM HOST', 'SIZE', 'SOURCE', 'RETENTION', 'FLAGS'],
    cs.map((c) => [c.id, c.vmId, c.createdAt, c.sourceHostId, mib(c.image?.bytes ?? c.bytes), source(c), retentionShort(c), flags(c) || null]),
  );
}

export function checkpointDetail(c: CheckpointDto): string {
  const i = c.image;
  return kv([
    ['id', c.id],
    ['vm', c.vmId],
    ['created', c.createdAt],
    ['from host', c.sourceHostId],
    ['guest', c.vm ? `${c.vm.type}${c.vm.guestWidth ? ` ${c.vm.guestWidth}-bit` : ''}, ${c.vm.memoryMiB} MiB, ${c.vm.vcpus} vcpu` : null],
    ['memory digest', c.memoryDigest],
    ['stored image', i ? `${i.bytes} bytes, sha256 ${i.sha256}` : 'unknown (the store did not answer)'],
    ['source', source(c)],
    ['latest', c.latest],
    ['in use by', c.inUseBy],
    ['only image of suspended VM', c.onlyImageOfSuspendedVm],
    ['retention', c.retention.summary],
    ['made by', c.operationId],
    ['download', `ferry checkpoints download ${c.id} -o ${c.id}.v2`],
  ]);
}

/** Every page of the list (the API caps a page at 500). */
async function listAll(ctx: Ctx, vm: string | undefined): Promise<CheckpointDto[]> {
  return ctx.client.collect<CheckpointDto>((cursor) => ctx.client.checkpoints.list({ ...(vm ? { vm } : {}), limit: 500, cursor }));
}

/**
 * Streams the image to FILE through a temporary file beside it, renamed into place only when every byte
 * arrived (and, for the v2 image, its sha256 matched): a cut transfer or a mismatch leaves nothing behind.
 */
async function download(ctx: Ctx, id: string, out: string, q: CheckpointImageQuery): Promise<number> {
  const intr = interrupt();
  const tmp = out === '-' ? null : path.join(path.dirname(path.resolve(out)), `.${path.basename(out)}.${process.pid}.part`);
  try {
    const res = await ctx.client.checkpoints.download(id, q, { signal: intr.signal });
    if (!res.body) throw new Error('empty answer');
    const expected = q.format === 'legacy' ? null : res.headers.get('x-ferry-sha256');
    const hash = createHash('sha256');
    let bytes = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    const sink = tmp ? fs.createWriteStream(tmp, { flags: 'wx' }) : process.stdout;
    await pipeline(Readable.fromWeb(res.body as ReadableStream<Uint8Array>), tap, sink);
    const sha = hash.digest('hex');
    if (expected && sha !== expected) throw new Error(`the image's sha256 is ${sha}, the store recorded ${expected}: not kept`);
    if (tmp) {
      const fd = fs.openSync(tmp, 'r');
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fs.renameSync(tmp, out);
      const what = q.format === 'legacy' ? `legacy ${q.width}-bit image` : 'v2 image, sha256 verified';
      if (ctx.json) printJson({ id, file: out, bytes, sha256: sha, format: q.format === 'legacy' ? `legacy-${q.width}` : 'v2' });
      else process.stderr.write(`wrote ${bytes} bytes to ${out} (${what}: ${sha})\n`);
    }
    return 0;
  } catch (e) {
    if (tmp) fs.rmSync(tmp, { force: true });
    if (intr.signal.aborted) {
      process.stderr.write(`ferry checkpoints: download of ${id} stopped; nothing written\n`);
      return 130;
    }
    // API answers and an unreachable control plane: the verbs' usual one line.
    if (e instanceof FerryApiError || (e instanceof TypeError && /fetch failed/.test(e.message))) return fail(ctx, e);
    // A cut transfer, a checksum mismatch, a file that cannot be written: one line, nothing left behind.
    const msg = e instanceof Error ? (/terminated/.test(e.message) ? 'the transfer was cut' : e.message) : String(e);
    process.stderr.write(`ferry checkpoints: download of ${id} failed, nothing written: ${msg}\n`);
    return 1;
  } finally {
    intr.dispose();
  }
}

export async function run(argv: string[]): Promise<number> {
  const ctx = parse('checkpoints', argv, { vm: { type: 'string' }, output: { type: 'string', short: 'o' }, legacy: { type: 'string' } }, USAGE);
  if (typeof ctx === 'number') return ctx;
  const [sub = 'list', id] = ctx.positionals;
  const need = (n: number): boolean => ctx.positionals.length === n;
  try {
    switch (sub) {
      case 'list': {
        if (ctx.positionals.length > 1) return usageError(ctx, 'list takes no arguments (--vm VM filters)');
        const items = await listAll(ctx, ctx.values.vm as string | undefined);
        if (ctx.json) printJson(items);
        else process.stdout.write(items.length ? checkpointsTable(items) : `no checkpoints${ctx.values.vm ? ` of vm ${String(ctx.values.vm)}` : ''}\n`);
        return 0;
      }
      case 'show':
      case 'get': {
        if (!id || !need(2)) return usageError(ctx, `${sub} needs one checkpoint id`);
        const c = await ctx.client.checkpoints.get(id);
        if (ctx.json) printJson(c);
        else process.stdout.write(checkpointDetail(c));
        return 0;
      }
      case 'delete': {
        if (!id || !need(2)) return usageError(ctx, 'delete needs one checkpoint id');
        await ctx.client.checkpoints.delete(id);
        if (ctx.json) printJson({ id, deleted: true });
        else process.stdout.write(`deleted checkpoint ${id}\n`);
        return 0;
      }
      case 'download': {
        if (!id || !need(2)) return usageError(ctx, 'download needs one checkpoint id');
        const out = ctx.values.output as string | undefined;
        if (!out) return usageError(ctx, 'download needs -o FILE (or -o - for stdout)');
        const legacy = ctx.values.legacy as string | undefined;
        if (legacy !== undefined && legacy !== '32' && legacy !== '64') return usageError(ctx, `--legacy takes 32 or 64, not '${legacy}'`);
        if (out !== '-' && fs.existsSync(out)) return usageError(ctx, `${out} exists; choose another file or remove it`);
        return await download(ctx, id, out, legacy ? { format: 'legacy', width: legacy } : {});
      }
      default:
        return usageError(ctx, `unknown subcommand '${sub}'`);
    }
  } catch (e) {
    return fail(ctx, e);
  }
}
