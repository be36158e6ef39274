import { defineConfig } from 'vitest/config';

/**
 * Two projects: `unit` (pure logic, in-process stores, no broker) and `integration` (a real Kafka
 * broker and schema registry, started by test/setup/global-kafka.ts unless KAFKA_BROKERS and
 * SCHEMA_REGISTRY_URL point at existing ones). `npm test` runs both.
 */
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/setup/global-kafka.ts'],
          pool: 'forks',
          // one broker, two cores: integration files run one after another, in one fork
          poolOptions: { forks: { singleFork: true } },
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
