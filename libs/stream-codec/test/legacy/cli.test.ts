import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { GOLDEN, eq, golden } from './helpers';

const root = path.resolve(__dirname, '..', '..', '..', '..');
const bin = path.join(root, 'apps/cli/bin/convert-legacy-stream.js');
const ferry = path.join(root, 'apps/cli/bin/ferry.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cls-'));

function run(args: string[], opts: { input?: Buffer; env?: Record<string, string> } = {}) {
  return spawnSync(process.execPath, [bin, ...args], { input: opts.input, encoding: 'buffer', cwd: root, timeout: 120_000, env: { ...process.env, ...opts.env } });
}

describe('convert-legacy-stream (drop-in for Xen\'s script)', { timeout: 180_000 }, () => {
  it('converts paths with Xen\'s options, byte-identical', () => {
    const out = path.join(tmp, 'a.v2');
    const r = run(['-i', path.join(GOLDEN, 'hvm-w64-libxl-xl.legacy'), '-o', out, '-w', '64', '-g', 'hvm', '-f', 'libxl', '-x']);
    expect(r.status).toBe(0);
    expect(eq(fs.readFileSync(out), golden('hvm-w64-libxl-xl').v2)).toBe(true);
  });

  it('takes libxl\'s abbreviated --guest, long options with =, numeric descriptors (stdin/stdout) and auto', () => {
    const g = golden('pv32-w64-libxl');
    const r = run(['--in', '0', '--out=1', '--width', 'auto', '--guest', 'auto', '--format', 'libxl'], { input: Buffer.from(g.legacy) });
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
    expect(eq(r.stdout, g.v2)).toBe(true);
  });

  it('exit codes: 1 for a missing required option or a stream error, 2 for a bad value or what cannot be converted', () => {
    expect(run(['-i', 'x', '-o', 'y', '-w', '32']).status).toBe(1);
    expect(run(['-i', 'x', '-o', 'y', '-w', '48', '-g', 'pv']).status).toBe(2);
    const bad = run(['-i', '0', '-o', '1', '-w', '32', '-g', 'hvm'], { input: Buffer.alloc(10) });
    expect(bad.status).toBe(1);
    expect(bad.stderr.toString().trim().split('\n')).toHaveLength(1);
    expect(bad.stderr.toString()).toMatch(/^Stream Error: /);
    const seed = Buffer.from([0x00, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0]);
    const r = run(['-i', '0', '-o', '1', '-w', '64', '-g', 'pv'], { input: seed });
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/0xffffffff00010000/);
  });

  it('recycles its read buffers safely: 61-byte reads make every record straddle them', () => {
    for (const name of ['pv32-w64-libxl-xl', 'hvm-w32-libxc']) {
      const g = golden(name);
      const out = path.join(tmp, `${name}.v2`);
      const r = run(['-i', path.join(GOLDEN, `${name}.legacy`), '-o', out, '-w', 'auto', '-g', 'auto', ...(name.includes('libxl') ? ['-f', 'libxl'] : [])], { env: { FERRY_READ_BYTES: '61' } });
      expect(r.stderr.toString()).toBe('');
      expect(eq(fs.readFileSync(out), g.v2)).toBe(true);
    }
  });

  it('--help and --version', () => {
    expect(run(['--help']).stdout.toString()).toMatch(/--skip-qemu/);
    expect(run(['--version']).stdout.toString().trim()).toBe('1');
  });
});

describe('ferry stream detect / convert', { timeout: 180_000 }, () => {
  it('detect --json', () => {
    const r = spawnSync(process.execPath, [ferry, 'stream', 'detect', '--json', path.join(GOLDEN, 'pv64-w32-libxc.legacy')], { encoding: 'utf8', cwd: root });
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout) as { width: number; guest: string; guestWidth: number; confidence: string; reasons: string[] };
    expect([j.width, j.guest, j.guestWidth, j.confidence]).toEqual([32, 'pv', 64, 'certain']);
  });

  it('detect refuses an ambiguous image with exit 1 and the candidates', () => {
    const f = path.join(tmp, 'amb.legacy');
    fs.writeFileSync(f, Buffer.from([0x00, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff]));
    const r = spawnSync(process.execPath, [ferry, 'stream', 'detect', '--json', f], { encoding: 'utf8', cwd: root });
    expect(r.status).toBe(1);
    expect((JSON.parse(r.stdout) as { candidates: string[] }).candidates).toEqual(['32-bit pv', '32-bit hvm']);
  });

  it('convert legacy -> v2 -> legacy -> v2', () => {
    const g = golden('hvm-w32-libxl-xl');
    const a = path.join(tmp, 'a.v2');
    const b = path.join(tmp, 'b.legacy');
    const c = path.join(tmp, 'c.v2');
    const conv = (args: string[]) => spawnSync(process.execPath, [ferry, 'stream', 'convert', ...args], { encoding: 'utf8', cwd: root });
    expect(conv([path.join(GOLDEN, 'hvm-w32-libxl-xl.legacy'), a]).status).toBe(0);
    expect(eq(fs.readFileSync(a), g.v2)).toBe(true);
    expect(conv([a, b]).status).toBe(2); // --width is required for v2 -> legacy
    expect(conv([a, b, '--width', '32']).status).toBe(0);
    expect(conv([b, c]).status).toBe(0);
    expect(eq(fs.readFileSync(c), g.v2)).toBe(true);
  });
});
