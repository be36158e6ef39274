package unwantedmail.kstreams;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;

import unwantedmail.kstreams.Model.Entry;
import unwantedmail.kstreams.Model.Flag;
import unwantedmail.kstreams.Model.Interaction;
import unwantedmail.kstreams.Model.MailEvent;
import unwantedmail.kstreams.Model.Policy;
import unwantedmail.kstreams.Model.Prefs;

/**
 * Ports of processors/logic/decide.ts (§3), learn.ts (§4), rollout.ts (§6) and processors/validate.ts.
 * Pure functions; the comments of the TypeScript originals describe the rules.
 */
final class Logic {
  private Logic() {}

  /** A record that fails validation: dead-lettered with its code. */
  static final class BadRecord extends RuntimeException {
    final String code;

    BadRecord(String code, String message) {
      super(message, null, false, false);
      this.code = code;
    }
  }

  // -------------------------------------------------------------------------------------------
  // validation (validate.ts)

  private static boolean blank(String s) {
    return s == null || s.isEmpty();
  }

  static void validateMail(String key, MailEvent e) {
    if (key == null || !key.equals(e.mailboxId))
      throw new BadRecord("KEY_MISMATCH", "record key is not the mailboxId of the value (the record is on the wrong partition)");
    if (blank(e.eventId) || blank(e.messageId) || blank(e.tenantId) || blank(e.mailboxId))
      throw new BadRecord("MISSING_ID", "eventId, messageId, tenantId and mailboxId are required");
    if (!(e.spamScore >= 0 && e.spamScore <= 1))
      throw new BadRecord("SPAM_SCORE_RANGE", "spamScore must be within 0..1, got " + e.spamScore);
    if (e.bulkScore < 0 || e.bulkScore > 9)
      throw new BadRecord("BULK_SCORE_RANGE", "bulkScore must be an integer within 0..9, got " + e.bulkScore);
    if (!(e.receivedAt > 0)) throw new BadRecord("RECEIVED_AT", "receivedAt must be a positive timestamp");
  }

  static void validateInteraction(String key, Interaction i) {
    if (key == null || !key.equals(i.mailboxId))
      throw new BadRecord("KEY_MISMATCH", "record key is not the mailboxId of the value (the record is on the wrong partition)");
    if (blank(i.eventId) || blank(i.tenantId) || blank(i.mailboxId))
      throw new BadRecord("MISSING_ID", "eventId, tenantId and mailboxId are required");
    if (!(i.occurredAt > 0)) throw new BadRecord("OCCURRED_AT", "occurredAt must be a positive timestamp");
  }

  private static final Pattern WHITESPACE = Pattern.compile("\\s");

  private static boolean validEntry(String e) {
    return e != null && !e.isEmpty() && e.length() <= 320 && !WHITESPACE.matcher(e).find() && !e.startsWith("@") && !e.endsWith("@");
  }

  /** True when the policy may be relied on (validateTenantPolicy); a bad one is skipped. */
  static boolean validPolicy(Policy p) {
    if (blank(p.tenantId)) return false;
    if (p.spamThreshold != null && !(Double.isFinite(p.spamThreshold) && p.spamThreshold > 0 && p.spamThreshold <= 1)) return false;
    if (p.bulkThreshold != null && !(p.bulkThreshold >= 1 && p.bulkThreshold <= 10)) return false;
    for (List<String> list : List.of(p.allow, p.block)) {
      if (list == null || list.size() > 100_000) return false;
      for (String e : list) if (!validEntry(e)) return false;
    }
    return true;
  }

  /** flagProblem of rollout.ts: null when the flag is well formed. */
  static String flagProblem(String scope, Flag f) {
    if (!"OFF".equals(f.mode) && !"SHADOW".equals(f.mode) && !"LIVE".equals(f.mode)) return "FLAG_MODE";
    if (f.livePercent < 0 || f.livePercent > 100) return "FLAG_PERCENT";
    if (blank(scope) || !scope.equals(f.scope)) return "FLAG_SCOPE";
    return null;
  }

