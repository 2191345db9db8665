/**
 * The state folder of `ferry up` (FERRY_STATE_DIR, default .state at the repository root) and what
 * it holds:
 *
 *   admin-token    the admin token (0600), unless FERRY_ADMIN_TOKEN is set; the CLI reads it too
 *   redis-prefix   the prefix of every Redis key this fleet owns (control-plane state and host queues),
 *                  random on first start, so a fresh folder is a fresh fleet and two folders on one
 *                  Redis never see each other
 *   api-url        where the running fleet's API answers (the CLI's default --url)
 *   redis-password the password of our own redis-server's default user (0600), when we run one
 *   store/ agents/ redis/   the suspend-store's checkpoints, the sim hosts' guests, our own
 *                  redis-server's data
 *
 * `ferry up --reset` removes exactly these entries (never anything else a user may keep in the folder).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');

const ADMIN_TOKEN = 'admin-token';
const REDIS_PREFIX = 'redis-prefix';
const API_URL = 'api-url';
const REDIS_PASSWORD = 'redis-password';
const OWNED = [ADMIN_TOKEN, REDIS_PREFIX, API_URL, REDIS_PASSWORD, 'store', 'agents', 'redis'];

/** The prefix a folder made before prefixes were per folder used (and its Redis keys still carry). */
export const LEGACY_PREFIX = 'ferry';
const PREFIX_RE = /^[A-Za-z0-9_.-]{1,64}$/;

export function stateDirFrom(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.FERRY_STATE_DIR || path.join(REPO_ROOT, '.state'));
}

function readTrimmed(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

/** The admin token `ferry up` saved in this folder, or null. */
export function savedAdminToken(stateDir: string): string | null {
  const t = readTrimmed(path.join(stateDir, ADMIN_TOKEN));
  return t && t.length >= 16 ? t : null;
}

/** FERRY_ADMIN_TOKEN, else the saved one, else a new one saved (0600). */
export function adminToken(stateDir: string, env: NodeJS.ProcessEnv = process.env): string {
  if (env.FERRY_ADMIN_TOKEN) return env.FERRY_ADMIN_TOKEN;
  const saved = savedAdminToken(stateDir);
  if (saved) return saved;
  const t = `fa-${randomBytes(24).toString('base64url')}`;
  fs.writeFileSync(path.join(stateDir, ADMIN_TOKEN), `${t}\n`, { mode: 0o600 });
  return t;
}

/** The prefix saved in this folder, or null (no folder, or none saved yet). */
export function savedRedisPrefix(stateDir: string): string | null {
  const p = readTrimmed(path.join(stateDir, REDIS_PREFIX));
  return p && PREFIX_RE.test(p) ? p : null;
}

/**
 * The folder's Redis key prefix, made and saved on first start. A folder that already holds an
 * admin token but no prefix was made by an older `ferry up`, whose keys are under `ferry`: it keeps it.
 */
export function redisPrefix(stateDir: string): string {
  const saved = savedRedisPrefix(stateDir);
  if (saved) return saved;
  const p = fs.existsSync(path.join(stateDir, ADMIN_TOKEN)) ? LEGACY_PREFIX : `fu-${randomBytes(5).toString('hex')}`;
  fs.writeFileSync(path.join(stateDir, REDIS_PREFIX), `${p}\n`);
  return p;
}

/** The password of our own redis-server, made and saved (0600) on its first start. */
export function redisPassword(stateDir: string): string {
  const file = path.join(stateDir, REDIS_PASSWORD);
  const saved = readTrimmed(file);
  if (saved && saved.length >= 16) return saved;
  const p = randomBytes(24).toString('base64url');
  fs.writeFileSync(file, `${p}\n`, { mode: 0o600 });
  return p;
}

export function saveApiUrl(stateDir: string, url: string): void {
  fs.writeFileSync(path.join(stateDir, API_URL), `${url}\n`);
}

export function savedApiUrl(stateDir: string): string | null {
  return readTrimmed(path.join(stateDir, API_URL)) || null;
}

/** Removes what `ferry up` keeps in the folder (and the folder when nothing else is left); returns what it removed. */
export function removeOwnedState(stateDir: string): string[] {
  const removed: string[] = [];
  for (const name of OWNED) {
    const p = path.join(stateDir, name);
    if (!fs.existsSync(p)) continue;
    fs.rmSync(p, { recursive: true, force: true });
    removed.push(name);
  }
  try {
    fs.rmdirSync(stateDir);
  } catch {
    /* not empty (the user's own files) or not there */
  }
  return removed;
}
