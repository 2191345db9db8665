/**
 * Host agent configuration: environment variables, validated once at start (fails fast naming the
 * variable). See apps/host-agent/README.md for the list.
 */
import { ConfigError, env, loadConfig, z } from '@ferry/config';
import { HOST_ID_PATTERN, VM_ID_PATTERN, type Toolstack, type VmSpec } from '@ferry/contracts';

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, kb: 1000, m: 1024 ** 2, mib: 1024 ** 2, mb: 1e6, g: 1024 ** 3, gib: 1024 ** 3, gb: 1e9 };

/** "256M", "1G", "1048576", "8MiB" -> bytes. */
export function parseBytes(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = BYTE_UNITS[(m?.[2] ?? 'x').toLowerCase().replace(/\/s$/, '')];
  if (!m || unit === undefined) return undefined;
  return Math.floor(Number(m[1]) * unit);
}

/** "4.4-32" (legacy, Xen <= 4.5) / "4.17-64" (v2). An explicit ":legacy" / ":v2" suffix overrides the format. */
export function parseToolstack(text: string): Toolstack {
  const m = /^\s*(\d+)\.(\d+)-(32|64)(?::(legacy|v2))?\s*$/.exec(text);
  if (!m) throw new Error(`must look like 4.4-32 or 4.17-64 (Xen version, dom0 bitness), got '${text}'`);
  const major = Number(m[1]);
  const minor = Number(m[2]);
  const legacy = major < 4 || (major === 4 && minor <= 5);
  return {
    xenVersion: `${major}.${minor}`,
    bitness: Number(m[3]) as 32 | 64,
    streamFormat: (m[4] as 'legacy' | 'v2' | undefined) ?? (legacy ? 'legacy' : 'v2'),
  };
}

export interface SimGuestDef {
  spec: VmSpec;
  seed: number | null;
  dirtyRate: number | null;
}

/**
 * FERRY_SIM_GUESTS: comma-separated `id:type:memory:vcpus[:seed[:dirtyRate]]`, type pv32|pv64|hvm,
 * e.g. "vm1:pv64:256M:2,vm2:hvm:512M:1:1234:8M".
 */
export function parseGuests(text: string): SimGuestDef[] {
  const out: SimGuestDef[] = [];
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [id, type, mem, vcpus, seed, rate] = item.split(':');
    if (!id || !VM_ID_PATTERN.test(id)) throw new Error(`guest '${item}': bad id`);
    if (type !== 'pv32' && type !== 'pv64' && type !== 'hvm') throw new Error(`guest '${item}': type must be pv32, pv64 or hvm`);
    const bytes = parseBytes(mem ?? '');
    if (!bytes || bytes % (1024 * 1024) !== 0) throw new Error(`guest '${item}': memory must be whole MiB, like 256M or 1G`);
    const nv = Number(vcpus);
    if (!Number.isInteger(nv) || nv < 1 || nv > 128) throw new Error(`guest '${item}': vcpus must be 1..128`);
    const sd = seed === undefined || seed === '' ? null : Number(seed);
    if (sd !== null && (!Number.isInteger(sd) || sd < 0 || sd > 0xffffffff)) throw new Error(`guest '${item}': seed must be a 32-bit unsigned integer`);
    const dr = rate === undefined || rate === '' ? null : parseBytes(rate);
    if (dr === undefined) throw new Error(`guest '${item}': dirty rate must be bytes/s like 8M`);
    if (out.some((g) => g.spec.vmId === id)) throw new Error(`guest '${id}' listed twice`);
    out.push({
      spec: {
        vmId: id,
        name: id,
        type: type === 'hvm' ? 'hvm' : 'pv',
        ...(type === 'hvm' ? {} : { guestWidth: type === 'pv32' ? 32 : 64 }),
        memoryMiB: bytes / (1024 * 1024),
        vcpus: nv,
      } as VmSpec,
      seed: sd,
      dirtyRate: dr,
    });
  }
  return out;
}

const custom =
  <T>(parse: (s: string) => T) =>
  (s: string, ctx: z.RefinementCtx): T => {
    try {
      return parse(s);
    } catch (e) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
      return z.NEVER;
    }
  };

const bytesVar = (what: string) =>
  z.string().transform(
    custom((s) => {
      const n = parseBytes(s);
      if (n === undefined || n < 0) throw new Error(`must be a size like 8M or 1048576 (${what}), got '${s}'`);
      return n;
    }),
  );

