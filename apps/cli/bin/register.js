'use strict';
// TypeScript from source for every bin and service, with no build step: a require
// hook that transpiles .ts files with @swc/core (decorator metadata included, which
// NestJS needs) and caches the output on disk keyed by path, size, mtime and the
// transpiler settings. A warm start loads neither the TypeScript compiler nor
// @swc/core itself, so `convert-legacy-stream` starts in a few tens of milliseconds.
// FERRY_SOURCE_MAPS=1 adds inline source maps and turns them on for stack traces.
// requireBundled(): see below, for the drop-ins libxl spawns.
const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');

const { fnv, cacheDirs } = require('./cache');

/** Set when this file installed the hook: what requireBundled needs of it. */
let loader;

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
  loader = { settings, cacheDir, sourceMaps, recorded: null };

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
    loader.recorded?.push({ file: filename, size: st.size, mtimeMs: st.mtimeMs, code });
    module._compile(code, filename);
  };
}

/**
 * require() for a small entry point whose start-up time counts (the drop-ins libxl spawns per
 * migration): its TypeScript module graph is kept as one cached bundle, which loads in one read
 * and one compile instead of a resolve, a stat, a read and a compile per module (docs/perf.md has
 * what that saves). The bundle is trusted as the transpiled files are: every source it holds must still have the size and mtime it had when recorded, or the
 * graph is loaded the ordinary way and recorded again. Modules that are not TypeScript (Node's
 * own, node_modules, plain .js) are required the ordinary way from inside. FERRY_BUNDLE=0, source
 * maps, or a hook installed by someone else: plain require().
 */
function requireBundled(entry) {
  if (!loader || !loader.cacheDir || loader.sourceMaps || process.env.FERRY_BUNDLE === '0') return require(entry);
  const file = path.join(loader.cacheDir, `bundle-${path.basename(entry, '.ts')}-${fnv(`${loader.settings}\0${entry}\0${process.version}`)}.js`);
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    /* not bundled yet */
  }
  if (text !== undefined) {
    const manifest = parseManifest(text);
    if (manifest && manifest.entry === entry && manifest.files.every(([f, size, mtimeMs]) => sameFile(f, size, mtimeMs))) {
      const holder = new Module(file, module);
      holder.filename = file;
      compileWithCodeCache(holder, text, file);
      return instantiate(entry, holder.exports, manifest.deps, module);
    }
  }
  if (Module._cache[entry]) return require(entry);
  loader.recorded = [];
  let exported;
  try {
    exported = require(entry);
  } finally {
    const recorded = loader.recorded;
    loader.recorded = null;
    if (exported !== undefined) writeBundle(file, entry, recorded);
  }
  return exported;
}

/**
 * Runs the bundle's text as `holder` with V8's code cache for it, kept beside it in `<bundle>.v8`:
 * the bytecode of the bundle and of every function the last run compiled, so that a start neither
 * parses the bundle nor compiles its functions again (measured: compiling the converter's 115 KB
 * bundle took 1.8-2.2 ms without the cache, 0.6-0.7 ms with it, before counting the functions it
 * runs). V8 checks a cache against its own version and flags, but against the source only by its
 * length, so the file starts with the bundle's size and mtime, and a cache for another bundle is
 * not offered. A missing, stale or rejected cache is written again when the process exits, once
 * the run has compiled what it uses.
 */
function compileWithCodeCache(holder, text, file) {
  const vm = require('node:vm');
  const cacheFile = `${file}.v8`;
  let key;
  let cachedData;
  try {
    const st = fs.statSync(file);
    key = `${st.size}:${st.mtimeMs}\n`;
    const buf = fs.readFileSync(cacheFile);
    if (buf.subarray(0, key.length).toString('latin1') === key) cachedData = buf.subarray(key.length);
  } catch {
    /* no cache yet */
  }
  const script = new vm.Script(Module.wrap(text), { filename: file, cachedData });
  if (key !== undefined && (cachedData === undefined || script.cachedDataRejected)) {
    process.once('exit', () => {
      try {
        const tmp = `${cacheFile}.${process.pid}`;
        fs.writeFileSync(tmp, Buffer.concat([Buffer.from(key, 'latin1'), script.createCachedData()]));
        fs.renameSync(tmp, cacheFile);
      } catch {
        /* a read-only cache: compiled from the text every time */
      }
    });
  }
  script.runInThisContext().call(holder.exports, holder.exports, (request) => holder.require(request), holder, file, path.dirname(file));
}

const MANIFEST_PREFIX = '//ferry-bundle ';

function parseManifest(text) {
  const end = text.indexOf('\n');
  if (!text.startsWith(MANIFEST_PREFIX) || end < 0) return null;
  try {
    return JSON.parse(text.slice(MANIFEST_PREFIX.length, end));
  } catch {
    return null;
  }
}

function sameFile(f, size, mtimeMs) {
  try {
    const st = fs.statSync(f);
    return st.size === size && st.mtimeMs === mtimeMs;
  } catch {
    return false;
  }
}

/** Each recorded module's literal require() targets, resolved from where it sits. */
function dependencies(recorded) {
  const deps = {};
  for (const { file, code } of recorded) {
    const m = Module._cache[file];
    if (!m) continue;
    const map = (deps[file] = {});
    for (const [, request] of code.matchAll(/\brequire\("([^"\n]+)"\)/g)) {
      try {
        map[request] = Module._resolveFilename(request, m, false);
      } catch {
        /* resolved at run time, the ordinary way */
      }
    }
  }
  return deps;
}

function writeBundle(file, entry, recorded) {
  try {
    const manifest = { entry, files: recorded.map((r) => [r.file, r.size, r.mtimeMs]), deps: dependencies(recorded) };
    let out = `${MANIFEST_PREFIX}${JSON.stringify(manifest)}\n'use strict';\nmodule.exports = {\n`;
    for (const r of recorded) out += `// ---- ${r.file}\n${JSON.stringify(r.file)}: function (exports, require, module, __filename, __dirname) {\n${r.code}\n},\n`;
    out += '};\n';
    const tmp = `${file}.${process.pid}`;
    fs.writeFileSync(tmp, out);
    fs.renameSync(tmp, file);
  } catch {
    /* a read-only cache: the ordinary way next time too */
  }
}

/** Runs bundled module `file` (once, as a real Module in require.cache) and returns its exports. */
function instantiate(file, defs, deps, parent) {
  const cached = Module._cache[file];
  if (cached) return cached.exports;
  const m = new Module(file, parent);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  const map = deps[file] ?? {};
  const req = (request) => {
    const target = map[request];
    return target && defs[target] ? instantiate(target, defs, deps, m) : m.require(target ?? request);
  };
  req.resolve = (request, options) => Module._resolveFilename(request, m, false, options);
  req.cache = Module._cache;
  req.main = require.main;
  Module._cache[file] = m;
  try {
    defs[file].call(m.exports, m.exports, req, m, file, path.dirname(file));
  } catch (e) {
    delete Module._cache[file];
    throw e;
  }
  m.loaded = true;
  return m.exports;
}

module.exports = { requireBundled };

/**
 * @swc/core's version, for the cache key. Read from the first node_modules above this file that
 * has it, the folders require() would search, because resolving it through require() took 0.6-0.7
 * ms of every start (timed inside six runs of a drop-in).
 */
function swcVersion() {
  for (const dir of Module._nodeModulePaths(__dirname)) {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, '@swc', 'core', 'package.json'), 'utf8')).version;
    } catch {
      /* not in this one */
    }
  }
  return 'unknown';
}
