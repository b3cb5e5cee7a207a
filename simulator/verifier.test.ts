// The verifier: the compact sequence set, the ledger's accounting fed by hand (re-deliveries
// against duplicates, order by offset), and the whole Verifier against a real node in-process:
// a clean run, a duplicate in the log, an acknowledged event never written, two events of a
// device written out of order, and a node restart that makes the group read again from its
// last commit, which must not count as duplicates. Waits are bounded; nothing asserts on time.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { cborEncode, connect, type Connection, type Producer } from '../devices/index.js';
import { tempDir } from '../test/helpers/node-process.js';
import type { SimEvent } from './types.js';
import { EventLedger, SEQUENCE_SPAN_MAX, SequenceSet, Verifier, type LedgerRecord } from './verifier.js';
import { until } from '../test/helpers/until.js';

function event(d: string, s: number, t = Date.now()): SimEvent {
  return { d, s, t, k: 'temperature', p: { celsius: 20 + s / 10 } };
}

describe('SequenceSet', () => {
  it('adds, answers membership, and says when a sequence was already there', () => {
    const set = new SequenceSet();
    expect(set.has(0)).toBe(false);
    expect(set.add(0)).toBe(true);
    expect(set.add(0)).toBe(false);
    expect(set.add(31)).toBe(true);
    expect(set.add(32)).toBe(true);
    expect(set.add(1000)).toBe(true);
    expect([0, 31, 32, 1000].every((s) => set.has(s))).toBe(true);
    expect([1, 30, 33, 999, 1001, 5000].some((s) => set.has(s))).toBe(false);
    expect(set.size).toBe(4);
    expect(set.max).toBe(1000);
  });

  it('drops full words at the front, so a long contiguous run holds a few words', () => {
    const set = new SequenceSet();
    let added = 0;
    for (let s = 0; s < 100_000; s++) if (set.add(s)) added++;
    expect(added).toBe(100_000);
    expect(set.size).toBe(100_000);
    expect(set.heldWords).toBeLessThanOrEqual(4);
    // Below the stored part everything is present, and adding there again is no change.
    expect(set.has(0)).toBe(true);
    expect(set.add(5)).toBe(false);
    expect(set.has(100_000)).toBe(false);
    expect(set.size).toBe(100_000);
  });

  it('keeps a hole while the prefix moves past other words', () => {
    const set = new SequenceSet();
    for (let s = 0; s < 10_000; s++) if (s !== 40) set.add(s);
    expect(set.has(40)).toBe(false);
    expect(set.has(39)).toBe(true);
    expect(set.size).toBe(9_999);
    expect(set.add(40)).toBe(true);
    expect(set.size).toBe(10_000);
  });

  it('counts and names the difference of two sets, word by word', () => {
    const acked = new SequenceSet();
    const seen = new SequenceSet();
    for (let s = 0; s < 5_000; s++) acked.add(s);
    for (let s = 0; s < 5_000; s++) if (s % 1000 !== 7) seen.add(s);
    seen.add(6_000); // read, never acknowledged
    expect(acked.difference(seen, 20)).toEqual({ count: 5, examples: [7, 1007, 2007, 3007, 4007] });
    expect(acked.difference(seen, 2).examples).toEqual([7, 1007]);
    expect(seen.difference(acked, 20)).toEqual({ count: 1, examples: [6_000] });
    expect(new SequenceSet().difference(acked, 20)).toEqual({ count: 0, examples: [] });
  });

  it('refuses sequences that are not int32s from 0, or too far past the prefix', () => {
    const set = new SequenceSet();
    for (const bad of [-1, 1.5, 2 ** 31, Number.NaN]) expect(() => set.add(bad)).toThrow(RangeError);
    expect(() => set.add(SEQUENCE_SPAN_MAX + 64)).toThrow(RangeError);
    expect(set.size).toBe(0);
    expect(set.add(SEQUENCE_SPAN_MAX - 1)).toBe(true);
  });
});

