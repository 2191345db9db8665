/**
 * Agent <-> agent data path: the target serves `PUT /v1/streams/{migrationId}` (AGENT_DATA_API),
 * the source uploads the v2 stream to it. HTTP/1.1 chunked, `Expect: 100-continue` so a target
 * that is not ready yet (404) or refuses (401/409) answers before any byte of the stream is made;
 * TCP flow control gives backpressure end to end; the sha256 of the stream (and the sim memory
 * digest) travel as trailers, the target confirms them in its JSON answer. TLS when configured.
 *
 * A live migration between `xl` hosts needs both directions (xl's ready/go handshake): the source
 * sends `GET /v1/streams/{migrationId}` with `Upgrade: ferry-xl-migrate` and the same token and
 * attempt, and once those are checked the connection becomes a raw duplex byte stream (101). One
 * connection keeps auth, TLS and the one-time token exactly as for the PUT, and TCP's flow control
 * paces xl's pre-copy end to end; a second channel for the answers would need its own auth and
 * could fail apart from the stream, which the handshake cannot tell from a refusal.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { STREAM_ATTEMPT_HEADER, XL_MIGRATE_UPGRADE } from '@ferry/contracts';

export const SHA256_TRAILER = 'x-ferry-sha256';
export const DIGEST_TRAILER = 'x-ferry-memory-digest';

export interface TlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
}

export type StreamHandler = (migrationId: string, token: string, attempt: number | null, req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean) => void;

export type DuplexHandler = (migrationId: string, token: string, attempt: number | null, socket: Duplex, refuse: (status: number, message: string) => void, accept: () => void) => void;

export function json(res: http.ServerResponse, status: number, body: unknown, close = false): void {
  if (res.headersSent || res.writableEnded) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(close ? { connection: 'close' } : {}) });
  res.end(text);
}

/** One percent-encoded path segment, or null when its encoding is malformed (not UTF-8, a stray `%`). */
export function decodePathSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

/** The agent's data endpoint. Thin: routing and auth header parsing; the receiver service does the rest. */
export class DataServer {
  private server: http.Server | null = null;
  /** Upgraded connections: the HTTP server no longer tracks them, close() ends them itself. */
  private readonly duplexes = new Set<Socket>();
  constructor(
    private readonly onStream: StreamHandler,
    private readonly tls?: TlsOptions,
    private readonly onDuplex?: DuplexHandler,
  ) {}

  async listen(host: string, port: number): Promise<number> {
    const handle = (expectContinue: boolean) => (req: http.IncomingMessage, res: http.ServerResponse) => this.route(req, res, expectContinue);
    const server = this.tls ? https.createServer({ cert: this.tls.cert, key: this.tls.key }) : http.createServer();
    server.on('request', handle(false));
    server.on('checkContinue', handle(true));
    // Node closes a CONNECT request's connection without a word unless someone listens: refuse it.
    server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
      socket.on('error', () => socket.destroy());
      socket.end('HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
    server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => this.upgrade(req, socket, head));
    server.requestTimeout = 0; // streams of any size at any (capped) rate
    server.keepAliveTimeout = 5000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  /**
   * Total over its input: whatever the request line and headers hold, the answer is a status (4xx for
   * anything malformed) and the process goes on. A handler that throws all the same costs that one
   * request a 500, never the agent.
   */
  private route(req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean): void {
    try {
      this.dispatch(req, res, expectContinue);
    } catch (e) {
      json(res, 500, { statusCode: 500, error: 'Internal Server Error', message: e instanceof Error ? e.message.split('\n')[0] : String(e) }, true);
      req.resume();
    }
  }

  private dispatch(req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean): void {
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const pathname = q < 0 ? target : target.slice(0, q);
    if (req.method === 'GET' && pathname === '/healthz') return json(res, 200, { ok: true });
    const m = /^\/v1\/streams\/([^/]+)$/.exec(pathname);
    if (!m) return json(res, 404, { statusCode: 404, error: 'Not Found', message: 'no such route' }, true);
    if (req.method !== 'PUT') return json(res, 405, { statusCode: 405, error: 'Method Not Allowed', message: 'PUT only' }, true);
    const migrationId = decodePathSegment(m[1]!);
    if (migrationId === null) return json(res, 400, { statusCode: 400, error: 'Bad Request', message: 'malformed percent-encoding in the migration id' }, true);
    const auth = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!auth) return json(res, 401, { statusCode: 401, error: 'Unauthorized', message: 'missing bearer stream token' }, true);
    const a = req.headers[STREAM_ATTEMPT_HEADER];
    const attempt = typeof a === 'string' && /^\d{1,9}$/.test(a) ? Number(a) : null;
    this.onStream(migrationId, auth[1]!, attempt, req, res, expectContinue);
  }

