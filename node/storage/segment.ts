// One segment of a partition's log: `<20-digit base offset>.log` with its `.index` and
// `.timeindex`. The newest segment is active: it holds a read-write fd and its indexes live
// in memory (written to disk when the segment is sealed at roll, or at a clean shutdown).
// Sealed segments are read-only; their fd and indexes are opened lazily through the
// manager's ReadFdCache, which bounds how many stay open.

import * as path from 'node:path';
import { AssertionError, Errors, LimitReachedError, TributaryError } from '../../protocol/errors.js';
import {
  batchSizeAt,
  BATCH_OVERHEAD,
  Compression,
  compressionOf,
  decodeBatch,
  lastOffsetOf,
  OFFSET_BASE_TIMESTAMP,
  OFFSET_LAST_OFFSET_DELTA,
  OFFSET_LEADER_EPOCH,
  OFFSET_RECORD_COUNT,
  readInt64,
  validateBatch,
} from '../../protocol/record-batch.js';
import type { DecodedRecord } from '../../protocol/record-batch.js';
import { firstRecordAtOrAfter, readBytesMax } from '../../protocol/fetch-rules.js';
import { walkBatches } from './batch-walk.js';
import type { BatchRef } from './batch-walk.js';
import { fileSizeOrMissing, FsyncFailedError, isDiskFull, isErrno, readFileSyncOrNull, readFully, writeFileDurable, writeFully } from './file-ops.js';
import type { FileOps } from './file-ops.js';
import { OffsetIndex } from './offset-index.js';
import type { ReadFdCache, ReadStateHolder } from './read-fd-cache.js';
import { chargeScan, chargeSegmentOpen, checkCanInflate, inflateWithin } from './request-budget.js';
import type { RequestBudget } from './request-budget.js';
import { scanSegment } from './segment-scan.js';
import { SegmentIndexes } from './segment-indexes.js';
import { TimeIndex } from './time-index.js';

/** What a segment needs from the partition that owns it. */
export interface SegmentContext {
  readonly ops: FileOps;
  readonly readFds: ReadFdCache;
  /** "topic-partition", for messages. */
  readonly label: string;
  indexIntervalBytes(): number;
  /** Records something recovery-like that happened after open (an index rebuilt on read). */
  note(message: string): void;
}

export function segmentFileName(baseOffset: number, suffix: '.log' | '.index' | '.timeindex'): string {
  return String(baseOffset).padStart(20, '0') + suffix;
}

export const EMPTY_BUFFER: Buffer = Buffer.alloc(0);

/** One stored batch of a read, described from the header the read checked anyway. */
export interface StoredBatch {
  baseOffset: number;
  lastOffset: number;
  /** Records in the batch: lastOffset - baseOffset + 1, or fewer in a compacted log. */
  recordCount: number;
  /** The partitionLeaderEpoch the batch was appended under. */
  leaderEpoch: number;
  sizeBytes: number;
}

/**
 * What a read returns: whole stored batches back to back, as they are on disk, and one
 * StoredBatch per batch in order, so that no caller walks the bytes again to learn where
 * the read ended or how many records it holds.
 */
export interface LogRead {
  bytes: Buffer;
  batches: readonly StoredBatch[];
}

export const EMPTY_READ: LogRead = Object.freeze({ bytes: EMPTY_BUFFER, batches: Object.freeze([]) as readonly StoredBatch[] });

export class LogSegment implements ReadStateHolder {
  readonly logPath: string;
  readonly indexPath: string;
  readonly timeIndexPath: string;
  /** Bytes of whole batches in the .log file; the file is never read past this. */
  sizeBytes: number;
  /** The segment's largest batch max timestamp, -1 if none; known without loading indexes. */
  maxTimestamp = -1;
  /** Clock time of the first append into this segment (segment.ms); -1 while empty. */
  rollingStartMs = -1;
  private writeFd = -1;
  private readFd = -1;
  private indexes: SegmentIndexes | null = null;

