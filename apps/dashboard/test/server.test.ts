import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDashboardServer, type DashboardServer } from '../src/server';

/** A fake control plane: JSON, an SSE stream that sends one event at a time, and echo of the request. */
function fakeUpstream(): Promise<{ url: string; server: http.Server; sseClosed: Promise<void> }> {
  let closed!: () => void;
  const sseClosed = new Promise<void>((r) => (closed = r));
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/v1/events')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`id: 1-0\nevent: hello\ndata: {"auth":"${req.headers.authorization}"}\n\n`);
      const t = setInterval(() => res.write('id: 2-0\nevent: tick\ndata: {}\n\n'), 50);
      req.on('close', () => {
        clearInterval(t);
        closed();
      });
      return;
    }
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, url: req.url, body, host: req.headers.host }));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, sseClosed })));
}

describe('dashboard server', () => {
  let cp: Awaited<ReturnType<typeof fakeUpstream>>;
  let store: Awaited<ReturnType<typeof fakeUpstream>>;
  let dash: DashboardServer;
  let dir: string;

  beforeAll(async () => {
    cp = await fakeUpstream();
    store = await fakeUpstream();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-dash-'));
    fs.mkdirSync(path.join(dir, 'assets'));
    fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><div id="app"></div>');
    fs.writeFileSync(path.join(dir, 'assets', 'a.js'), 'console.log(1)');
    dash = await startDashboardServer({ port: 0, host: '127.0.0.1', controlPlaneUrl: cp.url, storeUrl: store.url, staticDir: dir });
  });
  afterAll(async () => {
    await dash.close();
    cp.server.close();
    store.server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves the bundle, with the app for client-side routes and 404 for missing assets', async () => {
    const index = await fetch(`${dash.url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toContain('text/html');
    expect(await (await fetch(`${dash.url}/migrations`)).text()).toContain('id="app"');
    const js = await fetch(`${dash.url}/assets/a.js`);
    expect(js.headers.get('cache-control')).toContain('immutable');
    expect((await fetch(`${dash.url}/assets/nope.js`)).status).toBe(404);
    for (const raw of ['/../../../../etc/passwd', '/..%2f..%2f..%2f..%2fetc%2fpasswd', '/assets/..%2f..%2f..%2f..%2f..%2fetc/passwd']) {
      const body = await new Promise<string>((resolve, reject) =>
        http.get({ host: '127.0.0.1', port: dash.port, path: raw }, (res) => {
          let b = '';
          res.on('data', (d: Buffer) => (b += d.toString()));
          res.on('end', () => resolve(b));
        }).on('error', reject),
      );
      expect(body).not.toContain('root:');
    }
  });

  it('proxies the API with method, query and body, and the store under /store', async () => {
    const r = await fetch(`${dash.url}/v1/migrations?x=1`, { method: 'POST', body: '{"vm":"a"}', headers: { 'content-type': 'application/json' } });
    const j = (await r.json()) as { method: string; url: string; body: string; host: string };
    expect(j).toMatchObject({ method: 'POST', url: '/v1/migrations?x=1', body: '{"vm":"a"}' });
    expect(j.host).toBe(new URL(cp.url).host);
    const s = (await (await fetch(`${dash.url}/store/v1/checkpoints?limit=5`)).json()) as { url: string };
    expect(s.url).toBe('/v1/checkpoints?limit=5');
    expect(((await (await fetch(`${dash.url}/healthz`)).json()) as { url: string }).url).toBe('/healthz');
  });

  it('streams SSE without buffering and closes upstream when the browser goes away', async () => {
    const ctrl = new AbortController();
    const res = await fetch(`${dash.url}/v1/events`, { headers: { Authorization: 'Bearer tok' }, signal: ctrl.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes('event: tick')) text += new TextDecoder().decode((await reader.read()).value);
    expect(text).toContain('"auth":"Bearer tok"');
    ctrl.abort();
    await cp.sseClosed;
  });

  it('answers 502 with a JSON error when the control plane is down', async () => {
    const d = await startDashboardServer({ port: 0, host: '127.0.0.1', controlPlaneUrl: 'http://127.0.0.1:1', staticDir: dir });
    const r = await fetch(`${d.url}/v1/hosts`);
    expect(r.status).toBe(502);
    expect(((await r.json()) as { message: string }).message).toMatch(/upstream/);
    await d.close();
  });
});
