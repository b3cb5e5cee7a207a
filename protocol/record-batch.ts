// Kafka RecordBatch v2 (magic 2), byte for byte. The broker stores and serves these bytes
// as they are; only the base offset and partition leader epoch are patched in place, and
// both lie outside the CRC. It reads the records only of a compressed batch, once, when it
// is produced (validateRecords).
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

import { kMaxLength } from 'node:buffer';
import { gunzipSync, gzipSync } from 'node:zlib';
import { crc32c } from '@node-rs/crc32';
import { AssertionError, DecodeError, Errors, InflateBoundError, TributaryError } from './errors.js';

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
  if (n >= -0x40000000 && n < 0x40000000) {
    const z = ((n << 1) ^ (n >> 31)) >>> 0;
    return z < 0x80 ? 1 : z < 0x4000 ? 2 : z < 0x200000 ? 3 : z < 0x10000000 ? 4 : 5;
  }
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
  // Wide values (timestamp deltas of far-apart records), rare: BigInt, because the zigzag
  // of a negative number below -2^52 is an odd number past 2^53 that a double cannot hold.
  let z = n >= 0 ? BigInt(n) << 1n : (BigInt(-n) << 1n) - 1n;
  while (z >= 0x80n) {
    buf[at++] = Number(z & 0x7fn) | 0x80;
    z >>= 7n;
  }
  buf[at++] = Number(z);
  return at;
}

/** Header indexes whose last name a Reader keeps for reuse. */
const HEADER_NAMES_CACHED = 16;

/**
 * A bounds-checked cursor: every read past `limit` is a typed DecodeError, never a crash.
 * While a record is read, `limit` is that record's end, so a field that runs past its
 * record is caught where it happens rather than by whatever the next record makes of it.
 */
class Reader {
  limit: number;
  /** The last ASCII header name read at each header index (see `headerName`). */
  readonly names: string[] = [];
  /** The offset delta of the last record read, as written (the record's offset may round). */
  offsetDelta = 0;

  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
  ) {
    this.limit = end;
  }

  fail(detail: string): never {
    throw new DecodeError(Errors.CORRUPT_BATCH, detail, this.pos);
  }

  varint(): number {
    const buf = this.buf;
    let pos = this.pos;
    if (pos >= this.limit) this.fail('truncated varint');
    const first = buf[pos];
    // One byte (-64..63) is the common case: attributes-sized fields, small lengths.
    if (first < 0x80) {
      this.pos = pos + 1;
      return (first >>> 1) ^ -(first & 1);
    }
    let z = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= this.limit) this.fail('truncated varint');
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

  /**
   * A header name, `len` bytes of UTF-8. Names repeat in every record of a batch, so the
   * last ASCII name seen at each header index is kept and reused when the bytes match:
   * comparing a few bytes is far cheaper than making a string.
   */
  headerName(len: number, index: number): string {
    if (len < 0) this.fail(len === -1 ? 'null header name' : `negative length ${len}`);
    const start = this.pos;
    if (start + len > this.limit) this.fail(`length ${len} runs past the end of the record`);
    this.pos = start + len;
    const buf = this.buf;
    const cached = this.names[index];
    if (cached !== undefined && cached.length === len) {
      let same = true;
      for (let i = 0; i < len; i++) {
        if (buf[start + i] !== cached.charCodeAt(i)) {
          same = false;
          break;
        }
      }
      if (same) return cached;
    }
    if (len > 64) return buf.toString('utf8', start, start + len);
    const codes = new Array<number>(len);
    for (let i = 0; i < len; i++) {
      const c = buf[start + i];
      if (c >= 0x80) return buf.toString('utf8', start, start + len);
      codes[i] = c;
    }
    const name = String.fromCharCode.apply(null, codes);
    if (index < HEADER_NAMES_CACHED) this.names[index] = name;
    return name;
  }

  skip1(): void {
    if (this.pos >= this.limit) this.fail('truncated record');
    this.pos++;
  }

  /** `len` bytes as a view into the batch (no copy); -1 is null. */
  bytes(len: number): Buffer | null {
    if (len === -1) return null;
    if (len < -1) this.fail(`negative length ${len}`);
    if (this.pos + len > this.limit) this.fail(`length ${len} runs past the end of the record`);
    const b = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return b;
  }
}

// ---------------------------------------------------------------------------------------
// Encoding. Two passes over the records: size each one, then write into one buffer that
// holds the header too (uncompressed), so no record is copied twice.

