/**
 * A simulated legacy system for the demo and the benchmark: it follows `mail-events` (in a
 * consumer group of its own, from the end) and writes, for each mail, what an older rule engine
 * decided to `legacy-decisions`: the §3 rules without user preferences or tenant policies, with a
 * configurable share of deliberate disagreements (chosen by a hash of the messageId, so a re-run
 * disagrees on the same mails) and its own delay (the record timestamp is receivedAt + delay).
 */
import { Partitioners, type Consumer, type Kafka, type Producer } from 'kafkajs';
import murmurhash from 'murmurhash';
import type { Logger } from 'pino';
import { decide } from '../processors/logic/decide.js';
import type { LegacyDecision, MailAction, MailEvent } from '../processors/logic/model.js';
import type { Serde } from '../runtime/serdes.js';

export interface LegacySimOptions {
  kafka: Kafka;
  groupId: string;
  mailEventsTopic: string;
  legacyTopic: string;
  mailEvents: Serde<MailEvent>;
  legacyDecisions: Serde<LegacyDecision>;
  /** share of mails the legacy system decides differently, 0..1 (default 0.01) */
  disagree?: number;
  /** event-time delay of the legacy decision (default 2000 ms) */
  delayMs?: number;
  /** read mail-events from the beginning instead of the end */
  fromBeginning?: boolean;
  logger?: Pick<Logger, 'warn'>;
}

const OTHER: Record<MailAction, MailAction> = { INBOX: 'PROMOTIONS', PROMOTIONS: 'JUNK', JUNK: 'INBOX' };

/** What the simulated legacy system decides for a mail. */
export function legacyDecision(e: MailEvent, disagree: number, delayMs: number): LegacyDecision {
  let action = decide(e, undefined, undefined).action;
  if (murmurhash.v3(e.messageId, 7) % 10_000 < disagree * 10_000) action = OTHER[action];
  return {
    messageId: e.messageId,
    tenantId: e.tenantId,
    mailboxId: e.mailboxId,
    action,
    decidedAt: e.receivedAt + delayMs,
  };
}

export class LegacySimulator {
  private consumer: Consumer | undefined;
  private producer: Producer | undefined;
  readonly stats = { decisions: 0, disagreements: 0 };

  constructor(private readonly o: LegacySimOptions) {}

  async start(): Promise<void> {
    const o = this.o;
    await Promise.all([o.mailEvents.init?.(), o.legacyDecisions.init?.()]);
    this.producer = o.kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: false,
    });
    await this.producer.connect();
    this.consumer = o.kafka.consumer({ groupId: o.groupId, maxWaitTimeInMs: 200 });
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: [o.mailEventsTopic], fromBeginning: o.fromBeginning ?? false });
    const disagree = o.disagree ?? 0.01;
    const delayMs = o.delayMs ?? 2000;
    await this.consumer.run({
      eachBatch: async ({ batch }) => {
        const values = batch.messages.map((m) => m.value ?? null);
        await o.mailEvents.prepare?.(values);
        const out = [];
        for (const m of batch.messages) {
          if (!m.value) continue;
          let e: MailEvent;
          try {
            e = o.mailEvents.deserialize(batch.topic, m.value);
          } catch {
            continue;
          }
          const l = legacyDecision(e, disagree, delayMs);
          if (l.action !== decide(e, undefined, undefined).action) this.stats.disagreements++;
          this.stats.decisions++;
          out.push({
            key: l.mailboxId,
            value: o.legacyDecisions.serialize(o.legacyTopic, l),
            timestamp: String(l.decidedAt),
          });
        }
        if (out.length) await this.producer!.send({ topic: o.legacyTopic, acks: -1, messages: out });
      },
    });
  }

  async stop(): Promise<void> {
    await this.consumer?.disconnect().catch(() => undefined);
    await this.producer?.disconnect().catch(() => undefined);
  }
}
