// Micro-benchmarks of the protocol hot paths: the producer's batch encoder, the consumer's
// batch decoder, the broker's CRC validation, and the frame codec around them. Benches are
// registered at import (so a combined runner can import this file) and run only when the
// file is executed directly:
//
//   node dist/bench/protocol.bench.js
//
// After the mitata table, a summary turns the mean time per op into records/s and MB/s,
// the units the codec's targets are stated in (encode >= 1M records/s, decode >= 2M).

import { pathToFileURL } from 'node:url';
import { filled, meansByName, mibPerSecond } from './rates.js';
import { bench, do_not_optimize, group, run } from 'mitata';
import { crc32c } from '@node-rs/crc32';
import { decodeBatch, encodeBatch, validateBatch } from '../protocol/record-batch.js';
import type { Record } from '../protocol/record-batch.js';
import { Decoder } from 'cbor-x';
import { checkCborStructure } from '../protocol/cbor-walk.js';
import { decodeFrame, encodeFrame, FRAME_DEPTH_MAX, FRAME_ITEMS_MAX, Kind, RESPONSE } from '../protocol/frames.js';

const RECORDS_PER_BATCH = 100;
const VALUE_BYTES = 100;
const MIB = 1024 * 1024;

function keyedRecords(count: number, valueBytes: number): Record[] {
  const t0 = 1_700_000_000_000;
  const records: Record[] = [];
  for (let i = 0; i < count; i++) {
    records.push({ key: Buffer.from(`sensor-${i % 16}`), value: filled(valueBytes, i + 1), timestamp: t0 + i });
  }
  return records;
}

const smallRecords = keyedRecords(RECORDS_PER_BATCH, VALUE_BYTES);
const smallBatch = encodeBatch(smallRecords, { timestamp: 1_700_000_000_000 });
// The same with three headers per record (trace id, content type, source), as the SDK adds.
const headerRecords: Record[] = smallRecords.map((r, i) => ({
  ...r,
  headers: [
    ['trace-id', Buffer.from(`trace-${i}`)],
    ['content-type', Buffer.from('application/cbor')],
    ['source', Buffer.from('gateway-7/partition-3')],
  ],
}));
const headerBatch = encodeBatch(headerRecords, { timestamp: 1_700_000_000_000 });
// About 1 MiB: 1024 records of ~1000-byte values.
const bigBatch = encodeBatch(keyedRecords(1024, 1000), { timestamp: 1_700_000_000_000 });
const batch16k = encodeBatch(keyedRecords(16, 1000), { timestamp: 1_700_000_000_000 });
const crcInput16k = filled(16 * 1024, 7);
const crcInput1m = filled(MIB, 8);

const produceFrame = encodeFrame(Kind.Produce, 42, {
  acks: -1,
  timeoutMs: 30_000,
  partitions: [{ topic: 'telemetry', partition: 3, records: batch16k }],
});
const metadataBody = { topics: ['telemetry', 'alarms'] };
const metadataFrame = encodeFrame(Kind.Metadata, 43, metadataBody);
// A Fetch response of four ~256 KiB batches: the pre-check must skip byte strings unread.
const batch256k = encodeBatch(keyedRecords(256, 1000), { timestamp: 1_700_000_000_000 });
const fetchFrame = encodeFrame(Kind.Fetch | RESPONSE, 44, {
  partitions: Array.from({ length: 4 }, (_, p) => ({ topic: 'telemetry', partition: p, error: 0, highWatermark: 1e6, logStartOffset: 0, records: batch256k })),
});
const frameLimits = { itemsMax: FRAME_ITEMS_MAX, depthMax: FRAME_DEPTH_MAX };
// The decoder decodeFrame uses, alone: what decoding cost before the structural pre-check.
const plainDecoder = new Decoder({ useRecords: false, mapsAsObjects: true });

// Names are the keys the summary below uses to convert times into rates.
const NAMES = {
  encode: `encodeBatch ${RECORDS_PER_BATCH} keyed records x ${VALUE_BYTES} B`,
  decode: `decodeBatch ${RECORDS_PER_BATCH} keyed records x ${VALUE_BYTES} B`,
  encodeHeaders: `encodeBatch ${RECORDS_PER_BATCH} records + 3 headers`,
  decodeHeaders: `decodeBatch ${RECORDS_PER_BATCH} records + 3 headers`,
  validate: `validateBatch ${(bigBatch.length / MIB).toFixed(2)} MiB`,
  crc16k: 'crc32c 16 KiB',
  crc1m: 'crc32c 1 MiB',
  produceEncode: 'encodeFrame Produce (16 KiB batch)',
  produceDecode: 'decodeFrame Produce (16 KiB batch)',
  producePlain: 'cbor-x decode alone, Produce (16 KiB batch)',
  produceCheck: 'checkCborStructure Produce (16 KiB batch)',
  fetchCheck: `checkCborStructure Fetch response (4 x ${Math.round(batch256k.length / 1024)} KiB batches)`,
  metadataEncode: 'encodeFrame Metadata',
  metadataDecode: 'decodeFrame Metadata',
  metadataCheck: 'checkCborStructure Metadata',
} as const;

