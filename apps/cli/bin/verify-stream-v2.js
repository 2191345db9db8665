#!/usr/bin/env node
'use strict';
require('./register');
require('../src/bin/verify-stream-v2').cli();
