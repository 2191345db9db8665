'use strict';
// A lean TypeScript-from-source loader for the benchmark: @swc/core's transformSync
// behind a require hook (pirates), without @swc-node/register, which loads the
// whole TypeScript compiler (~0.6 s and ~90 MB before the first line of ours runs).
// The benchmark runs convert-legacy-stream both ways to show what the bin pays.
//   node -r ./libs/stream-codec/bench/convert-loader.cjs apps/cli/src/bin/convert-legacy-stream.ts ...
const { transformSync } = require('@swc/core');
const { addHook } = require('pirates');

addHook(
  (code, filename) =>
    transformSync(code, {
      filename,
      module: { type: 'commonjs' },
      jsc: { parser: { syntax: 'typescript', decorators: true }, target: 'es2022', transform: { legacyDecorator: true, decoratorMetadata: true } },
      sourceMaps: false,
      swcrc: false,
    }).code,
  { exts: ['.ts'], ignoreNodeModules: false },
);
