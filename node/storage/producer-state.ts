// Idempotent producers, per partition: Kafka's ProducerStateManager. For every producer id
// seen on the partition the log keeps its epoch and its last 5 batches (first and last
// sequence, first and last offset), so that
//   - a batch resent after a lost answer is recognised and answered with where it was
//     written, not appended twice (DUPLICATE_SEQUENCE with the original offsets);
//   - a batch whose first sequence is not the next one expected is refused
//     (OUT_OF_ORDER_SEQUENCE): an earlier one is missing, and appending would reorder;
//   - a batch from an older epoch of the same producer id is refused (INVALID_PRODUCER_EPOCH).
//
// The state is derived from the log: it is snapshotted beside the segments (at every roll
// and at a clean close, as Kafka's `<offset>.snapshot`) and rebuilt at start from the newest
// snapshot at or below the log end, replaying the batch headers after it. A snapshot above
// the log end (the log was cut at recovery) is deleted, since it may remember batches the
// log no longer holds.
//
// A producer that has written nothing for PRODUCER_ID_EXPIRATION_MS (Kafka's
// producer.id.expiration.ms, one day) is forgotten when the next snapshot is taken, so a
// gateway that sees a new producer id at every device restart does not grow without end.
//
//   snapshot file = crc32c(u32 BE) || CBOR { v: 1, offset, producers: [[id, epoch, lastMs,
//                   [[firstSeq, lastSeq, firstOffset, lastOffset], ...]], ...] }

import { crc32c } from '@node-rs/crc32';
import { Decoder, Encoder } from 'cbor-x';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { nextSequence } from '../../protocol/record-batch.js';

export { nextSequence };

/** Batches remembered per producer and partition, as Kafka (and its producers' in-flight limit). */
export const PRODUCER_BATCHES_KEPT = 5;
const SNAPSHOT_VERSION = 1;
export const PRODUCER_ID_EXPIRATION_MS = 24 * 60 * 60 * 1000;
export const SNAPSHOT_SUFFIX = '.snapshot';
export const SNAPSHOT_FILE = /^(\d{20})\.snapshot$/;

export function snapshotFileName(offset: number): string {
  return `${String(offset).padStart(20, '0')}${SNAPSHOT_SUFFIX}`;
}

export interface ProducerBatch {
  firstSeq: number;
  lastSeq: number;
  firstOffset: number;
  lastOffset: number;
}

interface ProducerEntry {
  epoch: number;
  /** When it last appended (node clock, or the batch's timestamp when replayed). */
  lastMs: number;
  /** Oldest first, at most PRODUCER_BATCHES_KEPT. */
  batches: ProducerBatch[];
}

/** What an idempotent batch says about itself (from its RecordBatch header). */
export interface ProducerBatchHeader {
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  /** Records in the batch: its sequences are baseSequence .. baseSequence + count - 1. */
  recordCount: number;
}

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

export class ProducerStateManager {
  private readonly producers = new Map<number, ProducerEntry>();

  constructor(private readonly label: string) {}

  get producerCount(): number {
    return this.producers.size;
  }

  /**
   * Checks an idempotent batch before it is appended. Returns the earlier batch when this
   * one is a resend of it; null when it may be appended; throws the refusal otherwise.
   */
  check(header: ProducerBatchHeader): ProducerBatch | null {
    const { producerId, producerEpoch, baseSequence, recordCount } = header;
    if (baseSequence < 0 || producerEpoch < 0) {
      throw new TributaryError(Errors.INVALID_REQUEST, `${this.label}: producer ${producerId} sent sequence ${baseSequence} epoch ${producerEpoch}`);
    }
    const lastSeq = nextSequence(baseSequence, recordCount - 1);
    const entry = this.producers.get(producerId);
    if (entry === undefined || producerEpoch > entry.epoch) {
      // A producer (or a new epoch of it) starts its sequences at 0: anything else means
      // batches before this one never arrived.
      if (baseSequence !== 0) throw this.outOfOrder(producerId, baseSequence, 0);
      return null;
    }
    if (producerEpoch < entry.epoch) {
      throw new TributaryError(Errors.INVALID_PRODUCER_EPOCH, `${this.label}: producer ${producerId} epoch ${producerEpoch} is older than ${entry.epoch}`);
    }
    for (const batch of entry.batches) {
      if (batch.firstSeq === baseSequence && batch.lastSeq === lastSeq) return batch;
    }
    const last = entry.batches[entry.batches.length - 1];
    const expected = last === undefined ? 0 : nextSequence(last.lastSeq);
    if (baseSequence !== expected) throw this.outOfOrder(producerId, baseSequence, expected);
    return null;
  }

