// Kafka RecordBatch v2 (magic 2), byte for byte. The broker stores and serves these bytes
// as they are; only the base offset and partition leader epoch are patched in place, and
// both lie outside the CRC.
//
//   offset  size  field
//        0     8  baseOffset            int64
//        8     4  batchLength           int32   bytes after this field
//       12     4  partitionLeaderEpoch  int32
//       16     1  magic                 int8    = 2
//       17     4  crc                   uint32  CRC-32C of bytes 21..end
//       21     2  attributes            int16   bits 0-2 codec, 3 timestamp type,
//                                               4 transactional, 5 control
//       23     4  lastOffsetDelta       int32
//       27     8  baseTimestamp         int64
//       35     8  maxTimestamp          int64
//       43     8  producerId            int64
//       51     2  producerEpoch         int16
//       53     4  baseSequence          int32
//       57     4  recordCount           int32
//       61     -  records (compressed as one block when codec != none)
//
//   Record:
//     length varint, attributes int8, timestampDelta varlong, offsetDelta varint,
//     keyLength varint (-1 = null), key, valueLength varint (-1 = null), value,
//     headerCount varint, [headerKeyLength varint, headerKey utf8,
//                          headerValueLength varint (-1 = null), headerValue]
//
// Varints are zigzag-encoded, as protobuf's sint32/sint64.

import { gunzipSync, gzipSync } from 'node:zlib';
import { crc32c } from '@node-rs/crc32';
import { DecodeError, Errors, TributaryError } from './errors.js';

export const BATCH_OVERHEAD = 61;
export const LOG_OVERHEAD = 12; // baseOffset + batchLength: what precedes the length's span
export const MAGIC = 2;

export const OFFSET_BASE = 0;
export const OFFSET_LENGTH = 8;
export const OFFSET_LEADER_EPOCH = 12;
export const OFFSET_MAGIC = 16;
export const OFFSET_CRC = 17;
export const OFFSET_ATTRIBUTES = 21;
export const OFFSET_LAST_OFFSET_DELTA = 23;
export const OFFSET_BASE_TIMESTAMP = 27;
export const OFFSET_MAX_TIMESTAMP = 35;
export const OFFSET_PRODUCER_ID = 43;
export const OFFSET_PRODUCER_EPOCH = 51;
export const OFFSET_BASE_SEQUENCE = 53;
export const OFFSET_RECORD_COUNT = 57;

export enum Compression {
  None = 0,
  Gzip = 1,
  Snappy = 2,
  Lz4 = 3,
  Zstd = 4,
}

export enum TimestampType {
  CreateTime = 0,
  LogAppendTime = 1,
}

const ATTR_CODEC_MASK = 0x07;
const ATTR_TIMESTAMP_TYPE = 0x08;
const ATTR_TRANSACTIONAL = 0x10;
const ATTR_CONTROL = 0x20;

export type Header = [name: string, value: Uint8Array | null];

export interface Record {
  key?: Uint8Array | null;
  value: Uint8Array | null;
  /** Milliseconds since the epoch. Defaults to the batch's base timestamp. */
  timestamp?: number;
  headers?: Header[];
}

export interface DecodedRecord {
  offset: number;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: Header[];
}

export interface BatchHeader {
  baseOffset: number;
  batchLength: number;
  partitionLeaderEpoch: number;
  magic: number;
  crc: number;
  attributes: number;
  compression: Compression;
  timestampType: TimestampType;
  isTransactional: boolean;
  isControl: boolean;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
}

export interface EncodeOptions {
  baseOffset?: number;
  partitionLeaderEpoch?: number;
  compression?: Compression;
  /** Used for records without a timestamp. Defaults to Date.now(). */
  timestamp?: number;
  timestampType?: TimestampType;
  producerId?: number;
  producerEpoch?: number;
  baseSequence?: number;
  isTransactional?: boolean;
}

// ---------------------------------------------------------------------------------------
// 64-bit integers as JS numbers. Offsets, timestamps and producer ids stay far below 2^53
// in practice; a value outside the safe range on decode is refused rather than rounded.

const TWO_32 = 4294967296;

