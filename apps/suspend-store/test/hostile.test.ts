/**
 * Clients that misbehave on purpose, against a real store (local folder backend): a stalled upload,
 * large or oversized JSON before and after auth, a client that half-closes after the whole body.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config';
import { ADMIN, startStore, tempDir, v2Image, type TestStore } from './helpers';

/**
 * Sends `head` (and `body`), optionally half-closes, and collects whatever comes back until the server
 * closes (or, with `untilAnswer`, until one whole response with a Content-Length has come).
 */
function raw(url: string, head: string, body: Buffer = Buffer.alloc(0), opts: { halfClose?: boolean; timeoutMs?: number; untilAnswer?: boolean } = {}): Promise<{ text: string; closedAfterMs: number }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const s = net.connect({ host: u.hostname, port: Number(u.port), allowHalfOpen: true });
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close within ${opts.timeoutMs ?? 10_000} ms; got: ${text.slice(0, 200)}`));
    }, opts.timeoutMs ?? 10_000);
    s.on('connect', () => {
      s.write(head);
      if (body.length) s.write(body);
      if (opts.halfClose) s.end();
    });
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: (\d+)\r\n/i.exec(text)?.[1];
      if (opts.untilAnswer && end >= 0 && length !== undefined && text.length >= end + 4 + Number(length)) s.destroy();
    });
    s.on('error', () => undefined);
    s.on('end', () => s.destroy()); // the server closed its side: done (allowHalfOpen keeps ours open otherwise)
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closedAfterMs: Date.now() - t0 });
    });
  });
}

const status = (text: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

describe('suspend-store against hostile clients', () => {
  const dir = tempDir('hostile');
  let store: TestStore;
  let img: Buffer;

  beforeAll(async () => {
    store = await startStore({ FERRY_STORE_BACKEND: 'fs', FERRY_STORE_DIR: dir, FERRY_STORE_IDLE_TIMEOUT: '1s', FERRY_STORE_HEADERS_TIMEOUT: '2s' });
    img = await v2Image({ pages: 64 });
  });
  afterAll(async () => {
    await store?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a stalled upload is cut after the idle timeout, leaves no temporary file and frees its id', async () => {
    const head = `PUT /v1/checkpoints/stall-1?vm=vm-stall HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Length: ${img.length}\r\n\r\n`;
    const r = await raw(store.url, head, img.subarray(0, img.length >> 1), { timeoutMs: 8_000 });
    expect(r.closedAfterMs).toBeLessThan(6_000);
    // the upload's temporary file goes with it
    for (let i = 0; i < 50 && fs.readdirSync(path.join(dir, 'tmp')).length; i++) await sleep(100);
    expect(fs.readdirSync(path.join(dir, 'tmp'))).toEqual([]);
    const again = await store.call('PUT', '/v1/checkpoints/stall-1?vm=vm-stall', { body: img });
    expect(again.status, await again.clone().text()).toBe(201);
  }, 30_000);

  it('a client that stops half-way through its headers is cut too', async () => {
    const r = await raw(store.url, `GET /v1/checkpoints HTTP/1.1\r\nHost: x\r\nAuthor`, undefined, { timeoutMs: 8_000 });
    expect(r.closedAfterMs).toBeLessThan(6_000);
  }, 30_000);

  it('JSON bodies: 401 before any parsing without a token, 413 past the limit with one, never 500', async () => {
    const big = JSON.stringify({ name: 'x'.repeat(20_000), scopes: ['read'] });
    const noAuth = await store.call('POST', '/v1/tokens', { token: null, body: big, headers: { 'content-type': 'application/json' } });
    expect(noAuth.status).toBe(401);
    const bad = await store.call('POST', '/v1/tokens', { token: 'not-a-token-at-all', body: '{"nope', headers: { 'content-type': 'application/json' } });
    expect(bad.status).toBe(401);
    const tooBig = await store.call('POST', '/v1/tokens', { body: big, headers: { 'content-type': 'application/json' } });
    expect(tooBig.status).toBe(413);
    expect(((await tooBig.json()) as { reason: string }).reason).toBe('too_large');
    const malformed = await store.call('POST', '/v1/tokens', { body: '{"name":', headers: { 'content-type': 'application/json' } });
    expect(malformed.status).toBe(400);
    // a lying Content-Length of 50 MB is refused from the header, without reading a byte of it
    const huge = await raw(store.url, `POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{`, undefined, { timeoutMs: 8_000, untilAnswer: true });
    expect(status(huge.text)).toBe(413);
    const unauthHuge = await raw(store.url, `POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{`, undefined, { timeoutMs: 8_000, untilAnswer: true });
    expect(status(unauthHuge.text)).toBe(401);
    const ok = await store.call('POST', '/v1/tokens', { body: JSON.stringify({ name: 'ok', scopes: ['read'] }), headers: { 'content-type': 'application/json' } });
    expect(ok.status).toBe(201);
  }, 30_000);

  it('answers a client that half-closes after the whole body', async () => {
    const head = `PUT /v1/checkpoints/half-1?vm=vm-half HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Length: ${img.length}\r\n\r\n`;
    const r = await raw(store.url, head, img, { halfClose: true, timeoutMs: 8_000 });
    expect(status(r.text), r.text.slice(0, 300)).toBe(201);
    expect((await store.call('GET', '/v1/checkpoints/half-1/meta')).status).toBe(200);
  }, 30_000);

  it('timeouts are validated at start', () => {
    const base = { FERRY_ADMIN_TOKEN: ADMIN, FERRY_STORE_DIR: dir };
    expect(() => loadConfig({ ...base, FERRY_STORE_IDLE_TIMEOUT: 'soon' })).toThrow(/FERRY_STORE_IDLE_TIMEOUT must be a duration/);
    expect(() => loadConfig({ ...base, FERRY_STORE_IDLE_TIMEOUT: '0s' })).toThrow(/FERRY_STORE_IDLE_TIMEOUT must be at least/);
    expect(() => loadConfig({ ...base, FERRY_STORE_HEADERS_TIMEOUT: '0' })).toThrow(/FERRY_STORE_HEADERS_TIMEOUT must be at least/);
    expect(loadConfig(base).timeouts).toEqual({ idleMs: 60_000, headersMs: 20_000 });
  });
});
