#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node
'use strict';
// A file tool that never opens a TLS connection: the shebang drops NODE_EXTRA_CA_CERTS, whose
// certificate bundle Node otherwise parses at start (30-70 ms here, more than the rest of the start).
require('./register');
require('../src/bin/convert-legacy-stream').cli();
