/**
 * A conversion that writes a path leaves nothing when it fails: convert-legacy-stream and
 * `ferry stream convert` write a temporary file beside the output and rename it on success. A
 * usage error (rc 2), an input that is no stream, a stream cut short (with the kernel copy and
 * without), a failed down-conversion and a SIGTERM mid-way leave no file, not even an empty
 * one, and a file already at the path stays as it was. Also: `ferry stream inspect` gives a
 * non-stream's real size.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REC, encodeV2, legacyFromV2, synthStream, viewOf, writeLegacy, type LegacyPage, type V2Item } from '@ferry/stream-codec';

const root = path.resolve(__dirname, '../../..');
const dropin = path.join(root, 'apps/cli/bin/convert-legacy-stream.js');
const ferry = path.join(root, 'apps/cli/bin/ferry.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-convout-'));
const PAGES = 2500;
let legacy: Buffer;
let v2: Buffer;

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c.slice(0));
  return Buffer.concat(parts);
}
function* pages(): Generator<LegacyPage> {
  for (let pfn = 0; pfn < PAGES; pfn++) yield { pfn, type: 0, data: new Uint8Array(4096).fill(pfn & 0xff) };
}
const file = (name: string, data?: Buffer) => {
  const p = path.join(tmp, name);
  if (data) fs.writeFileSync(p, data);
  return p;
};
/** A fresh, empty folder for one case's output: what is in it afterwards is what the run left. */
const outDir = (name: string) => {
  const d = path.join(tmp, name);
  fs.mkdirSync(d);
  return d;
};
const run = (bin: string, args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [bin, ...args], { cwd: root, timeout: 60_000, encoding: 'utf8', env: { ...process.env, FERRY_READ_BYTES: '20000', ...env } });

