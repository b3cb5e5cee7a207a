import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../protocol/clock.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import { partitionForKey } from '../protocol/partitioner.js';
import { Compression, readBatchHeader } from '../protocol/record-batch.js';
import { Client } from './client.js';
import { connect } from './connection.js';
import { Producer, type ProducerOptions } from './producer.js';
import { cborDecode } from './serde.js';
import { FakeNode, type FakeRequest } from './testing/fake-node.js';
import { until } from '../test/helpers/until.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function setup(options: ProducerOptions = {}, partitions = 3): Promise<{ node: FakeNode; client: Client; producer: Producer }> {
  const node = new FakeNode();
  node.createTopic('t', partitions);
  const client = await Client.connect('mem://fake', { transportFactory: node.transportFactory });
  const producer = new Producer(client, options);
  closers.push(() => client.close());
  return { node, client, producer };
}

function produceRequests(node: FakeNode): FakeRequest[] {
  return node.requests.filter((r) => r.kind === Kind.Produce);
}

type Entry = { topic: string; partition: number; records: Uint8Array };
const entriesOf = (r: FakeRequest) => r.body.partitions as Entry[];


describe('Producer', () => {
  it('packs the ready batches of several partitions into one Produce request, each encoded once', async () => {
    const { node, producer } = await setup({ lingerMs: 200 });
    const messages = Array.from({ length: 300 }, (_, i) => ({ key: `k${i}`, value: `v${i}` }));
    const results = await producer.sendBatch('t', messages).then(async (r) => r);
    // lingerMs is long: the sendBatch promise resolved only because of the linger timer or
    // flush; here it is the linger timer, so exactly one request carried everything.
    const requests = produceRequests(node);
    expect(requests).toHaveLength(1);
    const entries = entriesOf(requests[0]);
    expect(entries.map((e) => e.partition).sort()).toEqual([0, 1, 2]);
    const counts = entries.map((e) => readBatchHeader(Buffer.from(e.records)).recordCount);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(300);
    expect(results.map((r) => r.offset).every((o) => o >= 0)).toBe(true);
    // Results come back in input order with each record's own partition and offset.
    for (let i = 0; i < 300; i++) {
      const stored = node.records('t', results[i].partition)[results[i].offset];
      expect(stored.value!.toString()).toBe(`v${i}`);
    }
  }, 10_000);

  it('lingers on the clock connect() was given: a lone record goes out when that clock passes lingerMs, not before', async () => {
    const node = new FakeNode();
    node.createTopic('t', 3);
    const clock = new ManualClock();
    const conn = await connect('mem://fake', { transportFactory: node.transportFactory, clock });
    closers.push(() => conn.close());
    const producer = conn.producer({ lingerMs: 60_000 });
    // Topic metadata and the producer id first, so that the lone record below waits for its linger alone.
    await Promise.all([producer.send('t', { value: 'warm-up', partition: 0 }), producer.flush()]);
    expect(produceRequests(node)).toHaveLength(1);
    const lone = producer.send('t', { value: 'x', partition: 2 });
    expect(producer.bufferedBytes).toBeGreaterThan(0); // in its batch, lingering
    clock.advance(59_999);
    expect(conn.client.pendingRequests).toBe(0);
    clock.advance(1);
    expect(conn.client.pendingRequests).toBe(1); // the Produce, sent from the linger timer
    await expect(lone).resolves.toEqual({ topic: 't', partition: 2, offset: 0 });
    expect(produceRequests(node)).toHaveLength(2);
    // The record's timestamp is the clock's too.
    expect(node.records('t', 2)[0].timestamp).toBe(clock.now() - 60_000);
  });

  it('with lingerMs 0 sends without waiting for any timer, the records sent together in one batch', async () => {
    const { node, producer } = await setup({ lingerMs: 0 });
    await producer.send('t', { value: 'metadata is loaded now', partition: 0 });
    const before = produceRequests(node).length;
    // Timers frozen: a send that waited for one (even of 0 ms) would never be answered.
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'setImmediate'] });
    try {
      const results = await Promise.all([0, 1, 2].map((i) => producer.send('t', { value: `v${i}`, partition: 1 })));
      expect(results.map((r) => r.offset)).toEqual([0, 1, 2]);
    } finally {
      vi.useRealTimers();
    }
    const requests = produceRequests(node).slice(before);
    expect(requests).toHaveLength(1);
    expect(entriesOf(requests[0]).map((e) => readBatchHeader(Buffer.from(e.records)).recordCount)).toEqual([3]);
  });

  it('retries a batch the node refused without appending, resending the same bytes', async () => {
    const { node, producer } = await setup({ retryBackoffMs: 1 }, 1);
    let refusals = 2;
    node.hook = (req) => {
      if (req.kind !== Kind.Produce || refusals === 0) return undefined;
      refusals--;
      const e = entriesOf(req)[0];
      return { answer: { partitions: [{ topic: e.topic, partition: e.partition, error: Errors.NOT_LEADER.code, message: 'NOT_LEADER: moved', baseOffset: -1, logStartOffset: -1 }] } };
    };
    await expect(producer.send('t', { value: 'once' })).resolves.toEqual({ topic: 't', partition: 0, offset: 0 });
    const sent = produceRequests(node).map((r) => Buffer.from(entriesOf(r)[0].records).toString('hex'));
    expect(sent).toHaveLength(3);
    expect(new Set(sent).size).toBe(1);
    expect(node.records('t', 0)).toHaveLength(1);
  });

  it('gives up after `retries` with the last error', async () => {
    const { node, producer } = await setup({ retries: 2, retryBackoffMs: 1 }, 1);
    node.hook = (req) => {
      if (req.kind !== Kind.Produce) return undefined;
      return { answer: { partitions: [{ topic: 't', partition: 0, error: Errors.THROTTLED.code, message: 'THROTTLED: slow down', baseOffset: -1, logStartOffset: -1 }] } };
    };
    await expect(producer.send('t', { value: 'x' })).rejects.toMatchObject({ code: Errors.THROTTLED.code });
    expect(produceRequests(node)).toHaveLength(3);
  });

  // Without idempotence; the idempotent producer resends these (producer-idempotence.test.ts).
  it('without idempotence, does not resend when the outcome is unknown: a dropped connection fails the batch with NETWORK', async () => {
    const { node, producer } = await setup({ idempotent: false, retryBackoffMs: 1 }, 1);
    node.hook = (req) => (req.kind === Kind.Produce && produceRequests(node).length === 1 ? 'close' : undefined);
    const err = (await producer.send('t', { value: 'maybe' }).catch((e: unknown) => e)) as TributaryError;
    expect(err.code).toBe(Errors.NETWORK.code);
    expect(err.retriable).toBe(true);
    expect(produceRequests(node)).toHaveLength(1);
    // The producer goes on working after the reconnect.
    await expect(producer.send('t', { value: 'next' })).resolves.toMatchObject({ partition: 0 });
  });

  it('without idempotence, does not resend after a timeout: REQUEST_TIMED_OUT reaches the caller', async () => {
    const { node, producer } = await setup({ idempotent: false, requestTimeoutMs: 50, retryBackoffMs: 1 }, 1);
    node.hook = (req) => (req.kind === Kind.Produce ? 'silent' : undefined);
    await expect(producer.send('t', { value: 'x' })).rejects.toMatchObject({ code: Errors.REQUEST_TIMED_OUT.code });
    expect(produceRequests(node)).toHaveLength(1);
  });

  it('without idempotence, keeps at most one batch per partition on the wire', async () => {
    const { node, producer } = await setup({ idempotent: false, batchBytes: 1024, lingerMs: 0 });
    let onWire = new Map<number, number>();
    let maxPerPartition = 0;
    node.hook = async (req) => {
      if (req.kind !== Kind.Produce) return undefined;
      const parts = entriesOf(req).map((e) => e.partition);
      for (const p of parts) {
        onWire.set(p, (onWire.get(p) ?? 0) + 1);
        maxPerPartition = Math.max(maxPerPartition, onWire.get(p)!);
      }
      // Held for a turn of the event loop: frames cross the in-memory pipe on microtasks, so
      // a second batch of the partition sent meanwhile would arrive while this one is held.
      await new Promise((r) => setImmediate(r));
      for (const p of parts) onWire.set(p, onWire.get(p)! - 1);
      return undefined;
    };
    await producer.sendBatch('t', Array.from({ length: 400 }, (_, i) => ({ key: `k${i % 7}`, value: Buffer.alloc(50) })));
    expect(maxPerPartition).toBe(1);
    expect(produceRequests(node).length).toBeGreaterThan(3);
  });

  it('bounds buffered bytes: sends wait for space, and all are delivered', async () => {
    const { node, producer } = await setup({ bufferBytesMax: 8 * 1024, batchBytes: 2048, lingerMs: 1 });
    let maxBuffered = 0;
    node.hook = async (req) => {
      maxBuffered = Math.max(maxBuffered, producer.bufferedBytes);
      // Held for a turn of the event loop, so that sends pile up behind the answers.
      if (req.kind === Kind.Produce) await new Promise((r) => setImmediate(r));
      return undefined;
    };
    const sends = [];
    for (let i = 0; i < 1000; i++) {
      sends.push(producer.send('t', { key: `k${i % 13}`, value: Buffer.alloc(100, i % 256) }));
      maxBuffered = Math.max(maxBuffered, producer.bufferedBytes);
    }
    const results = await Promise.all(sends);
    expect(maxBuffered).toBeLessThanOrEqual(8 * 1024);
    expect(results).toHaveLength(1000);
    const stored = [0, 1, 2].reduce((n, p) => n + node.records('t', p).length, 0);
    expect(stored).toBe(1000);
    expect(producer.bufferedBytes).toBe(0);
  });

  it('rejects with BUFFER_FULL after maxBlockMs when no space frees up', async () => {
    const { node, producer } = await setup({ bufferBytesMax: 1024, maxBlockMs: 30, lingerMs: 0 }, 1);
    node.hook = (req) => (req.kind === Kind.Produce ? 'silent' : undefined);
    const first = producer.send('t', { value: Buffer.alloc(800) });
    first.catch(() => {});
    const err = (await producer.send('t', { value: Buffer.alloc(800) }).catch((e: unknown) => e)) as TributaryError;
    expect(err.code).toBe(Errors.BUFFER_FULL.code);
  });

  it('bounds the admission queue: past admissionQueueMax a send fails at once with BUFFER_FULL, the rest are delivered', async () => {
    const admissionQueueMax = 50;
    const { node, producer } = await setup({ bufferBytesMax: 2048, batchBytes: 1024, lingerMs: 0, admissionQueueMax }, 1);
    await producer.send('t', { value: 'metadata loaded' });
    // The node holds every Produce answer until the loop is over: no space frees up meanwhile.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    node.hook = async (req) => {
      if (req.kind === Kind.Produce) await gate;
      return undefined;
    };
    const outcomes: ('ok' | 'full' | 'other' | 'pending')[] = [];
    const sends: Promise<void>[] = [];
    let queuedMax = 0;
    const timers = vi.spyOn(globalThis, 'setTimeout');
    const total = 5000;
    for (let i = 0; i < total; i++) {
      outcomes.push('pending');
      sends.push(
        producer.send('t', { value: Buffer.alloc(100, i % 256) }).then(
          () => void (outcomes[i] = 'ok'),
          (err: unknown) => void (outcomes[i] = err instanceof TributaryError && err.is(Errors.BUFFER_FULL) && err.retriable ? 'full' : 'other'),
        ),
      );
      queuedMax = Math.max(queuedMax, producer.queuedSends);
    }
    const timersSet = timers.mock.calls.length;
    timers.mockRestore();
    // One timer for the queue's head, not one per waiting send.
    expect(timersSet).toBeLessThanOrEqual(5);
    expect(queuedMax).toBe(admissionQueueMax);
    expect(producer.bufferedBytes).toBeLessThanOrEqual(2048);
    // Their rejections' callbacks were queued as the loop ran: they run before this goes on.
    await Promise.resolve();
    // Every send past the bound has failed already, while the node still holds its answers.
    const full = outcomes.filter((o) => o === 'full').length;
    const accepted = outcomes.filter((o) => o === 'pending').length;
    expect(outcomes.filter((o) => o === 'ok' || o === 'other')).toEqual([]);
    expect(accepted).toBeGreaterThan(admissionQueueMax);
    expect(accepted + full).toBe(total);
    // Those in the buffer or in the queue are all delivered once the node answers.
    open();
    await Promise.all(sends);
    expect(outcomes.filter((o) => o === 'ok').length).toBe(accepted);
    expect(outcomes.filter((o) => o === 'other')).toEqual([]);
    expect(node.records('t', 0)).toHaveLength(1 + accepted);
    expect(producer.queuedSends).toBe(0);
    expect(producer.bufferedBytes).toBe(0);
  });

  it('maxBlockMs fails every send waiting behind a full buffer, then the producer goes on', async () => {
    const { node, producer } = await setup({ bufferBytesMax: 1024, maxBlockMs: 30, lingerMs: 0 }, 1);
    let hold = true;
    const held: (() => void)[] = [];
    node.hook = (req) => (req.kind === Kind.Produce && hold ? new Promise<undefined>((resolve) => held.push(() => resolve(undefined))) : undefined);
    const first = producer.send('t', { value: Buffer.alloc(800) });
    first.catch(() => {});
    const waiting = Array.from({ length: 20 }, () => producer.send('t', { value: Buffer.alloc(800) }).catch((e: unknown) => e));
    const errors = await Promise.all(waiting);
    for (const err of errors) expect((err as TributaryError).code).toBe(Errors.BUFFER_FULL.code);
    expect(producer.queuedSends).toBe(0);
    hold = false;
    for (const release of held) release();
    await expect(first).resolves.toMatchObject({ offset: 0 });
    await expect(producer.send('t', { value: 'after' })).resolves.toMatchObject({ offset: 1 });
  });

  it('sendEach tells every record on its own: those of a refused batch fail, the others of the call are still acknowledged', async () => {
    const { node, producer } = await setup({ retries: 0, lingerMs: 1 }, 2);
    node.hook = (req) => {
      if (req.kind !== Kind.Produce) return undefined;
      // Partition 1 refuses what it is sent; partition 0 appends at offset 10.
      const partitions = entriesOf(req).map((e) =>
        e.partition === 1
          ? { topic: 't', partition: 1, error: Errors.INVALID_RECORD.code, message: 'INVALID_RECORD: no', baseOffset: -1, logStartOffset: -1 }
          : { topic: 't', partition: 0, error: Errors.NONE.code, baseOffset: 10, logStartOffset: 0 },
      );
      return { answer: { partitions } };
    };
    const told: [number, number | null, string | null][] = [];
    let done: () => void = () => {};
    const all = new Promise<void>((resolve) => (done = resolve));
    const messages = [0, 1, 0, 1, 0].map((partition, i) => ({ partition, value: `v${i}` }));
    // The last one names a partition the topic does not have: it, and only it, fails at admission.
    producer.sendEach('t', [...messages, { partition: 7, value: 'nowhere' }], (index, result, err) => {
      told.push([index, result?.offset ?? null, err === null ? null : (err as TributaryError).errorName]);
      if (told.length === 6) done();
    });
    await all;
    expect(told.sort((a, b) => a[0] - b[0])).toEqual([
      [0, 10, null],
      [1, null, 'INVALID_RECORD'],
      [2, 11, null],
      [3, null, 'INVALID_RECORD'],
      [4, 12, null],
      [5, null, 'UNKNOWN_TOPIC'],
    ]);
  });

  it('rejects a single record larger than bufferBytesMax at once', async () => {
    const { producer } = await setup({ bufferBytesMax: 1024 }, 1);
    await expect(producer.send('t', { value: Buffer.alloc(2000) })).rejects.toMatchObject({ code: Errors.BUFFER_FULL.code });
  });

  it('acks=0 resolves with offset -1 and the records still arrive', async () => {
    const { node, producer } = await setup({ acks: 0 }, 1);
    const results = await producer.sendBatch('t', [{ value: 'a' }, { value: 'b' }]);
    expect(results).toEqual([
      { topic: 't', partition: 0, offset: -1 },
      { topic: 't', partition: 0, offset: -1 },
    ]);
    await until(() => node.records('t', 0).length === 2, 'records appended');
    expect(produceRequests(node)[0].body.acks).toBe(0);
  });

  it("passes acks -1 ('all') through", async () => {
    const { node, producer } = await setup({ acks: 'all' }, 1);
    await producer.send('t', { value: 'a' });
    expect(produceRequests(node)[0].body.acks).toBe(-1);
  });

  it('gzip-compresses whole batches', async () => {
    const { node, producer } = await setup({ compression: 'gzip' }, 1);
    await producer.sendBatch('t', Array.from({ length: 50 }, (_, i) => ({ value: `reading ${i} `.repeat(10) })));
    const entry = entriesOf(produceRequests(node)[0])[0];
    expect(readBatchHeader(Buffer.from(entry.records)).compression).toBe(Compression.Gzip);
    expect(node.records('t', 0).map((r) => r.value!.toString())[49]).toBe('reading 49 '.repeat(10));
  });

});
