import * as path from 'node:path';
import { z } from 'zod';

/**
 * The suspend-store's settings, read from environment variables and validated once at start.
 * A bad or missing value stops the service with a message that names the variable.
 */

const BYTE_UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
};
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, '': 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "64GiB", "512M", "1000" -> bytes. */
export function parseBytes(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = BYTE_UNITS[(m?.[2] ?? '').toLowerCase()];
  if (!m || unit === undefined) return undefined;
  const n = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** "30d", "12h", "90m", "45s", "250ms", "60" (seconds) -> milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*$/.exec(text);
  const unit = DURATION_UNITS[m?.[2] ?? 'x'];
  if (!m || unit === undefined) return undefined;
  return Math.round(Number(m[1]) * unit);
}

const bytes = (what: string) =>
  z.string().transform((s, ctx) => {
    const n = parseBytes(s);
    if (n === undefined || n <= 0) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be a positive size like 64GiB or 1048576 (${what}), got '${s}'` });
      return z.NEVER;
    }
    return n;
  });
const duration = (what: string) =>
  z.string().transform((s, ctx) => {
    const n = parseDuration(s);
    if (n === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be a duration like 30d, 12h, 10m, 45s (${what}), got '${s}'` });
      return z.NEVER;
    }
    return n;
  });
const bool = z
  .string()
  .transform((s, ctx) => {
    const v = s.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be true or false, got '${s}'` });
    return z.NEVER;
  });
const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\s*\d+\s*$/, `must be a whole number from ${min} to ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const timeoutMs = z.number().min(100, 'must be at least 100ms').max(86_400_000, 'must be at most 1d');

export const SCOPES = ['read', 'write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface StaticToken {
  token: string;
  scopes: Scope[];
}

const staticTokens = z.string().transform((s, ctx) => {
  const out: StaticToken[] = [];
  for (const item of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const i = item.lastIndexOf(':');
    const token = i > 0 ? item.slice(0, i) : '';
    const scopes = (i > 0 ? item.slice(i + 1) : '').split('+').filter(Boolean);
    if (token.length < 16 || scopes.length === 0 || scopes.some((x) => !SCOPES.includes(x as Scope))) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: 'must be a comma-separated list of TOKEN:SCOPE[+SCOPE] (token at least 16 characters, scopes read|write|admin)',
      });
      return z.NEVER;
    }
    out.push({ token, scopes: scopes as Scope[] });
  }
  return out;
});

