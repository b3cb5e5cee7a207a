// The log cleaner: Kafka's log compaction for topics with cleanup.policy=compact, simplified
// for an edge node. A run keeps, in the closed segments, only the newest record of each key;
// every survivor keeps its offset, so offsets inside a segment now have gaps (as in Kafka).
//
// 1. The offset map: key -> newest offset, over the closed segments and the rest of the log
//    up to the log end at start (after a flush, so a newer value that a crash could still
//    take back never removes an older one). A key is held as its bytes when short, else as
//    its MD5 (Kafka's SkimpyOffsetMap also keys by MD5). At most `keysMax` keys are mapped
//    per pass; a log with more keys takes several passes, each mapping the keys first seen
//    from where the previous pass ran out, so memory stays bounded and every key is cleaned.
// 2. Each closed segment holding something to remove is rewritten beside itself, batch by
//    batch: a batch keeps its base offset, last offset delta (offsets are never reused),
//    base timestamp, producer id, epoch and base sequence; it loses the removed records,
//    and its record count, max timestamp, length and CRC are written again. Records are
//    copied as they are (their offset and timestamp deltas stay right). A batch left with
//    no record is dropped (see "Idempotent producers" below).
// 3. The swap, crash-safe: `<base>.log.cleaned` and `<base>.index.swap`/`.timeindex.swap`
//    are written and fsynced, then the log is renamed to `<base>.log.swap` (the commit);
//    then the old index files go, the `.swap` files take the final names and the new
//    LogSegment replaces the old one in the PartitionLog in one synchronous step. Recovery
//    (recovery.ts) drops a swap that did not commit and finishes one that did, so a crash
//    leaves the old segment or the new one, never a hole. A segment of which nothing
//    survives is deleted instead (unless it is the first: it holds the log start offset),
//    so a compacted topic does not collect empty segments over months.
//
// A partition is read again only once at least half of it was written since the last
// complete run (Kafka's default min.cleanable.dirty.ratio, 0.5) or a kept tombstone is due;
// a segment with nothing to remove is not rewritten. Flash wears.
//
// What is removed:
//   - a record whose key has a newer record (anywhere up to the log end at start);
//   - a tombstone (null value) that is its key's newest record, once the segment holding it
//     has no record newer than now - delete.retention.ms (Kafka's older, segment-time rule;
//     record time, as retention.ms uses it), so a consumer that keeps up sees the delete.
// What is kept: records without a key (the produce path does not refuse them in compacted
// topics, unlike Kafka), control batches, and batches the cleaner cannot take apart (a
// codec this node cannot decompress: snappy, lz4, zstd; records that do not parse although
// the CRC is right, or that inflate past the topic's max.message.bytes: batches stored
// before produce checked records). Their keys are unknown, so no tombstone after the first
// of them is removed: it may be all that hides an older value in such a batch. The active
// segment and rolled segments not yet sealed are never rewritten, so appends go on
// meanwhile. A run stops between batches when the log closes or the node stops (the job's
// signal).
//
// Idempotent producers: Kafka keeps an emptied batch's header when it is a producer's last,
// so that a replay of the log still knows the producer's last sequence. An empty batch is
// invalid here (record count 0 fails validateBatch), so the cleaner instead cleans only
// segments below the newest producer-state snapshot: a start loads that snapshot and
// replays only what follows, which the cleaner never touched. Thinned batches replay right
// anyway (the producer state reads their sequence span from the last offset delta).