describe('EventLedger', () => {
  const at = (partition: number, offset: number, e: SimEvent): LedgerRecord => ({ topic: 't', partition, offset, value: cborEncode(e) });

  it('a re-read at an offset already read is a re-delivery; the same event at a new offset is a duplicate', () => {
    const ledger = new EventLedger();
    for (let s = 0; s < 4; s++) ledger.noteAcked('a', s);
    ledger.ingest([0, 1, 2].map((s) => at(0, s, event('a', s))), Date.now());
    // The member rejoined and starts again at the last commit, offset 1.
    ledger.ingest([1, 2].map((s) => at(0, s, event('a', s))), Date.now());
    expect(ledger.redelivered).toBe(2);
    // A producer resend without idempotence: sequence 2 again at offset 3, then 3.
    ledger.ingest([at(0, 3, event('a', 2)), at(0, 4, event('a', 3))], Date.now());
    const v = ledger.verdict();
    expect(v).toMatchObject({ lost: 0, duplicated: 1, outOfOrder: 0, acked: 4, read: 4, ok: false });
    expect(v.examples.duplicated).toEqual(['a 2']);
  });

  it('order is by offset within the device: a lower sequence after a higher one is out of order', () => {
    const ledger = new EventLedger();
    const seqs = [0, 1, 3, 2, 4];
    ledger.ingest(seqs.map((s, offset) => at(1, offset, event('b', s))), Date.now());
    // Another device on another partition is not compared with this one.
    ledger.ingest([at(2, 0, event('c', 9)), at(2, 1, event('c', 10))], Date.now());
    const v = ledger.verdict();
    expect(v).toMatchObject({ outOfOrder: 1, duplicated: 0, lost: 0, unackedSeen: 7, read: 7, ok: false });
    expect(v.examples.outOfOrder).toEqual(['b 2']);
  });

  it('counts lost per device with examples, waits on what is pending, and skips records that are not events', () => {
    const ledger = new EventLedger();
    for (let s = 0; s < 3; s++) ledger.noteAcked('d', s);
    expect(ledger.pending).toBe(3);
    ledger.ingest([at(0, 0, event('d', 0)), { topic: 't', partition: 0, offset: 1, value: Buffer.from('not cbor of an event') }], Date.now());
    // An ack that comes after its event was read does not count as pending.
    ledger.ingest([at(0, 2, event('d', 5))], Date.now());
    ledger.noteAcked('d', 5);
    expect(ledger.pending).toBe(2);
    expect(ledger.malformed).toBe(1);
    const v = ledger.verdict();
    expect(v).toMatchObject({ lost: 2, acked: 4, read: 2, ok: false });
    expect(v.examples.lost).toEqual(['d 1', 'd 2']);
  });

  it('knows when every partition is read up to given log end offsets, re-reads and non-events included', () => {
    const ledger = new EventLedger();
    const topic = 't';
    expect(ledger.readUpTo(topic, [{ partition: 0, logEndOffset: 0 }, { partition: 1, logEndOffset: 0 }])).toBe(true);
    ledger.ingest([0, 1, 2].map((s) => at(0, s, event('a', s))), Date.now());
    ledger.ingest([{ topic, partition: 0, offset: 3, value: Buffer.from('not an event') }], Date.now());
    expect(ledger.readUpTo(topic, [{ partition: 0, logEndOffset: 4 }])).toBe(true);
    expect(ledger.readUpTo(topic, [{ partition: 0, logEndOffset: 5 }])).toBe(false);
    expect(ledger.readUpTo(topic, [{ partition: 0, logEndOffset: 4 }, { partition: 1, logEndOffset: 1 }])).toBe(false);
    expect(ledger.readUpTo('other', [{ partition: 0, logEndOffset: 1 }])).toBe(false);
  });

  it('samples the events read since the previous sample, with their latency', () => {
    const ledger = new EventLedger();
    const now = 1_000_000;
    ledger.ingest([at(0, 0, event('e', 0, now - 10)), at(0, 1, event('e', 1, now - 30))], now);
    const first = ledger.sample();
    expect(first.read).toBe(2);
    expect(first.latency.count).toBe(2);
    // HdrHistogram at 3 significant digits: within 0.1%.
    expect(first.latency.max).toBeCloseTo(30, 1);
    expect(first.latency.p50).toBeCloseTo(10, 1);
    expect(ledger.sample()).toEqual({ read: 0, latency: { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 } });
    expect(ledger.latencyTotal().count).toBe(2);
  });

  it('counts latencies apart from the moment every device is connected until the load ends', () => {
    const ledger = new EventLedger();
    const now = 1_000_000;
    ledger.ingest([at(0, 0, event('e', 0, now - 400))], now);
    expect(ledger.latencyAllConnected()).toBeNull();
    ledger.startAllConnected();
    ledger.ingest([at(0, 1, event('e', 1, now - 5)), at(0, 2, event('e', 2, now - 7))], now);
    // A second call keeps what was counted.
    ledger.startAllConnected();
    ledger.endAllConnected();
    ledger.ingest([at(0, 3, event('e', 3, now - 900))], now);
    const all = ledger.latencyAllConnected();
    expect(all?.count).toBe(2);
    expect(all?.max).toBeCloseTo(7, 1);
    expect(ledger.latencyTotal().count).toBe(4);
    expect(ledger.latencyTotal().max).toBeCloseTo(900, 0);
  });
});