// Header names are short and almost always ASCII. A JS loop over them is several times
// faster than Buffer.byteLength and buf.write, which cross into C++ for each name.

/** UTF-8 length of `s`: its length when it is all ASCII (the common case), else measured. */
function utf8Length(s: string): number {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, 'utf8');
  }
  return n;
}

/** Writes `s` as UTF-8 at `at`, given its UTF-8 length; returns the position after it. */
function writeUtf8(buf: Buffer, at: number, s: string, byteLength: number): number {
  // A UTF-8 length equal to the UTF-16 length means every character is ASCII.
  if (byteLength === s.length) {
    for (let i = 0; i < byteLength; i++) buf[at + i] = s.charCodeAt(i);
    return at + byteLength;
  }
  return at + buf.write(s, at, byteLength, 'utf8');
}

/** Size of a record's body: what its length varint counts. */
function recordBodySize(r: Record, timestampDelta: number, offsetDelta: number): number {
  let size = 1 + varintSize(timestampDelta) + varintSize(offsetDelta);
  const key = r.key;
  size += key === null || key === undefined ? 1 : varintSize(key.length) + key.length;
  const value = r.value;
  size += value === null ? 1 : varintSize(value.length) + value.length;
  const headers = r.headers;
  if (headers === undefined || headers.length === 0) return size + 1;
  size += varintSize(headers.length);
  for (let h = 0; h < headers.length; h++) {
    const [name, hv] = headers[h];
    const nameLen = utf8Length(name);
    size += varintSize(nameLen) + nameLen;
    size += hv === null ? 1 : varintSize(hv.length) + hv.length;
  }
  return size;
}

function writeBytes(buf: Buffer, at: number, b: Uint8Array | null | undefined): number {
  if (b === null || b === undefined) {
    buf[at] = 1; // zigzag(-1)
    return at + 1;
  }
  const len = b.length;
  at = writeVarint(buf, at, len);
  // A byte loop beats TypedArray.set's call overhead for the short keys most records have.
  if (len <= 16) {
    for (let i = 0; i < len; i++) buf[at + i] = b[i];
  } else {
    buf.set(b, at);
  }
  return at + len;
}

/** Records' encoded sizes (body sizes in `bodySizes`); total bytes including length varints. */
function sizeRecords(records: readonly Record[], baseTimestamp: number, fallback: number, bodySizes: number[]): number {
  let total = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const body = recordBodySize(r, (r.timestamp ?? fallback) - baseTimestamp, i);
    bodySizes[i] = body;
    total += varintSize(body) + body;
  }
  return total;
}

function writeRecords(buf: Buffer, at: number, records: readonly Record[], baseTimestamp: number, fallback: number, bodySizes: number[]): number {
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    at = writeVarint(buf, at, bodySizes[i]);
    buf[at++] = 0; // record attributes: unused in v2
    at = writeVarint(buf, at, (r.timestamp ?? fallback) - baseTimestamp);
    at = writeVarint(buf, at, i);
    at = writeBytes(buf, at, r.key);
    at = writeBytes(buf, at, r.value);
    const headers = r.headers;
    if (headers === undefined || headers.length === 0) {
      buf[at++] = 0;
      continue;
    }
    at = writeVarint(buf, at, headers.length);
    for (let h = 0; h < headers.length; h++) {
      const [name, hv] = headers[h];
      // Written straight from the string: no intermediate Buffer per header name.
      const nameLen = utf8Length(name);
      at = writeVarint(buf, at, nameLen);
      at = writeUtf8(buf, at, name, nameLen);
      at = writeBytes(buf, at, hv);
    }
  }
  return at;
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

/**
 * Inflates a compressed batch's records, at most `bytesMax` of them (`boundName` is how the
 * error names that bound). zlib stops inflating once its output passes the bound, so a few
 * KiB of gzip that would inflate to gigabytes cost at most `bytesMax` of memory and time.
 */
function decompress(codec: Compression, data: Buffer, at: number, bytesMax: number, boundName: string): Buffer {
  switch (codec) {
    case Compression.None:
      return data;
    case Compression.Gzip:
      // zlib takes no bound below 1; a bound of 0 inflates nothing.
      if (bytesMax < 1) throw new InflateBoundError(`gzip payload decompresses past ${bytesMax} bytes (${boundName})`, bytesMax, at);
      try {
        return gunzipSync(data, { maxOutputLength: bytesMax });
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
          throw new InflateBoundError(`gzip payload decompresses past ${bytesMax} bytes (${boundName})`, bytesMax, at, { cause: err });
        }
        throw new DecodeError(Errors.CORRUPT_BATCH, 'gzip payload does not decompress', at, { cause: err });
      }
    default:
      throw new DecodeError(Errors.CORRUPT_BATCH, `compression codec ${codec} is not supported by this client`, at);
  }
}

