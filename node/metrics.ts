// The node's Prometheus metrics (prom-client), served at GET /metrics. One registry per
// node, not prom-client's global one, so that several nodes in one process (tests, the
// simulator) each count their own. docs/metrics.md lists every metric.
//
// Hot paths (Produce, Fetch, pushes, every request) only add to plain numbers or make one
// prom-client call per request; per-topic totals are copied into the counters at scrape
// time, and everything read from storage or the groups is read at scrape time too.
//
// Cardinality: every label value comes from the node's own bounded sets. Topic and
// partition labels are bounded by the node's partition limit (limits.partitionsMax), request
// kinds and error names by the protocol, groups by the offsets store's group limit; the
// per-partition consumer lag is further capped at GROUP_LAG_SERIES_MAX series.

import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { errorSpecForCode } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import { BATCH_OVERHEAD, LOG_OVERHEAD, OFFSET_LENGTH, OFFSET_RECORD_COUNT } from '../protocol/record-batch.js';
import type { GroupCoordinator } from './groups/coordinator.js';
import type { ConsumerOffsets } from './groups/offsets-store.js';
import type { LogManager } from './storage/log-manager.js';
import type { LogRead } from './storage/partition-log.js';

/**
 * Why a connection ended. The first group is ordinary; every other reason is a peer that
 * misbehaved or was refused, which an operator watches for.
 */
export type CloseReason =
  | 'client_closed'
  | 'node_shutdown'
  | 'handshake_timeout'
  | 'handshake_malformed'
  | 'handshake_too_big'
  | 'handshake_failed'
  | 'handshake_abandoned'
  | 'unauthorized'
  | 'hello_timeout'
  | 'hello_invalid'
  | 'frame_malformed'
  | 'frame_too_big'
  | 'sealed_frame_failed'
  | 'credential_revoked'
  | 'credential_expired'
  /** Hello refused: the principal holds limits.connectionsPerPrincipalMax connections. */
  | 'connections_per_principal'
  /** A chunk of an unfinished frame past limits.inflightBytes*Max: closed with 1013. */
  | 'request_bytes_max'
  | 'protocol_error'
  /** Closed before Hello to make room for a newer stranger: limits.handshakesMax was full. */
  | 'preauth_evicted'
  /** No WebSocket upgrade (nor plain HTTP request) within handshakeTimeoutMs of the TCP accept. */
  | 'http_timeout'
  /** Only under test: BrokerOptions.faults dropped the connection. */
  | 'fault_injected';

/**
 * Request latency buckets, in seconds: an edge broker answers most requests well under a
 * millisecond (a Metadata, an acks=1 Produce with flush=interval), a flush=batch Produce in
 * one fsync (a few ms on an SD card, more when it is busy), and a long-poll Fetch only when
 * data arrives or its wait ends (up to fetchWaitMsMax, 30 s by default).
 */
export const REQUEST_DURATION_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** Per-partition consumer lag series reported at most; lag per group is always complete. */
export const GROUP_LAG_SERIES_MAX = 10_000;

/**
 * How often the event-loop monitor samples, in ms (prom-client's default). Each sample is
 * the interval between two wakeups, so an idle loop reads about this much: it is taken off.
 */
const EVENT_LOOP_RESOLUTION_MS = 10;

/** What the disk guard reports, read at scrape time. */
export interface StorageFigures {
  /** Bytes held by every partition's segments. */
  usedBytes: number;
  /** Free bytes on the data folder's file system; not finite when not measured. */
  freeBytes: number;
  /** True while produce to user topics is refused because storage is full. */
  refusing: boolean;
}

/** What the node's metrics read at scrape time. Only the first two are required. */
export interface MetricSources {
  connections(): number;
  handshakesInProgress(): number;
  /** Partition gauges, consumer lag, and which topics still exist. */
  logs?: LogManager;
  /** Committed offsets, for consumer lag. */
  offsets?: ConsumerOffsets;
  /** Live members per group. A function: the coordinator may be made after the metrics. */
  groups?: () => GroupCoordinator | undefined;
  /** Bytes queued towards clients node-wide, as the send budget counts them. */
  sendBufferBytes?: () => number;
  /** Bytes of request frames held node-wide (being received, or in progress). */
  requestBytes?: () => number;
  /** The disk guard's figures; absent (or answering undefined) reports no storage gauges. */
  storage?: () => StorageFigures | undefined;
}

/** Plain totals per topic, added to on the hot paths and published at scrape time. */
interface TopicTraffic {
  bytesIn: number;
  recordsIn: number;
  bytesOut: number;
  recordsOut: number;
}

