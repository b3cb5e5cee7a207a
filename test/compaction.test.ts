// Log compaction seen from a client: a real node (in process, over its WebSocket), a
// compacted topic written by the SDK producer, compacted by the log cleaner, then read by
// the SDK consumer with push (Subscribe) and with Fetch delivery, before and after a
// restart of the node. Offsets now have gaps inside segments; a consumer must get exactly
// the survivors at their offsets, from any start offset, and end at the log end.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Connection, type ConsumerRecord } from '../devices/index.js';
import { take } from '../devices/testing/take.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { compactPartition } from '../node/storage/cleaner.js';
import type { PartitionLog } from '../node/storage/partition-log.js';
import { decodeBatch, lastOffsetOf, splitBatches } from '../protocol/record-batch.js';

const TOPIC = 'device-state';
const T0 = 1_700_000_000_000;
const KEYS = 12;
const ROUNDS = 20;

interface Rec {
  offset: number;
  key: string;
  value: string;
  timestamp: number;
}

let dataDir: string;
let broker: Broker;
let conn: Connection;
let written: Rec[] = [];
let survivors: Rec[] = [];

function partitionLog(): PartitionLog {
  const log = broker.logs.partition(TOPIC, 0);
  if (log === undefined) throw new Error(`${TOPIC}-0 is missing`);
  return log;
}

/** Everything the log holds, read on the node's side. */
function storedRecords(log: PartitionLog): Rec[] {
  const out: Rec[] = [];
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const batches = splitBatches(log.read(offset, 1 << 20, log.logEndOffset));
    if (batches.length === 0) break;
    for (const batch of batches) {
      for (const r of decodeBatch(batch).records) out.push({ offset: r.offset, key: String(r.key), value: String(r.value), timestamp: r.timestamp });
      offset = lastOffsetOf(batch) + 1;
    }
  }
  return out;
}

async function startNode(): Promise<void> {
  broker = await startBroker({ dataDir, port: 0, logger: silentLogger });
  conn = await connect(broker.url);
}

async function stopNode(): Promise<void> {
  await conn?.close();
  await broker?.close();
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tributary-compaction-'));
  await startNode();
  await broker.logs.createTopic(TOPIC, 1, { 'cleanup.policy': 'compact', 'segment.bytes': 1024 });
  const producer = conn.producer({ lingerMs: 0 });
  for (let round = 0; round < ROUNDS; round++) {
    // Rounds write different subsets of the keys, so that newest values end up scattered
    // over many batches: the cleaner thins batches, not only drops whole ones.
    const keys = Array.from({ length: KEYS }, (_, k) => k).filter((k) => k % ((round % 4) + 1) === 0);
    const records = keys.map((k) => ({ key: `sensor-${k}`, value: `round ${round} of sensor-${k}`, timestamp: T0 + round * 1000 + k }));
    await producer.sendBatch(TOPIC, records);
  }
  await producer.close();
  const log = partitionLog();
  await log.flush();
  written = storedRecords(log);
  expect(written.length).toBeGreaterThan(KEYS * 5);
  const bases = log.segmentBaseOffsets();
  const activeBase = bases[bases.length - 1];
  const newest = new Map(written.map((r) => [r.key, r.offset]));
  survivors = written.filter((r) => r.offset >= activeBase || newest.get(r.key) === r.offset);
  const result = await compactPartition(log, { now: () => T0 });
  expect(result.segmentsCleaned).toBeGreaterThan(2);
  expect(storedRecords(log)).toEqual(survivors);
  // Survivors in closed segments sit between removed offsets of their own batch.
  expect(survivors.filter((r) => r.offset < activeBase).length).toBeGreaterThan(3);
});

afterAll(async () => {
  await stopNode();
  rmSync(dataDir, { recursive: true, force: true });
});

const asRec = (r: ConsumerRecord<string>): Rec => ({ offset: r.offset, key: String(r.key), value: r.value as string, timestamp: r.timestamp });

async function consumeFrom(delivery: 'subscribe' | 'fetch', offset: number): Promise<{ records: Rec[]; position: number }> {
  const consumer = conn.consumer({ delivery, valueDecoding: 'string', maxWaitMs: 50 });
  try {
    consumer.assign([{ topic: TOPIC, partition: 0, offset }]);
    const want = survivors.filter((r) => r.offset >= offset).length;
    const records = (await take(consumer, want)).map(asRec);
    return { records, position: await consumer.position(TOPIC, 0) };
  } finally {
    await consumer.close();
  }
}

function checks(): void {
  for (const delivery of ['subscribe', 'fetch'] as const) {
    it(`${delivery}: from offset 0 the consumer gets exactly the survivors, at their offsets`, async () => {
      const { records, position } = await consumeFrom(delivery, 0);
      expect(records).toEqual(survivors);
      expect(position).toBe(survivors[survivors.length - 1].offset + 1);
    });

    it(`${delivery}: starting at a removed offset starts at the next survivor`, async () => {
      const kept = new Set(survivors.map((r) => r.offset));
      const removed = written.map((r) => r.offset).filter((o) => !kept.has(o));
      for (const offset of [removed[0], removed[Math.floor(removed.length / 2)], removed[removed.length - 1]]) {
        const { records } = await consumeFrom(delivery, offset);
        expect(records[0], `start at ${offset}`).toEqual(survivors.find((r) => r.offset > offset));
        expect(records).toEqual(survivors.filter((r) => r.offset > offset));
      }
    });
  }

  it('offsetsForTimes lands on the first survivor at or after the time', async () => {
    const consumer = conn.consumer({ valueDecoding: 'string' });
    try {
      for (const timestamp of [T0, T0 + 1500, T0 + 7003, T0 + (ROUNDS - 1) * 1000 + 5]) {
        const [answer] = await consumer.offsetsForTimes([{ topic: TOPIC, partition: 0, timestamp }]);
        const want = survivors.find((r) => r.timestamp >= timestamp);
        expect(answer.offset, `timestamp ${timestamp}`).toBe(want?.offset);
      }
    } finally {
      await consumer.close();
    }
  });
}

describe('a compacted topic read by the SDK', () => {
  checks();
});

describe('the same after a restart of the node', () => {
  beforeAll(async () => {
    await stopNode();
    await startNode();
    expect(storedRecords(partitionLog())).toEqual(survivors);
  });
  checks();
});
