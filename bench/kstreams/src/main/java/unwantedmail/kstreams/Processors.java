package unwantedmail.kstreams;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;

import unwantedmail.kstreams.Logic.BadRecord;
import unwantedmail.kstreams.Model.Decision;
import unwantedmail.kstreams.Model.Flag;
import unwantedmail.kstreams.Model.Interaction;
import unwantedmail.kstreams.Model.MailEvent;
import unwantedmail.kstreams.Model.Policy;
import unwantedmail.kstreams.Model.Prefs;

/** The processors of the topology (see Main for how they are wired and how that maps to ours). */
final class Processors {
  private Processors() {}

  static final String PREFERENCES_STORE = "preferences";
  static final String DEDUPE_STORE = "interaction-dedupe";
  static final String TENANT_POLICIES_STORE = "tenant-policies";
  static final String ROLLOUT_FLAGS_STORE = "rollout-flags";
  static final String LIVE_SINK = "mail-decisions";
  static final String SHADOW_SINK = "mail-decisions-shadow";
  static final String PREFERENCES_SINK = "user-preferences-sink";
  static final String DLQ_SINK = "dlq";
  /** how often (stream time) expired dedupe entries are purged, as learn-processor.ts */
  static final Duration DEDUPE_PURGE_INTERVAL = Duration.ofHours(1);

  /** What every processor needs: the registry, our schemas and their ids, settings and metrics. */
  static final class Env {
    Avro.Registry registry;
    Avro.Schemas schemas;
    int decisionLiveId, decisionShadowId, preferencesId;
    String applicationId;
    String defaultMode;
    Metrics metrics;
  }

  /** Dead-letters the record (original key and bytes, headers as ours: runtime/task.ts). */
  static void deadLetter(ProcessorContext<String, byte[]> ctx, Env env, Record<String, byte[]> r, BadRecord e, String kind) {
    RecordMetadata m = ctx.recordMetadata().orElseThrow();
    RecordHeaders h = new RecordHeaders();
    h.add("dlq.source.topic", m.topic().getBytes(StandardCharsets.UTF_8));
    h.add("dlq.source.partition", String.valueOf(m.partition()).getBytes(StandardCharsets.UTF_8));
    h.add("dlq.source.offset", String.valueOf(m.offset()).getBytes(StandardCharsets.UTF_8));
    h.add("dlq.error.code", e.code.getBytes(StandardCharsets.UTF_8));
    String msg = String.valueOf(e.getMessage());
    h.add("dlq.error.message", msg.substring(0, Math.min(1000, msg.length())).getBytes(StandardCharsets.UTF_8));
    h.add("dlq.error.kind", kind.getBytes(StandardCharsets.UTF_8));
    h.add("dlq.application.id", env.applicationId.getBytes(StandardCharsets.UTF_8));
    ctx.forward(new Record<>(r.key(), r.value(), r.timestamp(), h), DLQ_SINK);
    env.metrics.deadLetter(m.topic(), e.code);
  }

  /**
   * An input record decoded and validated, or null when either fails: then it is dead-lettered with
   * its reason (kind "deserialization" or "processing"), as ours (runtime/task.ts).
   */
  static <T> T readValid(ProcessorContext<String, byte[]> ctx, Env env, Record<String, byte[]> r,
      java.util.function.Function<byte[], T> decode, java.util.function.BiConsumer<String, T> validate) {
    T v;
    try {
      v = decode.apply(r.value());
    } catch (BadRecord x) {
      deadLetter(ctx, env, r, x, "deserialization");
      return null;
    }
    try {
      validate.accept(r.key(), v);
    } catch (BadRecord x) {
      deadLetter(ctx, env, r, x, "processing");
      return null;
    }
    return v;
  }

  /** Decoded global-table values, re-decoded only when the stored bytes change (identity). */
  static final class Decoded<T> {
    private final Map<String, Object[]> memo = new HashMap<>();
    private final Avro.Reader reader;
    private final java.util.function.Function<org.apache.avro.generic.GenericRecord, T> convert;

    Decoded(Avro.Reader reader, java.util.function.Function<org.apache.avro.generic.GenericRecord, T> convert) {
      this.reader = reader;
      this.convert = convert;
    }

    @SuppressWarnings("unchecked")
    T get(KeyValueStore<String, byte[]> store, String key) {
      byte[] b = store.get(key);
      if (b == null) {
        memo.remove(key);
        return null;
      }
      Object[] m = memo.get(key);
      if (m != null && m[0] == b) return (T) m[1];
      T v;
      try {
        v = convert.apply(reader.read(b));
      } catch (RuntimeException e) {
        v = null; // the updater keeps only good values; a restored bad one counts as absent
      }
      memo.put(key, new Object[] {b, v});
      return v;
    }
  }

