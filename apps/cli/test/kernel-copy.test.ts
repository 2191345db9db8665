/**
 * convert-legacy-stream moves page data from descriptor to descriptor inside the kernel (the
 * native helper, apps/cli/native/fdcopy.c, built on first use): the output must be the same bytes
 * as the JavaScript path gives, for files and pipes on either side, and a stream cut in the middle
 * of its page data must fail the same way.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertLegacy, writeLegacy, type LegacyPage } from '@ferry/stream-codec';
import { loadFdCopy } from '../src/native';

const root = path.resolve(__dirname, '../../..');
const bin = path.join(root, 'apps/cli/bin/convert-legacy-stream.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-kcopy-'));
const input = path.join(tmp, 'in.legacy');
const PAGES = 2500; // three 1024-page batches
let expected: Buffer;
const native = loadFdCopy() !== null;

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

function* pages(): Generator<LegacyPage> {
  for (let pfn = 0; pfn < PAGES; pfn++) {
    const data = new Uint8Array(4096);
    new DataView(data.buffer).setUint32(0, pfn, true); // every page different: a misplaced one shows
    data.fill(pfn & 0xff, 4);
    yield { pfn, type: 0, data };
  }
}

function run(args: string[], opts: { input?: Buffer; env?: Record<string, string> } = {}) {
  // Small reads, so every batch has page data both buffered and still unread.
  return spawnSync(bin, args, { input: opts.input, cwd: root, timeout: 60_000, maxBuffer: 64 << 20, env: { ...process.env, FERRY_READ_BYTES: '20000', ...opts.env } });
}

beforeAll(async () => {
  const legacy = await collect(writeLegacy({ guest: 'pv', toolstackWidth: 32, guestWidth: 64, p2mSize: PAGES, vcpus: [{ id: 0, basic: new Uint8Array(0x1430) }], pages: pages() }));
  fs.writeFileSync(input, legacy);
  expected = await collect(convertLegacy([legacy], { width: 32, guest: 'pv' }).output);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('convert-legacy-stream moves page data inside the kernel', { timeout: 120_000 }, () => {
  it('file -> file, byte-identical to the JavaScript path', () => {
    for (const env of [{}, { FERRY_NATIVE: '0' }] as Record<string, string>[]) {
      const out = path.join(tmp, 'out.v2');
      const r = run(['-i', input, '-o', out, '-w', '32', '-g', 'pv', '-v'], { env });
      expect(r.stderr.toString()).toBe('');
      expect(r.status).toBe(0);
      expect(fs.readFileSync(out).equals(expected)).toBe(true);
      expect(r.stdout.toString().includes('copied by the kernel')).toBe(native && env.FERRY_NATIVE !== '0');
    }
  });

  it('pipes on either side: stdin -> stdout, file -> stdout, stdin -> file', () => {
    const legacy = fs.readFileSync(input);
    const a = run(['-i', '0', '-o', '1', '-w', '32', '-g', 'pv'], { input: legacy });
    expect(a.status).toBe(0);
    expect(a.stdout.equals(expected)).toBe(true);
    const b = run(['-i', input, '-o', '1', '-w', 'auto', '-g', 'auto', '-v'], {});
    expect(b.status).toBe(0);
    expect(b.stdout.equals(expected)).toBe(true);
    expect(b.stderr.toString().includes('copied by the kernel')).toBe(native);
    const out = path.join(tmp, 'from-pipe.v2');
    const c = run(['-i', '0', '-o', out, '-w', '32', '-g', 'pv'], { input: legacy });
    expect(c.status).toBe(0);
    expect(fs.readFileSync(out).equals(expected)).toBe(true);
  });

  it('an inherited output descriptor opened for appending (which splice refuses) gets the same bytes', () => {
    const out = path.join(tmp, 'append.v2');
    fs.writeFileSync(out, 'x');
    const fd = fs.openSync(out, 'a');
    try {
      const r = spawnSync(bin, ['-i', input, '-o', '3', '-w', '32', '-g', 'pv'], { cwd: root, timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe', fd], env: { ...process.env, FERRY_READ_BYTES: '20000' } });
      expect(r.stderr.toString()).toBe('');
      expect(r.status).toBe(0);
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.readFileSync(out).equals(Buffer.concat([Buffer.from('x'), expected]))).toBe(true);
  });

  it('a stream cut inside its page data fails with the same one line either way', () => {
    const cut = path.join(tmp, 'cut.legacy');
    fs.writeFileSync(cut, fs.readFileSync(input).subarray(0, 1024 * 4096 + 3 * 4096 + 777)); // in the second batch
    const errs = ([{}, { FERRY_NATIVE: '0' }] as Record<string, string>[]).map((env) => {
      const r = run(['-i', cut, '-o', path.join(tmp, 'cut.v2'), '-w', '32', '-g', 'pv'], { env });
      expect(r.status).toBe(1);
      return r.stderr.toString();
    });
    expect(errs[0]!.trim().split('\n')).toHaveLength(1);
    expect(errs[0]).toMatch(/^Stream Error: .*truncated/i);
    expect(errs[0]).toBe(errs[1]);
  });

  it.skipIf(!native)('the helper copies a file from any offset, moves both positions, and stops at the end', () => {
    const copy = loadFdCopy()!;
    const src = path.join(tmp, 'odd.bin');
    const data = Buffer.alloc(3 * 1024 * 1024 + 4321);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 12)) & 0xff;
    fs.writeFileSync(src, data);
    for (const [from, pre] of [[4, 16], [4095, 0], [8208, 3]] as const) {
      const dst = path.join(tmp, `odd-${from}.out`);
      const inFd = fs.openSync(src, 'r');
      const outFd = fs.openSync(dst, 'w');
      try {
        fs.readSync(inFd, Buffer.alloc(from), 0, from, null); // the input's position, as a reader leaves it
        fs.writeSync(outFd, Buffer.alloc(pre, 0xee)); // and the output's
        expect(copy(inFd, outFd, 2 * 1024 * 1024 + 5)).toBe(2 * 1024 * 1024 + 5);
        const next = Buffer.alloc(3);
        fs.readSync(inFd, next, 0, 3, null); // the input moved on by exactly what was copied
        expect(next.equals(data.subarray(from + 2 * 1024 * 1024 + 5, from + 2 * 1024 * 1024 + 8))).toBe(true);
        // Asked for more than is left: what is left, then 0 at the end.
        const left = data.length - (from + 2 * 1024 * 1024 + 8);
        expect(copy(inFd, outFd, 64 * 1024 * 1024)).toBe(left);
        expect(copy(inFd, outFd, 4096)).toBe(0);
      } finally {
        fs.closeSync(inFd);
        fs.closeSync(outFd);
      }
      const got = fs.readFileSync(dst);
      const head = from + 2 * 1024 * 1024 + 5;
      expect(got.subarray(0, pre).every((b) => b === 0xee)).toBe(true);
      expect(got.subarray(pre).equals(Buffer.concat([data.subarray(from, head), data.subarray(head + 3)]))).toBe(true);
    }
  });
});
