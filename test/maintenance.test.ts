// The node's background jobs end to end: a real broker, records over a real WebSocket, the
// node's scheduler running retention and checkpoints against an injected clock, and what a
// client and /metrics see afterwards.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { connect, type Connection } from '../devices/index.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { tempDir } from './helpers/node-process.js';
import { clockAt } from '../protocol/clock.js';

const DAY = 24 * 60 * 60 * 1000;
const T0 = 1_750_000_000_000;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

// Yearly: the tests run the jobs themselves, with runNow.
const NEVER = { retention: '0 0 0 1 1 *', compaction: '0 0 0 1 1 *', checkpoint: '0 0 0 1 1 *', diskGuard: '0 0 0 1 1 *' };

async function start(clock: { now: number }): Promise<{ broker: Broker; tb: Connection; dir: string }> {
  const dir = tempDir();
  cleanups.push(() => dir.remove());
  const broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger, clock: clockAt(() => clock.now), schedule: NEVER });
  cleanups.push(() => broker.close());
  const tb = await connect(broker.url);
  cleanups.push(() => tb.close());
  return { broker, tb, dir: dir.path };
}

async function scrape(broker: Broker): Promise<string> {
  return (await fetch(`http://127.0.0.1:${broker.port}/metrics`)).text();
}

it('retention on the node clock: old segments go at the next run, the log start offset moves, and /metrics counts it', async () => {
  const clock = { now: T0 };
  const { broker, tb } = await start(clock);
  await tb.admin().createTopic('readings', { partitions: 1, config: { 'segment.bytes': '1024', 'retention.ms': String(DAY) } });
  const producer = tb.producer({ lingerMs: 0 });
  // Ten records of ~700 bytes, one per batch, stamped a day apart: one segment each.
  for (let i = 0; i < 10; i++) await producer.send('readings', { key: 'k', value: Buffer.alloc(700, i), timestamp: T0 + i * DAY });
  await producer.close();
  const log = broker.logs.partition('readings', 0)!;
  await log.flush();
  const closed = log.closedSegments().length;
  expect(closed).toBeGreaterThan(5);

  // Nothing is old yet.
  await broker.maintenance.runNow('retention');
  expect(log.logStartOffset).toBe(0);

  // Five days after the last record but one: every closed segment whose newest record is
  // older than a day goes; the active one stays.
  clock.now = T0 + 9 * DAY + DAY / 2;
  await broker.maintenance.runNow('retention');
  const expectedStart = log.segmentBaseOffsets()[0];
  expect(expectedStart).toBeGreaterThan(0);
  expect(log.closedSegments().every((s) => s.maxTimestamp >= clock.now - DAY)).toBe(true);
  const [earliest] = await tb.admin().listOffsets([{ topic: 'readings', partition: 0, at: 'earliest' }]);
  expect(earliest.offset).toBe(expectedStart);
  const text = await scrape(broker);
  const deleted = Number(/^tributary_retention_deleted_segments_total\{topic="readings",reason="time"\} (\d+)/m.exec(text)?.[1]);
  expect(deleted).toBe(closed - log.closedSegments().length);

  // A consumer that asks for an offset retention removed starts again at the earliest one.
  const consumer = tb.consumer({ autoOffsetReset: 'earliest' });
  consumer.assign([{ topic: 'readings', partition: 0, offset: 0 }]);
  const first = (await consumer.batches()[Symbol.asyncIterator]().next()).value!;
  expect(first[0].offset).toBe(expectedStart);
  await consumer.close();
});

it('the checkpoint job snapshots producer state of partitions that grew, and only those', async () => {
  const clock = { now: T0 };
  const { broker, tb, dir } = await start(clock);
  await tb.admin().createTopic('a', { partitions: 1 });
  await tb.admin().createTopic('b', { partitions: 1 });
  const snapshots = (topic: string): string[] => readdirSync(join(dir, `${topic}-0`)).filter((f) => f.endsWith('.snapshot'));
  const producer = tb.producer();
  await producer.send('a', { key: 'k', value: 'v1' });
  await broker.maintenance.runNow('checkpoint');
  expect(snapshots('a')).toEqual(['00000000000000000001.snapshot']);
  expect(snapshots('b')).toEqual([]);
  // No growth, no new file.
  await broker.maintenance.runNow('checkpoint');
  expect(snapshots('a')).toEqual(['00000000000000000001.snapshot']);
  await producer.send('a', { key: 'k', value: 'v2' });
  await producer.close();
  await broker.maintenance.runNow('checkpoint');
  expect(snapshots('a')).toEqual(['00000000000000000001.snapshot', '00000000000000000002.snapshot']);
});

it('stops its jobs on close: a running job finishes before the logs close, and the node stops cleanly', async () => {
  const clock = { now: T0 };
  const { broker, tb } = await start(clock);
  await tb.admin().createTopic('readings', { partitions: 2 });
  const job = broker.maintenance.runNow('checkpoint');
  await broker.close();
  await job;
  expect(broker.maintenance.stats().every((j) => !j.running)).toBe(true);
});
