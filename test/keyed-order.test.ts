// 100,000 keyed records from the SDK producer through a real node process over WebSocket
// and back through the SDK consumer: every record arrives once, on Kafka's partition for
// its key, in the order it was sent for that key.

import { afterEach, expect, it } from 'vitest';
import { connect } from '../devices/index.js';
import { partitionForKey } from '../protocol/partitioner.js';
import { startNodeProcess, stopAllNodes, tempDir } from './helpers/node-process.js';

const RECORDS = 100_000;
const KEYS = 500;
const PARTITIONS = 6;
const CHUNK = 5_000;

afterEach(stopAllNodes);

it('100,000 keyed records end to end, in order per key', async () => {
  const dir = tempDir();
  let tb: Awaited<ReturnType<typeof connect>> | undefined;
  try {
    const node = await startNodeProcess({ dataDir: dir.path });
    tb = await connect(node.url, { clientId: 'keyed-order-test' });
    await tb.admin().createTopic('keyed', { partitions: PARTITIONS });
    const producer = tb.producer({ lingerMs: 2 });
    // Value: "<key>:<sequence within key>", so the consumer can check order per key.
    const sentPerKey = new Array<number>(KEYS).fill(0);
    const sends: Promise<unknown>[] = [];
    for (let base = 0; base < RECORDS; base += CHUNK) {
      const messages = [];
      for (let i = base; i < base + CHUNK; i++) {
        const k = (i * 7919) % KEYS;
        messages.push({ key: `key-${k}`, value: `${k}:${sentPerKey[k]++}` });
      }
      sends.push(producer.sendBatch('keyed', messages));
      await producer.whenWritable();
    }
    const metadata = (await Promise.all(sends)).flat() as { partition: number; offset: number }[];
    expect(metadata).toHaveLength(RECORDS);
    await producer.flush();

    const consumer = tb.consumer({ autoOffsetReset: 'earliest', valueDecoding: 'string' });
    consumer.assign(Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: 'keyed', partition, offset: 0 })));
    const nextPerKey = new Array<number>(KEYS).fill(0);
    const lastOffset = new Array<number>(PARTITIONS).fill(-1);
    let received = 0;
    for await (const batch of consumer.batches()) {
      for (const r of batch) {
        const key = r.key!.toString();
        const [k, seq] = (r.value as string).split(':').map(Number);
        expect(key).toBe(`key-${k}`);
        expect(r.partition).toBe(partitionForKey(Buffer.from(key), PARTITIONS));
        expect(seq).toBe(nextPerKey[k]);
        expect(r.offset).toBe(lastOffset[r.partition] + 1);
        nextPerKey[k]++;
        lastOffset[r.partition] = r.offset;
        received++;
      }
      if (received >= RECORDS) break;
    }
    expect(received).toBe(RECORDS);
    expect(nextPerKey).toEqual(sentPerKey);
    await consumer.close();
    await tb.close();
    expect(await node.stop()).toBe(0);
  } finally {
    await tb?.close();
    await stopAllNodes();
    dir.remove();
  }
});
