/**
 * Runs Ferry's xl driver (apps/host-agent/src/xl/xl-driver.ts) against a REAL Xen dom0 and prints one
 * `PASS|FAIL|SKIP <step> <ms> <details>` line per check. Meant to be run inside dom0 as root (see
 * tools/real-xen/README.md); it is the same sequence as xl-driver.slow.test.ts without vitest, which is
 * far too slow to start under QEMU TCG.
 *
 *   node apps/cli/bin/run-ts.js tools/real-xen/xl-check.ts --guest pv --cfg /guests/pv.cfg [--migrate]
 *   node apps/cli/bin/run-ts.js tools/real-xen/xl-check.ts --warm      # load everything, then exit (fills the swc cache)
 *
 * Options: --guest NAME (the domain name in the cfg), --cfg FILE (`xl create`d first unless --no-create),
 * --console FILE (xenconsoled's log of the guest; default /out/console/guest-NAME.log),
 * --up-marker TEXT (wait for it in the console log; default "REALXEN guest init up"; "none" = just wait
 * --boot-wait seconds), --migrate (also a save piped through the codec straight into a restore in the
 * same dom0), --abort (a save and a restore aborted part way), --xl PATH, --work DIR (FIFOs), --out DIR (the first 64 KiB of the saved image and the raw
 * `xl list -l` are written there).
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { ingestToV2, verifyStream } from '@ferry/stream-codec';
import type { VmSpec } from '@ferry/contracts';
import { XlDriver, fromWire, toWire, verifyWire } from '@ferry/host-agent';

const argv = process.argv.slice(2);
const flag = (n: string): boolean => argv.includes(`--${n}`);
const opt = (n: string, d: string): string => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : d;
};

if (flag('warm')) {
  // everything above is loaded (and so transpiled and cached): that is all --warm is for
  console.log('warm: modules loaded');
  process.exit(0);
}

const GUEST = opt('guest', 'pv');
const CFG = opt('cfg', `/guests/${GUEST}.cfg`);
const XL = opt('xl', process.env.FERRY_XL_PATH ?? 'xl');
const CONSOLE = opt('console', `/out/console/guest-${GUEST}.log`);
const MARKER = opt('up-marker', 'REALXEN guest init up');
const BOOT_WAIT_S = Number(opt('boot-wait', '900'));
const WORK = opt('work', '/var/tmp/ferry-xl');
const OUT = opt('out', '/out/ferry');
const T0 = Date.now();

let failures = 0;
function line(kind: 'PASS' | 'FAIL' | 'SKIP' | 'INFO', step: string, ms: number, details: string): void {
  if (kind === 'FAIL') failures++;
  const at = ((Date.now() - T0) / 1000).toFixed(1).padStart(7);
  console.log(`${kind} ${GUEST}:${step} ${ms}ms t+${at}s ${details}`);
}

class CheckFailed extends Error {}
function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new CheckFailed(what);
}

/** Runs one step with a deadline; a failure is printed, and returns undefined. */
async function step<T>(name: string, timeoutS: number, fn: () => Promise<[T, string]>): Promise<T | undefined> {
  const t = Date.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const [v, details] = await Promise.race([
      fn(),
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new Error(`timed out after ${timeoutS}s`)), timeoutS * 1000);
      }),
    ]);
    line('PASS', name, Date.now() - t, details);
    return v;
  } catch (e) {
    line('FAIL', name, Date.now() - t, e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

function xl(args: string[], timeoutMs = 300_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(XL, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`xl ${args.join(' ')}: ${(stderr || err.message).trim().split('\n').slice(-4).join(' | ')}`));
      else resolve(stdout);
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The `xl list` line of a domain (name, id, mem, vcpus, state, time), or null. */
async function xlListLine(name: string): Promise<string[] | null> {
  const out = await xl(['list']);
  for (const l of out.split('\n').slice(1)) {
    const cols = l.trim().split(/\s+/);
    if (cols[0] === name) return cols;
  }
  return null;
}

/** The console log as far as this run wrote it (an earlier guest of the same name may have written before). */
let consoleFrom = 0;
async function consoleText(): Promise<string> {
  return (await readFile(CONSOLE, 'latin1').catch(() => '')).slice(consoleFrom);
}
/** Highest "tick N" the guest init printed so far (0 if none). */
async function lastTick(): Promise<number> {
  let n = 0;
  for (const m of (await consoleText()).matchAll(/tick (\d+)/g)) n = Math.max(n, Number(m[1]));
  return n;
}

/** Evidence that the guest runs: the console ticks on past `after` (PV init), or its CPU time grows. */
async function waitAlive(name: string, tickAfter: number, timeoutS: number): Promise<string> {
  const first = await xlListLine(name);
  check(first, `${name} is not in xl list`);
  const cpu0 = Number(first[5]);
  const until = Date.now() + timeoutS * 1000;
  let cols: string[] | null = first;
  while (Date.now() < until) {
    await sleep(5000);
    const tick = await lastTick();
    cols = await xlListLine(name);
    check(cols, `${name} vanished from xl list`);
    check(!cols[4]!.includes('c'), `${name} crashed: state ${cols[4]}`);
    if (MARKER !== 'none' && tick > tickAfter) return `console ticks on: tick ${tickAfter} before the save, tick ${tick} now; xl state ${cols[4]} cpu ${cols[5]}s`;
    if (MARKER === 'none' && Number(cols[5]) > cpu0 && !cols[4]!.includes('p')) return `cpu time ${cpu0}s -> ${cols[5]}s, xl state ${cols[4]}`;
  }
  throw new CheckFailed(`no sign of life in ${timeoutS}s (last tick ${await lastTick()}, xl list ${cols?.join(' ')})`);
}

async function collect(s: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}
async function* chunks(b: Buffer, size = 1 << 20): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < b.length; o += size) yield b.subarray(o, o + size);
}
const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;
const rate = (n: number, ms: number): string => `${(n / 1048576 / Math.max(ms / 1000, 0.001)).toFixed(1)} MiB/s`;

