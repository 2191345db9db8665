/**
 * The data path's duplex stream for xl live migrations: `Upgrade: ferry-xl-migrate` on the stream
 * endpoint, over TLS (self-signed fixture) and plain HTTP, with the same refusals as the PUT.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { DataServer, UploadRefused, openDuplex } from '../src/data-path';
import { readExactly } from '../src/xl/migrate-protocol';

const FIX = path.resolve(__dirname, 'fixtures');
const tls = { cert: readFileSync(path.join(FIX, 'tls-cert.pem')), key: readFileSync(path.join(FIX, 'tls-key.pem')) };
let server: DataServer | null = null;

afterEach(async () => {
  await server?.close();
  server = null;
});

/** A data server whose stream handler accepts migration `m1` with token `t1` and echoes in upper case. */
async function serve(withTls: boolean): Promise<string> {
  server = new DataServer(
    (_id, _token, _attempt, _req, res) => void res.writeHead(500).end(),
    withTls ? tls : undefined,
    (id, token, attempt, socket: Duplex, refuse, accept) => {
      if (id !== 'm1') return refuse(404, `not expecting migration '${id}' (yet)`);
      if (token !== 't1') return refuse(401, 'bad stream token');
      if (attempt !== 2) return refuse(409, 'stale attempt');
      accept();
      socket.on('data', (c: Buffer) => socket.write(c.toString('latin1').toUpperCase()));
    },
  );
  const port = await server.listen('127.0.0.1', 0);
  return `${withTls ? 'https' : 'http'}://127.0.0.1:${port}/v1/streams`;
}

describe('duplex stream for xl live migrations', () => {
  for (const withTls of [true, false]) {
    it(`carries bytes both ways after the token is checked (${withTls ? 'TLS' : 'plain'})`, async () => {
      const base = await serve(withTls);
      const s = await openDuplex({ url: `${base}/m1`, token: 't1', attempt: 2, deadline: Date.now() + 5000, signal: new AbortController().signal, ...(withTls ? { ca: tls.cert } : {}) });
      s.write('xl migration receiver ready');
      expect((await readExactly(s, 27, 'echo')).toString()).toBe('XL MIGRATION RECEIVER READY');
      s.destroy();
    });
  }

  it('refuses a bad token at once, and gives up on a migration it does not expect by the deadline', async () => {
    const base = await serve(false);
    const signal = new AbortController().signal;
    const bad = await openDuplex({ url: `${base}/m1`, token: 'nope', attempt: 2, deadline: Date.now() + 60_000, signal }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(UploadRefused);
    expect((bad as UploadRefused).status).toBe(401);
    const t0 = Date.now();
    const unknown = await openDuplex({ url: `${base}/m2`, token: 't1', attempt: 2, deadline: Date.now() + 400, signal }).catch((e: unknown) => e);
    expect((unknown as UploadRefused).status).toBe(404);
    expect(Date.now() - t0).toBeLessThan(5000);
    const route = await openDuplex({ url: base.replace('/v1/streams', '/v1/other/m1'), token: 't1', attempt: 2, deadline: Date.now() + 400, signal }).catch((e: unknown) => e);
    expect((route as UploadRefused).status).toBe(404);
  });
});
