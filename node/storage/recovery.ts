// Opening a partition's folder: which segments to trust, which to scan, what to cut.
//
// Clean start (the manager found its clean-shutdown marker): every file was synced and
// every index written at close. Trust them after a cheap check (index files present, whole
// entries, last entry inside the log); the newest segment's end is found by walking headers
// from its last index entry. Anything that fails the check is rebuilt.
//
// Unclean start: segments below the recovery point checkpoint were sealed (log fsynced,
// then indexes written), so they get the same cheap check. Every segment from the
// checkpoint on, the newest always among them, is scanned batch by batch (length, magic,
// increasing offsets, CRC). At the first torn or corrupt batch the file is truncated and all
// later segments are deleted: nothing after that point was ever acknowledged as durable
// (flush=batch acknowledges only after the checkpoint and the fsync covered it). Scanned
// older segments are then sealed, the newest is fsynced, and the checkpoint moves to it.
// When the checkpoint also says the newest segment was synced through a position, with
// index files for that part (the checkpoint job writes them), and no other segment needs a
// scan, that part is trusted like a sealed segment and only the bytes after it are
// scanned: an open never reads a whole segment then.
//
// Corruption inside a sealed segment is not looked for here (that would read the whole log
// at every start); read() finds it, reports CORRUPT_BATCH and never serves it.

import * as path from 'node:path';
import { walkBatches } from './batch-walk.js';
import { readRecoveryCheckpoint, RECOVERY_CHECKPOINT_FILE, writeRecoveryCheckpoint, type ActiveSegmentCheckpoint } from './checkpoint.js';
import { fsyncDir, TMP_PREFIX } from './file-ops.js';
import { LEADER_EPOCH_CHECKPOINT_FILE } from './leader-epoch.js';
import { LogSegment, segmentFileName } from './segment.js';
import type { SegmentContext } from './segment.js';
import { scanSegment } from './segment-scan.js';
import type { SegmentScan } from './segment-scan.js';

/** What opening one partition found and did; the server prints it. */
export interface PartitionRecovery {
  topic: string;
  partition: number;
  /** True when the clean-shutdown marker let open trust the indexes instead of scanning. */
  clean: boolean;
  scannedSegments: number;
  scannedBytes: number;
  /** Bytes cut from the end of the log: torn or corrupt batches and what followed them. */
  truncatedBytes: number;
  deletedSegments: string[];
  rebuiltIndexes: string[];
  notes: string[];
}

export interface RecoveredLog {
  segments: LogSegment[];
  logEndOffset: number;
}

const SEGMENT_LOG_FILE = /^(\d{20})\.log$/;
const KNOWN_FILE = /^\d{20}\.(index|timeindex|snapshot)$/;
const SEGMENT_INDEX_FILE = /^(\d{20})\.(index|timeindex)$/;
const NOTES_MAX = 32;

export function newPartitionRecovery(topic: string, partition: number, clean: boolean): PartitionRecovery {
  return { topic, partition, clean, scannedSegments: 0, scannedBytes: 0, truncatedBytes: 0, deletedSegments: [], rebuiltIndexes: [], notes: [] };
}

/** Notes are bounded: a folder full of junk must not turn into a megabyte report. */
export function addNote(report: PartitionRecovery, note: string): void {
  if (report.notes.length < NOTES_MAX) report.notes.push(note);
  else if (report.notes.length === NOTES_MAX) report.notes.push('(further notes dropped)');
}

