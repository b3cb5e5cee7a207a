// What the simulator's parts exchange: the event every virtual device sends, the verifier's
// verdict, and the run's result that the reports are made from. One definition for the
// engine (run.ts, worker.ts, device.ts), the verifier (verifier.ts) and the reports
// (report.ts).

/**
 * The value of every simulated event, CBOR-encoded; the record key is the device id, so a
 * device's events keep their order (one partition per key).
 */
export interface SimEvent {
  /** Device id, also the record key. */
  d: string;
  /** Per-device sequence number, from 0, +1 per event the device sends. */
  s: number;
  /** Send time, ms since the epoch (the sender's clock: the same machine as the verifier). */
  t: number;
  /** Sensor model: 'temperature' | 'vibration' | 'gps' | 'status'. */
  k: string;
  /** The reading. */
  p: unknown;
}

/** What the verifier found, per key (device) and in total. */
export interface Verdict {
  /** Acknowledged events never read. */
  lost: number;
  /** Events read more than once (same device and sequence). */
  duplicated: number;
  /** Events read after a later sequence of the same device. */
  outOfOrder: number;
  /** Events read whose send was never acknowledged (allowed: the ack was lost). */
  unackedSeen: number;
  /** Acknowledged events, all devices. */
  acked: number;
  /** Distinct events read. */
  read: number;
  /** Up to 20 examples per kind: "device seq". */
  examples: { lost: string[]; duplicated: string[]; outOfOrder: string[] };
  /** True when nothing acknowledged was lost and nothing was duplicated or reordered. */
  ok: boolean;
}

/** Latency percentiles in ms (HdrHistogram). */
export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** One sample of the run, one per second. */
export interface Sample {
  /** Seconds since the start of the load. */
  at: number;
  devicesConnected: number;
  /** Events sent, acknowledged, failed and read by the verifier during this second. */
  sent: number;
  acked: number;
  failed: number;
  read: number;
  /** Produce-to-consume latency of the events read this second. */
  latency: Percentiles;
  /** Send-to-ack latency of the events acknowledged this second. */
  ackLatency: Percentiles;
  /** The node's process, when the simulator knows its pid (it started it): RSS MiB and CPU % of one core. */
  nodeRssMiB: number | null;
  nodeCpuPercent: number | null;
  errors: number;
}

/**
 * The node's own counts of its connection limits (its /metrics at the end of the run, so
 * since its last start): what a fleet's connects and reconnects ran into.
 */
export interface NodeLimitCounts {
  /** `tributary_connections_refused_total` by reason: connections_max, handshakes_per_address, handshake_rate_per_address. */
  refused: Record<string, number>;
  /** `tributary_connections_closed_total{reason="preauth_evicted"}`: closed before Hello to make room (handshakesMax). */
  evicted: number;
  /** `tributary_limits_reached_total` by limit (its config key). */
  limitsReached: Record<string, number>;
}

/** A run's result: the report's input, and what `--json` writes. */
export interface RunResult {
  scenario: string;
  startedAt: string;
  durationSeconds: number;
  devices: number;
  workers: number;
  nodeUrl: string;
  samples: Sample[];
  /** Over the whole run. */
  totals: {
    sent: number;
    acked: number;
    failed: number;
    read: number;
    latency: Percentiles;
    ackLatency: Percentiles;
    /** Seconds from the first connect to all devices connected (null if some never did). */
    connectSeconds: number | null;
    /**
     * The same latencies counted only from the first sample in which every device was
     * connected to the last sample before the first outage (a kill-node or drop-connections
     * action, or a sample short of a device) or the end of the load (devices then
     * disconnect): the fleet at full load, without its connect ramp and without any outage
     * or what devices held back through it. Null when the devices were never all connected
     * before either.
     */
    allConnected: { fromSeconds: number; toSeconds: number; latency: Percentiles; ackLatency: Percentiles } | null;
    errors: Record<string, number>;
  };
  /** What the scenario did to the node (kill, restart, drop connections), with times. */
  actions: { at: number; what: string }[];
  /** Null when the simulator did not start the node (or it did not answer at the end). */
  nodeLimits: NodeLimitCounts | null;
  verdict: Verdict;
}
