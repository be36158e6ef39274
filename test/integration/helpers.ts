/** Shared helpers for integration tests: the broker/registry addresses and unique names. */
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, type Admin } from 'kafkajs';

export function brokers(): string[] {
  const b = process.env.KAFKA_BROKERS;
  if (!b) throw new Error('KAFKA_BROKERS is not set: integration tests run through the vitest global set-up');
  return b.split(',');
}

export function registryUrl(): string {
  const u = process.env.SCHEMA_REGISTRY_URL;
  if (!u) throw new Error('SCHEMA_REGISTRY_URL is not set: integration tests run through the vitest global set-up');
  return u;
}

/** A unique name for a topic, group or application id: tests never share names. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export function kafkaClient(clientId = uniqueName('test')): Kafka {
  return new Kafka({ clientId, brokers: brokers(), logLevel: logLevel.NOTHING });
}

export async function withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = kafkaClient().admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}
