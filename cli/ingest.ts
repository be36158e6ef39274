/**
 * Mirror ingest (§6): `POST /v1/mail-events` (also `/v1/ingest/mail-events`) takes one JSON mail
 * event or an array of up to UM_INGEST_MAX_BATCH, validates every event (zod), and produces them
 * to `mail-events` keyed by mailboxId (Kafka's default murmur2 partitioner, like every producer of
 * the co-partitioned topics) with acks=all. It answers 202 `{accepted: n}` only after the broker
 * acknowledged; 400 naming each bad field (nothing of a bad batch is produced); 503 with
 * Retry-After when more than UM_INGEST_MAX_IN_FLIGHT events wait for the broker.
 *
 * With UM_MIRROR_TO_URL, a tenant-sticky sample (UM_MIRROR_PERCENT of tenants, by
 * murmur3(tenantId) % 100) of the accepted events is also sent to another instance's ingest
 * endpoint (staging), asynchronously, through a bounded queue: a slow or failing staging never
 * slows or fails this path; drops are counted.
 */
import type { FastifyInstance } from 'fastify';
import { Partitioners, type Kafka, type Producer } from 'kafkajs';
import murmurhash from 'murmurhash';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { z } from 'zod';
import type { MailEvent } from '../processors/logic/model.js';
import type { Serde } from '../runtime/serdes.js';

const auth = z.enum(['PASS', 'FAIL', 'NONE']);
const TIMESTAMP_MESSAGE = 'must be epoch milliseconds or an ISO 8601 date-time';
const timestamp = z.union(
  [
    z.number().int().positive(),
    z
      .string()
      .datetime({ offset: true })
      .transform((s) => Date.parse(s)),
  ],
  {
    errorMap: (issue, ctx) => (ctx.data === undefined ? { message: 'Required' } : { message: TIMESTAMP_MESSAGE }),
  },
);

/** One mail event as JSON (§2 MailEvent); unknown fields are ignored. */
export const mailEventJson = z.object({
  eventId: z.string().min(1).max(256),
  tenantId: z.string().min(1).max(256),
  mailboxId: z.string().min(1).max(512),
  messageId: z.string().min(1).max(1024),
  receivedAt: timestamp,
  senderAddress: z
    .string()
    .min(3)
    .max(512)
    .regex(/^[^@\s]+@[^@\s]+$/, 'must be an address local@domain'),
  senderDomain: z
    .string()
    .min(1)
    .max(255)
    .transform((s) => s.toLowerCase()),
  spf: auth,
  dkim: auth,
  dmarc: auth,
  spamScore: z.number().min(0).max(1),
  bulkScore: z.number().int().min(0).max(9),
  hasListUnsubscribe: z.boolean(),
});

export interface FieldError {
  /** index in the batch (0 for a single event) */
  index: number;
  field: string;
  message: string;
}

/** Validates a body: one event or an array. Returns the events, or every problem found. */
export function parseMailEvents(
  body: unknown,
  maxBatch: number,
): { ok: true; events: MailEvent[] } | { ok: false; errors: FieldError[] } {
  const items = Array.isArray(body) ? body : [body];
  if (Array.isArray(body) && body.length === 0)
    return { ok: false, errors: [{ index: 0, field: '(body)', message: 'an empty array carries no event' }] };
  if (items.length > maxBatch)
    return {
      ok: false,
      errors: [
        { index: maxBatch, field: '(body)', message: `at most ${maxBatch} events per request, got ${items.length}` },
      ],
    };
  const events: MailEvent[] = [];
  const errors: FieldError[] = [];
  items.forEach((item, index) => {
    const r = mailEventJson.safeParse(item);
    if (r.success) events.push(r.data);
    else
      for (const i of r.error.issues) errors.push({ index, field: i.path.join('.') || '(event)', message: i.message });
  });
  return errors.length ? { ok: false, errors } : { ok: true, events };
}

export class IngestMetrics {
  readonly requests: Counter<'status'>;
  readonly events: Counter<'outcome'>;
  readonly inFlight: Gauge;
  readonly latency: Histogram;
  readonly mirror: Counter<'outcome'>;
  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: 'um_ingest_requests_total',
      help: 'Ingest requests, by HTTP status',
      labelNames: ['status'],
      registers,
    });
    this.events = new Counter({
      name: 'um_ingest_events_total',
      help: 'Ingested events: accepted (acknowledged by the broker), rejected (invalid), refused (backed up), failed (produce error)',
      labelNames: ['outcome'],
      registers,
    });
    this.inFlight = new Gauge({
      name: 'um_ingest_in_flight',
      help: 'Events accepted by ingest and not yet acknowledged by the broker',
      registers,
    });
    this.latency = new Histogram({
      name: 'um_ingest_request_seconds',
      help: 'Ingest request time, validation to broker acknowledgement',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.mirror = new Counter({
      name: 'um_ingest_mirror_events_total',
      help: 'Events teed to UM_MIRROR_TO_URL: sent, dropped (queue full), failed (staging error), skipped (tenant not sampled)',
      labelNames: ['outcome'],
      registers,
    });
  }
}

/** Tenant-sticky sampling: a tenant is mirrored when murmur3(tenantId) % 100 < percent. */
export function mirrored(tenantId: string, percent: number): boolean {
  return murmurhash.v3(tenantId, 0) % 100 < percent;
}

