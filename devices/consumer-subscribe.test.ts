// Push delivery (delivery 'subscribe') against the fake node: records arrive in pushes, the
// credit bounds what is pushed and what is queued, stale pushes are dropped after a seek or
// a reconnect, partition errors take the same path as with Fetch, and a node that does not
// know Subscribe is read with Fetch. consumer.test.ts runs the shared behaviour in both modes.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../protocol/clock.js';
import { Errors } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import { encodeBatch, OFFSET_CRC } from '../protocol/record-batch.js';
import { Client } from './client.js';
import { Consumer, type ConsumerOptions, type ConsumerRecord } from './consumer.js';
import { PartitionError } from './errors.js';
import { FakeNode, type FakeRequest, type FakeSubscription } from './testing/fake-node.js';
import { take } from './testing/take.js';
import { until } from '../test/helpers/until.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** Whether the fake node sends a subscription's first push ahead of its answer (as node/ may). */
let pushesBeforeAnswer = false;

/**
 * Given a clock, the client, the consumer and the node's long polls all run on it: with a
 * ManualClock, what has not happened by the time the test moved the clock does not.
 */
async function setup(options: ConsumerOptions = {}, clock?: ManualClock): Promise<{ node: FakeNode; consumer: Consumer; client: Client }> {
  const node = new FakeNode();
  if (clock !== undefined) node.clock = clock;
  node.pushesBeforeAnswer = pushesBeforeAnswer;
  node.createTopic('t', 2);
  const client = await Client.connect('mem://fake', { transportFactory: node.transportFactory, reconnect: { initialMs: 1, maxMs: 5 }, clock });
  const consumer = new Consumer(client, { retryBackoffMs: 1, ...options });
  closers.push(() => client.close());
  closers.push(() => consumer.close());
  return { node, consumer, client };
}

/** Appends `count` records valued `${prefix}${i}` in batches of `perBatch`, values padded to `valueBytes`. */
function fill(node: FakeNode, partition: number, count: number, perBatch = 10, prefix = 'v', valueBytes = 0): void {
  for (let i = 0; i < count; i += perBatch) {
    const records = [];
    for (let j = i; j < Math.min(count, i + perBatch); j++) records.push({ value: Buffer.from(`${prefix}${j}`.padEnd(valueBytes, '.')) });
    node.append('t', partition, encodeBatch(records));
  }
}

function largestBatchBytes(node: FakeNode, partition: number): number {
  return Math.max(...node.partition('t', partition)!.batches.map((b) => b.length));
}

function sent(node: FakeNode, kind: Kind): FakeRequest[] {
  return node.requests.filter((r) => r.kind === kind);
}

function subscribeOffsets(req: FakeRequest): Record<number, number> {
  const partitions = req.body.partitions as { partition: number; fetchOffset: number }[];
  return Object.fromEntries(partitions.map((p) => [p.partition, p.fetchOffset]));
}

function live(node: FakeNode): FakeSubscription {
  const subs = node.subscriptions.filter((s) => !s.ended && !s.connection.transport.isClosed);
  expect(subs).toHaveLength(1);
  return subs[0];
}

/**
 * Moves the clock a minute, letting every frame, promise callback and timer due on the way
 * run: what is checked after it held for that minute of the consumer's and the node's time.
 */