  // -------------------------------------------------------------------------------------------
  // decide (decide.ts)

  static final class DecideResult {
    final String action, reason, matchedKey;
    final Long preferencesVersion;

    DecideResult(String action, String reason, String matchedKey, Long preferencesVersion) {
      this.action = action;
      this.reason = reason;
      this.matchedKey = matchedKey;
      this.preferencesVersion = preferencesVersion;
    }
  }

  private static String normalizeOrgItem(String item) {
    String k = Model.normalizeKey(item);
    return k.startsWith("@") ? k.substring(1) : k;
  }

  static Set<String> orgSet(List<String> items) {
    Set<String> s = new HashSet<>();
    for (String item : items) {
      String k = normalizeOrgItem(item);
      if (!k.isEmpty()) s.add(k);
    }
    return s;
  }

  private static String orgMatch(Set<String> list, String address, String domain) {
    if (list.isEmpty()) return null;
    if (!address.isEmpty() && list.contains(address)) return address;
    if (!domain.isEmpty() && list.contains(domain)) return domain;
    return null;
  }

  /** The first entry of the scope whose lower-cased key is `key` (the index of decide.ts keeps the first). */
  private static Entry lookup(List<Entry> entries, String scope, String key) {
    if (key.isEmpty()) return null;
    for (Entry e : entries) if (scope.equals(e.scope) && Model.normalizeKey(e.key).equals(key)) return e;
    return null;
  }

  static Entry applicableEntry(Prefs prefs, String address, String domain, long at) {
    Entry byAddress = lookup(prefs.entries, "ADDRESS", address);
    if (byAddress != null && Model.isLive(byAddress, at)) return byAddress;
    Entry byDomain = lookup(prefs.entries, "DOMAIN", domain);
    if (byDomain != null && Model.isLive(byDomain, at)) return byDomain;
    return null;
  }

  private static boolean authPassed(MailEvent e) {
    return "PASS".equals(e.spf) || "PASS".equals(e.dkim) || "PASS".equals(e.dmarc);
  }

  static DecideResult decide(MailEvent event, Prefs prefs, Policy policy) {
    Long version = prefs == null ? null : prefs.version;
    if (event.spamScore >= Model.HIGH_CONFIDENCE_SPAM_SCORE) return new DecideResult("JUNK", "HIGH_CONFIDENCE_SPAM", null, version);
    String address = Model.normalizeKey(event.senderAddress);
    String domain = Model.senderDomainOf(event.senderAddress, event.senderDomain);
    if (policy != null) {
      String blocked = orgMatch(policy.blockSet, address, domain);
      if (blocked != null) return new DecideResult("JUNK", "ORG_BLOCK", blocked, version);
      String allowed = orgMatch(policy.allowSet, address, domain);
      if (allowed != null) return new DecideResult("INBOX", "ORG_ALLOW", allowed, version);
    }
    if (prefs != null && !prefs.entries.isEmpty()) {
      Entry entry = applicableEntry(prefs, address, domain, event.receivedAt);
      if (entry != null) {
        String key = Model.normalizeKey(entry.key);
        switch (entry.verdict) {
          case "SAFE":
            if (authPassed(event)) return new DecideResult("INBOX", "USER_SAFE", key, version);
            break;
          case "PROMOTIONS":
            return new DecideResult("PROMOTIONS", "USER_PROMOTIONS", key, version);
          case "JUNK":
            return new DecideResult("JUNK", "USER_JUNK", key, version);
          default:
            break;
        }
      }
    }
    double spamThreshold = policy != null && policy.spamThreshold != null ? policy.spamThreshold : Model.DEFAULT_SPAM_THRESHOLD;
    if (event.spamScore >= spamThreshold) return new DecideResult("JUNK", "SPAM_SCORE", null, version);
    int bulkThreshold = policy != null && policy.bulkThreshold != null ? policy.bulkThreshold : Model.DEFAULT_BULK_THRESHOLD;
    if (event.bulkScore >= bulkThreshold || (event.hasListUnsubscribe && event.bulkScore >= Model.BULK_WITH_LIST_UNSUBSCRIBE_THRESHOLD))
      return new DecideResult("PROMOTIONS", "BULK", null, version);
    return new DecideResult("INBOX", "CLEAN", null, version);
  }