  // -------------------------------------------------------------------------------------------

  /** decide-processor.ts: mail events → decisions (LIVE / SHADOW sink by rollout mode; OFF: none). */
  static final class Decide implements Processor<String, byte[], String, byte[]> {
    private final Env env;
    private ProcessorContext<String, byte[]> ctx;
    private KeyValueStore<String, byte[]> prefs, policies, flags;
    private Avro.Reader mailReader, prefsReader;
    private Decoded<Policy> policyCache;
    private Decoded<Flag> flagCache;
    private Avro.Writer live, shadow;

    Decide(Env env) {
      this.env = env;
    }

    @Override
    public void init(ProcessorContext<String, byte[]> ctx) {
      this.ctx = ctx;
      prefs = ctx.getStateStore(PREFERENCES_STORE);
      policies = ctx.getStateStore(TENANT_POLICIES_STORE);
      flags = ctx.getStateStore(ROLLOUT_FLAGS_STORE);
      mailReader = new Avro.Reader(env.registry, env.schemas.schemas.get("MailEvent"));
      prefsReader = new Avro.Reader(env.registry, env.schemas.schemas.get("UserPreferences"));
      policyCache = new Decoded<>(new Avro.Reader(env.registry, env.schemas.schemas.get("TenantPolicy")), Avro::policy);
      flagCache = new Decoded<>(new Avro.Reader(env.registry, env.schemas.schemas.get("RolloutFlag")), Avro::flag);
      Schema d = env.schemas.schemas.get("Decision");
      live = new Avro.Writer(d, env.decisionLiveId);
      shadow = new Avro.Writer(d, env.decisionShadowId);
    }

    @Override
    public void process(Record<String, byte[]> record) {
      MailEvent e = readValid(ctx, env, record, b -> Avro.mailEvent(mailReader.read(b)), Logic::validateMail);
      if (e == null) return;
      String mode = Logic.effectiveMode(flagCache.get(flags, Model.GLOBAL_FLAG_SCOPE), flagCache.get(flags, e.tenantId), e.tenantId,
          e.mailboxId, env.defaultMode);
      if ("OFF".equals(mode)) {
        env.metrics.decisionsOff.increment();
        return;
      }
      byte[] pb = prefs.get(e.mailboxId);
      Prefs p = pb == null ? null : Avro.prefs(prefsReader.read(pb));
      Logic.DecideResult r = Logic.decide(e, p, policyCache.get(policies, e.tenantId));
      Decision d = new Decision();
      d.eventId = e.eventId;
      d.messageId = e.messageId;
      d.tenantId = e.tenantId;
      d.mailboxId = e.mailboxId;
      d.action = r.action;
      d.reason = r.reason;
      d.matchedKey = r.matchedKey;
      d.preferencesVersion = r.preferencesVersion;
      d.mode = mode;
      d.decidedAt = System.currentTimeMillis();
      d.dwellMs = d.decidedAt - e.receivedAt;
      boolean isLive = "LIVE".equals(mode);
      Avro.Writer w = isLive ? live : shadow;
      byte[] out = w.write(Avro.decisionRecord(w.schema, d));
      ctx.forward(new Record<>(e.mailboxId, out, record.timestamp()), isLive ? LIVE_SINK : SHADOW_SINK);
      env.metrics.decision(r.action, r.reason, mode);
    }
  }

  /**
   * learn-processor.ts: interactions → preferences. Dedupes (mailboxId, messageId, action) over 7
   * days of event time (persistent store with a changelog), applies `learn`, writes the new record
   * to the preference store and forwards the same bytes to the user-preferences topic.
   */
  static final class Learn implements Processor<String, byte[], String, byte[]> {
    private final Env env;
    private ProcessorContext<String, byte[]> ctx;
    private KeyValueStore<String, byte[]> prefs;
    private KeyValueStore<String, Long> dedupe;
    private Avro.Reader interactionReader, prefsReader;
    private Avro.Writer prefsWriter;

    Learn(Env env) {
      this.env = env;
    }

    @Override
    public void init(ProcessorContext<String, byte[]> ctx) {
      this.ctx = ctx;
      prefs = ctx.getStateStore(PREFERENCES_STORE);
      dedupe = ctx.getStateStore(DEDUPE_STORE);
      interactionReader = new Avro.Reader(env.registry, env.schemas.schemas.get("UserInteraction"));
      prefsReader = new Avro.Reader(env.registry, env.schemas.schemas.get("UserPreferences"));
      prefsWriter = new Avro.Writer(env.schemas.schemas.get("UserPreferences"), env.preferencesId);
      ctx.schedule(DEDUPE_PURGE_INTERVAL, PunctuationType.STREAM_TIME, this::purge);
    }

