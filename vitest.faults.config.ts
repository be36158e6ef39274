import { defineConfig } from 'vitest/config';

/**
 * `npm run test:faults`: broker and group fault tests. Each file starts its own 3-node KRaft cluster
 * and schema registry (scripts/kafka/local.ts), so there is no global set-up; not part of `npm test`.
 */
export default defineConfig({
  test: {
    name: 'faults',
    include: ['test/faults/**/*.test.ts'],
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
    testTimeout: 420_000,
    hookTimeout: 240_000,
  },
});
