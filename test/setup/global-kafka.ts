/**
 * Vitest global set-up for the integration project: a real Kafka broker (KRaft) and a real
 * schema registry. When KAFKA_BROKERS and SCHEMA_REGISTRY_URL are set, those are used as they are;
 * otherwise both are installed into the cache on first use (Maven Central) and started here, and
 * stopped after the run. Workers inherit the two variables.
 */
import { startLocalStack, type LocalStack } from '../../scripts/kafka/local.js';

let stack: LocalStack | undefined;
process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';

export async function setup(): Promise<void> {
  if (process.env.KAFKA_BROKERS && process.env.SCHEMA_REGISTRY_URL) return;
  if (process.env.KAFKA_BROKERS || process.env.SCHEMA_REGISTRY_URL)
    throw new Error('set both KAFKA_BROKERS and SCHEMA_REGISTRY_URL to use an existing cluster, or neither');
  stack = await startLocalStack({ nodes: 1 });
  process.env.KAFKA_BROKERS = stack.brokers.join(',');
  process.env.SCHEMA_REGISTRY_URL = stack.registryUrl;
  process.env.UM_TEST_LOCAL_STACK = '1';
}

export async function teardown(): Promise<void> {
  await stack?.stop();
  stack = undefined;
}
