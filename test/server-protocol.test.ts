// The node's request handling over a real WebSocket on loopback: the happy paths, and
// every kind of bad input answered with a clear error or a close with a reason.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { EARLIEST_TIMESTAMP, encodeFrame, Kind, LATEST_TIMESTAMP, RESPONSE } from '../protocol/frames.js';
import { decodeBatch, encodeBatch, splitBatches, OFFSET_CRC, TimestampType } from '../protocol/record-batch.js';
import { CloseCode } from '../protocol/transport.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { RawClient } from './helpers/raw-client.js';
import { tempDir } from './helpers/node-process.js';
import { metricSample } from './helpers/metrics.js';
import { until } from './helpers/until.js';

const FRAME_BYTES_MAX = 256 * 1024;
let broker: Broker;
const dir = tempDir();

beforeAll(async () => {
  broker = await startBroker({
    dataDir: dir.path,
    port: 0,
    logger: silentLogger,
    limits: { frameBytesMax: FRAME_BYTES_MAX, inflightMax: 2, partitionsMax: 64, helloTimeoutMs: 500, fetchBytesMax: 256 * 1024, sendBufferBytesMax: 256 * 1024 },
  });
  const admin = await RawClient.connect(broker.url);
  const created = await admin.request<{ topics: { error: number }[] }>(Kind.CreateTopics, {
    topics: [
      { name: 'events', partitions: 2 },
      { name: 'small', partitions: 1, config: { 'max.message.bytes': 2048 } },
      { name: 'bulk', partitions: 1 },
    ],
  });
  expect(created.topics.map((t) => t.error)).toEqual([0, 0, 0]);
  admin.close();
});

afterAll(async () => {
  await broker?.close();
  dir.remove();
});

function batchOf(values: string[], key?: string) {
  return encodeBatch(values.map((v) => ({ key: key === undefined ? null : Buffer.from(key), value: Buffer.from(v) })));
}

type FetchBody = { partitions: { error: number; highWatermark: number; records: Uint8Array; message?: string }[] };