export function writeInt64(buf: Buffer, at: number, n: number): void {
  buf.writeInt32BE(Math.floor(n / TWO_32), at);
  buf.writeUInt32BE(n >>> 0, at + 4);
}

export function readInt64(buf: Buffer, at: number): number {
  const hi = buf.readInt32BE(at);
  const lo = buf.readUInt32BE(at + 4);
  const n = hi * TWO_32 + lo;
  if (!Number.isSafeInteger(n)) {
    throw new DecodeError(Errors.CORRUPT_BATCH, 'int64 outside the safe integer range', at);
  }
  return n;
}

// ---------------------------------------------------------------------------------------
// Zigzag varints.

export function varintSize(n: number): number {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  let size = 1;
  while (z >= 128) {
    z = Math.floor(z / 128);
    size++;
  }
  return size;
}

export function writeVarint(buf: Buffer, at: number, n: number): number {
  if (n >= -0x40000000 && n < 0x40000000) {
    let z = (n << 1) ^ (n >> 31);
    z >>>= 0;
    while (z >= 0x80) {
      buf[at++] = (z & 0x7f) | 0x80;
      z >>>= 7;
    }
    buf[at++] = z;
    return at;
  }
  // Wide values (timestamp deltas of far-apart records): arithmetic, not 32-bit ops.
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  while (z >= 128) {
    buf[at++] = (z % 128) | 0x80;
    z = Math.floor(z / 128);
  }
  buf[at++] = z;
  return at;
}

/** A bounds-checked cursor: every read past `end` is a typed DecodeError, never a crash. */
class Reader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
  ) {}

  fail(detail: string): never {
    throw new DecodeError(Errors.CORRUPT_BATCH, detail, this.pos);
  }

  varint(): number {
    const buf = this.buf;
    let pos = this.pos;
    let z = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= this.end) this.fail('truncated varint');
      const b = buf[pos++];
      z += (b & 0x7f) * mul;
      if (b < 0x80) {
        this.pos = pos;
        if (!Number.isSafeInteger(z)) this.fail('varint outside the safe integer range');
        return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
      }
      mul *= 128;
    }
    return this.fail('varint longer than 10 bytes');
  }

  int8(): number {
    if (this.pos + 1 > this.end) this.fail('truncated record');
    return this.buf.readInt8(this.pos++);
  }

  bytes(len: number): Buffer | null {
    if (len === -1) return null;
    if (len < -1) this.fail(`negative length ${len}`);
    if (this.pos + len > this.end) this.fail(`length ${len} runs past the end`);
    const b = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return b;
  }
}

// ---------------------------------------------------------------------------------------
// Encoding.

function recordBodySize(r: Record, timestampDelta: number, offsetDelta: number): number {
  let size = 1 + varintSize(timestampDelta) + varintSize(offsetDelta);
  const key = r.key ?? null;
  size += key === null ? 1 : varintSize(key.length) + key.length;
  const value = r.value;
  size += value === null ? 1 : varintSize(value.length) + value.length;
  const headers = r.headers;
  if (headers === undefined || headers.length === 0) return size + 1;
  size += varintSize(headers.length);
  for (const [name, hv] of headers) {
    const nameLen = Buffer.byteLength(name, 'utf8');
    size += varintSize(nameLen) + nameLen;
    size += hv === null ? 1 : varintSize(hv.length) + hv.length;
  }
  return size;
}

function writeBytes(buf: Buffer, at: number, b: Uint8Array | null | undefined): number {
  if (b === null || b === undefined) return writeVarint(buf, at, -1);
  at = writeVarint(buf, at, b.length);
  buf.set(b, at);
  return at + b.length;
}

