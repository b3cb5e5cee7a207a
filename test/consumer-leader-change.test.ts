// A consumer whose partition changes leader while its connection stays up (KIP-320): the
// node it reads from stops leading the partition, its log is cut back as a follower's is cut
// to its leader's, and it leads again in a new epoch and writes other records at the offsets
// cut. No reconnect happens, so nothing but the NOT_LEADER answer tells the consumer; it must
// check its position before reading on, say that it diverged, and read every new record.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it, vi } from 'vitest';
import { connect, type Connection, type LogDivergence } from '../devices/index.js';
import { take } from '../devices/testing/take.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { metricSample } from './helpers/metrics.js';

const TOPIC = 'readings';
let broker: Broker | undefined;
let conn: Connection | undefined;
let dataDir: string | undefined;

afterEach(async () => {
  await conn?.close();
  await broker?.close();
  if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
});

const values = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

/** Requests of a kind the node has answered so far. */
async function answered(b: Broker, kind: 'OffsetsForLeaderEpoch'): Promise<number> {
  return (await metricSample(b.port, `tributary_requests_total{kind="${kind}"}`)) || 0;
}

it.each(['fetch', 'subscribe'] as const)('%s delivery: a position a change of leader cut back is checked, told, and read on from the cut', async (delivery) => {
  dataDir = mkdtempSync(join(tmpdir(), 'tributary-leader-change-'));
  broker = await startBroker({ dataDir, port: 0, logger: silentLogger });
  const b = broker;
  conn = await connect(b.url);
  await conn.admin().createTopic(TOPIC, { partitions: 1 });
  const producer = conn.producer({ lingerMs: 0 });
  for (let i = 0; i < 100; i += 10) await producer.sendBatch(TOPIC, values('old', 100).slice(i, i + 10).map((value) => ({ partition: 0, value })));

  const told: LogDivergence[] = [];
  const consumer = conn.consumer<'string'>({ delivery, autoOffsetReset: 'earliest', valueDecoding: 'string', retryBackoffMs: 20, onDivergence: (d) => void told.push(d) });
  consumer.assign([{ topic: TOPIC, partition: 0 }]);
  expect((await take(consumer, 100)).at(-1)).toMatchObject({ offset: 99, leaderEpoch: 0 });

  // The app keeps reading throughout.
  const reading = take(consumer, 50);
  const log = b.logs.partition(TOPIC, 0)!;
  await b.partitionRoles.follow(TOPIC, 0, 'node-b');
  // Followed until the consumer, told NOT_LEADER (its long poll or subscription woken by the
  // change), has begun to check its position: the node answers that NOT_LEADER too.
  await vi.waitFor(async () => expect(await answered(b, 'OffsetsForLeaderEpoch')).toBeGreaterThanOrEqual(1), { timeout: 10_000, interval: 10 });
  // Its leader's log ended at 60: cut back to it, then lead again in epoch 1.
  await log.truncateTo(60);
  await b.partitionRoles.lead(TOPIC, 0, 1);
  // A new producer: the cut took the first one's later sequences with it.
  const writer = conn.producer({ lingerMs: 0 });
  await writer.sendBatch(TOPIC, values('new', 50).map((value) => ({ partition: 0, value })));
  await writer.close();

  const next = await reading;
  expect(told).toEqual([{ topic: TOPIC, partition: 0, position: 100, positionLeaderEpoch: 0, leaderEpoch: 0, divergedAt: 60 }]);
  expect(next.map((r) => [r.offset, r.value, r.leaderEpoch])).toEqual(values('new', 50).map((v, i) => [60 + i, v, 1]));
  await producer.close();
});
