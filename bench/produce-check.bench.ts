// The cost of checking a compressed batch at produce (validateRecords: CRC, inflate within
// max.message.bytes, every record parsed and matched to the header), next to what an
// uncompressed batch costs on the same path (validateBatch: length, magic, CRC, count bound)
// and to the inflate alone. Sensor-like batches: 100 and 1,000 records of ~100-byte JSON
// readings keyed by sensor, gzip as the SDK writes it (level 1). Benches register at import
// and run only when this file is executed directly:
//
//   node dist/bench/produce-check.bench.js
//
// After the mitata table, a summary gives µs per batch and MB/s of records inflated, as the
// mean (GC pauses included) and the median.

import { pathToFileURL } from 'node:url';
import { bench, do_not_optimize, group, run } from 'mitata';
import { BATCH_OVERHEAD, Compression, encodeBatch, inflateRecords, validateBatch, validateRecords } from '../protocol/record-batch.js';
import type { Record } from '../protocol/record-batch.js';

const T0 = 1_700_000_000_000;
/** The topic default max.message.bytes, the check's bound. */
const MAX_MESSAGE_BYTES = 1024 * 1024 + 12;

/** `count` readings of ~100 bytes from 16 sensors, a millisecond apart. */
function readings(count: number): Record[] {
  const records: Record[] = [];
  for (let i = 0; i < count; i++) {
    const sensor = i % 16;
    const reading = { sensor: `gw-7/s-${sensor}`, t: +(20 + ((i * 37) % 100) / 10).toFixed(1), h: 40 + ((i * 13) % 30), v: 3.3, seq: i };
    records.push({ key: Buffer.from(`sensor-${sensor}`), value: Buffer.from(JSON.stringify(reading).padEnd(100, ' ')), timestamp: T0 + i });
  }
  return records;
}

interface Shape {
  count: number;
  gzip: Buffer;
  plain: Buffer;
  inflatedBytes: number;
}

function shape(count: number): Shape {
  const records = readings(count);
  const gzip = encodeBatch(records, { compression: Compression.Gzip });
  const plain = encodeBatch(records);
  return { count, gzip, plain, inflatedBytes: plain.length - BATCH_OVERHEAD };
}

const SHAPES = [shape(100), shape(1000)];

const name = {
  check: (s: Shape) => `validateRecords gzip ${s.count} records (${s.gzip.length} B -> ${s.inflatedBytes} B)`,
  inflate: (s: Shape) => `inflate alone, gzip ${s.count} records`,
  gzipHeader: (s: Shape) => `validateBatch gzip ${s.count} records (before: header and CRC only)`,
  plain: (s: Shape) => `validateBatch uncompressed ${s.count} records (${s.plain.length} B)`,
};

for (const s of SHAPES) {
  group(`produce-time check, ${s.count} sensor records of ~100 B`, () => {
    bench(name.check(s), () => do_not_optimize(validateRecords(s.gzip, MAX_MESSAGE_BYTES)));
    bench(name.inflate(s), () => do_not_optimize(inflateRecords(s.gzip, MAX_MESSAGE_BYTES)));
    bench(name.gzipHeader(s), () => validateBatch(s.gzip));
    bench(name.plain(s), () => validateBatch(s.plain));
  });
}

/** Mean and median ns per batch of each bench, by name: the mean carries GC pauses, the median not. */
function timesByName(benchmarks: Awaited<ReturnType<typeof run>>['benchmarks']): Map<string, { avg: number; p50: number }> {
  const times = new Map<string, { avg: number; p50: number }>();
  for (const trial of benchmarks) {
    const stats = trial.runs[0]?.stats;
    if (stats) times.set(trial.alias, { avg: stats.avg, p50: stats.p50 });
  }
  return times;
}

function printRates(times: Map<string, { avg: number; p50: number }>): void {
  const micros = (t: { avg: number; p50: number } | undefined): string => (t === undefined ? 'n/a' : `${(t.avg / 1000).toFixed(1)} (p50 ${(t.p50 / 1000).toFixed(1)})`);
  const mbPerSecond = (bytes: number, t: { avg: number; p50: number } | undefined): string =>
    t === undefined ? 'n/a' : `${((bytes / t.avg) * 1e3).toFixed(0)} (p50 ${((bytes / t.p50) * 1e3).toFixed(0)})`;
  console.log('\nper batch, mean (median) over the run');
  for (const s of SHAPES) {
    const check = times.get(name.check(s));
    const inflate = times.get(name.inflate(s));
    const plain = times.get(name.plain(s));
    const gzipHeader = times.get(name.gzipHeader(s));
    console.log(`  gzip ${s.count} records, ${s.gzip.length} B -> ${s.inflatedBytes} B:`);
    console.log(`    check (validateRecords)   ${micros(check)} µs, ${mbPerSecond(s.inflatedBytes, check)} MB/s of records inflated and parsed`);
    console.log(`    inflate alone             ${micros(inflate)} µs, ${mbPerSecond(s.inflatedBytes, inflate)} MB/s`);
    console.log(`    header and CRC, gzip      ${micros(gzipHeader)} µs (what a compressed batch cost before)`);
    console.log(`    uncompressed path         ${micros(plain)} µs (validateBatch of the same records uncompressed)`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { benchmarks } = await run();
  printRates(timesByName(benchmarks));
}