/**
 * Codecs Node's zlib can inflate are the only ones whose records a node can check: snappy,
 * lz4 and zstd are UNSUPPORTED_COMPRESSION_TYPE (Kafka's code for a codec a broker refuses).
 */
export function checkCodecInflatable(codec: Compression): void {
  // Codecs Kafka does not define are corrupt, not unsupported: validateBatch refuses them.
  if (codec === Compression.None || codec === Compression.Gzip || codec > CODEC_MAX) return;
  const name = Compression[codec]?.toLowerCase() ?? String(codec);
  throw new DecodeError(
    Errors.UNSUPPORTED_COMPRESSION_TYPE,
    `compression codec ${name} (${codec}) cannot be inflated on this node, so its records cannot be checked; send gzip or uncompressed batches`,
    OFFSET_ATTRIBUTES,
  );
}

/**
 * The records of a validated gzip batch, inflated: at most `bytesMax` bytes, else an
 * InflateBoundError (CORRUPT_BATCH). For callers that take records apart themselves (the
 * log cleaner); everyone else decodes with decodeBatch.
 */
export function inflateRecords(batch: Buffer, bytesMax: number): Buffer {
  const codec = compressionOf(batch);
  if (codec === Compression.None) throw new AssertionError('inflateRecords of an uncompressed batch');
  return decompress(codec, batch.subarray(BATCH_OVERHEAD), BATCH_OVERHEAD, Math.min(bytesMax, kMaxLength), 'bytesMax');
}

/** Encodes records into one RecordBatch v2. */
export function encodeBatch(records: readonly Record[], options: EncodeOptions = {}): Buffer {
  if (records.length === 0) throw new TributaryError(Errors.INVALID_REQUEST, 'a batch needs at least one record');
  let baseTimestamp = Number.POSITIVE_INFINITY;
  let maxTimestamp = Number.NEGATIVE_INFINITY;
  const fallback = options.timestamp ?? Date.now();
  for (let i = 0; i < records.length; i++) {
    const ts = records[i].timestamp ?? fallback;
    // A fraction or NaN would be written as a wrong delta without a word; refuse it.
    if (!Number.isSafeInteger(ts)) {
      throw new TributaryError(Errors.INVALID_REQUEST, `record ${i} timestamp ${ts} is not integer milliseconds`);
    }
    if (ts < baseTimestamp) baseTimestamp = ts;
    if (ts > maxTimestamp) maxTimestamp = ts;
  }
  // Kafka's Java producer takes the first record's timestamp as the base; the smallest keeps
  // every delta non-negative (kafkajs's producer does the same). Both are valid batches.
  const codec = options.compression ?? Compression.None;
  const bodySizes = new Array<number>(records.length);
  const recordsBytes = sizeRecords(records, baseTimestamp, fallback, bodySizes);
  let buf: Buffer;
  if (codec === Compression.None) {
    buf = Buffer.allocUnsafe(BATCH_OVERHEAD + recordsBytes);
    const end = writeRecords(buf, BATCH_OVERHEAD, records, baseTimestamp, fallback, bodySizes);
    if (!(end === buf.length)) throw new AssertionError(`encoded ${end - BATCH_OVERHEAD} record bytes, sized ${recordsBytes}`);
  } else {
    const raw = Buffer.allocUnsafe(recordsBytes);
    const end = writeRecords(raw, 0, records, baseTimestamp, fallback, bodySizes);
    if (!(end === recordsBytes)) throw new AssertionError(`encoded ${end} record bytes, sized ${recordsBytes}`);
    const payload = compress(codec, raw);
    buf = Buffer.allocUnsafe(BATCH_OVERHEAD + payload.length);
    payload.copy(buf, BATCH_OVERHEAD);
  }
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
  buf.writeUInt32BE(crc32c(buf.subarray(OFFSET_ATTRIBUTES)), OFFSET_CRC);
  return buf;
}

// ---------------------------------------------------------------------------------------
// Header access and validation: what the broker does to every batch, with no per-record
// work (validateRecords, further down, is the one check that reads records).