async function main(): Promise<void> {
  await mkdir(OUT, { recursive: true });
  consoleFrom = (await readFile(CONSOLE, 'latin1').catch(() => '')).length;
  console.log(`INFO ${GUEST}: xl-check start ${new Date().toISOString()} node ${process.version} xl=${XL} cfg=${CFG} argv=${argv.join(' ')}`);

  if (!flag('no-create')) {
    const ok = await step('xl-create', 600, async () => [await xl(['create', CFG], 600_000), `xl create ${CFG}`]);
    if (ok === undefined) return;
  }
  if (MARKER !== 'none') {
    const up = await step('guest-up', BOOT_WAIT_S + 30, async () => {
      const until = Date.now() + BOOT_WAIT_S * 1000;
      while (Date.now() < until) {
        if ((await consoleText()).includes(MARKER)) return [true, `"${MARKER}" in ${CONSOLE}`];
        check(await xlListLine(GUEST), `${GUEST} is gone while booting`);
        await sleep(5000);
      }
      throw new CheckFailed(`no "${MARKER}" in ${CONSOLE} after ${BOOT_WAIT_S}s`);
    });
    if (up === undefined) return;
    // let the init write its pattern and tick a few times
    await sleep(15_000);
  } else {
    await sleep(BOOT_WAIT_S * 1000);
    line('INFO', 'guest-up', BOOT_WAIT_S * 1000, `no console marker; waited ${BOOT_WAIT_S}s`);
  }

  const d = new XlDriver({ xlPath: XL, workDir: WORK, capacity: { memoryMiB: 1024, vcpus: 1, maxGuests: 4 }, commandTimeoutMs: 600_000 });
  await step('driver-start', 300, async () => {
    await d.start();
    const ts = d.toolstack();
    check(ts.xenVersion === '4.17' && ts.streamFormat === 'v2' && ts.bitness === 64, `toolstack ${JSON.stringify(ts)}`);
    return [ts, `toolstack ${JSON.stringify(ts)} byteOrder ${d.byteOrder()}`];
  });

  const raw = await xl(['list', '-l']).catch((e: Error) => `ERROR ${e.message}`);
  await writeFile(path.join(OUT, `xl-list-l-${GUEST}.json`), raw);
  const spec = await step('inventory', 300, async () => {
    const all = await d.guests();
    const g = all.find((x) => x.vmId === GUEST);
    check(g, `${GUEST} not in guests(): ${JSON.stringify(all)}`);
    check(g.state === 'running', `state ${g.state}`);
    const s = await d.spec(GUEST);
    check(s, 'spec() null');
    return [s, `guests() ${JSON.stringify(all)}`];
  });
  if (!spec) return;

  const tickBefore = await lastTick();
  const saved = await step('save', 1800, async () => {
    let pausedAt = 0;
    const t = Date.now();
    const h = await d.save(GUEST, { onPaused: (at) => (pausedAt = at) });
    const image = await collect(h.stream);
    const ms = Date.now() - t;
    check(image.length > 0, 'empty stream');
    check(pausedAt > 0, 'onPaused not called');
    await writeFile(path.join(OUT, `${GUEST}-save-head.bin`), image.subarray(0, 65536));
    return [image, `${image.length} bytes (${mib(image.length)}) in ${ms}ms = ${rate(image.length, ms)}; summary ${JSON.stringify(h.summary())}; head ${JSON.stringify(image.subarray(0, 27).toString('latin1'))}`];
  });
  if (!saved) return;

  await step('paused-after-save', 120, async () => {
    const g = (await d.guests()).find((x) => x.vmId === GUEST);
    const cols = await xlListLine(GUEST);
    check(g?.state === 'paused', `guests() state ${g?.state}`);
    check(cols?.[4]?.includes('p'), `xl list state ${cols?.[4]}`);
    return [true, `guests() paused; xl list: ${cols!.join(' ')}`];
  });

  const facts = await step('verifyStream', 600, async () => {
    const f = await verifyStream(chunks(saved));
    check(f.input === 'v2', `input ${f.input}`);
    check(f.pages > 0, `pages ${f.pages}`);
    return [f, JSON.stringify(f)];
  });
  if (facts) {
    await step('inventory-type-matches-stream', 10, async () => {
      check(facts.guest === spec.type, `guests() says ${spec.type}, the saved stream is ${facts.guest}`);
      return [true, `${spec.type}`];
    });
  }

  await step('ingestToV2', 600, async () => {
    const { output, facts } = ingestToV2(chunks(saved), { format: 'auto', width: 'auto' });
    const out = await collect(output);
    const f = await facts;
    check(out.equals(saved), `output differs from the input (${out.length} vs ${saved.length} bytes)`);
    return [f, `output byte-identical (${out.length} bytes); facts ${JSON.stringify(f)}`];
  });

  const destroyed = await step('destroy', 300, async () => {
    await d.destroy(GUEST);
    check(!(await d.guests()).some((x) => x.vmId === GUEST), 'still listed');
    return [true, 'gone from guests()'];
  });
  if (!destroyed) return;

  const restored = await step('restore', 1800, async () => {
    const t = Date.now();
    let bytes = 0;
    await d.restore(spec, chunks(saved), { onBytes: (n) => (bytes += n) });
    const ms = Date.now() - t;
    const g = (await d.guests()).find((x) => x.vmId === GUEST);
    const cols = await xlListLine(GUEST);
    check(g, 'not in guests() after restore');
    check(cols?.[4]?.includes('p'), `xl list state ${cols?.[4]} (restore -p should leave it paused)`);
    return [true, `${bytes} bytes in ${ms}ms = ${rate(bytes, ms)}; guests() state ${g.state}; xl list: ${cols!.join(' ')}`];
  });
  if (!restored) return;

  await step('unpause', 300, async () => {
    await d.setState(GUEST, 'running', null);
    await d.unpause(GUEST);
    const g = (await d.guests()).find((x) => x.vmId === GUEST);
    check(g?.state === 'running', `guests() state ${g?.state}`);
    return [true, `guests() running`];
  });
  await step('alive-after-restore', 600, async () => [true, await waitAlive(GUEST, tickBefore, 540)]);

  if (flag('migrate')) await migrateInOneDom0(d, spec);
  if (flag('abort')) await abortPaths(d, spec, saved);

  await step('cleanup', 300, async () => {
    for (const g of await d.guests()) await d.destroy(g.vmId);
    return [true, 'all guests destroyed'];
  });
}