import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { Errors, TributaryError } from '../../protocol/errors.js';
import {
  BATCH_OVERHEAD,
  compress,
  Compression,
  computeCrc,
  inflateRecords,
  LOG_OVERHEAD,
  OFFSET_ATTRIBUTES,
  OFFSET_BASE_TIMESTAMP,
  OFFSET_CRC,
  OFFSET_LAST_OFFSET_DELTA,
  OFFSET_LENGTH,
  OFFSET_MAX_TIMESTAMP,
  OFFSET_RECORD_COUNT,
  batchSizeAt,
  lastOffsetOf,
  readInt64,
  splitBatches,
  validateBatch,
  writeInt64,
} from '../../protocol/record-batch.js';
import { fsyncDir, isErrno, readFully, writeFileDurable, writeFully } from './file-ops.js';
import type { FileOps } from './file-ops.js';
import type { PartitionLog } from './partition-log.js';
import { SNAPSHOT_FILE } from './producer-state.js';
import { CLEANED_SUFFIX, SWAP_SUFFIX } from './recovery.js';
import { LogSegment, segmentFileName } from './segment.js';
import type { SegmentContext } from './segment.js';
import { SegmentIndexes } from './segment-indexes.js';

export interface CompactionOptions {
  /** The clock for the tombstone rule (delete.retention.ms). */
  now: () => number;
  /** Distinct keys one pass maps (~100 bytes each); more keys take more passes. */
  keysMax?: number;
  /** Shutdown: the run stops between batches, as when the log closes. */
  signal?: AbortSignal;
}

export interface CompactionResult {
  /** Segments rewritten (segments with nothing to remove are left alone). */
  segmentsCleaned: number;
  /** Size of the rewritten segments before and after. */
  bytesBefore: number;
  bytesAfter: number;
  /** Records removed because a newer record has their key (tombstones included). */
  recordsRemoved: number;
  /** Tombstones removed because they were the newest and older than delete.retention.ms. */
  tombstonesRemoved: number;
  /** Offset map passes (more than one when the log holds more than keysMax keys). */
  passes: number;
  /**
   * Batches kept whole because they cannot be taken apart here (a codec this node cannot
   * decompress, records that do not parse or inflate past max.message.bytes): their keys
   * are unknown, so no tombstone after the first of them is removed.
   */
  undecodableBatches: number;
  /** True when the log closed under the run: what was swapped in stays, the rest waits. */
  stoppedEarly: boolean;
}

export const KEYS_MAX_DEFAULT = 200_000;
/** Keys shorter than this are mapped as their bytes; longer ones by their MD5 (hex, this long). */
const KEY_HEX_DIGEST_CHARS = 32;
const READ_CHUNK_BYTES = 1024 * 1024;

const ATTR_CODEC_MASK = 0x07;
const ATTR_TIMESTAMP_TYPE = 0x08;
const ATTR_CONTROL = 0x20;

/**
 * Compacts the closed segments of `log` (a cleanup.policy=compact topic) inside its
 * maintenance queue. Rejects with STORAGE_ERROR on a disk failure, CORRUPT_BATCH when a
 * closed segment does not decode (nothing of that segment is changed then).
 */
export function compactPartition(log: PartitionLog, options: CompactionOptions): Promise<CompactionResult> {
  const keysMax = options.keysMax ?? KEYS_MAX_DEFAULT;
  if (!Number.isSafeInteger(keysMax) || keysMax < 1) {
    throw new TributaryError(Errors.INVALID_CONFIG, `keysMax must be a positive integer, got ${keysMax}`);
  }
  return log.maintain(() => new Cleaner(log, options.now, keysMax, options.signal).run());
}

/** One record's place in a batch's (decompressed) records and what the cleaner needs of it. */
interface RecordRef {
  start: number;
  end: number;
  offset: number;
  timestamp: number;
  /** Map id of the key; null for a record without a key. */
  keyId: string | null;
  tombstone: boolean;
}

interface OffsetMap {
  /** Key id -> newest offset. */
  offsets: Map<string, number>;
  /** Where a key was first left out (the map was full); null when every key is in. */
  fullAt: number | null;
  /** Base offsets of closed segments holding a record that a newer one supersedes. */
  superseding: Set<number>;
  /** Base offsets of closed segments holding a tombstone. */
  tombstoned: Set<number>;
}

/** The base offset of the segment holding `offset`: the last base at or below it. */
function baseBelow(bases: readonly number[], offset: number): number {
  let lo = 0;
  let hi = bases.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (bases[mid] <= offset) lo = mid;
    else hi = mid - 1;
  }
  return bases[lo];
}

