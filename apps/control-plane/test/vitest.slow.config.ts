/**
 * Opt-in slow tests of the control plane (real host-agent processes), not part of `npm test`:
 *   npx vitest run --config apps/control-plane/test/vitest.slow.config.ts
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
    include: ['apps/control-plane/test/**/*.slow.test.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: 10 * 60_000,
  },
});
