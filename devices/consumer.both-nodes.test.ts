// The Consumer's behaviour that a real node can show, run against the FakeNode and a real
// node alike (test/helpers/sdk-nodes.ts), with push and with fetch delivery: reading from
// an offset, the reset policies, seeks, ListOffsets, offsets by time, value decoding and
// errors. What needs faults injected (dropped connections, corrupt or held pushes, records
// deleted under a position) stays in consumer.test.ts and consumer-subscribe.test.ts,
// against the FakeNode alone.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../protocol/clock.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { SDK_NODES, type SdkNode } from '../test/helpers/sdk-nodes.js';
import { Consumer, type ConsumerOptions, type ValueDecoding } from './consumer.js';
import { PartitionError } from './errors.js';
import { cborEncode } from './serde.js';
import { take } from './testing/take.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** Appends `count` records valued `${prefix}${i}` in batches of `perBatch`. */
function fill(node: SdkNode, partition: number, count: number, perBatch = 10, prefix = 'v'): void {
  for (let i = 0; i < count; i += perBatch) {
    const records = [];
    for (let j = i; j < Math.min(count, i + perBatch); j++) records.push({ key: Buffer.from(`k${j}`), value: Buffer.from(`${prefix}${j}`), timestamp: 1000 + j });
    node.append('t', partition, encodeBatch(records));
  }
}

