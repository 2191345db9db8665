/**
 * Legacy -> v2 conversion throughput, next to `cat` of the same file and Xen's own
 * Python 2.7 converter, in the same run (warm cache, same disk, peak RSS of each child).
 * Not a test.
 *
 *   node apps/cli/bin/run-ts.js libs/stream-codec/bench/convert.bench.ts [--8g] [--no-xen] [--runs 5] [--dir /tmp/ferry-bench] [--out-dir DIR]
 *
 * The commands take turns, round after round (`--runs`, default 5), and each is reported by its
 * best and its median round. Taking turns matters on these VMs: the host takes back memory the
 * guest has freed (virtio-balloon free page reporting), so whichever command next fills 1 GiB of
 * fresh page cache may pay 0.5-2 s of the host's page faults; running one command three times
 * in a row let that luck fall on one command.
 *
 * Outputs go to --out-dir (default: the bench directory). On the ext4 disks measured here a
 * fresh 1 GiB output file costs anything from 0.2 to 2 s of system time from run to run (the
 * journal and online discard of the last run's deleted file); `--out-dir /dev/shm` (tmpfs)
 * takes that noise out for every command alike.
 *
 * The input is a legacy PV image from a 32-bit toolstack (64-bit guest, 1024-page
 * batches), generated once with writeLegacy into the bench directory.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertLegacy, writeLegacy, type LegacyPage } from '../src/index';

const GiB = 1024 ** 3;
const args = process.argv.slice(2);
const dir = args.includes('--dir') ? args[args.indexOf('--dir') + 1]! : path.join(os.tmpdir(), 'ferry-bench');
const outDir = args.includes('--out-dir') ? args[args.indexOf('--out-dir') + 1]! : dir;
const sizes = args.includes('--8g') ? [1, 8] : [1];
const withXen = !args.includes('--no-xen');
const runs = args.includes('--runs') ? Number(args[args.indexOf('--runs') + 1]) : 5;
const root = path.resolve(__dirname, '..', '..', '..');
const xenTools = process.env.XEN_PYTHON_TOOLS ?? '/tmp/xen/tools/python';

function pythonBin(): string | undefined {
  if (process.env.XEN_PYTHON) return process.env.XEN_PYTHON;
  try {
    return path.join(execFileSync('pyenv', ['root']).toString().trim(), 'versions/2.7.18/bin/python');
  } catch {
    return undefined;
  }
}

/** Writes the image through writeLegacy: one 4 MiB buffer of page bytes, reused for every batch. */
async function generate(file: string, gib: number): Promise<void> {
  const pages = (gib * GiB) / 4096;
  if (fs.existsSync(file) && fs.statSync(file).size > gib * GiB) return;
  const buf = new Uint8Array(4 * 1024 * 1024);
  let x = 0x12345678;
  for (let i = 0; i < buf.length; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    buf[i] = x >>> 24;
    buf[i + 1] = x >>> 16;
  }
  function* pageSource(): Generator<LegacyPage> {
    for (let pfn = 0; pfn < pages; pfn++) {
      const o = (pfn & 1023) * 4096;
      yield { pfn, type: 0, data: buf.subarray(o, o + 4096) };
    }
  }
  const vcpus = [0, 1].map((id) => ({ id, basic: new Uint8Array(0x1430).fill(id + 1) }));
  const fd = fs.openSync(file + '.tmp', 'w');
  let batch: Uint8Array[] = [];
  let bytes = 0;
  for await (const c of writeLegacy({ guest: 'pv', toolstackWidth: 32, guestWidth: 64, p2mSize: pages, vcpus, pages: pageSource(), tsc: { mode: 0, nsec: 1n, khz: 2_000_000, incarnation: 0 } })) {
    batch.push(c);
    bytes += c.byteLength;
    if (batch.length >= 1024 || bytes >= 8 << 20) {
      writevAll(fd, batch);
      batch = [];
      bytes = 0;
    }
  }
  writevAll(fd, batch);
  fs.closeSync(fd);
  fs.renameSync(file + '.tmp', file);
}

function writevAll(fd: number, bufs: Uint8Array[]): void {
  let list = bufs;
  while (list.length) {
    let n = fs.writevSync(fd, list);
    let i = 0;
    while (i < list.length && n >= list[i]!.byteLength) n -= list[i++]!.byteLength;
    list = list.slice(i);
    if (n > 0) list[0] = list[0]!.subarray(n);
  }
}

