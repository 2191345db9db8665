/** Finding a Redis for `ferry up`: REDIS_URL, else localhost:6379, else a redis-server of our own. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import IORedis from 'ioredis';

function encode(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/**
 * PINGs a Redis (AUTH first when the URL carries credentials). Resolves with null when it
 * answered PONG, else with the reason.
 */
export function pingRedis(url: string, timeoutMs = 1500): Promise<string | null> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return Promise.resolve(`not a URL: ${url}`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return Promise.resolve(`unsupported scheme ${u.protocol} (use redis://)`);
  if (u.protocol === 'rediss:') return Promise.resolve(null); // TLS: trust the operator, the services will tell.
  return new Promise((resolve) => {
    const sock = net.connect({ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) });
    let buf = '';
    let done = false;
    const finish = (r: string | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish(`no answer within ${timeoutMs} ms`), timeoutMs);
    sock.on('error', (e) => finish(e.message));
    sock.on('connect', () => {
      const cmds: string[][] = [];
      const user = decodeURIComponent(u.username);
      const pass = decodeURIComponent(u.password);
      if (pass) cmds.push(user ? ['AUTH', user, pass] : ['AUTH', pass]);
      cmds.push(['PING']);
      sock.write(cmds.map(encode).join(''));
    });
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      if (buf.includes('+PONG')) finish(null);
      else if (buf.startsWith('-')) finish(buf.split('\r\n')[0]!.slice(1));
    });
  });
}

/** Absolute path of an executable on PATH, or null. */
export function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  for (const p of [`/usr/bin/${cmd}`, `/usr/sbin/${cmd}`, `/usr/local/bin/${cmd}`]) {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

export function redisServerVersion(bin: string): string | null {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 5000 });
  return r.status === 0 ? r.stdout.trim() : null;
}

export const NO_REDIS_HELP = [
  'ferry up needs a Redis (the control plane keeps its state and the host queues there), and found none:',
  '  - REDIS_URL is not set,',
  '  - nothing answers on localhost:6379,',
  '  - and there is no redis-server on PATH to start one.',
  'Any one of these fixes it:',
  '  sudo apt-get install redis-server          # then run `npm start` again (ferry starts its own, data in .state/redis)',
  '  docker run -d -p 6379:6379 redis:7         # a Redis on localhost:6379',
  '  REDIS_URL=redis://host:6379 npm start      # a Redis you already have',
].join('\n');

/** `prefix` as a SCAN MATCH pattern that matches only itself. */
function globLiteral(prefix: string): string {
  return prefix.replace(/[\\*?[\]^-]/g, (c) => `\\${c}`);
}

/**
 * Deletes every key under `{prefix}:` for each prefix and the named ACL users (what one `ferry up`
 * state folder owns in a shared Redis). Returns how many of each went.
 */
export async function dropRedisState(url: string, prefixes: string[], aclUsers: string[]): Promise<{ keys: number; users: number }> {
  const redis = new IORedis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  redis.on('error', () => undefined); // the awaited commands report the failure
  try {
    await redis.connect();
    let keys = 0;
    for (const prefix of new Set(prefixes)) {
      for await (const batch of redis.scanStream({ match: `${globLiteral(prefix)}:*`, count: 1000 }) as AsyncIterable<string[]>) {
        if (batch.length) keys += await redis.unlink(...batch);
      }
    }
    let users = 0;
    if (aclUsers.length) users = Number(await redis.call('ACL', 'DELUSER', ...aclUsers));
    return { keys, users };
  } finally {
    redis.disconnect();
  }
}
