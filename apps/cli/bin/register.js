'use strict';
// One place that sets up TypeScript-from-source for every bin and service.
const path = require('node:path');
process.env.SWC_NODE_PROJECT ??= path.join(__dirname, '..', '..', '..', 'tsconfig.base.json');
require('@swc-node/register');
