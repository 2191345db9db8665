// Module boundaries are enforced, not just described: every project carries a
// scope and a type tag (see each package.json "nx.tags"), and these rules say
// what may import what.
import nx from '@nx/eslint-plugin';
import tseslint from 'typescript-eslint';

// A package is used through its declared entry points (package.json "exports"), never by reaching
// into its src/: not `@ferry/<pkg>/src/...`, not a relative path into another project's src/.
const deepImports = {
  group: ['@ferry/*/src', '@ferry/*/src/**', '**/libs/*/src', '**/libs/*/src/**', '**/apps/*/src', '**/apps/*/src/**'],
  message: "Import the package's entry point (@ferry/<pkg> or a subpath it exports), not its src/.",
};

export default [
  { ignores: ['**/node_modules/**', '**/dist/**', '**/.nx/**', 'test-artifacts/**', 'apps/dashboard/dist/**', '**/*.js', '**/*.mjs', '**/*.cjs'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts', '**/*.tsx'],
    plugins: { '@nx': nx },
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      'no-restricted-imports': ['error', { patterns: [deepImports] }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: false,
          allow: [],
          banTransitiveDependencies: true,
          depConstraints: [
            // The codec is the foundation: it depends on nothing of ours and nothing Node- or backend-only.
            {
              sourceTag: 'type:codec',
              onlyDependOnLibsWithTags: [],
              bannedExternalImports: ['@nestjs/*', 'bullmq', 'ioredis', '@aws-sdk/*', 'express', 'node:*', 'fs', 'net', 'http', 'crypto', 'stream'],
            },
            { sourceTag: 'type:contracts', onlyDependOnLibsWithTags: [], bannedExternalImports: ['@nestjs/*', 'bullmq', 'ioredis'] },
            { sourceTag: 'type:lib', onlyDependOnLibsWithTags: ['type:contracts', 'type:lib', 'type:codec'] },
            { sourceTag: 'type:testing', onlyDependOnLibsWithTags: ['type:contracts', 'type:lib', 'type:codec'] },
            { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:codec', 'type:contracts', 'type:lib', 'type:testing'] },
            // The CLI launches the services (`ferry serve`), so it alone may import apps.
            { sourceTag: 'type:cli', onlyDependOnLibsWithTags: ['type:codec', 'type:contracts', 'type:lib', 'type:app'] },
            // The browser app never reaches backend libraries.
            {
              sourceTag: 'scope:frontend',
              onlyDependOnLibsWithTags: ['scope:shared'],
              bannedExternalImports: ['@nestjs/*', 'bullmq', 'ioredis', '@aws-sdk/*'],
            },
            { sourceTag: 'scope:shared', onlyDependOnLibsWithTags: ['scope:shared'] },
          ],
        },
      ],
    },
  },
  {
    // Test helpers are for tests only: production sources may not import @ferry/testing.
    files: ['{apps,libs}/*/src/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [deepImports, { group: ['@ferry/testing', '@ferry/testing/*'], message: '@ferry/testing is for tests only.' }] }],
    },
  },
  {
    files: ['**/*.test.ts'],
    rules: { 'no-restricted-syntax': ['error', { selector: "MemberExpression[property.name='only']", message: 'No .only in committed tests.' }] },
  },
];
