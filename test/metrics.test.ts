// GET /metrics of a real node, read as Prometheus's text exposition format by a strict
// parser: per-topic traffic counted exactly, request latency per kind, partition gauges
// equal to what the node answers on the wire, consumer lag, a deleted topic's series gone.
// Then the metric objects alone: histogram buckets, record counting, storage gauges.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Connection } from '../devices/index.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { createMetrics, REQUEST_DURATION_BUCKETS_SECONDS } from '../node/metrics.js';
import { Errors } from '../protocol/errors.js';
import { Kind, LATEST_TIMESTAMP } from '../protocol/frames.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { tempDir } from './helpers/node-process.js';

// ---------------------------------------------------------------------------------------
// A strict reader of the text exposition format (version 0.0.4).

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  type: string;
  help?: string;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(text: string, line: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`bad value '${text}' in: ${line}`);
  return Number(text);
}

/** `{a="x",b="y\"z"}` starting at `at`; returns the labels and the index after `}`. */
function parseLabels(line: string, at: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = at + 1;
  for (;;) {
    if (line[i] === '}') return { labels, end: i + 1 };
    const eq = line.indexOf('=', i);
    if (eq < 0) throw new Error(`label without '=' in: ${line}`);
    const name = line.slice(i, eq);
    if (!LABEL_NAME.test(name)) throw new Error(`bad label name '${name}' in: ${line}`);
    if (name in labels) throw new Error(`label ${name} twice in: ${line}`);
    if (line[eq + 1] !== '"') throw new Error(`label value not quoted in: ${line}`);
    let value = '';
    let j = eq + 2;
    for (;;) {
      const c = line[j];
      if (c === undefined) throw new Error(`unterminated label value in: ${line}`);
      if (c === '"') break;
      if (c === '\\') {
        const next = line[j + 1];
        if (next === '\\') value += '\\';
        else if (next === '"') value += '"';
        else if (next === 'n') value += '\n';
        else throw new Error(`bad escape \\${next} in: ${line}`);
        j += 2;
        continue;
      }
      value += c;
      j++;
    }
    labels[name] = value;
    i = j + 1;
    if (line[i] === ',') i++;
    else if (line[i] !== '}') throw new Error(`expected ',' or '}' after label ${name} in: ${line}`);
  }
}

/** The family a sample belongs to: its own name, or a histogram's/summary's base name. */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const own = families.get(name);
  if (own) return own;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const base = m ? families.get(m[1]) : undefined;
  if (base && (base.type === 'histogram' || (base.type === 'summary' && m![2] !== 'bucket'))) return base;
  return undefined;
}

function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('exposition does not end with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) continue; // a plain comment
      const [, what, name, rest] = m;
      if (!METRIC_NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
      const family = families.get(name) ?? { name, type: '', samples: [] };
      if (what === 'TYPE') {
        if (family.type !== '') throw new Error(`second TYPE for ${name}`);
        if (family.samples.length > 0) throw new Error(`TYPE for ${name} after its samples`);
        if (!TYPES.has(rest)) throw new Error(`unknown type in: ${line}`);
        family.type = rest;
      } else {
        if (family.help !== undefined) throw new Error(`second HELP for ${name}`);
        family.help = rest;
      }
      families.set(name, family);
      continue;
    }
    const nameEnd = line.search(/[{ ]/);
    if (nameEnd <= 0) throw new Error(`not a sample: ${line}`);
    const name = line.slice(0, nameEnd);
    if (!METRIC_NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
    let labels: Record<string, string> = {};
    let at = nameEnd;
    if (line[at] === '{') ({ labels, end: at } = parseLabels(line, at));
    if (line[at] !== ' ') throw new Error(`expected a space before the value in: ${line}`);
    const parts = line.slice(at + 1).split(' ');
    if (parts.length > 2 || (parts.length === 2 && !/^-?\d+$/.test(parts[1]))) throw new Error(`bad value or timestamp in: ${line}`);
    const value = parseValue(parts[0], line);
    const family = familyOf(name, families);
    if (!family || family.type === '') throw new Error(`sample ${name} has no # TYPE line before it`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`series twice: ${line}`);
    seen.add(key);
    family.samples.push({ name, labels, value });
  }
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family);
  return families;
}