  private constructor(
    private readonly ctx: SegmentContext,
    readonly dir: string,
    readonly baseOffset: number,
    sizeBytes: number,
  ) {
    this.logPath = path.join(dir, segmentFileName(baseOffset, '.log'));
    this.indexPath = path.join(dir, segmentFileName(baseOffset, '.index'));
    this.timeIndexPath = path.join(dir, segmentFileName(baseOffset, '.timeindex'));
    this.sizeBytes = sizeBytes;
  }

  /** A new, empty, active segment. Any stale file of that name is truncated. */
  static create(ctx: SegmentContext, dir: string, baseOffset: number): LogSegment {
    const segment = new LogSegment(ctx, dir, baseOffset, 0);
    segment.writeFd = ctx.ops.openSync(segment.logPath, 'w+');
    segment.indexes = new SegmentIndexes(baseOffset);
    return segment;
  }

  /** An existing segment, not opened yet; its size is taken from the file. */
  static existing(ctx: SegmentContext, dir: string, baseOffset: number): LogSegment {
    return new LogSegment(ctx, dir, baseOffset, Math.max(0, fileSizeOrMissing(ctx.ops, path.join(dir, segmentFileName(baseOffset, '.log')))));
  }

  get isWritable(): boolean {
    return this.writeFd >= 0;
  }

  get name(): string {
    return segmentFileName(this.baseOffset, '.log');
  }

  // -------------------------------------------------------------------------------------
  // Writing (active segment)

  /** Opens the read-write fd, for the active segment or for recovery's truncation. */
  openWriteFd(): number {
    if (this.writeFd < 0) {
      this.ctx.readFds.forget(this);
      this.releaseReadState();
      this.writeFd = this.ctx.ops.openSync(this.logPath, 'r+');
    }
    return this.writeFd;
  }

  /** Installs indexes built by recovery (a scan, or loaded files plus a tail walk). */
  adoptIndexes(indexes: SegmentIndexes): void {
    if (!(indexes.baseOffset === this.baseOffset)) throw new AssertionError(`indexes of ${indexes.baseOffset} given to segment ${this.baseOffset}`);
    this.indexes = indexes;
    this.maxTimestamp = indexes.maxTimestamp;
  }

  /**
   * Writes one validated, offset-patched batch at the end. On failure the file is cut back
   * to its previous size, so the log is as it was, and STORAGE_ERROR is thrown.
   */
  append(batch: Buffer, baseOffset: number, batchMaxTimestamp: number, nowMs: number): void {
    if (!(this.writeFd >= 0 && this.indexes !== null)) throw new AssertionError(`append to segment ${this.name} that is not active`);
    const position = this.sizeBytes;
    try {
      writeFully(this.ctx.ops, this.writeFd, batch, position);
    } catch (err) {
      try {
        this.ctx.ops.ftruncateSync(this.writeFd, position);
      } catch {
        // Bytes past sizeBytes are never read; seal() cuts them and recovery drops them.
      }
      const detail = `${this.ctx.label}: writing ${batch.length} bytes at position ${position} of ${this.name} failed: ${(err as Error).message}`;
      // A full disk is retriable: nothing was written, and the producer keeps the batch
      // until the disk guard or an operator frees space.
      throw new TributaryError(isDiskFull(err) ? Errors.STORAGE_FULL : Errors.STORAGE_ERROR, detail, { cause: err });
    }
    if (position === 0) this.rollingStartMs = nowMs;
    this.indexes.onBatch(baseOffset, position, batch.length, batchMaxTimestamp, this.ctx.indexIntervalBytes());
    this.sizeBytes = position + batch.length;
    this.maxTimestamp = this.indexes.maxTimestamp;
  }

