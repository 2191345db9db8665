#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node
'use strict';
// A file tool that never opens a TLS connection: the shebang drops NODE_EXTRA_CA_CERTS, whose
// certificate bundle Node otherwise parses at start (30-70 ms here, more than the rest of the start).
// Its modules load from one cached bundle (register.js requireBundled): a few ms of every start.
require('./register').requireBundled(require('node:path').join(__dirname, '../src/bin/convert-legacy-stream.ts')).cli();
