// End-to-end benchmark: one SDK producer and one SDK consumer through a real node process
// on loopback. Reports produce and consume throughput (records/s, MB/s) and
// produce-to-consume latency percentiles at a fixed moderate rate.
//
//   npm run bench:e2e -- [--records N] [--value-bytes N] [--partitions N] [--rate N]
//                        [--latency-seconds N] [--flush batch|interval|os] [--acks 0|1]
//                        [--linger-ms N] [--delivery subscribe|fetch]
//
// --linger-ms is the latency phase's producer linger (default 5, the SDK's); --delivery how
// the consumers get records (default subscribe: pushed by the node; fetch: long polls). The
// node gets the V8 flags of npm start and the systemd unit; TRIBUTARY_BENCH_NODE_FLAGS
// replaces them (empty: none).

import { NODE_V8_FLAGS, startChildNode } from '../simulator/child-node.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import { connect, type Connection } from '../devices/index.js';

const { values: args } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    'value-bytes': { type: 'string', default: '100' },
    partitions: { type: 'string', default: '1' },
    rate: { type: 'string', default: '10000' },
    'latency-seconds': { type: 'string', default: '10' },
    flush: { type: 'string', default: 'interval' },
    acks: { type: 'string', default: '1' },
    'linger-ms': { type: 'string', default: '5' },
    delivery: { type: 'string', default: 'subscribe' },
  },
});
const LINGER_MS = Number(args['linger-ms']);
const DELIVERY = args.delivery as 'subscribe' | 'fetch';
if (DELIVERY !== 'subscribe' && DELIVERY !== 'fetch') throw new Error(`--delivery must be subscribe or fetch, got ${String(DELIVERY)}`);
const RECORDS = Number(args.records);
const VALUE_BYTES = Number(args['value-bytes']);
const PARTITIONS = Number(args.partitions);
const RATE = Number(args.rate);
const LATENCY_SECONDS = Number(args['latency-seconds']);
const ACKS = Number(args.acks) as 0 | 1;
const CHUNK = 10_000;


async function startNode(dataDir: string): Promise<{ url: string; pid: number; stop(): Promise<unknown> }> {
  // The node runs as npm start and the systemd unit run it: with their V8 flags.
  const nodeOptions = (process.env.TRIBUTARY_BENCH_NODE_FLAGS ?? NODE_V8_FLAGS).split(' ').filter((f) => f !== '');
  const node = await startChildNode({ args: ['--data', dataDir, '--port', '0', '--log-level', 'warn'], nodeOptions });
  return { url: node.url, pid: node.proc.pid!, stop: () => node.stop() };
}

function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

async function throughput(tb: Connection): Promise<{ produceS: number; consumeS: number }> {
  await tb.admin().createTopic('bench', { partitions: PARTITIONS, config: { flush: args.flush! } });
  const producer = tb.producer({ acks: ACKS });
  const value = Buffer.alloc(VALUE_BYTES, 120);
  const messages = Array.from({ length: CHUNK }, () => ({ value }));
  const t0 = performance.now();
  const pending: Promise<unknown>[] = [];
  for (let sent = 0; sent < RECORDS; sent += CHUNK) {
    pending.push(producer.sendBatch('bench', sent + CHUNK <= RECORDS ? messages : messages.slice(0, RECORDS - sent)));
    await producer.whenWritable();
  }
  await Promise.all(pending);
  await producer.flush();
  const produceS = (performance.now() - t0) / 1000;

  const consumer = tb.consumer({ autoOffsetReset: 'earliest', delivery: DELIVERY });
  consumer.assign(Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: 'bench', partition, offset: 0 })));
  const t1 = performance.now();
  let received = 0;
  for await (const batch of consumer.batches()) {
    received += batch.length;
    if (received >= RECORDS) break;
  }
  const consumeS = (performance.now() - t1) / 1000;
  await consumer.close();
  return { produceS, consumeS };
}

async function latency(tb: Connection): Promise<hdr.Histogram> {
  await tb.admin().createTopic('latency', { partitions: PARTITIONS, config: { flush: args.flush! } });
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const total = RATE * LATENCY_SECONDS;
  const consumer = tb.consumer({ autoOffsetReset: 'earliest', delivery: DELIVERY });
  consumer.assign(Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: 'latency', partition, offset: 0 })));
  const consumed = (async () => {
    let received = 0;
    for await (const batch of consumer.batches()) {
      const now = performance.timeOrigin + performance.now();
      for (const r of batch) histogram.recordValue(Math.max(1, Math.round((now - r.value!.readDoubleBE(0)) * 1000)));
      received += batch.length;
      if (received >= total) break;
    }
  })();
  const producer = tb.producer({ acks: ACKS, lingerMs: LINGER_MS });
  const start = performance.now();
  let sent = 0;
  const acks: Promise<unknown>[] = [];
  // Paced: every millisecond, send what the fixed rate owes by now.
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * RATE));
    for (; sent < due; sent++) {
      const value = Buffer.alloc(VALUE_BYTES);
      value.writeDoubleBE(performance.timeOrigin + performance.now(), 0);
      acks.push(producer.send('latency', { value }));
    }
    if (acks.length > 10_000) await Promise.all(acks.splice(0));
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(acks);
  await consumed;
  await consumer.close();
  await producer.close();
  return histogram;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'trib-bench-'));
  const node = await startNode(dataDir);
  const tb = await connect(node.url, { clientId: 'bench-e2e' });
  try {
    const { produceS, consumeS } = await throughput(tb);
    const h = await latency(tb);
    const mb = (RECORDS * VALUE_BYTES) / 1e6;
    const result = {
      records: RECORDS,
      valueBytes: VALUE_BYTES,
      partitions: PARTITIONS,
      acks: ACKS,
      flush: args.flush,
      produceRecordsPerS: Math.round(RECORDS / produceS),
      produceMBPerS: +(mb / produceS).toFixed(1),
      consumeRecordsPerS: Math.round(RECORDS / consumeS),
      consumeMBPerS: +(mb / consumeS).toFixed(1),
      latencyRate: RATE,
      lingerMs: LINGER_MS,
      delivery: DELIVERY,
      latencyP50Ms: h.getValueAtPercentile(50) / 1000,
      latencyP99Ms: h.getValueAtPercentile(99) / 1000,
      latencyMaxMs: h.maxValue / 1000,
      nodePeakRssMiB: +peakRssMiB(node.pid).toFixed(1),
    };
    console.log(`produce  ${result.produceRecordsPerS.toLocaleString('en')} records/s  ${result.produceMBPerS} MB/s  (${RECORDS} x ${VALUE_BYTES} B, acks=${ACKS}, flush=${args.flush}, ${PARTITIONS} partition(s))`);
    console.log(`consume  ${result.consumeRecordsPerS.toLocaleString('en')} records/s  ${result.consumeMBPerS} MB/s`);
    console.log(
      `latency  p50 ${result.latencyP50Ms.toFixed(2)} ms  p99 ${result.latencyP99Ms.toFixed(2)} ms  max ${result.latencyMaxMs.toFixed(2)} ms  at ${RATE} records/s for ${LATENCY_SECONDS} s (linger ${LINGER_MS} ms, ${DELIVERY})`,
    );
    console.log(`node     peak RSS ${result.nodePeakRssMiB} MiB`);
    console.log(JSON.stringify(result));
  } finally {
    await tb.close();
    await node.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
