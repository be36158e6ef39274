/**
 * The narrow client interface (types.ts) over kafkajs, used the way the engine uses it today: one
 * idempotent producer, maxInFlightRequests 1, sendBatch with acks=-1; reading through a consumer
 * with eachBatch. A spike for measuring (bench/clients.ts); the engine does not use it.
 *
 * kafkajs has no manual assignment: a reader is a member of its group (`groupId`) subscribed to the
 * topics of the wanted partitions; on every join it pauses the partitions it was not asked for and
 * moves the wanted ones to their positions (as partition-reader.ts does). So one reader per group,
 * and only while nothing else consumes in that group.
 */
import { Kafka, logLevel, type Admin, type Consumer, type IHeaders, type Message, type Producer } from 'kafkajs';
import type {
  ClientConfig,
  ClientProducer,
  ClientReader,
  IncomingRecord,
  OutgoingRecord,
  PartitionAck,
  PartitionBatch,
  ReaderOptions,
  StreamClient,
  TopicPartitionOffset,
} from './types.js';

const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

function toHeaders(h: IHeaders | undefined): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  if (!h) return out;
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    const one = Array.isArray(v) ? v[v.length - 1] : v;
    if (one !== undefined) out[k] = Buffer.isBuffer(one) ? one : Buffer.from(one);
  }
  return out;
}

class KafkajsProducer implements ClientProducer {
  private closed = false;

  constructor(private readonly producer: Producer) {}

  async send(records: readonly OutgoingRecord[]): Promise<PartitionAck[]> {
    const byTopic = new Map<string, Message[]>();
    const counts = new Map<string, PartitionAck>();
    for (const r of records) {
      let list = byTopic.get(r.topic);
      if (!list) byTopic.set(r.topic, (list = []));
      const m: Message = { key: r.key, value: r.value, partition: r.partition, timestamp: String(r.timestamp) };
      if (r.headers) m.headers = r.headers;
      list.push(m);
      const k = tpKey(r.topic, r.partition);
      const c = counts.get(k);
      if (c) c.count++;
      else counts.set(k, { topic: r.topic, partition: r.partition, baseOffset: -1, count: 1 });
    }
    const result = await this.producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
    });
    for (const md of result) {
      const c = counts.get(tpKey(md.topicName, md.partition));
      if (c && md.baseOffset !== undefined) c.baseOffset = Number(md.baseOffset);
    }
    const missing = [...counts.values()].filter((c) => c.baseOffset < 0);
    if (missing.length)
      throw new Error(`kafkajs answered no offset for ${missing.map((m) => `${m.topic}[${m.partition}]`).join(', ')}`);
    return [...counts.values()];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.producer.disconnect();
  }
}

class KafkajsReader implements ClientReader {
  private readonly positions = new Map<string, TopicPartitionOffset>();
  private stopped = false;
  private settle!: { resolve: () => void; reject: (e: unknown) => void };
  readonly done: Promise<void>;
  /** resolves on the first join: kafkajs commits only as a member of the group */
  private joined: Promise<void> | undefined;

  constructor(
    private readonly consumer: Consumer,
    private readonly admin: Admin,
    private readonly groupId: string,
  ) {
    this.done = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    // a failure is also seen through done; keep an unobserved one from crashing the process
    this.done.catch(() => undefined);
  }

