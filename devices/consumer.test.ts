import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock, type Clock } from '../protocol/clock.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import { encodeBatch, OFFSET_CRC } from '../protocol/record-batch.js';
import { Client } from './client.js';
import { Consumer, type ConsumerOptions, type ConsumerRecord, type ValueDecoding } from './consumer.js';
import { PartitionError } from './errors.js';
import { cborEncode } from './serde.js';
import { FakeNode, type FakeRequest } from './testing/fake-node.js';
import { take } from './testing/take.js';
import { until } from '../test/helpers/until.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/**
 * Given a clock, the node's long polls run on it too: with a ManualClock nothing waits on
 * the wall clock, and what has not happened by the time the clock was moved does not.
 */
async function setupWith<D extends ValueDecoding = 'buffer'>(options: ConsumerOptions<D>, clock?: Clock): Promise<{ node: FakeNode; consumer: Consumer<D>; client: Client }> {
  const node = new FakeNode();
  if (clock !== undefined) node.clock = clock;
  node.createTopic('t', 2);
  const client = await Client.connect('mem://fake', { transportFactory: node.transportFactory, clock });
  const consumer = new Consumer<D>(client, { maxWaitMs: 50, ...options });
  closers.push(() => client.close());
  closers.push(() => consumer.close());
  return { node, consumer, client };
}

/** Appends `count` records valued `${prefix}${i}` in batches of `perBatch`. */
function fill(node: FakeNode, partition: number, count: number, perBatch = 10, prefix = 'v'): void {
  for (let i = 0; i < count; i += perBatch) {
    const records = [];
    for (let j = i; j < Math.min(count, i + perBatch); j++) records.push({ key: Buffer.from(`k${j}`), value: Buffer.from(`${prefix}${j}`), timestamp: 1000 + j });
    node.append('t', partition, encodeBatch(records));
  }
}


describe.each(['subscribe', 'fetch'] as const)('Consumer (delivery %s)', (delivery) => {
  // The same behaviour whether the node pushes or is asked.
  const setup = <D extends ValueDecoding = 'buffer'>(options: ConsumerOptions<D> = {}, clock?: Clock) => setupWith<D>({ delivery, ...options }, clock);

  it("backs off on its client's clock: a partition retried after an hour is read once the clock moves an hour", async () => {
    const clock = new ManualClock();
    const hourMs = 3_600_000;
    // Given to the client only: the consumer made on it takes it.
    const { node, consumer, client } = await setup({ retryBackoffMs: hourMs, retryBackoffMaxMs: hourMs }, clock);
    consumer.assign([{ topic: 'late', partition: 0, offset: 0 }]);
    const reading = take(consumer, 2);
    // UNKNOWN_TOPIC: the partition backs off, and the delivery, nothing in flight, waits for
    // the clock to retry it.
    const askedFor = (r: FakeRequest) => (r.kind === Kind.Subscribe || r.kind === Kind.Fetch) && JSON.stringify(r.body.partitions).includes('"late"');
    await until(() => node.requests.some(askedFor), 'the partition asked for');
    await until(() => client.pendingRequests === 0, 'the answer taken');
    node.createTopic('late', 1);
    node.append('late', 0, encodeBatch([{ value: Buffer.from('x0') }, { value: Buffer.from('x1') }]));
    clock.advance(hourMs);
    expect((await reading).map((r) => r.value!.toString())).toEqual(['x0', 'x1']);
  });

  it('close() ends a waiting iteration', async () => {
    const { node, consumer } = await setup();
    consumer.assign([{ topic: 't', partition: 0 }]);
    const waiting = consumer[Symbol.asyncIterator]().next();
    // Waiting on the node: its subscription is open, or its long poll sent.
    await until(() => node.requests.some((r) => r.kind === Kind.Subscribe || r.kind === Kind.Fetch), 'the consumer asks the node');
    await consumer.close();
    await expect(waiting).resolves.toMatchObject({ done: true });
  });

});