export async function recoverPartition(ctx: SegmentContext, dir: string, clean: boolean, report: PartitionRecovery): Promise<RecoveredLog> {
  const bases = await listSegmentBases(ctx, dir, report);
  if (bases.length === 0) {
    // No segment at all. A checkpoint past 0 says there was data: it is gone (deleted by
    // hand, a lost disk). Start again where the sealed segments ended rather than at 0, so
    // offsets consumers already passed are not handed out again, and say so. (Offsets of
    // the lost active segment above the checkpoint cannot be known.)
    const checkpoint = readRecoveryCheckpoint(ctx.ops, dir);
    const resumeAt = Math.max(checkpoint.sealedBelow, checkpoint.active?.offset ?? 0);
    if (resumeAt > 0) addNote(report, `no segment files, though offsets below ${resumeAt} were written: that data is gone; the log continues at ${resumeAt}`);
    const segment = LogSegment.create(ctx, dir, resumeAt);
    await fsyncDir(ctx.ops, dir);
    return { segments: [segment], logEndOffset: resumeAt };
  }
  const segments = bases.map((base) => LogSegment.existing(ctx, dir, base));
  const checkpoint = clean ? null : readRecoveryCheckpoint(ctx.ops, dir);
  const recoveryPoint = checkpoint === null ? Number.POSITIVE_INFINITY : checkpoint.sealedBelow;
  let firstToScan = segments.findIndex((s) => s.baseOffset >= recoveryPoint);
  if (firstToScan < 0) firstToScan = segments.length - 1;
  let rewroteIndexes = false;
  for (let i = 0; i < firstToScan; i++) {
    if (await checkSealedSegment(ctx, segments[i], report)) rewroteIndexes = true;
  }
  if (clean) {
    const newest = segments[segments.length - 1];
    const logEndOffset = resumeNewest(ctx, newest);
    if (logEndOffset >= 0) {
      if (rewroteIndexes) await fsyncDir(ctx.ops, dir);
      return { segments, logEndOffset };
    }
    addNote(report, `${newest.name}: its index files did not match the log after a clean shutdown; scanned it`);
  }
  const active = checkpoint?.active ?? null;
  const newest = segments[segments.length - 1];
  if (active !== null && firstToScan === segments.length - 1 && newest.baseOffset === active.baseOffset) {
    const logEndOffset = await resumeFromActiveCheckpoint(ctx, newest, active, report);
    if (logEndOffset >= 0) {
      if (rewroteIndexes) await fsyncDir(ctx.ops, dir);
      return { segments, logEndOffset };
    }
  }
  let logEndOffset = await scanAndRepair(ctx, segments, firstToScan, report);
  if (active !== null && logEndOffset < active.offset) {
    // Offsets below active.offset were synced once (the checkpoint says so), and consumers
    // may have passed them: the data is gone (a damaged or restored disk), but the offsets
    // must not be handed out again. Continue after them in a new segment.
    addNote(report, `the log ends at ${logEndOffset} but offsets below ${active.offset} were synced before: that data is gone; the log continues at ${active.offset}`);
    const last = segments[segments.length - 1];
    await last.seal();
    last.closeWriteFd();
    segments.push(LogSegment.create(ctx, dir, active.offset));
    logEndOffset = active.offset;
  }
  // The checkpoint's durable rename also fsyncs the folder: rebuilt index files, deleted segments.
  await writeRecoveryCheckpoint(ctx.ops, dir, segments[segments.length - 1].baseOffset);
  return { segments, logEndOffset };
}

// ---------------------------------------------------------------------------------------
// Compaction: a swap the log cleaner (cleaner.ts) did not finish. It writes
// `<base>.log.cleaned` and `<base>.index.swap`/`.timeindex.swap`, fsyncs them, then renames
// the log to `<base>.log.swap`: that rename is the commit. Without a `.log.swap` the old
// segment is whole and the cleaner's files go; with one, the swap is finished here.

export const CLEANED_SUFFIX = '.cleaned';
export const SWAP_SUFFIX = '.swap';
const CLEANER_FILE = /^(\d{20})\.(log|index|timeindex)\.(cleaned|swap)$/;

async function finishCleanerSwaps(ctx: SegmentContext, dir: string, report: PartitionRecovery): Promise<void> {
  const names = new Set((await ctx.ops.readdir(dir)).map((e) => e.name));
  let changed = false;
  for (const name of names) {
    const match = CLEANER_FILE.exec(name);
    if (match === null || (match[2] === 'log' && match[3] === 'swap')) continue;
    if (match[3] === 'swap' && names.has(`${match[1]}.log${SWAP_SUFFIX}`)) continue;
    await ctx.ops.rm(path.join(dir, name));
    changed = true;
  }
  for (const name of names) {
    const match = CLEANER_FILE.exec(name);
    if (match === null || match[2] !== 'log' || match[3] !== 'swap') continue;
    const base = Number(match[1]);
    for (const suffix of ['.index', '.timeindex'] as const) {
      const final = path.join(dir, segmentFileName(base, suffix));
      // Without its cleaned index, the old one would not match the new log: it is rebuilt.
      if (names.has(segmentFileName(base, suffix) + SWAP_SUFFIX)) await ctx.ops.rename(final + SWAP_SUFFIX, final);
      else await ctx.ops.rm(final);
    }
    await ctx.ops.rename(path.join(dir, name), path.join(dir, segmentFileName(base, '.log')));
    addNote(report, `finished the log cleaner's swap of ${segmentFileName(base, '.log')}`);
    changed = true;
  }
  if (changed) await fsyncDir(ctx.ops, dir);
}

