/** Opt-in slow tests of the host agent (real Xen): `npx vitest run --config apps/host-agent/vitest.slow.config.ts`. */
import { defineConfig } from 'vitest/config';
import base from '../../vitest.config';

export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: ['apps/host-agent/src/**/*.slow.test.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: 30 * 60_000,
  },
});