function encodeRecords(records: readonly Record[], baseTimestamp: number): Buffer {
  const sizes = new Array<number>(records.length);
  let total = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const body = recordBodySize(r, (r.timestamp ?? baseTimestamp) - baseTimestamp, i);
    sizes[i] = body;
    total += varintSize(body) + body;
  }
  const buf = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    at = writeVarint(buf, at, sizes[i]);
    buf[at++] = 0; // record attributes: unused in v2
    at = writeVarint(buf, at, (r.timestamp ?? baseTimestamp) - baseTimestamp);
    at = writeVarint(buf, at, i);
    at = writeBytes(buf, at, r.key);
    at = writeBytes(buf, at, r.value);
    const headers = r.headers;
    if (headers === undefined || headers.length === 0) {
      buf[at++] = 0;
      continue;
    }
    at = writeVarint(buf, at, headers.length);
    for (const [name, hv] of headers) {
      at = writeBytes(buf, at, Buffer.from(name, 'utf8'));
      at = writeBytes(buf, at, hv);
    }
  }
  if (at !== total) throw new Error(`assertion failed: encoded ${at} bytes, sized ${total}`);
  return buf;
}

export function compress(codec: Compression, raw: Buffer): Buffer {
  switch (codec) {
    case Compression.None:
      return raw;
    case Compression.Gzip:
      return gzipSync(raw, { level: 1 });
    default:
      throw new TributaryError(Errors.INVALID_CONFIG, `compression codec ${Compression[codec] ?? codec} is not supported`);
  }
}

function decompress(codec: Compression, data: Buffer, at: number): Buffer {
  switch (codec) {
    case Compression.None:
      return data;
    case Compression.Gzip:
      try {
        return gunzipSync(data);
      } catch (err) {
        throw new DecodeError(Errors.CORRUPT_BATCH, 'gzip payload does not decompress', at, { cause: err });
      }
    default:
      throw new DecodeError(Errors.CORRUPT_BATCH, `compression codec ${codec} is not supported by this client`, at);
  }
}

/** Encodes records into one RecordBatch v2. */
export function encodeBatch(records: readonly Record[], options: EncodeOptions = {}): Buffer {
  if (records.length === 0) throw new TributaryError(Errors.INVALID_REQUEST, 'a batch needs at least one record');
  let baseTimestamp = Number.POSITIVE_INFINITY;
  let maxTimestamp = Number.NEGATIVE_INFINITY;
  const fallback = options.timestamp ?? Date.now();
  for (const r of records) {
    const ts = r.timestamp ?? fallback;
    if (ts < baseTimestamp) baseTimestamp = ts;
    if (ts > maxTimestamp) maxTimestamp = ts;
  }
  // Kafka's producer takes the first record's timestamp as the base; the smallest keeps
  // every delta non-negative, which readers of older formats prefer. Both are valid.
  const withTs = records.map((r) => (r.timestamp === undefined ? { ...r, timestamp: fallback } : r));
  const codec = options.compression ?? Compression.None;
  const payload = compress(codec, encodeRecords(withTs, baseTimestamp));
  const buf = Buffer.allocUnsafe(BATCH_OVERHEAD + payload.length);
  writeInt64(buf, OFFSET_BASE, options.baseOffset ?? 0);
  buf.writeInt32BE(buf.length - LOG_OVERHEAD, OFFSET_LENGTH);
  buf.writeInt32BE(options.partitionLeaderEpoch ?? -1, OFFSET_LEADER_EPOCH);
  buf.writeInt8(MAGIC, OFFSET_MAGIC);
  let attributes = codec & ATTR_CODEC_MASK;
  if (options.timestampType === TimestampType.LogAppendTime) attributes |= ATTR_TIMESTAMP_TYPE;
  if (options.isTransactional) attributes |= ATTR_TRANSACTIONAL;
  buf.writeInt16BE(attributes, OFFSET_ATTRIBUTES);
  buf.writeInt32BE(records.length - 1, OFFSET_LAST_OFFSET_DELTA);
  writeInt64(buf, OFFSET_BASE_TIMESTAMP, baseTimestamp);
  writeInt64(buf, OFFSET_MAX_TIMESTAMP, maxTimestamp);
  writeInt64(buf, OFFSET_PRODUCER_ID, options.producerId ?? -1);
  buf.writeInt16BE(options.producerEpoch ?? -1, OFFSET_PRODUCER_EPOCH);
  buf.writeInt32BE(options.baseSequence ?? -1, OFFSET_BASE_SEQUENCE);
  buf.writeInt32BE(records.length, OFFSET_RECORD_COUNT);
  payload.copy(buf, BATCH_OVERHEAD);
  buf.writeUInt32BE(crc32c(buf.subarray(OFFSET_ATTRIBUTES)), OFFSET_CRC);
  return buf;
}

