// The idempotent producer against the FakeNode, which keeps producer state as the node does:
// batches stamped with producer id and sequences, resends answered DUPLICATE_SEQUENCE,
// several batches per partition on the wire, retries in order, gaps, fencing, and a seeded
// run of dropped connections checked for exactly-once and order per key.

import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../protocol/clock.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import { readBatchHeader, type BatchHeader } from '../protocol/record-batch.js';
import { testSeeds, withSeedAsync } from '../protocol/testdata/helpers.js';
import { Client } from './client.js';
import { Producer, type ProducerOptions, type RecordMetadata } from './producer.js';
import { FakeNode, type FakeRequest, type HookAction } from './testing/fake-node.js';
import { until } from '../test/helpers/until.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** A node, a client that reconnects at once, and a producer with short backoffs. */
async function setup(options: ProducerOptions = {}, partitions = 1, clock?: ManualClock): Promise<{ node: FakeNode; client: Client; producer: Producer }> {
  const node = new FakeNode();
  node.createTopic('t', partitions);
  const client = await Client.connect('mem://fake', { transportFactory: node.transportFactory, reconnect: { initialMs: 1, maxMs: 10 }, clock });
  const producer = new Producer(client, { retryBackoffMs: 1, retryBackoffMaxMs: 10, ...options });
  closers.push(() => client.close());
  return { node, client, producer };
}

type Entry = { topic: string; partition: number; records: Uint8Array };
const entriesOf = (r: FakeRequest) => r.body.partitions as Entry[];
const requestsOf = (node: FakeNode, kind: Kind) => node.requests.filter((r) => r.kind === kind);

/** Every batch the producer sent, in the order the node received them. */
function sentBatches(node: FakeNode): { partition: number; header: BatchHeader; hex: string }[] {
  return requestsOf(node, Kind.Produce).flatMap((r) =>
    entriesOf(r).map((e) => ({ partition: e.partition, header: readBatchHeader(Buffer.from(e.records)), hex: Buffer.from(e.records).toString('hex') })),
  );
}

function refuseAll(req: FakeRequest, error: number, message: string): HookAction {
  return { answer: { partitions: entriesOf(req).map((e) => ({ topic: e.topic, partition: e.partition, error, message, baseOffset: -1, logStartOffset: -1 })) } };
}

const values = (node: FakeNode, partition = 0) => node.records('t', partition).map((r) => r.value!.toString());
const range = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i));
/** Records of 100 estimated bytes: with batchBytes 500, batches of exactly 5. */
const fiveRecordBatches = { batchBytes: 500, lingerMs: 0 };
const record = (i: number) => ({ value: `v${i}`.padEnd(76, '.') });
const recordValue = (i: number) => `v${i}`.padEnd(76, '.');