const schema = z
  .object({
    FERRY_HOST_ID: z.string().regex(HOST_ID_PATTERN, 'must match [A-Za-z0-9_.-]{1,64}'),
    FERRY_CONTROL_PLANE_URL: env.url(),
    FERRY_AGENT_TOKEN: z.string().min(8, 'must be the agent token (fa1.{hostId}.{mac})'),
    REDIS_URL: env.redisUrl(),
    FERRY_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 of A-Za-z0-9_.-').optional(),
    FERRY_DRIVER: z.enum(['sim', 'xl']).default('sim'),
    /** The hostname the agent registers with. Default: the machine's for xl; the host id for sim hosts, which share one machine. */
    FERRY_HOSTNAME: z.string().regex(/^[A-Za-z0-9_.-]{1,253}$/, 'must be 1-253 of A-Za-z0-9_.-').optional(),
    FERRY_STATE_DIR: z.string().min(1).optional(),
    /** Data (stream) endpoint: where this agent listens, and the URL peers use to reach it. */
    FERRY_DATA_HOST: z.string().default('127.0.0.1'),
    FERRY_DATA_PORT: env.port(0),
    FERRY_DATA_URL: env.url().optional(),
    FERRY_TLS_CERT: z.string().optional(),
    FERRY_TLS_KEY: z.string().optional(),
    /** PEM of CAs to trust for peers' data endpoints (self-signed in tests). */
    FERRY_TLS_CA: z.string().optional(),
    FERRY_STORE_TOKEN: z.string().optional(),
    /** Cap on this host's outgoing streams together, bytes/s ("0" = none). */
    FERRY_HOST_BANDWIDTH: bytesVar('FERRY_HOST_BANDWIDTH').default('0'),
    FERRY_CONNECT_TIMEOUT_MS: env.int(30_000, 100),
    FERRY_HEARTBEAT_MS: env.int(0, 0),
    FERRY_SIM_TOOLSTACK: z.string().default('4.17-64').transform(custom(parseToolstack)),
    FERRY_SIM_GUESTS: z.string().default('').transform(custom(parseGuests)),
    FERRY_SIM_DIRTY_RATE: bytesVar('FERRY_SIM_DIRTY_RATE').default('4M'),
    /** Time the simulated toolstack takes to build a restored domain, unpause or destroy one. */
    FERRY_SIM_LATENCY_MS: env.int(0, 0),
    FERRY_SIM_CAPACITY: z
      .string()
      .default('65536:64:32')
      .transform(
        custom((s) => {
          const m = /^(\d+):(\d+):(\d+)$/.exec(s.trim());
          if (!m) throw new Error(`must be memoryMiB:vcpus:maxGuests, got '${s}'`);
          return { memoryMiB: Number(m[1]), vcpus: Number(m[2]), maxGuests: Number(m[3]) };
        }),
      ),
    FERRY_XL_PATH: z.string().default('xl'),
    FERRY_XL_WORK_DIR: z.string().optional(),
  })
  .superRefine((c, ctx) => {
    if (!!c.FERRY_TLS_CERT !== !!c.FERRY_TLS_KEY) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['FERRY_TLS_KEY'], message: 'FERRY_TLS_CERT and FERRY_TLS_KEY go together' });
    const tokenHost = /^fa1\.([^.]+)\./.exec(c.FERRY_AGENT_TOKEN)?.[1];
    if (tokenHost && tokenHost !== c.FERRY_HOST_ID) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['FERRY_AGENT_TOKEN'], message: `is for host '${tokenHost}', not FERRY_HOST_ID '${c.FERRY_HOST_ID}'` });
  });

export type AgentConfig = z.output<typeof schema> & { stateDir: string };

export function loadAgentConfig(e: Record<string, string | undefined> = process.env): AgentConfig {
  const c = loadConfig(schema, e);
  return { ...c, stateDir: c.FERRY_STATE_DIR ?? `.state/agents/${c.FERRY_HOST_ID}` };
}

/** What the agent registers as its hostname (see FERRY_HOSTNAME). */
export function agentHostname(c: Pick<AgentConfig, 'FERRY_HOSTNAME' | 'FERRY_DRIVER' | 'FERRY_HOST_ID'>, machine: string): string {
  return c.FERRY_HOSTNAME ?? (c.FERRY_DRIVER === 'sim' ? c.FERRY_HOST_ID : machine);
}

export { ConfigError };