/** What the last complete run on a partition left: an unchanged log is not read again. */
interface LastRun {
  logEndOffset: number;
  deleteRetentionMs: number;
  tombstonesDueMs: number;
  /** Bytes of the log after the run: what later appends are measured against. */
  cleanBytes: number;
}

/**
 * Kafka's min.cleanable.dirty.ratio default: a log is compacted again once at least half of
 * it was written since the last run. Flash wears: rewriting a segment to drop one
 * superseded offset commit every minute would wear an edge node's card for nothing.
 */
export const MIN_CLEANABLE_DIRTY_RATIO = 0.5;

const lastRuns = new WeakMap<PartitionLog, LastRun>();

/** A batch taken apart: null records when it is kept whole whatever the map says. */
interface ParsedBatch {
  batch: Buffer;
  payload: Buffer;
  records: RecordRef[] | null;
  /** Compressed with a codec this node cannot decompress. */
  undecodable?: true;
}

class Cleaner {
  private readonly ops: FileOps;
  private readonly ctx: SegmentContext;
  private readonly result: CompactionResult = {
    segmentsCleaned: 0,
    bytesBefore: 0,
    bytesAfter: 0,
    recordsRemoved: 0,
    tombstonesRemoved: 0,
    passes: 0,
    undecodableBatches: 0,
    stoppedEarly: false,
  };

  /** When the earliest tombstone kept by this run may go (delete.retention.ms). */
  private tombstonesDueMs = Number.POSITIVE_INFINITY;
  /**
   * The base offset of the first batch that could not be taken apart: its keys are unknown
   * and it may hold an older value of any key, so a tombstone after it must stay (else the
   * deleted key would come back to a consumer reading from the start).
   */
  private undecodableFrom = Number.POSITIVE_INFINITY;

  constructor(
    private readonly log: PartitionLog,
    private readonly now: () => number,
    private readonly keysMax: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    const env = log.cleanerEnv;
    this.ops = env.ops;
    this.ctx = env.segmentContext;
  }

  async run(): Promise<CompactionResult> {
    const log = this.log;
    if (log.config['cleanup.policy'] !== 'compact') return this.result;
    // Everything the map reads must be durable, or a crash could take back the newer value
    // of a key after its older one was removed for good.
    const deleteRetentionMs = log.config['delete.retention.ms'];
    const last = lastRuns.get(log);
    // Kafka's cleaner skips a log whose dirty part is empty; here: nothing appended since the
    // last complete run and no kept tombstone due yet. The job runs every minute, and
    // reading a large compacted log that often would wear an edge node for nothing.
    if (last !== undefined && last.deleteRetentionMs === deleteRetentionMs && this.now() < last.tombstonesDueMs) {
      if (last.logEndOffset === log.logEndOffset) return this.result;
      const size = log.sizeBytes;
      if (size > 0 && (size - last.cleanBytes) / size < MIN_CLEANABLE_DIRTY_RATIO) return this.result;
    }
    await log.flush();
    const mapEnd = log.recoveryPoint;
    const cleanableEnd = await this.newestSnapshotOffset();
    let insertFrom = log.logStartOffset;
    for (;;) {
      if (this.stopping) return this.stop();
      const map = await this.buildOffsetMap(insertFrom, mapEnd);
      if (map === null) return this.stop();
      this.result.passes++;
      for (const segment of this.cleanableSegments(cleanableEnd)) {
        if (!(await this.cleanSegment(segment, map))) return this.stop();
      }
      if (map.fullAt === null) break;
      insertFrom = map.fullAt;
    }
    // Complete only when every closed segment was cleanable (below the snapshot bound).
    if (cleanableEnd >= mapEnd) lastRuns.set(log, { logEndOffset: mapEnd, deleteRetentionMs, tombstonesDueMs: this.tombstonesDueMs, cleanBytes: log.sizeBytes });
    else lastRuns.delete(log);
    return this.result;
  }

  /** The log closed or the node is stopping: give up between batches. */
  private get stopping(): boolean {
    return this.log.isClosed || this.signal?.aborted === true;
  }

