// What a node's log says about its data folder at start, read from a real node process's
// JSON lines: after a SIGKILL, checking every partition's tail is routine (one info line);
// a warning names only a partition that recovery actually cut, and by how much. A topic
// config that cannot be read is logged with the topic's name in `topic` and the reason apart.

import { mkdirSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { Kind } from '../protocol/frames.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { RawClient } from './helpers/raw-client.js';
import { startNodeProcess, stopAllNodes, tempDir, type NodeProcess, logLines, type LogLine } from './helpers/node-process.js';

afterEach(stopAllNodes);

const PARTITIONS = 3;
const TORN_BYTES = 5;



const start = (dataDir: string) => startNodeProcess({ dataDir, args: ['--log-level', 'info'] });

it('after a SIGKILL, a partition recovery cut nothing from is not warned about; one with a torn tail is, with the bytes cut', async () => {
  const dir = tempDir();
  try {
    const first = await start(dir.path);
    const client = await RawClient.connect(first.url);
    await client.request(Kind.CreateTopics, { topics: [{ name: 'r', partitions: PARTITIONS, config: { flush: 'batch' } }] });
    let lastBatchBytes = 0;
    for (let partition = 0; partition < PARTITIONS; partition++) {
      for (const n of [1, 2]) {
        const records = encodeBatch([{ key: Buffer.from('k'), value: Buffer.from(`record ${n} of ${partition}`) }]);
        const answer = await client.request<{ partitions: { error: number }[] }>(Kind.Produce, { acks: 1, timeoutMs: 10_000, partitions: [{ topic: 'r', partition, records }] });
        expect(answer.partitions[0].error).toBe(0);
        lastBatchBytes = records.length;
      }
    }
    await first.kill();
    await client.closed;

    const intact = await start(dir.path);
    const intactLines = logLines(intact);
    const summary = intactLines.find((l) => /clean-shutdown marker/.test(l.msg));
    expect(summary).toMatchObject({ level: 30, partitionsCut: 0 });
    expect(intactLines.filter((l) => l.level >= 40 && (l.partition !== undefined || /recover|clean-shutdown/.test(l.msg)))).toEqual([]);
    await intact.kill();

    // A write torn by the crash: the newest segment of r-1 loses the end of its last batch,
    // and recovery cuts what is left of that batch, the first one staying.
    const partitionDir = join(dir.path, 'r-1');
    const newest = readdirSync(partitionDir).filter((f) => f.endsWith('.log')).sort().at(-1) as string;
    const size = statSync(join(partitionDir, newest)).size;
    truncateSync(join(partitionDir, newest), size - TORN_BYTES);

    const torn = await start(dir.path);
    const warnings = logLines(torn).filter((l) => l.level >= 40 && l.partition !== undefined);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, topic: 'r', partition: 1, truncatedBytes: lastBatchBytes - TORN_BYTES });
    expect(warnings[0].msg).toBe(`recovered partition: cut ${lastBatchBytes - TORN_BYTES} bytes of torn or corrupt batches from its tail`);
    expect(logLines(torn).find((l) => /clean-shutdown marker/.test(l.msg))).toMatchObject({ partitionsCut: 1 });
    expect(await torn.stop()).toBe(0);
  } finally {
    dir.remove();
  }
});

it('a topic config that cannot be read is logged with the topic name in topic and the reason apart', async () => {
  const dir = tempDir();
  try {
    mkdirSync(join(dir.path, 'topics'));
    writeFileSync(join(dir.path, 'topics', 'broken.json'), '{ not json');
    const node = await start(dir.path);
    const line = logLines(node).find((l) => /topic config unreadable/.test(l.msg));
    expect(line).toMatchObject({ level: 50, topic: 'broken', file: join(dir.path, 'topics', 'broken.json') });
    expect(line?.detail).toMatch(/JSON/);
    expect(await node.stop()).toBe(0);
  } finally {
    dir.remove();
  }
});
