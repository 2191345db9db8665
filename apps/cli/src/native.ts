/**
 * The converters' one native helper (apps/cli/native/fdcopy.c): moves page data from the input
 * descriptor to the output descriptor inside the kernel (splice, through a private 1 MiB pipe
 * between two files), as `cat` does with copy_file_range, instead of reading it into a buffer and
 * writing it out again. Measured on 1 GiB to ext4, taking turns with `cat` over 7-9 rounds: a bare
 * Node loop over the helper 0.28-0.31 s against `cat`'s 0.26-0.29 s; the whole converter 0.33-0.42 s
 * with the helper and 0.37-0.55 s reading and writing through Node (FERRY_NATIVE=0).
 *
 * There is no build step: the first use compiles the C file with the host's compiler (`cc`, or
 * $CC) into a cache folder (bin/cache.js), keyed by the source file (path, size, mtime), the Node version and the architecture, and later
 * runs load it from there. Without a compiler, on other systems than Linux, or with
 * FERRY_NATIVE=0, loadFdCopy() returns null and the converters read and write in JavaScript (the
 * same bytes, slower).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
// The cache folders and key hash the TypeScript loader uses (plain JS, loaded before any TS).
import { cacheDirs, fnv } from '../bin/cache';

/** Bytes moved (0 at end of input), or -errno when nothing was moved. */
export type FdCopy = (inFd: number, outFd: number, n: number) => number;

const SOURCE = path.join(__dirname, '..', 'native', 'fdcopy.c');

let loaded: FdCopy | null | undefined;

function tryLoad(file: string): FdCopy | null {
  const m = { exports: {} as { copy?: FdCopy } };
  process.dlopen(m, file);
  return typeof m.exports.copy === 'function' ? m.exports.copy : null;
}

/** Compiles the helper into `dir` unless it is there; its path, or null (a note of why is left beside it). */
function build(dir: string, key: string): string | null {
  const out = path.join(dir, `fdcopy-${key}.node`);
  const failed = `${out}.failed`;
  if (fs.existsSync(out)) return out;
  // A failed build is not retried for a day (a compiler may be installed meanwhile).
  if (fs.existsSync(failed) && Date.now() - fs.statSync(failed).mtimeMs < 24 * 3600 * 1000) return null;
  // Loaded only when building: node:child_process costs a converter's start-up ~10 ms.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
  const tmp = `${out}.${process.pid}.tmp`;
  const cc = process.env.CC || 'cc';
  const r = spawnSync(cc, ['-O2', '-shared', '-fPIC', '-o', tmp, SOURCE], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) {
    try {
      fs.writeFileSync(failed, `${cc}: ${r.error?.message ?? r.stderr}`);
    } catch {
      /* a read-only cache: try again next time */
    }
    fs.rmSync(tmp, { force: true });
    return null;
  }
  fs.renameSync(tmp, out);
  return out;
}

/** The kernel-copy helper, built on first use; null when it cannot be had here. */
export function loadFdCopy(env: Record<string, string | undefined> = process.env): FdCopy | null {
  if (env.FERRY_NATIVE === '0' || process.platform !== 'linux') return null;
  if (loaded !== undefined) return loaded;
  loaded = null;
  let source: fs.Stats;
  try {
    source = fs.statSync(SOURCE);
  } catch {
    return null;
  }
  // Keyed like the TypeScript cache (register.js), by the file's path, size and mtime, not its
  // text: hashing 10 KB of C in a cold interpreter cost ~2 ms of every converter's start.
  const key = fnv(`${SOURCE}\0${source.size}\0${source.mtimeMs}\0${process.version}\0${process.arch}`);
  // Built where it can be: a folder that will not take it (noexec, read-only) passes to the next.
  for (const dir of cacheDirs('ferry-native')) {
    try {
      const file = build(dir, key);
      if (!file) continue;
      loaded = tryLoad(file);
      if (loaded) return loaded;
    } catch {
      /* this folder will not do; try the next */
    }
  }
  return loaded;
}
