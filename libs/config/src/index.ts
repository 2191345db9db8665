/**
 * Config validated at boot: `loadConfig(schema, env)` parses the environment with a zod schema and
 * fails fast with one ConfigError naming every bad variable and its rule.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

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
export { NO_INCREMENTAL_MARKING, SINGLE_THREADED_GC, dataPathNodeFlags, missingNodeFlags } from './gc';
