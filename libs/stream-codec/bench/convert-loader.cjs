'use strict';
// A lean TypeScript-from-source loader for the benchmark: a require hook (pirates) that
// transpiles with @swc/core and keeps the output in a cache keyed by path, size and mtime,
// so a warm start loads neither the TypeScript compiler (which @swc-node/register always
// loads: ~0.6 s and ~90 MB before the first line of ours runs) nor even @swc/core.
// The benchmark runs convert-legacy-stream both ways to show what the bin pays.
//   node -r ./libs/stream-codec/bench/convert-loader.cjs apps/cli/src/bin/convert-legacy-stream.ts ...
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { addHook } = require('pirates');

const cacheDir = path.join(os.tmpdir(), 'ferry-ts-cache');
let swc;

addHook(
  (code, filename) => {
    const st = fs.statSync(filename);
    const key = crypto.createHash('sha1').update(`${filename}\0${st.size}\0${st.mtimeMs}`).digest('hex');
    const file = path.join(cacheDir, `${key}.js`);
    try {
      return fs.readFileSync(file, 'utf8');
    } catch {
      swc ??= require('@swc/core');
      const out = swc.transformSync(code, {
        filename,
        module: { type: 'commonjs' },
        jsc: { parser: { syntax: 'typescript', decorators: true }, target: 'es2022', transform: { legacyDecorator: true, decoratorMetadata: true } },
        sourceMaps: false,
        swcrc: false,
      }).code;
      fs.mkdirSync(cacheDir, { recursive: true });
      fs.writeFileSync(`${file}.${process.pid}`, out);
      fs.renameSync(`${file}.${process.pid}`, file);
      return out;
    }
  },
  { exts: ['.ts'], ignoreNodeModules: false },
);
