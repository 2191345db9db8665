/**
 * Builds the browser bundle with Vite when it is missing or older than its sources
 * (the web app, and the two libraries it bundles). Vite runs as a child process so the
 * ESM-only bundler never loads into the CommonJS service.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const DASHBOARD_ROOT = path.resolve(__dirname, '..');
export const REPO_ROOT = path.resolve(DASHBOARD_ROOT, '..', '..');
export const DIST = path.join(DASHBOARD_ROOT, 'dist');

const SOURCES = [path.join(DASHBOARD_ROOT, 'src', 'web'), path.join(DASHBOARD_ROOT, 'vite.config.mjs'), path.join(REPO_ROOT, 'libs', 'stream-codec', 'src'), path.join(REPO_ROOT, 'libs', 'contracts', 'src')];

function newest(p: string): number {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let m = st.mtimeMs;
  for (const e of fs.readdirSync(p)) {
    if (e.endsWith('.test.ts')) continue;
    m = Math.max(m, newest(path.join(p, e)));
  }
  return m;
}

/** True when dist/index.html is missing or older than any source. */
export function isStale(dist = DIST): boolean {
  let built: number;
  try {
    built = fs.statSync(path.join(dist, 'index.html')).mtimeMs;
  } catch {
    return true;
  }
  return SOURCES.some((s) => newest(s) > built);
}

/**
 * Builds into a fresh folder and swaps it in, so a server (or a second build) never sees a half-written bundle.
 * Resolves with the time it took, or 0 when the bundle was already current.
 */
export async function ensureBuilt(opts: { force?: boolean; log?: (line: string) => void } = {}): Promise<number> {
  if (!opts.force && !isStale()) return 0;
  const t0 = Date.now();
  const tmp = `${DIST}.tmp-${process.pid}-${Date.now()}`;
  const vite = path.join(path.dirname(require.resolve('vite/package.json', { paths: [REPO_ROOT] })), 'bin', 'vite.js');
  opts.log?.('building the dashboard bundle (vite)…');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [vite, 'build', '--config', path.join(DASHBOARD_ROOT, 'vite.config.mjs')], {
      cwd: REPO_ROOT,
      env: { ...process.env, FERRY_DASHBOARD_OUT: tmp, NODE_OPTIONS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`vite build failed (exit ${code}):\n${out.slice(-4000)}`))));
  });
  // Swap: dist -> dist.old, tmp -> dist (a concurrent build may have won: then keep theirs).
  const old = `${DIST}.old-${process.pid}-${Date.now()}`;
  try {
    fs.renameSync(DIST, old);
  } catch {
    /* no previous build */
  }
  try {
    fs.renameSync(tmp, DIST);
  } catch {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  fs.rmSync(old, { recursive: true, force: true });
  return Date.now() - t0;
}