async function listSegmentBases(ctx: SegmentContext, dir: string, report: PartitionRecovery): Promise<number[]> {
  await finishCleanerSwaps(ctx, dir, report);
  const bases: number[] = [];
  const entries = await ctx.ops.readdir(dir);
  const logNames = new Set(entries.filter((e) => SEGMENT_LOG_FILE.test(e.name)).map((e) => e.name.slice(0, 20)));
  for (const entry of entries) {
    const orphan = SEGMENT_INDEX_FILE.exec(entry.name);
    if (orphan !== null && !logNames.has(orphan[1])) {
      // Retention deletes a segment's .log first: a crash right after leaves its indexes.
      await ctx.ops.rm(path.join(dir, entry.name));
      continue;
    }
    const match = SEGMENT_LOG_FILE.exec(entry.name);
    if (match !== null && !entry.isDirectory) {
      const base = Number(match[1]);
      if (Number.isSafeInteger(base)) bases.push(base);
      else addNote(report, `ignored ${entry.name}: base offset beyond 2^53`);
    } else if (entry.name.startsWith(TMP_PREFIX)) {
      // A durable write that a crash interrupted before its rename: never visible, drop it.
      await ctx.ops.rm(path.join(dir, entry.name));
    } else if (!KNOWN_FILE.test(entry.name) && entry.name !== RECOVERY_CHECKPOINT_FILE && entry.name !== LEADER_EPOCH_CHECKPOINT_FILE) {
      addNote(report, `ignored unknown file ${entry.name}`);
    }
  }
  return bases.sort((a, b) => a - b);
}

/** The cheap check of a sealed segment; rebuilds its index files if it fails. */
async function checkSealedSegment(ctx: SegmentContext, segment: LogSegment, report: PartitionRecovery): Promise<boolean> {
  if (segment.checkIndexFiles()) return false;
  const stopReason = await segment.rebuildIndexFiles();
  report.rebuiltIndexes.push(segmentFileName(segment.baseOffset, '.index'), segmentFileName(segment.baseOffset, '.timeindex'));
  if (stopReason !== null) addNote(report, `${segment.name}: rebuilt index covers the log only up to ${stopReason}`);
  return true;
}

/**
 * Clean start: loads the newest segment's index files and walks headers from the last index
 * entry to the end of the file. Returns the log end offset, or -1 when the files and the log
 * disagree (the caller scans the segment instead).
 */
function resumeNewest(ctx: SegmentContext, segment: LogSegment): number {
  if (!segment.checkIndexFiles()) return -1;
  const indexes = segment.loadIndexFiles();
  if (indexes === null) return -1;
  const last = indexes.offsetIndex.last();
  const from = last === null ? 0 : last.position;
  const fd = segment.openWriteFd();
  let nextOffset = segment.sizeBytes === 0 ? segment.baseOffset : -1;
  try {
    walkBatches(ctx.ops, fd, from, segment.baseOffset + (last === null ? 0 : last.relativeOffset), segment.sizeBytes, (ref) => {
      if (ref.maxTimestamp > indexes.maxTimestamp) {
        indexes.maxTimestamp = ref.maxTimestamp;
        indexes.relativeOffsetOfMaxTimestamp = ref.baseOffset - segment.baseOffset;
      }
      nextOffset = ref.lastOffset + 1;
      return false;
    });
  } catch {
    return -1;
  }
  indexes.bytesSinceLastIndexEntry = segment.sizeBytes - from;
  segment.adoptIndexes(indexes);
  return nextOffset;
}

/**
 * Unclean start, when the checkpoint job last saw the newest segment synced through
 * `active.position`: the bytes before it were fdatasynced, and its index files (written
 * after that sync) index them. So trust them as a sealed segment is trusted: load the
 * index files, walk headers from their last entry to the checkpointed position (which must
 * land exactly there, at the checkpointed offset), and scan only the rest, CRC and all.
 * Returns the log end offset, or -1 when anything disagrees (the caller scans it whole).
 */