export interface NodeMetrics {
  readonly registry: Registry;
  readonly connectionsClosed: Counter<'reason'>;
  /** Refused at the TCP accept or the HTTP upgrade, before any handshake: a limit was reached. */
  readonly connectionsRefused: Counter<'reason'>;
  readonly requestsUnauthorized: Counter<'action'>;
  /**
   * A limit of docs/configuration.md was reached, by its config key (`limits.<key>`): the
   * request, connection or part of it it stopped was answered with a typed error, refused
   * or made to wait.
   */
  readonly limitReached: Counter<'limit'>;
  /** Idempotent resends recognised (answered DUPLICATE_SEQUENCE, nothing appended). */
  readonly duplicateBatches: Counter;
  /** Whole segments the disk guard deleted to make room. */
  readonly diskGuardDroppedSegments: Counter<'topic'>;
  readonly diskGuardDroppedBytes: Counter<'topic'>;
  /** Produce batches refused (STORAGE_FULL) while storage was full. */
  readonly diskGuardRefusedBatches: Counter<'topic'>;
  /** Segments retention deleted, by reason: time (retention.ms) or size (retention.bytes). */
  readonly retentionDeletedSegments: Counter<'topic' | 'reason'>;
  readonly compactionRuns: Counter<'topic'>;
  readonly compactionRemovedBytes: Counter<'topic'>;
  /** A batch appended by Produce (not a duplicate): its bytes and its header's record count. */
  countAppended(topic: string, batch: Buffer): void;
  /** Stored batches served by Fetch or pushed to a subscription (a LogRead: counted without a walk). */
  countServed(topic: string, read: LogRead): void;
  /** One request answered (or given up): its time in the handler and its request-level error. */
  observeRequest(kind: number, seconds: number, response: object | undefined): void;
  /** Drops a deleted topic's series, so that they do not linger. */
  forgetTopic(topic: string): void;
  /** Stops what runs in the background (the event-loop monitor). Idempotent. */
  close(): void;
}

export function createMetrics(gauges: MetricSources): NodeMetrics {
  const registry = new Registry();
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) => new Counter<L>({ name, help, labelNames, registers: [registry] });
  const connectionsClosed = counter('tributary_connections_closed_total', 'Client connections closed, by reason', ['reason']);
  const connectionsRefused = counter('tributary_connections_refused_total', 'Sockets and WebSocket upgrades refused before the handshake, by the limit reached', ['reason']);
  const requestsUnauthorized = counter('tributary_requests_unauthorized_total', 'Requests (or parts of requests) refused by the ACLs, by action', ['action']);
  const limitReached = counter('tributary_limits_reached_total', 'Times a configured limit stopped a request, a connection or part of one, by the limit\'s config key', ['limit']);
  const duplicateBatches = counter('tributary_produce_duplicate_batches_total', 'Batches an idempotent producer resent that were already in the log (answered with their original offsets)', []);
  new Gauge({
    name: 'tributary_connections',
    help: 'Open client connections (WebSockets)',
    registers: [registry],
    collect() {
      this.set(gauges.connections());
    },
  });
  new Gauge({
    name: 'tributary_handshakes_in_progress',
    help: 'Sockets before admission: from TCP accept until Hello succeeded (HTTP, Noise handshake, waiting for Hello)',
    registers: [registry],
    collect() {
      this.set(gauges.handshakesInProgress());
    },
  });

  /** A gauge read from `read` at each scrape, when the node gives one. */
  const readGauge = (name: string, help: string, read: (() => number) | undefined) => {
    if (read) new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  };
  readGauge('tributary_send_buffer_bytes', 'Bytes queued towards clients, all connections together (bounded by limits.sendBufferBytesTotalMax; queues under 64 KiB not counted)', gauges.sendBufferBytes);
  readGauge(
    'tributary_request_bytes_held',
    'Bytes of request frames the node holds: being reassembled from their chunks, or read and not yet answered (bounded by limits.inflightBytesTotalMax)',
    gauges.requestBytes,
  );

  const traffic = topicTrafficMetrics(registry, gauges.logs);
  const requests = requestMetrics(registry);
  if (gauges.logs) partitionGauges(registry, gauges.logs);
  if (gauges.logs && gauges.offsets) groupGauges(registry, gauges.logs, gauges.offsets, gauges.groups);
  if (gauges.storage) storageGauges(registry, gauges.storage);
  const stopProcessMetrics = processMetrics(registry);

  return {
    registry,
    connectionsClosed,
    connectionsRefused,
    requestsUnauthorized,
    limitReached,
    duplicateBatches,
    diskGuardDroppedSegments: counter('tributary_disk_guard_dropped_segments_total', 'Oldest segments the disk guard deleted to stay within its storage limits', ['topic']),
    diskGuardDroppedBytes: counter('tributary_disk_guard_dropped_bytes_total', 'Bytes of the segments the disk guard deleted', ['topic']),
    diskGuardRefusedBatches: counter('tributary_disk_guard_refused_batches_total', 'Produce batches refused with STORAGE_FULL while storage was full', ['topic']),
    retentionDeletedSegments: counter('tributary_retention_deleted_segments_total', 'Segments deleted by retention, by reason (time: retention.ms, size: retention.bytes)', ['topic', 'reason']),
    compactionRuns: counter('tributary_compaction_runs_total', 'Partition compactions that rewrote or deleted at least one segment (cleanup.policy=compact)', ['topic']),
    compactionRemovedBytes: counter('tributary_log_cleaner_removed_bytes_total', 'Bytes the log cleaner removed (superseded records)', ['topic']),
    countAppended: traffic.countAppended,
    countServed: traffic.countServed,
    observeRequest: requests.observe,
    forgetTopic: traffic.forget,
    close: stopProcessMetrics,
  };
}