  /** `Upgrade: ferry-xl-migrate` on the stream route: auth as for the PUT, then a raw duplex stream. */
  private upgrade(req: http.IncomingMessage, socket: Socket, head: Buffer): void {
    const refuse = (status: number, message: string): void => {
      const body = JSON.stringify({ statusCode: status, error: http.STATUS_CODES[status] ?? 'Error', message });
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    };
    socket.on('error', () => undefined); // the handler owning the stream listens too
    this.duplexes.add(socket);
    socket.once('close', () => this.duplexes.delete(socket));
    try {
      const pathname = (req.url ?? '/').split('?')[0]!;
      const m = /^\/v1\/streams\/([^/]+)$/.exec(pathname);
      if (!m) return refuse(404, 'no such route');
      if (req.method !== 'GET' || (req.headers.upgrade ?? '').toLowerCase() !== XL_MIGRATE_UPGRADE || !this.onDuplex) return refuse(400, `only Upgrade: ${XL_MIGRATE_UPGRADE} is served here`);
      const migrationId = decodePathSegment(m[1]!);
      if (migrationId === null) return refuse(400, 'malformed percent-encoding in the migration id');
      const auth = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
      if (!auth) return refuse(401, 'missing bearer stream token');
      const a = req.headers[STREAM_ATTEMPT_HEADER];
      const attempt = typeof a === 'string' && /^\d{1,9}$/.test(a) ? Number(a) : null;
      if (head.length) socket.unshift(head);
      const accept = (): void => void socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${XL_MIGRATE_UPGRADE}\r\n\r\n`);
      this.onDuplex(migrationId, auth[1]!, attempt, socket, refuse, accept);
    } catch (e) {
      refuse(500, e instanceof Error ? e.message.split('\n')[0]! : String(e));
    }
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    for (const d of this.duplexes) d.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

export class UploadRefused extends Error {
  override name = 'UploadRefused';
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`target answered ${status}: ${body.slice(0, 300)}`);
  }
}

/** An upload in progress: opened (the target said 100 Continue), then written with backpressure. */
export class StreamUpload {
  private failure: Error | null = null;
  private waiters: (() => void)[] = [];
  private response: Promise<{ status: number; body: string }>;
  /** True once the whole stream and its trailers were handed to the socket. */
  ended = false;

  private constructor(private readonly req: http.ClientRequest) {
    req.on('error', (e) => this.fail(e));
    this.response = new Promise((resolve, reject) => {
      req.on('response', (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8') }));
        res.on('error', reject);
        // an answer before we finished means the target stopped reading
        if (!this.ended) this.fail(new UploadRefused(res.statusCode ?? 0, 'answered before the stream ended'));
      });
      req.on('error', reject);
    });
    this.response.catch(() => undefined);
    req.on('drain', () => this.wake());
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.wake();
  }
  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /**
   * Opens the PUT and waits for `100 Continue`. A 404/409 (target not ready yet) is retried until
   * `deadline`; any other answer fails.
   */
  static async open(opts: { url: string; token: string; attempt: number; deadline: number; ca?: string | Buffer; signal: AbortSignal }): Promise<StreamUpload> {
    let delay = 50;
    for (;;) {
      opts.signal.throwIfAborted();
      const r = await StreamUpload.tryOpen(opts);
      if (r instanceof StreamUpload) return r;
      if ((r.status !== 404 && r.status !== 409 && r.status !== 0) || Date.now() + delay > opts.deadline) throw r;
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 500);
    }
  }

  private static tryOpen(opts: { url: string; token: string; attempt: number; ca?: string | Buffer; signal: AbortSignal }): Promise<StreamUpload | UploadRefused> {
    const u = new URL(opts.url);
    const mod = u.protocol === 'https:' ? https : http;
    return new Promise((resolve) => {
      const req = mod.request(u, {
        method: 'PUT',
        headers: {
          authorization: `Bearer ${opts.token}`,
          'content-type': 'application/octet-stream',
          expect: '100-continue',
          trailer: `${SHA256_TRAILER}, ${DIGEST_TRAILER}`,
          [STREAM_ATTEMPT_HEADER]: String(opts.attempt),
        },
        agent: false,
        ...(opts.ca ? { ca: opts.ca } : {}),
      });
      let settled = false;
      const done = (v: StreamUpload | UploadRefused): void => {
        if (settled) return;
        settled = true;
        resolve(v);
      };
      req.once('continue', () => done(new StreamUpload(req)));
      req.once('response', (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => done(new UploadRefused(res.statusCode ?? 0, Buffer.concat(parts).toString('utf8'))));
      });
      req.once('error', (e) => done(new UploadRefused(0, e.message)));
      req.flushHeaders();
    });
  }

  /**
   * Writes one chunk; resolves when the chunk was handed to the kernel (so the caller may reuse its
   * memory), which is also the backpressure.
   */
  async write(chunk: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure;
    await new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      this.req.write(chunk, () => this.wake());
    });
    if (this.failure) throw this.failure;
  }

  async end(trailers: Record<string, string>): Promise<void> {
    if (this.failure) throw this.failure;
    this.req.addTrailers(trailers);
    this.ended = true;
    await new Promise<void>((resolve) => this.req.end(resolve));
  }

  /** The target's answer (after it decided commit/discard). */
  async answer(): Promise<{ status: number; body: string }> {
    return this.response;
  }

  abort(reason: Error): void {
    this.fail(reason);
    this.req.destroy(reason);
  }
}

/**
 * Opens the duplex stream of an xl live migration (the `Upgrade` above). A 404/409 (target not ready
 * yet) is retried until `deadline`; any other answer fails with UploadRefused.
 */
export async function openDuplex(opts: { url: string; token: string; attempt: number; deadline: number; ca?: string | Buffer; signal: AbortSignal }): Promise<Duplex> {
  let delay = 50;
  for (;;) {
    opts.signal.throwIfAborted();
    const r = await tryOpenDuplex(opts);
    if (!(r instanceof UploadRefused)) return r;
    if ((r.status !== 404 && r.status !== 409 && r.status !== 0) || Date.now() + delay > opts.deadline) throw r;
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 500);
  }
}

function tryOpenDuplex(opts: { url: string; token: string; attempt: number; ca?: string | Buffer; signal: AbortSignal }): Promise<Duplex | UploadRefused> {
  const u = new URL(opts.url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    const req = mod.request(u, {
      method: 'GET',
      headers: { connection: 'Upgrade', upgrade: XL_MIGRATE_UPGRADE, authorization: `Bearer ${opts.token}`, [STREAM_ATTEMPT_HEADER]: String(opts.attempt) },
      agent: false,
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
    req.once('upgrade', (_res, socket, head) => {
      if (head.length) socket.unshift(head);
      resolve(socket);
    });
    req.once('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve(new UploadRefused(res.statusCode ?? 0, Buffer.concat(parts).toString('utf8'))));
      res.on('error', (e) => resolve(new UploadRefused(0, e.message)));
    });
    req.once('error', (e) => resolve(new UploadRefused(0, e.message)));
    req.end();
  });
}
