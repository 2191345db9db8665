/**
 * Where Redis is, as one variable (`REDIS_URL`), in either of two forms:
 *
 *   redis[s]://[user:password@]host:port[/db]                       one server (ioredis takes it as is)
 *   redis[s]+sentinel://[user:password@]host:port[,host:port...]/primary-name[/db][?sentinelUsername=..&sentinelPassword=..]
 *
 * The sentinel form lists the sentinels and names the monitored primary; ioredis asks the sentinels
 * where the primary is and follows a failover. The user and password are those of the data nodes
 * (an agent's own ACL user); the sentinels' own credentials, when they have any, go in the query.
 * `rediss+sentinel` uses TLS to the data nodes and the sentinels alike.
 */

export interface RedisEndpoint {
  host: string;
  port: number;
}

export type RedisTarget =
  | { kind: 'standalone'; url: string; password?: string }
  | {
      kind: 'sentinel';
      sentinels: RedisEndpoint[];
      name: string;
      db: number;
      tls: boolean;
      username?: string;
      password?: string;
      sentinelUsername?: string;
      sentinelPassword?: string;
    };

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$/;
const SENTINEL = /^(rediss?)\+sentinel:\/\/(?:([^@/]*)@)?([^/?#]+)\/([^/?#]+)(?:\/(\d+))?\/?(?:\?([^#]*))?$/;

/** Parses REDIS_URL; throws an Error whose message says what is wrong (no secret in it). */
export function parseRedisUrl(text: string): RedisTarget {
  const s = text.trim();
  if (/^rediss?:\/\//.test(s)) {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw new Error('must be a URL like redis://host:6379 or redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster');
    }
    if (!u.hostname) throw new Error('names no host');
    return { kind: 'standalone', url: s, ...(u.password ? { password: decodeURIComponent(u.password) } : {}) };
  }
  const m = SENTINEL.exec(s);
  if (!m) throw new Error('must be redis://host:port, rediss://host:port or redis+sentinel://host:port[,host:port...]/primary-name');
  const [, scheme, userinfo, hosts, name, db, query] = m;
  const sentinels = hosts!.split(',').map((h) => {
    const hm = HOST_PORT.exec(h.trim());
    const port = Number(hm?.[2] ?? 26379);
    if (!hm || port < 1 || port > 65535) throw new Error(`sentinel '${h}' must be host or host:port`);
    return { host: hm[1]!.replace(/^\[|\]$/g, ''), port };
  });
  const params = new URLSearchParams(query ?? '');
  for (const k of params.keys()) {
    if (k !== 'sentinelUsername' && k !== 'sentinelPassword') throw new Error(`unknown option '${k}' (sentinelUsername, sentinelPassword)`);
  }
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo) {
    const i = userinfo.indexOf(':');
    username = decodeURIComponent(i < 0 ? userinfo : userinfo.slice(0, i)) || undefined;
    password = i < 0 ? undefined : decodeURIComponent(userinfo.slice(i + 1)) || undefined;
  }
  const sentinelUsername = params.get('sentinelUsername') ?? undefined;
  const sentinelPassword = params.get('sentinelPassword') ?? undefined;
  return {
    kind: 'sentinel',
    sentinels,
    name: decodeURIComponent(name!),
    db: Number(db ?? 0),
    tls: scheme === 'rediss',
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    ...(sentinelUsername ? { sentinelUsername } : {}),
    ...(sentinelPassword ? { sentinelPassword } : {}),
  };
}

/** The URL with the given data-node credentials in it (an agent's ACL user), in either form. */
export function redisUrlWithCredentials(url: string, user: string, password: string): string {
  const t = parseRedisUrl(url);
  const auth = `${encodeURIComponent(user)}:${encodeURIComponent(password)}@`;
  if (t.kind === 'standalone') {
    const u = new URL(url.trim());
    u.username = encodeURIComponent(user);
    u.password = encodeURIComponent(password);
    return u.toString();
  }
  return url.trim().replace(/^(rediss?\+sentinel:\/\/)(?:[^@/]*@)?/, `$1${auth}`);
}
