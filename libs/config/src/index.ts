/**
 * Config validated at boot: `loadConfig(schema, env)` parses the environment with a zod schema and
 * fails fast with one ConfigError naming every bad variable and its rule.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { parseRedisUrl } from './redis-url';

export { z };

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly issues: { variable: string; rule: string }[]) {
    super(`invalid configuration: ${issues.map((i) => `${i.variable}: ${i.rule}`).join('; ')}`);
  }
}

export function loadConfig<S extends z.ZodTypeAny>(schema: S, env: Record<string, string | undefined> = process.env): z.output<S> {
  const res = schema.safeParse(env);
  if (res.success) return res.data as z.output<S>;
  const issues = res.error.issues.map((i) => ({
    variable: i.path.join('.') || '(env)',
    rule: i.code === 'invalid_type' && i.received === 'undefined' ? 'is required' : i.message,
  }));
  throw new ConfigError(issues);
}

/** Common env helpers. */
export const env = {
  port: (def: number) => z.coerce.number().int().min(0).max(65535).default(def),
  int: (def: number, min = 0) => z.coerce.number().int().min(min).default(def),
  url: () => z.string().url(),
  /** REDIS_URL: one server or a sentinel set (see redis-url.ts); validated here, parsed again where a client is made. */
  redisUrl: () =>
    z.string().superRefine((s, ctx) => {
      try {
        parseRedisUrl(s);
      } catch (e) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
      }
    }),
  bool: (def: boolean) =>
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no'])
      .default(def ? 'true' : 'false')
      .transform((v) => v === 'true' || v === '1' || v === 'yes'),
};

/**
 * Agent tokens: `fa1.{hostId}.{hmac}` where hmac = base64url(HMAC-SHA256(secret, "ferry-agent:" + hostId)).
 * The control plane verifies them with its FERRY_AGENT_SECRET; `ferry up` mints them for its agents.
 */
export function deriveAgentToken(secret: string, hostId: string): string {
  const mac = createHmac('sha256', secret).update(`ferry-agent:${hostId}`).digest('base64url');
  return `fa1.${hostId}.${mac}`;
}

/** Returns the hostId the token is valid for, or null. */
export function verifyAgentToken(secret: string, token: string): string | null {
  const m = /^fa1\.([A-Za-z0-9_.-]{1,64})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m) return null;
  const hostId = m[1]!;
  const expect = Buffer.from(deriveAgentToken(secret, hostId));
  const got = Buffer.from(token);
  return expect.length === got.length && timingSafeEqual(expect, got) ? hostId : null;
}
export { parseRedisUrl, redisUrlWithCredentials, type RedisEndpoint, type RedisTarget } from './redis-url';
export { NO_INCREMENTAL_MARKING, SINGLE_THREADED_GC, dataPathNodeFlags, missingNodeFlags } from './gc';

/**
 * The variables that hold secrets, as every Ferry service reads them. `REDIS_URL` counts for the
 * password it may carry; the token lists (`role:token,...`, `token:scopes,...`) for each token.
 */
export const SECRET_VARIABLES = [
  'FERRY_ADMIN_TOKEN',
  'FERRY_AGENT_SECRET',
  'FERRY_AGENT_TOKEN',
  'FERRY_STORE_TOKEN',
  'FERRY_STORE_TOKENS',
  'FERRY_API_TOKENS',
  'S3_SECRET_ACCESS_KEY',
  'REDIS_URL',
] as const;

/** Example values shipped in manifests and docs ("replace-me", "change-me-admin-token", "<token>"...). */
const PLACEHOLDER = /replace[-_ ]?me|change[-_ ]?me|^(?:secret|password|token|example|placeholder|todo|x{3,}|<[^>]*>|\$\{[^}]*\})$/i;

function secretParts(name: string, value: string): string[] {
  if (name === 'REDIS_URL') {
    try {
      const t = parseRedisUrl(value);
      return [t.password, t.kind === 'sentinel' ? t.sentinelPassword : undefined].filter((p): p is string => !!p);
    } catch {
      return [];
    }
  }
  if (name === 'FERRY_API_TOKENS') return value.split(',').map((p) => p.slice(p.indexOf(':') + 1).trim());
  if (name === 'FERRY_STORE_TOKENS') return value.split(',').map((p) => (p.includes(':') ? p.slice(0, p.lastIndexOf(':')) : p).trim());
  return [value.trim()];
}

/**
 * Refuses the example values of deployment files at start, the same way in every service: throws a
 * ConfigError naming each variable that holds one. Checked before a service's own rules, so a
 * placeholder long enough to pass a length rule is still refused.
 */
export function refusePlaceholderSecrets(e: Record<string, string | undefined> = process.env): void {
  const issues = SECRET_VARIABLES.filter((name) => {
    const v = e[name];
    return v !== undefined && v !== '' && secretParts(name, v).some((p) => PLACEHOLDER.test(p));
  }).map((variable) => ({ variable, rule: 'is a placeholder, not a secret: set a random value (e.g. `openssl rand -base64 32`)' }));
  if (issues.length) throw new ConfigError(issues);
}