  // -------------------------------------------------------------------------------------------
  // learn (learn.ts)

  enum OpKind { EXPLICIT, REMOVE, INFERRED, NONE }

  static final class Op {
    final OpKind kind;
    final String scope, verdict;
    final boolean unsubscribe;

    Op(OpKind kind, String scope, String verdict, boolean unsubscribe) {
      this.kind = kind;
      this.scope = scope;
      this.verdict = verdict;
      this.unsubscribe = unsubscribe;
    }
  }

  private static final Op NONE = new Op(OpKind.NONE, null, null, false);

  static Op learningOp(String action) {
    switch (action) {
      case "MOVED_TO_INBOX":
      case "MARKED_NOT_SPAM":
      case "ALLOW_SENDER":
        return new Op(OpKind.EXPLICIT, "ADDRESS", "SAFE", false);
      case "MOVED_TO_PROMOTIONS":
        return new Op(OpKind.EXPLICIT, "ADDRESS", "PROMOTIONS", false);
      case "BLOCK_SENDER":
        return new Op(OpKind.EXPLICIT, "ADDRESS", "JUNK", false);
      case "ALLOW_DOMAIN":
        return new Op(OpKind.EXPLICIT, "DOMAIN", "SAFE", false);
      case "BLOCK_DOMAIN":
        return new Op(OpKind.EXPLICIT, "DOMAIN", "JUNK", false);
      case "REMOVE_SENDER":
        return new Op(OpKind.REMOVE, "ADDRESS", null, false);
      case "REMOVE_DOMAIN":
        return new Op(OpKind.REMOVE, "DOMAIN", null, false);
      case "MOVED_TO_JUNK":
      case "REPORTED_SPAM":
        return new Op(OpKind.INFERRED, "ADDRESS", "JUNK", false);
      case "UNSUBSCRIBED":
        return new Op(OpKind.INFERRED, "ADDRESS", "JUNK", true);
      case "REPLIED":
        return new Op(OpKind.INFERRED, "ADDRESS", "SAFE", false);
      default:
        return NONE;
    }
  }

  static boolean isListEdit(String action) {
    switch (action) {
      case "ALLOW_SENDER":
      case "BLOCK_SENDER":
      case "ALLOW_DOMAIN":
      case "BLOCK_DOMAIN":
      case "REMOVE_SENDER":
      case "REMOVE_DOMAIN":
        return true;
      default:
        return false;
    }
  }

  static boolean dedupeApplies(String action) {
    return !isListEdit(action) && learningOp(action).kind != OpKind.NONE;
  }

  static final class LearnResult {
    Prefs next;
    /** evicted entries, "scope/source" each (for the metric) */
    List<String> evicted = List.of();
    /** the change made, or why none (the um_interactions_total outcome label) */
    String outcome;
  }

  private static LearnResult ignored(String reason) {
    LearnResult r = new LearnResult();
    r.outcome = reason;
    return r;
  }

  private static int findEntry(List<Entry> entries, String scope, String key) {
    for (int i = 0; i < entries.size(); i++) {
      Entry e = entries.get(i);
      if (scope.equals(e.scope) && (e.key.equals(key) || Model.normalizeKey(e.key).equals(key))) return i;
    }
    return -1;
  }

  private static int lruIndex(List<Entry> entries, String scope, String source) {
    int best = -1;
    for (int i = 0; i < entries.size(); i++) {
      Entry e = entries.get(i);
      if (!scope.equals(e.scope) || !source.equals(e.source)) continue;
      if (best < 0) {
        best = i;
        continue;
      }
      Entry b = entries.get(best);
      if (e.updatedAt < b.updatedAt || (e.updatedAt == b.updatedAt && e.key.compareTo(b.key) < 0)) best = i;
    }
    return best;
  }

