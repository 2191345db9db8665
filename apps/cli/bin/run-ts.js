#!/usr/bin/env node
'use strict';
// Runs a TypeScript entry point straight from source: SWC transpiles on load
// (with decorator metadata, which NestJS needs), so no build step stands
// between `npm ci` and a working command.
const path = require('node:path');
require('./register');
const entry = process.argv[2];
if (!entry) {
  console.error('usage: run-ts.js FILE.ts [args...]');
  process.exit(2);
}
process.argv.splice(1, 2, path.resolve(entry));
// Load the entry as the main module, so `require.main === module` holds in it as with plain node.
require('node:module')._load(path.resolve(entry), null, true);