  private stop(): CompactionResult {
    this.result.stoppedEarly = true;
    return this.result;
  }

  /**
   * A producer-state snapshot at the log end (the cleaner then may clean every closed
   * segment), or the newest one already on disk when it cannot be written.
   */
  private async newestSnapshotOffset(): Promise<number> {
    await this.log.checkpoint().catch(() => undefined);
    let newest = 0;
    for (const entry of await this.ops.readdir(this.log.dir)) {
      const match = SNAPSHOT_FILE.exec(entry.name);
      if (match !== null) newest = Math.max(newest, Number(match[1]));
    }
    return newest;
  }

  /** Closed segments whose every offset lies below `end` (the next segment starts at or below it). */
  private cleanableSegments(end: number): LogSegment[] {
    const closed = this.log.closedSegments();
    const bases = this.log.segmentBaseOffsets();
    const out: LogSegment[] = [];
    for (let i = 0; i < closed.length; i++) {
      if (bases[i + 1] <= end) out.push(closed[i]);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------
  // The offset map

  /**
   * key -> newest offset over [insertFrom, mapEnd): keys seen first at or after
   * `insertFrom` are added while fewer than keysMax are mapped (a batch is mapped whole),
   * and mapped keys always move to their newest offset. `fullAt` is where a key was first
   * left out: the next pass starts adding keys there. Null when the log closed.
   */
  private async buildOffsetMap(insertFrom: number, mapEnd: number): Promise<OffsetMap | null> {
    const map: OffsetMap = { offsets: new Map(), fullAt: null, superseding: new Set(), tombstoned: new Set() };
    const offsets = map.offsets;
    const closed = this.log.closedSegments();
    const bases = this.log.segmentBaseOffsets();
    const closedEnd = bases[closed.length];
    const firstPass = this.result.passes === 0;
    const onBatch = (parsed: ParsedBatch): void => {
      if (parsed.undecodable && firstPass) {
        this.result.undecodableBatches++;
        this.undecodableFrom = Math.min(this.undecodableFrom, readInt64(parsed.batch, 0));
      }
      if (parsed.records === null || lastOffsetOf(parsed.batch) < insertFrom) return;
      const full = offsets.size >= this.keysMax;
      for (const record of parsed.records) {
        if (record.keyId === null || record.offset < insertFrom || record.offset >= mapEnd) continue;
        const previous = offsets.get(record.keyId);
        if (previous !== undefined || !full) offsets.set(record.keyId, record.offset);
        else map.fullAt ??= readInt64(parsed.batch, 0);
        // Which segments have something to remove, known now, so that cleaning reads
        // only those (a compacted log that did not change is not read again).
        if (previous !== undefined && previous < closedEnd) map.superseding.add(baseBelow(bases, previous));
        if (record.tombstone && record.offset < closedEnd) map.tombstoned.add(baseBelow(bases, record.offset));
      }
    };
    for (const segment of closed) {
      if (!(await this.forEachBatch(segment, onBatch))) return null;
    }
    // The rest (rolled segments not sealed yet, the active one) through the log's reads.
    let offset = Math.max(closedEnd ?? mapEnd, insertFrom);
    while (offset < mapEnd) {
      if (this.stopping) return null;
      const batches = splitBatches(this.log.read(offset, READ_CHUNK_BYTES, mapEnd));
      if (batches.length === 0) break;
      for (const batch of batches) {
        onBatch(this.parse(batch));
        offset = lastOffsetOf(batch) + 1;
      }
      await yieldToEventLoop();
    }
    return map;
  }

  // -------------------------------------------------------------------------------------
  // Reading a closed segment

  /**
   * Calls `onBatch` with every batch of a closed segment, checked (CRC, increasing offsets)
   * and taken apart. Yields to the event loop between chunks. False when the log closed.
   */
  private async forEachBatch(segment: LogSegment, onBatch: (parsed: ParsedBatch) => void): Promise<boolean> {
    const fd = this.ops.openSync(segment.logPath, 'r');
    try {
      const size = segment.sizeBytes;
      let position = 0;
      let expected = segment.baseOffset;
      let chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, Math.max(size, LOG_OVERHEAD)));
      while (position < size) {
        if (this.stopping) return false;
        const got = readFully(this.ops, fd, chunk, 0, Math.min(chunk.length, size - position), position);
        let at = 0;
        while (got - at >= LOG_OVERHEAD) {
          const batchSize = batchSizeAt(chunk, at);
          if (batchSize < BATCH_OVERHEAD) throw this.corrupt(segment, position + at, `batch length ${batchSize}`);
          if (at + batchSize > got) break;
          const batch = chunk.subarray(at, at + batchSize);
          try {
            validateBatch(batch);
          } catch (err) {
            throw this.corrupt(segment, position + at, (err as Error).message);
          }
          const base = readInt64(batch, 0);
          if (base < expected) throw this.corrupt(segment, position + at, `base offset ${base} below ${expected}`);
          expected = lastOffsetOf(batch) + 1;
          onBatch(this.parse(batch));
          at += batchSize;
        }
        if (at === 0) {
          // A batch larger than the chunk: read it whole next time round.
          const need = got >= LOG_OVERHEAD ? batchSizeAt(chunk, 0) : -1;
          if (need <= got || position + need > size) throw this.corrupt(segment, position, `the file ends inside a batch`);
          chunk = Buffer.allocUnsafe(need);
          continue;
        }
        position += at;
        await yieldToEventLoop();
      }
      return true;
    } finally {
      this.ops.closeSync(fd);
    }
  }