/** The repository root (apps/suspend-store/src -> ../../..), home of the `.state` folder. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

const EnvSchema = z.object({
  PORT: int(0, 65535).default('8083'),
  HOST: z.string().min(1).default('0.0.0.0'),
  FERRY_STORE_BACKEND: z.enum(['fs', 's3']).optional(),
  FERRY_STORE_DIR: z.string().min(1).optional(),
  S3_ENDPOINT: z.string().url('must be a URL like http://127.0.0.1:9000').optional(),
  S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be a valid bucket name (3-63 of a-z 0-9 . -)')
    .optional(),
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  S3_FORCE_PATH_STYLE: bool.default('false'),
  S3_PART_SIZE: bytes('multipart part size, at least 5MiB').default('16MiB').pipe(z.number().min(5 * 1024 * 1024, 'must be at least 5MiB')),
  S3_QUEUE_SIZE: int(1, 64).default('4'),
  FERRY_ADMIN_TOKEN: z
    .string({ required_error: 'is required: the first admin bearer token (at least 16 characters)' })
    .min(16, 'must be at least 16 characters'),
  FERRY_STORE_TOKENS: staticTokens.optional(),
  FERRY_STORE_MAX_UPLOAD: bytes('largest accepted upload').default('256GiB'),
  FERRY_RETAIN_LAST: int(1, 1_000_000).optional(),
  FERRY_RETAIN_MAX_AGE: duration('largest checkpoint age').optional(),
  FERRY_RETENTION_INTERVAL: duration('how often retention and clean-up run').default('10m'),
  FERRY_STALE_UPLOAD_AGE: duration('age after which leftovers of interrupted uploads are removed').default('1h'),
  FERRY_STORE_IDLE_TIMEOUT: duration('how long a connection may stay silent').default('60s').pipe(timeoutMs),
  FERRY_STORE_HEADERS_TIMEOUT: duration('how long a client may take to send its request headers').default('20s').pipe(timeoutMs),
});

export interface StoreConfig {
  port: number;
  host: string;
  backend:
    | { kind: 'fs'; dir: string }
    | {
        kind: 's3';
        endpoint?: string;
        bucket: string;
        region: string;
        credentials?: { accessKeyId: string; secretAccessKey: string };
        forcePathStyle: boolean;
        partSize: number;
        queueSize: number;
      };
  adminToken: string;
  staticTokens: StaticToken[];
  maxUploadBytes: number;
  retention: { keepLast?: number; maxAgeMs?: number; intervalMs: number; staleUploadAgeMs: number };
  /**
   * idleMs: a connection with no byte in either direction for this long is closed (a stalled upload
   * then fails and frees its id); headersMs: the whole request head must arrive within this.
   */
  timeouts: { idleMs: number; headersMs: number };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Reads and validates the environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): StoreConfig {
  const raw: Record<string, string> = {};
  for (const key of Object.keys(EnvSchema.shape)) {
    const v = env[key];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  const parsed = EnvSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? 'environment');
    const msg = issue.code === 'invalid_type' && issue.received === 'undefined' ? issue.message.startsWith('is required') ? issue.message : 'is required' : issue.message;
    throw new ConfigError(`suspend-store: ${name} ${msg}`);
  }
  const e = parsed.data;
  const kind = e.FERRY_STORE_BACKEND ?? (e.S3_BUCKET ? 's3' : 'fs');
  let backend: StoreConfig['backend'];
  if (kind === 's3') {
    if (!e.S3_BUCKET) throw new ConfigError('suspend-store: S3_BUCKET is required when FERRY_STORE_BACKEND=s3');
    if (!!e.S3_ACCESS_KEY_ID !== !!e.S3_SECRET_ACCESS_KEY) {
      const missing = e.S3_ACCESS_KEY_ID ? 'S3_SECRET_ACCESS_KEY' : 'S3_ACCESS_KEY_ID';
      throw new ConfigError(`suspend-store: ${missing} is required when the other S3 key is set`);
    }
    backend = {
      kind: 's3',
      ...(e.S3_ENDPOINT ? { endpoint: e.S3_ENDPOINT } : {}),
      bucket: e.S3_BUCKET,
      region: e.S3_REGION,
      ...(e.S3_ACCESS_KEY_ID && e.S3_SECRET_ACCESS_KEY
        ? { credentials: { accessKeyId: e.S3_ACCESS_KEY_ID, secretAccessKey: e.S3_SECRET_ACCESS_KEY } }
        : {}),
      forcePathStyle: e.S3_FORCE_PATH_STYLE,
      partSize: e.S3_PART_SIZE,
      queueSize: e.S3_QUEUE_SIZE,
    };
  } else {
    backend = { kind: 'fs', dir: path.resolve(e.FERRY_STORE_DIR ?? path.join(REPO_ROOT, '.state', 'store')) };
  }
  return {
    port: e.PORT,
    host: e.HOST,
    backend,
    adminToken: e.FERRY_ADMIN_TOKEN,
    staticTokens: e.FERRY_STORE_TOKENS ?? [],
    maxUploadBytes: e.FERRY_STORE_MAX_UPLOAD,
    retention: {
      ...(e.FERRY_RETAIN_LAST !== undefined ? { keepLast: e.FERRY_RETAIN_LAST } : {}),
      ...(e.FERRY_RETAIN_MAX_AGE !== undefined ? { maxAgeMs: e.FERRY_RETAIN_MAX_AGE } : {}),
      intervalMs: e.FERRY_RETENTION_INTERVAL,
      staleUploadAgeMs: e.FERRY_STALE_UPLOAD_AGE,
    },
    timeouts: { idleMs: e.FERRY_STORE_IDLE_TIMEOUT, headersMs: e.FERRY_STORE_HEADERS_TIMEOUT },
  };
}
