package unwantedmail.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;

import unwantedmail.kstreams.Logic.BadRecord;
import unwantedmail.kstreams.Model.Decision;
import unwantedmail.kstreams.Model.Entry;
import unwantedmail.kstreams.Model.Flag;
import unwantedmail.kstreams.Model.Interaction;
import unwantedmail.kstreams.Model.MailEvent;
import unwantedmail.kstreams.Model.Policy;
import unwantedmail.kstreams.Model.Prefs;

/**
 * Avro in the Confluent wire format, by hand: byte 0 = 0 (magic), 4-byte big-endian schema id,
 * then Avro binary. Values are read with the writer schema fetched by id from the registry
 * (cached) resolved against our reader schema (schemas/v1/*.avsc); they are written with our
 * schema, registered under the topic's TopicNameStrategy subject `<topic>-value` (as the Node
 * service's serdes do, topology/serdes.ts).
 */
final class Avro {
  private Avro() {}

  static final ObjectMapper JSON = new ObjectMapper();

  /** A Confluent-compatible schema registry (GET /schemas/ids/{id}, POST /subjects/{s}/versions). */
  static final class Registry {
    private final String url;
    private final String auth;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    private final Map<Integer, Schema> byId = new ConcurrentHashMap<>();

    Registry(String url, String username, String password) {
      this.url = url.replaceAll("/+$", "");
      this.auth = username != null && !username.isEmpty()
          ? "Basic " + Base64.getEncoder().encodeToString((username + ":" + password).getBytes(StandardCharsets.UTF_8))
          : null;
    }

    private JsonNode send(HttpRequest.Builder b) {
      if (auth != null) b.header("Authorization", auth);
      IOException last = null;
      for (int attempt = 0; attempt < 5; attempt++) {
        try {
          HttpResponse<String> r = http.send(b.timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
          if (r.statusCode() == 404) throw new BadRecord("UNKNOWN_SCHEMA_ID", "registry: 404 " + r.body());
          if (r.statusCode() >= 500) {
            last = new IOException("registry: HTTP " + r.statusCode() + " " + r.body());
          } else if (r.statusCode() >= 300) {
            throw new IllegalStateException("registry: HTTP " + r.statusCode() + " " + r.body());
          } else {
            return JSON.readTree(r.body());
          }
        } catch (IOException e) {
          last = e;
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException(e);
        }
        try {
          Thread.sleep(200L << attempt);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException(e);
        }
      }
      throw new IllegalStateException("registry unavailable: " + (last == null ? "" : last.getMessage()), last);
    }

    Schema schemaById(int id) {
      return byId.computeIfAbsent(id, i -> {
        JsonNode n = send(HttpRequest.newBuilder(URI.create(url + "/schemas/ids/" + i)).GET());
        String type = n.path("schemaType").asText("AVRO");
        if (!"AVRO".equals(type)) throw new BadRecord("SCHEMA_NOT_AVRO", "schema " + i + " is " + type);
        return new Schema.Parser().parse(n.get("schema").asText());
      });
    }

    /** Registers the schema text under the subject (or finds it there) and returns its id. */
    int register(String subject, String schemaJson) {
      try {
        String body = JSON.writeValueAsString(Map.of("schema", schemaJson));
        JsonNode n = send(HttpRequest.newBuilder(URI.create(url + "/subjects/" + URLEncoder.encode(subject, StandardCharsets.UTF_8) + "/versions"))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .POST(HttpRequest.BodyPublishers.ofString(body)));
        return n.get("id").asInt();
      } catch (IOException e) {
        throw new IllegalStateException(e);
      }
    }
  }

  /** Our schemas (schemas/v1): the parsed reader schema and its JSON text as the Node service registers it. */
  static final class Schemas {
    final Map<String, Schema> schemas = new HashMap<>();
    final Map<String, String> texts = new HashMap<>();

    Schemas(Path dir) throws IOException {
      for (String name : List.of("MailEvent", "UserInteraction", "UserPreferences", "Decision", "RolloutFlag", "TenantPolicy")) {
        String raw = Files.readString(dir.resolve(name + ".avsc"));
        // JSON.stringify of the parsed file, as topology/serdes.ts registers it: same text, same id
        String text = JSON.writeValueAsString(JSON.readTree(raw));
        texts.put(name, text);
        schemas.put(name, new Schema.Parser().parse(text));
      }
    }
  }

