package unwantedmail.kstreams;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.Stores;

/**
 * The Unwanted Mail topology on Kafka Streams (Processor API): a benchmark comparator for the
 * Node service (bench/run.ts --system kstreams), configured through the same environment.
 *
 * How it maps to topology/unwanted-mail.ts (UM_PARITY=false: no parity part):
 *
 *   user-preferences ──source──> preferences-table ──> [preferences]   addReadOnlyStateStore: the
 *       store's changelog IS the source topic (restored from it, no extra changelog topic, logging
 *       off), like our `.store({changelog: user-preferences})` + `.table(shouldApply: newer)`; the
 *       table processor applies a record only if its version is newer than the stored one.
 *   tenant-policies ──> global store [tenant-policies] (in memory; bad policies skipped)
 *   rollout-flags   ──> global store [rollout-flags]   (in memory; bad flags skipped)
 *   user-interactions ──> learn ──> [preferences] put + user-preferences sink (same bytes), and
 *       [interaction-dedupe] (persistent RocksDB, changelog <app>-interaction-dedupe-changelog)
 *   mail-events ──> decide (reads [preferences], the two global stores)
 *       ├─ LIVE   ──> mail-decisions
 *       └─ SHADOW ──> mail-decisions-shadow          (OFF: nothing, counted)
 *   decide, learn ──> <app>-dlq (undecodable or invalid input, original key and bytes + headers)
 *
 * Both local stores have the Kafka Streams record cache on (ours have caches too); its size is
 * the default statestore.cache.max.bytes.
 */
public final class Main {
  private Main() {}