function aMinuteLater(clock: ManualClock): Promise<void> {
  return clock.advanceAsync(60_000, 100);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

function offsetsOf(records: ConsumerRecord[], partition: number): number[] {
  return records.filter((r) => r.partition === partition).map((r) => r.offset);
}

describe.each([
  ['after', false],
  ['ahead of', true],
])("Consumer with delivery 'subscribe' (first push %s the Subscribe answer)", (_, ahead) => {
  beforeEach(() => {
    pushesBeforeAnswer = ahead;
  });

  it('records arrive through pushes, in order, what is there and what is appended, with no Fetch sent', async () => {
    const { node, consumer } = await setup();
    fill(node, 0, 30);
    fill(node, 1, 20);
    consumer.assign([0, 1].map((partition) => ({ topic: 't', partition, offset: 0 })));
    const first = await take(consumer, 50);
    expect(offsetsOf(first, 0)).toEqual(range(0, 30));
    expect(offsetsOf(first, 1)).toEqual(range(0, 20));
    const reading = take(consumer, 5);
    fill(node, 1, 5, 1, 'live');
    expect((await reading).map((r) => [r.partition, r.offset, r.value!.toString()])).toEqual(range(20, 25).map((o, i) => [1, o, `live${i}`]));
    expect(sent(node, Kind.Fetch)).toHaveLength(0);
    expect(sent(node, Kind.Subscribe)).toHaveLength(1);
    expect(subscribeOffsets(sent(node, Kind.Subscribe)[0])).toEqual({ 0: 0, 1: 0 });
    expect(node.pushes).toBeGreaterThan(1);
    expect(consumer.highWatermark('t', 1)).toBe(25);
  });

  it('credit: pushed bytes stay within what was granted plus one batch, queued plus granted within bufferedBytesMax, grants coalesced', async () => {
    const bufferedBytesMax = 8000;
    const { node, consumer } = await setup({ bufferedBytesMax });
    fill(node, 0, 3000, 10, 'v', 60); // batches of about 800 bytes
    const batchMax = largestBatchBytes(node, 0);
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    let n = 0;
    for await (const r of consumer) {
      expect(r.offset).toBe(n++);
      const sub = live(node);
      // What the node may still push, plus what waits for the app, is the window.
      expect(sub.credit + consumer.bufferedBytes).toBeLessThanOrEqual(bufferedBytesMax);
      expect(consumer.bufferedBytes).toBeLessThanOrEqual(bufferedBytesMax + batchMax);
      if (n === 3000) break;
    }
    const sub = live(node);
    expect(sub.overdraftBytesMax).toBeLessThanOrEqual(batchMax);
    expect(sub.pushedBytes).toBeGreaterThan(10 * bufferedBytesMax); // the window turned over many times
    // Grants come a quarter of the window at a time, not a frame per batch taken.
    const grants = sent(node, Kind.Credit).map((r) => r.body.bytes as number);
    expect(grants.length).toBeGreaterThan(0);
    for (const bytes of grants) expect(bytes).toBeGreaterThanOrEqual(bufferedBytesMax / 4);
    expect(grants.length).toBeLessThan(node.partition('t', 0)!.batches.length / 2);
    expect(sent(node, Kind.Fetch)).toHaveLength(0);
  });

  it('a slow app: pushes stop once the buffer is full, no credit is granted while it holds still, and they resume as it consumes', async () => {
    const bufferedBytesMax = 4000;
    const clock = new ManualClock();
    const { node, consumer } = await setup({ bufferedBytesMax }, clock);
    fill(node, 0, 1000, 10, 'v', 40);
    const batchMax = largestBatchBytes(node, 0);
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    const it = consumer[Symbol.asyncIterator]();
    expect((await it.next()).value!.offset).toBe(0);
    await until(() => live(node).credit <= 0, 'the credit is used up');
    const sub = live(node);
    const granted = sub.grantedBytes;
    const pushes = node.pushes;
    const credits = sent(node, Kind.Credit).length;
    await aMinuteLater(clock);
    expect(sub.grantedBytes).toBe(granted);
    expect(sent(node, Kind.Credit)).toHaveLength(credits);
    expect(node.pushes).toBe(pushes);
    expect(consumer.bufferedBytes).toBeLessThanOrEqual(bufferedBytesMax + batchMax);
    expect(sub.pushedBytes).toBeLessThan(bufferedBytesMax + batchMax); // the backlog waits on the node
    for (let n = 1; n < 1000; n++) expect((await it.next()).value!.offset).toBe(n);
    expect(node.pushes).toBeGreaterThan(pushes);
    expect(sub.overdraftBytesMax).toBeLessThanOrEqual(batchMax);
  });

  it('seek mid-stream drops stale pushed data and continues from the new position exactly; other partitions lose nothing', async () => {
    const { node, consumer } = await setup();
    fill(node, 0, 250, 5);
    fill(node, 1, 250, 5);
    consumer.assign([0, 1].map((partition) => ({ topic: 't', partition, offset: 0 })));
    const it = consumer[Symbol.asyncIterator]();
    const before: ConsumerRecord[] = [];
    while (offsetsOf(before, 0).length < 3) before.push((await it.next()).value!);
    consumer.seek('t', 0, 100);
    // Appended before the consumer has replaced its subscription: the old one pushes it,
    // under the old epoch, and it must not be delivered ahead of offset 100.
    fill(node, 0, 5, 5, 'late');
    const after: ConsumerRecord[] = [];
    while (offsetsOf(after, 0).length < 155 || offsetsOf(before, 1).length + offsetsOf(after, 1).length < 250) after.push((await it.next()).value!);
    expect(offsetsOf(after, 0)).toEqual(range(100, 255));
    expect(after.filter((r) => r.partition === 0).at(-1)!.value!.toString()).toBe('late4');
    expect([...offsetsOf(before, 1), ...offsetsOf(after, 1)]).toEqual(range(0, 250));
    // The old subscription did push past the seek; none of it came through.
    expect(node.subscriptions[0].positions.get('t/0')?.offset).toBe(255);
    expect(node.subscriptions[0].ended).toBe(true);
    const resubscribe = sent(node, Kind.Subscribe)[1];
    expect(subscribeOffsets(resubscribe)[0]).toBe(100);
    expect(sent(node, Kind.Unsubscribe).map((r) => r.body.subscriptionId)).toContain(node.subscriptions[0].id);

    consumer.seek('t', 0, 1);
    expect((await it.next()).value).toMatchObject({ partition: 0, offset: 1 });
    expect(sent(node, Kind.Fetch)).toHaveLength(0);
  });

  it('a push under an old epoch is dropped even while its subscription is still the current one', async () => {
    const clock = new ManualClock();
    const { node, consumer } = await setup({ autoOffsetReset: 'earliest' }, clock);
    fill(node, 0, 250, 5);
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    const it = consumer[Symbol.asyncIterator]();
    for (let n = 0; n < 3; n++) expect((await it.next()).value!.offset).toBe(n);
    // Partition 1 joins without a position: the consumer asks ListOffsets, and the node
    // holds that answer, so the subscription of partition 0 is not replaced meanwhile.
    let releaseListOffsets!: () => void;
    const listOffsetsHeld = new Promise<void>((resolve) => (releaseListOffsets = resolve));
    node.hook = async (req) => {
      if (req.kind === Kind.ListOffsets) await listOffsetsHeld;
      return undefined;
    };
    consumer.assign([0, 1].map((partition) => ({ topic: 't', partition })));
    await until(() => sent(node, Kind.ListOffsets).length === 1, 'ListOffsets sent');
    consumer.seek('t', 0, 100);
    const pushes = node.pushes;
    fill(node, 0, 5, 5, 'late'); // pushed by the current subscription, under the old epoch
    await until(() => node.pushes > pushes, 'the late batch pushed');
    // Ten seconds of the clock, within the client's 30 s request timeout: ListOffsets is still held.
    await clock.advanceAsync(10_000, 100);
    expect(sent(node, Kind.Subscribe)).toHaveLength(1);
    releaseListOffsets();
    for (let n = 100; n < 255; n++) expect((await it.next()).value!.offset).toBe(n);
    expect(subscribeOffsets(sent(node, Kind.Subscribe)[1])).toEqual({ 0: 100, 1: 0 });
  });

  it('a reconnect resubscribes from the positions, with no gap or duplicate (subscription ids start again at 1)', async () => {
    const { node, consumer, client } = await setup();
    fill(node, 0, 30, 5);
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    const it = consumer[Symbol.asyncIterator]();
    const offsets: number[] = [];
    for (let i = 0; i < 10; i++) offsets.push((await it.next()).value!.offset);
    node.dropConnections();
    fill(node, 0, 20, 5, 'while-away');
    for (let i = 0; i < 40; i++) offsets.push((await it.next()).value!.offset);
    expect(offsets).toEqual(range(0, 50));
    expect(client.connectionCount).toBe(2);
    const [first, again] = sent(node, Kind.Subscribe);
    expect(first.connection).toBe(node.connections[0]);
    expect(again.connection).toBe(node.connections[1]);
    // From past what was already queued: the 30 records pushed before the drop.
    expect(subscribeOffsets(again)[0]).toBe(30);
    expect(node.subscriptions.map((s) => s.id)).toEqual([1, 1]);
    // More appended after the reconnect arrive on the new subscription.
    fill(node, 0, 3, 1, 'new');
    for (let i = 0; i < 3; i++) offsets.push((await it.next()).value!.offset);
    expect(offsets.slice(50)).toEqual([50, 51, 52]);
  });

  describe('an OFFSET_OUT_OF_RANGE push (records deleted under the position)', () => {
    /** Reads 0..4, then the log moves on to 5..14 and loses everything before 10 while pushes are held. */
    async function outOfRange(options: ConsumerOptions, clock?: ManualClock): Promise<{ node: FakeNode; consumer: Consumer; it: AsyncIterator<ConsumerRecord> }> {
      const { node, consumer } = await setup(options, clock);
      fill(node, 0, 5, 5);
      consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
      const it = consumer[Symbol.asyncIterator]();
      for (let n = 0; n < 5; n++) expect((await it.next()).value!.offset).toBe(n);
      node.holdPushes();
      fill(node, 0, 10, 5, 'w'); // offsets 5..14
      node.deleteRecordsBefore('t', 0, 10);
      node.releasePushes();
      return { node, consumer, it };
    }

    it("'earliest' starts again at the log start", async () => {
      const { node, it } = await outOfRange({ autoOffsetReset: 'earliest' });
      for (let n = 10; n < 15; n++) expect((await it.next()).value!.offset).toBe(n);
      expect(subscribeOffsets(sent(node, Kind.Subscribe)[1])[0]).toBe(10);
      expect(sent(node, Kind.Fetch)).toHaveLength(0);
    });

    it("'latest' starts again at the log end", async () => {
      const { node, consumer, it } = await outOfRange({ autoOffsetReset: 'latest' });
      await until(() => sent(node, Kind.Subscribe).length === 2, 'resubscribed');
      expect(await consumer.position('t', 0)).toBe(15);
      fill(node, 0, 2, 1, 'after');
      expect((await it.next()).value).toMatchObject({ offset: 15 });
      expect((await it.next()).value).toMatchObject({ offset: 16 });
      expect(subscribeOffsets(sent(node, Kind.Subscribe)[1])[0]).toBe(15);
    });

    it("'none' reaches the app as a PartitionError; a seek subscribes the partition again", async () => {
      const clock = new ManualClock();
      const { node, consumer, it } = await outOfRange({ autoOffsetReset: 'none' }, clock);
      const err = await it.next().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PartitionError);
      expect(err).toMatchObject({ code: Errors.OFFSET_OUT_OF_RANGE.code, topic: 't', partition: 0, offset: 5 });
      await aMinuteLater(clock);
      expect(sent(node, Kind.Subscribe)).toHaveLength(1); // paused: not resubscribed by itself
      consumer.seek('t', 0, 12);
      const it2 = consumer[Symbol.asyncIterator]();
      expect((await it2.next()).value!.offset).toBe(12);
      expect(subscribeOffsets(sent(node, Kind.Subscribe)[1])[0]).toBe(12);
    });
  });

  it('a corrupt batch in a push surfaces as a PartitionError after the good records, without a resubscribe loop', async () => {
    const clock = new ManualClock();
    const { node, consumer } = await setup({}, clock);
    fill(node, 0, 20, 10);
    node.partition('t', 0)!.batches[1][OFFSET_CRC] ^= 0xff; // served as stored
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    const good: number[] = [];
    const err = await (async () => {
      for await (const r of consumer) good.push(r.offset);
    })().catch((e: unknown) => e);
    expect(good).toEqual(range(0, 10));
    expect(err).toBeInstanceOf(PartitionError);
    expect(err).toMatchObject({ code: Errors.CORRUPT_BATCH.code, offset: 10 });
    expect(await consumer.position('t', 0)).toBe(10);
    // What the error changes goes out at once (the subscription replaced without the
    // partition); from then on a minute of the clock, backoffs included, subscribes nothing.
    await clock.advanceAsync(1);
    const subscribes = sent(node, Kind.Subscribe).length;
    await aMinuteLater(clock);
    expect(sent(node, Kind.Subscribe)).toHaveLength(subscribes);
    fill(node, 0, 1, 1, 'after');
    consumer.seek('t', 0, 20);
    expect((await take(consumer, 1))[0].value!.toString()).toBe('after0');
  });

  it('CORRUPT_BATCH pushed by the node reaches the app as a PartitionError at the position; a seek resumes', async () => {
    const { node, consumer } = await setup();
    fill(node, 0, 5, 5);
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    const it = consumer[Symbol.asyncIterator]();
    for (let n = 0; n < 5; n++) expect((await it.next()).value!.offset).toBe(n);
    node.pushError('t', 0, Errors.CORRUPT_BATCH, 'CORRUPT_BATCH: crc mismatch at 5');
    const err = await it.next().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PartitionError);
    expect(err).toMatchObject({ code: Errors.CORRUPT_BATCH.code, offset: 5 });
    fill(node, 0, 3, 3, 'after');
    consumer.seek('t', 0, 6);
    const it2 = consumer[Symbol.asyncIterator]();
    expect((await it2.next()).value!.offset).toBe(6);
    expect((await it2.next()).value!.offset).toBe(7);
  });

  it('a retriable error push (UNKNOWN_TOPIC) backs off and subscribes the partition again, losing nothing', async () => {
    const { node, consumer } = await setup({ unknownTopicRetries: 5 });
    fill(node, 0, 5, 5);
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    const it = consumer[Symbol.asyncIterator]();
    for (let n = 0; n < 5; n++) expect((await it.next()).value!.offset).toBe(n);
    node.pushError('t', 0, Errors.UNKNOWN_TOPIC);
    fill(node, 0, 5, 5);
    for (let n = 5; n < 10; n++) expect((await it.next()).value!.offset).toBe(n);
    expect(subscribeOffsets(sent(node, Kind.Subscribe)[1])[0]).toBe(5);
  });

  it('a partition the Subscribe answer refuses goes through the partition error path; the others are delivered', async () => {
    const { node, consumer } = await setup({ autoOffsetReset: 'none' });
    fill(node, 1, 3, 3);
    consumer.assign([
      { topic: 't', partition: 0, offset: 999 },
      { topic: 't', partition: 1, offset: 0 },
    ]);
    const it = consumer[Symbol.asyncIterator]();
    const seen: (number | string)[] = [];
    while (seen.length < 4) {
      try {
        seen.push((await it.next()).value!.offset);
      } catch (err) {
        expect(err).toMatchObject({ code: Errors.OFFSET_OUT_OF_RANGE.code, partition: 0, offset: 999 });
        seen.push('error');
      }
    }
    expect(seen.filter((x) => x !== 'error')).toEqual([0, 1, 2]);
    expect(seen).toContain('error');
    expect(sent(node, Kind.Fetch)).toHaveLength(0);
  });

  it('falls back to Fetch on a connection whose node does not know Subscribe, and tries again after a reconnect', async () => {
    const { node, consumer, client } = await setup({ maxWaitMs: 20 });
    node.knowsSubscribe = false;
    fill(node, 0, 10);
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    const it = consumer[Symbol.asyncIterator]();
    for (let n = 0; n < 10; n++) expect((await it.next()).value!.offset).toBe(n);
    fill(node, 0, 5);
    for (let n = 10; n < 15; n++) expect((await it.next()).value!.offset).toBe(n);
    await until(() => sent(node, Kind.Fetch).length >= 4, 'a few long polls');
    expect(sent(node, Kind.Subscribe)).toHaveLength(1); // refused once, for good on this connection
    expect(node.subscriptions).toHaveLength(0);

    node.knowsSubscribe = true; // the node was upgraded
    node.dropConnections();
    await until(() => client.connectionCount === 2, 'reconnected');
    fill(node, 0, 5);
    for (let n = 15; n < 20; n++) expect((await it.next()).value!.offset).toBe(n);
    const again = sent(node, Kind.Subscribe);
    expect(again).toHaveLength(2);
    expect(again[1].connection).toBe(node.connections[1]);
    expect(node.pushes).toBeGreaterThan(0);
  });

  it("delivery 'fetch' never sends Subscribe", async () => {
    const { node, consumer } = await setup({ delivery: 'fetch', maxWaitMs: 20 });
    fill(node, 0, 10);
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    expect((await take(consumer, 10)).map((r) => r.offset)).toEqual(range(0, 10));
    expect(sent(node, Kind.Fetch).length).toBeGreaterThan(0);
    expect(sent(node, Kind.Subscribe)).toHaveLength(0);
    expect(node.pushes).toBe(0);
  });

  it('assign([]) and close() unsubscribe on a shared client', async () => {
    const { node, consumer, client } = await setup();
    fill(node, 0, 3);
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    await take(consumer, 3);
    consumer.assign([]);
    await until(() => node.subscriptions[0].ended, 'unsubscribed');
    expect(sent(node, Kind.Subscribe)).toHaveLength(1);
    consumer.assign([{ topic: 't', partition: 1, offset: 0 }]);
    await until(() => node.subscriptions.length === 2, 'subscribed again');
    await consumer.close();
    await until(() => node.subscriptions[1].ended, 'unsubscribed at close');
    expect(client.isClosed).toBe(false);
  });

  it('rejects an unknown delivery', () => {
    const client = new Client('mem://none');
    expect(() => new Consumer(client, { delivery: 'push' as 'fetch' })).toThrow(/delivery must be/);
  });
});
