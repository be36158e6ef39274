package unwantedmail.kstreams;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;

/** Counters for /metrics (names and labels as the Node service's, where the bench reads them). */
final class Metrics {
  private static final String[] ACTIONS = {"INBOX", "PROMOTIONS", "JUNK"};
  private static final String[] REASONS = {"HIGH_CONFIDENCE_SPAM", "ORG_BLOCK", "ORG_ALLOW", "USER_SAFE", "USER_PROMOTIONS",
      "USER_JUNK", "SPAM_SCORE", "BULK", "CLEAN"};
  private static final String[] MODES = {"LIVE", "SHADOW"};

  private final LongAdder[][][] decisions = new LongAdder[ACTIONS.length][REASONS.length][MODES.length];
  final LongAdder decisionsOff = new LongAdder();
  final LongAdder preferenceUpdates = new LongAdder();
  final LongAdder evictions = new LongAdder();
  final Map<String, LongAdder> interactions = new ConcurrentHashMap<>();
  final Map<String, LongAdder> deadLetters = new ConcurrentHashMap<>();
  final Map<String, LongAdder> restored = new ConcurrentHashMap<>();

  Metrics() {
    for (LongAdder[][] a : decisions)
      for (LongAdder[] b : a)
        for (int i = 0; i < b.length; i++) b[i] = new LongAdder();
  }

  private static int index(String[] values, String v) {
    for (int i = 0; i < values.length; i++) if (values[i].equals(v)) return i;
    throw new IllegalArgumentException(v);
  }

  void decision(String action, String reason, String mode) {
    decisions[index(ACTIONS, action)][index(REASONS, reason)][index(MODES, mode)].increment();
  }

  void interaction(String action, String outcome) {
    interactions.computeIfAbsent(action + '\u0000' + outcome, k -> new LongAdder()).increment();
  }

  void deadLetter(String topic, String code) {
    deadLetters.computeIfAbsent(topic + '\u0000' + code, k -> new LongAdder()).increment();
  }

  void restored(String store, long n) {
    restored.computeIfAbsent(store, k -> new LongAdder()).add(n);
  }

  private static String esc(String s) {
    return s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
  }

  void write(StringBuilder o) {
    o.append("# TYPE um_decisions_total counter\n");
    for (int a = 0; a < ACTIONS.length; a++)
      for (int r = 0; r < REASONS.length; r++)
        for (int m = 0; m < MODES.length; m++) {
          long n = decisions[a][r][m].sum();
          if (n > 0)
            o.append("um_decisions_total{action=\"").append(ACTIONS[a]).append("\",reason=\"").append(REASONS[r])
                .append("\",mode=\"").append(MODES[m]).append("\"} ").append(n).append('\n');
        }
    o.append("# TYPE um_decisions_off_total counter\num_decisions_off_total ").append(decisionsOff.sum()).append('\n');
    o.append("# TYPE um_interactions_total counter\n");
    interactions.forEach((k, v) -> {
      String[] p = k.split("\u0000", 2);
      o.append("um_interactions_total{action=\"").append(esc(p[0])).append("\",outcome=\"").append(esc(p[1])).append("\"} ")
          .append(v.sum()).append('\n');
    });
    o.append("# TYPE um_dead_letters_total counter\n");
    deadLetters.forEach((k, v) -> {
      String[] p = k.split("\u0000", 2);
      o.append("um_dead_letters_total{topic=\"").append(esc(p[0])).append("\",code=\"").append(esc(p[1])).append("\"} ")
          .append(v.sum()).append('\n');
    });
    o.append("# TYPE um_preference_updates_total counter\num_preference_updates_total ").append(preferenceUpdates.sum()).append('\n');
    o.append("# TYPE um_preference_evictions_total counter\num_preference_evictions_total ").append(evictions.sum()).append('\n');
    o.append("# TYPE um_restore_records_total counter\n");
    if (restored.isEmpty()) o.append("um_restore_records_total 0\n");
    restored.forEach((k, v) -> o.append("um_restore_records_total{store=\"").append(esc(k)).append("\"} ").append(v.sum()).append('\n'));
  }
}
