// The SDK against a real node (node/broker.ts) started in-process on an ephemeral port with
// its data in a temporary folder. These tests check what only the pair can show: that
// what the producer sends is what the node stores and the consumer reads back, per key, in
// order, across the wire and the storage engine.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { partitionForKey } from '../protocol/partitioner.js';
import { Errors, Kind, PartitionError, TributaryError, connect, type Connection, type ConsumerRecord } from './index.js';
import { take } from './testing/take.js';
import { until } from '../test/helpers/until.js';

let dataDir: string;
let broker: Broker;
let conn: Connection;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tributary-sdk-'));
  broker = await startBroker({ dataDir, port: 0, logger: silentLogger });
  conn = await connect(broker.url);
});

afterAll(async () => {
  await conn?.close();
  await broker?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

let topicCount = 0;
async function freshTopic(partitions: number, config?: Record<string, string | number>): Promise<string> {
  const name = `t${++topicCount}`;
  await conn.admin().createTopic(name, { partitions, config });
  return name;
}


describe('SDK against a real node', () => {
  it('keyed records land on partitionForKey(key) and come back in order per key', async () => {
    const topic = await freshTopic(3);
    const producer = conn.producer({ lingerMs: 2, batchBytes: 16 * 1024 });
    const keys = Array.from({ length: 20 }, (_, i) => `device-${i}`);
    const total = 6000;
    const results = await producer.sendBatch(
      topic,
      Array.from({ length: total }, (_, i) => ({ key: keys[i % keys.length], value: `${keys[i % keys.length]}#${Math.floor(i / keys.length)}` })),
    );
    results.forEach((r, i) => expect(r.partition).toBe(partitionForKey(Buffer.from(keys[i % keys.length]), 3)));

    const consumer = conn.consumer({ autoOffsetReset: 'earliest', valueDecoding: 'string' });
    consumer.assign([0, 1, 2].map((partition) => ({ topic, partition })));
    const seen = new Map<string, number[]>();
    let n = 0;
    for await (const batch of consumer.batches()) {
      for (const r of batch) {
        const [key, seq] = (r.value as string).split('#');
        expect(r.key!.toString()).toBe(key);
        expect(r.partition).toBe(partitionForKey(Buffer.from(key), 3));
        seen.set(key, [...(seen.get(key) ?? []), Number(seq)]);
      }
      n += batch.length;
      if (n >= total) break;
    }
    expect(n).toBe(total);
    for (const key of keys) expect(seen.get(key)).toEqual(Array.from({ length: total / keys.length }, (_, i) => i));
    await consumer.close();
  });

  it('reads from the middle, seeks, seeks to the beginning and end, and finds offsets by time', async () => {
    const topic = await freshTopic(1);
    const producer = conn.producer();
    const base = 1_700_000_000_000;
    await producer.sendBatch(topic, Array.from({ length: 100 }, (_, i) => ({ value: `r${i}`, timestamp: base + i * 10 })));

    const consumer = conn.consumer({ valueDecoding: 'string' });
    consumer.assign([{ topic, partition: 0, offset: 37 }]);
    expect((await take(consumer, 3)).map((r) => [r.offset, r.value, r.timestamp])).toEqual([
      [37, 'r37', base + 370],
      [38, 'r38', base + 380],
      [39, 'r39', base + 390],
    ]);
    consumer.seek(topic, 0, 90);
    expect((await take(consumer, 1))[0].value).toBe('r90');
    await consumer.seekToBeginning();
    expect(await consumer.position(topic, 0)).toBe(0);
    expect((await take(consumer, 1))[0].value).toBe('r0');
    await consumer.seekToEnd();
    expect(await consumer.position(topic, 0)).toBe(100);

    const [exact, between, after] = await consumer.offsetsForTimes([
      { topic, partition: 0, timestamp: base + 500 },
      { topic, partition: 0, timestamp: base + 505 },
      { topic, partition: 0, timestamp: base + 10_000 },
    ]);
    expect(exact.offset).toBe(50);
    expect(between.offset).toBe(51);
    expect(after.offset).toBeNull();
    consumer.seek(topic, 0, between.offset!);
    expect((await take(consumer, 1))[0].value).toBe('r51');
    await consumer.close();
  });

  it("the default start is the log end ('latest'): only new records are read", async () => {
    const topic = await freshTopic(1);
    const producer = conn.producer();
    await producer.send(topic, { value: 'before' });
    const consumer = conn.consumer({ valueDecoding: 'string' });
    consumer.assign([{ topic, partition: 0 }]);
    expect(await consumer.position(topic, 0)).toBe(1);
    const reading = take(consumer, 1);
    await producer.send(topic, { value: 'after' });
    expect((await reading)[0]).toMatchObject({ offset: 1, value: 'after' });
    await consumer.close();
  });

  it('gzip batches round-trip, and CBOR values decode with valueDecoding auto', async () => {
    const topic = await freshTopic(2);
    const producer = conn.producer({ compression: 'gzip' });
    const readings = Array.from({ length: 500 }, (_, i) => ({ sensor: `s${i % 5}`, celsius: 20 + (i % 7) / 10, at: i }));
    await producer.sendBatch(topic, readings.map((value) => ({ key: value.sensor, value })));
    const consumer = conn.consumer({ autoOffsetReset: 'earliest', valueDecoding: 'auto' });
    consumer.assign([0, 1].map((partition) => ({ topic, partition })));
    const got = (await take(consumer, 500)).map((r) => r.value as { at: number });
    expect(got.map((v) => v.at).sort((a, b) => a - b)).toEqual(readings.map((r) => r.at));
    expect(got.find((v) => v.at === 123)).toEqual(readings[123]);
    await consumer.close();
  });

  it('carries values near the node limit, and the node refuses one past it with BATCH_TOO_LARGE', async () => {
    const topic = await freshTopic(1);
    const producer = conn.producer();
    const big = Buffer.alloc(1024 * 1024 - 200, 0xab); // max.message.bytes is 1 MiB + 12 by default
    big.writeUInt32BE(0xdeadbeef, 1000);
    const [meta] = await producer.sendBatch(topic, [{ value: big }]);
    const consumer = conn.consumer();
    consumer.assign([{ topic, partition: 0, offset: meta.offset }]);
    const [r] = await take(consumer, 1);
    expect(r.value!.equals(big)).toBe(true);
    await consumer.close();
    const err = (await producer.send(topic, { value: Buffer.alloc(2 * 1024 * 1024) }).catch((e: unknown) => e)) as TributaryError;
    expect(err).toBeInstanceOf(TributaryError);
    expect(err.code).toBe(Errors.BATCH_TOO_LARGE.code);
  });

  it('unknown topics fail clearly in the producer, consumer and admin', async () => {
    const producer = conn.producer();
    await expect(producer.send('no-such-topic', { value: 'x' })).rejects.toMatchObject({ code: Errors.UNKNOWN_TOPIC.code });
    await expect(conn.admin().describeTopic('no-such-topic')).rejects.toMatchObject({ code: Errors.UNKNOWN_TOPIC.code });
    const consumer = conn.consumer({ retryBackoffMs: 1 });
    consumer.assign([{ topic: 'no-such-topic', partition: 0, offset: 0 }]);
    const err = await take(consumer, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PartitionError);
    expect((err as PartitionError).code).toBe(Errors.UNKNOWN_TOPIC.code);
    await consumer.close();
  });

  it('admin: create, list, describe with log start and end offsets, delete', async () => {
    const admin = conn.admin();
    const topic = await freshTopic(2, { 'retention.ms': 3_600_000 });
    await expect(admin.createTopic(topic, { partitions: 2 })).rejects.toMatchObject({ code: Errors.TOPIC_ALREADY_EXISTS.code });
    expect(await admin.listTopics()).toContain(topic);
    await conn.producer().sendBatch(topic, [{ value: 'a', partition: 1 }, { value: 'b', partition: 1 }, { value: 'c', partition: 0 }]);
    const d = await admin.describeTopic(topic);
    expect(d.config['retention.ms']).toBe(3_600_000);
    expect(d.partitions.map((p) => [p.partition, p.leader, p.logStartOffset, p.logEndOffset])).toEqual([
      [0, broker.nodeId, 0, 1],
      [1, broker.nodeId, 0, 2],
    ]);
    expect(await admin.listOffsets([{ topic, partition: 1, at: 'latest' }])).toMatchObject([{ offset: 2 }]);
    await admin.deleteTopic(topic);
    expect(await admin.listTopics()).not.toContain(topic);
    await expect(admin.deleteTopic(topic)).rejects.toMatchObject({ code: Errors.UNKNOWN_TOPIC.code });
  });

  it('producer backpressure: a small bufferBytesMax holds memory down and still delivers everything', async () => {
    const topic = await freshTopic(3);
    const bufferBytesMax = 64 * 1024;
    const producer = conn.producer({ bufferBytesMax, batchBytes: 8 * 1024, lingerMs: 1 });
    const value = Buffer.alloc(200, 1);
    const total = 20_000; // ~4.5 MB through a 64 KiB buffer
    let maxBuffered = 0;
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < total; i += 100) {
      sends.push(producer.sendBatch(topic, Array.from({ length: 100 }, (_, j) => ({ key: `k${(i + j) % 17}`, value }))));
      maxBuffered = Math.max(maxBuffered, producer.bufferedBytes);
      await producer.whenWritable();
      maxBuffered = Math.max(maxBuffered, producer.bufferedBytes);
    }
    await Promise.all(sends);
    expect(maxBuffered).toBeLessThanOrEqual(bufferBytesMax);
    expect(producer.bufferedBytes).toBe(0);
    const offsets = await conn.admin().describeTopic(topic);
    expect(offsets.partitions.reduce((n, p) => n + p.logEndOffset, 0)).toBe(total);
  });

  it('catch-up after an outage: every backlogged partition gets records within the first fetches', async () => {
    // 12 partitions with 3 MiB each; one Fetch holds 1 MiB, about five partitions' share. The
    // node fills maxBytes in request order, so without a rotating fetch order partitions
    // 6-11 would get nothing until partitions 0-5 had read their whole backlog.
    const partitions = 12;
    const topic = await freshTopic(partitions);
    const producer = conn.producer({ batchBytes: 64 * 1024, lingerMs: 1 });
    const value = Buffer.alloc(1024, 0x5a);
    const perPartition = 3 * 1024; // 3 MiB of 1 KiB values
    for (let p = 0; p < partitions; p++) {
      await producer.sendBatch(topic, Array.from({ length: perPartition }, () => ({ value, partition: p })));
    }
    const consumer = conn.consumer({ autoOffsetReset: 'earliest', maxBytes: 1024 * 1024, partitionMaxBytes: 256 * 1024 });
    consumer.assign(Array.from({ length: partitions }, (_, partition) => ({ topic, partition })));
    // An array holds one partition's records from one Fetch (at most ~256 records here).
    const arraysMax = 24; // about four fetches' worth
    const firstArrays: number[] = [];
    for await (const batch of consumer.batches()) {
      firstArrays.push(batch[0].partition);
      expect(new Set(batch.map((r) => r.partition)).size).toBe(1);
      if (firstArrays.length === arraysMax) break;
    }
    await consumer.close();
    expect(new Set(firstArrays).size).toBe(partitions);
  }, 60_000);

  it('acks=0 records arrive although nothing is answered', async () => {
    const topic = await freshTopic(1);
    const producer = conn.producer({ acks: 0 });
    const results = await producer.sendBatch(topic, Array.from({ length: 50 }, (_, i) => ({ value: `x${i}` })));
    expect(results.every((r) => r.offset === -1)).toBe(true);
    const consumer = conn.consumer({ autoOffsetReset: 'earliest', valueDecoding: 'string' });
    consumer.assign([{ topic, partition: 0 }]);
    expect((await take(consumer, 50)).map((r) => r.value)).toEqual(Array.from({ length: 50 }, (_, i) => `x${i}`));
    await consumer.close();
  });
});

describe('push delivery against a real node', () => {
  it("delivery 'subscribe' (the default) reads what 'fetch' reads, within its buffer, with no Fetch sent", async () => {
    const topic = await freshTopic(2);
    const producer = conn.producer({ lingerMs: 1, batchBytes: 4096 });
    const total = 4000;
    await producer.sendBatch(topic, Array.from({ length: total }, (_, i) => ({ key: `k${i % 10}`, value: `r${i}`.padEnd(100, '.') })));
    const bufferedBytesMax = 32 * 1024;
    const read = async (delivery: 'subscribe' | 'fetch') => {
      const consumer = conn.consumer({ delivery, autoOffsetReset: 'earliest', valueDecoding: 'string', bufferedBytesMax });
      consumer.assign([0, 1].map((partition) => ({ topic, partition })));
      const seen = new Map<number, string[]>([[0, []], [1, []]]);
      let n = 0;
      let bufferedMax = 0;
      for await (const batch of consumer.batches()) {
        bufferedMax = Math.max(bufferedMax, consumer.bufferedBytes);
        for (const r of batch) seen.get(r.partition)!.push(`${r.offset}:${r.value as string}`);
        n += batch.length;
        if (n >= total) break;
      }
      await consumer.close();
      return { seen, bufferedMax };
    };
    const request = vi.spyOn(conn.client, 'request');
    const subscribe = vi.spyOn(conn.client, 'subscribe');
    try {
      const pushed = await read('subscribe');
      expect(request.mock.calls.filter(([kind]) => kind === Kind.Fetch)).toHaveLength(0);
      expect(subscribe).toHaveBeenCalled();
      // The node pushes at most one batch (about batchBytes) past the credit.
      expect(pushed.bufferedMax).toBeLessThanOrEqual(bufferedBytesMax + 8192);
      const fetched = await read('fetch');
      expect(pushed.seen).toEqual(fetched.seen);
      expect(pushed.seen.get(0)!.length + pushed.seen.get(1)!.length).toBe(total);
    } finally {
      request.mockRestore();
      subscribe.mockRestore();
    }
  });

  it('a seek mid-stream continues from the new offset exactly, and live appends arrive pushed', async () => {
    const topic = await freshTopic(1);
    const producer = conn.producer({ lingerMs: 1, batchBytes: 2048 });
    await producer.sendBatch(topic, Array.from({ length: 1000 }, (_, i) => ({ value: `r${i}` })));
    const consumer = conn.consumer({ valueDecoding: 'string', bufferedBytesMax: 8192 });
    consumer.assign([{ topic, partition: 0, offset: 0 }]);
    expect((await take(consumer, 10)).map((r) => r.offset)).toEqual(Array.from({ length: 10 }, (_, i) => i));
    consumer.seek(topic, 0, 500);
    expect((await take(consumer, 500)).map((r) => r.value)).toEqual(Array.from({ length: 500 }, (_, i) => `r${500 + i}`));
    const reading = take(consumer, 1);
    await producer.send(topic, { value: 'live' });
    expect((await reading)[0]).toMatchObject({ offset: 1000, value: 'live' });
    await consumer.close();
  });
});

describe('SDK across a node restart', () => {
  it('reconnects on its own and continues where it was', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tributary-sdk-restart-'));
    let node = await startBroker({ dataDir: dir, port: 0, logger: silentLogger });
    const port = node.port;
    const c = await connect(node.url, { reconnect: { initialMs: 20, maxMs: 200 } });
    try {
      await c.admin().createTopic('r', { partitions: 1 });
      const producer = c.producer();
      await producer.sendBatch('r', [{ value: 'one' }, { value: 'two' }]);
      const consumer = c.consumer({ autoOffsetReset: 'earliest', valueDecoding: 'string', retryBackoffMs: 20 });
      consumer.assign([{ topic: 'r', partition: 0 }]);
      expect((await take(consumer, 2)).map((r) => r.value)).toEqual(['one', 'two']);

      await node.close();
      node = await startBroker({ dataDir: dir, port, logger: silentLogger });
      // The consumer's fetches fail while the node is away and resume on the new one.
      const reading = take(consumer, 1);
      await until(
        () =>
          producer.send('r', { value: 'three' }).then(
            () => true,
            (err: unknown) => {
              // A send that fails is retriable, and the app sends again.
              expect((err as TributaryError).retriable).toBe(true);
              return false;
            },
          ),
        'a send to the restarted node',
        { intervalMs: 20 },
      );
      expect((await reading)[0]).toMatchObject({ offset: 2, value: 'three' });
      expect(c.client.connectionCount).toBeGreaterThanOrEqual(2);
      await consumer.close();
    } finally {
      await c.close();
      await node.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
