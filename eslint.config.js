// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'coverage/', '.cache/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  {
    // layering: the engine knows nothing of the application
    files: ['runtime/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/processors/**', '**/topology/**', '**/cli/**', '**/bench/**', '**/scripts/**', '**/test/**'],
              message: 'runtime/ is the generic stream engine: it imports no application, CLI, bench or test code',
            },
          ],
        },
      ],
    },
  },
  {
    // layering: the CLI (the product) does not depend on the benchmarks; demo traffic is in demo/
    files: ['cli/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/bench/**', '**/test/**'],
              message: 'cli/ imports no bench or test code (demo traffic: demo/)',
            },
          ],
        },
      ],
    },
  },
);
