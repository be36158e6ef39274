/**
 * The narrow client interface (types.ts) over @platformatic/kafka (1.x: the line that supports
 * Node.js 20). A spike for measuring (bench/clients.ts); the engine does not use it.
 *
 * - Producing: one idempotent Producer (the library forces acks=all and one request in flight per
 *   connection for it), `send` with the partition of every record given.
 * - Reading: manual assignment through the Consumer's `fetch` (one Fetch request per partition
 *   leader, from the positions this reader keeps), without the library's MessagesStream: the stream
 *   is driven by a group assignment, hands over one message object at a time and drops the high
 *   watermark, while the engine needs batches of given partitions with it.
 * - Committing: the Consumer's `commit` for the reader's group. The library commits only as a
 *   member (a commit with its initial empty member id makes the broker close the connection), so
 *   the first commit joins the group, subscribed to no topic: the partitions stay this reader's
 *   own choice.
 */
import { Consumer, IS_CONTROL, ProduceAcks, Producer, type MessageToProduce } from '@platformatic/kafka';
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

type FetchRequestTopic = Parameters<Consumer['fetch']>[0]['topics'][number];

const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

class PlatformaticProducer implements ClientProducer {
  private closed = false;

  constructor(private readonly producer: Producer) {}

  async send(records: readonly OutgoingRecord[]): Promise<PartitionAck[]> {
    const counts = new Map<string, PartitionAck>();
    const messages: MessageToProduce[] = new Array(records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const m: MessageToProduce = {
        topic: r.topic,
        partition: r.partition,
        timestamp: BigInt(r.timestamp),
      };
      if (r.key !== null) m.key = r.key;
      if (r.value !== null) m.value = r.value;
      // header keys go through the (no-op) serializers too: Buffers
      if (r.headers) m.headers = new Map(Object.entries(r.headers).map(([hk, hv]) => [Buffer.from(hk), hv]));
      messages[i] = m;
      const k = tpKey(r.topic, r.partition);
      const c = counts.get(k);
      if (c) c.count++;
      else counts.set(k, { topic: r.topic, partition: r.partition, baseOffset: -1, count: 1 });
    }
    const result = await this.producer.send({ messages, acks: ProduceAcks.ALL });
    for (const o of result.offsets ?? []) {
      const c = counts.get(tpKey(o.topic, o.partition));
      if (c) c.baseOffset = Number(o.offset);
    }
    const missing = [...counts.values()].filter((c) => c.baseOffset < 0);
    if (missing.length)
      throw new Error(
        `@platformatic/kafka answered no offset for ${missing.map((m) => `${m.topic}[${m.partition}]`).join(', ')}`,
      );
    return [...counts.values()];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.producer.close();
  }
}

interface Position {
  topic: string;
  partition: number;
  offset: number;
}

class PlatformaticReader implements ClientReader {
  private readonly positions = new Map<string, Position>();
  private stopped = false;
  private running: Promise<void> = Promise.resolve();
  private settle!: { resolve: () => void; reject: (e: unknown) => void };
  readonly done: Promise<void>;

  constructor(
    private readonly consumer: Consumer,
    private readonly opts: Required<Omit<ReaderOptions, 'groupId'>>,
  ) {
    this.done = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.done.catch(() => undefined);
  }

  start(from: readonly TopicPartitionOffset[], onBatch: (batch: PartitionBatch) => void | Promise<void>): void {
    for (const f of from) this.positions.set(tpKey(f.topic, f.partition), { ...f });
    this.running = this.loop(onBatch).then(
      () => this.settle.resolve(),
      (e) => {
        if (this.stopped) this.settle.resolve();
        else this.settle.reject(e);
        this.stopped = true;
      },
    );
  }