function topicTrafficMetrics(registry: Registry, logs: LogManager | undefined) {
  const byTopic = new Map<string, TopicTraffic>();
  const of = (topic: string): TopicTraffic => {
    let t = byTopic.get(topic);
    if (t === undefined) {
      t = { bytesIn: 0, recordsIn: 0, bytesOut: 0, recordsOut: 0 };
      byTopic.set(topic, t);
    }
    return t;
  };
  // A topic deleted without forgetTopic (or served once more in the moment of its
  // deletion) is dropped here, at the next scrape.
  const prune = () => {
    if (logs) for (const topic of byTopic.keys()) if (!logs.topic(topic)) byTopic.delete(topic);
  };
  const publish = (name: string, help: string, field: keyof TopicTraffic) =>
    new Counter({
      name,
      help,
      labelNames: ['topic'] as const,
      registers: [registry],
      collect() {
        prune();
        // The totals only grow while a topic exists; recreating a deleted topic starts at
        // zero again, which Prometheus reads as a counter reset.
        this.reset();
        for (const [topic, t] of byTopic) this.inc({ topic }, t[field]);
      },
    });
  publish('tributary_topic_bytes_in_total', 'Bytes of record batches appended by Produce, per topic (resends of an idempotent producer not counted)', 'bytesIn');
  publish('tributary_topic_records_in_total', 'Records appended by Produce, per topic (from each batch header)', 'recordsIn');
  publish('tributary_topic_bytes_out_total', 'Bytes of record batches served by Fetch and pushed to subscriptions, per topic', 'bytesOut');
  publish('tributary_topic_records_out_total', 'Records served by Fetch and pushed to subscriptions, per topic (from each batch header)', 'recordsOut');
  return {
    countAppended(topic: string, batch: Buffer): void {
      const t = of(topic);
      t.bytesIn += batch.length;
      if (batch.length >= BATCH_OVERHEAD) t.recordsIn += batch.readInt32BE(OFFSET_RECORD_COUNT);
    },
    countServed(topic: string, read: LogRead): void {
      if (read.batches.length === 0) return;
      const t = of(topic);
      t.bytesOut += read.bytes.length;
      for (const batch of read.batches) t.recordsOut += batch.recordCount;
    },
    forget(topic: string): void {
      byTopic.delete(topic);
    },
  };
}

function requestMetrics(registry: Registry) {
  const duration = new Histogram({
    name: 'tributary_request_duration_seconds',
    help: 'Time from a request decoded to its answer ready, per request kind (a long-poll Fetch includes its wait)',
    labelNames: ['kind'] as const,
    buckets: [...REQUEST_DURATION_BUCKETS_SECONDS],
    registers: [registry],
  });
  const total = new Counter({ name: 'tributary_requests_total', help: 'Requests handled, per request kind', labelNames: ['kind'] as const, registers: [registry] });
  const errors = new Counter({
    name: 'tributary_request_errors_total',
    help: 'Requests answered with a request-level error, per request kind and error name (errors of single partitions are not counted)',
    labelNames: ['kind', 'error'] as const,
    registers: [registry],
  });
  // One label object per kind, made once: the kind number comes from the peer, so any
  // number outside the protocol shares the label "unknown".
  const labelsByKind = new Map<number, { kind: string }>();
  for (const value of Object.values(Kind)) if (typeof value === 'number') labelsByKind.set(value, { kind: Kind[value] });
  const unknown = { kind: 'unknown' };
  return {
    observe(kind: number, seconds: number, response: object | undefined): void {
      const labels = labelsByKind.get(kind) ?? unknown;
      duration.observe(labels, seconds);
      total.inc(labels);
      const error = (response as { error?: unknown } | undefined)?.error;
      if (typeof error === 'number' && error !== 0) errors.inc({ kind: labels.kind, error: errorSpecForCode(error).name });
    },
  };
}

