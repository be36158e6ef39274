import { describe, expect, it } from 'vitest';
import {
  histogramQuantiles,
  parseProcStat,
  parseProcStatus,
  parsePrometheus,
  ProcSampler,
  sumOf,
} from '../../../bench/service-process.js';

const METRICS = `# HELP um_decisions_total Decisions, by tenant and action
# TYPE um_decisions_total counter
um_decisions_total{tenant="t1",action="INBOX"} 10
um_decisions_total{tenant="t2",action="JUNK"} 5

# TYPE um_dead_letters_total counter
um_dead_letters_total{topic="p-mail-events",code="SERDE_ERROR"} 2
um_dead_letters_total{topic="p-user-interactions",code="SERDE_ERROR"} 1
um_instance_state{state="CREATED"} 0
um_instance_state{state="RUNNING"} 1
um_odd{path="a \\"quoted\\", b"} 1.5e3
# TYPE um_dwell_seconds histogram
um_dwell_seconds_bucket{le="0.01",tenant="t1"} 50
um_dwell_seconds_bucket{le="0.1",tenant="t1"} 90
um_dwell_seconds_bucket{le="+Inf",tenant="t1"} 100
um_dwell_seconds_bucket{le="0.01",tenant="t2"} 50
um_dwell_seconds_bucket{le="0.1",tenant="t2"} 90
um_dwell_seconds_bucket{le="+Inf",tenant="t2"} 100
um_dwell_seconds_sum{tenant="t1"} 3
um_dwell_seconds_count{tenant="t1"} 100
process_start_time_seconds 1796139831
`;

describe('parsePrometheus', () => {
  const samples = parsePrometheus(METRICS);

  it('reads names, labels and values, skipping comments and blank lines', () => {
    expect(samples).toHaveLength(16);
    expect(samples[0]).toEqual({ name: 'um_decisions_total', labels: { tenant: 't1', action: 'INBOX' }, value: 10 });
    expect(samples.find((s) => s.name === 'um_odd')).toEqual({
      name: 'um_odd',
      labels: { path: 'a "quoted", b' },
      value: 1500,
    });
    expect(samples.at(-1)).toEqual({ name: 'process_start_time_seconds', labels: {}, value: 1796139831 });
  });

  it('sums series, optionally by label', () => {
    expect(sumOf(samples, 'um_decisions_total')).toBe(15);
    expect(sumOf(samples, 'um_dead_letters_total', (l) => l.topic === 'p-mail-events')).toBe(2);
    expect(sumOf(samples, 'um_instance_state', (l) => l.state === 'RUNNING')).toBe(1);
    expect(sumOf(samples, 'um_missing_total')).toBe(0);
  });

  it('rejects a line that is not a sample', () => {
    expect(() => parsePrometheus('um_x{a="b"}\n')).toThrow(/not a Prometheus sample line/);
  });

  it('interpolates histogram quantiles over all label sets like histogram_quantile', () => {
    const [p50, p70, p95, p99] = histogramQuantiles(samples, 'um_dwell_seconds', [0.5, 0.7, 0.95, 0.99]);
    expect(p50).toBeCloseTo(0.01, 10); // 100 of 200 at or below 0.01
    expect(p70).toBeCloseTo(0.01 + 0.09 * (40 / 80), 10); // rank 140: halfway through (0.01, 0.1]
    // above the last finite bucket: its upper bound
    expect(p95).toBe(0.1);
    expect(p99).toBe(0.1);
    expect(histogramQuantiles(samples, 'um_nothing', [0.5])).toEqual([undefined]);
  });
});

describe('/proc parsing', () => {
  it('takes utime + stime and rss from /proc/<pid>/stat even when the command has spaces and parentheses', () => {
    // fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    const fields = ['S', '1', '2', '3', '0', '-1', '4194560', '10', '0', '0', '0', '250', '37'];
    const rest = ['0', '0', '20', '0', '12', '0', '999', '1234567', '4321'];
    const line = `4242 (node (um) x) ${[...fields, ...rest].join(' ')} 18446744073709551615 1 1 0 0\n`;
    expect(parseProcStat(line)).toEqual({ cpuTicks: 287, rssPages: 4321 });
    expect(() => parseProcStat('garbage')).toThrow();
  });

  it('reads VmRSS and VmHWM in KiB from /proc/<pid>/status', () => {
    const status = 'Name:\tnode\nVmPeak:\t 1000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t11\n';
    expect(parseProcStatus(status)).toEqual({ vmRssKiB: 102400, vmHwmKiB: 204800 });
  });

  it('samples a live process (this one) and keeps the last values after it is gone', () => {
    const s = new ProcSampler(process.pid);
    s.sample();
    expect(s.rssMiB).toBeGreaterThan(10);
    expect(s.peakRssMiB).toBeGreaterThanOrEqual(s.rssMiB);
    expect(s.cpuSeconds).toBeGreaterThan(0);
    const gone = new ProcSampler(2 ** 22 + 12345);
    gone.sample();
    expect(gone.rssMiB).toBe(0);
    expect(gone.cpuSeconds).toBe(0);
  });
});