  start(from: readonly TopicPartitionOffset[], onBatch: (batch: PartitionBatch) => void | Promise<void>): void {
    for (const f of from) this.positions.set(tpKey(f.topic, f.partition), { ...f });
    const topics = [...new Set(from.map((f) => f.topic))];
    const { consumer } = this;
    let markJoined!: () => void;
    this.joined = new Promise<void>((res) => (markJoined = res));
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      markJoined();
      for (const [topic, partitions] of Object.entries(e.payload.memberAssignment)) {
        const unwanted = partitions.filter((p) => !this.positions.has(tpKey(topic, p)));
        if (unwanted.length) consumer.pause([{ topic, partitions: unwanted }]);
        for (const p of partitions) {
          const pos = this.positions.get(tpKey(topic, p));
          if (pos) consumer.seek({ topic, partition: p, offset: String(pos.offset) });
        }
      }
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (!e.payload.restart) this.fail(e.payload.error);
    });
    const run = async (): Promise<void> => {
      await consumer.subscribe({ topics, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: true,
        // as the engine (its default partitionsConsumedConcurrently)
        partitionsConsumedConcurrently: 64,
        eachBatch: async ({ batch }) => {
          if (this.stopped) return;
          const pos = this.positions.get(tpKey(batch.topic, batch.partition));
          if (!pos) return;
          const records: IncomingRecord[] = [];
          for (const m of batch.messages) {
            const offset = Number(m.offset);
            if (offset < pos.offset) continue;
            records.push({
              offset,
              key: m.key,
              value: m.value,
              timestamp: Number(m.timestamp),
              headers: toHeaders(m.headers),
            });
          }
          pos.offset = Math.max(pos.offset, Number(batch.lastOffset()) + 1);
          try {
            await onBatch({
              topic: batch.topic,
              partition: batch.partition,
              records,
              nextOffset: pos.offset,
              highWatermark: Number(batch.highWatermark),
            });
          } catch (e) {
            this.fail(e);
          }
        },
      });
    };
    run().catch((e) => this.fail(e));
  }

  private fail(e: unknown): void {
    if (this.stopped) return;
    this.settle.reject(e);
    void this.stop();
  }

  async commit(offsets: readonly TopicPartitionOffset[]): Promise<void> {
    if (!this.joined) throw new Error('kafkajs commits as a member of the group: start() the reader first');
    await Promise.race([this.joined, this.done]);
    await this.consumer.commitOffsets(
      offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: String(o.offset) })),
    );
  }

  async committed(partitions: readonly { topic: string; partition: number }[]): Promise<TopicPartitionOffset[]> {
    const topics = [...new Set(partitions.map((p) => p.topic))];
    const answer = await this.admin.fetchOffsets({ groupId: this.groupId, topics });
    const by = new Map<string, number>();
    for (const t of answer) for (const p of t.partitions) by.set(tpKey(t.topic, p.partition), Number(p.offset));
    return partitions.map((p) => ({ ...p, offset: by.get(tpKey(p.topic, p.partition)) ?? -1 }));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.consumer.disconnect().catch(() => undefined);
    await this.admin.disconnect().catch(() => undefined);
    this.settle.resolve();
  }
}

export class KafkajsClient implements StreamClient {
  readonly name = 'kafkajs';
  private readonly kafka: Kafka;
  private readonly open = new Set<{ close(): Promise<void> }>();

  constructor(config: ClientConfig, kafka?: Kafka) {
    this.kafka = kafka ?? new Kafka({ clientId: config.clientId, brokers: config.brokers, logLevel: logLevel.NOTHING });
  }

  async producer(): Promise<ClientProducer> {
    // the engine's producer settings (streams.ts)
    const p = this.kafka.producer({
      allowAutoTopicCreation: false,
      idempotent: true,
      maxInFlightRequests: 1,
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
    });
    await p.connect();
    const producer = new KafkajsProducer(p);
    this.track(producer);
    return producer;
  }

  async reader(opts: ReaderOptions): Promise<ClientReader> {
    // the engine's consumer settings (streams.ts)
    const consumer = this.kafka.consumer({
      groupId: opts.groupId,
      maxBytesPerPartition: opts.maxBytesPerPartition ?? 2 * 1024 * 1024,
      maxWaitTimeInMs: opts.maxWaitMs ?? 100,
      allowAutoTopicCreation: false,
      retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 2000 },
    });
    const admin = this.kafka.admin();
    await consumer.connect();
    await admin.connect();
    const reader = new KafkajsReader(consumer, admin, opts.groupId);
    this.track({ close: () => reader.stop() });
    return reader;
  }

  private track(x: { close(): Promise<void> }): void {
    this.open.add(x);
  }

  async close(): Promise<void> {
    const all = [...this.open];
    this.open.clear();
    await Promise.all(all.map((x) => x.close().catch(() => undefined)));
  }
}