  /** Reads one topic's values (one per processor: not thread-safe). */
  static final class Reader {
    private final Registry registry;
    private final Schema reader;
    private final Map<Integer, GenericDatumReader<GenericRecord>> readers = new HashMap<>();
    private BinaryDecoder decoder;

    Reader(Registry registry, Schema reader) {
      this.registry = registry;
      this.reader = reader;
    }

    GenericRecord read(byte[] b) {
      if (b == null || b.length < 5 || b[0] != 0) throw new BadRecord("NOT_CONFLUENT_AVRO", "not in the Confluent wire format");
      int id = ((b[1] & 0xff) << 24) | ((b[2] & 0xff) << 16) | ((b[3] & 0xff) << 8) | (b[4] & 0xff);
      GenericDatumReader<GenericRecord> r = readers.get(id);
      if (r == null) {
        r = new GenericDatumReader<>(registry.schemaById(id), reader);
        readers.put(id, r);
      }
      decoder = DecoderFactory.get().binaryDecoder(b, 5, b.length - 5, decoder);
      try {
        return r.read(null, decoder);
      } catch (IOException | RuntimeException e) {
        throw new BadRecord("DESERIALIZATION_FAILED", String.valueOf(e.getMessage()));
      }
    }
  }

  /** Writes values with our schema and its registered id (one per processor: not thread-safe). */
  static final class Writer {
    final Schema schema;
    private final byte[] prefix = new byte[5];
    private final GenericDatumWriter<GenericRecord> writer;
    private final ByteArrayOutputStream out = new ByteArrayOutputStream(512);
    private BinaryEncoder encoder;

    Writer(Schema schema, int id) {
      this.schema = schema;
      prefix[1] = (byte) (id >>> 24);
      prefix[2] = (byte) (id >>> 16);
      prefix[3] = (byte) (id >>> 8);
      prefix[4] = (byte) id;
      writer = new GenericDatumWriter<>(schema);
    }

    byte[] write(GenericRecord r) {
      out.reset();
      out.write(prefix, 0, 5);
      encoder = EncoderFactory.get().binaryEncoder(out, encoder);
      try {
        writer.write(r, encoder);
        encoder.flush();
      } catch (IOException e) {
        throw new IllegalStateException(e);
      }
      return out.toByteArray();
    }
  }

  // -------------------------------------------------------------------------------------------
  // GenericRecord <-> model

  private static String str(Object o) {
    return o == null ? null : o.toString();
  }

  static MailEvent mailEvent(GenericRecord r) {
    MailEvent e = new MailEvent();
    e.eventId = str(r.get("eventId"));
    e.tenantId = str(r.get("tenantId"));
    e.mailboxId = str(r.get("mailboxId"));
    e.messageId = str(r.get("messageId"));
    e.receivedAt = (Long) r.get("receivedAt");
    e.senderAddress = str(r.get("senderAddress"));
    e.senderDomain = str(r.get("senderDomain"));
    e.spf = str(r.get("spf"));
    e.dkim = str(r.get("dkim"));
    e.dmarc = str(r.get("dmarc"));
    e.spamScore = (Double) r.get("spamScore");
    e.bulkScore = (Integer) r.get("bulkScore");
    e.hasListUnsubscribe = (Boolean) r.get("hasListUnsubscribe");
    return e;
  }

  static Interaction interaction(GenericRecord r) {
    Interaction i = new Interaction();
    i.eventId = str(r.get("eventId"));
    i.tenantId = str(r.get("tenantId"));
    i.mailboxId = str(r.get("mailboxId"));
    i.messageId = str(r.get("messageId"));
    i.senderAddress = str(r.get("senderAddress"));
    i.senderDomain = str(r.get("senderDomain"));
    i.action = str(r.get("action"));
    i.messageReceivedAt = (Long) r.get("messageReceivedAt");
    i.occurredAt = (Long) r.get("occurredAt");
    return i;
  }

