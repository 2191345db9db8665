/**
 * Regenerates libs/stream-codec/test/legacy/golden/: for every case of the matrix
 * (libs/stream-codec/test/legacy/matrix.ts) it writes the legacy image with
 * writeLegacy (NAME.legacy), converts it with Xen's own convert-legacy-stream under
 * Python 2.7 (NAME.v2), checks that output with Xen's verify-stream-v2, and records
 * the options and hashes in manifest.json. See README.md in this directory.
 *
 *   node apps/cli/bin/run-ts.js tools/golden-legacy/generate.ts
 *
 * Environment: XEN_PYTHON (default $(pyenv root)/versions/2.7.18/bin/python),
 * XEN_PYTHON_TOOLS (default /tmp/xen/tools/python: holds scripts/ and xen/migration/).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeLegacy } from '@ferry/stream-codec';
import { goldenCases } from '../../libs/stream-codec/test/legacy/matrix';

const root = path.resolve(__dirname, '..', '..');
const outDir = path.join(root, 'libs/stream-codec/test/legacy/golden');
const tools = process.env.XEN_PYTHON_TOOLS ?? '/tmp/xen/tools/python';
const python =
  process.env.XEN_PYTHON ?? path.join(execFileSync('pyenv', ['root']).toString().trim(), 'versions/2.7.18/bin/python');

/** Xen's scripts import xen.util.open_file_or_fd and xen.migration: a throwaway package outside the repo. */
function shim(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xen-shim-'));
  fs.mkdirSync(path.join(dir, 'xen', 'migration'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'xen', '__init__.py'), '');
  fs.writeFileSync(
    path.join(dir, 'xen', 'util.py'),
    [
      'import os',
      'def open_file_or_fd(val, *argl, **kwargs):',
      '    try:',
      '        return os.fdopen(int(val), *argl, **kwargs)',
      '    except ValueError:',
      '        return open(val, *argl, **kwargs)',
      '',
    ].join('\n'),
  );
  const mig = path.join(tools, 'xen', 'migration');
  for (const f of fs.readdirSync(mig)) if (f.endsWith('.py')) fs.copyFileSync(path.join(mig, f), path.join(dir, 'xen', 'migration', f));
  fs.writeFileSync(path.join(dir, 'xen', 'migration', '__init__.py'), '');
  return dir;
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  return Buffer.concat(parts);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function main(): Promise<void> {
  const pythonPath = shim();
  const env = { ...process.env, PYTHONPATH: pythonPath };
  fs.mkdirSync(outDir, { recursive: true });
  const manifest: { name: string; args: string[]; legacy: string; v2: string; bytes: [number, number] }[] = [];
  for (const c of goldenCases()) {
    const input = await collect(writeLegacy(c.image()));
    const inFile = path.join(outDir, `${c.name}.legacy`);
    const outFile = path.join(outDir, `${c.name}.v2`);
    fs.writeFileSync(inFile, input);
    const conv = spawnSync(python, [path.join(tools, 'scripts/convert-legacy-stream'), '-i', inFile, '-o', outFile, ...c.args], { env, encoding: 'utf8' });
    if (conv.status !== 0) throw new Error(`${c.name}: Xen's converter failed (${conv.status}): ${conv.stderr}`);
    const fmt = c.xl ? 'xl' : c.format;
    // Xen's verifier reads an xl header only with a v2 libxl stream behind it.
    if (!(c.xl && c.format === 'libxc')) {
      const ver = spawnSync(python, [path.join(tools, 'scripts/verify-stream-v2'), '-i', outFile, '-f', fmt], { env, encoding: 'utf8' });
      if (ver.status !== 0) throw new Error(`${c.name}: Xen's verifier rejects the converted stream: ${ver.stdout}${ver.stderr}`);
    }
    const output = fs.readFileSync(outFile);
    manifest.push({ name: c.name, args: c.args, legacy: sha(input), v2: sha(output), bytes: [input.length, output.length] });
    process.stdout.write(`${c.name}: ${input.length} -> ${output.length} bytes\n`);
  }
  fs.writeFileSync(path.join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 1) + '\n');
  fs.rmSync(pythonPath, { recursive: true, force: true });
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
