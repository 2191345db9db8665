/**
 * Following an entity over /v1/events (operator/common.ts) against a loopback HTTP server that
 * plays the control plane: an unknown id ends the follow at once with the API's error, and
 * reconnecting leaves no listener behind on the caller's AbortSignal.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { FerryApiError, FerryClient } from '@ferry/contracts';
import { events, follow, type Ctx } from '../src/commands/operator/common';

let server: http.Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  server = undefined;
});

/** A server whose /v1/events says hello then hangs up, and whose GET answers `get`. */
async function fakeControlPlane(get: (res: http.ServerResponse) => void): Promise<{ ctx: Ctx; connections: () => number }> {
  let n = 0;
  server = http.createServer((req, res) => {
    if (req.url?.startsWith('/v1/events')) {
      n++;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end('event: hello\ndata: {}\n\n');
      return;
    }
    get(res);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const ctx: Ctx = { verb: 'test', url, token: 't', tokenSource: '--token', json: true, client: new FerryClient({ baseUrl: url, token: 't' }), values: {}, positionals: [] };
  return { ctx, connections: () => n };
}

describe('following an entity', () => {
  it('an unknown id fails at once with the API error, without reconnecting', async () => {
    const { ctx, connections } = await fakeControlPlane((res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ statusCode: 404, code: 'NOT_FOUND', message: 'campaign nope not found' }));
    });
    const signal = new AbortController().signal;
    const t0 = Date.now();
    const err = await follow(ctx, 'campaign', 'nope', () => ctx.client.campaigns.get('nope'), () => false, () => undefined, signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FerryApiError);
    expect((err as FerryApiError).status).toBe(404);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(connections()).toBe(1);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });

  it('reconnecting 15 times adds no listener to the signal', async () => {
    const { ctx, connections } = await fakeControlPlane((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
    const c = new AbortController();
    let opens = 0;
    const counts: number[] = [];
    const it = events(ctx, 'campaign', 'c-1', async () => {
      opens++;
      counts.push(getEventListeners(c.signal, 'abort').length);
      if (connections() >= 15) c.abort();
    }, c.signal);
    for await (const _ of it) void _;
    expect(connections()).toBe(15);
    expect(opens).toBe(15);
    // one link to the live connection at most, whatever the number of reconnects
    expect(Math.max(...counts)).toBeLessThanOrEqual(1);
    expect(getEventListeners(c.signal, 'abort')).toHaveLength(0);
  });

  it("the typed client's watchMigration leaves no listener on the caller's signal", async () => {
    const { ctx } = await fakeControlPlane((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'm-1', phase: 'transferring' }));
    });
    const signal = new AbortController().signal;
    for (let i = 0; i < 3; i++) await ctx.client.watchMigration('m-1', () => undefined, signal);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });
});