describe('idempotent Producer', () => {
  it('asks for a producer id once, before its first Produce, and stamps sequences that follow per partition', async () => {
    const { node, producer } = await setup({ lingerMs: 1, batchBytes: 400 }, 3);
    const sends = range(300, (i) => `k${i % 11}`).map((key, i) => producer.send('t', { key, value: `${key}:${i}` }));
    await Promise.all(sends);
    const kinds = node.requests.map((r) => r.kind).filter((k) => k === Kind.InitProducerId || k === Kind.Produce);
    expect(kinds[0]).toBe(Kind.InitProducerId);
    expect(kinds.filter((k) => k === Kind.InitProducerId)).toHaveLength(1);
    const batches = sentBatches(node);
    for (const partition of [0, 1, 2]) {
      const headers = batches.filter((b) => b.partition === partition).map((b) => b.header);
      expect(headers.length).toBeGreaterThan(1);
      let expected = 0;
      for (const h of headers) {
        expect(h.producerId).toBe(1); // the FakeNode's first id
        expect(h.producerEpoch).toBe(0);
        expect(h.baseSequence).toBe(expected);
        expected += h.recordCount;
      }
    }
    expect(node.duplicateBatches + node.outOfOrderBatches).toBe(0);
  });

  it('keeps its producer id and sequences across a reconnect', async () => {
    const { node, client, producer } = await setup({}, 1);
    await producer.sendBatch('t', [{ value: 'a' }, { value: 'b' }]);
    node.dropConnections();
    await until(() => client.connectionCount === 2, 'reconnected');
    await producer.send('t', { value: 'c' });
    expect(sentBatches(node).map((b) => [b.header.producerId, b.header.baseSequence])).toEqual([
      [1, 0],
      [1, 2],
    ]);
    expect(requestsOf(node, Kind.InitProducerId)).toHaveLength(1);
  });

  it('an answer lost after the append: the resend is answered DUPLICATE_SEQUENCE and each record resolves once, at its original offset', async () => {
    const { node, producer } = await setup({}, 1);
    await producer.send('t', { value: 'first' });
    node.hook = (req) => (req.kind === Kind.Produce && requestsOf(node, Kind.Produce).length === 2 ? 'close-after-handling' : undefined);
    const results = await producer.sendBatch('t', range(10, (i) => `r${i}`).map((value) => ({ value })));
    expect(results.map((r) => r.offset)).toEqual(range(10, (i) => String(i + 1)).map(Number));
    expect(values(node)).toEqual(['first', ...range(10, (i) => `r${i}`)]);
    expect(node.duplicateBatches).toBe(1);
    const [, lost, resent] = sentBatches(node);
    expect(resent.hex).toBe(lost.hex); // the same bytes, sequence included
  });

  it('answers lost with several batches in flight: all resent in order, each record once', async () => {
    const { node, producer } = await setup(fiveRecordBatches, 1);
    node.hook = (req) => (req.kind === Kind.Produce && requestsOf(node, Kind.Produce).length === 3 ? 'close-after-handling' : undefined);
    const sends = range(50, String).map((_, i) => producer.send('t', record(i)));
    const results = await Promise.all(sends);
    expect(results.map((r) => r.offset)).toEqual(range(50, String).map(Number));
    expect(values(node)).toEqual(range(50, recordValue));
    expect(node.duplicateBatches).toBeGreaterThan(0);
  });

  it('a lost answer that times out (REQUEST_TIMED_OUT) is resent too, and answered as a duplicate', async () => {
    const { node, producer } = await setup({ requestTimeoutMs: 100 }, 1);
    node.hook = (req) => (req.kind === Kind.Produce && requestsOf(node, Kind.Produce).length === 1 ? 'silent-after-handling' : undefined);
    await expect(producer.send('t', { value: 'once' })).resolves.toMatchObject({ offset: 0 });
    expect(values(node)).toEqual(['once']);
    expect(node.duplicateBatches).toBe(1);
  });

  it('a batch refused behind one still on the wire waits for that answer before going again', async () => {
    const clock = new ManualClock();
    // requestTimeoutMs: the held batch outlives the minute the clock is moved below.
    const { node, producer } = await setup({ ...fiveRecordBatches, requestTimeoutMs: 600_000 }, 1, clock);
    let release!: () => void;
    const held = new Promise<HookAction>((resolve) => (release = () => resolve(undefined)));
    // The node takes the first batch late: the second, handled first, is refused out of order.
    node.hook = (req) => (req.kind === Kind.Produce && requestsOf(node, Kind.Produce).length === 1 ? held : undefined);
    const sent = Promise.all(range(10, String).map((_, i) => producer.send('t', record(i))));
    await until(() => node.outOfOrderBatches === 1, 'the second batch refused');
    // A minute of the producer's clock, its backoffs included: resending it now would only be
    // refused again, as often as the loop could go round.
    await clock.advanceAsync(60_000, 100);
    expect(requestsOf(node, Kind.Produce)).toHaveLength(2);
    release();
    expect((await sent).map((r) => r.offset)).toEqual(range(10, String).map(Number));
    expect(values(node)).toEqual(range(10, recordValue));
    expect(requestsOf(node, Kind.Produce)).toHaveLength(3);
  });

  it('a batch that failed after its answer was lost may be in the log: the next batch does not reuse its sequences', async () => {
    const { node, producer } = await setup({ retries: 0 }, 1);
    node.hook = (req) => (req.kind === Kind.Produce && requestsOf(node, Kind.Produce).length === 1 ? 'close-after-handling' : undefined);
    await expect(producer.send('t', { value: 'a' })).rejects.toMatchObject({ code: Errors.NETWORK.code });
    // Had 'b' taken sequence 0 again, the node would have answered it as a duplicate of 'a'
    // and 'b' would have resolved without ever being written.
    await expect(producer.send('t', { value: 'b' })).resolves.toMatchObject({ offset: 1 });
    expect(values(node)).toEqual(['a', 'b']);
  });

  it('a batch that fails after a later one was acknowledged is in the log: a gap after it is the node\'s, reported', async () => {
    const { node, producer } = await setup({ ...fiveRecordBatches, retries: 1, requestTimeoutMs: 50 }, 1);
    node.hook = (req) => {
      if (req.kind !== Kind.Produce) return undefined;
      const n = requestsOf(node, Kind.Produce).length;
      // Batch 1 is written but never answered; batch 2 is acknowledged; batch 1's resend is
      // refused and, out of retries, it fails. The node has it all the same.
      if (n === 1) return 'silent-after-handling';
      if (n === 3) return refuseAll(req, Errors.NOT_LEADER.code, 'NOT_LEADER: moving');
      return undefined;
    };
    const first = await Promise.allSettled(range(10, String).map((_, i) => producer.send('t', record(i))));
    expect(first.map((r) => r.status)).toEqual([...range(5, () => 'rejected'), ...range(5, () => 'fulfilled')]);
    expect(values(node)).toEqual(range(10, recordValue));
    node.forgetProducers();
    // The node lost what it knew: that gap is reported, not taken for one of ours.
    await expect(producer.send('t', record(10))).rejects.toMatchObject({ code: Errors.OUT_OF_ORDER_SEQUENCE.code });
    await expect(producer.send('t', record(11))).resolves.toMatchObject({ offset: 10 });
  });

  it('puts 5 batches of a partition on the wire at once, each in its own request, and never 6', async () => {
    const { node, producer } = await setup(fiveRecordBatches, 1);
    const held: (() => void)[] = [];
    let onWire = 0;
    let onWireMax = 0;
    node.hook = (req) => {
      if (req.kind !== Kind.Produce) return undefined;
      expect(entriesOf(req)).toHaveLength(1);
      onWireMax = Math.max(onWireMax, ++onWire);
      return new Promise<HookAction>((resolve) => held.push(() => (onWire--, resolve(undefined))));
    };
    const sent = producer.sendBatch('t', range(100, String).map((_, i) => record(i))); // 20 batches
    for (let round = 0; round < 4; round++) {
      // Frames cross the in-memory pipe on microtasks: by the time until() sees the fifth,
      // a sixth sent with it has arrived too (and onWireMax would count it).
      await until(() => held.length === 5, `round ${round}: 5 batches on the wire`);
      expect(held.length).toBe(5);
      for (const release of held.splice(0)) release();
    }
    await sent;
    expect(onWireMax).toBe(5);
    expect(values(node)).toEqual(range(100, recordValue));
  });

  it('a retriable error on the first of several batches in flight: the rest are refused OUT_OF_ORDER_SEQUENCE, and all are resent in order', async () => {
    const { node, producer } = await setup(fiveRecordBatches, 1);
    node.hook = (req) => (req.kind === Kind.Produce && requestsOf(node, Kind.Produce).length === 1 ? refuseAll(req, Errors.NOT_LEADER.code, 'NOT_LEADER: moving') : undefined);
    const results = await Promise.all(range(50, String).map((_, i) => producer.send('t', record(i))));
    expect(node.outOfOrderBatches).toBeGreaterThan(0);
    expect(results.map((r) => r.offset)).toEqual(range(50, String).map(Number));
    expect(values(node)).toEqual(range(50, recordValue));
    // Resends go in sequence order: the sequences the node appended only ever rise.
    const appended = node.partition('t', 0)!.batches.map((b) => readBatchHeader(b).baseSequence);
    expect(appended).toEqual([...appended].sort((x, y) => x - y));
  });

  it('a resend refused after later batches were acknowledged holds new batches back, so it stays among the 5 the node remembers', async () => {
    const { node, producer } = await setup(fiveRecordBatches, 1);
    // Batches 1-5 are appended and every answer is lost (requests 1-5). Resent, batch 1 is
    // refused NOT_LEADER (request 6) while 2-5 are acknowledged as duplicates, and refused
    // again (request 11). Had batches 6-9 gone out behind that second resend, the node would
    // have appended them, batch 1 would have fallen out of its last 5, and its next resend
    // would have been refused as a gap.
    node.hook = (req) => {
      if (req.kind !== Kind.Produce) return undefined;
      const n = requestsOf(node, Kind.Produce).length;
      if (n <= 4) return 'silent-after-handling';
      if (n === 5) return 'close-after-handling';
      if (n === 6 || n === 11) return refuseAll(req, Errors.NOT_LEADER.code, 'NOT_LEADER: moving');
      return undefined;
    };
    const results = await Promise.all(range(50, String).map((_, i) => producer.send('t', record(i))));
    expect(results.map((r) => r.offset)).toEqual(range(50, String).map(Number));
    expect(values(node)).toEqual(range(50, recordValue));
    expect(node.duplicateBatches).toBe(5);
    expect(node.outOfOrderBatches).toBe(0);
  });

  it('a real gap (the node lost its producer state): the first unacknowledged batch fails OUT_OF_ORDER_SEQUENCE, later ones go through under a new producer id', async () => {
    const { node, producer } = await setup(fiveRecordBatches, 1);
    await producer.send('t', record(0));
    node.forgetProducers();
    const outcomes = await Promise.all(
      range(15, String).map((_, i) =>
        producer.send('t', record(i + 1)).then(
          (r) => r.offset,
          (err: unknown) => (err as TributaryError).errorName,
        ),
      ),
    );
    // The first batch after the loss (records 1-5) is refused: the node expected sequence 0.
    expect(outcomes.slice(0, 5)).toEqual(range(5, () => 'OUT_OF_ORDER_SEQUENCE'));
    expect(outcomes.slice(5)).toEqual(range(10, (i) => String(i + 1)).map(Number));
    expect(values(node)).toEqual([recordValue(0), ...range(10, (i) => recordValue(i + 6))]);
    expect(requestsOf(node, Kind.InitProducerId)).toHaveLength(2);
    const appended = node.partition('t', 0)!.batches.map((b) => readBatchHeader(b));
    expect(appended.map((h) => [h.producerId, h.baseSequence])).toEqual([
      [1, 0],
      [2, 0],
      [2, 5],
    ]);
  });

  it('a batch refused without appending leaves no gap: the next batch takes its sequences', async () => {
    const { node, producer } = await setup({}, 1);
    node.hook = (req) => (req.kind === Kind.Produce && requestsOf(node, Kind.Produce).length === 1 ? refuseAll(req, Errors.INVALID_RECORD.code, 'INVALID_RECORD: no') : undefined);
    await expect(producer.send('t', { value: 'refused' })).rejects.toMatchObject({ code: Errors.INVALID_RECORD.code });
    await expect(producer.send('t', { value: 'next' })).resolves.toMatchObject({ offset: 0 });
    expect(sentBatches(node).map((b) => b.header.baseSequence)).toEqual([0, 0]);
    expect(node.outOfOrderBatches).toBe(0);
    expect(requestsOf(node, Kind.InitProducerId)).toHaveLength(1);
  });

  it('a batch refused with later ones already sent: only it fails, the later ones go on under a new producer id', async () => {
    const { node, producer } = await setup(fiveRecordBatches, 1);
    node.hook = (req) => (req.kind === Kind.Produce && requestsOf(node, Kind.Produce).length === 1 ? refuseAll(req, Errors.INVALID_RECORD.code, 'INVALID_RECORD: no') : undefined);
    const outcomes = await Promise.all(
      range(20, String).map((_, i) =>
        producer.send('t', record(i)).then(
          (r) => r.offset,
          (err: unknown) => (err as TributaryError).errorName,
        ),
      ),
    );
    expect(outcomes.slice(0, 5)).toEqual(range(5, () => 'INVALID_RECORD'));
    expect(outcomes.slice(5)).toEqual(range(15, String).map(Number));
    expect(values(node)).toEqual(range(15, (i) => recordValue(i + 5)));
    expect(requestsOf(node, Kind.InitProducerId)).toHaveLength(2);
  });

  it('deliveryTimeoutMs bounds retrying: a batch the node keeps refusing fails with its last error', async () => {
    const { node, producer } = await setup({ deliveryTimeoutMs: 100 }, 1);
    node.hook = (req) => (req.kind === Kind.Produce ? refuseAll(req, Errors.NOT_LEADER.code, 'NOT_LEADER: no leader') : undefined);
    const err = (await producer.send('t', { value: 'x' }).catch((e: unknown) => e)) as TributaryError;
    expect(err).toBeInstanceOf(TributaryError);
    expect(err.code).toBe(Errors.NOT_LEADER.code);
    expect(err.message).toContain('deliveryTimeoutMs 100');
    expect(err.message).toContain('no leader');
    expect(requestsOf(node, Kind.Produce).length).toBeGreaterThan(1);
    expect(values(node)).toEqual([]);
  });

  it('deliveryTimeoutMs bounds resending over lost connections: the batch fails with NETWORK, and the producer goes on', async () => {
    const { node, producer } = await setup({ deliveryTimeoutMs: 100 }, 1);
    node.hook = (req) => (req.kind === Kind.Produce ? 'close' : undefined);
    await expect(producer.send('t', { value: 'x' })).rejects.toMatchObject({ code: Errors.NETWORK.code });
    expect(requestsOf(node, Kind.Produce).length).toBeGreaterThan(1);
    node.hook = null;
    // The lost batch was never appended and may have been: the next one follows a gap the
    // producer repairs under a new producer id without failing it.
    await expect(producer.send('t', { value: 'y' })).resolves.toMatchObject({ offset: 0 });
    expect(values(node)).toEqual(['y']);
  });

  it('INVALID_PRODUCER_EPOCH fences the producer: the batch, those waiting and later sends fail with it', async () => {
    const { node, producer } = await setup({ lingerMs: 50 }, 1);
    await producer.send('t', { value: 'before' });
    node.fenceProducer(1);
    const fenced = producer.send('t', { value: 'fenced' });
    await expect(fenced).rejects.toMatchObject({ code: Errors.INVALID_PRODUCER_EPOCH.code });
    const produces = requestsOf(node, Kind.Produce).length;
    await expect(producer.send('t', { value: 'later' })).rejects.toMatchObject({ code: Errors.INVALID_PRODUCER_EPOCH.code });
    expect(requestsOf(node, Kind.Produce)).toHaveLength(produces);
    expect(values(node)).toEqual(['before']);
    await producer.close();
  });

  it('InitProducerId refused: the sends waiting for a producer id fail with the refusal', async () => {
    const { node, producer } = await setup({}, 1);
    node.hook = (req) => (req.kind === Kind.InitProducerId ? { answer: { error: Errors.UNAUTHORIZED.code, message: 'UNAUTHORIZED: not here' } } : undefined);
    await expect(producer.sendBatch('t', [{ value: 'a' }, { value: 'b' }])).rejects.toMatchObject({ code: Errors.UNAUTHORIZED.code });
    expect(requestsOf(node, Kind.Produce)).toHaveLength(0);
  });

  it('acks=0 is not idempotent: batches carry no producer id and none is asked for', async () => {
    const { node, producer } = await setup({ acks: 0 }, 1);
    await producer.sendBatch('t', [{ value: 'a' }, { value: 'b' }]);
    await until(() => values(node).length === 2, 'records appended');
    const [batch] = sentBatches(node);
    expect([batch.header.producerId, batch.header.producerEpoch, batch.header.baseSequence]).toEqual([-1, -1, -1]);
    expect(requestsOf(node, Kind.InitProducerId)).toHaveLength(0);
  });

  it('refuses settings idempotence cannot keep, with INVALID_CONFIG', async () => {
    const { client } = await setup();
    const config = (options: ProducerOptions) => {
      try {
        new Producer(client, options);
        return 'accepted';
      } catch (err) {
        return (err as TributaryError).errorName;
      }
    };
    expect(config({ maxInFlightPerPartition: 6 })).toBe('INVALID_CONFIG');
    expect(config({ idempotent: true, maxInFlightPerPartition: 6 })).toBe('INVALID_CONFIG');
    expect(config({ idempotent: true, acks: 0 })).toBe('INVALID_CONFIG');
    expect(config({ maxInFlightPerPartition: 0 })).toBe('INVALID_CONFIG');
    expect(config({ deliveryTimeoutMs: 0 })).toBe('INVALID_CONFIG');
    expect(config({ maxInFlightPerPartition: 5 })).toBe('accepted');
    expect(config({ idempotent: false, maxInFlightPerPartition: 10 })).toBe('accepted');
    expect(config({ acks: 0, maxInFlightPerPartition: 10 })).toBe('accepted');
  });

  it('seeded faults (connections cut before and after appends, lost answers, refusals, requests handled out of order): every record exactly once, in order per key, at the offset its send resolved with', async () => {
    for (const seed of testSeeds([0x5eed, 7, 2024])) {
      await withSeedAsync(seed, async (rng) => {
        const { node, producer } = await setup({ lingerMs: 1, batchBytes: 300, requestTimeoutMs: 50 }, 4);
        const faults = { lostAnswers: 0, cutBefore: 0, refused: 0, timedOut: 0, late: 0 };
        node.hook = async (req) => {
          if (req.kind !== Kind.Produce) return undefined;
          const r = rng.float();
          // Some requests are handled after later ones, so answers come out of order.
          const lateMs = rng.float() < 0.1 ? rng.int(1, 3) : 0;
          let action: HookAction = undefined;
          if (r < 0.05) action = (faults.lostAnswers++, 'close-after-handling');
          else if (r < 0.08) action = (faults.cutBefore++, 'close');
          else if (r < 0.1) action = (faults.refused++, refuseAll(req, Errors.NOT_LEADER.code, 'NOT_LEADER: moving'));
          // Appended, never answered: the send times out (and the request keeps its place
          // on the connection until the next cut).
          else if (r < 0.11) action = (faults.timedOut++, 'silent-after-handling');
          if (lateMs > 0) {
            faults.late++;
            await new Promise((resolve) => setTimeout(resolve, lateMs));
          }
          return action;
        };
        const KEYS = 30;
        const TOTAL = 3000;
        const perKey = new Array<number>(KEYS).fill(0);
        const sent: { value: string; result: Promise<RecordMetadata> }[] = [];
        for (let i = 0; i < TOTAL; i++) {
          const k = rng.int(0, KEYS - 1);
          const value = `${k}:${perKey[k]++}`;
          sent.push({ value, result: producer.send('t', { key: `key-${k}`, value }) });
          if (i % 500 === 499) await producer.whenWritable();
        }
        const results = await Promise.all(sent.map((s) => s.result));
        expect(faults.lostAnswers, 'no answer was lost: the run would prove nothing').toBeGreaterThan(0);
        expect(faults.cutBefore).toBeGreaterThan(0);
        expect(faults.late).toBeGreaterThan(0);
        expect(node.duplicateBatches, 'no resend was recognised').toBeGreaterThan(0);
        const seen = new Set<string>();
        const nextPerKey = new Array<number>(KEYS).fill(0);
        for (const partition of [0, 1, 2, 3]) {
          for (const v of values(node, partition)) {
            expect(seen.has(v), `duplicate ${v}`).toBe(false);
            seen.add(v);
            const [k, n] = v.split(':').map(Number);
            expect(n, `key ${k} out of order`).toBe(nextPerKey[k]++);
          }
        }
        expect(seen.size).toBe(TOTAL);
        for (let i = 0; i < TOTAL; i++) {
          const { partition, offset } = results[i];
          expect(node.records('t', partition)[offset]?.value?.toString(), `send ${i} resolved with ${partition}/${offset}`).toBe(sent[i].value);
        }
      });
    }
  }, 60_000);
});
