// Test-only bridge to kafkajs's RecordBatch v2 codec, the outside implementation our
// codec is checked against (kafkajs is a devDependency and nothing else imports it).
// kafkajs is CommonJS and exports no typed API for its protocol internals, so this file
// loads them with createRequire and states the small shapes we use.

import { createRequire } from 'node:module';
import type { Header } from '../record-batch.js';

const require = createRequire(import.meta.url);

interface KafkaLong {
  toString(): string;
}
interface KafkaEncoder {
  readonly buffer: Buffer;
}
type KafkaHeaders = { [name: string]: Buffer | Buffer[] };

interface KafkaRecordInput {
  offsetDelta: number;
  timestampDelta: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: KafkaHeaders;
}

interface KafkaBatchInput {
  compression: number;
  firstOffset: KafkaLong;
  firstTimestamp: number;
  maxTimestamp: number;
  partitionLeaderEpoch: number;
  lastOffsetDelta: number;
  transactional: boolean;
  producerId: KafkaLong;
  producerEpoch: number;
  firstSequence: number;
  records: KafkaEncoder[];
}

export interface KafkaDecodedRecord {
  offset: string;
  timestamp: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: { [name: string]: Buffer | Buffer[] };
}

export interface KafkaDecodedBatch {
  firstOffset: string;
  firstTimestamp: string;
  maxTimestamp: string;
  partitionLeaderEpoch: number;
  lastOffsetDelta: number;
  producerId: string;
  producerEpoch: number;
  firstSequence: number;
  inTransaction: boolean;
  records: KafkaDecodedRecord[];
}

const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: number | string): KafkaLong };
const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as {
  RecordBatch(input: KafkaBatchInput): Promise<KafkaEncoder>;
};
const KafkaRecord = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (r: KafkaRecordInput) => KafkaEncoder;
const decodeKafkaBatch = require('kafkajs/src/protocol/recordBatch/v0/decoder.js') as (decoder: object) => Promise<KafkaDecodedBatch>;
const KafkaDecoder = require('kafkajs/src/protocol/decoder.js') as new (buffer: Buffer) => object;
const kafkaCrc32C = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (b: Buffer) => number;
const kafkaPartitioners = require('kafkajs/src/producer/partitioners/index.js') as {
  DefaultPartitioner: () => (args: { topic: string; partitionMetadata: { partitionId: number; leader: number }[]; message: { key: Buffer | string } }) => number;
};
const kafkaMurmur2Fn = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: Buffer | string) => number;

export const KAFKAJS_VERSION = (require('kafkajs/package.json') as { version: string }).version;

export const KafkaCompression = { None: 0, Gzip: 1 } as const;

/** A record as kafkajs's producer takes it; timestamps are absolute, as ours. */
export interface KafkaRecordSpec {
  key: Buffer | null;
  value: Buffer | null;
  timestamp: number;
  /** kafkajs keeps headers in an object: a name's values must be adjacent in this list. */
  headers: [string, Buffer][];
}

export interface KafkaBatchSpec {
  compression: number;
  firstOffset: number;
  /** kafkajs's base timestamp. Its producer passes the smallest; Java's takes the first record's. */
  firstTimestamp: number;
  partitionLeaderEpoch: number;
  producerId: number;
  producerEpoch: number;
  firstSequence: number;
  transactional: boolean;
  records: KafkaRecordSpec[];
}

/** Headers as a kafkajs object: repeated names become arrays, in order. */
export function kafkaHeaders(headers: readonly (readonly [string, Uint8Array | null])[]): KafkaHeaders {
  const out: KafkaHeaders = {};
  for (const [name, value] of headers) {
    if (value === null) throw new Error('kafkajs cannot encode a null header value');
    const v = Buffer.from(value);
    const prior = out[name];
    out[name] = prior === undefined ? v : Array.isArray(prior) ? [...prior, v] : [prior, v];
  }
  return out;
}

/** Encodes one RecordBatch v2 with kafkajs, as its Produce v3 request builder does. */
export async function kafkajsEncode(spec: KafkaBatchSpec): Promise<Buffer> {
  const records = spec.records.map((r, i) =>
    KafkaRecord({
      offsetDelta: i,
      timestampDelta: r.timestamp - spec.firstTimestamp,
      key: r.key,
      value: r.value,
      headers: kafkaHeaders(r.headers),
    }),
  );
  const batch = await RecordBatch({
    compression: spec.compression,
    firstOffset: Long.fromValue(spec.firstOffset),
    firstTimestamp: spec.firstTimestamp,
    maxTimestamp: Math.max(...spec.records.map((r) => r.timestamp)),
    partitionLeaderEpoch: spec.partitionLeaderEpoch,
    lastOffsetDelta: spec.records.length - 1,
    transactional: spec.transactional,
    producerId: Long.fromValue(spec.producerId),
    producerEpoch: spec.producerEpoch,
    firstSequence: spec.firstSequence,
    records,
  });
  return Buffer.from(batch.buffer);
}

export function kafkajsDecode(batch: Buffer): Promise<KafkaDecodedBatch> {
  return decodeKafkaBatch(new KafkaDecoder(batch));
}

/** kafkajs's own CRC-32C (pure JS), an implementation independent of @node-rs/crc32. */
export function kafkajsCrc32c(bytes: Buffer): number {
  return kafkaCrc32C(bytes);
}

/** kafkajs's Java-compatible murmur2 (its DefaultPartitioner's hash). */
export function kafkajsMurmur2(key: Buffer): number {
  return kafkaMurmur2Fn(key);
}

/** The partition kafkajs's DefaultPartitioner picks for a keyed message. */
export function kafkajsPartition(key: Buffer, partitionCount: number): number {
  const partitioner = kafkaPartitioners.DefaultPartitioner();
  const partitionMetadata = Array.from({ length: partitionCount }, (_, i) => ({ partitionId: i, leader: 0 }));
  return partitioner({ topic: 't', partitionMetadata, message: { key } });
}

/** A header list in the shape kafkajs decodes to, for comparing with ours. */
export function headersAsKafkaObject(headers: readonly Header[]): KafkaHeaders {
  return kafkaHeaders(headers);
}