// ---------------------------------------------------------------------------------------
// Header access and validation: what the broker does, with no per-record work.

/** Total size of the batch starting at `at`, or -1 when fewer than 12 bytes remain. */
export function batchSizeAt(buf: Buffer, at = 0): number {
  if (buf.length - at < LOG_OVERHEAD) return -1;
  return LOG_OVERHEAD + buf.readInt32BE(at + OFFSET_LENGTH);
}

export function readBatchHeader(buf: Buffer, at = 0): BatchHeader {
  if (buf.length - at < BATCH_OVERHEAD) {
    throw new DecodeError(Errors.CORRUPT_BATCH, `batch header needs ${BATCH_OVERHEAD} bytes, got ${buf.length - at}`, at);
  }
  const attributes = buf.readInt16BE(at + OFFSET_ATTRIBUTES);
  return {
    baseOffset: readInt64(buf, at + OFFSET_BASE),
    batchLength: buf.readInt32BE(at + OFFSET_LENGTH),
    partitionLeaderEpoch: buf.readInt32BE(at + OFFSET_LEADER_EPOCH),
    magic: buf.readInt8(at + OFFSET_MAGIC),
    crc: buf.readUInt32BE(at + OFFSET_CRC),
    attributes,
    compression: attributes & ATTR_CODEC_MASK,
    timestampType: attributes & ATTR_TIMESTAMP_TYPE ? TimestampType.LogAppendTime : TimestampType.CreateTime,
    isTransactional: (attributes & ATTR_TRANSACTIONAL) !== 0,
    isControl: (attributes & ATTR_CONTROL) !== 0,
    lastOffsetDelta: buf.readInt32BE(at + OFFSET_LAST_OFFSET_DELTA),
    baseTimestamp: readInt64(buf, at + OFFSET_BASE_TIMESTAMP),
    maxTimestamp: readInt64(buf, at + OFFSET_MAX_TIMESTAMP),
    producerId: readInt64(buf, at + OFFSET_PRODUCER_ID),
    producerEpoch: buf.readInt16BE(at + OFFSET_PRODUCER_EPOCH),
    baseSequence: buf.readInt32BE(at + OFFSET_BASE_SEQUENCE),
    recordCount: buf.readInt32BE(at + OFFSET_RECORD_COUNT),
  };
}

export function computeCrc(batch: Buffer): number {
  return crc32c(batch.subarray(OFFSET_ATTRIBUTES));
}

/**
 * Checks one whole batch as the broker must before storing it or after reading it from
 * disk: exact length, magic, CRC, and a record count that matches the offset span. Throws a
 * DecodeError(CORRUPT_BATCH) naming what is wrong.
 */
export function validateBatch(batch: Buffer): void {
  if (batch.length < BATCH_OVERHEAD) {
    throw new DecodeError(Errors.CORRUPT_BATCH, `batch of ${batch.length} bytes is shorter than its ${BATCH_OVERHEAD}-byte header`, 0);
  }
  const declared = LOG_OVERHEAD + batch.readInt32BE(OFFSET_LENGTH);
  if (declared !== batch.length) {
    throw new DecodeError(Errors.CORRUPT_BATCH, `batch length field says ${declared} bytes, frame holds ${batch.length}`, OFFSET_LENGTH);
  }
  const magic = batch.readInt8(OFFSET_MAGIC);
  if (magic !== MAGIC) throw new DecodeError(Errors.CORRUPT_BATCH, `magic ${magic}, expected ${MAGIC}`, OFFSET_MAGIC);
  const stored = batch.readUInt32BE(OFFSET_CRC);
  const actual = computeCrc(batch);
  if (stored !== actual) {
    throw new DecodeError(Errors.CORRUPT_BATCH, `CRC-32C mismatch: stored ${hex32(stored)}, computed ${hex32(actual)}`, OFFSET_CRC);
  }
  const count = batch.readInt32BE(OFFSET_RECORD_COUNT);
  const lastOffsetDelta = batch.readInt32BE(OFFSET_LAST_OFFSET_DELTA);
  if (count <= 0 || lastOffsetDelta < count - 1) {
    throw new DecodeError(Errors.CORRUPT_BATCH, `record count ${count} does not fit last offset delta ${lastOffsetDelta}`, OFFSET_RECORD_COUNT);
  }
}

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/** Patches the base offset in place; outside the CRC, so the CRC stays valid. */
export function setBaseOffset(batch: Buffer, baseOffset: number, at = 0): void {
  writeInt64(batch, at + OFFSET_BASE, baseOffset);
}

