/**
 * The dashboard's HTTP server: serves the built bundle and reverse-proxies the control plane
 * (/v1/*, /docs*, /healthz, /readyz, /metrics) and the suspend-store (/store/* -> /*), so the
 * browser talks to one origin. Proxying streams both ways (uploads, downloads, SSE) and never buffers.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { DIST } from './build';

export interface DashboardServerOptions {
  port: number;
  host?: string;
  controlPlaneUrl: string;
  storeUrl?: string;
  staticDir?: string;
}

export interface DashboardServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const CP_PATHS = [/^\/v1(\/|$)/, /^\/docs/, /^\/healthz$/, /^\/readyz$/, /^\/metrics$/, /^\/openapi/];

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
};

const HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

function proxy(req: http.IncomingMessage, res: http.ServerResponse, base: URL, pathAndQuery: string): void {
  const headers: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k) && v !== undefined) headers[k] = v;
  headers.host = base.host;
  headers['x-forwarded-host'] = req.headers.host ?? '';
  headers['x-forwarded-proto'] = 'http';
  const prefix = base.pathname.replace(/\/$/, '');
  const up = http.request(
    { protocol: base.protocol, hostname: base.hostname, port: base.port, method: req.method, path: prefix + pathAndQuery, headers },
    (ur) => {
      const out: http.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(ur.headers)) if (!HOP.has(k) && v !== undefined) out[k] = v;
      const sse = String(ur.headers['content-type'] ?? '').startsWith('text/event-stream');
      if (sse) {
        out['cache-control'] = 'no-cache, no-transform';
        out['x-accel-buffering'] = 'no';
      }
      res.writeHead(ur.statusCode ?? 502, ur.statusMessage, out);
      if (sse) {
        res.flushHeaders();
        res.socket?.setNoDelay(true);
      }
      ur.pipe(res);
      ur.on('error', () => res.destroy());
    },
  );
  up.on('error', (e) => {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ statusCode: 502, error: 'Bad Gateway', message: `upstream ${base.origin}: ${e.message}` }));
    } else res.destroy();
  });
  // The browser went away (closed tab, aborted SSE): drop the upstream request too.
  res.on('close', () => {
    if (!res.writableFinished) up.destroy();
  });
  req.pipe(up);
}

function serveStatic(req: http.IncomingMessage, res: http.ServerResponse, dir: string, pathname: string): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  let rel: string;
  try {
    rel = decodeURIComponent(pathname);
  } catch {
    res.writeHead(400).end();
    return;
  }
  let file = path.join(dir, path.normalize(rel).replace(/^(\.\.[/\\])+/, ''));
  if (!file.startsWith(dir)) {
    res.writeHead(403).end();
    return;
  }
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
    if (st.isDirectory()) {
      file = path.join(file, 'index.html');
      st = fs.statSync(file);
    }
  } catch {
    st = undefined;
  }
  // Client-side routes (and anything not a file) get the app itself.
  if (!st && !/\.[a-z0-9]+$/i.test(pathname)) {
    file = path.join(dir, 'index.html');
    try {
      st = fs.statSync(file);
    } catch {
      st = undefined;
    }
  }
  if (!st) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end(pathname.endsWith('.html') || pathname === '/' ? 'dashboard bundle not built: run `ferry up` (it builds it)\n' : 'not found\n');
    return;
  }
  const immutable = rel.startsWith('/assets/');
  res.writeHead(200, {
    'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
    'content-length': st.size,
    'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
    'x-content-type-options': 'nosniff',
    ...(file.endsWith('.html') ? { 'content-security-policy': "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; connect-src 'self'" } : {}),
  });
  if (req.method === 'HEAD') res.end();
  else fs.createReadStream(file).pipe(res);
}

export function startDashboardServer(opts: DashboardServerOptions): Promise<DashboardServer> {
  const cp = new URL(opts.controlPlaneUrl);
  const store = opts.storeUrl ? new URL(opts.storeUrl) : undefined;
  const dir = path.resolve(opts.staticDir ?? DIST);
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q < 0 ? url : url.slice(0, q);
    if (CP_PATHS.some((r) => r.test(pathname))) return proxy(req, res, cp, url);
    if (pathname === '/store' || pathname.startsWith('/store/')) {
      if (!store) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ statusCode: 404, error: 'Not Found', message: 'no suspend-store configured (FERRY_STORE_URL)' }));
        return;
      }
      return proxy(req, res, store, url.slice('/store'.length) || '/');
    }
    serveStatic(req, res, dir, pathname);
  });
  server.keepAliveTimeout = 65_000;
  // SSE responses live for hours.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => {
      const port = (server.address() as AddressInfo).port;
      const host = !opts.host || opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
      resolve({
        url: `http://${host}:${port}`,
        port,
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            server.closeAllConnections();
          }),
      });
    });
  });
}