describe('connection rules', () => {
  it('serves /healthz on the same port', async () => {
    const res = await fetch(`http://127.0.0.1:${broker.port}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', nodeId: broker.nodeId });
    expect((await fetch(`http://127.0.0.1:${broker.port}/nope`)).status).toBe(404);
  });

  it('closes a connection whose first request is not Hello', async () => {
    const c = await RawClient.connect(broker.url, { hello: false });
    c.send(Kind.Metadata, {});
    const closed = await c.closed;
    expect(closed.code).toBe(CloseCode.POLICY_VIOLATION);
    expect(closed.reason).toMatch(/first request must be Hello/);
  });

  it('closes a connection that never says Hello', async () => {
    const c = await RawClient.connect(broker.url, { hello: false });
    const closed = await c.closed;
    expect(closed.code).toBe(CloseCode.POLICY_VIOLATION);
    expect(closed.reason).toMatch(/no Hello within/);
  });

  it('answers an unsupported version and closes', async () => {
    const c = await RawClient.connect(broker.url, { hello: false });
    const id = c.send(Kind.Hello, { version: 99, clientId: 'x' });
    const answer = await c.response(id);
    expect(answer.body.error).toBe(Errors.UNSUPPORTED_VERSION.code);
    expect((await c.closed).code).toBe(CloseCode.POLICY_VIOLATION);
  });

  it('runs nothing pipelined behind a failed Hello', async () => {
    const c = await RawClient.connect(broker.url, { hello: false });
    c.send(Kind.Hello, { version: 99, clientId: 'x' });
    c.send(Kind.CreateTopics, { topics: [{ name: 'sneaky', partitions: 1 }] });
    expect((await c.closed).code).toBe(CloseCode.POLICY_VIOLATION);
    expect(broker.logs.topic('sneaky')).toBeUndefined();
  });

  it('refuses a large first frame before decoding it', async () => {
    const c = await RawClient.connect(broker.url, { hello: false });
    c.sendRaw(encodeFrame(Kind.Hello, 1, { version: 1, clientId: 'x'.repeat(4100) }));
    const closed = await c.closed;
    expect(closed.code).toBe(CloseCode.POLICY_VIOLATION);
    expect(closed.reason).toMatch(/Hello must fit/);
  });

  it('takes only small messages before Hello: a larger one is refused by its declared length', async () => {
    const c = await RawClient.connect(broker.url, { hello: false });
    c.sendRaw(encodeFrame(Kind.Hello, 1, { version: 1, clientId: 'x'.repeat(5000) }));
    expect((await c.closed).code).toBe(CloseCode.TOO_BIG);
  });

  it('survives a client that resets while its upgrade is refused', async () => {
    const { connect } = await import('node:net');
    for (const path of ['/wrong', '/v1/extra']) {
      const socket = connect(broker.port, '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      socket.resetAndDestroy();
    }
    // Asked once the node has let go of both sockets: it went on serving through them.
    await until(() => broker.stats().handshakesInProgress === 0, 'the reset sockets let go');
    expect((await fetch(`http://127.0.0.1:${broker.port}/healthz`)).status).toBe(200);
  });

  it('closes with a reason on bytes that are not a frame', async () => {
    const c = await RawClient.connect(broker.url);
    c.sendRaw(Buffer.from([0xff, 0x00, 0x13, 0x37]));
    const closed = await c.closed;
    expect(closed.code).toBe(CloseCode.PROTOCOL_ERROR);
    expect(closed.reason).toMatch(/malformed frame/);
  });

  it('closes on a text frame', async () => {
    const c = await RawClient.connect(broker.url);
    c.ws.send('hello');
    expect((await c.closed).code).toBe(CloseCode.PROTOCOL_ERROR);
  });

  it('refuses a frame over frameBytesMax before buffering it', async () => {
    const c = await RawClient.connect(broker.url);
    c.sendRaw(Buffer.alloc(FRAME_BYTES_MAX + 1));
    expect((await c.closed).code).toBe(CloseCode.TOO_BIG);
  });

  it('answers an unknown request kind and bad fields, and stays usable', async () => {
    const c = await RawClient.connect(broker.url);
    const id = c.send(77, {});
    const unknown = await c.response(id);
    expect(unknown.kind).toBe(77 | RESPONSE);
    expect(unknown.body.error).toBe(Errors.INVALID_REQUEST.code);
    const bad = await c.request<{ error: number; message: string }>(Kind.Fetch, { partitions: 'all' });
    expect(bad.error).toBe(Errors.INVALID_REQUEST.code);
    expect(bad.message).toMatch(/partitions must be an array/);
    const meta = await c.request<{ topics: { name: string }[] }>(Kind.Metadata, {});
    expect(meta.topics.map((t) => t.name)).toEqual(['bulk', 'events', 'small']);
    c.close();
  });
});

describe('produce and fetch', () => {
  it('appends batches, patches offsets and serves the stored bytes', async () => {
    const c = await RawClient.connect(broker.url);
    const first = batchOf(['a', 'b', 'c'], 'k');
    const second = batchOf(['d'], 'k');
    const r1 = await c.request<{ partitions: { error: number; baseOffset: number }[] }>(Kind.Produce, {
      acks: 1,
      timeoutMs: 5000,
      partitions: [{ topic: 'events', partition: 0, records: first }, { topic: 'events', partition: 0, records: second }],
    });
    expect(r1.partitions.map((p) => [p.error, p.baseOffset])).toEqual([[0, 0], [0, 3]]);
    const f = await c.request<FetchBody>(Kind.Fetch, { maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, partitions: [{ topic: 'events', partition: 0, fetchOffset: 1, maxBytes: 1 << 20 }] });
    const p = f.partitions[0];
    expect(p.error).toBe(0);
    expect(p.highWatermark).toBe(4);
    const batches = splitBatches(Buffer.from(p.records));
    expect(batches).toHaveLength(2);
    // Stored bytes are the sent bytes but for the patched base offset (outside the CRC).
    // Stored bytes are the sent bytes but for base offset and leader epoch, patched in place.
    expect(batches[0].subarray(16)).toEqual(first.subarray(16));
    expect(batches[1].subarray(16)).toEqual(second.subarray(16));
    expect(batches[1].readInt32BE(4)).toBe(3);
    expect(batches[1].readInt32BE(12)).toBe(0);
    const values = batches.flatMap((b) => decodeBatch(b).records.map((r) => [r.offset, r.value!.toString()]));
    expect(values).toEqual([[0, 'a'], [1, 'b'], [2, 'c'], [3, 'd']]);
    c.close();
  });

  it('answers per partition: unknown topic, corrupt batch, batch too large', async () => {
    const c = await RawClient.connect(broker.url);
    const corrupt = batchOf(['x']);
    corrupt[OFFSET_CRC] ^= 0xff;
    const r = await c.request<{ partitions: { error: number; message?: string }[] }>(Kind.Produce, {
      acks: 1,
      timeoutMs: 5000,
      partitions: [
        { topic: 'nope', partition: 0, records: batchOf(['x']) },
        { topic: 'events', partition: 9, records: batchOf(['x']) },
        { topic: 'events', partition: 1, records: corrupt },
        { topic: 'small', partition: 0, records: batchOf(['y'.repeat(4096)]) },
        { topic: 'events', partition: 1, records: batchOf(['ok']) },
      ],
    });
    expect(r.partitions.map((p) => p.error)).toEqual([
      Errors.UNKNOWN_TOPIC.code,
      Errors.UNKNOWN_TOPIC.code,
      Errors.CORRUPT_BATCH.code,
      Errors.BATCH_TOO_LARGE.code,
      0,
    ]);
    expect(r.partitions[2].message).toMatch(/CRC/);
    // Nothing of the refused batches was stored: the good one got offset 0.
    const offsets = await c.request<{ partitions: { offset: number }[] }>(Kind.ListOffsets, {
      partitions: [{ topic: 'events', partition: 1, timestamp: LATEST_TIMESTAMP }, { topic: 'small', partition: 0, timestamp: LATEST_TIMESTAMP }],
    });
    expect(offsets.partitions.map((p) => p.offset)).toEqual([1, 0]);
    c.close();
  });

  it('refuses transactional, control and log-append-time batches from clients', async () => {
    const c = await RawClient.connect(broker.url);
    const transactional = encodeBatch([{ value: Buffer.from('t') }], { isTransactional: true, producerId: 1, producerEpoch: 0, baseSequence: 0 });
    const appendTime = encodeBatch([{ value: Buffer.from('a') }], { timestampType: TimestampType.LogAppendTime });
    const r = await c.request<{ partitions: { error: number; message: string }[] }>(Kind.Produce, {
      acks: 1,
      timeoutMs: 5000,
      partitions: [{ topic: 'small', partition: 0, records: transactional }, { topic: 'small', partition: 0, records: appendTime }],
    });
    expect(r.partitions.map((p) => p.error)).toEqual([Errors.INVALID_REQUEST.code, Errors.INVALID_REQUEST.code]);
    expect(r.partitions[0].message).toMatch(/transactional/);
    c.close();
  });

  it('CreateTopics answers each entry, a bad one among good ones included', async () => {
    const c = await RawClient.connect(broker.url);
    const r = await c.request<{ topics: { name: string; error: number }[] }>(Kind.CreateTopics, {
      topics: [{ name: 'fine-1', partitions: 1 }, { name: 42, partitions: 1 }, { name: 'bad name!', partitions: 1 }, { name: 'fine-2', partitions: 0 }],
    });
    expect(r.topics.map((t) => t.error)).toEqual([0, Errors.INVALID_REQUEST.code, Errors.INVALID_TOPIC.code, Errors.INVALID_PARTITIONS.code]);
    await c.request(Kind.DeleteTopics, { topics: ['fine-1'] });
    // partitionsMax (64 here) bounds the partitions of all topics together.
    const big = await c.request<{ topics: { error: number; message: string }[] }>(Kind.CreateTopics, { topics: [{ name: 'too-big', partitions: 61 }] });
    expect(big.topics[0].error).toBe(Errors.INVALID_PARTITIONS.code);
    expect(big.topics[0].message).toMatch(/limit of 64/);
    expect(broker.logs.topic('too-big')).toBeUndefined();
    c.close();
  });

  it('a fetch with minBytes waits until that many bytes are there', async () => {
    const consumer = await RawClient.connect(broker.url);
    const producer = await RawClient.connect(broker.url);
    const end = (await consumer.request<{ partitions: { offset: number }[] }>(Kind.ListOffsets, { partitions: [{ topic: 'events', partition: 1, timestamp: LATEST_TIMESTAMP }] })).partitions[0].offset;
    const small = batchOf(['x']);
    const pending = consumer.request<FetchBody>(Kind.Fetch, { maxWaitMs: 20_000, minBytes: small.length * 2 + 1, maxBytes: 1 << 20, partitions: [{ topic: 'events', partition: 1, fetchOffset: end, maxBytes: 1 << 20 }] });
    let answered = false;
    void pending.then(() => (answered = true));
    await until(() => broker.stats().fetchesWaiting === 1, '1 parked fetch');
    for (let i = 0; i < 2; i++) await producer.request(Kind.Produce, { acks: 1, timeoutMs: 5000, partitions: [{ topic: 'events', partition: 1, records: batchOf(['x']) }] });
    await producer.request(Kind.Metadata, {});
    expect(answered).toBe(false);
    await producer.request(Kind.Produce, { acks: 1, timeoutMs: 5000, partitions: [{ topic: 'events', partition: 1, records: batchOf(['x']) }] });
    const got = await pending;
    expect(splitBatches(Buffer.from(got.partitions[0].records))).toHaveLength(3);
    consumer.close();
    producer.close();
  });

  it('acks=0 gets no answer, and the batch is stored', async () => {
    const c = await RawClient.connect(broker.url);
    const silent = c.send(Kind.Produce, { acks: 0, timeoutMs: 5000, partitions: [{ topic: 'small', partition: 0, records: batchOf(['quiet']) }] });
    let answered = false;
    void c.response(silent).then(
      () => (answered = true),
      () => {}, // rejected when the client closes below, as it should be: never answered
    );
    const f = await c.request<FetchBody>(Kind.Fetch, { maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, partitions: [{ topic: 'small', partition: 0, fetchOffset: 0, maxBytes: 1 << 20 }] });
    expect(decodeBatch(Buffer.from(f.partitions[0].records)).records[0].value!.toString()).toBe('quiet');
    expect(answered).toBe(false);
    c.close();
  });

  it('a long-polling fetch is answered when data arrives', async () => {
    const consumer = await RawClient.connect(broker.url);
    const producer = await RawClient.connect(broker.url);
    const end = (await consumer.request<{ partitions: { offset: number }[] }>(Kind.ListOffsets, { partitions: [{ topic: 'events', partition: 1, timestamp: LATEST_TIMESTAMP }] })).partitions[0].offset;
    const pending = consumer.request<FetchBody>(Kind.Fetch, { maxWaitMs: 20_000, minBytes: 1, maxBytes: 1 << 20, partitions: [{ topic: 'events', partition: 1, fetchOffset: end, maxBytes: 1 << 20 }] });
    await until(() => broker.stats().fetchesWaiting === 1, '1 parked fetch');
    await producer.request(Kind.Produce, { acks: 1, timeoutMs: 5000, partitions: [{ topic: 'events', partition: 1, records: batchOf(['wake']) }] });
    const got = await pending;
    expect(decodeBatch(Buffer.from(got.partitions[0].records)).records.map((r) => r.value!.toString())).toEqual(['wake']);
    consumer.close();
    producer.close();
  });

  it('ListOffsets: earliest, latest, by time, and out of range fetches', async () => {
    const c = await RawClient.connect(broker.url);
    const t0 = 1_700_000_000_000;
    const timed = encodeBatch([0, 10, 20].map((d) => ({ value: Buffer.from(`t${d}`), timestamp: t0 + d })));
    await c.request(Kind.Produce, { acks: 1, timeoutMs: 5000, partitions: [{ topic: 'bulk', partition: 0, records: timed }] });
    const r = await c.request<{ partitions: { error: number; offset: number }[] }>(Kind.ListOffsets, {
      partitions: [
        { topic: 'bulk', partition: 0, timestamp: EARLIEST_TIMESTAMP },
        { topic: 'bulk', partition: 0, timestamp: LATEST_TIMESTAMP },
        { topic: 'bulk', partition: 0, timestamp: t0 + 5 },
        { topic: 'bulk', partition: 0, timestamp: t0 + 99 },
        { topic: 'nope', partition: 0, timestamp: LATEST_TIMESTAMP },
      ],
    });
    expect(r.partitions.map((p) => [p.error, p.offset])).toEqual([[0, 0], [0, 3], [0, 1], [0, -1], [Errors.UNKNOWN_TOPIC.code, -1]]);
    const f = await c.request<FetchBody>(Kind.Fetch, { maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, partitions: [{ topic: 'bulk', partition: 0, fetchOffset: 99, maxBytes: 1 << 20 }] });
    expect(f.partitions[0].error).toBe(Errors.OFFSET_OUT_OF_RANGE.code);
    c.close();
  });
});

describe('the data folder', () => {
  it('is taken by one node at a time', async () => {
    await expect(startBroker({ dataDir: dir.path, port: 0, logger: silentLogger })).rejects.toThrow(/already in use/);
  });

  it('refuses bad topic defaults at start, naming the key', async () => {
    const other = tempDir();
    try {
      await expect(startBroker({ dataDir: other.path, port: 0, logger: silentLogger, topicDefaults: { 'segment.bytez': 1 } })).rejects.toThrow(/segment\.bytez/);
    } finally {
      other.remove();
    }
  });
});

describe('limits that protect the node', () => {
  it('stops reading a connection at inflightMax and resumes as requests finish', async () => {
    const c = await RawClient.connect(broker.url);
    const producer = await RawClient.connect(broker.url);
    const end = (await c.request<{ partitions: { offset: number }[] }>(Kind.ListOffsets, { partitions: [{ topic: 'events', partition: 0, timestamp: LATEST_TIMESTAMP }] })).partitions[0].offset;
    const order: string[] = [];
    const longPoll = { maxWaitMs: 20_000, minBytes: 1, maxBytes: 1 << 20, partitions: [{ topic: 'events', partition: 0, fetchOffset: end, maxBytes: 1 << 20 }] };
    // inflightMax is 2: two long polls fill the connection, so Metadata is not even read.
    const f1 = c.request(Kind.Fetch, longPoll).then(() => order.push('fetch'));
    const f2 = c.request(Kind.Fetch, longPoll).then(() => order.push('fetch'));
    const m = c.request(Kind.Metadata, {}).then(() => order.push('metadata'));
    await until(() => broker.stats().fetchesWaiting === 2, '2 parked fetches');
    // A round trip on another connection gives the node every chance to answer Metadata.
    await producer.request(Kind.Metadata, {});
    expect(order).toEqual([]);
    await producer.request(Kind.Produce, { acks: 1, timeoutMs: 5000, partitions: [{ topic: 'events', partition: 0, records: batchOf(['go']) }] });
    await Promise.all([f1, f2, m]);
    // Metadata was read only once a fetch had finished and freed its slot.
    expect(order[0]).toBe('fetch');
    expect(order.sort()).toEqual(['fetch', 'fetch', 'metadata']);
    c.close();
    producer.close();
  });

  it('a consumer that does not read cannot make the node buffer without bound', async () => {
    const producer = await RawClient.connect(broker.url);
    const value = 'v'.repeat(1000);
    for (let i = 0; i < 40; i++) {
      await producer.request(Kind.Produce, { acks: 1, timeoutMs: 5000, partitions: [{ topic: 'bulk', partition: 0, records: batchOf(Array(100).fill(value)) }] });
    }
    const slow = await RawClient.connect(broker.url);
    const held = 'tributary_limits_reached_total{limit="sendBufferBytesMax"}';
    const heldBefore = (await metricSample(broker.port, held)) || 0;
    // Stop reading the socket: the kernel buffers fill, then the node's own queue.
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const fetchBody = (offset: number) => ({ maxWaitMs: 0, minBytes: 0, maxBytes: 256 * 1024, partitions: [{ topic: 'bulk', partition: 0, fetchOffset: offset, maxBytes: 256 * 1024 }] });
    const answers: Promise<unknown>[] = [];
    for (let i = 0; i < 60; i++) answers.push(slow.request(Kind.Fetch, fetchBody((i * 100) % 4000)));
    // The node stops reading the connection once its queue is full: from then on it neither
    // takes a request nor answers one until the client reads, so what it holds now is all
    // it will hold.
    await until(async () => (await metricSample(broker.port, held)) > heldBefore, 'the node to stop reading the slow connection', { intervalMs: 20 });
    // Limit plus one response in progress (each at most fetchBytesMax plus framing).
    expect(broker.stats().sendBufferedBytes).toBeLessThanOrEqual(256 * 1024 + 256 * 1024 + 64 * 1024);
    expect(broker.stats().requestsInFlight).toBeGreaterThan(0);
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    await Promise.all(answers);
    slow.close();
    producer.close();
  });
});
