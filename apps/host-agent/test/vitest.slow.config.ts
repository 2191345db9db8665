/**
 * Opt-in slow tests of the host agent (real Xen), not part of `npm test`:
 *   npx vitest run --config apps/host-agent/test/vitest.slow.config.ts
 */
import * as path from 'node:path';
import { defineConfig } from 'vitest/config';
// eslint-disable-next-line @nx/enforce-module-boundaries -- the slow config extends the root one (same SWC setup)
import base from '../../../vitest.config';

export default defineConfig({
  ...base,
  root: path.resolve(__dirname, '../../..'),
  test: {
    ...base.test,
    include: ['apps/host-agent/src/**/*.slow.test.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: 30 * 60_000,
  },
});
