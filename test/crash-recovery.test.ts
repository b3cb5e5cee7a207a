// A record acknowledged with acks=1 (flush=batch) survives the node being SIGKILLed
// mid-load, exactly once, in order per partition: a real node process, a real kill, a
// restart with recovery on the same data folder. A SIGKILL keeps the kernel's page cache,
// so this proves recovery and acknowledgement order, not fsync; what fsync adds is tested
// with injected file operations in node/storage/partition-log.test.ts.

import { afterEach, expect, it } from 'vitest';
import { Kind } from '../protocol/frames.js';
import { decodeBatch, encodeBatch, splitBatches } from '../protocol/record-batch.js';
import { silentLogger } from '../node/logger.js';
import { RawClient } from './helpers/raw-client.js';
import { startNodeProcess, stopAllNodes, tempDir } from './helpers/node-process.js';

const PARTITIONS = 3;
const RECORDS_PER_BATCH = 20;
const KILL_AFTER_ACKED_BATCHES = 150;
const BATCHES_MAX = 2000;
const INFLIGHT = 8;

afterEach(stopAllNodes);

interface Acked {
  partition: number;
  baseOffset: number;
  values: string[];
}

it('SIGKILL mid-load: every acked record is there exactly once, in order per partition', async () => {
  const dir = tempDir();
  try {
    const node = await startNodeProcess({ dataDir: dir.path });
    const client = await RawClient.connect(node.url);
    const created = await client.request<{ topics: { error: number }[] }>(Kind.CreateTopics, {
      topics: [{ name: 'crash', partitions: PARTITIONS, config: { flush: 'batch', 'segment.bytes': 64 * 1024 } }],
    });
    expect(created.topics[0].error).toBe(0);

    const acked: Acked[] = [];
    const seq = new Array<number>(PARTITIONS).fill(0);
    let inflight = 0;
    let sent = 0;
    let killed: Promise<void> | null = null;
    let wake: (() => void) | null = null;
    while (!killed && sent < BATCHES_MAX) {
      while (inflight >= INFLIGHT) await new Promise<void>((r) => (wake = r));
      if (killed) break;
      const partition = sent % PARTITIONS;
      const values = Array.from({ length: RECORDS_PER_BATCH }, () => `p${partition}-${seq[partition]++}`);
      const records = encodeBatch(values.map((v) => ({ key: Buffer.from(`k${partition}`), value: Buffer.from(v) })));
      inflight++;
      sent++;
      client
        .request<{ partitions: { error: number; baseOffset: number }[] }>(Kind.Produce, { acks: 1, timeoutMs: 10_000, partitions: [{ topic: 'crash', partition, records }] })
        .then(
          (r) => {
            const p = r.partitions[0];
            if (p.error === 0) acked.push({ partition, baseOffset: p.baseOffset, values });
            // Kill while requests are still on the wire and on their way to disk.
            if (acked.length === KILL_AFTER_ACKED_BATCHES && !killed) killed = node.kill();
          },
          () => {
            // Unanswered when the node died: the outcome is unknown, and nothing is claimed.
          },
        )
        .finally(() => {
          inflight--;
          wake?.();
        });
    }
    expect(killed).not.toBeNull();
    await killed;
    await client.closed;

    const restarted = await startNodeProcess({ dataDir: dir.path, port: node.port });
    const reader = await RawClient.connect(restarted.url);
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const stored = await readAll(reader, 'crash', partition);
      const mine = acked.filter((a) => a.partition === partition);
      for (const a of mine) {
        a.values.forEach((v, i) => expect(stored.get(a.baseOffset + i), `acked offset ${a.baseOffset + i}`).toBe(v));
      }
      // Exactly once and in order: the sequence numbers read back are 0, 1, 2, ... with no
      // repeat and no gap (a gap would be a lost record that a later one followed).
      const sequence = [...stored.values()].map((v) => Number(v.split('-')[1]));
      expect(sequence).toEqual(sequence.map((_, i) => i));
      const lastAcked = Math.max(-1, ...mine.map((a) => a.baseOffset + a.values.length - 1));
      expect(stored.size).toBeGreaterThan(lastAcked);
    }
    reader.close();
    await restarted.stop();
  } finally {
    dir.remove();
  }
});

async function readAll(client: RawClient, topic: string, partition: number): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  let offset = 0;
  let next = 0;
  for (;;) {
    const f = await client.request<{ partitions: { error: number; highWatermark: number; records: Uint8Array }[] }>(Kind.Fetch, {
      maxWaitMs: 0,
      minBytes: 0,
      maxBytes: 1 << 20,
      partitions: [{ topic, partition, fetchOffset: offset, maxBytes: 1 << 20 }],
    });
    const p = f.partitions[0];
    expect(p.error).toBe(0);
    for (const batch of splitBatches(Buffer.from(p.records))) {
      for (const r of decodeBatch(batch).records) {
        if (r.offset >= offset) {
          out.set(r.offset, r.value!.toString());
          next = Math.max(next, r.offset + 1);
        }
      }
    }
    if (next >= p.highWatermark || next === offset) return out;
    offset = next;
  }
}

it('a second node on a running node\'s data folder is refused; a dead owner\'s lock is taken over', async () => {
  const dir = tempDir();
  try {
    const node = await startNodeProcess({ dataDir: dir.path });
    const second = await import('../node/broker.js').then(({ startBroker }) => startBroker({ dataDir: dir.path, port: 0, logger: silentLogger }).then(
      (b) => b,
      (err: Error) => err,
    ));
    if (!(second instanceof Error)) await second.close();
    expect(second).toBeInstanceOf(Error);
    expect((second as Error).message).toMatch(new RegExp(`in use by process ${node.proc.pid}`));
    await node.kill();
    // The SIGKILLed owner left its lock file behind; a new node takes it over.
    const restarted = await startNodeProcess({ dataDir: dir.path });
    await restarted.stop();
  } finally {
    dir.remove();
  }
});
