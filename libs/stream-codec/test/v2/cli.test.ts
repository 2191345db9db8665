/**
 * The drop-in verify-stream-v2 and `ferry stream verify|inspect`, run as
 * processes: options, exit codes (0 valid, 1 stream error, 2 usage/internal).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { synthBytes } from './helpers';

const ROOT = path.resolve(__dirname, '../../../..');
const GOLDEN = path.join(__dirname, 'golden');
const run = (bin: string, args: string[], input?: Uint8Array) =>
  spawnSync(process.execPath, [path.join(ROOT, 'apps/cli/bin', bin), ...args], { cwd: ROOT, input, encoding: 'utf8', timeout: 60000 });

describe('verify-stream-v2 (drop-in for Xen\'s script)', () => {
  it('accepts the golden streams in each format; -i takes a path, an fd, or stdin', () => {
    expect(run('verify-stream-v2.js', ['-f', 'libxl', '-i', path.join(GOLDEN, 'hvm64.libxl')]).status).toBe(0);
    expect(run('verify-stream-v2.js', ['-i', path.join(GOLDEN, 'hvm64.libxc')]).status).toBe(0); // default format libxc
    expect(run('verify-stream-v2.js', ['--format=xl', '--syslog', '-q'], fs.readFileSync(path.join(GOLDEN, 'hvm64.xl'))).status).toBe(0);
    const fd = fs.openSync(path.join(GOLDEN, 'synth-pv.xl'), 'r');
    const r = spawnSync(process.execPath, [path.join(ROOT, 'apps/cli/bin/verify-stream-v2.js'), '-f', 'xl', '-i', '3', '-v'], { stdio: ['ignore', 'pipe', 'pipe', fd], encoding: 'utf8' });
    fs.closeSync(fd);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Domain Header: x86 PV from Xen 4.17/);
  }, 60000);

  it('exit 1 on stream errors (quiet with -q), 2 on usage errors', () => {
    const b = fs.readFileSync(path.join(GOLDEN, 'hvm64.libxl'));
    const t = run('verify-stream-v2.js', ['-f', 'libxl'], b.subarray(0, b.length - 3));
    expect(t.status).toBe(1);
    expect(t.stderr).toMatch(/Stream Error/);
    const q = run('verify-stream-v2.js', ['-q', '-f', 'libxc'], b);
    expect(q.status).toBe(1);
    expect(q.stderr).toBe('');
    expect(run('verify-stream-v2.js', ['-f', 'json'], b).status).toBe(2);
    expect(run('verify-stream-v2.js', ['--bogus'], b).status).toBe(2);
  }, 60000);

  it('judges big-endian streams too', async () => {
    const be = await synthBytes({ guest: 'hvm', framing: 'libxl', byteOrder: 'big', pages: 2 });
    expect(run('verify-stream-v2.js', ['-f', 'libxl'], be).status).toBe(0);
  }, 60000);
});

describe('ferry stream verify / inspect', () => {
  it('verify: auto-detects the framing, --json, exit codes', () => {
    const v = run('ferry.js', ['stream', 'verify', '--json', path.join(GOLDEN, 'hvm64.xl')]);
    expect(v.status).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ valid: true, framing: 'xl', guest: 'hvm', pages: 1 });
    const tmp = path.join(os.tmpdir(), `ferry-bad-${process.pid}.v2`);
    const b = fs.readFileSync(path.join(GOLDEN, 'hvm64.libxc'));
    fs.writeFileSync(tmp, Buffer.concat([b, Buffer.alloc(8)]));
    const bad = run('ferry.js', ['stream', 'verify', tmp]);
    fs.unlinkSync(tmp);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/bytes after the final END/);
  }, 60000);

  it('inspect: text and --json from stdin', () => {
    const t = run('ferry.js', ['stream', 'inspect', path.join(GOLDEN, 'synth-pv.xl')]);
    expect(t.status).toBe(0);
    expect(t.stdout).toMatch(/PV guest: 64-bit, 4 levels/);
    const j = run('ferry.js', ['stream', 'inspect', '--json', '-'], fs.readFileSync(path.join(GOLDEN, 'hvm64.xl')));
    expect(j.status).toBe(0);
    const rep = JSON.parse(j.stdout) as { xl: { config: { c_info: { name: string } } }; libxc: { records: Record<string, unknown> } };
    expect(rep.xl.config.c_info.name).toBe('golden');
    expect(rep.libxc.records).toHaveProperty('HVM_CONTEXT');
  }, 60000);
});