  private outOfOrder(producerId: number, got: number, expected: number): TributaryError {
    return new TributaryError(Errors.OUT_OF_ORDER_SEQUENCE, `${this.label}: producer ${producerId} sent sequence ${got}, expected ${expected}`);
  }

  /** Records an appended (or, at recovery, replayed) batch, appended at `nowMs`. */
  update(header: ProducerBatchHeader, firstOffset: number, nowMs: number): void {
    const { producerId, producerEpoch, baseSequence, recordCount } = header;
    let entry = this.producers.get(producerId);
    if (entry === undefined || producerEpoch > entry.epoch) {
      entry = { epoch: producerEpoch, lastMs: nowMs, batches: [] };
      this.producers.set(producerId, entry);
    }
    entry.lastMs = Math.max(entry.lastMs, nowMs);
    const lastSeq = nextSequence(baseSequence, recordCount - 1);
    const lastOffset = firstOffset + recordCount - 1;
    if (entry.batches.length < PRODUCER_BATCHES_KEPT) {
      entry.batches.push({ firstSeq: baseSequence, lastSeq, firstOffset, lastOffset });
      return;
    }
    // The oldest record is reused for the newest: a producer appends a batch a second, so a
    // new object each time lived five seconds, long enough to be promoted and left for a
    // full GC. (check() hands records out, but every caller reads them at once.)
    const reused = entry.batches.shift() as ProducerBatch;
    reused.firstSeq = baseSequence;
    reused.lastSeq = lastSeq;
    reused.firstOffset = firstOffset;
    reused.lastOffset = lastOffset;
    entry.batches.push(reused);
  }

  /** Forgets producers idle since before `nowMs - PRODUCER_ID_EXPIRATION_MS`. */
  expire(nowMs: number): void {
    for (const [id, entry] of this.producers) if (entry.lastMs < nowMs - PRODUCER_ID_EXPIRATION_MS) this.producers.delete(id);
  }

  /** The state as a snapshot file's bytes, taken at log end offset `offset`. */
  snapshot(offset: number): Buffer {
    const producers = [...this.producers].map(([id, e]) => [id, e.epoch, e.lastMs, e.batches.map((b) => [b.firstSeq, b.lastSeq, b.firstOffset, b.lastOffset])]);
    const body = encoder.encode({ v: SNAPSHOT_VERSION, offset, producers });
    const out = Buffer.allocUnsafe(4 + body.length);
    out.writeUInt32BE(crc32c(body), 0);
    out.set(body, 4);
    return out;
  }

  /**
   * Replaces the state with a snapshot's; returns the offset it was taken at. Throws a
   * plain Error naming what is wrong, for the caller to fall back to a replay.
   */
  load(bytes: Buffer): number {
    if (bytes.length < 4) throw new Error('snapshot is shorter than its checksum');
    const body = bytes.subarray(4);
    if (crc32c(body) !== bytes.readUInt32BE(0)) throw new Error('snapshot checksum does not match');
    const snap = decoder.decode(body) as { v?: unknown; offset?: unknown; producers?: unknown };
    if (snap === null || typeof snap !== 'object' || snap.v !== SNAPSHOT_VERSION) throw new Error('snapshot version is not supported');
    if (!Number.isSafeInteger(snap.offset) || !Array.isArray(snap.producers)) throw new Error('snapshot is malformed');
    const loaded = new Map<number, ProducerEntry>();
    for (const p of snap.producers as unknown[]) {
      if (!Array.isArray(p) || p.length !== 4 || !Number.isSafeInteger(p[0]) || !Number.isInteger(p[1]) || !Number.isSafeInteger(p[2]) || !Array.isArray(p[3])) {
        throw new Error('snapshot entry is malformed');
      }
      const batches = (p[3] as unknown[]).map((b) => {
        if (!Array.isArray(b) || b.length !== 4 || !b.every((n) => Number.isSafeInteger(n))) throw new Error('snapshot batch is malformed');
        return { firstSeq: b[0] as number, lastSeq: b[1] as number, firstOffset: b[2] as number, lastOffset: b[3] as number };
      });
      loaded.set(p[0] as number, { epoch: p[1] as number, lastMs: p[2] as number, batches: batches.slice(-PRODUCER_BATCHES_KEPT) });
    }
    this.producers.clear();
    for (const [id, entry] of loaded) this.producers.set(id, entry);
    return snap.offset as number;
  }

  clear(): void {
    this.producers.clear();
  }
}