/** Runs a shell command as a child of a tiny Python wrapper that reports the child's peak RSS. */
function timed(cmd: string): { secs: number; rssMiB: number; cpu: number; ok: boolean; err: string } {
  const wrapper =
    'import resource,subprocess,sys,time\n' +
    't=time.time(); rc=subprocess.call(sys.argv[1], shell=True); t=time.time()-t\n' +
    'u=resource.getrusage(resource.RUSAGE_CHILDREN)\n' +
    'print("%d %f %d %f" % (rc, t, u.ru_maxrss, u.ru_utime + u.ru_stime))\n';
  const r = spawnSync('python3', ['-c', wrapper, cmd], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: process.env.PYTHONPATH ?? '' } });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  const [rc, secs, rss, cpu] = last.split(' ').map(Number);
  return { secs: secs!, rssMiB: rss! / 1024, cpu: cpu!, ok: rc === 0, err: r.stderr };
}

type Result = { label: string; mbps: number; secs: number; median: number; rssMiB: number; cpu: number };

/** Runs the commands in turn, `runs` rounds; for each its best and median time, least CPU, peak RSS. */
function rounds(cmds: { label: string; cmd: string }[], bytes: number, out: string): Result[] {
  const times = cmds.map(() => [] as number[]);
  const cpu = cmds.map(() => Infinity);
  const rss = cmds.map(() => 0);
  // One untimed run each first: the TypeScript cache and the native helper get built there (the
  // compiler would otherwise count in the peak RSS, which covers the command's children).
  for (const c of cmds) {
    fs.rmSync(out, { force: true });
    timed(c.cmd);
  }
  for (let i = 0; i < runs; i++) {
    cmds.forEach((c, k) => {
      // Start each run from a clean slate: a fresh output file (no truncation of the last
      // one, which ext4 makes expensive) and no dirty pages of the last run being written back.
      fs.rmSync(out, { force: true });
      spawnSync('sync');
      const t = timed(c.cmd);
      if (!t.ok) throw new Error(`${c.label} failed: ${t.err}`);
      times[k]!.push(t.secs);
      cpu[k] = Math.min(cpu[k]!, t.cpu);
      rss[k] = Math.max(rss[k]!, t.rssMiB);
    });
  }
  return cmds.map((c, k) => {
    const sorted = [...times[k]!].sort((a, b) => a - b);
    const secs = sorted[0]!;
    return { label: c.label, secs, median: sorted[Math.floor(sorted.length / 2)]!, mbps: bytes / 1e6 / secs, rssMiB: rss[k]!, cpu: cpu[k]! };
  });
}

/** The codec alone: writeLegacy -> convertLegacy in memory (no I/O), to show it is not the bottleneck. */
async function codecOnly(gib: number): Promise<number> {
  const pages = (gib * GiB) / 4096;
  const buf = new Uint8Array(4 * 1024 * 1024).fill(0x5a);
  function* pageSource(): Generator<LegacyPage> {
    for (let pfn = 0; pfn < pages; pfn++) {
      const o = (pfn & 1023) * 4096;
      yield { pfn, type: 0, data: buf.subarray(o, o + 4096) };
    }
  }
  const vcpus = [{ id: 0, basic: new Uint8Array(0x1430) }];
  const t = process.hrtime.bigint();
  const { output } = convertLegacy(writeLegacy({ guest: 'pv', toolstackWidth: 32, guestWidth: 64, p2mSize: pages, vcpus, pages: pageSource() }), { width: 32, guest: 'pv' });
  let n = 0;
  for await (const c of output) n += c.byteLength;
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  return n / 1e6 / secs;
}

