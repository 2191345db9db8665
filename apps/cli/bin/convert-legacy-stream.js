#!/usr/bin/env node
'use strict';
require('./register');
require('../src/bin/convert-legacy-stream').cli();