  private static String env(String name, String def) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? def : v;
  }

  public static void main(String[] args) throws Exception {
    String level = env("UM_LOG_LEVEL", "warn").toLowerCase();
    if (level.equals("fatal")) level = "error";
    if (level.equals("silent")) level = "off";
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", level);
    System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
    Logic.checkRolloutHash();

    String brokers = env("KAFKA_BROKERS", null);
    String registryUrl = env("SCHEMA_REGISTRY_URL", null);
    if (brokers == null || registryUrl == null) throw new IllegalArgumentException("KAFKA_BROKERS and SCHEMA_REGISTRY_URL are required");
    String appId = env("UM_APP_ID", "unwanted-mail");
    String prefix = env("UM_TOPIC_PREFIX", "");
    String stateDir = env("UM_STATE_DIR", "./state");
    String httpHost = env("UM_HTTP_HOST", "127.0.0.1");
    int httpPort = Integer.parseInt(env("UM_HTTP_PORT", "8080"));
    int partitions = Integer.parseInt(env("UM_PARTITIONS", "6"));
    String guarantee = env("UM_PROCESSING_GUARANTEE", "at_least_once");
    // the Node service's default commit interval (cli/config.ts): 1000 ms at-least-once, 100 ms exactly-once
    long commitMs = Long.parseLong(env("UM_COMMIT_INTERVAL_MS", "exactly_once".equals(guarantee) ? "100" : "1000"));
    String dlqTopic = appId + "-dlq";

    String tMail = prefix + "mail-events", tInter = prefix + "user-interactions", tPrefs = prefix + "user-preferences";
    String tLive = prefix + "mail-decisions", tShadow = prefix + "mail-decisions-shadow";
    String tFlags = prefix + "rollout-flags", tPolicies = prefix + "tenant-policies";

    Metrics metrics = new Metrics();
    Processors.Env penv = new Processors.Env();
    penv.registry = new Avro.Registry(registryUrl, System.getenv("SCHEMA_REGISTRY_USERNAME"), System.getenv("SCHEMA_REGISTRY_PASSWORD"));
    penv.schemas = new Avro.Schemas(Path.of(env("UM_SCHEMA_DIR", "schemas/v1")));
    penv.decisionLiveId = penv.registry.register(tLive + "-value", penv.schemas.texts.get("Decision"));
    penv.decisionShadowId = penv.registry.register(tShadow + "-value", penv.schemas.texts.get("Decision"));
    penv.preferencesId = penv.registry.register(tPrefs + "-value", penv.schemas.texts.get("UserPreferences"));
    penv.applicationId = appId;
    penv.defaultMode = env("UM_DEFAULT_MODE", "SHADOW");
    penv.metrics = metrics;

    // the dead-letter topic, as the Node service creates it at start
    try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers))) {
      if (!admin.listTopics().names().get().contains(dlqTopic)) {
        try {
          admin.createTopics(List.of(new NewTopic(dlqTopic, java.util.Optional.of(partitions), java.util.Optional.empty()))).all().get();
        } catch (java.util.concurrent.ExecutionException e) {
          if (!(e.getCause() instanceof TopicExistsException)) throw e;
        }
      }
    }

    StringDeserializer sd = new StringDeserializer();
    ByteArrayDeserializer bd = new ByteArrayDeserializer();
    StringSerializer ss = new StringSerializer();
    ByteArraySerializer bs = new ByteArraySerializer();
    Topology t = new Topology();
    t.addReadOnlyStateStore(
        Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(Processors.PREFERENCES_STORE), Serdes.String(), Serdes.ByteArray())
            .withCachingEnabled(),
        "user-preferences", sd, bd, tPrefs, "preferences-table", () -> new Processors.PreferencesTable(penv));
    t.addGlobalStore(
        Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(Processors.TENANT_POLICIES_STORE), Serdes.String(), Serdes.ByteArray())
            .withLoggingDisabled(),
        "tenant-policies-source", sd, bd, tPolicies, "tenant-policies-updater",
        () -> new Processors.GlobalUpdater(penv, Processors.TENANT_POLICIES_STORE));
    t.addGlobalStore(
        Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(Processors.ROLLOUT_FLAGS_STORE), Serdes.String(), Serdes.ByteArray())
            .withLoggingDisabled(),
        "rollout-flags-source", sd, bd, tFlags, "rollout-flags-updater",
        () -> new Processors.GlobalUpdater(penv, Processors.ROLLOUT_FLAGS_STORE));
    t.addSource("user-interactions", sd, bd, tInter);
    t.addProcessor("learn", () -> new Processors.Learn(penv), "user-interactions");
    t.addStateStore(
        Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(Processors.DEDUPE_STORE), Serdes.String(), Serdes.Long())
            .withCachingEnabled(),
        "learn");
    t.connectProcessorAndStateStores("learn", Processors.PREFERENCES_STORE);
    t.addSink(Processors.PREFERENCES_SINK, tPrefs, ss, bs, "learn");
    t.addSource("mail-events", sd, bd, tMail);
    t.addProcessor("decide", () -> new Processors.Decide(penv), "mail-events");
    t.connectProcessorAndStateStores("decide", Processors.PREFERENCES_STORE);
    t.addSink(Processors.LIVE_SINK, tLive, ss, bs, "decide");
    t.addSink(Processors.SHADOW_SINK, tShadow, ss, bs, "decide");
    t.addSink(Processors.DLQ_SINK, dlqTopic, ss, bs, "decide", "learn");

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, "exactly_once".equals(guarantee) ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitMs);
    p.put(StreamsConfig.MAX_TASK_IDLE_MS_CONFIG, Long.parseLong(env("UM_MAX_TASK_IDLE_MS", "0")));
    p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), env("UM_OFFSET_RESET", "earliest"));
    p.put(StreamsConfig.CLIENT_ID_CONFIG, env("UM_INSTANCE_ID", appId + "-ks"));

    KafkaStreams streams = new KafkaStreams(t, p);
    StateRestoreListener restore = new StateRestoreListener() {
      @Override
      public void onRestoreStart(TopicPartition tp, String store, long start, long end) {}

      @Override
      public void onBatchRestored(TopicPartition tp, String store, long batchEndOffset, long n) {
        metrics.restored(store, n);
      }

      @Override
      public void onRestoreEnd(TopicPartition tp, String store, long total) {}
    };
    streams.setGlobalStateRestoreListener(restore);
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setStateListener((to, from) -> {
      System.err.println("[um-kstreams] state " + from + " -> " + to);
      if (to == KafkaStreams.State.ERROR || to == KafkaStreams.State.NOT_RUNNING) stopped.countDown();
    });
    streams.setUncaughtExceptionHandler(e -> {
      System.err.println("[um-kstreams] stream thread failed: " + e);
      e.printStackTrace();
      return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });

    HttpServer http = HttpServer.create(new InetSocketAddress(httpHost, httpPort), 16);
    http.setExecutor(Executors.newSingleThreadExecutor(r -> {
      Thread th = new Thread(r, "um-http");
      th.setDaemon(true);
      return th;
    }));
    http.createContext("/metrics", x -> {
      StringBuilder o = new StringBuilder(4096);
      KafkaStreams.State s = streams.state();
      o.append("# TYPE um_instance_state gauge\n");
      for (KafkaStreams.State st : KafkaStreams.State.values())
        o.append("um_instance_state{state=\"").append(st.name()).append("\"} ").append(st == s ? 1 : 0).append('\n');
      metrics.write(o);
      o.append("# TYPE um_records_consumed_total counter\num_records_consumed_total ").append(consumed(streams)).append('\n');
      reply(x, 200, "text/plain; version=0.0.4", o.toString());
    });
    http.createContext("/readyz", x -> {
      boolean ok = streams.state() == KafkaStreams.State.RUNNING;
      reply(x, ok ? 200 : 503, "application/json", "{\"ready\":" + ok + ",\"state\":\"" + streams.state() + "\"}");
    });
    http.createContext("/healthz", x -> {
      KafkaStreams.State s = streams.state();
      boolean ok = s != KafkaStreams.State.ERROR && s != KafkaStreams.State.NOT_RUNNING && s != KafkaStreams.State.PENDING_ERROR;
      reply(x, ok ? 200 : 503, "application/json", "{\"ok\":" + ok + ",\"state\":\"" + s + "\"}");
    });
    http.start();

    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(30));
      http.stop(0);
    }, "um-shutdown"));
    streams.start();
    stopped.await();
    boolean failed = streams.state() == KafkaStreams.State.ERROR;
    if (failed) {
      http.stop(0);
      System.exit(1);
    }
  }

  /** records-consumed-total of the main consumer (not the restore or global consumers). */
  private static double consumed(KafkaStreams streams) {
    double n = 0;
    for (Map.Entry<MetricName, ? extends Metric> e : streams.metrics().entrySet()) {
      MetricName m = e.getKey();
      if (!m.name().equals("records-consumed-total") || !m.group().equals("consumer-fetch-manager-metrics")) continue;
      String client = m.tags().get("client-id");
      if (client == null || m.tags().containsKey("topic") || client.endsWith("restore-consumer") || client.endsWith("global-consumer")) continue;
      Object v = e.getValue().metricValue();
      if (v instanceof Number) n += ((Number) v).doubleValue();
    }
    return n;
  }

  private static void reply(HttpExchange x, int status, String type, String body) throws IOException {
    byte[] b = body.getBytes(StandardCharsets.UTF_8);
    x.getResponseHeaders().set("Content-Type", type);
    x.sendResponseHeaders(status, b.length);
    try (OutputStream o = x.getResponseBody()) {
      o.write(b);
    }
  }
}