async function main(): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  let codec = 0;
  for (let i = 0; i < runs; i++) codec = Math.max(codec, await codecOnly(1));
  process.stdout.write(`codec alone (writeLegacy -> convertLegacy in memory, 1 GiB, best of ${runs}): ${codec.toFixed(0)} MB/s\n`);
  const py = withXen ? pythonBin() : undefined;
  let shim: string | undefined;
  if (py && fs.existsSync(path.join(xenTools, 'scripts/convert-legacy-stream'))) {
    shim = fs.mkdtempSync(path.join(os.tmpdir(), 'xen-shim-'));
    fs.mkdirSync(path.join(shim, 'xen', 'migration'), { recursive: true });
    fs.writeFileSync(path.join(shim, 'xen', '__init__.py'), '');
    fs.writeFileSync(path.join(shim, 'xen', 'util.py'), 'import os\ndef open_file_or_fd(val, *a, **k):\n    try:\n        return os.fdopen(int(val), *a, **k)\n    except ValueError:\n        return open(val, *a, **k)\n');
    for (const f of fs.readdirSync(path.join(xenTools, 'xen/migration'))) fs.copyFileSync(path.join(xenTools, 'xen/migration', f), path.join(shim, 'xen', 'migration', f));
    fs.writeFileSync(path.join(shim, 'xen', 'migration', '__init__.py'), '');
  }
  // The bin is run as libxl runs a LIBXL_CONVERT_HELPER: executed, so its shebang applies (it
  // drops NODE_EXTRA_CA_CERTS). `node bin.js` is timed too when that variable is set, to show its cost.
  const ours = path.join(root, 'apps/cli/bin/convert-legacy-stream.js');
  const viaNode = process.env.NODE_EXTRA_CA_CERTS ? `node '${ours}'` : undefined;
  const idle = (cmd: string) => timed(`${cmd} --version > /dev/null`);
  const startup = { bin: idle(`'${ours}'`), viaNode: viaNode ? idle(viaNode) : undefined };
  process.stdout.write(
    `startup (--version, no conversion): ${startup.bin.secs.toFixed(2)} s / ${startup.bin.rssMiB.toFixed(0)} MiB RSS` +
      (startup.viaNode ? `; as \`node bin.js\` with NODE_EXTRA_CA_CERTS loaded: ${startup.viaNode.secs.toFixed(2)} s\n` : '\n'),
  );
  for (const gib of sizes) {
    const input = path.join(dir, `legacy-pv-w32-${gib}g.img`);
    const t0 = Date.now();
    await generate(input, gib);
    const size = fs.statSync(input).size;
    process.stdout.write(`\n${input}: ${(size / GiB).toFixed(2)} GiB (generated/checked in ${((Date.now() - t0) / 1000).toFixed(1)} s); outputs in ${outDir}\n`);
    const out = path.join(outDir, 'ferry-convert-bench-out.v2');
    timed(`cat '${input}' > /dev/null`); // warm the cache
    const cmds = [
      { label: 'cat in > out', cmd: `cat '${input}' > '${out}'` },
      { label: 'ferry convert-legacy-stream', cmd: `'${ours}' -i '${input}' -o '${out}' -w 32 -g pv` },
      { label: 'ferry (-w auto -g auto)', cmd: `'${ours}' -i '${input}' -o '${out}' -w auto -g auto` },
      ...(viaNode ? [{ label: 'ferry as `node bin.js` (CA certs)', cmd: `${viaNode} -i '${input}' -o '${out}' -w 32 -g pv` }] : []),
    ];
    const xen = shim ? `PYTHONPATH='${shim}' '${py}' '${path.join(xenTools, 'scripts/convert-legacy-stream')}' -i '${input}' -o '${out}' -w 32 -g pv` : undefined;
    if (xen) {
      const oursOut = out + '.ours';
      timed(`${cmds[1]!.cmd.replace(`'${out}'`, `'${oursOut}'`)}`);
      timed(xen);
      const same = spawnSync('cmp', ['-s', out, oursOut]).status === 0;
      process.stdout.write(`outputs byte-identical to Xen's: ${same ? 'yes' : 'NO'}\n`);
      fs.rmSync(oursOut, { force: true });
      cmds.push({ label: "Xen's convert-legacy-stream (py2.7)", cmd: xen });
    }
    const results = rounds(cmds, size, out);
    const cat = results[0]!.mbps;
    const catMedian = results[0]!.median;
    process.stdout.write(`${runs} rounds, the commands taking turns; MB/s and % of cat from each command's best round, then the medians\n`);
    process.stdout.write(
      `${'command'.padEnd(38)} ${'MB/s'.padStart(8)} ${'% of cat'.padStart(9)} ${'best s'.padStart(8)} ${'median s'.padStart(9)} ${'% (medians)'.padStart(12)} ${'CPU s'.padStart(7)} ${'peak RSS MiB'.padStart(13)}\n`,
    );
    for (const r of results)
      process.stdout.write(
        `${r.label.padEnd(38)} ${r.mbps.toFixed(0).padStart(8)} ${((100 * r.mbps) / cat).toFixed(0).padStart(8)}% ${r.secs.toFixed(2).padStart(8)} ${r.median.toFixed(2).padStart(9)} ${((100 * catMedian) / r.median).toFixed(0).padStart(11)}% ${r.cpu.toFixed(2).padStart(7)} ${r.rssMiB.toFixed(1).padStart(13)}\n`,
      );
    process.stdout.write(`load average at the end: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} on ${os.cpus().length} CPUs\n`);
    fs.rmSync(out, { force: true });
  }
  if (shim) fs.rmSync(shim, { recursive: true, force: true });
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