  private corrupt(segment: LogSegment, position: number, detail: string): TributaryError {
    return new TributaryError(Errors.CORRUPT_BATCH, `${this.ctx.label}: the log cleaner found a bad batch at position ${position} of ${segment.name}: ${detail}`);
  }

  /**
   * Takes a validated batch apart into record ranges, keys and offsets. A batch whose CRC
   * is right but whose records do not parse (produce checks the CRC, not the records) is
   * kept whole, like one in a codec this node cannot read: one bad batch must not stop
   * compaction of its partition for good.
   */
  private parse(batch: Buffer): ParsedBatch {
    try {
      return this.parseBatch(batch);
    } catch {
      return { batch, payload: batch, records: null, undecodable: true };
    }
  }

  private parseBatch(batch: Buffer): ParsedBatch {
    const attributes = batch.readInt16BE(OFFSET_ATTRIBUTES);
    const codec = attributes & ATTR_CODEC_MASK;
    if ((attributes & ATTR_CONTROL) !== 0) return { batch, payload: batch, records: null };
    let payload: Buffer;
    if (codec === Compression.None) payload = batch.subarray(BATCH_OVERHEAD);
    // Within the topic's max.message.bytes, as produce checks batches now: one stored
    // before that (a gzip bomb) is kept whole, like any batch that does not parse.
    else if (codec === Compression.Gzip) payload = inflateRecords(batch, this.log.config['max.message.bytes']);
    else return { batch, payload: batch, records: null, undecodable: true };
    const baseOffset = readInt64(batch, 0);
    const lastOffsetDelta = batch.readInt32BE(OFFSET_LAST_OFFSET_DELTA);
    const baseTimestamp = readInt64(batch, OFFSET_BASE_TIMESTAMP);
    const logAppendTime = (attributes & ATTR_TIMESTAMP_TYPE) !== 0 ? readInt64(batch, OFFSET_MAX_TIMESTAMP) : -1;
    const count = batch.readInt32BE(OFFSET_RECORD_COUNT);
    const records = parseRecords(payload, count, baseOffset, lastOffsetDelta, baseTimestamp, logAppendTime);
    return { batch, payload, records };
  }

  // -------------------------------------------------------------------------------------
  // Rewriting a segment

