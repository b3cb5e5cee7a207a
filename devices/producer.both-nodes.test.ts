// The Producer's behaviour that a real node can show, run against the FakeNode and a real
// node alike (test/helpers/sdk-nodes.ts): offsets and partitions of sends, order per key,
// batching as stored, compression, acks, flush and close, timestamps and headers, and the
// idempotent producer's stamps. What needs faults injected (refused, lost or held answers,
// cut connections, lost producer state) stays in producer.test.ts and
// producer-idempotence.test.ts, against the FakeNode alone; so do the checks of what goes
// on the wire request by request, which only the FakeNode sees.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { Errors, TributaryError } from '../protocol/errors.js';
import { partitionForKey } from '../protocol/partitioner.js';
import { Compression, readBatchHeader } from '../protocol/record-batch.js';
import { SDK_NODES, type SdkNode } from '../test/helpers/sdk-nodes.js';
import { Producer, type ProducerOptions } from './producer.js';
import { cborDecode } from './serde.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const range = <T>(n: number, f: (i: number) => T) => Array.from({ length: n }, (_, i) => f(i));

describe.each(SDK_NODES)('Producer against the %s', (_name, start) => {
  /** A node with topic 't' of `partitions`, and a producer on its own client. */
  async function setup(options: ProducerOptions = {}, partitions = 3): Promise<{ node: SdkNode; producer: Producer }> {
    const node = await start();
    closers.push(() => node.close());
    await node.createTopic('t', partitions);
    const producer = new Producer(await node.connect(), options);
    return { node, producer };
  }

  it('resolves a send with its partition and offset, values encoded by type', async () => {
    const { node, producer } = await setup({}, 1);
    const a = await producer.send('t', { value: 'héllo' });
    const b = await producer.send('t', { value: Buffer.from([0, 1, 2]) });
    const c = await producer.send('t', { key: 'k', value: { temp: 21.5, ok: true } });
    expect([a, b, c]).toEqual([
      { topic: 't', partition: 0, offset: 0 },
      { topic: 't', partition: 0, offset: 1 },
      { topic: 't', partition: 0, offset: 2 },
    ]);
    const stored = node.records('t', 0);
    expect(stored[0].value!.toString('utf8')).toBe('héllo');
    expect(stored[0].headers).toEqual([]);
    expect([...stored[1].value!]).toEqual([0, 1, 2]);
    expect(cborDecode(stored[2].value!)).toEqual({ temp: 21.5, ok: true });
    expect(stored[2].headers.map(([n, v]) => [n, Buffer.from(v!).toString()])).toEqual([['content-type', 'application/cbor']]);
  });

  it('puts keyed records on partitionForKey(key) and keeps their order per key', async () => {
    const { node, producer } = await setup({ lingerMs: 1, batchBytes: 512 });
    const keys = ['dev-1', 'dev-2', 'dev-3', 'dev-4', 'dev-5'];
    const results = await Promise.all(range(500, (i) => producer.send('t', { key: keys[i % keys.length], value: `${keys[i % keys.length]}:${i}` })));
    results.forEach((r, i) => expect(r.partition).toBe(partitionForKey(Buffer.from(keys[i % keys.length]), 3)));
    for (const key of keys) {
      const p = partitionForKey(Buffer.from(key), 3);
      const seq = node.records('t', p).filter((r) => r.key!.toString() === key).map((r) => Number(r.value!.toString().split(':')[1]));
      expect(seq).toEqual([...seq].sort((x, y) => x - y));
      expect(seq).toHaveLength(100);
    }
  });

  it('seals a batch at batchBytes and sends keyless records stickily in full batches', async () => {
    const { node, producer } = await setup({ batchBytes: 4096, lingerMs: 100 });
    const value = Buffer.alloc(100, 7);
    await producer.sendBatch('t', range(200, () => ({ value })));
    // Both nodes store each batch as it was sent.
    const batches = [0, 1, 2].flatMap((p) => node.batches('t', p).map((b) => readBatchHeader(b)));
    // 200 records of ~124 estimated bytes at 4096 per batch: several batches, all full but the last ones.
    expect(batches.length).toBeGreaterThanOrEqual(6);
    for (const b of batches) expect(b.batchLength).toBeLessThanOrEqual(4096);
    expect(batches.reduce((a, b) => a + b.recordCount, 0)).toBe(200);
    expect(batches.filter((b) => b.recordCount >= 30).length).toBeGreaterThanOrEqual(batches.length - 3);
  });

  it('sends a lone record after lingerMs without flush', async () => {
    const { node, producer } = await setup({ lingerMs: 20 });
    const r = await producer.send('t', { value: 'x', partition: 2 });
    expect(r).toEqual({ topic: 't', partition: 2, offset: 0 });
    expect(node.records('t', 2)).toHaveLength(1);
  });

  it('rejects sends to an unknown topic with UNKNOWN_TOPIC naming it', async () => {
    const { producer } = await setup();
    const err = (await producer.send('nope', { value: 'x' }).catch((e: unknown) => e)) as TributaryError;
    expect(err).toBeInstanceOf(TributaryError);
    expect(err.code).toBe(Errors.UNKNOWN_TOPIC.code);
    expect(err.message).toContain("'nope'");
  });

  it('rejects a partition the topic does not have', async () => {
    const { producer } = await setup({}, 2);
    await expect(producer.send('t', { value: 'x', partition: 5 })).rejects.toMatchObject({ code: Errors.UNKNOWN_TOPIC.code });
  });

  it('keeps first-in first-out order through a long queue that never empties', async () => {
    const { node, producer } = await setup({ bufferBytesMax: 4096, batchBytes: 1024, lingerMs: 0 }, 1);
    const total = 5000; // the head passes thousands of entries before the queue first empties
    const sends = range(total, (i) => producer.send('t', { value: `v${i}` }));
    let queuedMax = producer.queuedSends;
    const results = await Promise.all(sends.map((p) => p.then((r) => ((queuedMax = Math.max(queuedMax, producer.queuedSends)), r))));
    expect(queuedMax).toBeGreaterThan(2048);
    expect(results.map((r) => r.offset)).toEqual(range(total, (i) => i));
    expect(node.records('t', 0).map((r) => r.value!.toString())).toEqual(range(total, (i) => `v${i}`));
    expect(producer.queuedSends).toBe(0);
  });

  it('acks=0 resolves with offset -1 and the records still arrive, in batches without a producer id', async () => {
    const { node, producer } = await setup({ acks: 0 }, 1);
    const results = await producer.sendBatch('t', [{ value: 'a' }, { value: 'b' }]);
    expect(results).toEqual([
      { topic: 't', partition: 0, offset: -1 },
      { topic: 't', partition: 0, offset: -1 },
    ]);
    await vi.waitFor(() => expect(node.records('t', 0).map((r) => r.value!.toString())).toEqual(['a', 'b']), { timeout: 10_000, interval: 2 });
    // acks=0 is not idempotent: no answer could say which batch the node has.
    const [h] = node.batches('t', 0).map((b) => readBatchHeader(b));
    expect([h.producerId, h.producerEpoch, h.baseSequence]).toEqual([-1, -1, -1]);
  });

  it("acks 'all' is acknowledged by a node with no replicas", async () => {
    const { node, producer } = await setup({ acks: 'all' }, 1);
    await expect(producer.send('t', { value: 'a' })).resolves.toMatchObject({ offset: 0 });
    expect(node.records('t', 0)).toHaveLength(1);
  });

  it('gzip-compresses whole batches, stored as sent', async () => {
    const { node, producer } = await setup({ compression: 'gzip' }, 1);
    await producer.sendBatch('t', range(50, (i) => ({ value: `reading ${i} `.repeat(10) })));
    expect(readBatchHeader(node.batches('t', 0)[0]).compression).toBe(Compression.Gzip);
    expect(node.records('t', 0).map((r) => r.value!.toString())[49]).toBe('reading 49 '.repeat(10));
  });

  it('flush() resolves once everything sent before it is acknowledged; close() flushes', async () => {
    const { node, producer } = await setup({ lingerMs: 60_000 }, 1);
    const sends = [producer.send('t', { value: 'a' }), producer.send('t', { value: 'b' })];
    await producer.flush();
    expect(node.records('t', 0)).toHaveLength(2);
    await Promise.all(sends);
    const late = producer.send('t', { value: 'c' });
    await producer.close();
    await expect(late).resolves.toMatchObject({ offset: 2 });
    await expect(producer.send('t', { value: 'd' })).rejects.toMatchObject({ code: Errors.CLIENT_CLOSED.code });
  });

  it('stamps records with the send time unless given, and keeps headers', async () => {
    const { node, producer } = await setup({}, 1);
    const before = Date.now();
    await producer.send('t', { value: 'a', headers: { source: 'gw-1', raw: Buffer.from([9]) } });
    await producer.send('t', { value: 'b', timestamp: 1234 });
    const [a, b] = node.records('t', 0);
    expect(a.timestamp).toBeGreaterThanOrEqual(before);
    expect(b.timestamp).toBe(1234);
    expect(a.headers.map(([n, v]) => [n, [...v!]])).toEqual([
      ['source', [...Buffer.from('gw-1')]],
      ['raw', [9]],
    ]);
  });

  it('idempotent by default: one producer id at epoch 0 for every batch, sequences that follow per partition', async () => {
    const { node, producer } = await setup({ lingerMs: 1, batchBytes: 400 }, 3);
    await Promise.all(range(300, (i) => `k${i % 11}`).map((key, i) => producer.send('t', { key, value: `${key}:${i}` })));
    const ids = new Set<number>();
    for (const partition of [0, 1, 2]) {
      const headers = node.batches('t', partition).map((b) => readBatchHeader(b));
      expect(headers.length).toBeGreaterThan(1);
      let expected = 0;
      for (const h of headers) {
        ids.add(h.producerId);
        expect(h.producerEpoch).toBe(0);
        expect(h.baseSequence).toBe(expected);
        expected += h.recordCount;
      }
    }
    expect([...ids]).toHaveLength(1);
    expect([...ids][0]).toBeGreaterThanOrEqual(0);
  });

  it('idempotent: false sends batches without a producer id', async () => {
    const { node, producer } = await setup({ idempotent: false }, 1);
    await producer.send('t', { value: 'a' });
    expect(readBatchHeader(node.batches('t', 0)[0]).producerId).toBe(-1);
  });
});