  static Prefs prefs(GenericRecord r) {
    Prefs p = new Prefs();
    p.mailboxId = str(r.get("mailboxId"));
    p.tenantId = str(r.get("tenantId"));
    p.version = (Long) r.get("version");
    p.updatedAt = (Long) r.get("updatedAt");
    @SuppressWarnings("unchecked")
    List<GenericRecord> es = (List<GenericRecord>) r.get("entries");
    p.entries = new ArrayList<>(es.size() + 1);
    for (GenericRecord x : es) {
      Entry e = new Entry();
      e.key = str(x.get("key"));
      e.scope = str(x.get("scope"));
      e.verdict = str(x.get("verdict"));
      e.source = str(x.get("source"));
      e.evidence = (Integer) x.get("evidence");
      e.firstSeenAt = (Long) x.get("firstSeenAt");
      e.updatedAt = (Long) x.get("updatedAt");
      e.expiresAt = (Long) x.get("expiresAt");
      p.entries.add(e);
    }
    return p;
  }

  static GenericRecord prefsRecord(Schema schema, Prefs p) {
    Schema entrySchema = schema.getField("entries").schema().getElementType();
    Schema scope = entrySchema.getField("scope").schema();
    Schema verdict = entrySchema.getField("verdict").schema();
    Schema source = entrySchema.getField("source").schema();
    GenericData.Record r = new GenericData.Record(schema);
    r.put("mailboxId", p.mailboxId);
    r.put("tenantId", p.tenantId);
    r.put("version", p.version);
    r.put("updatedAt", p.updatedAt);
    List<GenericRecord> es = new ArrayList<>(p.entries.size());
    for (Entry e : p.entries) {
      GenericData.Record x = new GenericData.Record(entrySchema);
      x.put("key", e.key);
      x.put("scope", new GenericData.EnumSymbol(scope, e.scope));
      x.put("verdict", new GenericData.EnumSymbol(verdict, e.verdict));
      x.put("source", new GenericData.EnumSymbol(source, e.source));
      x.put("evidence", e.evidence);
      x.put("firstSeenAt", e.firstSeenAt);
      x.put("updatedAt", e.updatedAt);
      x.put("expiresAt", e.expiresAt);
      es.add(x);
    }
    r.put("entries", new GenericData.Array<>(schema.getField("entries").schema(), es));
    return r;
  }

  static Policy policy(GenericRecord r) {
    Policy p = new Policy();
    p.tenantId = str(r.get("tenantId"));
    p.allow = strings(r.get("allow"));
    p.block = strings(r.get("block"));
    p.spamThreshold = (Double) r.get("spamThreshold");
    p.bulkThreshold = (Integer) r.get("bulkThreshold");
    p.allowSet = Logic.orgSet(p.allow);
    p.blockSet = Logic.orgSet(p.block);
    return p;
  }

  private static List<String> strings(Object o) {
    List<String> out = new ArrayList<>();
    for (Object x : (List<?>) o) out.add(str(x));
    return out;
  }

  static Flag flag(GenericRecord r) {
    Flag f = new Flag();
    f.scope = str(r.get("scope"));
    f.mode = str(r.get("mode"));
    f.livePercent = (Integer) r.get("livePercent");
    f.updatedAt = (Long) r.get("updatedAt");
    f.updatedBy = str(r.get("updatedBy"));
    f.reason = str(r.get("reason"));
    return f;
  }

  static GenericRecord decisionRecord(Schema schema, Decision d) {
    GenericData.Record r = new GenericData.Record(schema);
    r.put("eventId", d.eventId);
    r.put("messageId", d.messageId);
    r.put("tenantId", d.tenantId);
    r.put("mailboxId", d.mailboxId);
    r.put("action", new GenericData.EnumSymbol(schema.getField("action").schema(), d.action));
    r.put("reason", d.reason);
    r.put("matchedKey", d.matchedKey);
    r.put("preferencesVersion", d.preferencesVersion);
    r.put("mode", new GenericData.EnumSymbol(schema.getField("mode").schema(), d.mode));
    r.put("decidedAt", d.decidedAt);
    r.put("dwellMs", d.dwellMs);
    return r;
  }
}
