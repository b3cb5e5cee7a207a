// limits.requestScanBytesMax and the index files of cold sealed segments, over real
// WebSockets against a node restarted on its data (so that no sealed segment's indexes are
// in memory): a ListOffsets naming 300 segments loads the indexes of those it can pay for
// and no others (the review counted 299 loads for 41 answers); a Fetch naming 200
// partitions whose fetch offset is in a cold segment loads no more than its budget; a
// Subscribe push likewise, every partition still delivered in later pushes; warm segments
// cost nothing. Index loads are counted with a spy on LogSegment.loadIndexFiles: a load that
// returned read its files, one refused threw before reading them.

import { afterAll, beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { Kind, RESPONSE } from '../protocol/frames.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { LogSegment } from '../node/storage/segment.js';
import type { SegmentIndexes } from '../node/storage/segment-indexes.js';
import { makeBatch } from '../node/storage/testing.js';
import { TIME_INDEX_ENTRY_BYTES } from '../node/storage/time-index.js';
import { metricSample } from './helpers/metrics.js';
import { tempDir } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';

const T0 = 1_700_000_000_000;
const KIB = 1024;
const SCAN_BYTES_MAX = 64 * KIB;
const HISTORY_SEGMENTS = 300;
const FLEET_PARTITIONS = 200;
/** index.interval.bytes 0: an index entry per batch, so that index files weigh something. */
const TOPIC_CONFIG = { 'segment.bytes': 8 * KIB, 'index.interval.bytes': 0, flush: 'os' };

type Part = { partition: number; error: number; message?: string; offset?: number; records?: Uint8Array };

/** One 1-record batch of ~100 bytes, its timestamp T0 + `n`. */
const batch = (n: number): Buffer => makeBatch({ records: 1, valueBytes: 60, timestamp: T0 + n, fill: n });

/** The bytes an index load read: what loadIndexFiles returned. */
function indexBytes(indexes: SegmentIndexes): number {
  return indexes.offsetIndex.sizeBytes + indexes.timeIndex.entries * TIME_INDEX_ENTRY_BYTES;
}

describe('index files of cold segments within limits.requestScanBytesMax', () => {
  const dir = tempDir();
  let broker: Broker;
  let client: RawClient;
  let loads: MockInstance<LogSegment['loadIndexFiles']>;
  /** The first offset of every sealed segment of history-0. */
  let historySegments: number[] = [];

  /** Index loads that read their files since `from` calls, and the bytes they read. */
  function loadsSince(from: number): { count: number; bytes: number } {
    const done = loads.mock.results.slice(from).filter((r) => r.type === 'return' && r.value !== null);
    return { count: done.length, bytes: done.reduce((n, r) => n + indexBytes(r.value as SegmentIndexes), 0) };
  }

  async function scanLimitReached(): Promise<number> {
    const value = await metricSample(broker.port, 'tributary_limits_reached_total{limit="requestScanBytesMax"}');
    return Number.isNaN(value) ? 0 : value;
  }

  beforeAll(async () => {
    const first = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger });
    await first.logs.createTopic('history', 1, TOPIC_CONFIG);
    await first.logs.createTopic('fleet', FLEET_PARTITIONS, TOPIC_CONFIG);
    const history = first.logs.partition('history', 0)!;
    for (let n = 0; history.segmentCount <= HISTORY_SEGMENTS; n++) history.append(batch(n));
    for (let p = 0; p < FLEET_PARTITIONS; p++) {
      const log = first.logs.partition('fleet', p)!;
      for (let n = 0; log.segmentCount < 2; n++) log.append(batch(n));
    }
    await first.close();
    // A new start: every sealed segment is cold.
    broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger, limits: { requestScanBytesMax: SCAN_BYTES_MAX } });
    historySegments = broker.logs.partition('history', 0)!.segmentBaseOffsets().slice(0, HISTORY_SEGMENTS);
    client = await RawClient.connect(broker.url);
    loads = vi.spyOn(LogSegment.prototype, 'loadIndexFiles');
  });

  afterAll(async () => {
    loads?.mockRestore();
    client?.close();
    await broker?.close();
    dir.remove();
  });

  it('a ListOffsets naming 300 cold segments loads the indexes of those it answers, and of no segment it refuses', async () => {
    const from = loads.mock.calls.length;
    const reachedBefore = await scanLimitReached();
    // The timestamp of each segment's first batch: each lookup lands in its own segment.
    const partitions = historySegments.map((offset) => ({ topic: 'history', partition: 0, timestamp: T0 + offset }));
    const answer = await client.request<{ partitions: Part[] }>(Kind.ListOffsets, { partitions });
    const answered = answer.partitions.filter((p) => p.error === 0);
    const refused = answer.partitions.filter((p) => p.error === Errors.THROTTLED.code);
    expect(answered.length + refused.length).toBe(HISTORY_SEGMENTS);
    expect(answered.map((p) => p.offset)).toEqual(historySegments.slice(0, answered.length));
    expect(refused.length).toBeGreaterThan(HISTORY_SEGMENTS / 2);
    expect(refused[0].message).toMatch(/limits\.requestScanBytesMax/);
    // Each answer loaded its segment's indexes; the lookup that spent the budget may have
    // loaded them and then been refused in its walk; after it, nothing is loaded.
    const loaded = loadsSince(from);
    expect(loaded.count).toBeGreaterThanOrEqual(answered.length);
    expect(loaded.count).toBeLessThanOrEqual(answered.length + 1);
    expect(loaded.bytes).toBeLessThanOrEqual(SCAN_BYTES_MAX);
    expect(await scanLimitReached()).toBe(reachedBefore + 1);
  });

  it('a Fetch naming 200 partitions of cold segments loads indexes within its budget; the rest THROTTLED, then served warm', async () => {
    const from = loads.mock.calls.length;
    const reachedBefore = await scanLimitReached();
    const partitions = Array.from({ length: FLEET_PARTITIONS }, (_, partition) => ({ topic: 'fleet', partition, fetchOffset: 0, maxBytes: 1024 }));
    const answer = await client.request<{ partitions: Part[] }>(Kind.Fetch, { maxWaitMs: 0, partitions });
    const served = answer.partitions.filter((p) => p.error === 0);
    const refused = answer.partitions.filter((p) => p.error === Errors.THROTTLED.code);
    expect(served.length + refused.length).toBe(FLEET_PARTITIONS);
    expect(served.every((p) => (p.records?.length ?? 0) > 0)).toBe(true);
    expect(refused.length).toBeGreaterThan(FLEET_PARTITIONS / 2);
    expect(refused[0].message).toMatch(/limits\.requestScanBytesMax/);
    const loaded = loadsSince(from);
    expect(loaded.count).toBe(served.length);
    expect(loaded.bytes).toBeLessThanOrEqual(SCAN_BYTES_MAX);
    expect(await scanLimitReached()).toBe(reachedBefore + 1);
    // The partitions served are warm now: fetched again, they cost nothing and load nothing.
    const warmFrom = loads.mock.calls.length;
    const again = await client.request<{ partitions: Part[] }>(Kind.Fetch, { maxWaitMs: 0, partitions: partitions.filter((p) => served.some((s) => s.partition === p.partition)) });
    expect(again.partitions.every((p) => p.error === 0)).toBe(true);
    expect(loads.mock.calls.length).toBe(warmFrom);
  });

  it('a Subscribe push loads indexes within its budget: every partition still delivered, in later pushes', async () => {
    const subscriber = await RawClient.connect(broker.url);
    const from = loads.mock.calls.length;
    const partitions = Array.from({ length: FLEET_PARTITIONS }, (_, partition) => ({ topic: 'fleet', partition, fetchOffset: 0 }));
    const answer = await subscriber.request<{ error: number; partitions: Part[] }>(Kind.Subscribe, { creditBytes: 64 * 1024 * 1024, maxBytes: 16 * 1024 * 1024, partitions });
    expect(answer.partitions.every((p) => p.error === 0)).toBe(true);
    const delivered = new Set<number>();
    let pushes = 0;
    while (delivered.size < FLEET_PARTITIONS) {
      const push = await subscriber.nextPush(10_000);
      if (push === null) throw new Error(`no push after ${delivered.size} partitions delivered`);
      expect(push.kind).toBe(Kind.SubscribeData | RESPONSE);
      pushes++;
      for (const p of (push.body as { partitions: Part[] }).partitions) {
        expect(p.error).toBe(0);
        delivered.add(p.partition);
      }
    }
    const loaded = loadsSince(from);
    // No push loaded more than its budget pays: each load costs at least the smallest index.
    const perPushMax = Math.floor(SCAN_BYTES_MAX / smallestIndexBytes(loads, from)) + 1;
    expect(pushes).toBeGreaterThan(1);
    expect(loaded.count).toBeLessThanOrEqual(pushes * perPushMax);
    expect(loaded.bytes).toBeLessThanOrEqual(pushes * SCAN_BYTES_MAX);
    subscriber.close();
  });
});

/** The fewest bytes any index load since `from` read. */
function smallestIndexBytes(loads: MockInstance<LogSegment['loadIndexFiles']>, from: number): number {
  let smallest = Number.POSITIVE_INFINITY;
  for (const r of loads.mock.results.slice(from)) if (r.type === 'return' && r.value !== null) smallest = Math.min(smallest, indexBytes(r.value));
  return smallest;
}