  private static List<String> evictFor(List<Entry> entries, String scope, int limit) {
    List<String> evicted = new ArrayList<>();
    int count = 0;
    for (Entry e : entries) if (scope.equals(e.scope)) count++;
    while (count >= limit && count > 0) {
      int i = lruIndex(entries, scope, "INFERRED");
      if (i < 0) i = lruIndex(entries, scope, "EXPLICIT");
      if (i < 0) break;
      Entry e = entries.remove(i);
      evicted.add(e.scope + "/" + e.source);
      count--;
    }
    return evicted;
  }

  static LearnResult learn(Prefs current, Interaction interaction, boolean duplicate) {
    String action = interaction.action;
    Op op = learningOp(action);
    if (op.kind == OpKind.NONE) return ignored("DELETED".equals(action) ? "DELETED" : "UNKNOWN_ACTION");
    long t = interaction.occurredAt;
    if (!isListEdit(action)) {
      if (duplicate) return ignored("DUPLICATE");
      if (t - interaction.messageReceivedAt > Model.LEARNING_WINDOW_MS) return ignored("TOO_LATE");
    }
    String scope = op.kind == OpKind.INFERRED ? "ADDRESS" : op.scope;
    String key = "ADDRESS".equals(scope)
        ? Model.normalizeKey(interaction.senderAddress)
        : Model.senderDomainOf(interaction.senderAddress, interaction.senderDomain);
    if (key.isEmpty()) return ignored("NO_KEY");

    List<Entry> entries = current != null ? current.entries : List.of();
    int idx = findEntry(entries, scope, key);
    Entry existing = idx >= 0 ? entries.get(idx) : null;

    Entry replacement;
    String change;
    switch (op.kind) {
      case EXPLICIT: {
        if (existing != null && "EXPLICIT".equals(existing.source) && op.verdict.equals(existing.verdict)) return ignored("NO_CHANGE");
        replacement = new Entry();
        replacement.key = key;
        replacement.scope = scope;
        replacement.verdict = op.verdict;
        replacement.source = "EXPLICIT";
        replacement.evidence = Model.EXPLICIT_EVIDENCE;
        replacement.firstSeenAt = t;
        replacement.updatedAt = t;
        replacement.expiresAt = null;
        change = existing == null ? "ADDED" : "REPLACED";
        break;
      }
      case REMOVE: {
        if (existing == null) return ignored("NO_CHANGE");
        replacement = null;
        change = "REMOVED";
        break;
      }
      default: { // INFERRED
        if (existing != null && "EXPLICIT".equals(existing.source)) return ignored("EXPLICIT_ENTRY");
        int base = op.unsubscribe ? Model.UNSUBSCRIBE_EVIDENCE : 1;
        Entry live = existing != null && !Model.isExpired(existing, t) ? existing : null;
        int evidence;
        long firstSeenAt;
        if (live != null && op.verdict.equals(live.verdict)) {
          if (t - live.updatedAt > Model.EVIDENCE_RESTART_MS) {
            evidence = base;
            firstSeenAt = t;
            change = "RESTARTED";
          } else {
            int added = live.evidence == Integer.MAX_VALUE ? Integer.MAX_VALUE : live.evidence + 1;
            evidence = op.unsubscribe ? Math.max(added, Model.UNSUBSCRIBE_EVIDENCE) : added;
            firstSeenAt = live.firstSeenAt;
            change = "EVIDENCE";
          }
        } else {
          evidence = base;
          firstSeenAt = t;
          change = existing == null ? "ADDED" : "REPLACED";
        }
        replacement = new Entry();
        replacement.key = key;
        replacement.scope = scope;
        replacement.verdict = op.verdict;
        replacement.source = "INFERRED";
        replacement.evidence = evidence;
        replacement.firstSeenAt = firstSeenAt;
        replacement.updatedAt = t;
        replacement.expiresAt = t + Model.INFERRED_EXPIRY_MS;
      }
    }

    List<Entry> out = new ArrayList<>(entries.size() + 1);
    for (int i = 0; i < entries.size(); i++) {
      Entry e = entries.get(i);
      if (i == idx) {
        if (replacement != null) out.add(replacement);
      } else if (!("INFERRED".equals(e.source) && Model.isExpired(e, t))) {
        out.add(e);
      }
    }
    LearnResult r = new LearnResult();
    if (idx < 0 && replacement != null) {
      r.evicted = evictFor(out, scope, "DOMAIN".equals(scope) ? Model.MAX_DOMAIN_ENTRIES : Model.MAX_ADDRESS_ENTRIES);
      out.add(replacement);
    }
    Prefs next = new Prefs();
    if (current == null) {
      next.mailboxId = interaction.mailboxId;
      next.tenantId = interaction.tenantId;
      next.version = 1;
    } else {
      next.mailboxId = current.mailboxId;
      next.tenantId = current.tenantId;
      next.version = current.version + 1;
    }
    next.updatedAt = t;
    next.entries = out;
    r.next = next;
    r.outcome = change;
    return r;
  }

