/**
 * The foundation chain on real parts: create a topic on the broker, register an Avro schema in the
 * registry, produce Avro records in the Confluent wire format, consume them and decode them.
 */
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { describe, expect, it } from 'vitest';
import { brokers, kafkaClient, registryUrl, uniqueName, withAdmin } from './helpers.js';

const schema = {
  type: 'record',
  name: 'SmokeRecord',
  namespace: 'unwantedmail.test',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'n', type: 'int' },
  ],
};

describe('smoke: broker + registry + Avro', () => {
  it('talks to a KRaft broker', async () => {
    const cluster = await withAdmin((a) => a.describeCluster());
    expect(cluster.brokers.length).toBeGreaterThanOrEqual(1);
    expect(brokers().length).toBeGreaterThanOrEqual(1);
  });

  it('produces and consumes Confluent-framed Avro records through the registry', async () => {
    const topic = uniqueName('smoke');
    await withAdmin((a) => a.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true }));
    const registry = new SchemaRegistry({ host: registryUrl() });
    const { id } = await registry.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(schema) },
      { subject: `${topic}-value` },
    );
    expect(id).toBeGreaterThan(0);
    expect(await registry.getLatestSchemaId(`${topic}-value`)).toBe(id);

    const kafka = kafkaClient();
    const producer = kafka.producer();
    await producer.connect();
    const sent = Array.from({ length: 20 }, (_, i) => ({ id: `r${i}`, n: i }));
    const messages = await Promise.all(sent.map(async (v) => ({ key: v.id, value: await registry.encode(id, v) })));
    // Confluent wire format: magic byte 0, then the 4-byte schema id
    expect(messages[0]!.value[0]).toBe(0);
    expect(messages[0]!.value.readInt32BE(1)).toBe(id);
    await producer.send({ topic, acks: -1, messages });
    await producer.disconnect();

    const consumer = kafka.consumer({ groupId: uniqueName('smoke-group') });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const received: { id: string; n: number }[] = [];
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          eachMessage: async ({ message }) => {
            received.push((await registry.decode(message.value!)) as { id: string; n: number });
            if (received.length === sent.length) resolve();
          },
        })
        .catch(reject);
    });
    await consumer.disconnect();
    expect(received.sort((a, b) => a.n - b.n)).toEqual(sent);
  });

  it('enforces BACKWARD compatibility in the registry', async () => {
    const subject = `${uniqueName('compat')}-value`;
    const registry = new SchemaRegistry({ host: registryUrl() });
    await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject });
    // adding a required field without a default is not backward compatible
    const incompatible = { ...schema, fields: [...schema.fields, { name: 'extra', type: 'string' }] };
    await expect(
      registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(incompatible) }, { subject }),
    ).rejects.toThrow();
    const compatible = {
      ...schema,
      fields: [...schema.fields, { name: 'extra', type: 'string', default: '' }],
    };
    const v2 = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(compatible) }, { subject });
    expect(v2.id).toBeGreaterThan(0);
  });
});