/**
 * Total size of the batch starting at `at`, read from its length field: -1 when fewer than
 * 12 bytes remain (read more), else LOG_OVERHEAD + length. A result below BATCH_OVERHEAD
 * means a corrupt length field; a negative length answers 0, so -1 always means "need more
 * bytes" and a caller that advances by the result must check it against BATCH_OVERHEAD.
 */
export function batchSizeAt(buf: Buffer, at = 0): number {
  if (buf.length - at < LOG_OVERHEAD) return -1;
  const length = buf.readInt32BE(at + OFFSET_LENGTH);
  return length < 0 ? 0 : LOG_OVERHEAD + length;
}

/** The codec of the batch at `at`, from its attributes: all a caller may need of its header. */
export function compressionOf(buf: Buffer, at = 0): Compression {
  return buf.readInt16BE(at + OFFSET_ATTRIBUTES) & ATTR_CODEC_MASK;
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
 * The smallest record: length, attributes, timestamp delta, offset delta, key length,
 * value length and header count, one byte each. Bounds a claimed record count by the bytes
 * present before anything is allocated for it, or any offset is given to it.
 */
const RECORD_BYTES_MIN = 7;

/** What decodeBatch inflates a compressed batch to at most, unless told otherwise. */
export const DECOMPRESSED_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;

/**
 * The most records a compressed batch may claim. Its payload cannot bound the count as an
 * uncompressed one does: deflate reaches ~1000:1 and zstd far more, so a few bytes can
 * truly hold millions of empty records. Kafka bounds it only by decompressing, as the node
 * does at produce (validateRecords, within max.message.bytes); this header-only bound is
 * what a client can read: every record takes at least 7 bytes once inflated, and
 * decodeBatch inflates at most 64 MiB by default, so a batch claiming more than 64 MiB / 7
 * (~9.6 million) records could never be consumed by a default client. Refusing it before
 * anything is inflated stops one small batch from costing an inflate at all.
 */
export const COMPRESSED_RECORD_COUNT_MAX = Math.floor(DECOMPRESSED_BYTES_MAX_DEFAULT / RECORD_BYTES_MIN);

/** Codec values of attributes bits 0-2 that Kafka defines (none, gzip, snappy, lz4, zstd). */
const CODEC_MAX = Compression.Zstd;

/**
 * Checks one whole batch as the broker must before storing it or after reading it from
 * disk: exact length, magic, CRC, a known codec, and a record count that matches the offset
 * span and that the batch's bytes could hold. Throws a DecodeError(CORRUPT_BATCH) naming
 * what is wrong. Codecs this code cannot decompress (snappy, lz4, zstd) pass: what a batch
 * read back from disk or a fetch needs is its header; a producer's batch also goes through
 * validateRecords, which refuses them.
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
  const codec = batch.readInt16BE(OFFSET_ATTRIBUTES) & ATTR_CODEC_MASK;
  if (codec > CODEC_MAX) throw new DecodeError(Errors.CORRUPT_BATCH, `unknown compression codec ${codec}`, OFFSET_ATTRIBUTES);
  const count = batch.readInt32BE(OFFSET_RECORD_COUNT);
  const lastOffsetDelta = batch.readInt32BE(OFFSET_LAST_OFFSET_DELTA);
  if (count <= 0 || lastOffsetDelta < count - 1) {
    throw new DecodeError(Errors.CORRUPT_BATCH, `record count ${count} does not fit last offset delta ${lastOffsetDelta}`, OFFSET_RECORD_COUNT);
  }
  if (codec === Compression.None) {
    const recordsBytes = batch.length - BATCH_OVERHEAD;
    if (count > recordsBytes / RECORD_BYTES_MIN) {
      throw new DecodeError(Errors.CORRUPT_BATCH, `record count ${count} cannot fit in ${recordsBytes} bytes`, OFFSET_RECORD_COUNT);
    }
  } else if (count > COMPRESSED_RECORD_COUNT_MAX) {
    throw new DecodeError(
      Errors.CORRUPT_BATCH,
      `record count ${count} of a compressed batch is above ${COMPRESSED_RECORD_COUNT_MAX}, what ${DECOMPRESSED_BYTES_MAX_DEFAULT} bytes could hold`,
      OFFSET_RECORD_COUNT,
    );
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
  /** Bytes the records took once inflated; 0 for an uncompressed batch (nothing inflated). */
  inflatedBytes: number;
}

