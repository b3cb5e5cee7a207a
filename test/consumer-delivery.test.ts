// One partition buffer, two deliveries: the same script of assigns, seeks, errors that pause
// a partition and seeks that resume it, a position checked by leader epoch (KIP-320), and
// seeks to either end, run against a real node once with pushed records (Subscribe) and once
// with fetched ones (Fetch). The app must get the same records and errors, partition by
// partition, either way: the buffer, not the delivery, decides what the app sees.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { connect, PartitionError, type Connection, type ConsumerRecord, type LogDivergence } from '../devices/index.js';
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
  conn = broker = dataDir = undefined;
});

const prefixOf = (partition: number) => (partition === 0 ? 'a' : 'b');

/** What the app saw of each partition: `offset value` per record, `! CODE at offset` per error. */
type Transcript = Map<number, string[]>;

function note(seen: Transcript, partition: number, entry: string): void {
  seen.set(partition, [...(seen.get(partition) ?? []), entry]);
}

/** Takes `n` records or partition errors from the iterator, in whatever order they come. */
async function read(it: AsyncIterator<ConsumerRecord<string>>, n: number, seen: Transcript): Promise<void> {
  for (let i = 0; i < n; i++) {
    try {
      const r = await it.next();
      if (r.done) throw new Error('the consumer ended');
      note(seen, r.value.partition, `${r.value.offset} ${r.value.value}`);
    } catch (err) {
      if (!(err instanceof PartitionError)) throw err;
      note(seen, err.partition, `! ${err.errorName} at ${err.offset}`);
    }
  }
}

/** The records `from` (inclusive) to `to` (exclusive) of a partition, as note() writes them. */
function records(partition: number, from: number, to: number): string[] {
  return Array.from({ length: to - from }, (_, i) => `${from + i} ${prefixOf(partition)}${from + i}`);
}

async function append(c: Connection, partition: number, from: number, count: number): Promise<void> {
  const producer = c.producer({ lingerMs: 0 });
  // Batches of 10 (or fewer at the end), so that seeks land inside batches.
  for (let i = from; i < from + count; i += 10) {
    const values = Array.from({ length: Math.min(10, from + count - i) }, (_, j) => `${prefixOf(partition)}${i + j}`);
    await producer.sendBatch(TOPIC, values.map((value) => ({ partition, value })));
  }
  await producer.close();
}

it.each(['subscribe', 'fetch'] as const)('%s delivery: the same script gives the same records and errors', async (delivery) => {
  dataDir = mkdtempSync(join(tmpdir(), 'tributary-consumer-delivery-'));
  broker = await startBroker({ dataDir, port: 0, logger: silentLogger });
  const b = broker;
  conn = await connect(b.url);
  const c = conn;
  await c.admin().createTopic(TOPIC, { partitions: 2 });
  await append(c, 0, 0, 30);
  await append(c, 1, 0, 30);

  const told: LogDivergence[] = [];
  const consumer = c.consumer<'string'>({ delivery, autoOffsetReset: 'none', valueDecoding: 'string', maxWaitMs: 100, retryBackoffMs: 10, onDivergence: (d) => void told.push(d) });
  const it = consumer[Symbol.asyncIterator]();
  const seen: Transcript = new Map();
  const step = async (n: number): Promise<Transcript> => {
    seen.clear();
    await read(it, n, seen);
    return new Map(seen);
  };

  // A start with the leader epoch of the record before it: checked with the node, it stands.
  consumer.assign([{ topic: TOPIC, partition: 0, offset: 5, leaderEpoch: 0 }]);
  expect(await step(10)).toEqual(new Map([[0, records(0, 5, 15)]]));

  // A seek back, inside a batch: what was fetched past it is dropped.
  consumer.seek(TOPIC, 0, 2);
  expect(await step(3)).toEqual(new Map([[0, records(0, 2, 5)]]));
  expect(await consumer.position(TOPIC, 0)).toBe(5);

  // A partition kept by a new assignment keeps its position; a new one starts at its offset.
  consumer.assign([
    { topic: TOPIC, partition: 0 },
    { topic: TOPIC, partition: 1, offset: 20 },
  ]);
  expect(await step(35)).toEqual(
    new Map([
      [0, records(0, 5, 30)],
      [1, records(1, 20, 30)],
    ]),
  );

  // A position past the log end, with autoOffsetReset 'none': that partition stops with a
  // PartitionError, and the other goes on.
  consumer.seek(TOPIC, 1, 1000);
  await append(c, 0, 30, 5);
  expect(await step(6)).toEqual(
    new Map([
      [1, ['! OFFSET_OUT_OF_RANGE at 1000']],
      [0, records(0, 30, 35)],
    ]),
  );
  expect(await consumer.position(TOPIC, 1)).toBe(1000);

  // A seek resumes it.
  consumer.seek(TOPIC, 1, 25);
  expect(await step(5)).toEqual(new Map([[1, records(1, 25, 30)]]));

  // A start whose leader epoch the node's log ends before (KIP-320): the app is told, and
  // with 'none' the partition stops there; the other goes on.
  consumer.assign([
    { topic: TOPIC, partition: 0, offset: 40, leaderEpoch: 0 },
    { topic: TOPIC, partition: 1 },
  ]);
  await append(c, 1, 30, 3);
  expect(await step(4)).toEqual(
    new Map([
      [0, ['! OFFSET_OUT_OF_RANGE at 40']],
      [1, records(1, 30, 33)],
    ]),
  );
  expect(told).toEqual([{ topic: TOPIC, partition: 0, position: 40, positionLeaderEpoch: 0, leaderEpoch: 0, divergedAt: 35 }]);
  consumer.seek(TOPIC, 0, 33);
  expect(await step(2)).toEqual(new Map([[0, records(0, 33, 35)]]));

  // An unassigned partition delivers nothing more, even what is appended to it.
  consumer.assign([{ topic: TOPIC, partition: 1 }]);
  await append(c, 0, 35, 2);
  await append(c, 1, 33, 2);
  expect(await step(2)).toEqual(new Map([[1, records(1, 33, 35)]]));
  expect(consumer.assignment()).toEqual([{ topic: TOPIC, partition: 1 }]);

  // Either end of the log, through ListOffsets.
  await consumer.seekToEnd();
  await append(c, 1, 35, 2);
  expect(await step(2)).toEqual(new Map([[1, records(1, 35, 37)]]));
  await consumer.seekToBeginning();
  const all: string[] = [];
  for await (const batch of consumer.batches()) {
    for (const r of batch) all.push(`${r.offset} ${r.value}`);
    if (all.length >= 37) break;
  }
  expect(all).toEqual(records(1, 0, 37));
  expect(await consumer.position(TOPIC, 1)).toBe(37);
  await consumer.close();

  // Each run was fed by the delivery it names, not by the other one.
  const subscribes = (await metricSample(b.port, 'tributary_requests_total{kind="Subscribe"}')) || 0;
  const fetches = (await metricSample(b.port, 'tributary_requests_total{kind="Fetch"}')) || 0;
  if (delivery === 'subscribe') expect([subscribes > 0, fetches]).toEqual([true, 0]);
  else expect([subscribes, fetches > 0]).toEqual([0, true]);
});
