import { env, loadConfig, z } from '@ferry/config';
import { ROLES, type Role } from '@ferry/contracts';

const tokenList = z
  .string()
  .default('')
  .transform((s, ctx) => {
    const out: { role: Role; token: string }[] = [];
    for (const part of s.split(',').map((p) => p.trim()).filter(Boolean)) {
      const i = part.indexOf(':');
      const role = part.slice(0, i) as Role;
      const token = part.slice(i + 1);
      if (i < 1 || !ROLES.includes(role) || token.length < 8) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'must be a comma-separated list of role:token (role viewer|operator|admin, token >= 8 chars)' });
        return z.NEVER;
      }
      out.push({ role, token });
    }
    return out;
  });

export const configSchema = z.object({
  PORT: env.port(8080),
  HOST: z.string().default('0.0.0.0'),
  REDIS_URL: env.redisUrl().default('redis://127.0.0.1:6379'),
  FERRY_ADMIN_TOKEN: z.string().min(8, 'must be at least 8 characters'),
  /** Extra API tokens: "viewer:tok1,operator:tok2". */
  FERRY_API_TOKENS: tokenList,
  /** HMAC secret for agent tokens (default: FERRY_ADMIN_TOKEN). */
  FERRY_AGENT_SECRET: z.string().min(8).optional(),
  FERRY_STORE_URL: z.string().url().default('http://127.0.0.1:8090'),
  /** The control plane's own bearer token for the suspend-store (read + write: lists, downloads, deletes checkpoints). Default: FERRY_ADMIN_TOKEN. */
  FERRY_STORE_TOKEN: z.string().min(8, 'must be at least 8 characters').optional(),
  /** Prefix of every Redis key of the control plane's state. */
  FERRY_KEY_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only').default('ferry'),
  /** BullMQ prefix of the host queues (agents must use the same). */
  FERRY_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only').default('ferry'),
  /** api = HTTP only, worker = scheduler + campaign runner only, all = both. */
  FERRY_CONTROL_PLANE_ROLE: z.enum(['api', 'worker', 'all']).default('all'),
  FERRY_HEARTBEAT_INTERVAL_MS: env.int(2000, 50),
  /** An SSE stream gets a comment line this often, so that idle proxies keep it open. */
  FERRY_SSE_KEEPALIVE_MS: env.int(15_000, 10),
  FERRY_OFFLINE_AFTER_MS: env.int(10_000, 100),
  FERRY_STALL_AFTER_MS: env.int(60_000, 100),
  FERRY_RETRY_BACKOFF_MS: env.int(2000, 0),
  FERRY_MAX_ATTEMPTS: env.int(3, 1),
  FERRY_LIMIT_CLUSTER: env.int(8, 1),
  FERRY_LIMIT_PER_SOURCE: env.int(2, 1),
  FERRY_LIMIT_PER_TARGET: env.int(2, 1),
  FERRY_SCHEDULER_INTERVAL_MS: env.int(250, 10),
  FERRY_LEASE_MS: env.int(5000, 200),
  FERRY_DOWNTIME_TARGET_MS: env.int(300, 1),
  FERRY_MAX_ROUNDS: env.int(30, 1),
  FERRY_CONNECT_TIMEOUT_MS: env.int(30_000, 100),
  FERRY_UPGRADE_TIMEOUT_MS: env.int(600_000, 100),
  FERRY_EVENTS_MAXLEN: env.int(10_000, 100),
});

export type CpConfig = z.output<typeof configSchema> & { agentSecret: string; storeToken: string };

export function loadCpConfig(e: Record<string, string | undefined>): CpConfig {
  const c = loadConfig(configSchema, e);
  return { ...c, agentSecret: c.FERRY_AGENT_SECRET ?? c.FERRY_ADMIN_TOKEN, storeToken: c.FERRY_STORE_TOKEN ?? c.FERRY_ADMIN_TOKEN };
}

export const CP_CONFIG = Symbol('CP_CONFIG');
export const REDIS = Symbol('REDIS');
