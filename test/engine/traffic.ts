/**
 * Live traffic while the service runs: a LiveScenario chunk every tick, its interactions first and
 * then its mails (each acknowledged, acks=all, by an idempotent producer), so each partition holds
 * its records in event-time order. Remembers when every mail was sent and acknowledged (for
 * "processing resumes within N s" measurements). A failed send is counted and the loop goes on;
 * the tests build their reference from what the input topics hold in the end, so a partial write
 * is never a false alarm.
 */
import type { Producer } from 'kafkajs';
import { sendInteractions, sendMails, type ServiceTopics } from './io.js';
import type { LiveScenario } from './scenario.js';

export class LiveTraffic {
  /** per mail eventId: wall-clock times of the send call and of its acknowledgement */
  readonly sent = new Map<string, { sentAt: number; ackedAt: number }>();
  /** eventIds of the interactions whose send was acknowledged */
  readonly ackedInteractions = new Set<string>();
  mails = 0;
  interactions = 0;
  errors = 0;
  lastError: string | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private producer: Producer | undefined;

  constructor(
    private readonly svc: ServiceTopics,
    private readonly scenario: LiveScenario,
    private readonly chunksPerSecond: number,
  ) {}

  async start(): Promise<void> {
    this.producer = this.svc.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await this.producer.connect();
    this.running = true;
    this.loop = this.run();
  }

  /**
   * kafkajs' idempotent producer can stay broken after a partition leader dies (its sequence
   * numbers no longer match what the new leader has): after a few failures in a row, a new one.
   */
  private async renewProducer(): Promise<void> {
    const old = this.producer;
    this.producer = this.svc.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await this.producer.connect();
    await old?.disconnect().catch(() => undefined);
  }

  private async run(): Promise<void> {
    let failures = 0;
    const interval = 1000 / this.chunksPerSecond;
    let next = Date.now();
    while (this.running) {
      const chunk = this.scenario.next();
      const sentAt = Date.now();
      if (failures >= 3) {
        failures = 0;
        await this.renewProducer().catch(() => undefined);
      }
      const p = this.producer!;
      try {
        await sendInteractions(p, this.svc, chunk.interactions);
        this.interactions += chunk.interactions.length;
        for (const i of chunk.interactions) this.ackedInteractions.add(i.eventId);
      } catch (e) {
        this.errors++;
        failures++;
        this.lastError = (e as Error).message;
      }
      try {
        await sendMails(p, this.svc, chunk.mails);
        const ackedAt = Date.now();
        for (const m of chunk.mails) this.sent.set(m.eventId, { sentAt, ackedAt });
        this.mails += chunk.mails.length;
        failures = 0;
      } catch (e) {
        this.errors++;
        failures++;
        this.lastError = (e as Error).message;
      }
      next += interval;
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      else next = Date.now();
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await this.producer?.disconnect();
  }

  /** First acknowledgement of a mail sent after `t` (the producer's own recovery after a fault). */
  firstAckAfter(t: number): number | undefined {
    let best: number | undefined;
    for (const s of this.sent.values()) if (s.sentAt >= t && (best === undefined || s.ackedAt < best)) best = s.ackedAt;
    return best;
  }
}
