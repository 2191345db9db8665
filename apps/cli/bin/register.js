'use strict';
// TypeScript from source for every bin and service, with no build step: a require
// hook that transpiles .ts files with @swc/core (decorator metadata included, which
// NestJS needs) and caches the output on disk keyed by path, size, mtime and the
// transpiler settings. A warm start loads neither the TypeScript compiler nor
// @swc/core itself, so `convert-legacy-stream` starts in a few tens of milliseconds.
// FERRY_SOURCE_MAPS=1 adds inline source maps and turns them on for stack traces.
const fs = require('node:fs');
const path = require('node:path');

const { fnv, cacheDirs } = require('./cache');

if (!require.extensions['.ts']) {
  const sourceMaps = process.env.FERRY_SOURCE_MAPS === '1';
  if (sourceMaps) process.setSourceMapsEnabled(true);
  const options = {
    module: { type: 'commonjs' },
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      target: 'es2022',
      transform: { legacyDecorator: true, decoratorMetadata: true },
    },
    sourceMaps: sourceMaps ? 'inline' : false,
    swcrc: false,
  };
  const settings = fnv(JSON.stringify(options) + swcVersion());
  const cacheDir = cacheDirs('ferry-ts', process.env.FERRY_TS_CACHE).next().value;
  let swc;

  require.extensions['.ts'] = function loadTs(module, filename) {
    const st = fs.statSync(filename);
    const key = `${path.basename(filename, '.ts')}-${fnv(`${settings}\0${filename}\0${st.size}\0${st.mtimeMs}`)}`;
    const cached = cacheDir && path.join(cacheDir, `${key}.js`);
    let code;
    if (cached) {
      try {
        code = fs.readFileSync(cached, 'utf8');
      } catch {
        /* not cached yet */
      }
    }
    if (code === undefined) {
      swc ??= require('@swc/core');
      code = swc.transformSync(fs.readFileSync(filename, 'utf8'), { ...options, filename }).code;
      if (cached) {
        try {
          const tmp = `${cached}.${process.pid}`;
          fs.writeFileSync(tmp, code);
          fs.renameSync(tmp, cached);
        } catch {
          /* a read-only tree still runs, only slower */
        }
      }
    }
    module._compile(code, filename);
  };
}

function swcVersion() {
  try {
    return require('@swc/core/package.json').version;
  } catch {
    return 'unknown';
  }
}