export interface DecodeBatchOptions {
  /**
   * Bytes a compressed batch may inflate to; past it the batch is CORRUPT_BATCH (an
   * InflateBoundError). Default DECOMPRESSED_BYTES_MAX_DEFAULT (64 MiB).
   */
  decompressedBytesMax?: number;
  /**
   * The caller ran validateBatch on exactly these bytes already (a log's read checks each
   * batch it serves), so the CRC is not computed a second time.
   */
  validated?: boolean;
}

/**
 * Decodes and CRC-checks one whole batch. Keys, values and header values of an
 * uncompressed batch are views into `batch`, not copies: they change if its memory is
 * reused.
 */
export function decodeBatch(batch: Buffer, options: DecodeBatchOptions = {}): DecodedBatch {
  const decompressedBytesMax = options.decompressedBytesMax ?? DECOMPRESSED_BYTES_MAX_DEFAULT;
  if (!Number.isSafeInteger(decompressedBytesMax) || decompressedBytesMax < 1) {
    throw new TributaryError(Errors.INVALID_CONFIG, `decompressedBytesMax must be a positive integer, got ${decompressedBytesMax}`);
  }
  if (options.validated !== true) validateBatch(batch);
  const header = readBatchHeader(batch);
  const reader = recordsReader(batch, header, decompressedBytesMax, 'decompressedBytesMax');
  const count = header.recordCount;
  const records = new Array<DecodedRecord>(count);
  for (let i = 0; i < count; i++) {
    records[i] = readRecord(reader, header);
  }
  if (reader.pos !== reader.end) reader.fail(`${reader.end - reader.pos} bytes left after ${count} records`);
  return { header, records, inflatedBytes: inflatedBytesOf(header, reader) };
}

/**
 * A Reader over the records of a validated batch: the batch itself when uncompressed, else
 * its payload inflated within `bytesMax`. Refuses a record count the bytes cannot hold
 * before anything is allocated for the records.
 */
function recordsReader(batch: Buffer, header: BatchHeader, bytesMax: number, boundName: string): Reader {
  const compressed = header.compression !== Compression.None;
  // zlib refuses a limit above the largest Buffer; a batch that large cannot be held anyway.
  const source = compressed ? decompress(header.compression, batch.subarray(BATCH_OVERHEAD), BATCH_OVERHEAD, Math.min(bytesMax, kMaxLength), boundName) : batch;
  const reader = new Reader(source, compressed ? 0 : BATCH_OVERHEAD, source.length);
  const count = header.recordCount;
  if (count > (reader.end - reader.pos) / RECORD_BYTES_MIN) {
    reader.fail(`record count ${count} cannot fit in ${reader.end - reader.pos} bytes`);
  }
  return reader;
}

function inflatedBytesOf(header: BatchHeader, reader: Reader): number {
  return header.compression === Compression.None ? 0 : reader.end;
}

export interface RecordsCheck {
  /** Bytes inflated to check the records (0 for an uncompressed batch), for a caller's budget. */
  inflatedBytes: number;
}

/**
 * Kafka's LogValidator for a batch a producer sent, records and all: what a broker must know
 * of a compressed batch before storing it, since nothing reads its records again until a
 * consumer does. After validateBatch's checks (length, magic, CRC, count bounds), the
 * records are inflated once, at most `recordsBytesMax` (the topic's max.message.bytes) and at
 * most `inflateBytesMax` (what the caller may still spend; past it an InflateBoundError
 * whose boundBytes is below recordsBytesMax); they must all parse, `recordCount` of them,
 * numbered 0, 1, ..., count - 1 by their offset deltas as a producer writes them, the last
 * being the header's lastOffsetDelta, with no byte left over. Codecs Node's zlib cannot
 * inflate (snappy, lz4, zstd) cannot be checked: UNSUPPORTED_COMPRESSION_TYPE. Anything
 * else wrong is a DecodeError(CORRUPT_BATCH) saying what.
 */
export function validateRecords(batch: Buffer, recordsBytesMax: number, inflateBytesMax = recordsBytesMax): RecordsCheck {
  validateBatch(batch);
  const header = readBatchHeader(batch);
  checkCodecInflatable(header.compression);
  const bytesMax = Math.min(recordsBytesMax, inflateBytesMax);
  const boundName = bytesMax === recordsBytesMax ? 'max.message.bytes' : 'the bound this check was given';
  const reader = recordsReader(batch, header, bytesMax, boundName);
  const count = header.recordCount;
  for (let i = 0; i < count; i++) {
    if (reader.pos === reader.end) reader.fail(`the header counts ${count} records, the records hold ${i}`);
    readRecord(reader, header);
    const offsetDelta = reader.offsetDelta;
    if (offsetDelta !== i) {
      reader.fail(`record ${i} has offset delta ${offsetDelta} (${offsetDelta < i ? 'a repeat' : 'a gap'}): a producer numbers its records 0, 1, 2, ...`);
    }
  }
  if (reader.pos !== reader.end) reader.fail(`${reader.end - reader.pos} bytes left after the ${count} records the header counts`);
  if (header.lastOffsetDelta !== count - 1) {
    throw new DecodeError(Errors.CORRUPT_BATCH, `last offset delta ${header.lastOffsetDelta} in the header, the last record's is ${count - 1}`, OFFSET_LAST_OFFSET_DELTA);
  }
  return { inflatedBytes: inflatedBytesOf(header, reader) };
}

