// Micro-benchmark of the log cleaner: compacting a partition of 16 sealed 1 MiB segments
// (batches of 100 keyed records of ~150 bytes, 10 000 distinct keys, so ~90% of the
// records are superseded) plus a small active segment. Each iteration gets a fresh copy of
// the uncompacted folder (copied outside the timing), then opens it (clean start: indexes
// trusted), compacts it and closes it. The figure is MB of closed segments compacted per
// second. Benches register at import; they run only when this file is executed directly.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { bench, do_not_optimize, group, run } from 'mitata';
import { encodeBatch } from '../protocol/record-batch.js';
import { compactPartition } from '../node/storage/cleaner.js';
import { parseTopicConfig } from '../node/storage/config.js';
import { PartitionLog } from '../node/storage/partition-log.js';
import { makeTempDir, removeDir, seededRandom } from '../node/storage/testing.js';

const MIB = 1024 * 1024;
const CONFIG = parseTopicConfig({ 'cleanup.policy': 'compact', 'segment.bytes': MIB, flush: 'os' });
const CLOSED_SEGMENTS = 16;
const KEYS = 10_000;
const T0 = 1_700_000_000_000;

/** The uncompacted partition folder, written once; returns its closed segments' bytes. */
async function writePristine(dir: string): Promise<number> {
  const log = await PartitionLog.open(dir, 'bench', 0, CONFIG);
  const random = seededRandom(42);
  const value = Buffer.alloc(140, 0x61);
  let ts = T0;
  while (log.closedSegments().length < CLOSED_SEGMENTS) {
    const records = Array.from({ length: 100 }, () => ({ key: Buffer.from(`device-${Math.floor(random() * KEYS)}`), value, timestamp: ts++ }));
    log.append(encodeBatch(records));
    await log.flush();
  }
  let closedBytes = 0;
  for (const segment of log.closedSegments()) closedBytes += segment.sizeBytes;
  await log.close();
  return closedBytes;
}

let pristine: { root: string; dir: string; closedBytes: number } | null = null;

group('log compaction', () => {
  bench(`compactPartition: ${CLOSED_SEGMENTS} x 1 MiB closed segments, ~90% superseded`, async function* () {
    const root = makeTempDir();
    const dir = path.join(root, 'pristine');
    const closedBytes = await writePristine(dir);
    pristine = { root, dir, closedBytes };
    let copies = 0;
    yield {
      [0]() {
        const copy = path.join(root, `copy-${copies++}`);
        fs.cpSync(dir, copy, { recursive: true });
        return copy;
      },
      async bench(copy: string) {
        const log = await PartitionLog.open(copy, 'bench', 0, CONFIG, { clean: true });
        do_not_optimize(await compactPartition(log, { now: () => T0 }));
        await log.close();
        fs.rmSync(copy, { recursive: true, force: true });
      },
    };
    removeDir(root);
  });
});

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const report = await run();
  for (const trial of report.benchmarks) {
    for (const result of trial.runs) {
      if (result.stats === undefined || pristine === null) continue;
      const mbPerS = (ns: number): string => (pristine!.closedBytes / (ns / 1e9) / 1e6).toFixed(0);
      process.stdout.write(`${trial.alias}: ${mbPerS(result.stats.avg)} MB/s at avg, ${mbPerS(result.stats.p50)} MB/s at p50\n`);
    }
  }
}
