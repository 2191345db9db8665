'use strict';
// TypeScript from source for every bin and service, with no build step: a require
// hook that transpiles .ts files with @swc/core (decorator metadata included, which
// NestJS needs) and caches the output on disk keyed by path, size, mtime and the
// transpiler settings. A warm start loads neither the TypeScript compiler nor
// @swc/core itself, so `convert-legacy-stream` starts in a few tens of milliseconds.
// FERRY_SOURCE_MAPS=1 adds inline source maps and turns them on for stack traces.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

/** FNV-1a, two 32-bit lanes as 16 hex digits: a cache key, not a security boundary (node:crypto costs ~15 ms to load). */
function fnv(text) {
  let a = 0x811c9dc5;
  let b = 0xcbf29ce4;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x01000193 ^ 0x5bd1e995) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}

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
  const cacheDir = pickCacheDir();
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

function pickCacheDir() {
  const shared = path.join(os.tmpdir(), `ferry-ts-${process.getuid ? process.getuid() : 'u'}`);
  const candidates = [process.env.FERRY_TS_CACHE, path.join(__dirname, '..', '..', '..', 'node_modules', '.cache', 'ferry-ts'), shared];
  for (const dir of candidates) {
    if (!dir) continue;
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      fs.accessSync(dir, fs.constants.W_OK);
      // Code is loaded from here: in the shared /tmp, only from a folder this user owns and nobody else may write to.
      if (dir === shared) {
        const st = fs.statSync(dir);
        if (process.getuid && (st.uid !== process.getuid() || (st.mode & 0o022) !== 0)) continue;
      }
      return dir;
    } catch {
      /* try the next */
    }
  }
  return undefined;
}