/** The asynchronous tee to a staging instance: bounded queue, one sender, drops counted. */
export class Mirror {
  private queue: MailEvent[] = [];
  private sending = false;
  private closed = false;
  constructor(
    private readonly o: {
      url: string;
      percent: number;
      token?: string;
      maxQueue?: number;
      batch?: number;
      timeoutMs?: number;
      metrics?: IngestMetrics;
      logger?: Pick<Logger, 'warn'>;
    },
  ) {}

  offer(events: readonly MailEvent[]): void {
    const max = this.o.maxQueue ?? 10_000;
    for (const e of events) {
      if (!mirrored(e.tenantId, this.o.percent)) {
        this.o.metrics?.mirror.inc({ outcome: 'skipped' });
        continue;
      }
      if (this.queue.length >= max || this.closed) {
        this.o.metrics?.mirror.inc({ outcome: 'dropped' });
        continue;
      }
      this.queue.push(e);
    }
    if (!this.sending && this.queue.length) void this.drain();
  }

  private async drain(): Promise<void> {
    this.sending = true;
    try {
      while (this.queue.length && !this.closed) {
        const batch = this.queue.splice(0, this.o.batch ?? 500);
        try {
          const r = await fetch(`${this.o.url.replace(/\/$/, '')}/v1/mail-events`, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              ...(this.o.token ? { authorization: `Bearer ${this.o.token}` } : {}),
            },
            body: JSON.stringify(batch),
            signal: AbortSignal.timeout(this.o.timeoutMs ?? 5000),
          });
          await r.arrayBuffer().catch(() => undefined);
          if (!r.ok) throw new Error(`staging answered ${r.status}`);
          this.o.metrics?.mirror.inc({ outcome: 'sent' }, batch.length);
        } catch (e) {
          this.o.metrics?.mirror.inc({ outcome: 'failed' }, batch.length);
          this.o.logger?.warn({ err: (e as Error).message, events: batch.length }, 'mirror to staging failed');
        }
      }
    } finally {
      this.sending = false;
    }
  }

  close(): void {
    this.closed = true;
    if (this.queue.length) this.o.metrics?.mirror.inc({ outcome: 'dropped' }, this.queue.length);
    this.queue = [];
  }
}

export interface IngestOptions {
  kafka: Kafka;
  topic: string;
  serde: Serde<MailEvent>;
  metrics: IngestMetrics;
  maxBatch: number;
  maxInFlight: number;
  mirror?: Mirror;
  logger?: Pick<Logger, 'warn'>;
}

export interface Ingest {
  register(app: FastifyInstance): void;
  close(): Promise<void>;
}

export async function createIngest(o: IngestOptions): Promise<Ingest> {
  const producer: Producer = o.kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
    idempotent: false,
  });
  await producer.connect();
  await o.serde.init?.();
  let inFlight = 0;
  const handler = async (
    body: unknown,
  ): Promise<{ status: number; body: unknown; headers?: Record<string, string> }> => {
    const parsed = parseMailEvents(body, o.maxBatch);
    if (!parsed.ok) {
      o.metrics.events.inc({ outcome: 'rejected' }, Array.isArray(body) ? body.length : 1);
      return {
        status: 400,
        body: { error: 'INVALID_MAIL_EVENTS', message: 'nothing was produced', errors: parsed.errors },
      };
    }
    const n = parsed.events.length;
    if (inFlight + n > o.maxInFlight) {
      o.metrics.events.inc({ outcome: 'refused' }, n);
      return {
        status: 503,
        headers: { 'retry-after': '1' },
        body: { error: 'BACKED_UP', message: 'the producer is backed up; retry after the Retry-After delay' },
      };
    }
    inFlight += n;
    o.metrics.inFlight.set(inFlight);
    try {
      await producer.send({
        topic: o.topic,
        acks: -1,
        messages: parsed.events.map((e) => ({
          key: e.mailboxId,
          value: o.serde.serialize(o.topic, e),
          timestamp: String(e.receivedAt),
        })),
      });
    } catch (e) {
      o.metrics.events.inc({ outcome: 'failed' }, n);
      o.logger?.warn({ err: (e as Error).message, events: n }, 'ingest produce failed');
      return {
        status: 503,
        headers: { 'retry-after': '5' },
        body: { error: 'PRODUCE_FAILED', message: 'the broker did not acknowledge the events; retry' },
      };
    } finally {
      inFlight -= n;
      o.metrics.inFlight.set(inFlight);
    }
    o.metrics.events.inc({ outcome: 'accepted' }, n);
    o.mirror?.offer(parsed.events);
    return { status: 202, body: { accepted: n } };
  };
  return {
    register(app) {
      for (const url of ['/v1/mail-events', '/v1/ingest/mail-events'])
        app.post(url, { bodyLimit: 16 * 1024 * 1024 }, async (req, reply) => {
          const end = o.metrics.latency.startTimer();
          const r = await handler(req.body);
          end();
          o.metrics.requests.inc({ status: String(r.status) });
          if (r.headers) void reply.headers(r.headers);
          return reply.code(r.status).send(r.body);
        });
    },
    async close() {
      o.mirror?.close();
      await producer.disconnect().catch(() => undefined);
    },
  };
}