  // -------------------------------------------------------------------------------------------
  // rollout (rollout.ts)

  private static int rank(String mode) {
    switch (mode) {
      case "OFF":
        return 0;
      case "SHADOW":
        return 1;
      default:
        return 2;
    }
  }

  /** murmur3_x86_32 of the bytes, seed 0 (the rollout bucket contract of rollout.ts). */
  static int murmur3(byte[] data) {
    int h = 0;
    int len = data.length;
    int n = len & ~3;
    for (int i = 0; i < n; i += 4) {
      int k = (data[i] & 0xff) | ((data[i + 1] & 0xff) << 8) | ((data[i + 2] & 0xff) << 16) | (data[i + 3] << 24);
      k *= 0xcc9e2d51;
      k = Integer.rotateLeft(k, 15);
      k *= 0x1b873593;
      h ^= k;
      h = Integer.rotateLeft(h, 13);
      h = h * 5 + 0xe6546b64;
    }
    int k = 0;
    switch (len & 3) {
      case 3:
        k ^= (data[n + 2] & 0xff) << 16;
        // fall through
      case 2:
        k ^= (data[n + 1] & 0xff) << 8;
        // fall through
      case 1:
        k ^= data[n] & 0xff;
        k *= 0xcc9e2d51;
        k = Integer.rotateLeft(k, 15);
        k *= 0x1b873593;
        h ^= k;
        break;
      default:
        break;
    }
    h ^= len;
    h ^= h >>> 16;
    h *= 0x85ebca6b;
    h ^= h >>> 13;
    h *= 0xc2b2ae35;
    h ^= h >>> 16;
    return h;
  }

  static long rolloutHash(String tenantId, String mailboxId) {
    return murmur3((tenantId + ":" + mailboxId).getBytes(StandardCharsets.UTF_8)) & 0xffffffffL;
  }

  /** Fails fast if the hash does not give rollout.ts' test vectors. */
  static void checkRolloutHash() {
    if (rolloutHash("acme", "mb-1") != 514334219L || rolloutHash("tenant-7", "alice@example.com") != 405548882L
        || rolloutHash("t", "Zoë") != 2778054340L)
      throw new IllegalStateException("murmur3 does not match the rollout bucket contract");
  }

  static String effectiveMode(Flag global, Flag tenant, String tenantId, String mailboxId, String defaultMode) {
    String requested = tenant != null ? tenant.mode : defaultMode;
    String mode = global != null && rank(global.mode) < rank(requested) ? global.mode : requested;
    if (!"LIVE".equals(mode)) return mode;
    int percent = Math.min(tenant == null ? 100 : tenant.livePercent, global == null ? 100 : global.livePercent);
    if (percent >= 100) return "LIVE";
    return rolloutHash(tenantId, mailboxId) % 100 < percent ? "LIVE" : "SHADOW";
  }
}