/** Buckets cumulative and ending at +Inf, which equals _count, for every series. */
function checkHistogram(family: Family): void {
  const series = new Map<string, Sample[]>();
  for (const s of family.samples) {
    if (s.name !== `${family.name}_bucket`) continue;
    if (s.labels.le === undefined) throw new Error(`${s.name} without le`);
    const { le: _le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    series.set(key, [...(series.get(key) ?? []), s]);
  }
  for (const [key, buckets] of series) {
    const bounds = buckets.map((b) => parseValue(b.labels.le, b.name));
    for (let i = 1; i < buckets.length; i++) {
      if (!(bounds[i] > bounds[i - 1])) throw new Error(`${family.name}${key}: le not increasing`);
      if (buckets[i].value < buckets[i - 1].value) throw new Error(`${family.name}${key}: buckets not cumulative`);
    }
    if (bounds.at(-1) !== Infinity) throw new Error(`${family.name}${key}: no +Inf bucket`);
    const count = family.samples.find((s) => s.name === `${family.name}_count` && JSON.stringify(Object.entries(s.labels).sort()) === key);
    if (!count || count.value !== buckets.at(-1)!.value) throw new Error(`${family.name}${key}: _count differs from the +Inf bucket`);
  }
}

class Scrape {
  constructor(readonly families: Map<string, Family>) {}

  static async of(port: number): Promise<Scrape> {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return new Scrape(parseExposition(await res.text()));
  }

  /** Samples named `name` whose labels include `labels`. */
  samples(name: string, labels: Record<string, string> = {}): Sample[] {
    const family = familyOf(name, this.families);
    return (family?.samples ?? []).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The one sample named `name` with these labels; undefined when there is none. */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const found = this.samples(name, labels);
    if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
    return found[0]?.value;
  }
}

// ---------------------------------------------------------------------------------------
// A real node.

const dir = tempDir('trib-metrics-');
let broker: Broker;
let tb: Connection;

beforeAll(async () => {
  broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger });
  tb = await connect(broker.url);
  await tb.admin().createTopics([
    { name: 'metered', partitions: 2 },
    { name: 'pushed', partitions: 1 },
    { name: 'doomed', partitions: 1 },
  ]);
});

afterAll(async () => {
  await tb?.close();
  await broker?.close();
  dir.remove();
});

async function produceRaw(topic: string, partition: number, batch: Buffer): Promise<{ error: number; baseOffset: number }> {
  const answer = await tb.client.request(Kind.Produce, { acks: 1, timeoutMs: 10_000, partitions: [{ topic, partition, records: batch }] });
  return answer.partitions[0];
}

async function fetchRaw(topic: string, partition: number, fetchOffset: number): Promise<{ records: Uint8Array; highWatermark: number }> {
  const answer = await tb.client.request(Kind.Fetch, { maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, partitions: [{ topic, partition, fetchOffset, maxBytes: 1 << 20 }] });
  expect(answer.partitions[0].error).toBe(Errors.NONE.code);
  return answer.partitions[0];
}

async function latestOffset(topic: string, partition: number): Promise<number> {
  const answer = await tb.client.request(Kind.ListOffsets, { partitions: [{ topic, partition, timestamp: LATEST_TIMESTAMP }] });
  return answer.partitions[0].offset;
}

function values(n: number, tag: string): { value: Buffer }[] {
  return Array.from({ length: n }, (_, i) => ({ value: Buffer.from(`${tag}-${i}`.padEnd(20 + i, '.')) }));
}

