/**
 * The TypeScript loader's bundles (bin/register.js requireBundled), which the drop-ins start from:
 * the first run records the entry's module graph into one cached file, later runs load it from
 * there, a source that changed since sends the loader back to the files (and records again), and
 * a module loaded either way is one instance. V8's code cache for a bundle sits beside it, and a
 * damaged or stale one costs only time.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const register = path.resolve(__dirname, '../bin/register.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bdl-'));
const cache = path.join(tmp, 'cache');
const src = path.join(tmp, 'src');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

fs.mkdirSync(path.join(src, 'lib'), { recursive: true });
fs.writeFileSync(path.join(src, 'entry.ts'), "import { value, where } from './lib/b';\nimport * as p from 'node:path';\nexport const report = () => `${value} ${where()} ${p.basename(__filename)}`;\n");
const writeB = (value: string) =>
  fs.writeFileSync(path.join(src, 'lib', 'b.ts'), `export const value: string = '${value}';\nexport function where(): string {\n  return /bundle-entry-/.test(new Error().stack ?? '') ? 'bundled' : 'files';\n}\n`);
writeB('one');
// The runner also requires b.ts the ordinary way: the same module either way.
fs.writeFileSync(
  path.join(tmp, 'run.js'),
  `const entry = require(${JSON.stringify(register)}).requireBundled(${JSON.stringify(path.join(src, 'entry.ts'))});\n` +
    `const same = require(${JSON.stringify(path.join(src, 'lib', 'b.ts'))}).value === entry.report().split(' ')[0];\n` +
    `process.stdout.write(entry.report() + (same ? ' same' : ' two-copies'));\n`,
);

function run(env: Record<string, string> = {}): string {
  const r = spawnSync(process.execPath, [path.join(tmp, 'run.js')], { encoding: 'utf8', env: { ...process.env, FERRY_TS_CACHE: cache, ...env } });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout;
}
const bundles = () => (fs.existsSync(cache) ? fs.readdirSync(cache).filter((f) => f.startsWith('bundle-entry-') && f.endsWith('.js')) : []);

describe('requireBundled', () => {
  it('records the graph on the first run and loads it from the bundle after', () => {
    expect(run()).toBe('one files entry.ts same');
    expect(bundles()).toHaveLength(1);
    expect(run()).toBe('one bundled entry.ts same');
  });

  it('goes back to the files when a source changed, and records again', () => {
    writeB('two-longer');
    expect(run()).toBe('two-longer files entry.ts same');
    expect(run()).toBe('two-longer bundled entry.ts same');
  });

  it('FERRY_BUNDLE=0 loads the files', () => {
    expect(run({ FERRY_BUNDLE: '0' })).toBe('two-longer files entry.ts same');
  });

  it('a damaged bundle is ignored and rewritten', () => {
    const file = path.join(cache, bundles()[0]!);
    fs.writeFileSync(file, 'not a bundle');
    expect(run()).toBe('two-longer files entry.ts same');
    expect(run()).toBe('two-longer bundled entry.ts same');
  });

  it("keeps V8's code cache beside the bundle; a damaged one is rejected and written again", () => {
    expect(run()).toBe('two-longer bundled entry.ts same');
    const v8 = path.join(cache, `${bundles()[0]!}.v8`);
    const good = fs.readFileSync(v8);
    const key = good.subarray(0, good.indexOf(10) + 1); // the bundle's size and mtime, then V8's bytes
    expect(key.toString()).toMatch(/^\d+:[\d.]+\n$/);
    fs.writeFileSync(v8, Buffer.concat([key, Buffer.alloc(good.length - key.length, 0x5a)]));
    expect(run()).toBe('two-longer bundled entry.ts same');
    const again = fs.readFileSync(v8);
    expect(again.subarray(0, key.length).equals(key)).toBe(true);
    expect(again.subarray(key.length).some((b) => b !== 0x5a)).toBe(true);
  });
});
