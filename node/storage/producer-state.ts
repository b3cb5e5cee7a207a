// Idempotent producers, per partition: Kafka's ProducerStateManager. For every producer id
// seen on the partition the log keeps its epoch and its last 5 batches (first and last
// sequence, first and last offset), and checks each idempotent batch against them by the
// rule in protocol/producer-sequence.ts (resends answered DUPLICATE_SEQUENCE with the
// original offsets, gaps OUT_OF_ORDER_SEQUENCE, older epochs INVALID_PRODUCER_EPOCH), which
// the SDK's FakeNode applies too.
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
import { checkSequence, PRODUCER_BATCHES_KEPT, rememberBatch, type ProducerBatch, type ProducerBatchHeader, type ProducerSequences } from '../../protocol/producer-sequence.js';
import { nextSequence } from '../../protocol/record-batch.js';

export { nextSequence, PRODUCER_BATCHES_KEPT };
export type { ProducerBatch, ProducerBatchHeader };

const SNAPSHOT_VERSION = 1;
export const PRODUCER_ID_EXPIRATION_MS = 24 * 60 * 60 * 1000;
export const SNAPSHOT_SUFFIX = '.snapshot';
export const SNAPSHOT_FILE = /^(\d{20})\.snapshot$/;

export function snapshotFileName(offset: number): string {
  return `${String(offset).padStart(20, '0')}${SNAPSHOT_SUFFIX}`;
}

interface ProducerEntry extends ProducerSequences {
  /** When it last appended (node clock, or the batch's timestamp when replayed). */
  lastMs: number;
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
    return checkSequence(this.producers.get(header.producerId), header, this.label);
  }

  /** Records an appended (or, at recovery, replayed) batch, appended at `nowMs`. */
  update(header: ProducerBatchHeader, firstOffset: number, nowMs: number): void {
    const { producerId, producerEpoch } = header;
    let entry = this.producers.get(producerId);
    if (entry === undefined || producerEpoch > entry.epoch) {
      entry = { epoch: producerEpoch, lastMs: nowMs, batches: [] };
      this.producers.set(producerId, entry);
    }
    entry.lastMs = Math.max(entry.lastMs, nowMs);
    rememberBatch(entry, header, firstOffset);
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