  /** Rounds of one Fetch per partition leader, in parallel, until stopped. */
  private async loop(onBatch: (batch: PartitionBatch) => void | Promise<void>): Promise<void> {
    const topics = [...new Set([...this.positions.values()].map((p) => p.topic))];
    while (!this.stopped) {
      const md = await this.consumer.metadata({ topics });
      const names = new Map<string, string>();
      const byLeader = new Map<number, Map<string, FetchRequestTopic>>();
      for (const pos of this.positions.values()) {
        const t = md.topics.get(pos.topic);
        const pmd = t?.partitions[pos.partition];
        if (!t || !pmd) throw new Error(`no metadata for ${pos.topic}[${pos.partition}]`);
        names.set(t.id, pos.topic);
        let req = byLeader.get(pmd.leader);
        if (!req) byLeader.set(pmd.leader, (req = new Map()));
        let rt = req.get(t.id);
        if (!rt) req.set(t.id, (rt = { topicId: t.id, partitions: [] }));
        rt.partitions.push({
          partition: pos.partition,
          fetchOffset: BigInt(pos.offset),
          partitionMaxBytes: this.opts.maxBytesPerPartition,
          currentLeaderEpoch: -1,
          lastFetchedEpoch: -1,
        });
      }
      await Promise.all(
        [...byLeader].map(async ([node, req]) => {
          const response = await this.consumer.fetch({
            node,
            topics: [...req.values()],
            maxWaitTime: this.opts.maxWaitMs,
            minBytes: 1,
          });
          if (this.stopped) return;
          for (const tr of response.responses) {
            const topic = names.get(tr.topicId);
            if (topic === undefined) continue;
            for (const pr of tr.partitions) {
              const pos = this.positions.get(tpKey(topic, pr.partitionIndex));
              if (!pos) continue;
              const records: IncomingRecord[] = [];
              let next = pos.offset;
              for (const b of pr.records ?? []) {
                const last = Number(b.firstOffset) + b.lastOffsetDelta;
                if (last + 1 > next) next = last + 1;
                if (b.attributes & IS_CONTROL) continue;
                const base = Number(b.firstOffset);
                const ts = Number(b.firstTimestamp);
                for (const r of b.records) {
                  const offset = base + r.offsetDelta;
                  if (offset < pos.offset) continue;
                  const headers: Record<string, Buffer> = {};
                  for (const [hk, hv] of r.headers) if (hk && hv) headers[hk.toString()] = hv;
                  records.push({
                    offset,
                    key: r.key,
                    value: r.value,
                    timestamp: ts + Number(r.timestampDelta),
                    headers,
                  });
                }
              }
              pos.offset = next;
              await onBatch({
                topic,
                partition: pr.partitionIndex,
                records,
                nextOffset: next,
                highWatermark: Number(pr.highWatermark),
              });
            }
          }
        }),
      );
    }
  }

  async commit(offsets: readonly TopicPartitionOffset[]): Promise<void> {
    // the library commits as a member of the group (its generation and member id): join it first,
    // with no topics (the partitions are this reader's own choice)
    if (!this.consumer.memberId) await this.consumer.joinGroup({});
    await this.consumer.commit({
      offsets: offsets.map((o) => ({
        topic: o.topic,
        partition: o.partition,
        offset: BigInt(o.offset),
        leaderEpoch: -1,
      })),
    });
  }

  async committed(partitions: readonly { topic: string; partition: number }[]): Promise<TopicPartitionOffset[]> {
    const byTopic = new Map<string, number[]>();
    for (const p of partitions) {
      let l = byTopic.get(p.topic);
      if (!l) byTopic.set(p.topic, (l = []));
      l.push(p.partition);
    }
    const answer = await this.consumer.listCommittedOffsets({
      topics: [...byTopic].map(([topic, ps]) => ({ topic, partitions: ps })),
    });
    return partitions.map((p) => {
      const o = answer.get(p.topic)?.[p.partition];
      return { ...p, offset: o === undefined ? -1 : Number(o) };
    });
  }

  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      // a fetch in flight ends within maxWaitMs
      await this.running.catch(() => undefined);
    }
    this.settle.resolve();
    await this.consumer.close().catch(() => undefined);
  }
}

export class PlatformaticClient implements StreamClient {
  readonly name = 'platformatic';
  private readonly open = new Set<{ close(): Promise<void> }>();

  constructor(private readonly config: ClientConfig) {}

  async producer(): Promise<ClientProducer> {
    const p = new Producer({
      clientId: this.config.clientId,
      bootstrapBrokers: this.config.brokers,
      idempotent: true,
      acks: ProduceAcks.ALL,
      autocreateTopics: false,
      retries: 5,
      retryDelay: 100,
    });
    const producer = new PlatformaticProducer(p);
    this.open.add(producer);
    return producer;
  }

  async reader(opts: ReaderOptions): Promise<ClientReader> {
    const consumer = new Consumer({
      clientId: this.config.clientId,
      bootstrapBrokers: this.config.brokers,
      groupId: opts.groupId,
      autocommit: false,
      retries: 5,
      retryDelay: 100,
    });
    const reader = new PlatformaticReader(consumer, {
      maxWaitMs: opts.maxWaitMs ?? 100,
      maxBytesPerPartition: opts.maxBytesPerPartition ?? 2 * 1024 * 1024,
    });
    this.open.add({ close: () => reader.stop() });
    return reader;
  }

  async close(): Promise<void> {
    const all = [...this.open];
    this.open.clear();
    await Promise.all(all.map((x) => x.close().catch(() => undefined)));
  }
}