  /** Whether `record` goes: superseded, or an expired tombstone that is its key's newest. */
  private removes(record: RecordRef, offsets: Map<string, number>, tombstonesExpire: boolean): 'superseded' | 'tombstone' | null {
    if (record.keyId === null) return null;
    const newest = offsets.get(record.keyId);
    if (newest === undefined) return null;
    if (newest > record.offset) return 'superseded';
    // Only a tombstone known to be its key's newest: an unmapped key may have older values,
    // and so may a batch before it that could not be taken apart.
    if (record.tombstone && tombstonesExpire && newest === record.offset && record.offset < this.undecodableFrom) return 'tombstone';
    return null;
  }

  /**
   * Rewrites `segment` without its removable records and swaps the result in. Leaves a
   * segment with nothing to remove untouched (no write: flash wears). False when the log
   * closed before the swap's commit (the cleaner's files are then removed).
   */
  private async cleanSegment(segment: LogSegment, map: OffsetMap): Promise<boolean> {
    const offsets = map.offsets;
    const horizon = this.now() - this.log.config['delete.retention.ms'];
    const tombstonesExpire = segment.maxTimestamp >= 0 && segment.maxTimestamp < horizon;
    const base = segment.baseOffset;
    if (map.tombstoned.has(base) && !tombstonesExpire) {
      // Due once the segment's newest record is older than the horizon. Its max timestamp
      // after cleaning may be lower: then the tombstone goes a little later, never sooner.
      this.tombstonesDueMs = Math.min(this.tombstonesDueMs, segment.maxTimestamp + this.log.config['delete.retention.ms'] + 1);
    }
    if (!map.superseding.has(base) && !(tombstonesExpire && map.tombstoned.has(base))) return true;

    const dir = this.log.dir;
    const cleanedPath = path.join(dir, segmentFileName(base, '.log') + CLEANED_SUFFIX);
    const names = [segmentFileName(base, '.log') + CLEANED_SUFFIX, segmentFileName(base, '.index') + SWAP_SUFFIX, segmentFileName(base, '.timeindex') + SWAP_SUFFIX];
    let committed = false;
    try {
      const written = await this.writeCleaned(segment, cleanedPath, offsets, tombstonesExpire);
      if (written === null) {
        await this.removeFiles(names);
        return false;
      }
      if (written.sizeBytes === 0 && this.log.logStartOffset !== base) {
        await this.removeFiles(names);
        await this.removeEmptied(segment);
        this.count(segment, written);
        return true;
      }
      await writeFileDurable(this.ops, dir, names[1], written.indexes.offsetIndex.encode(), false);
      await writeFileDurable(this.ops, dir, names[2], written.indexes.timeIndex.encode(), false);
      await fsyncDir(this.ops, dir);
      if (this.stopping) {
        await this.removeFiles(names);
        return false;
      }
      // The commit: from here recovery finishes the swap rather than dropping it.
      await this.ops.rename(cleanedPath, path.join(dir, segmentFileName(base, '.log') + SWAP_SUFFIX));
      committed = true;
      await fsyncDir(this.ops, dir);
      await this.install(segment);
      this.count(segment, written);
      return true;
    } catch (err) {
      // Before the commit the old segment is whole: drop what was written. After it, the
      // old segment object no longer matches its files: finish the swap now (each step of
      // install() may be repeated), or the partition would read the new log through the old
      // size and indexes. If even that fails, the next open finishes it.
      if (!committed) await this.removeFiles(names).catch(() => undefined);
      else if (this.log.segmentBaseOffsets().includes(segment.baseOffset)) await this.install(segment).catch(() => undefined);
      if (err instanceof TributaryError) throw err;
      throw new TributaryError(Errors.STORAGE_ERROR, `${this.ctx.label}: compacting ${segment.name} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Writes the surviving batches to `cleanedPath` (fsynced) and indexes them as append
   * would. Null when the log closed meanwhile.
   */
  private async writeCleaned(
    segment: LogSegment,
    cleanedPath: string,
    offsets: Map<string, number>,
    tombstonesExpire: boolean,
  ): Promise<{ sizeBytes: number; indexes: SegmentIndexes; recordsRemoved: number; tombstonesRemoved: number } | null> {
    const indexes = new SegmentIndexes(segment.baseOffset);
    const indexIntervalBytes = this.ctx.indexIntervalBytes();
    let position = 0;
    let recordsRemoved = 0;
    let tombstonesRemoved = 0;
    const fd = this.ops.openSync(cleanedPath, 'w');
    try {
      const complete = await this.forEachBatch(segment, (parsed) => {
        let out = parsed.batch;
        if (parsed.records !== null) {
          const kept: RecordRef[] = [];
          for (const record of parsed.records) {
            const why = this.removes(record, offsets, tombstonesExpire);
            if (why === null) kept.push(record);
            else if (why === 'superseded') recordsRemoved++;
            else tombstonesRemoved++;
          }
          if (kept.length === 0) return;
          if (kept.length < parsed.records.length) out = rebuildBatch(parsed.batch, parsed.payload, kept);
        }
        // Checked right before it is written, as every batch headed for the disk.
        validateBatch(out);
        writeFully(this.ops, fd, out, position);
        indexes.onBatch(readInt64(out, 0), position, out.length, readInt64(out, OFFSET_MAX_TIMESTAMP), indexIntervalBytes);
        position += out.length;
      });
      if (!complete) return null;
      await this.ops.fsync(fd);
    } finally {
      this.ops.closeSync(fd);
    }
    indexes.sealTimeIndex();
    return { sizeBytes: position, indexes, recordsRemoved, tombstonesRemoved };
  }

  /**
   * After the commit: the cleaned files take the final names and the new segment replaces
   * the old one. The old index files go first: until the PartitionLog holds the new
   * segment, a read through the old one that loads indexes finds none and indexes whatever
   * log its fd opened, so a new log is never read through an old index or the reverse.
   */
  private async install(old: LogSegment): Promise<void> {
    const dir = this.log.dir;
    const base = old.baseOffset;
    for (const file of [old.indexPath, old.timeIndexPath]) {
      try {
        this.ops.unlinkSync(file);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
    // Each rename may already have happened (a second try after a failure): ENOENT is fine.
    for (const [from, to] of [
      [path.join(dir, segmentFileName(base, '.log') + SWAP_SUFFIX), old.logPath],
      [old.indexPath + SWAP_SUFFIX, old.indexPath],
      [old.timeIndexPath + SWAP_SUFFIX, old.timeIndexPath],
    ]) {
      try {
        await this.ops.rename(from, to);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
    const cleaned = LogSegment.existing(this.ctx, dir, base);
    // Also sets its max timestamp, which ListOffsets by time needs. A read through the old
    // segment in between may have dropped the new index files: write them again.
    if (!cleaned.checkIndexFiles()) await cleaned.rebuildIndexFiles();
    this.log.replaceSegment(old, cleaned);
    await fsyncDir(this.ops, dir);
  }

  private count(segment: LogSegment, written: { sizeBytes: number; recordsRemoved: number; tombstonesRemoved: number }): void {
    this.result.segmentsCleaned++;
    this.result.bytesBefore += segment.sizeBytes;
    this.result.bytesAfter += written.sizeBytes;
    this.result.recordsRemoved += written.recordsRemoved;
    this.result.tombstonesRemoved += written.tombstonesRemoved;
  }

  /**
   * A segment of which nothing survived goes, rather than staying as three empty files
   * for ever: reads skip the gap to the next segment. Its .log is unlinked first, so a
   * crash leaves either the whole segment or index files the next open removes. Only ever
   * a segment after the first: the first one holds the log start offset.
   */
  private async removeEmptied(segment: LogSegment): Promise<void> {
    this.log.replaceSegment(segment, null);
    segment.deleteFiles();
    await fsyncDir(this.ops, this.log.dir);
  }

  private async removeFiles(names: string[]): Promise<void> {
    for (const name of names) await this.ops.rm(path.join(this.log.dir, name));
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

// ---------------------------------------------------------------------------------------
// Records, byte for byte (see protocol/record-batch.ts for the layout)

/**
 * The map id of a key: its bytes (one char each) when shorter than 32, else its MD5 in hex,
 * 32 chars: the lengths keep the two kinds apart. No concatenation: a cons string would be
 * flattened again at every Map lookup.
 */
export function keyId(key: Buffer): string {
  if (key.length < KEY_HEX_DIGEST_CHARS) return key.toString('latin1');
  return createHash('md5').update(key).digest('hex');
}

let cursor = 0;

function readVarint(buf: Buffer, end: number): number {
  let z = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (cursor >= end) throw new Error('truncated varint');
    const b = buf[cursor++];
    z += (b & 0x7f) * mul;
    if (b < 0x80) {
      if (!Number.isSafeInteger(z)) throw new Error('varint outside the safe integer range');
      return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    }
    mul *= 128;
  }
  throw new Error('varint longer than 10 bytes');
}

/** The records of a batch's (decompressed) payload as byte ranges with key and offset. */
function parseRecords(payload: Buffer, count: number, baseOffset: number, lastOffsetDelta: number, baseTimestamp: number, logAppendTime: number): RecordRef[] {
  const records = new Array<RecordRef>(count);
  cursor = 0;
  let previousDelta = -1;
  for (let i = 0; i < count; i++) {
    const start = cursor;
    const length = readVarint(payload, payload.length);
    const end = cursor + length;
    if (length < 0 || end > payload.length) throw new Error(`record ${i} runs past the batch`);
    cursor++; // attributes
    const timestampDelta = readVarint(payload, end);
    const offsetDelta = readVarint(payload, end);
    if (offsetDelta <= previousDelta || offsetDelta > lastOffsetDelta) {
      throw new Error(`record ${i} has offset delta ${offsetDelta}`);
    }
    previousDelta = offsetDelta;
    const keyLength = readVarint(payload, end);
    let id: string | null = null;
    if (keyLength >= 0) {
      if (cursor + keyLength > end) throw new Error(`record ${i}: its key runs past the record`);
      id = keyId(payload.subarray(cursor, cursor + keyLength));
      cursor += keyLength;
    }
    const valueLength = readVarint(payload, end);
    records[i] = {
      start,
      end,
      offset: baseOffset + offsetDelta,
      timestamp: logAppendTime >= 0 ? logAppendTime : baseTimestamp + timestampDelta,
      keyId: id,
      tombstone: valueLength === -1,
    };
    cursor = end;
  }
  if (cursor !== payload.length) throw new Error(`${payload.length - cursor} bytes left after the records`);
  return records;
}

/**
 * The batch with only `kept` records: header fields kept (base offset, last offset delta,
 * base timestamp, attributes, producer fields), record count, max timestamp (unless
 * LogAppendTime, where it is every record's time), length and CRC written again.
 */
function rebuildBatch(batch: Buffer, payload: Buffer, kept: RecordRef[]): Buffer {
  let rawBytes = 0;
  for (const record of kept) rawBytes += record.end - record.start;
  const raw = Buffer.allocUnsafe(rawBytes);
  let at = 0;
  for (const record of kept) at += payload.copy(raw, at, record.start, record.end);
  const attributes = batch.readInt16BE(OFFSET_ATTRIBUTES);
  const body = compress((attributes & ATTR_CODEC_MASK) as Compression, raw);
  const out = Buffer.allocUnsafe(BATCH_OVERHEAD + body.length);
  batch.copy(out, 0, 0, BATCH_OVERHEAD);
  body.copy(out, BATCH_OVERHEAD);
  out.writeInt32BE(out.length - LOG_OVERHEAD, OFFSET_LENGTH);
  out.writeInt32BE(kept.length, OFFSET_RECORD_COUNT);
  if ((attributes & ATTR_TIMESTAMP_TYPE) === 0) {
    let maxTimestamp = kept[0].timestamp;
    for (const record of kept) maxTimestamp = Math.max(maxTimestamp, record.timestamp);
    writeInt64(out, OFFSET_MAX_TIMESTAMP, maxTimestamp);
  }
  out.writeUInt32BE(computeCrc(out), OFFSET_CRC);
  return out;
}