/** Per-partition figures, read from storage at scrape time; a deleted topic's vanish. */
function partitionGauges(registry: Registry, logs: LogManager): void {
  const gauge = (name: string, help: string, read: (log: NonNullable<ReturnType<LogManager['partition']>>) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['topic', 'partition'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const { name: topic, partitions } of logs.topics()) {
          for (let p = 0; p < partitions; p++) {
            const log = logs.partition(topic, p);
            if (!log) continue;
            let value: number;
            try {
              value = read(log);
            } catch {
              continue; // a log closing under a scrape during shutdown
            }
            this.set({ topic, partition: String(p) }, value);
          }
        }
      },
    });
  gauge('tributary_partition_log_end_offset', 'Offset the next appended record gets (log end offset)', (log) => log.logEndOffset);
  gauge('tributary_partition_log_start_offset', 'First offset still in the log (log start offset)', (log) => log.logStartOffset);
  gauge('tributary_partition_high_watermark', 'Offset up to which consumers may read (high watermark)', (log) => log.highWatermark);
  gauge('tributary_partition_size_bytes', 'Bytes of the partition\'s segments on disk', (log) => log.sizeBytes);
  gauge('tributary_partition_segments', 'Segments of the partition', (log) => log.segmentCount);
}

/** Lag of every committed offset: the high watermark minus the committed offset, at least 0. */
function groupGauges(registry: Registry, logs: LogManager, offsets: ConsumerOffsets, groups: (() => GroupCoordinator | undefined) | undefined): void {
  // The same figure as `tributary groups describe`: committed offsets of deleted
  // partitions are skipped, and an offset past the high watermark lags 0.
  const eachLag = (visit: (group: string, topic: string, partition: number, lag: number) => void) => {
    for (const group of offsets.groupIds()) {
      for (const { topic, partition, committed } of offsets.all(group)) {
        const log = logs.partition(topic, partition);
        if (!log) continue;
        let highWatermark: number;
        try {
          highWatermark = log.highWatermark;
        } catch {
          continue;
        }
        visit(group, topic, partition, Math.max(0, highWatermark - committed.offset));
      }
    }
  };
  new Gauge({
    name: 'tributary_consumer_group_lag',
    help: `Records between a group's committed offset and the high watermark, per partition (at most ${GROUP_LAG_SERIES_MAX} series)`,
    labelNames: ['group', 'topic', 'partition'] as const,
    registers: [registry],
    collect() {
      this.reset();
      let series = 0;
      eachLag((group, topic, partition, lag) => {
        if (series++ < GROUP_LAG_SERIES_MAX) this.set({ group, topic, partition: String(partition) }, lag);
      });
    },
  });
  new Gauge({
    name: 'tributary_consumer_group_lag_sum',
    help: "Sum of a group's lag over every partition it committed an offset for",
    labelNames: ['group'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const group of offsets.groupIds()) this.set({ group }, 0);
      eachLag((group, _topic, _partition, lag) => this.inc({ group }, lag));
    },
  });
  const totalGauge = (name: string, help: string, read: () => number | undefined) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const value = read();
        if (value === undefined) this.remove();
        else this.set(value);
      },
    });
  totalGauge('tributary_committed_offset_groups', 'Groups with committed offsets held by the node (bounded by limits.offsetGroupsMax)', () => offsets.totals.groups);
  totalGauge('tributary_committed_offsets', 'Committed offsets (group, topic, partition) held by the node (bounded by limits.offsetPartitionsMax)', () => offsets.totals.partitions);
  totalGauge('tributary_committed_offset_metadata_bytes', 'Bytes of commit metadata held by the node (bounded by limits.offsetMetadataBytesMax)', () => offsets.totals.metadataBytes);
  totalGauge('tributary_committed_offsets_skipped_at_start', 'Records of __consumer_offsets the last start left out because the node-wide limits were reached', () => offsets.skippedRecordsAtLoad);
  totalGauge('tributary_group_members_live', 'Live consumer group members on the node (bounded by limits.groupMembersMax)', () => groups?.()?.liveMembers);
  new Gauge({
    name: 'tributary_consumer_group_members',
    help: 'Live members of a consumer group (0 for a group with committed offsets and no member)',
    labelNames: ['group'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const group of offsets.groupIds()) this.set({ group }, 0);
      const coordinator = groups?.();
      if (coordinator) for (const group of coordinator.groupIds()) this.set({ group }, coordinator.memberCount(group));
    },
  });
}