/**
 * A "migration" inside one dom0, through the agent's data path: the source's save stream (toWire ->
 * verifyWire -> fromWire, as sender and receiver chain them) straight into the driver's restore.
 * Two domains of one name cannot exist, so the source is renamed (`xl rename`, not a driver call) once
 * xl save has written its header (which keeps the original name for the restored copy).
 */
async function migrateInOneDom0(d: XlDriver, spec: VmSpec): Promise<void> {
  const SRC = `${GUEST}-src`;
  const tickBefore = await lastTick();
  const ok = await step('migrate-save-into-restore', 1800, async () => {
    const t = Date.now();
    const h = await d.save(GUEST, { migration: { migrationId: 'real-xen-in-dom0', attempt: 1 } });
    const it = h.stream[Symbol.asyncIterator]();
    const first = await it.next();
    check(!first.done, 'save stream ended at once');
    await xl(['rename', GUEST, SRC]);
    const src = (async function* () {
      yield first.value;
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        yield n.value;
      }
    })();
    const wire = verifyWire(toWire(src, { format: 'v2', width: 64 }));
    let bytes = 0;
    await d.restore(spec, fromWire(wire.output, { format: 'v2' }), { migration: { migrationId: 'real-xen-in-dom0', attempt: 1 }, onBytes: (n) => (bytes += n) });
    const facts = await wire.facts;
    const ms = Date.now() - t;
    const srcCols = await xlListLine(SRC);
    const dstCols = await xlListLine(GUEST);
    check(srcCols?.[4]?.includes('p'), `source ${SRC} state ${srcCols?.[4]}`);
    check(dstCols?.[4]?.includes('p'), `target ${GUEST} state ${dstCols?.[4]}`);
    return [true, `${bytes} bytes in ${ms}ms = ${rate(bytes, ms)}; wire verified: pages ${facts.pages} vcpus ${facts.vcpus} framing ${facts.framing}; source ${srcCols!.join(' ')}; target ${dstCols!.join(' ')}`];
  });
  if (!ok) {
    await xl(['destroy', SRC]).catch(() => undefined);
    return;
  }
  await step('migrate-commit', 300, async () => {
    await d.destroy(SRC);
    await d.setState(GUEST, 'running', null);
    await d.unpause(GUEST);
    const all = await d.guests();
    check(!all.some((g) => g.vmId === SRC), 'source still there');
    check(all.find((g) => g.vmId === GUEST)?.state === 'running', `target state ${all.find((g) => g.vmId === GUEST)?.state}`);
    return [true, `source destroyed, target unpaused: ${JSON.stringify(all)}`];
  });
  await step('alive-after-migrate', 600, async () => [true, await waitAlive(GUEST, tickBefore, 540)]);
}

