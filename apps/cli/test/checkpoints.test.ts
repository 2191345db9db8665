/**
 * `ferry checkpoints list|show|delete|download` and `ferry resume --checkpoint` end to end: a real control
 * plane on real Redis, a real suspend-store (local folder), in-test fake agents that upload real v2 images,
 * and `ferry` run as a child process.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckpointDto } from '@ferry/contracts';
// eslint-disable-next-line @nx/enforce-module-boundaries -- test-only: the control plane's in-test World and fake agents (no published entry point)
import { ADMIN, V2_64, VIEWER, World, guest } from '../../control-plane/test/harness';

const ROOT = path.resolve(__dirname, '../../..');
const BIN = path.join(ROOT, 'apps/cli/bin/ferry.js');
const STORE_TOKEN = 'store-token-for-cli-tests-0123';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function ferry(url: string, args: string[], token = ADMIN): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, FERRY_URL: url, FERRY_TOKEN: token }, timeout: 45_000, encoding: 'buffer' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 99) : 0;
      resolve({ code, stdout: stdout.toString('latin1'), stderr: stderr.toString() });
    });
  });
}

const w = new World();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cli-ckpt-'));
let store: { url: string; close(): Promise<void> };
let url = '';

beforeAll(async () => {
  // loaded lazily, as `ferry serve` loads it
  const { startSuspendStore } = await import('@ferry/suspend-store');
  store = await startSuspendStore({ PORT: '0', HOST: '127.0.0.1', FERRY_ADMIN_TOKEN: STORE_TOKEN, FERRY_STORE_BACKEND: 'fs', FERRY_STORE_DIR: path.join(dir, 'store'), FERRY_RETAIN_LAST: '5', FERRY_LOG_LEVEL: 'error' });
  url = (await w.cp({ FERRY_STORE_URL: store.url, FERRY_STORE_TOKEN: STORE_TOKEN })).url;
  await w.agent(url, { hostId: 'h1', toolstack: V2_64, guests: [guest('vm-k')], storeToken: STORE_TOKEN });
});
afterAll(async () => {
  await w.close();
  await store?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('ferry checkpoints', () => {
  it('list, show, download, resume --checkpoint, delete', async () => {
    expect((await ferry(url, ['suspend', 'vm-k'])).code).toBe(0);
    expect((await ferry(url, ['resume', 'vm-k'])).code).toBe(0);
    expect((await ferry(url, ['suspend', 'vm-k'])).code).toBe(0);

    const listed = await ferry(url, ['checkpoints', 'list', '--vm', 'vm-k', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    const items = JSON.parse(listed.stdout) as CheckpointDto[];
    expect(items).toHaveLength(2);
    const [newer, older] = items as [CheckpointDto, CheckpointDto];
    expect(newer.latest).toBe(true);

    const t = await ferry(url, ['checkpoints'], VIEWER);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/^ID\s+VM\s+CREATED\s+FROM HOST\s+SIZE\s+SOURCE\s+RETENTION\s+FLAGS\n/);
    expect(t.stdout).toMatch(new RegExp(`${newer.id}\\s+vm-k\\s+\\S+\\s+h1\\s+.*v2 libxl\\s+after 5 newer\\s+latest`));
    expect(t.stdout).toMatch(new RegExp(`${older.id}\\s+vm-k\\s+.*v2 libxl\\s+after 4 newer\\s+-\\n`));

    const shown = await ferry(url, ['checkpoints', 'show', older.id]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/retention:\s+removed once 4 newer checkpoints of its VM exist \(keep last 5\)/);
    expect(shown.stdout).toMatch(/stored image:\s+\d+ bytes, sha256 [0-9a-f]{64}/);

    // download: the bytes the store holds, into place only when complete and verified
    const file = path.join(dir, 'older.v2');
    const d = await ferry(url, ['checkpoints', 'download', older.id, '-o', file]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stderr).toMatch(/^wrote \d+ bytes to .*older\.v2 \(v2 image, sha256 verified: [0-9a-f]{64}\)\n$/);
    const direct = Buffer.from(await (await fetch(`${store.url}/v1/checkpoints/${older.id}`, { headers: { authorization: `Bearer ${STORE_TOKEN}` } })).arrayBuffer());
    expect(fs.readFileSync(file).equals(direct)).toBe(true);
    const toStdout = await ferry(url, ['checkpoints', 'download', older.id, '-o', '-']);
    expect(Buffer.from(toStdout.stdout, 'latin1').equals(direct)).toBe(true);
    const again = await ferry(url, ['checkpoints', 'download', older.id, '-o', file]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/exists/);
    const missing = await ferry(url, ['checkpoints', 'download', 'ckpt-nope', '-o', path.join(dir, 'nope.v2')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe("ferry checkpoints: checkpoint 'ckpt-nope' not found (HTTP 404)\n");
    expect(fs.readdirSync(dir).sort()).toEqual(['older.v2', 'store']);
    expect((await ferry(url, ['checkpoints', 'download', older.id, '-o', path.join(dir, 'x'), '--legacy', '16'])).code).toBe(2);
    expect((await ferry(url, ['checkpoints', 'download', older.id])).code).toBe(2);
    const viewer = await ferry(url, ['checkpoints', 'download', older.id, '-o', path.join(dir, 'v.v2')], VIEWER);
    expect(viewer.code).toBe(1);
    expect(viewer.stderr).toMatch(/\(HTTP 403\)\n$/);

    // resume from the older one
    const r = await ferry(url, ['resume', 'vm-k', '--checkpoint', older.id, '--detach']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`resume of vm-k from ${older.id}`));
    const wrong = await ferry(url, ['resume', 'vm-k', '--checkpoint', 'ckpt-nope']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/HTTP 40[49]/);

    // delete: refused to a viewer, done for an operator; then it is gone
    const refused = await ferry(url, ['checkpoints', 'delete', newer.id], VIEWER);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/\(HTTP 403\)\n$/);
    for (let i = 0; i < 200 && JSON.parse((await ferry(url, ['vms', 'get', 'vm-k', '--json'])).stdout).state !== 'running'; i++) await new Promise((res) => setTimeout(res, 50));
    const del = await ferry(url, ['checkpoints', 'delete', newer.id]);
    expect(del.code, del.stderr).toBe(0);
    expect(del.stdout).toBe(`deleted checkpoint ${newer.id}\n`);
    const gone = await ferry(url, ['checkpoints', 'show', newer.id]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/not found \(HTTP 404\)/);
    expect((await ferry(url, ['checkpoints', 'frobnicate'])).code).toBe(2);
  });

  it('a download the store refuses or cuts (a corrupted image) exits 1 and leaves no file', async () => {
    expect((await ferry(url, ['suspend', 'vm-k'])).code).toBe(0);
    const [c] = JSON.parse((await ferry(url, ['checkpoints', 'list', '--vm', 'vm-k', '--json'])).stdout) as CheckpointDto[];
    const folder = path.join(dir, 'store', 'checkpoints', c!.id);
    const image = path.join(folder, fs.readdirSync(folder).find((f) => f.startsWith('image-'))!);
    const bytes = fs.readFileSync(image);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 100) ^ 0xff, bytes.length - 100);
    fs.writeFileSync(image, bytes);
    const out = path.join(dir, 'corrupt.v2');
    const r = await ferry(url, ['checkpoints', 'download', c!.id, '-o', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ferry checkpoints: (suspend-store answered 500 .*\(HTTP 502\)|download of \S+ failed, nothing written: .*)\n$/);
    expect(fs.readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([]);
  });
});