group('record batch', () => {
  bench(NAMES.encode, () => do_not_optimize(encodeBatch(smallRecords)));
  bench(NAMES.decode, () => do_not_optimize(decodeBatch(smallBatch)));
  bench(NAMES.encodeHeaders, () => do_not_optimize(encodeBatch(headerRecords)));
  bench(NAMES.decodeHeaders, () => do_not_optimize(decodeBatch(headerBatch)));
  bench(NAMES.validate, () => validateBatch(bigBatch));
});

group('crc32c', () => {
  bench(NAMES.crc16k, () => do_not_optimize(crc32c(crcInput16k)));
  bench(NAMES.crc1m, () => do_not_optimize(crc32c(crcInput1m)));
});

group('frames', () => {
  bench(NAMES.produceEncode, () =>
    do_not_optimize(encodeFrame(Kind.Produce, 42, { acks: -1, timeoutMs: 30_000, partitions: [{ topic: 'telemetry', partition: 3, records: batch16k }] })),
  );
  bench(NAMES.produceDecode, () => do_not_optimize(decodeFrame(produceFrame)));
  bench(NAMES.metadataEncode, () => do_not_optimize(encodeFrame(Kind.Metadata, 43, metadataBody)));
  bench(NAMES.metadataDecode, () => do_not_optimize(decodeFrame(metadataFrame)));
});

// decodeFrame walks the CBOR heads before cbor-x decodes (a guard against CBOR bombs); these
// show that walk's share: its cost alone, and cbor-x alone as decodeFrame was without it.
group('frame structural pre-check', () => {
  bench(NAMES.producePlain, () => do_not_optimize(plainDecoder.decode(produceFrame)));
  bench(NAMES.produceCheck, () => checkCborStructure(produceFrame, frameLimits));
  bench(NAMES.metadataCheck, () => checkCborStructure(metadataFrame, frameLimits));
  bench(NAMES.fetchCheck, () => checkCborStructure(fetchFrame, frameLimits));
});

function printRates(means: Map<string, number>): void {
  const perSecond = (name: string, units: number): string => {
    const ns = means.get(name);
    return ns === undefined ? 'n/a' : Math.round((units * 1e9) / ns).toLocaleString('en-US');
  };
  const mbPerSecond = (name: string, bytes: number): string => mibPerSecond(means, name, bytes);
  console.log('\nrates from mean time per op');
  console.log(`  encodeBatch    ${perSecond(NAMES.encode, RECORDS_PER_BATCH)} records/s  (${mbPerSecond(NAMES.encode, smallBatch.length)} MiB/s of batch)`);
  console.log(`  decodeBatch    ${perSecond(NAMES.decode, RECORDS_PER_BATCH)} records/s  (${mbPerSecond(NAMES.decode, smallBatch.length)} MiB/s of batch)`);
  console.log(`  encodeBatch, 3 headers  ${perSecond(NAMES.encodeHeaders, RECORDS_PER_BATCH)} records/s`);
  console.log(`  decodeBatch, 3 headers  ${perSecond(NAMES.decodeHeaders, RECORDS_PER_BATCH)} records/s`);
  console.log(`  validateBatch  ${mbPerSecond(NAMES.validate, bigBatch.length)} MiB/s`);
  console.log(`  crc32c 16 KiB  ${mbPerSecond(NAMES.crc16k, crcInput16k.length)} MiB/s`);
  console.log(`  crc32c 1 MiB   ${mbPerSecond(NAMES.crc1m, crcInput1m.length)} MiB/s`);
  console.log(`  decodeFrame Produce  ${mbPerSecond(NAMES.produceDecode, produceFrame.length)} MiB/s`);
  const check = means.get(NAMES.produceCheck);
  const decode = means.get(NAMES.produceDecode);
  if (check !== undefined && decode !== undefined) {
    console.log(`  pre-check share of decodeFrame Produce  ${((100 * check) / decode).toFixed(1)}% (${check.toFixed(0)} of ${decode.toFixed(0)} ns)`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { benchmarks } = await run();
  printRates(meansByName(benchmarks));
}
