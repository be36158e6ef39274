/**
 * Local Kafka and registry, by hand:
 *   npx tsx scripts/kafka/cli.ts install          resolve both into the cache
 *   npx tsx scripts/kafka/cli.ts start [--nodes 3] run until Ctrl-C, printing the addresses
 */
import { installKafka, installRegistry, startLocalStack } from './local.js';

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'install') {
  const t0 = Date.now();
  console.log(await installKafka());
  console.log(await installRegistry());
  console.log(`installed in ${Date.now() - t0} ms`);
} else if (cmd === 'start') {
  const nodes = rest.includes('--nodes') && rest[rest.indexOf('--nodes') + 1] === '3' ? 3 : 1;
  const stack = await startLocalStack({ nodes });
  console.log(`KAFKA_BROKERS=${stack.brokers.join(',')}`);
  console.log(`SCHEMA_REGISTRY_URL=${stack.registryUrl}`);
  console.log(`kafka ready in ${stack.kafka.startupMs} ms, registry ready in ${stack.registry.startupMs} ms`);
  const stop = async (): Promise<void> => {
    await stack.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
} else {
  console.error('usage: cli.ts install | start [--nodes 3]');
  process.exit(2);
}