describe('GET /metrics on a running node', () => {
  // What the test itself sent to and read from 'metered', computed from the bytes.
  const metered = { bytesIn: 0, recordsIn: 0, bytesOut: 0, recordsOut: 0, produceRequests: 0 };
  let first: Scrape;

  it('counts bytes and records in and out per topic exactly, resends not counted', async () => {
    const { producerId, producerEpoch } = await tb.client.request(Kind.InitProducerId, {});
    const sequences = [0, 0];
    let last: Buffer | null = null;
    for (let i = 0; i < 6; i++) {
      const partition = i % 2;
      const records = values(i + 1, `m${i}`);
      const batch = encodeBatch(records, { producerId, producerEpoch, baseSequence: sequences[partition] });
      sequences[partition] += records.length;
      expect((await produceRaw('metered', partition, batch)).error).toBe(Errors.NONE.code);
      metered.produceRequests++;
      metered.bytesIn += batch.length;
      metered.recordsIn += records.length;
      last = batch;
    }
    // An idempotent producer's resend of the last batch: in the log once, counted once.
    expect((await produceRaw('metered', 1, last!)).error).toBe(Errors.DUPLICATE_SEQUENCE.code);
    metered.produceRequests++;

    for (const partition of [0, 1]) {
      const { records } = await fetchRaw('metered', partition, 0);
      metered.bytesOut += records.length;
    }
    metered.recordsOut = metered.recordsIn;
    // The node served exactly what was appended: each partition read once from 0.
    expect(metered.bytesOut).toBe(metered.bytesIn);

    // Through the SDK: a producer, and a push (Subscribe) consumer on its own connection.
    const producer = tb.producer({ lingerMs: 5 });
    await producer.sendBatch('pushed', Array.from({ length: 40 }, (_, i) => ({ key: `k${i % 4}`, value: `reading-${i}` })));
    await producer.close();
    const reader = await connect(broker.url);
    const consumer = reader.consumer({ autoOffsetReset: 'earliest' });
    consumer.assign([{ topic: 'pushed', partition: 0, offset: 0 }]);
    let read = 0;
    for await (const batch of consumer.batches()) {
      read += batch.length;
      if (read >= 40) break;
    }
    expect(read).toBe(40);
    await reader.close();

    first = await Scrape.of(broker.port);
    expect(first.value('tributary_topic_bytes_in_total', { topic: 'metered' })).toBe(metered.bytesIn);
    expect(first.value('tributary_topic_records_in_total', { topic: 'metered' })).toBe(metered.recordsIn);
    expect(first.value('tributary_topic_bytes_out_total', { topic: 'metered' })).toBe(metered.bytesOut);
    expect(first.value('tributary_topic_records_out_total', { topic: 'metered' })).toBe(metered.recordsOut);
    expect(first.value('tributary_produce_duplicate_batches_total')).toBe(1);

    const pushedBytes = broker.logs.partition('pushed', 0)!.sizeBytes;
    expect(pushedBytes).toBeGreaterThan(0);
    expect(first.value('tributary_topic_bytes_in_total', { topic: 'pushed' })).toBe(pushedBytes);
    expect(first.value('tributary_topic_records_in_total', { topic: 'pushed' })).toBe(40);
    expect(first.value('tributary_topic_bytes_out_total', { topic: 'pushed' })).toBe(pushedBytes);
    expect(first.value('tributary_topic_records_out_total', { topic: 'pushed' })).toBe(40);
  });

  it('times requests per kind', () => {
    expect(first.value('tributary_request_duration_seconds_count', { kind: 'Produce' })).toBeGreaterThanOrEqual(metered.produceRequests);
    expect(first.value('tributary_requests_total', { kind: 'Produce' })).toBe(first.value('tributary_request_duration_seconds_count', { kind: 'Produce' }));
    expect(first.value('tributary_request_duration_seconds_count', { kind: 'Fetch' })).toBeGreaterThanOrEqual(2);
    expect(first.value('tributary_request_duration_seconds_count', { kind: 'Hello' })).toBeGreaterThanOrEqual(2);
    const les = first.samples('tributary_request_duration_seconds_bucket', { kind: 'Produce' }).map((s) => s.labels.le);
    expect(les).toEqual([...REQUEST_DURATION_BUCKETS_SECONDS.map(String), '+Inf']);
    // Per-partition errors (the resend's DUPLICATE_SEQUENCE) are not request errors.
    expect(first.samples('tributary_request_errors_total', { kind: 'Produce' })).toEqual([]);
  });

  it('gives each partition the offsets and size the node reports', async () => {
    for (const partition of [0, 1]) {
      const labels = { topic: 'metered', partition: String(partition) };
      const log = broker.logs.partition('metered', partition)!;
      expect(first.value('tributary_partition_log_end_offset', labels)).toBe(await latestOffset('metered', partition));
      expect(first.value('tributary_partition_high_watermark', labels)).toBe((await fetchRaw('metered', partition, 0)).highWatermark);
      expect(first.value('tributary_partition_log_start_offset', labels)).toBe(0);
      expect(first.value('tributary_partition_size_bytes', labels)).toBe(log.sizeBytes);
      expect(first.value('tributary_partition_segments', labels)).toBe(log.segmentCount);
    }
    // Internal topics are partitions like the others.
    expect(first.value('tributary_partition_log_end_offset', { topic: '__consumer_offsets', partition: '0' })).toBeGreaterThanOrEqual(0);
  });

  it('reports process memory, event-loop lag and connections', () => {
    expect(first.value('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(first.value('process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(first.families.get('nodejs_eventloop_lag_seconds')?.type).toBe('gauge');
    for (const s of first.samples('nodejs_eventloop_lag_seconds')) expect(s.value).toBeGreaterThanOrEqual(0);
    expect(first.value('tributary_connections')).toBeGreaterThanOrEqual(1);
    // The disk guard runs by default (a minimum of free space), and has checked at start.
    expect(first.value('tributary_storage_free_bytes')).toBeGreaterThan(0);
    expect(first.value('tributary_storage_used_bytes')).toBeGreaterThanOrEqual(0);
    expect(first.value('tributary_disk_guard_refusing')).toBe(0);
    expect(first.families.get('tributary_disk_guard_dropped_segments_total')?.type).toBe('counter');
  });

  it('reports consumer lag as the high watermark minus the committed offset', async () => {
    const commit = await tb.client.request(Kind.OffsetCommit, {
      groupId: 'billing',
      offsets: [
        { topic: 'metered', partition: 0, offset: 1 },
        { topic: 'metered', partition: 1, offset: 0 },
      ],
    });
    expect(commit.partitions.map((p) => p.error)).toEqual([0, 0]);
    // A live member of another group, which has committed nothing.
    const joined = await tb.client.request(Kind.ConsumerGroupHeartbeat, { groupId: 'watchers', memberId: '', memberEpoch: 0, subscribedTopics: ['pushed'], ownedPartitions: [] });
    expect(joined.error ?? 0).toBe(0);

    const scrape = await Scrape.of(broker.port);
    const hw0 = (await fetchRaw('metered', 0, 0)).highWatermark;
    const hw1 = (await fetchRaw('metered', 1, 0)).highWatermark;
    expect(hw0).toBeGreaterThan(1);
    expect(scrape.value('tributary_consumer_group_lag', { group: 'billing', topic: 'metered', partition: '0' })).toBe(hw0 - 1);
    expect(scrape.value('tributary_consumer_group_lag', { group: 'billing', topic: 'metered', partition: '1' })).toBe(hw1);
    expect(scrape.value('tributary_consumer_group_lag_sum', { group: 'billing' })).toBe(hw0 - 1 + hw1);
    expect(scrape.value('tributary_consumer_group_members', { group: 'billing' })).toBe(0);
    expect(scrape.value('tributary_consumer_group_members', { group: 'watchers' })).toBe(1);
    expect(scrape.samples('tributary_consumer_group_lag', { group: 'watchers' })).toEqual([]);
  });

  it('moves between two scrapes by exactly the new traffic', async () => {
    const before = await Scrape.of(broker.port);
    const fetchOffset = await latestOffset('metered', 1);
    const batch = encodeBatch(values(7, 'later'));
    expect((await produceRaw('metered', 1, batch)).error).toBe(Errors.NONE.code);
    const { records } = await fetchRaw('metered', 1, fetchOffset);
    expect(records.length).toBe(batch.length);
    const after = await Scrape.of(broker.port);

    const delta = (name: string, labels: Record<string, string>) => after.value(name, labels)! - before.value(name, labels)!;
    expect(delta('tributary_topic_bytes_in_total', { topic: 'metered' })).toBe(batch.length);
    expect(delta('tributary_topic_records_in_total', { topic: 'metered' })).toBe(7);
    expect(delta('tributary_topic_bytes_out_total', { topic: 'metered' })).toBe(batch.length);
    expect(delta('tributary_topic_records_out_total', { topic: 'metered' })).toBe(7);
    expect(delta('tributary_partition_log_end_offset', { topic: 'metered', partition: '1' })).toBe(7);
    expect(delta('tributary_consumer_group_lag', { group: 'billing', topic: 'metered', partition: '1' })).toBe(7);
    expect(delta('tributary_request_duration_seconds_count', { kind: 'Produce' })).toBeGreaterThanOrEqual(1);
    expect(delta('tributary_requests_total', { kind: 'Fetch' })).toBeGreaterThanOrEqual(1);
  });

  it('counts request-level errors by kind and error name', async () => {
    const before = (await Scrape.of(broker.port)).value('tributary_request_errors_total', { kind: 'OffsetCommit', error: 'INVALID_REQUEST' }) ?? 0;
    await expect(tb.client.request(Kind.OffsetCommit, { groupId: 'not a valid group id!', offsets: [] })).rejects.toThrow(/INVALID_REQUEST/);
    const after = (await Scrape.of(broker.port)).value('tributary_request_errors_total', { kind: 'OffsetCommit', error: 'INVALID_REQUEST' });
    expect(after).toBe(before + 1);
  });

  it("drops a deleted topic's series", async () => {
    const batch = encodeBatch(values(3, 'doomed'));
    expect((await produceRaw('doomed', 0, batch)).error).toBe(Errors.NONE.code);
    await fetchRaw('doomed', 0, 0);
    const commit = await tb.client.request(Kind.OffsetCommit, { groupId: 'billing', offsets: [{ topic: 'doomed', partition: 0, offset: 1 }] });
    expect(commit.partitions[0].error).toBe(0);

    const withTopic = await Scrape.of(broker.port);
    const doomedSeries = (s: Scrape) => [...s.families.values()].flatMap((f) => f.samples.filter((x) => x.labels.topic === 'doomed').map((x) => x.name));
    expect(new Set(doomedSeries(withTopic))).toEqual(
      new Set([
        'tributary_topic_bytes_in_total',
        'tributary_topic_records_in_total',
        'tributary_topic_bytes_out_total',
        'tributary_topic_records_out_total',
        'tributary_partition_log_end_offset',
        'tributary_partition_log_start_offset',
        'tributary_partition_high_watermark',
        'tributary_partition_size_bytes',
        'tributary_partition_segments',
        'tributary_consumer_group_lag',
      ]),
    );
    expect(withTopic.value('tributary_consumer_group_lag_sum', { group: 'billing' })).toBeGreaterThan(0);

    await tb.admin().deleteTopic('doomed');
    const without = await Scrape.of(broker.port);
    expect(doomedSeries(without)).toEqual([]);
    // What remains of the group is the lag of the partitions that still exist.
    const lagLeft = without.samples('tributary_consumer_group_lag', { group: 'billing' }).reduce((n, s) => n + s.value, 0);
    expect(without.value('tributary_consumer_group_lag_sum', { group: 'billing' })).toBe(lagLeft);
    expect(without.value('tributary_topic_bytes_in_total', { topic: 'metered' })).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------------------------------
// The metric objects alone.

describe('createMetrics', () => {
  const sources = { connections: () => 0, handshakesInProgress: () => 0 };

  it('puts a request in the first bucket at or above its time, and names unknown kinds "unknown"', async () => {
    const metrics = createMetrics(sources);
    try {
      metrics.observeRequest(Kind.Produce, 0.0003, { partitions: [] });
      metrics.observeRequest(Kind.Produce, 0.0005, undefined);
      metrics.observeRequest(Kind.Produce, 45, undefined);
      metrics.observeRequest(999, 0.002, { error: Errors.INVALID_REQUEST.code, message: 'unknown request kind 999' });
      const scrape = new Scrape(parseExposition(await metrics.registry.metrics()));
      const bucket = (kind: string, le: string) => scrape.value('tributary_request_duration_seconds_bucket', { kind, le });
      expect(bucket('Produce', '0.00025')).toBe(0);
      expect(bucket('Produce', '0.0005')).toBe(2); // le is inclusive
      expect(bucket('Produce', '30')).toBe(2);
      expect(bucket('Produce', '+Inf')).toBe(3);
      expect(scrape.value('tributary_request_duration_seconds_sum', { kind: 'Produce' })).toBeCloseTo(45.0008, 9);
      expect(bucket('unknown', '0.0025')).toBe(1);
      expect(scrape.value('tributary_request_errors_total', { kind: 'unknown', error: 'INVALID_REQUEST' })).toBe(1);
      expect(scrape.samples('tributary_request_errors_total', { kind: 'Produce' })).toEqual([]);
      expect(scrape.samples('tributary_request_duration_seconds_count').map((s) => s.labels.kind).sort()).toEqual(['Produce', 'unknown']);
    } finally {
      metrics.close();
    }
  });

  it('has increasing buckets from a tenth of a millisecond to beyond the longest long poll', () => {
    const b = REQUEST_DURATION_BUCKETS_SECONDS;
    for (let i = 1; i < b.length; i++) expect(b[i]).toBeGreaterThan(b[i - 1]);
    expect(b[0]).toBeLessThanOrEqual(0.0001);
    expect(b.at(-1)).toBeGreaterThanOrEqual(30);
  });

  it('counts appended and served batches per topic and forgets a topic', async () => {
    const metrics = createMetrics(sources);
    try {
      const batch = encodeBatch(values(4, 't'));
      metrics.countAppended('t', batch);
      // A read describes its batches: the records counted are theirs, no byte walked.
      const stored = { baseOffset: 0, lastOffset: 3, recordCount: 4, leaderEpoch: 0, sizeBytes: batch.length };
      metrics.countServed('t', { bytes: Buffer.concat([batch, batch]), batches: [stored, { ...stored, baseOffset: 4, lastOffset: 7 }] });
      metrics.countServed('t', { bytes: Buffer.alloc(0), batches: [] });
      let scrape = new Scrape(parseExposition(await metrics.registry.metrics()));
      expect(scrape.value('tributary_topic_bytes_in_total', { topic: 't' })).toBe(batch.length);
      expect(scrape.value('tributary_topic_records_in_total', { topic: 't' })).toBe(4);
      expect(scrape.value('tributary_topic_bytes_out_total', { topic: 't' })).toBe(2 * batch.length);
      expect(scrape.value('tributary_topic_records_out_total', { topic: 't' })).toBe(8);
      metrics.forgetTopic('t');
      scrape = new Scrape(parseExposition(await metrics.registry.metrics()));
      expect(scrape.samples('tributary_topic_bytes_in_total')).toEqual([]);
    } finally {
      metrics.close();
    }
  });

  it('reports the storage gauges only when the disk guard gives figures', async () => {
    let figures: { usedBytes: number; freeBytes: number; refusing: boolean } | undefined = { usedBytes: 1234, freeBytes: 5678, refusing: true };
    const metrics = createMetrics({ ...sources, storage: () => figures });
    try {
      let scrape = new Scrape(parseExposition(await metrics.registry.metrics()));
      expect(scrape.value('tributary_storage_used_bytes')).toBe(1234);
      expect(scrape.value('tributary_storage_free_bytes')).toBe(5678);
      expect(scrape.value('tributary_disk_guard_refusing')).toBe(1);
      figures = { usedBytes: 1, freeBytes: Number.POSITIVE_INFINITY, refusing: false };
      scrape = new Scrape(parseExposition(await metrics.registry.metrics()));
      expect(scrape.value('tributary_storage_free_bytes')).toBeUndefined();
      expect(scrape.value('tributary_disk_guard_refusing')).toBe(0);
      figures = undefined;
      scrape = new Scrape(parseExposition(await metrics.registry.metrics()));
      expect(scrape.samples('tributary_storage_used_bytes')).toEqual([]);
      metrics.diskGuardDroppedBytes.inc({ topic: 'x' }, 10);
      metrics.retentionDeletedSegments.inc({ topic: 'x', reason: 'time' });
      scrape = new Scrape(parseExposition(await metrics.registry.metrics()));
      expect(scrape.value('tributary_disk_guard_dropped_bytes_total', { topic: 'x' })).toBe(10);
      expect(scrape.value('tributary_retention_deleted_segments_total', { topic: 'x', reason: 'time' })).toBe(1);
    } finally {
      metrics.close();
      metrics.close(); // idempotent
    }
  });
});

describe('the exposition parser', () => {
  it('reads escaped label values', () => {
    const families = parseExposition('# TYPE m gauge\nm{a="x\\"y\\\\z\\n"} 1.5e3\n');
    expect(families.get('m')!.samples[0]).toEqual({ name: 'm', labels: { a: 'x"y\\z\n' }, value: 1500 });
  });

  it.each([
    ['no TYPE', 'm 1\n'],
    ['unquoted label', '# TYPE m gauge\nm{a=x} 1\n'],
    ['bad escape', '# TYPE m gauge\nm{a="\\t"} 1\n'],
    ['bad value', '# TYPE m gauge\nm 1x\n'],
    ['series twice', '# TYPE m gauge\nm{a="1"} 1\nm{a="1"} 2\n'],
    ['no final newline', '# TYPE m gauge\nm 1'],
    ['buckets not cumulative', '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'],
    ['count not the +Inf bucket', '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n'],
  ])('refuses %s', (_what, text) => {
    expect(() => parseExposition(text)).toThrow();
  });
});
