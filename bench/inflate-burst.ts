// How long one principal's burst of inflating requests blocks a node's event loop: the
// review's case for limits.decompressBytesPerPrincipalPerSecond. A node in this process
// (default limits, dev mode) holds 64 partitions, each with one valid gzip batch of a few KB
// whose records inflate to 1 MB; one client pipelines inflightMax (32) ListOffsets, each
// looking up all 64 partitions by time. Reported per burst: the longest event-loop delay
// (perf_hooks.monitorEventLoopDelay, which the client's own work adds a little to), the
// megabytes inflated (lookups answered) and the lookups answered THROTTLED.
//
//   npm run build && node dist/bench/inflate-burst.js [--bursts N]
//
// Bursts are a second and a half apart, so each finds the principal's bucket full again.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect } from '../devices/index.js';
import { Kind } from '../protocol/frames.js';
import { Compression, encodeBatch } from '../protocol/record-batch.js';
import { startBroker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';

const { values: args } = parseArgs({ options: { bursts: { type: 'string', default: '5' } } });
const BURSTS = Number(args.bursts);
const PARTITIONS = 64;
const REQUESTS = 32;
const T0 = 1_700_000_000_000;
const THROTTLED = 89;

const text = Buffer.from('{"sensor":"boiler-7","celsius":71.5,"status":"ok"}\n'.repeat(20_000).slice(0, 1_000_000));
const batch = encodeBatch([{ key: null, value: text, timestamp: T0 }], { compression: Compression.Gzip });

const dataDir = mkdtempSync(join(tmpdir(), 'tributary-inflate-burst-'));
const broker = await startBroker({ dataDir, port: 0, logger: silentLogger });
try {
  await broker.logs.createTopic('readings', PARTITIONS);
  for (let p = 0; p < PARTITIONS; p++) broker.logs.partition('readings', p)?.append(batch);
  const conn = await connect(broker.url);
  const body = { partitions: Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: 'readings', partition, timestamp: T0 })) };
  process.stdout.write(`batch ${batch.length} B inflating to ${text.length} B, ${PARTITIONS} partitions, ${REQUESTS} pipelined ListOffsets a burst\n`);
  for (let burst = 0; burst < BURSTS; burst++) {
    await sleep(1500);
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: REQUESTS }, () => conn.client.request(Kind.ListOffsets, body)));
    const elapsedMs = performance.now() - started;
    delay.disable();
    let inflated = 0;
    let throttled = 0;
    for (const a of answers) {
      for (const p of a.partitions) {
        if (p.error === 0) inflated++;
        else if (p.error === THROTTLED) throttled++;
      }
    }
    process.stdout.write(
      `burst ${burst + 1}: event loop blocked up to ${(delay.max / 1e6).toFixed(0)} ms, burst answered in ${elapsedMs.toFixed(0)} ms, ${inflated} MB inflated, ${throttled} lookups THROTTLED\n`,
    );
  }
  await conn.close();
} finally {
  await broker.close();
  rmSync(dataDir, { recursive: true, force: true });
}