function readRecord(reader: Reader, header: BatchHeader): DecodedRecord {
  const length = reader.varint();
  if (length < 0) reader.fail(`negative record length ${length}`);
  const end = reader.pos + length;
  if (end > reader.end) reader.fail(`record length ${length} runs past the end`);
  reader.limit = end;
  reader.skip1(); // record attributes: unused in v2
  const timestampDelta = reader.varint();
  const offsetDelta = reader.varint();
  if (offsetDelta < 0 || offsetDelta > header.lastOffsetDelta) reader.fail(`offset delta ${offsetDelta} outside the batch`);
  reader.offsetDelta = offsetDelta;
  const key = reader.bytes(reader.varint());
  const value = reader.bytes(reader.varint());
  const headerCount = reader.varint();
  // Each header takes at least two bytes (two lengths): bounds the array before allocating.
  if (headerCount < 0 || headerCount * 2 > end - reader.pos) reader.fail(`bad header count ${headerCount}`);
  let headers = EMPTY_HEADERS;
  if (headerCount > 0) {
    headers = new Array<Header>(headerCount);
    for (let h = 0; h < headerCount; h++) {
      const name = reader.headerName(reader.varint(), h);
      headers[h] = [name, reader.bytes(reader.varint())];
    }
  }
  if (reader.pos !== end) reader.fail(`record declared ${length} bytes, used ${length - (end - reader.pos)}`);
  reader.limit = reader.end;
  // Under LogAppendTime the broker's append time, kept as the max timestamp, is every record's.
  const timestamp = header.timestampType === TimestampType.LogAppendTime ? header.maxTimestamp : header.baseTimestamp + timestampDelta;
  return { offset: header.baseOffset + offsetDelta, timestamp, key, value, headers };
}

const EMPTY_HEADERS: Header[] = [];
Object.freeze(EMPTY_HEADERS);

/**
 * Splits concatenated batches (a fetch response's records) into whole batches, as views
 * into `buf`. A trailing partial batch, which Kafka allows when a fetch is cut at its byte
 * limit, is skipped. A length field too small for a batch header is corrupt, not partial:
 * waiting for more bytes would never help.
 */
export function splitBatches(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (buf.length - at >= LOG_OVERHEAD) {
    const size = batchSizeAt(buf, at);
    if (size < BATCH_OVERHEAD) {
      throw new DecodeError(Errors.CORRUPT_BATCH, `batch length field ${buf.readInt32BE(at + OFFSET_LENGTH)} is below the header size`, at);
    }
    if (at + size > buf.length) break;
    out.push(buf.subarray(at, at + size));
    at += size;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Idempotent producers: sequences and the producer fields of an encoded batch.

/** Sequences are int32 and wrap from 2^31 - 1 to 0, as Kafka's do. */
const SEQUENCE_MAX = 0x7fffffff;

/** The sequence `by` records after `sequence`, wrapping from 2^31 - 1 to 0. */
export function nextSequence(sequence: number, by = 1): number {
  return (sequence + by) % (SEQUENCE_MAX + 1);
}

/**
 * Writes producer id, epoch and base sequence into an encoded batch and its CRC again (the
 * three fields lie inside the CRC). encodeBatch writes the first stamp; this restamps a
 * batch that moves to another producer id.
 */
export function stampBatch(batch: Buffer, producer: { producerId: number; producerEpoch: number }, baseSequence: number): void {
  writeInt64(batch, OFFSET_PRODUCER_ID, producer.producerId);
  batch.writeInt16BE(producer.producerEpoch, OFFSET_PRODUCER_EPOCH);
  batch.writeInt32BE(baseSequence, OFFSET_BASE_SEQUENCE);
  batch.writeUInt32BE(computeCrc(batch), OFFSET_CRC);
}