    @Override
    public void process(Record<String, byte[]> record) {
      Interaction i = readValid(ctx, env, record, b -> Avro.interaction(interactionReader.read(b)), Logic::validateInteraction);
      if (i == null) return;
      boolean duplicate = false;
      boolean useDedupe = Logic.dedupeApplies(i.action);
      String dk = useDedupe ? i.mailboxId + '\u0000' + i.messageId + '\u0000' + i.action : null;
      if (useDedupe) {
        Long seen = dedupe.get(dk);
        duplicate = seen != null && Math.abs(i.occurredAt - seen) <= Model.DEDUPE_WINDOW_MS;
      }
      byte[] cb = prefs.get(i.mailboxId);
      Prefs current = cb == null ? null : Avro.prefs(prefsReader.read(cb));
      Logic.LearnResult r = Logic.learn(current, i, duplicate);
      env.metrics.interaction(i.action, r.outcome);
      if (r.next != null) {
        byte[] b = prefsWriter.write(Avro.prefsRecord(prefsWriter.schema, r.next));
        prefs.put(i.mailboxId, b);
        ctx.forward(new Record<>(i.mailboxId, b, record.timestamp()), PREFERENCES_SINK);
      }
      if (useDedupe && !duplicate) dedupe.put(dk, i.occurredAt);
      if (r.next != null) {
        env.metrics.preferenceUpdates.increment();
        for (String ev : r.evicted) env.metrics.evictions.increment();
      }
    }

    private void purge(long streamTime) {
      List<String> stale = new ArrayList<>();
      try (KeyValueIterator<String, Long> it = dedupe.all()) {
        while (it.hasNext()) {
          KeyValue<String, Long> kv = it.next();
          if (streamTime - kv.value > Model.DEDUPE_WINDOW_MS) stale.add(kv.key);
        }
      }
      for (String k : stale) dedupe.delete(k);
    }
  }

  /**
   * The preference table's source processor (our `.table(... shouldApply: newerPreferences)`): a
   * user-preferences record replaces the stored one only when its version is newer, so reading
   * back learn's own writes never rolls a mailbox back. A tombstone deletes.
   */
  static final class PreferencesTable implements Processor<String, byte[], Void, Void> {
    private final Env env;
    private KeyValueStore<String, byte[]> store;
    private Avro.Reader reader;

    PreferencesTable(Env env) {
      this.env = env;
    }

    @Override
    public void init(ProcessorContext<Void, Void> ctx) {
      store = ctx.getStateStore(PREFERENCES_STORE);
      reader = new Avro.Reader(env.registry, env.schemas.schemas.get("UserPreferences"));
    }

    @Override
    public void process(Record<String, byte[]> record) {
      if (record.key() == null) return;
      if (record.value() == null) {
        store.delete(record.key());
        return;
      }
      long incoming;
      try {
        incoming = (Long) reader.read(record.value()).get("version");
      } catch (BadRecord x) {
        env.metrics.deadLetter("user-preferences", x.code);
        return;
      }
      byte[] cur = store.get(record.key());
      if (cur != null) {
        long current;
        try {
          current = (Long) reader.read(cur).get("version");
        } catch (BadRecord x) {
          current = Long.MIN_VALUE;
        }
        if (incoming <= current) return;
      }
      store.put(record.key(), record.value());
    }
  }

  /**
   * Updates a global store (tenant-policies or rollout-flags): a value that cannot be read or
   * fails validation is skipped, so the last good one stays in force (as ours: validatedSerde,
   * RolloutFlagBook); a tombstone removes it.
   */
  static final class GlobalUpdater implements Processor<String, byte[], Void, Void> {
    private final Env env;
    private final String storeName;
    private KeyValueStore<String, byte[]> store;
    private Avro.Reader reader;

    GlobalUpdater(Env env, String storeName) {
      this.env = env;
      this.storeName = storeName;
    }

    @Override
    public void init(ProcessorContext<Void, Void> ctx) {
      store = ctx.getStateStore(storeName);
      reader = new Avro.Reader(env.registry, env.schemas.schemas.get(ROLLOUT_FLAGS_STORE.equals(storeName) ? "RolloutFlag" : "TenantPolicy"));
    }

    @Override
    public void process(Record<String, byte[]> record) {
      if (record.key() == null) return;
      if (record.value() == null) {
        store.delete(record.key());
        return;
      }
      boolean good;
      try {
        org.apache.avro.generic.GenericRecord g = reader.read(record.value());
        good = ROLLOUT_FLAGS_STORE.equals(storeName)
            ? Logic.flagProblem(record.key(), Avro.flag(g)) == null
            : Logic.validPolicy(Avro.policy(g));
      } catch (RuntimeException e) {
        good = false;
      }
      if (good) store.put(record.key(), record.value());
      else env.metrics.deadLetter(storeName, "REFUSED");
    }
  }
}