  /**
   * When the segment's first record was appended, for segment.ms after a restart (Kafka
   * rolls a segment once its first batch is that old). Not a record's timestamp: that is a
   * device's clock, 1970 when never set (the segment would roll at every restart) or ahead
   * (it would never roll, and retention never delete it). The node's clock is kept by the
   * file system instead, as the .log file's birth time: a segment is created by the append
   * that rolls to it, its first record. A partition's first segment, or one made at open,
   * may be older than its first record: it rolls early, once, never late. Where the file
   * system keeps no birth time (0), the first batch's base timestamp stands in. Either is
   * capped by the last write (a restored file is born after its data) and by `nowMs` (a node
   * clock that was ahead when the file was made must not hold the roll back).
   */
  rollingStartAfterOpen(nowMs: number): number {
    if (!(this.writeFd >= 0 && this.sizeBytes > 0)) throw new AssertionError(`roll clock of segment ${this.name} that is not active or is empty`);
    let startMs: number;
    try {
      const stat = this.ctx.ops.fstatSync(this.writeFd);
      startMs = stat.birthtimeMs > 0 ? Math.min(stat.birthtimeMs, stat.mtimeMs) : Math.min(this.firstBatchTimestamp(), stat.mtimeMs);
    } catch {
      // The clock at open: the segment rolls at most segment.ms late.
      return nowMs;
    }
    return Math.min(startMs, nowMs);
  }

  /** The first batch's base timestamp; +Infinity when it has none (-1) or cannot be read. */
  private firstBatchTimestamp(): number {
    const header = Buffer.alloc(BATCH_OVERHEAD);
    if (readFully(this.ctx.ops, this.writeFd, header, 0, BATCH_OVERHEAD, 0) < BATCH_OVERHEAD) return Number.POSITIVE_INFINITY;
    const timestampMs = readInt64(header, OFFSET_BASE_TIMESTAMP);
    return timestampMs >= 0 ? timestampMs : Number.POSITIVE_INFINITY;
  }

  truncateTo(sizeBytes: number): void {
    if (!(sizeBytes >= 0)) throw new AssertionError(`truncating ${this.name} to ${sizeBytes} bytes`);
    this.ctx.ops.ftruncateSync(this.openWriteFd(), sizeBytes);
    this.sizeBytes = sizeBytes;
  }