describe('Verifier against a node', () => {
  const dir = tempDir();
  let broker: Broker;
  let tb: Connection;
  let topics = 0;

  beforeAll(async () => {
    broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger, groupSessionTimeoutMs: 2000, groupHeartbeatIntervalMs: 50 });
    tb = await connect(broker.url, { reconnect: { initialMs: 20, maxMs: 200 } });
  });

  afterAll(async () => {
    await tb?.close();
    await broker?.close();
    dir.remove();
  });

  async function freshTopic(): Promise<string> {
    const topic = `sim${++topics}`;
    await tb.admin().createTopic(topic, { partitions: 3 });
    return topic;
  }

  /** Sends each event (key = device) and notes its ack. */
  async function sendAll(producer: Producer, topic: string, verifier: Verifier, events: SimEvent[]): Promise<void> {
    await Promise.all(events.map((e) => producer.send(topic, { key: e.d, value: e }).then(() => verifier.noteAcked(e.d, e.s))));
    await producer.flush();
  }

  function fleet(devices: number, perDevice: number, from = 0): SimEvent[] {
    const out: SimEvent[] = [];
    for (let s = from; s < from + perDevice; s++) for (let d = 0; d < devices; d++) out.push(event(`dev-${d}`, s));
    return out;
  }

  it('a clean run: every acknowledged event read once, in order', async () => {
    const topic = await freshTopic();
    const verifier = new Verifier({ url: broker.url, topic, consumers: 2 });
    await verifier.start();
    const producer = tb.producer({ lingerMs: 2 });
    await sendAll(producer, topic, verifier, fleet(8, 40));
    const v = await verifier.finish({ timeoutMs: 20_000 });
    expect(v).toEqual({ lost: 0, duplicated: 0, outOfOrder: 0, unackedSeen: 0, acked: 320, read: 320, examples: { lost: [], duplicated: [], outOfOrder: [] }, ok: true });
    expect(verifier.malformed).toBe(0);
    await producer.close();
  });

  it('the same event written twice is one duplicate and fails the run', async () => {
    const topic = await freshTopic();
    const verifier = new Verifier({ url: broker.url, topic });
    await verifier.start();
    const producer = tb.producer({ idempotent: false, lingerMs: 0 });
    const events = fleet(3, 10);
    await sendAll(producer, topic, verifier, events);
    // A resend the way a non-idempotent producer makes one: the same bytes again.
    const again = events.find((e) => e.d === 'dev-1' && e.s === 4) as SimEvent;
    await producer.send(topic, { key: again.d, value: again });
    const v = await verifier.finish({ timeoutMs: 20_000 });
    expect(v).toMatchObject({ lost: 0, duplicated: 1, outOfOrder: 0, acked: 30, read: 30, ok: false });
    expect(v.examples.duplicated).toEqual(['dev-1 4']);
    await producer.close();
  });

  it('an acknowledged event that is not in the log is lost', async () => {
    const topic = await freshTopic();
    const verifier = new Verifier({ url: broker.url, topic });
    await verifier.start();
    const producer = tb.producer({ lingerMs: 2 });
    await sendAll(producer, topic, verifier, fleet(2, 5));
    verifier.noteAcked('dev-0', 5); // acknowledged, never written
    const v = await verifier.finish({ timeoutMs: 2_000 });
    expect(v).toMatchObject({ lost: 1, duplicated: 0, outOfOrder: 0, acked: 11, read: 10, ok: false });
    expect(v.examples.lost).toEqual(['dev-0 5']);
    await producer.close();
  });

  it('a device whose sequence 5 is in the log before 4 is one event out of order', async () => {
    const topic = await freshTopic();
    const verifier = new Verifier({ url: broker.url, topic, consumers: 1 });
    await verifier.start();
    const producer = tb.producer({ lingerMs: 0 });
    // One at a time, so the log's order is the order of the sends.
    for (const s of [0, 1, 2, 3, 5, 4, 6]) {
      await producer.send(topic, { key: 'dev-x', value: event('dev-x', s) });
      verifier.noteAcked('dev-x', s);
    }
    const v = await verifier.finish({ timeoutMs: 20_000 });
    expect(v).toMatchObject({ lost: 0, duplicated: 0, outOfOrder: 1, acked: 7, read: 7, ok: false });
    expect(v.examples.outOfOrder).toEqual(['dev-x 4']);
    await producer.close();
  });

  it('a node restart makes the group read again from its last commit: re-deliveries, not duplicates', async () => {
    const topic = await freshTopic();
    // No commit before the restart, so the members must start again at the beginning.
    const verifier = new Verifier({ url: broker.url, topic, consumers: 2, autoCommitIntervalMs: 600_000 });
    await verifier.start();
    const producer = tb.producer({ lingerMs: 2 });
    await sendAll(producer, topic, verifier, fleet(6, 20));
    let read = 0;
    await until(() => (read += verifier.sample().read) >= 120, 'the 120 records read', { intervalMs: 20 });
    expect(read).toBe(120);

    const { port } = broker;
    await broker.close();
    broker = await startBroker({ dataDir: dir.path, port, logger: silentLogger, groupSessionTimeoutMs: 2000, groupHeartbeatIntervalMs: 50 });
    await sendAll(producer, topic, verifier, fleet(6, 20, 20));
    // Every ack may be matched before the members have rejoined and re-read: wait (bounded)
    // for the re-reads, so that they are in the verdict.
    await until(() => verifier.redelivered >= 120, 'the first 120 records read again', { intervalMs: 20 });
    const v = await verifier.finish({ timeoutMs: 30_000 });
    expect(v).toEqual({ lost: 0, duplicated: 0, outOfOrder: 0, unackedSeen: 0, acked: 240, read: 240, examples: { lost: [], duplicated: [], outOfOrder: [] }, ok: true });
    // The members did read the first half again (else this test shows nothing).
    expect(verifier.redelivered).toBeGreaterThanOrEqual(120);
    await producer.close();
  });
});