describe.each(SDK_NODES)('Consumer against the %s', (_name, start) => {
  describe.each(['subscribe', 'fetch'] as const)('delivery %s', (delivery) => {
    /** A node with topic 't' of 2 partitions, and a consumer on its own client. */
    async function setup<D extends ValueDecoding = 'buffer'>(options: ConsumerOptions<D> = {}, node?: SdkNode): Promise<{ node: SdkNode; consumer: Consumer<D> }> {
      if (node === undefined) {
        const started = await start();
        closers.push(() => started.close());
        await started.createTopic('t', 2);
        node = started;
      }
      const client = await node.connect();
      const consumer = new Consumer<D>(client, { maxWaitMs: 50, delivery, ...options });
      closers.push(() => consumer.close());
      return { node, consumer };
    }

    it('reads a partition from an offset, in order, with topic/partition/offset/timestamp/key/value', async () => {
      const { node, consumer } = await setup();
      fill(node, 0, 30);
      consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
      const records = await take(consumer, 30);
      expect(records.map((r) => r.offset)).toEqual(Array.from({ length: 30 }, (_, i) => i));
      expect(records[7]).toMatchObject({ topic: 't', partition: 0, offset: 7, timestamp: 1007 });
      expect(records[7].key!.toString()).toBe('k7');
      expect(records[7].value!.toString()).toBe('v7');
      expect(await consumer.position('t', 0)).toBe(30);
    });

    it('starting in the middle of a batch skips the records before the position', async () => {
      const { node, consumer } = await setup();
      fill(node, 0, 30, 10);
      consumer.assign([{ topic: 't', partition: 0, offset: 13 }]);
      const records = await take(consumer, 17);
      expect(records[0].offset).toBe(13);
      expect(records.at(-1)!.offset).toBe(29);
    });

    it("defaults to 'latest': only records written after the assignment are read", async () => {
      const { node, consumer } = await setup();
      fill(node, 0, 5, 5, 'old');
      consumer.assign([{ topic: 't', partition: 0 }]);
      expect(await consumer.position('t', 0)).toBe(5);
      const reading = take(consumer, 2);
      fill(node, 0, 2, 2, 'new');
      const records = await reading;
      expect(records.map((r) => r.value!.toString())).toEqual(['new0', 'new1']);
      expect(records.map((r) => r.offset)).toEqual([5, 6]);
    });

    it("autoOffsetReset 'earliest' starts at the log start", async () => {
      const { node, consumer } = await setup({ autoOffsetReset: 'earliest' });
      fill(node, 1, 3);
      consumer.assign([{ topic: 't', partition: 1 }]);
      expect((await take(consumer, 3)).map((r) => r.offset)).toEqual([0, 1, 2]);
    });

    it('seek moves the position and drops data fetched before it', async () => {
      const { node, consumer } = await setup();
      fill(node, 0, 50, 5);
      consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
      const first = await take(consumer, 3);
      expect(first.map((r) => r.offset)).toEqual([0, 1, 2]);
      consumer.seek('t', 0, 40);
      const after = await take(consumer, 2);
      expect(after.map((r) => r.offset)).toEqual([40, 41]);
      consumer.seek('t', 0, 1);
      expect((await take(consumer, 1))[0].offset).toBe(1);
    });

    it('seekToBeginning and seekToEnd use ListOffsets', async () => {
      const { node, consumer } = await setup();
      fill(node, 0, 10);
      fill(node, 1, 4);
      consumer.assign([
        { topic: 't', partition: 0, offset: 5 },
        { topic: 't', partition: 1, offset: 2 },
      ]);
      await consumer.seekToEnd();
      expect(await consumer.position('t', 0)).toBe(10);
      expect(await consumer.position('t', 1)).toBe(4);
      await consumer.seekToBeginning([{ topic: 't', partition: 0 }]);
      expect(await consumer.position('t', 0)).toBe(0);
      expect(await consumer.position('t', 1)).toBe(4);
      if (node.requests !== null) expect(node.requests.filter((r) => r.kind === Kind.ListOffsets).length).toBeGreaterThanOrEqual(2);
    });

    it('offsetsForTimes finds the first offset at or after a time, null past the end', async () => {
      const { node, consumer } = await setup();
      fill(node, 0, 20); // timestamps 1000..1019
      const [hit, miss] = await consumer.offsetsForTimes([
        { topic: 't', partition: 0, timestamp: 1012 },
        { topic: 't', partition: 0, timestamp: 5000 },
      ]);
      expect(hit).toMatchObject({ offset: 12, timestamp: 1012 });
      expect(miss.offset).toBeNull();
    });

    it('batches() yields arrays and advances the position past each', async () => {
      const { node, consumer } = await setup();
      fill(node, 0, 100, 25);
      fill(node, 1, 100, 25);
      consumer.assign([
        { topic: 't', partition: 0, offset: 0 },
        { topic: 't', partition: 1, offset: 0 },
      ]);
      const seen = new Map<number, number[]>([[0, []], [1, []]]);
      let total = 0;
      for await (const batch of consumer.batches()) {
        expect(batch.length).toBeGreaterThan(0);
        for (const r of batch) seen.get(r.partition)!.push(r.offset);
        total += batch.length;
        if (total === 200) break;
      }
      expect(seen.get(0)).toEqual(Array.from({ length: 100 }, (_, i) => i));
      expect(seen.get(1)).toEqual(Array.from({ length: 100 }, (_, i) => i));
      expect(await consumer.position('t', 0)).toBe(100);
    });

    it("valueDecoding 'auto' decodes CBOR-marked values and leaves others as bytes; 'string' gives text", async () => {
      const { node, consumer } = await setup({ valueDecoding: 'auto' });
      node.append('t', 0, encodeBatch([
        { value: cborEncode({ t: 1.5 }), headers: [['content-type', Buffer.from('application/cbor')]] },
        { value: Buffer.from('plain') },
      ]));
      consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
      const [a, b] = await take(consumer, 2);
      expect(a.value).toEqual({ t: 1.5 });
      expect(Buffer.isBuffer(b.value)).toBe(true);

      const text = await setup({ valueDecoding: 'string' }, node);
      node.append('t', 1, encodeBatch([{ value: Buffer.from('héllo') }]));
      text.consumer.assign([{ topic: 't', partition: 1, offset: 0 }]);
      const [c] = await take(text.consumer, 1);
      expect(c.value).toBe('héllo');
    });

    it("OFFSET_OUT_OF_RANGE resets per autoOffsetReset ('earliest' here)", async () => {
      const { node, consumer } = await setup({ autoOffsetReset: 'earliest' });
      fill(node, 0, 5);
      consumer.assign([{ topic: 't', partition: 0, offset: 999 }]);
      expect((await take(consumer, 5)).map((r) => r.offset)).toEqual([0, 1, 2, 3, 4]);
    });

    it("OFFSET_OUT_OF_RANGE with autoOffsetReset 'none' reaches the app", async () => {
      const { node, consumer } = await setup({ autoOffsetReset: 'none' });
      fill(node, 0, 5);
      consumer.assign([{ topic: 't', partition: 0, offset: 999 }]);
      const err = await take(consumer, 1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PartitionError);
      expect((err as TributaryError).code).toBe(Errors.OFFSET_OUT_OF_RANGE.code);
    });

    it('an unknown topic reaches the app as UNKNOWN_TOPIC after a few retries', async () => {
      const { consumer } = await setup({ retryBackoffMs: 1, unknownTopicRetries: 2 });
      consumer.assign([{ topic: 'missing', partition: 0, offset: 0 }]);
      const err = await take(consumer, 1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PartitionError);
      expect((err as PartitionError).code).toBe(Errors.UNKNOWN_TOPIC.code);
      expect((err as PartitionError).topic).toBe('missing');
    });

    it('backs off on its clock: a partition retried after an hour is read once the clock moves an hour', async () => {
      const clock = new ManualClock();
      const hourMs = 3_600_000;
      const { node, consumer } = await setup({ clock, retryBackoffMs: hourMs, retryBackoffMaxMs: hourMs });
      consumer.assign([{ topic: 'late', partition: 0, offset: 0 }]);
      const reading = take(consumer, 2);
      // UNKNOWN_TOPIC: the partition backs off, and the delivery waits for the clock to retry it.
      await vi.waitFor(() => expect(clock.pending).toBeGreaterThan(0), { timeout: 10_000, interval: 5 });
      await node.createTopic('late', 1);
      node.append('late', 0, encodeBatch([{ value: Buffer.from('x0') }, { value: Buffer.from('x1') }]));
      clock.advance(hourMs);
      expect((await reading).map((r) => r.value!.toString())).toEqual(['x0', 'x1']);
    });

    it('position() of a partition that is not assigned is an error', async () => {
      const { consumer } = await setup();
      await expect(consumer.position('t', 1)).rejects.toMatchObject({ code: Errors.INVALID_REQUEST.code });
    });
  });
});
