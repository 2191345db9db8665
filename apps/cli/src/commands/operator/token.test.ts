/**
 * Where the operator verbs find the control plane and the token: --url/--token, FERRY_URL/FERRY_TOKEN,
 * the config file, then what `ferry up` saved in its state folder; and what a 401 says.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configPath, resolveConnection } from './common';

const FERRY = path.resolve(__dirname, '..', '..', '..', 'bin', 'ferry.js');
let tmp: string;
let stateDir: string;
let configHome: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-token-'));
  stateDir = path.join(tmp, 'state');
  configHome = path.join(tmp, 'config');
  fs.mkdirSync(stateDir);
  fs.writeFileSync(path.join(stateDir, 'admin-token'), 'fa-saved-by-ferry-up-0123\n');
  fs.writeFileSync(path.join(stateDir, 'api-url'), 'http://localhost:18123\n');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('resolveConnection', () => {
  const base = (): NodeJS.ProcessEnv => ({ FERRY_STATE_DIR: stateDir, XDG_CONFIG_HOME: configHome, HOME: tmp });

  it('falls back to the token and URL ferry up saved', () => {
    expect(resolveConnection({}, base())).toEqual({ url: 'http://localhost:18123', token: 'fa-saved-by-ferry-up-0123', tokenSource: path.join(stateDir, 'admin-token') });
  });

  it('prefers the config file, then FERRY_TOKEN / FERRY_URL, then the options', () => {
    const env = base();
    fs.mkdirSync(path.dirname(configPath(env)), { recursive: true });
    fs.writeFileSync(configPath(env), JSON.stringify({ url: 'http://127.0.0.1:9999', token: 'from-config' }));
    try {
      expect(configPath(env)).toBe(path.join(configHome, 'ferry', 'config.json'));
      expect(resolveConnection({}, env)).toEqual({ url: 'http://127.0.0.1:9999', token: 'from-config', tokenSource: configPath(env) });
      expect(resolveConnection({}, { ...env, FERRY_TOKEN: 'from-env', FERRY_URL: 'http://127.0.0.1:7777' })).toEqual({ url: 'http://127.0.0.1:7777', token: 'from-env', tokenSource: '$FERRY_TOKEN' });
      expect(resolveConnection({ url: 'http://127.0.0.1:1', token: 'opt' }, { ...env, FERRY_TOKEN: 'from-env' })).toEqual({ url: 'http://127.0.0.1:1', token: 'opt', tokenSource: '--token' });
    } finally {
      fs.rmSync(configHome, { recursive: true, force: true });
    }
  });

  it('reads ~/.config/ferry/config.json without XDG_CONFIG_HOME', () => {
    expect(configPath({ HOME: '/home/op' })).toBe('/home/op/.config/ferry/config.json');
  });

  it('never sends the saved admin token to a control plane elsewhere', () => {
    expect(resolveConnection({ url: 'https://ferry.example:8080' }, base()).token).toBe('');
    expect(resolveConnection({ url: 'http://127.0.0.2:8080' }, base()).token).toBe('fa-saved-by-ferry-up-0123');
  });

  it('says so when the config file is not JSON', () => {
    const env = base();
    fs.mkdirSync(path.dirname(configPath(env)), { recursive: true });
    fs.writeFileSync(configPath(env), '{nope');
    try {
      expect(() => resolveConnection({}, env)).toThrow(/config\.json is not valid JSON/);
    } finally {
      fs.rmSync(configHome, { recursive: true, force: true });
    }
  });
});

describe('ferry hosts against a control plane', () => {
  let server: http.Server;
  let url: string;
  const seen: string[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push(req.headers.authorization ?? '');
      if (req.headers.authorization !== 'Bearer fa-saved-by-ferry-up-0123') {
        res
          .writeHead(401, { 'content-type': 'application/problem+json', 'www-authenticate': 'Bearer realm="ferry", error="invalid_token"' })
          .end(JSON.stringify({ type: 'https://ferry.dev/problems/unauthorized', title: 'Authentication required', status: 401, detail: 'invalid token', instance: '/v1/hosts' }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ items: [], nextCursor: null, limit: 500, total: 0 }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  function ferry(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
    const e: NodeJS.ProcessEnv = { ...process.env, FERRY_STATE_DIR: stateDir, XDG_CONFIG_HOME: configHome, ...env };
    delete e.FERRY_TOKEN;
    delete e.FERRY_URL;
    Object.assign(e, env);
    return new Promise((resolve) => {
      const c = spawn(process.execPath, [FERRY, ...args], { env: e });
      let out = '';
      let err = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr.on('data', (d: Buffer) => (err += d.toString()));
      c.on('exit', (code) => resolve({ code, out, err }));
    });
  }

  it('uses the admin token ferry up saved', async () => {
    const r = await ferry(['hosts', '--url', url], {});
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(seen.at(-1)).toBe('Bearer fa-saved-by-ferry-up-0123');
  });

  it("a 401 says which token was refused and where tokens come from", async () => {
    const r = await ferry(['hosts', '--url', url], { FERRY_TOKEN: 'wrong-token' });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^ferry hosts: invalid token: the token from \$FERRY_TOKEN was refused; a token comes from --token, \$FERRY_TOKEN, "token" in .*config\.json, or the admin token `ferry up` prints and saves in .*admin-token \(HTTP 401\)\n$/);
    const none = await ferry(['hosts', '--url', url], { FERRY_STATE_DIR: path.join(tmp, 'nothing-here') });
    expect(none.err).toMatch(/no token was found; a token comes from --token/);
  });
});
