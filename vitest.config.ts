import { defineConfig } from 'vitest/config';
import swc from 'unplugin-swc';

// One runner for the whole repo. SWC compiles the TypeScript so NestJS gets
// decorator metadata in tests exactly as it does at run time.
export default defineConfig({
  plugins: [
    swc.vite({
      jsc: {
        parser: { syntax: 'typescript', decorators: true },
        transform: { legacyDecorator: true, decoratorMetadata: true },
        target: 'es2022',
      },
    }),
  ],
  test: {
    include: ['{apps,libs}/*/{src,test}/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/*.slow.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    allowOnly: false,
    reporters: process.env.CI ? ['default', ['json', { outputFile: process.env.FERRY_TEST_REPORT ?? 'test-artifacts/vitest.json' }]] : ['default'],
  },
});
