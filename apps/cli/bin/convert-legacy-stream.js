#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node --max-semi-space-size=2
'use strict';
// A file tool that never opens a TLS connection: the shebang drops NODE_EXTRA_CA_CERTS, whose
// certificate bundle Node otherwise parses at start (30-70 ms here, more than the rest of the start).
// A young generation of at most 2 MiB: the converter holds little, and left to grow, V8's took the
// peak RSS from 50 to 55 MiB at 1 GiB and to 62-64 MiB at 8 GiB (54-55 MiB with the cap).
// Its modules load from one cached bundle (register.js requireBundled): a few ms of every start.
require('./register').requireBundled(require('node:path').join(__dirname, '../src/bin/convert-legacy-stream.ts')).cli();
