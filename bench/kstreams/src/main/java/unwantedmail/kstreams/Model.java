package unwantedmail.kstreams;

import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * The records of PRODUCT.md §2 as plain Java objects, and the constants of §3/§4 (a port of
 * processors/logic/model.ts). Timestamps are epoch milliseconds; enums are their symbol strings.
 */
final class Model {
  private Model() {}

  static final class MailEvent {
    String eventId, tenantId, mailboxId, messageId;
    long receivedAt;
    String senderAddress, senderDomain, spf, dkim, dmarc;
    double spamScore;
    int bulkScore;
    boolean hasListUnsubscribe;
  }

  static final class Interaction {
    String eventId, tenantId, mailboxId, messageId, senderAddress, senderDomain, action;
    long messageReceivedAt, occurredAt;
  }

  static final class Entry {
    String key, scope, verdict, source;
    int evidence;
    long firstSeenAt, updatedAt;
    /** null for explicit entries */
    Long expiresAt;
  }

  static final class Prefs {
    String mailboxId, tenantId;
    long version, updatedAt;
    List<Entry> entries;
  }

  static final class Policy {
    String tenantId;
    List<String> allow, block;
    Double spamThreshold;
    Integer bulkThreshold;
    /** normalized (lower-cased, leading '@' stripped) items, built once per decoded policy */
    Set<String> allowSet, blockSet;
  }

  static final class Flag {
    String scope, mode, updatedBy, reason;
    int livePercent;
    long updatedAt;
  }

  static final class Decision {
    String eventId, messageId, tenantId, mailboxId, action, reason, matchedKey, mode;
    Long preferencesVersion;
    long decidedAt, dwellMs;
  }

  static final long MS_PER_DAY = 24L * 60 * 60 * 1000;
  static final double HIGH_CONFIDENCE_SPAM_SCORE = 0.98;
  static final double DEFAULT_SPAM_THRESHOLD = 0.9;
  static final int DEFAULT_BULK_THRESHOLD = 7;
  static final int BULK_WITH_LIST_UNSUBSCRIBE_THRESHOLD = 5;
  static final int INFERRED_JUNK_LIVE_EVIDENCE = 2;
  static final int INFERRED_LIVE_EVIDENCE = 1;
  static final int UNSUBSCRIBE_EVIDENCE = 2;
  static final int EXPLICIT_EVIDENCE = 1;
  static final long LEARNING_WINDOW_MS = 7 * MS_PER_DAY;
  static final long DEDUPE_WINDOW_MS = 7 * MS_PER_DAY;
  static final long EVIDENCE_RESTART_MS = 30 * MS_PER_DAY;
  static final long INFERRED_EXPIRY_MS = 90 * MS_PER_DAY;
  static final int MAX_ADDRESS_ENTRIES = 1024;
  static final int MAX_DOMAIN_ENTRIES = 256;
  static final String GLOBAL_FLAG_SCOPE = "*";

  /** Lower-cases and trims an address or domain key. */
  static String normalizeKey(String key) {
    return key.strip().toLowerCase(Locale.ROOT);
  }

  /** senderDomain lower-cased when set, else the part of the address after its last '@' ("" if none). */
  static String senderDomainOf(String senderAddress, String senderDomain) {
    String d = normalizeKey(senderDomain);
    if (!d.isEmpty()) return d;
    String a = normalizeKey(senderAddress);
    int at = a.lastIndexOf('@');
    return at >= 0 ? a.substring(at + 1) : "";
  }

  static boolean isExpired(Entry e, long at) {
    return e.expiresAt != null && at >= e.expiresAt;
  }

  static boolean isLive(Entry e, long at) {
    if (isExpired(e, at)) return false;
    if ("INFERRED".equals(e.source)) {
      int needed = "JUNK".equals(e.verdict) ? INFERRED_JUNK_LIVE_EVIDENCE : INFERRED_LIVE_EVIDENCE;
      return e.evidence >= needed;
    }
    return true;
  }
}