async function resumeFromActiveCheckpoint(ctx: SegmentContext, segment: LogSegment, active: ActiveSegmentCheckpoint, report: PartitionRecovery): Promise<number> {
  const { position, offset } = active;
  const disagree = (why: string): number => {
    addNote(report, `${segment.name}: ${why}; scanned it whole`);
    return -1;
  };
  if (position <= 0 || position > segment.sizeBytes) return disagree(`checkpointed position ${position} is outside the file of ${segment.sizeBytes} bytes`);
  const indexes = segment.loadIndexFiles();
  if (indexes === null) return disagree('its checkpointed index files are missing or invalid');
  // Files written by a later checkpoint than the one this file records may index further.
  indexes.offsetIndex.truncateAtPosition(position);
  indexes.timeIndex.truncateAtRelativeOffset(offset - segment.baseOffset);
  const lastTime = indexes.timeIndex.last();
  indexes.maxTimestamp = lastTime?.timestamp ?? -1;
  indexes.relativeOffsetOfMaxTimestamp = lastTime?.relativeOffset ?? 0;
  const last = indexes.offsetIndex.last();
  const from = last?.position ?? 0;
  let nextOffset = segment.baseOffset + (last?.relativeOffset ?? 0);
  const fd = segment.openWriteFd();
  try {
    walkBatches(ctx.ops, fd, from, nextOffset, position, (ref) => {
      if (ref.maxTimestamp > indexes.maxTimestamp) {
        indexes.maxTimestamp = ref.maxTimestamp;
        indexes.relativeOffsetOfMaxTimestamp = ref.baseOffset - segment.baseOffset;
      }
      nextOffset = ref.lastOffset + 1;
      return false;
    });
  } catch (err) {
    return disagree(`walking to the checkpointed position failed: ${(err as Error).message}`);
  }
  if (nextOffset !== offset) return disagree(`the batches before position ${position} end at offset ${nextOffset}, the checkpoint says ${offset}`);
  indexes.bytesSinceLastIndexEntry = position - from;
  const scan = scanSegment(ctx.ops, fd, segment.sizeBytes, segment.baseOffset, ctx.indexIntervalBytes(), true, { position, offset, indexes });
  report.scannedSegments++;
  report.scannedBytes += segment.sizeBytes - position;
  if (scan.stopReason !== null) {
    report.truncatedBytes += segment.sizeBytes - scan.validBytes;
    addNote(report, `${segment.name}: truncated ${segment.sizeBytes - scan.validBytes} bytes: ${scan.stopReason}`);
    segment.truncateTo(scan.validBytes);
  }
  segment.adoptIndexes(scan.indexes);
  // The scanned bytes may exist only in the page cache of a crashed process.
  await segment.flushData();
  return scan.nextOffset;
}

/**
 * Scans segments[first..], cuts at the first torn or corrupt batch (deleting every later
 * segment), seals the scanned older segments and fsyncs the newest. Returns the log end.
 */
async function scanAndRepair(ctx: SegmentContext, segments: LogSegment[], first: number, report: PartitionRecovery): Promise<number> {
  const scans: SegmentScan[] = [];
  for (let i = first; i < segments.length; i++) {
    const segment = segments[i];
    const previous = scans[scans.length - 1];
    // A gap is fine: the log cleaner may have removed a segment's last batches.
    if (previous !== undefined && segment.baseOffset < previous.nextOffset) {
      addNote(report, `${segment.name}: starts at ${segment.baseOffset} but the log before it reaches ${previous.nextOffset}`);
      deleteSegmentsFrom(segments, i, report);
      break;
    }
    const scan = scanSegment(ctx.ops, segment.openWriteFd(), segment.sizeBytes, segment.baseOffset, ctx.indexIntervalBytes(), true);
    scans.push(scan);
    report.scannedSegments++;
    report.scannedBytes += segment.sizeBytes;
    report.rebuiltIndexes.push(segmentFileName(segment.baseOffset, '.index'), segmentFileName(segment.baseOffset, '.timeindex'));
    if (scan.stopReason !== null) {
      report.truncatedBytes += segment.sizeBytes - scan.validBytes;
      addNote(report, `${segment.name}: truncated ${segment.sizeBytes - scan.validBytes} bytes: ${scan.stopReason}`);
      segment.truncateTo(scan.validBytes);
      deleteSegmentsFrom(segments, i + 1, report);
    }
  }
  for (let i = first; i < segments.length; i++) {
    const segment = segments[i];
    segment.adoptIndexes(scans[i - first].indexes);
    if (i < segments.length - 1) {
      await segment.seal();
      segment.closeWriteFd();
    } else {
      // The scanned bytes may exist only in the page cache of a crashed process.
      await segment.flushData();
    }
  }
  return scans[segments.length - 1 - first].nextOffset;
}

function deleteSegmentsFrom(segments: LogSegment[], from: number, report: PartitionRecovery): void {
  for (const segment of segments.splice(from)) {
    report.truncatedBytes += segment.sizeBytes;
    report.deletedSegments.push(segment.name);
    segment.deleteFiles();
  }
}