beforeAll(async () => {
  legacy = await collect(writeLegacy({ guest: 'pv', toolstackWidth: 32, guestWidth: 64, p2mSize: PAGES, vcpus: [{ id: 0, basic: new Uint8Array(0x1430) }], pages: pages() }));
  v2 = await collect(encodeV2(synthStream({ guest: 'pv', framing: 'libxc', pages: PAGES })));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('convert-legacy-stream leaves nothing when it fails', { timeout: 120_000 }, () => {
  const input = () => file('in.legacy', legacy);

  it('usage error (rc 2): no output file', () => {
    const d = outDir('clx-usage');
    const r = run(dropin, ['-i', input(), '-o', path.join(d, 'out.v2'), '-w', '48', '-g', 'pv']);
    expect(r.status).toBe(2);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('an input that is no stream (rc 1): no output file', () => {
    const d = outDir('clx-garbage');
    const r = run(dropin, ['-i', file('garbage', Buffer.from('not a save image '.repeat(100))), '-o', path.join(d, 'out.v2'), '-w', 'auto', '-g', 'auto']);
    expect(r.status).toBe(1);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('a stream cut inside its page data, kernel copy or not: no partial file, and a file already there stays', () => {
    const cut = file('cut.legacy', legacy.subarray(0, 1024 * 4096 + 3 * 4096 + 777));
    for (const env of [{}, { FERRY_NATIVE: '0' }] as Record<string, string>[]) {
      const d = outDir(`clx-cut-${Object.keys(env).length}`);
      const r = run(dropin, ['-i', cut, '-o', path.join(d, 'out.v2'), '-w', '32', '-g', 'pv'], env);
      expect(r.status).toBe(1);
      expect(fs.readdirSync(d)).toEqual([]);
      fs.writeFileSync(path.join(d, 'out.v2'), 'before');
      expect(run(dropin, ['-i', cut, '-o', path.join(d, 'out.v2'), '-w', '32', '-g', 'pv'], env).status).toBe(1);
      expect(fs.readdirSync(d)).toEqual(['out.v2']);
      expect(fs.readFileSync(path.join(d, 'out.v2'), 'utf8')).toBe('before');
    }
  });

  it('success: the output under its name and nothing else; a file already there is replaced', () => {
    const d = outDir('clx-ok');
    fs.writeFileSync(path.join(d, 'out.v2'), 'before');
    const r = run(dropin, ['-i', input(), '-o', path.join(d, 'out.v2'), '-w', '32', '-g', 'pv']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(fs.readdirSync(d)).toEqual(['out.v2']);
    expect(fs.statSync(path.join(d, 'out.v2')).size).toBeGreaterThan(PAGES * 4096);
  });

  it('SIGTERM while it waits on a pipe: it ends at once (no handler holds the signal)', async () => {
    const d = outDir('clx-sigterm');
    const child = spawn(process.execPath, [dropin, '-i', '0', '-o', path.join(d, 'out.v2'), '-w', '32', '-g', 'pv'], { cwd: root, stdio: ['pipe', 'ignore', 'pipe'] });
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_code, sig) => res(sig)));
    // the child is killed before it has read all of this: the pipe's EPIPE is expected, not a failure
    child.stdin.on('error', () => {});
    child.stdin.write(legacy.subarray(0, 2 * 1024 * 4096)); // half the stream; the rest never comes
    for (let i = 0; i < 200 && fs.readdirSync(d).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGTERM');
    expect(await exited).toBe('SIGTERM');
    expect(fs.readdirSync(d).every((f) => /^\.out\.v2\.\d+\.\d+\.tmp$/.test(f))).toBe(true); // never a file under the output's name
  });
});

describe('ferry stream convert leaves nothing when it fails', { timeout: 120_000 }, () => {
  it('usage errors (rc 2): no output file, not even an empty one', () => {
    const d = outDir('sc-usage');
    const inV2 = file('in.v2', v2);
    for (const args of [
      [inV2, path.join(d, 'out'), '--to', 'legacy'], // no --width for legacy output
      [inV2, path.join(d, 'out')], // the same, the direction taken from the input
      [inV2, path.join(d, 'out'), '--width', '48'],
      [inV2, path.join(d, 'out'), '--to', 'legacy', '--width', '32', '--xsave-size', 'lots'],
    ]) {
      const r = run(ferry, ['stream', 'convert', ...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(fs.readdirSync(d), args.join(' ')).toEqual([]);
    }
  });

  it('an input that is no stream: no output file', () => {
    const d = outDir('sc-garbage');
    const r = run(ferry, ['stream', 'convert', file('garbage2', Buffer.from('not a save image '.repeat(100))), path.join(d, 'out')]);
    expect(r.status).not.toBe(0);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('a down-conversion that fails part way (LMCE state at the end of the stream): no partial file', async () => {
    // the vcpu records come after the pages: by then megabytes of the legacy image were written
    const items = [...synthStream({ guest: 'pv', framing: 'libxc', pages: PAGES })].map((it): V2Item => {
      if (it.kind !== 'libxc-record' || it.type !== REC.X86_PV_VCPU_EXTENDED || it.body.kind !== 'x86_pv_vcpu') return it;
      const ctx = new Uint8Array(64);
      viewOf(ctx).setUint32(4, 64, true);
      viewOf(ctx).setBigUint64(56, 1n, true);
      return { ...it, body: { ...it.body, context: ctx } };
    });
    const lmce = file('lmce.v2', await collect(encodeV2(items)));
    const d = outDir('sc-lmce');
    const r = run(ferry, ['stream', 'convert', lmce, path.join(d, 'out.legacy'), '--to', 'legacy', '--width', '32']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/LMCE machine-check state .* keep it on v2 and restore on Xen >= 4\.10/);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('success: the legacy image under its name; the xsave size read from the file first', async () => {
    const d = outDir('sc-ok');
    const r = run(ferry, ['stream', 'convert', file('ok.v2', v2), path.join(d, 'out.legacy'), '--to', 'legacy', '--width', '32', '--json']);
    expect(r.status).toBe(0);
    expect(fs.readdirSync(d)).toEqual(['out.legacy']);
    // synth's policy has no leaf 0xD: without the first pass the 848-byte xsave area would be refused
    await expect(collect(legacyFromV2([v2], { width: 32 }))).rejects.toThrow(/announced none; pass xsaveSize 848/);
    expect(fs.readFileSync(path.join(d, 'out.legacy')).equals(await collect(legacyFromV2([v2], { width: 32, xsaveSize: 848 })))).toBe(true);
    // from a pipe there is no first pass: --xsave-size says it
    const piped = spawnSync(process.execPath, [ferry, 'stream', 'convert', '-', path.join(d, 'piped.legacy'), '--to', 'legacy', '--width', '32', '--xsave-size', '848'], { cwd: root, input: v2, timeout: 60_000 });
    expect(piped.status).toBe(0);
    expect(fs.readFileSync(path.join(d, 'piped.legacy')).equals(fs.readFileSync(path.join(d, 'out.legacy')))).toBe(true);
  });
});

describe('ferry stream convert on SIGTERM', () => {
  it('removes its temporary file and ends by the signal', async () => {
    const d = outDir('sc-sigterm');
    const child = spawn(process.execPath, [ferry, 'stream', 'convert', '-', path.join(d, 'out.legacy'), '--to', 'legacy', '--width', '64', '--xsave-size', '848'], {
      cwd: root,
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_code, sig) => res(sig)));
    // the child is killed before it has read all of this: the pipe's EPIPE is expected, not a failure
    child.stdin.on('error', () => {});
    child.stdin.write(v2.subarray(0, 8 * 1024 * 1024)); // part of the stream (two page batches); the rest never comes
    for (let i = 0; i < 200 && !fs.readdirSync(d).some((f) => fs.statSync(path.join(d, f)).size > 0); i++) await new Promise((r) => setTimeout(r, 50));
    expect(fs.readdirSync(d)[0]).toMatch(/^\.out\.legacy\.\d+\.\d+\.tmp$/);
    child.kill('SIGTERM');
    expect(await exited).toBe('SIGTERM');
    expect(fs.readdirSync(d)).toEqual([]);
  }, 60_000);
});

describe('ferry stream inspect', () => {
  it('gives a non-stream its size, not "0 bytes"', () => {
    const r = run(ferry, ['stream', 'inspect', file('junk', Buffer.alloc(5000, 0x41))]);
    expect(r.status).toBe(1);
    expect(r.stdout.split('\n')[0]).toMatch(/: unknown framing, 5000 bytes \(0\.0 MiB\), nothing of it decoded$/);
    const j = run(ferry, ['stream', 'inspect', '--json', path.join(tmp, 'junk')]);
    expect(JSON.parse(j.stdout)).toMatchObject({ inputBytes: 5000, bytes: 0 });
  });
});
