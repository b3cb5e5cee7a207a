// The idempotent producer end to end: answers lost after the node appended (a fault hook
// drops the connection there) and a node SIGKILLed and restarted mid-load. Either way every
// record is in the log exactly once, in order per key, at the offset its send resolved with.

import { createServer, type AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { connect, type Connection } from '../devices/index.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { mulberry32 } from '../protocol/testdata/helpers.js';
import { startNodeProcess, stopAllNodes, tempDir, type NodeProcess } from './helpers/node-process.js';

afterEach(stopAllNodes);

const PARTITIONS = 4;
const KEYS = 200;

interface Sent {
  key: string;
  value: string;
  partition: number;
  offset: number;
}

/** Sends `total` keyed records in chunks; values are "<key index>:<sequence within key>". */
async function produceAll(tb: Connection, topic: string, total: number, onChunk?: (sent: number) => Promise<void>): Promise<Sent[]> {
  const producer = tb.producer({ lingerMs: 1, batchBytes: 2048 });
  const perKey = new Array<number>(KEYS).fill(0);
  const pending: Promise<Sent[]>[] = [];
  const CHUNK = 500;
  for (let base = 0; base < total; base += CHUNK) {
    const messages: { key: string; value: string }[] = [];
    for (let i = base; i < Math.min(total, base + CHUNK); i++) {
      const k = (i * 7919) % KEYS;
      messages.push({ key: `key-${k}`, value: `${k}:${perKey[k]++}` });
    }
    pending.push(
      producer.sendBatch(topic, messages).then((metas) => metas.map((m, i) => ({ key: messages[i].key, value: messages[i].value, partition: m.partition, offset: m.offset }))),
    );
    await producer.whenWritable();
    await onChunk?.(base + CHUNK);
  }
  const sent = (await Promise.all(pending)).flat();
  await producer.close();
  return sent;
}

/** Reads every partition from 0 to its end and checks exactly-once, order per key, and the offsets the sends resolved with. */
async function expectExactlyOnce(tb: Connection, topic: string, sent: Sent[]): Promise<void> {
  const consumer = tb.consumer({ autoOffsetReset: 'earliest', valueDecoding: 'string' });
  consumer.assign(Array.from({ length: PARTITIONS }, (_, partition) => ({ topic, partition, offset: 0 })));
  const seen = new Map<string, { partition: number; offset: number }>();
  const nextPerKey = new Array<number>(KEYS).fill(0);
  let received = 0;
  for await (const batch of consumer.batches()) {
    for (const r of batch) {
      const value = r.value as string;
      // Exactly once: a value seen twice is a duplicate the idempotence failed to stop.
      expect(seen.has(value), `duplicate ${value} at ${r.partition}/${r.offset}`).toBe(false);
      seen.set(value, { partition: r.partition, offset: r.offset });
      const [k, n] = value.split(':').map(Number);
      expect(n, `key ${k} out of order at ${r.partition}/${r.offset}`).toBe(nextPerKey[k]);
      nextPerKey[k]++;
      received++;
    }
    if (received >= sent.length) break;
  }
  await consumer.close();
  expect(received).toBe(sent.length);
  // And each send resolved with where its record really is (a resend answers the original offset).
  for (const s of sent) expect(seen.get(s.value), s.value).toEqual({ partition: s.partition, offset: s.offset });
}

it('answers lost after the append: every record exactly once, in order per key', async () => {
  const dir = tempDir();
  const random = mulberry32(0x1d3);
  let drops = 0;
  let broker: Broker | undefined;
  let tb: Connection | undefined;
  try {
    broker = await startBroker({
      dataDir: dir.path,
      port: 0,
      logger: silentLogger,
      faults: {
        dropAfterAppend: () => {
          const drop = random() < 0.15;
          if (drop) drops++;
          return drop;
        },
      },
    });
    tb = await connect(broker.url, { clientId: 'exactly-once', reconnect: { initialMs: 5, maxMs: 50 } });
    await tb.admin().createTopic('orders', { partitions: PARTITIONS });
    const sent = await produceAll(tb, 'orders', 20_000);
    expect(drops, 'the fault hook never fired: the test would prove nothing').toBeGreaterThan(3);
    // The lost answers were resent and recognised, not appended again.
    const metrics = await (await fetch(`http://127.0.0.1:${broker.port}/metrics`)).text();
    expect(Number(/^tributary_produce_duplicate_batches_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    await expectExactlyOnce(tb, 'orders', sent);
  } finally {
    await tb?.close();
    await broker?.close();
    dir.remove();
  }
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

it('a node SIGKILLed and restarted mid-load: every record exactly once, in order per key', async () => {
  const dir = tempDir();
  let tb: Connection | undefined;
  try {
    const port = await freePort();
    let node: NodeProcess = await startNodeProcess({ dataDir: dir.path, port });
    tb = await connect(node.url, { clientId: 'exactly-once-kill', reconnect: { initialMs: 20, maxMs: 200 } });
    await tb.admin().createTopic('orders', { partitions: PARTITIONS, config: { 'segment.bytes': 64 * 1024 } });
    let killed = false;
    const sent = await produceAll(tb, 'orders', 20_000, async (count) => {
      if (killed || count < 8_000) return;
      killed = true;
      // Batches are on the wire: some appended and unanswered, some not yet appended.
      await node.kill();
      node = await startNodeProcess({ dataDir: dir.path, port });
    });
    expect(killed).toBe(true);
    await expectExactlyOnce(tb, 'orders', sent);
    await tb.close();
    tb = undefined;
    expect(await node.stop()).toBe(0);
  } finally {
    await tb?.close();
    dir.remove();
  }
});