/**
 * The cancel paths: a save aborted part way (what a cancelled migration does: the driver kills xl
 * save) must leave a guest that can be unpaused and runs; a restore aborted part way must leave no
 * domain behind.
 */
async function abortPaths(d: XlDriver, spec: VmSpec, image: Buffer): Promise<void> {
  const tickBefore = await lastTick();
  const ABORT_AT = 16 << 20;
  const aborted = await step('abort-save', 900, async () => {
    const ac = new AbortController();
    const h = await d.save(GUEST, { signal: ac.signal });
    let n = 0;
    let err = 'none';
    try {
      for await (const c of h.stream) {
        n += c.byteLength;
        if (n >= ABORT_AT && !ac.signal.aborted) ac.abort();
      }
    } catch (e) {
      err = e instanceof Error ? e.message : String(e);
    }
    const cols = await xlListLine(GUEST);
    check(ac.signal.aborted, `the stream ended after ${n} bytes, before the abort`);
    check(err !== 'none', `aborted save ended without an error after ${n} bytes`);
    check(cols, `${GUEST} is gone after an aborted save`);
    return [true, `aborted after ${n} bytes; save error: ${err}; xl list: ${cols.join(' ')}`];
  });
  if (aborted) {
    await step('unpause-after-aborted-save', 300, async () => {
      await d.setState(GUEST, 'running', null);
      await d.unpause(GUEST).catch((e: Error) => line('INFO', 'unpause-after-aborted-save', 0, `unpause: ${e.message}`));
      return [true, `xl list: ${(await xlListLine(GUEST))?.join(' ')}`];
    });
    await step('alive-after-aborted-save', 300, async () => [true, await waitAlive(GUEST, tickBefore, 240)]);
  }
  await step('abort-restore', 900, async () => {
    await d.destroy(GUEST);
    const ac = new AbortController();
    let n = 0;
    let err = 'none';
    try {
      await d.restore(spec, (async function* () {
        for await (const c of chunks(image)) {
          if (n >= ABORT_AT && !ac.signal.aborted) ac.abort();
          if (!ac.signal.aborted) n += c.byteLength;
          yield c;
        }
      })(), { signal: ac.signal });
    } catch (e) {
      err = e instanceof Error ? e.message : String(e);
    }
    const list = await xl(['list']);
    check(err !== 'none', `aborted restore resolved after ${n} bytes`);
    check(!list.split('\n').slice(2).some((l) => l.trim()), `domains left behind:\n${list}`);
    return [true, `aborted after ${n} bytes; restore error: ${err}; only Domain-0 left`];
  });
}

main()
  .catch((e: unknown) => line('FAIL', 'main', 0, e instanceof Error ? (e.stack ?? e.message) : String(e)))
  .finally(() => {
    console.log(`DONE ${GUEST}: ${failures} failure(s) in ${((Date.now() - T0) / 1000).toFixed(1)}s`);
    // a FIFO open blocked in the thread pool would keep the process alive
    process.exit(failures ? 1 : 0);
  });
