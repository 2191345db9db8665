'use strict';
// Where the CLI keeps code it derives and loads back: the TypeScript loader's transpiled files
// (register.js) and the converters' native helper (src/native.ts). No side effects; plain
// JavaScript so that register.js can use it before any TypeScript loads.
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

/**
 * The folders `name` may be cached in, best first, each created and writable when it is reached
 * (a generator: a caller content with the first touches no other): `override` when
 * given, the repository's node_modules/.cache/<name> (as trusted as the code beside it), then
 * <tmp>/<name>-<uid>, which is shared with other users and so used only when this user owns it
 * and nobody else may write to it (code is loaded from there).
 */
function* cacheDirs(name, override) {
  const shared = path.join(os.tmpdir(), `${name}-${process.getuid ? process.getuid() : 'u'}`);
  for (const dir of [override, path.join(__dirname, '..', '..', '..', 'node_modules', '.cache', name), shared]) {
    if (!dir) continue;
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      fs.accessSync(dir, fs.constants.W_OK);
      if (dir === shared) {
        const st = fs.statSync(dir);
        if (process.getuid && (st.uid !== process.getuid() || (st.mode & 0o022) !== 0)) continue;
      }
    } catch {
      continue; // not usable: the next
    }
    yield dir;
  }
}

module.exports = { fnv, cacheDirs };