  /**
   * Kafka's LogSegment.truncateTo, for a follower's truncation at run time: drops every
   * batch whose last offset is >= `offset` and makes this segment writable again. Its
   * indexes in memory lose the entries at or past the cut and take up append's running
   * state (the max timestamp, the bytes since the last entry) from a walk of the headers
   * between the last entry that stays and the cut, as recovery resumes from a checkpoint:
   * at most index.interval.bytes read, not the segment. Its index files are removed, since
   * they describe bytes that are gone. Returns the base offset of the first batch dropped,
   * -1 if none.
   */
  cutAt(offset: number): number {
    const { fd, indexes } = this.openForRead();
    const first = this.locate(fd, indexes, offset);
    // Nothing to drop still makes the segment writable: it is the log's last one now.
    const writeFd = this.openWriteFd();
    if (first !== null) {
      const position = first.position;
      indexes.offsetIndex.truncateAtPosition(position);
      const last = indexes.offsetIndex.last();
      // A time entry is made with an offset entry (when the max grew) or at the seal, and
      // names the batch that reached the max then: one made after the last offset entry
      // that stays names a batch past it. Dropping those leaves the max as of that entry.
      indexes.timeIndex.truncateAtRelativeOffset(last === null ? 0 : last.relativeOffset + 1);
      const lastTime = indexes.timeIndex.last();
      indexes.maxTimestamp = lastTime?.timestamp ?? -1;
      indexes.relativeOffsetOfMaxTimestamp = lastTime?.relativeOffset ?? 0;
      const from = last?.position ?? 0;
      try {
        walkBatches(this.ctx.ops, writeFd, from, this.baseOffset + (last?.relativeOffset ?? 0), position, (ref) => {
          if (ref.maxTimestamp > indexes.maxTimestamp) {
            indexes.maxTimestamp = ref.maxTimestamp;
            indexes.relativeOffsetOfMaxTimestamp = ref.baseOffset - this.baseOffset;
          }
          return false;
        });
      } catch (err) {
        throw this.corrupt(offset, `a header walk of what stays failed: ${(err as Error).message}`, err);
      }
      indexes.bytesSinceLastIndexEntry = position - from;
      this.ctx.ops.ftruncateSync(writeFd, position);
      this.sizeBytes = position;
    }
    const position = this.sizeBytes;
    this.indexes = indexes;
    this.maxTimestamp = indexes.maxTimestamp;
    for (const file of [this.indexPath, this.timeIndexPath]) {
      try {
        this.ctx.ops.unlinkSync(file);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
    if (position === 0) this.rollingStartMs = -1;
    return first === null ? -1 : first.baseOffset;
  }

  /**
   * fdatasync of the log file: the data up to sizeBytes survives a power loss. A failure is
   * an FsyncFailedError: the data may be gone from the page cache already.
   */
  async flushData(): Promise<void> {
    if (!(this.writeFd >= 0)) throw new AssertionError(`flush of segment ${this.name} without a write fd`);
    await this.fdatasyncLog();
  }

  private async fdatasyncLog(): Promise<void> {
    try {
      await this.ctx.ops.fdatasync(this.writeFd);
    } catch (err) {
      throw new FsyncFailedError(this.name, err);
    }
  }

  /**
   * Makes the segment's files final: cuts any bytes a failed write left, syncs the log,
   * adds the time index's closing entry and writes both indexes (temp file, fsync, rename).
   * The folder fsync that makes the renames durable is the caller's, once for many files.
   * Only a failed fdatasync of the log is an FsyncFailedError; may be called again after any
   * other failure.
   */
  async seal(): Promise<void> {
    if (!(this.writeFd >= 0 && this.indexes !== null)) throw new AssertionError(`seal of segment ${this.name} that is not writable`);
    const ops = this.ctx.ops;
    if (ops.fstatSync(this.writeFd).size !== this.sizeBytes) ops.ftruncateSync(this.writeFd, this.sizeBytes);
    await this.fdatasyncLog();
    this.indexes.sealTimeIndex();
    this.maxTimestamp = this.indexes.maxTimestamp;
    try {
      await writeFileDurable(ops, this.dir, segmentFileName(this.baseOffset, '.index'), this.indexes.offsetIndex.encode(), false);
      await writeFileDurable(ops, this.dir, segmentFileName(this.baseOffset, '.timeindex'), this.indexes.timeIndex.encode(), false);
    } catch (err) {
      if (err instanceof AssertionError) throw err;
      // The log itself is synced; index files only save a scan. Whatever kept them from
      // being written (a full disk, EMFILE, EIO on the temp file or its fsync, a failed
      // rename), the segment is sealed without them (reads and the next open rebuild them)
      // rather than failing the partition until a restart. A temp file's failed fsync is
      // no FsyncFailedError: it was never renamed in, so nothing trusts its bytes.
      // Files a checkpoint wrote earlier cover only part of the segment: gone too, so that
      // reads and the next open rebuild them whole rather than walk from their end.
      for (const file of [this.indexPath, this.timeIndexPath]) {
        try {
          ops.unlinkSync(file);
        } catch {
          // Absent already, or the disk refuses: the next open's check rebuilds them.
        }
      }
      const why = isDiskFull(err) ? 'the disk is full' : (err as Error).message;
      this.ctx.note(`${this.name}: index files not written, ${why}; they are rebuilt when needed`);
    }
  }

  /**
   * The checkpoint of an active segment: its index files with the entries below
   * `position` (fdatasynced through there), so an unclean start can trust them and scan only
   * what follows. Written as at seal; sealing later overwrites them with the full indexes.
   */
  async writeIndexCheckpoint(position: number, offset: number): Promise<void> {
    if (!(this.indexes !== null)) throw new AssertionError(`index checkpoint of segment ${this.name} without indexes`);
    const ops = this.ctx.ops;
    const offsetBytes = this.indexes.offsetIndex.encode(position);
    const timeBytes = this.indexes.timeIndex.encode(offset - this.baseOffset);
    await writeFileDurable(ops, this.dir, segmentFileName(this.baseOffset, '.index'), offsetBytes, false);
    await writeFileDurable(ops, this.dir, segmentFileName(this.baseOffset, '.timeindex'), timeBytes, false);
  }

  /** After seal: the segment becomes read-only; fd and indexes reopen lazily for reads. */
  closeWriteFd(): void {
    if (this.writeFd >= 0) {
      this.ctx.ops.closeSync(this.writeFd);
      this.writeFd = -1;
    }
    this.indexes = null;
  }

  close(): void {
    this.ctx.readFds.forget(this);
    this.releaseReadState();
    this.closeWriteFd();
  }

  deleteFiles(): void {
    this.close();
    for (const file of [this.logPath, this.indexPath, this.timeIndexPath]) {
      try {
        this.ctx.ops.unlinkSync(file);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
  }

  // -------------------------------------------------------------------------------------
  // Index files at open

  /**
   * The check of a sealed segment's index files at open: both decode (whole entries,
   * offsets and timestamps increasing, positions inside the log), and they agree with the
   * log's tail: a header walk from the last offset index entry must end exactly at the end
   * of the file, and no batch in that tail may be newer than the time index's last entry,
   * which sealing makes the segment's max timestamp. A zeroed or stale time index would
   * otherwise make ListOffsets skip the segment silently. Sets maxTimestamp.
   */
  checkIndexFiles(): boolean {
    const indexes = this.loadIndexFiles();
    if (indexes === null) return false;
    const lastOffsetEntry = indexes.offsetIndex.last();
    const lastTimeEntry = indexes.timeIndex.last();
    const timeIndexMax = lastTimeEntry === null ? -1 : lastTimeEntry.timestamp;
    let fd = -1;
    try {
      fd = this.ctx.ops.openSync(this.logPath, 'r');
      let tailEnd = lastOffsetEntry === null ? 0 : lastOffsetEntry.position;
      let lastRelativeOffset = -1;
      let tailNewerThanIndex = false;
      walkBatches(this.ctx.ops, fd, tailEnd, this.baseOffset + (lastOffsetEntry?.relativeOffset ?? 0), this.sizeBytes, (ref) => {
        if (ref.maxTimestamp > timeIndexMax) tailNewerThanIndex = true;
        tailEnd = ref.position + ref.sizeBytes;
        lastRelativeOffset = ref.lastOffset - this.baseOffset;
        return tailNewerThanIndex;
      });
      if (tailNewerThanIndex || tailEnd !== this.sizeBytes) return false;
      if (lastTimeEntry !== null && lastTimeEntry.relativeOffset > lastRelativeOffset) return false;
    } catch (err) {
      if (err instanceof TributaryError) return false;
      throw err;
    } finally {
      if (fd >= 0) this.ctx.ops.closeSync(fd);
    }
    this.maxTimestamp = timeIndexMax;
    return true;
  }

  /**
   * Both index files fully decoded and validated, or null if either is unusable. With a
   * request's `budget`, their sizes are taken from it before a byte of them is read: a
   * request that cannot pay loads nothing (THROTTLED).
   */
  loadIndexFiles(budget?: RequestBudget): SegmentIndexes | null {
    const ops = this.ctx.ops;
    if (budget !== undefined) chargeSegmentOpen(budget, Math.max(0, fileSizeOrMissing(ops, this.indexPath)) + Math.max(0, fileSizeOrMissing(ops, this.timeIndexPath)));
    const offsetBytes = readFileSyncOrNull(ops, this.indexPath);
    const timeBytes = readFileSyncOrNull(ops, this.timeIndexPath);
    if (offsetBytes === null || timeBytes === null) return null;
    const offsetIndex = OffsetIndex.decode(offsetBytes, this.sizeBytes);
    const timeIndex = TimeIndex.decode(timeBytes);
    if (offsetIndex === null || timeIndex === null) return null;
    return new SegmentIndexes(this.baseOffset, offsetIndex, timeIndex);
  }

  /** Rewrites a sealed segment's index files from a header walk of its log. */
  async rebuildIndexFiles(): Promise<string | null> {
    const fd = this.ctx.ops.openSync(this.logPath, 'r');
    let stopReason: string | null;
    try {
      const scan = scanSegment(this.ctx.ops, fd, this.sizeBytes, this.baseOffset, this.ctx.indexIntervalBytes(), false);
      scan.indexes.sealTimeIndex();
      this.maxTimestamp = scan.indexes.maxTimestamp;
      stopReason = scan.stopReason;
      await writeFileDurable(this.ctx.ops, this.dir, segmentFileName(this.baseOffset, '.index'), scan.indexes.offsetIndex.encode(), false);
      await writeFileDurable(this.ctx.ops, this.dir, segmentFileName(this.baseOffset, '.timeindex'), scan.indexes.timeIndex.encode(), false);
    } finally {
      this.ctx.ops.closeSync(fd);
    }
    return stopReason;
  }

  // -------------------------------------------------------------------------------------
  // Reading

  releaseReadState(): void {
    if (this.readFd >= 0) {
      try {
        this.ctx.ops.closeSync(this.readFd);
      } catch {
        // Closing a read-only fd cannot lose data; nothing to do about a failure.
      }
      this.readFd = -1;
    }
    if (this.writeFd < 0) this.indexes = null;
  }

  /**
   * The fd and indexes for a read; for sealed segments through the LRU. A cold segment's
   * indexes are loaded first, paid from the request's `budget` when it has one (Fetch, a
   * push, ListOffsets): refused, nothing is opened. A warm one costs nothing.
   */
  private openForRead(budget?: RequestBudget): { fd: number; indexes: SegmentIndexes } {
    if (this.writeFd >= 0 && this.indexes !== null) return { fd: this.writeFd, indexes: this.indexes };
    const loaded = this.indexes ?? this.loadIndexFiles(budget);
    this.ctx.readFds.touch(this, this.ctx.label);
    try {
      if (this.readFd < 0) this.readFd = this.ctx.ops.openSync(this.logPath, 'r');
    } catch (err) {
      this.ctx.readFds.forget(this);
      throw new TributaryError(Errors.STORAGE_ERROR, `${this.ctx.label}: cannot open ${this.name}: ${(err as Error).message}`, { cause: err });
    }
    this.indexes = loaded ?? this.rebuildIndexesInMemory(this.readFd, budget);
    return { fd: this.readFd, indexes: this.indexes };
  }

  /**
   * A sealed segment whose index files are missing or turned out bad on full load: index it
   * from its headers for this process, a scan of the whole log paid from `budget` first.
   * Bad files are removed before, so that the next start rewrites them, and so that a
   * request refused here leaves the next one a segment without files, which it may open
   * with a budget of its own (chargeSegmentOpen), rather than bad files to pay for again.
   */
  private rebuildIndexesInMemory(fd: number, budget: RequestBudget | undefined): SegmentIndexes {
    for (const file of [this.indexPath, this.timeIndexPath]) {
      try {
        this.ctx.ops.unlinkSync(file);
      } catch {
        // Already gone, or the disk refuses: the next start checks the files again.
      }
    }
    if (budget !== undefined) chargeSegmentOpen(budget, this.sizeBytes);
    const scan = scanSegment(this.ctx.ops, fd, this.sizeBytes, this.baseOffset, this.ctx.indexIntervalBytes(), false);
    scan.indexes.sealTimeIndex();
    this.maxTimestamp = scan.indexes.maxTimestamp;
    this.ctx.note(`rebuilt the indexes of ${this.name} on read: the files were missing or invalid`);
    return scan.indexes;
  }

  private corrupt(offset: number, detail: string, cause?: unknown): TributaryError {
    return new TributaryError(Errors.CORRUPT_BATCH, `${this.ctx.label} offset ${offset} in ${this.name}: ${detail}`, { cause });
  }

  /** The first batch whose last offset is >= `offset`, found via the index and a header walk. */
  private locate(fd: number, indexes: SegmentIndexes, offset: number): BatchRef | null {
    const entry = indexes.offsetIndex.lookup(offset - this.baseOffset);
    try {
      return walkBatches(this.ctx.ops, fd, entry.position, this.baseOffset + entry.relativeOffset, this.sizeBytes, (ref) => ref.lastOffset >= offset);
    } catch (err) {
      if (err instanceof TributaryError) throw this.corrupt(offset, err.message, err);
      throw err;
    }
  }

  /**
   * Calls `visit` with the header (first BATCH_OVERHEAD bytes) of every batch from the one
   * holding `fromOffset` to `endOffset`, reading headers only: no CRC, no records. For
   * rebuilding state from the log at open (producer state), where a full read would read
   * and check every byte a second time right after recovery did.
   */
  walkHeaders(fromOffset: number, endOffset: number, visit: (baseOffset: number, header: Buffer) => void): void {
    const { fd, indexes } = this.openForRead();
    const entry = indexes.offsetIndex.lookup(Math.max(0, fromOffset - this.baseOffset));
    try {
      walkBatches(this.ctx.ops, fd, entry.position, this.baseOffset + entry.relativeOffset, this.sizeBytes, (ref, header) => {
        if (ref.baseOffset >= endOffset) return true;
        if (ref.lastOffset >= fromOffset) visit(ref.baseOffset, header);
        return false;
      });
    } catch (err) {
      if (err instanceof TributaryError) throw this.corrupt(fromOffset, err.message, err);
      throw err;
    }
  }

  /**
   * Whole stored batches, starting with the one holding `fetchOffset`, up to `maxBytes` but
   * at least one (KIP-74), none whose last offset reaches `maxOffset`. Null when this
   * segment holds no batch at or after `fetchOffset`. Each batch is checked (length, base
   * offset, CRC) right after it is read; a corrupt batch is never served.
   */
  read(fetchOffset: number, maxBytes: number, maxOffset: number, budget?: RequestBudget): LogRead | null {
    const { fd, indexes } = this.openForRead(budget);
    const first = this.locate(fd, indexes, fetchOffset);
    if (first === null) return null;
    if (first.lastOffset >= maxOffset) return EMPTY_READ;
    const length = Math.min(readBytesMax(first.sizeBytes, maxBytes), this.sizeBytes - first.position);
    const out = Buffer.allocUnsafe(length);
    const got = readFully(this.ctx.ops, fd, out, 0, length, first.position);
    if (got < first.sizeBytes) throw this.corrupt(first.baseOffset, `segment file ends at ${first.position + got}, the batch needs ${first.sizeBytes} bytes`);
    return this.takeCheckedBatches(out.subarray(0, got), first.baseOffset, maxOffset);
  }

  /**
   * The prefix of `buf` made of whole, valid batches with increasing offsets below
   * `maxOffset`, with what their headers say: the check reads them anyway.
   */
  private takeCheckedBatches(buf: Buffer, baseOffset: number, maxOffset: number): LogRead {
    let at = 0;
    let expected = baseOffset;
    const batches: StoredBatch[] = [];
    while (at < buf.length) {
      const size = batchSizeAt(buf, at);
      if (size < 0 || at + size > buf.length) break; // cut by maxBytes: the next fetch reads it
      let stored: StoredBatch;
      try {
        if (size < BATCH_OVERHEAD) throw new Error(`batch length ${size} below the header size`);
        const batch = buf.subarray(at, at + size);
        const storedBase = readInt64(batch, 0);
        // A gap is a batch the log cleaner removed; going backwards is corruption.
        if (storedBase < expected) throw new Error(`stored base offset ${storedBase}, expected ${expected} or a later one`);
        validateBatch(batch);
        stored = {
          baseOffset: storedBase,
          lastOffset: storedBase + batch.readInt32BE(OFFSET_LAST_OFFSET_DELTA),
          recordCount: batch.readInt32BE(OFFSET_RECORD_COUNT),
          leaderEpoch: batch.readInt32BE(OFFSET_LEADER_EPOCH),
          sizeBytes: size,
        };
      } catch (err) {
        // Batches before the corrupt one are good and are served; the corrupt one is
        // reported when a fetch starts at it.
        if (at === 0) throw this.corrupt(expected, (err as Error).message, err);
        break;
      }
      if (stored.lastOffset >= maxOffset) break;
      batches.push(stored);
      at += size;
      expected = stored.lastOffset + 1;
    }
    if (!(at > 0 || buf.length === 0)) throw new AssertionError(`no batch taken from a read that located one`);
    return { bytes: buf.subarray(0, at), batches };
  }

  /**
   * Kafka's ListOffsets by time within this segment: the first record whose timestamp is
   * >= `timestampMs`. The time index gives where to start, a header walk finds the batch by
   * its max timestamp, and only that one batch is decoded, inflated within the request's
   * budget and `recordsBytesMax` (the topic's max.message.bytes: a bomb stored before
   * produce checked records inflates no further). What it reads (index files loaded for
   * it, before they are read; headers walked; the batch) is taken from the budget's
   * scanBytesLeft: it returns no byte of it.
   */
  findOffsetByTimestamp(timestampMs: number, budget: RequestBudget, recordsBytesMax: number): { offset: number; timestamp: number } | null {
    if (this.maxTimestamp < timestampMs) return null;
    const { fd, indexes } = this.openForRead(budget);
    const timeEntry = indexes.timeIndex.lookup(timestampMs);
    const entry = indexes.offsetIndex.lookup(timeEntry === null ? 0 : timeEntry.relativeOffset);
    let found: { offset: number; timestamp: number } | null = null;
    let failure: unknown = null;
    try {
      const stop = (ref: BatchRef, header: Buffer): boolean => {
        if (ref.maxTimestamp < timestampMs) return false;
        try {
          found = this.firstRecordAtOrAfter(fd, ref, header, timestampMs, budget, recordsBytesMax);
        } catch (err) {
          failure = err;
          return true;
        }
        return found !== null;
      };
      walkBatches(this.ctx.ops, fd, entry.position, this.baseOffset + entry.relativeOffset, this.sizeBytes, stop, budget);
    } catch (err) {
      if (err instanceof LimitReachedError) throw err;
      if (err instanceof TributaryError) throw this.corrupt(this.baseOffset + entry.relativeOffset, err.message, err);
      throw err;
    }
    if (failure !== null) throw failure;
    return found;
  }

  private firstRecordAtOrAfter(
    fd: number,
    ref: BatchRef,
    header: Buffer,
    timestampMs: number,
    budget: RequestBudget,
    recordsBytesMax: number,
  ): { offset: number; timestamp: number } | null {
    const compressed = compressionOf(header) !== Compression.None;
    // A request that can inflate nothing more is refused before the batch is even read.
    if (compressed) checkCanInflate(budget);
    chargeScan(budget, ref.sizeBytes);
    const batch = Buffer.allocUnsafe(ref.sizeBytes);
    if (readFully(this.ctx.ops, fd, batch, 0, ref.sizeBytes, ref.position) !== ref.sizeBytes) {
      throw this.corrupt(ref.baseOffset, `segment file ends before the batch at position ${ref.position}`);
    }
    let records: DecodedRecord[];
    try {
      records = compressed ? inflateWithin(budget, recordsBytesMax, (bytesMax) => decodeBatch(batch, { decompressedBytesMax: bytesMax })).records : decodeBatch(batch).records;
    } catch (err) {
      if (err instanceof LimitReachedError) throw err;
      throw this.corrupt(ref.baseOffset, (err as Error).message, err);
    }
    const found = firstRecordAtOrAfter(records, timestampMs);
    return found === undefined ? null : { offset: found.offset, timestamp: found.timestamp };
  }
}