function storageGauges(registry: Registry, storage: () => StorageFigures | undefined): void {
  const gauge = (name: string, help: string, read: (figures: StorageFigures) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const figures = storage();
        const value = figures === undefined ? NaN : read(figures);
        if (Number.isFinite(value)) this.set(value);
        else this.remove(); // no sample at all, rather than a made-up 0
      },
    });
  gauge('tributary_storage_used_bytes', 'Bytes held by every partition\'s segments, as the disk guard counts them', (f) => f.usedBytes);
  gauge('tributary_storage_free_bytes', 'Free bytes on the data folder\'s file system (absent when not measured)', (f) => f.freeBytes);
  gauge('tributary_disk_guard_refusing', '1 while produce to user topics is refused because storage is full, else 0', (f) => (f.refusing ? 1 : 0));
}

/**
 * The process figures an operator of a long-running gateway watches: memory, CPU, open
 * files and event-loop lag. Written here rather than with prom-client's
 * collectDefaultMetrics, whose event-loop monitor and GC observer can never be stopped:
 * every node started in a process (tests start hundreds) would leave its own running.
 * Returns the stop, called when the node closes.
 */
function processMetrics(registry: Registry): () => void {
  const loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  loopDelay.enable();
  let stopped = false;
  const lagSeconds = (ns: number) => Math.max(0, ns / 1e9 - EVENT_LOOP_RESOLUTION_MS / 1000);
  const gauge = (name: string, help: string, collect: (this: Gauge) => void) => new Gauge({ name, help, registers: [registry], collect });

  gauge('process_resident_memory_bytes', 'Resident memory size in bytes', function () {
    this.set(process.memoryUsage.rss());
  });
  gauge('nodejs_heap_size_used_bytes', 'V8 heap in use, in bytes', function () {
    this.set(process.memoryUsage().heapUsed);
  });
  gauge('nodejs_external_memory_bytes', 'Memory held outside the V8 heap (Buffers), in bytes', function () {
    this.set(process.memoryUsage().external);
  });
  new Counter({
    name: 'process_cpu_seconds_total',
    help: 'User and system CPU time spent, in seconds',
    registers: [registry],
    collect() {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6);
    },
  });
  // The process's own start on the system's clock, as process.uptime() counts it; the
  // node's injected clock may be a test's, which this figure must not follow.
  const startTimeSeconds = Math.round(Date.now() / 1000 - process.uptime());
  gauge('process_start_time_seconds', 'Start time of the process since the Unix epoch, in seconds', function () {
    this.set(startTimeSeconds);
  });
  if (process.platform === 'linux') {
    gauge('process_open_fds', 'Open file descriptors (segments, indexes, sockets)', function () {
      try {
        this.set(readdirSync('/proc/self/fd').length);
      } catch {
        this.remove();
      }
    });
  }
  // The three lag figures cover the time since the previous scrape: the first one read
  // takes the figures and starts a new window. No sample yet reports nothing.
  let window = { mean: NaN, p99: NaN, max: NaN };
  const lagGauge = (name: string, help: string, pick: (w: typeof window) => number, takesWindow: boolean) =>
    gauge(name, help, function () {
      if (takesWindow) {
        window = loopDelay.count > 0 ? { mean: lagSeconds(loopDelay.mean), p99: lagSeconds(loopDelay.percentile(99)), max: lagSeconds(loopDelay.max) } : { mean: NaN, p99: NaN, max: NaN };
        loopDelay.reset();
      }
      const value = pick(window);
      if (Number.isNaN(value)) this.remove();
      else this.set(value);
    });
  lagGauge('nodejs_eventloop_lag_seconds', 'Mean event-loop delay since the previous scrape, in seconds', (w) => w.mean, true);
  lagGauge('nodejs_eventloop_lag_p99_seconds', '99th percentile of the event-loop delay since the previous scrape, in seconds', (w) => w.p99, false);
  lagGauge('nodejs_eventloop_lag_max_seconds', 'Longest event-loop delay since the previous scrape, in seconds', (w) => w.max, false);

  return () => {
    if (stopped) return;
    stopped = true;
    loopDelay.disable();
  };
}
