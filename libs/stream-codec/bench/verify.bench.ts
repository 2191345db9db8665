/**
 * Benchmark (not a test): verify throughput and peak memory against `cat`.
 *
 *   node apps/cli/bin/run-ts.js libs/stream-codec/bench/verify.bench.ts [GiB...]   (default: 1 2)
 *
 * For each size it generates a synthetic v2 stream (xl framing, PV guest, 1024-page
 * PAGE_DATA records like Xen's) under /tmp (kept between runs), warms the page
 * cache, then takes the best of 3 for `cat FILE > /dev/null` and for the verifier,
 * each in its own process. The verifier child is transpiled once with SWC to plain
 * JS under /tmp so its peak RSS (process.resourceUsage().maxRSS) is the verifier's,
 * not the TypeScript loader's. Reads: 1 MiB (READ_CHUNK; CHUNK=bytes to change) into recycled page-aligned buffers.
 * The ratio to `cat` is printed twice: the verifier's own time (the child's clock, from opening the
 * file to the verdict) and the whole child process, Node's start-up included (`node -e 0` took 22-24 ms
 * here without NODE_EXTRA_CA_CERTS).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { transformSync } from '@swc/core';
import { encodeV2 } from '../src/v2/encoder';
import { synthStream } from '../src/v2/synth';

const ROOT = path.resolve(__dirname, '..');
const OUT_JS = '/tmp/ferry-verify-bench-js';
const GiB = 1024 ** 3;

async function generate(file: string, gib: number): Promise<void> {
  const pages = Math.floor((gib * GiB) / 4096);
  if (fs.existsSync(file) && fs.statSync(file).size > gib * GiB) return;
  process.stderr.write(`generating ${file} (${gib} GiB)...\n`);
  const fd = fs.openSync(file + '.tmp', 'w');
  for await (const c of encodeV2(synthStream({ guest: 'pv', framing: 'xl', pages, vcpus: 2 }))) fs.writeSync(fd, c);
  fs.closeSync(fd);
  fs.renameSync(file + '.tmp', file);
}

/** Transpiles src/ and the child to CommonJS under OUT_JS (same layout). */
function transpile(): string {
  const files = [...walk(path.join(ROOT, 'src')), path.join(ROOT, 'bench', 'verify-child.ts')];
  for (const f of files) {
    const rel = path.relative(ROOT, f).replace(/\.ts$/, '.js');
    const out = path.join(OUT_JS, rel);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const { code } = transformSync(fs.readFileSync(f, 'utf8'), { filename: f, module: { type: 'commonjs' }, jsc: { parser: { syntax: 'typescript' }, target: 'es2022' } });
    fs.writeFileSync(out, code);
  }
  return path.join(OUT_JS, 'bench', 'verify-child.js');
}

function* walk(dir: string): Generator<string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) yield p;
  }
}

function timeCat(file: string): number {
  const devnull = fs.openSync('/dev/null', 'w');
  const t = process.hrtime.bigint();
  const r = spawnSync('cat', [file], { stdio: ['ignore', devnull, 'inherit'] });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  fs.closeSync(devnull);
  if (r.status !== 0) throw new Error('cat failed');
  return ms;
}

function runVerify(child: string, file: string): { ms: number; wallMs: number; maxRssKiB: number; bytes: number } {
  const t = process.hrtime.bigint();
  // Without NODE_EXTRA_CA_CERTS, as the drop-ins run (their shebang drops it): this machine sets it,
  // and parsing its certificates adds 30-50 ms to a start that opens no TLS connection.
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const r = spawnSync(process.execPath, [child, file, 'pool'], { encoding: 'utf8', env });
  const wallMs = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`verify child failed: ${r.stderr}`);
  return { ...(JSON.parse(r.stdout) as { ms: number; maxRssKiB: number; bytes: number }), wallMs };
}

const mbps = (bytes: number, ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(0);

async function main(): Promise<void> {
  const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
  const child = transpile();
  const rows: string[] = [];
  for (const gib of sizes.length ? sizes : [1, 2]) {
    const file = `/tmp/ferry-verify-bench-${gib}g.v2`;
    await generate(file, gib);
    const bytes = fs.statSync(file).size;
    timeCat(file); // warm the page cache
    runVerify(child, file);
    const cat = Math.min(timeCat(file), timeCat(file), timeCat(file));
    const runs = [runVerify(child, file), runVerify(child, file), runVerify(child, file)];
    const best = runs.reduce((a, b) => (a.ms < b.ms ? a : b));
    const rss = Math.max(...runs.map((r) => r.maxRssKiB));
    rows.push(
      `${gib} GiB (${bytes} B): cat ${mbps(bytes, cat)} MB/s (${cat.toFixed(0)} ms) | verify ${mbps(bytes, best.ms)} MB/s (${best.ms.toFixed(0)} ms; ${mbps(bytes, best.wallMs)} MB/s with process start) = ${((cat / best.ms) * 100).toFixed(0)}% of cat (${((cat / best.wallMs) * 100).toFixed(0)}% with process start) | peak RSS ${(rss / 1024).toFixed(1)} MiB`,
    );
    process.stdout.write(rows[rows.length - 1] + '\n');
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