export function setPartitionLeaderEpoch(batch: Buffer, epoch: number, at = 0): void {
  batch.writeInt32BE(epoch, at + OFFSET_LEADER_EPOCH);
}

export function lastOffsetOf(batch: Buffer, at = 0): number {
  return readInt64(batch, at + OFFSET_BASE) + batch.readInt32BE(at + OFFSET_LAST_OFFSET_DELTA);
}

// ---------------------------------------------------------------------------------------
// Full decoding: what clients do.

export interface DecodedBatch {
  header: BatchHeader;
  records: DecodedRecord[];
}

/** Decodes and CRC-checks one whole batch. */
export function decodeBatch(batch: Buffer): DecodedBatch {
  validateBatch(batch);
  const header = readBatchHeader(batch);
  const payload = decompress(header.compression, batch.subarray(BATCH_OVERHEAD), BATCH_OVERHEAD);
  const base = header.compression === Compression.None ? BATCH_OVERHEAD : 0;
  const source = header.compression === Compression.None ? batch : payload;
  const reader = new Reader(source, base, source.length);
  const records = new Array<DecodedRecord>(header.recordCount);
  for (let i = 0; i < header.recordCount; i++) {
    records[i] = readRecord(reader, header);
  }
  if (reader.pos !== reader.end) reader.fail(`${reader.end - reader.pos} bytes left after ${header.recordCount} records`);
  return { header, records };
}

function readRecord(reader: Reader, header: BatchHeader): DecodedRecord {
  const length = reader.varint();
  if (length < 0) reader.fail(`negative record length ${length}`);
  const end = reader.pos + length;
  if (end > reader.end) reader.fail(`record length ${length} runs past the end`);
  reader.int8();
  const timestampDelta = reader.varint();
  const offsetDelta = reader.varint();
  if (offsetDelta < 0 || offsetDelta > header.lastOffsetDelta) reader.fail(`offset delta ${offsetDelta} outside the batch`);
  const key = reader.bytes(reader.varint());
  const value = reader.bytes(reader.varint());
  const headerCount = reader.varint();
  if (headerCount < 0 || headerCount > end - reader.pos) reader.fail(`bad header count ${headerCount}`);
  const headers: Header[] = headerCount === 0 ? EMPTY_HEADERS : new Array<Header>(headerCount);
  for (let h = 0; h < headerCount; h++) {
    const name = reader.bytes(reader.varint());
    if (name === null) reader.fail('null header name');
    headers[h] = [name.toString('utf8'), reader.bytes(reader.varint())];
  }
  if (reader.pos !== end) reader.fail(`record declared ${length} bytes, used ${length - (end - reader.pos)}`);
  const timestamp = header.timestampType === TimestampType.LogAppendTime ? header.maxTimestamp : header.baseTimestamp + timestampDelta;
  return { offset: header.baseOffset + offsetDelta, timestamp, key, value, headers };
}

const EMPTY_HEADERS: Header[] = [];
Object.freeze(EMPTY_HEADERS);

/**
 * Splits concatenated batches (a fetch response's records) into whole batches. A trailing
 * partial batch, which Kafka allows when a fetch is cut at its byte limit, is skipped.
 */
export function splitBatches(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const size = batchSizeAt(buf, at);
    if (size < 0 || at + size > buf.length) break;
    if (size < BATCH_OVERHEAD) throw new DecodeError(Errors.CORRUPT_BATCH, `batch length ${size} below the header size`, at);
    out.push(buf.subarray(at, at + size));
    at += size;
  }
  return out;
}
