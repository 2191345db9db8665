/**
 * Records Xen's verdicts (verify-stream-v2 under Python 2.7) on deterministic
 * mutants of the golden streams, for the differential test
 * (libs/stream-codec/test/v2/golden.test.ts). Run after make-golden.sh:
 *   node apps/cli/bin/run-ts.js tools/golden/xen-verdicts.ts
 * Env: XEN (Xen source tree, default /tmp/xen), PY2 (python 2.7).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GOLDEN, MUTANTS_PER_BASE, mutantOf } from '../../libs/stream-codec/test/v2/golden-cases';

const XEN = process.env.XEN ?? '/tmp/xen';
const PY2 = process.env.PY2 ?? path.join(execFileSync('pyenv', ['root'], { encoding: 'utf8' }).trim(), 'versions/2.7.18/bin/python');
const DIR = path.resolve(__dirname, '../../libs/stream-codec/test/v2/golden');

function pythonPath(): string {
  const p = fs.mkdtempSync('/tmp/xenpy.');
  fs.mkdirSync(path.join(p, 'xen'));
  fs.cpSync(path.join(XEN, 'tools/python/xen/migration'), path.join(p, 'xen/migration'), { recursive: true });
  fs.writeFileSync(path.join(p, 'xen/__init__.py'), '');
  fs.writeFileSync(path.join(p, 'xen/migration/__init__.py'), '');
  fs.writeFileSync(
    path.join(p, 'xen/util.py'),
    'import os\ndef open_file_or_fd(val, *argl, **kwargs):\n    try:\n        return os.fdopen(int(val), *argl, **kwargs)\n    except ValueError:\n        return open(val, *argl, **kwargs)\n',
  );
  return p;
}

function main(): void {
  const pyp = pythonPath();
  const tmp = fs.mkdtempSync('/tmp/xen-verdicts.');
  const out: { base: string; seed: number; xen: number }[] = [];
  for (const g of GOLDEN) {
    const base = new Uint8Array(fs.readFileSync(path.join(DIR, g.file)));
    for (let seed = 0; seed <= MUTANTS_PER_BASE; seed++) {
      const m = mutantOf(base, seed);
      const f = path.join(tmp, 'm');
      fs.writeFileSync(f, m);
      const r = spawnSync(PY2, [path.join(XEN, 'tools/python/scripts/verify-stream-v2'), '-q', '-f', g.format, '-i', f], { env: { ...process.env, PYTHONPATH: pyp } });
      out.push({ base: g.file, seed, xen: r.status ?? -1 });
    }
  }
  fs.writeFileSync(path.join(DIR, 'xen-verdicts.json'), JSON.stringify(out) + '\n');
  fs.rmSync(tmp, { recursive: true });
  fs.rmSync(pyp, { recursive: true });
  process.stdout.write(`${out.length} verdicts written\n`);
}

main();
