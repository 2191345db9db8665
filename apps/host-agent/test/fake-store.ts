/**
 * Test-only suspend-store: the subset of apps/suspend-store's checkpoint API the agent uses
 * (PUT /v1/checkpoints/{id}?vm=..&format=v2 -> 201 {id, vm, size, sha256}; GET /v1/checkpoints/{id}),
 * bearer-token checked. Keeps most integration tests light; one test runs against the real apps/suspend-store
 * (spawnSuspendStore in coordinator.ts).
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export class FakeStore {
  readonly images = new Map<string, { vm: string; data: Buffer; sha256: string }>();
  private server: http.Server | null = null;
  url = '';
  constructor(readonly token = 'store-token-0123456789') {}

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${this.token}`) return void res.writeHead(401).end('{}');
      const u = new URL(req.url ?? '/', 'http://x');
      const m = /^\/v1\/checkpoints\/([^/]+)$/.exec(u.pathname);
      if (!m) return void res.writeHead(404).end('{}');
      const id = decodeURIComponent(m[1]!);
      if (req.method === 'PUT') {
        if (this.images.has(id)) return void res.writeHead(409).end('{}');
        const parts: Buffer[] = [];
        req.on('data', (c: Buffer) => parts.push(c));
        req.on('end', () => {
          const data = Buffer.concat(parts);
          const sha256 = createHash('sha256').update(data).digest('hex');
          this.images.set(id, { vm: u.searchParams.get('vm') ?? '', data, sha256 });
          res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ id, vm: u.searchParams.get('vm'), size: data.byteLength, sha256 }));
        });
        return;
      }
      if (req.method === 'GET') {
        const img = this.images.get(id);
        if (!img) return void res.writeHead(404).end('{}');
        if (u.searchParams.get('format') === 'legacy') return void res.writeHead(422).end('{"message":"fake store does not down-convert"}');
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': img.data.byteLength }).end(img.data);
        return;
      }
      res.writeHead(405).end('{}');
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