describe('Consumer with Fetch', () => {
  // These look at the Fetch requests themselves; consumer-subscribe.test.ts has the same
  // checks for pushes.
  const setup = <D extends ValueDecoding = 'buffer'>(options: ConsumerOptions<D> = {}, clock?: Clock) => setupWith<D>({ delivery: 'fetch', ...options }, clock);

  it('rotates the fetch order: with a backlog on every partition, none waits for the others to catch up', async () => {
    // The fake node fills maxBytes in request order, as the node does (KIP-74). maxBytes
    // holds about three partitions' share, so a fixed order would feed partitions 0-2 only
    // until their 100 batches were read.
    const { node, consumer } = await setup({ partitionMaxBytes: 2500, maxBytes: 5000 });
    const partitions = 6;
    node.createTopic('many', partitions);
    for (let p = 0; p < partitions; p++) {
      for (let b = 0; b < 100; b++) {
        const records = Array.from({ length: 10 }, (_, i) => ({ value: Buffer.alloc(100, b * 10 + i) }));
        node.append('many', p, encodeBatch(records));
      }
    }
    consumer.assign(Array.from({ length: partitions }, (_, partition) => ({ topic: 'many', partition, offset: 0 })));
    const firstArrays: number[] = [];
    const offsets = Array.from({ length: partitions }, () => [] as number[]);
    let total = 0;
    for await (const batch of consumer.batches()) {
      // One array holds one partition's records from one Fetch.
      if (firstArrays.length < 2 * partitions) firstArrays.push(batch[0].partition);
      for (const r of batch) offsets[r.partition].push(r.offset);
      total += batch.length;
      if (total === partitions * 1000) break;
    }
    expect(new Set(firstArrays).size).toBe(partitions);
    // The rotation loses nothing and keeps each partition in order.
    for (const o of offsets) expect(o).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  it('surfaces a corrupt batch as a PartitionError after the good records, not a retry loop', async () => {
    const clock = new ManualClock();
    const { node, consumer } = await setup({}, clock);
    fill(node, 0, 20, 10);
    // Flip a CRC byte of the second stored batch: the node serves bytes as stored.
    node.partition('t', 0)!.batches[1][OFFSET_CRC] ^= 0xff;
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    const good: number[] = [];
    const err = await (async () => {
      for await (const r of consumer) good.push(r.offset);
    })().catch((e: unknown) => e);
    expect(good).toEqual(Array.from({ length: 10 }, (_, i) => i));
    expect(err).toBeInstanceOf(PartitionError);
    expect((err as PartitionError).code).toBe(Errors.CORRUPT_BATCH.code);
    expect((err as PartitionError).offset).toBe(10);
    expect(await consumer.position('t', 0)).toBe(10);
    // The partition is paused, not refetched in a loop: a minute of the consumer's and the
    // node's clock, long polls and backoffs included, sends no Fetch for it.
    const fetches = node.requests.filter((r) => r.kind === Kind.Fetch).length;
    await clock.advanceAsync(60_000, 100);
    expect(node.requests.filter((r) => r.kind === Kind.Fetch).length).toBe(fetches);
    // Seeking past the bad batch resumes.
    fill(node, 0, 1, 1, 'after');
    consumer.seek('t', 0, 20);
    expect((await take(consumer, 1))[0].value!.toString()).toBe('after0');
  });

  it('keeps fetching after a dropped connection (a Fetch is safe to resend)', async () => {
    const { node, consumer } = await setup({ retryBackoffMs: 1 });
    fill(node, 0, 3);
    let dropped = false;
    node.hook = (req) => {
      if (req.kind === Kind.Fetch && !dropped) {
        dropped = true;
        return 'close';
      }
      return undefined;
    };
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    expect((await take(consumer, 3)).map((r) => r.offset)).toEqual([0, 1, 2]);
    expect(dropped).toBe(true);
  });

  it('bounds prefetched bytes: no Fetch starts while bufferedBytesMax is reached', async () => {
    const clock = new ManualClock();
    const { node, consumer } = await setup({ bufferedBytesMax: 2000, partitionMaxBytes: 1000 }, clock);
    fill(node, 0, 2000, 10);
    consumer.assign([{ topic: 't', partition: 0, offset: 0 }]);
    const it = consumer[Symbol.asyncIterator]();
    await it.next();
    // The app holds still for a minute of the clock: buffered data stays near the bound
    // instead of growing.
    await clock.advanceAsync(60_000, 100);
    expect(consumer.bufferedBytes).toBeLessThanOrEqual(2000 + 1000);
    const fetches = node.requests.filter((r) => r.kind === Kind.Fetch).length;
    expect(fetches).toBeLessThan(6);
    let n = 1;
    while (n < 2000) {
      const r = await it.next();
      expect(r.value!.offset).toBe(n);
      n++;
    }
  });
});
