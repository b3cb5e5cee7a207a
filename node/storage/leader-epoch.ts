// The partition's leader epochs (KIP-101): which epoch wrote which offsets. Every batch
// carries the epoch of the leader that appended it (its partitionLeaderEpoch field); this
// keeps where each epoch began, so that a consumer or a follower holding a position and
// the epoch of the record before it can ask whether the log it read still exists
// (OffsetsForLeaderEpoch, KIP-279) and find where it diverged if not (KIP-320).
//
// The checkpoint, `leader-epoch-checkpoint`, is Kafka's file:
//
//   0\n                       format version
//   <count>\n                 number of entries
//   <epoch> <startOffset>\n   one per epoch, both increasing
//
// It is written durably (temp file, fsync, rename, folder fsync) before the first batch of
// a new epoch is appended, so every epoch a reader can have seen is in it after any crash.

import * as path from 'node:path';
import { readFileSyncOrNull, writeFileDurable } from './file-ops.js';
import type { FileOps } from './file-ops.js';

export const LEADER_EPOCH_CHECKPOINT_FILE = 'leader-epoch-checkpoint';

/** Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET: no epoch known, no answer. */
export const UNDEFINED_EPOCH = -1;
export const UNDEFINED_EPOCH_OFFSET = -1;

const INT32_MAX = 0x7fffffff;

export interface EpochEntry {
  readonly epoch: number;
  readonly startOffset: number;
}

/** KIP-279's answer: the largest epoch <= the one asked, and where the next one begins. */
export interface EpochEndOffset {
  leaderEpoch: number;
  endOffset: number;
}

export class LeaderEpochCache {
  private entries: EpochEntry[];

  constructor(entries: readonly EpochEntry[] = []) {
    checkEntries(entries);
    this.entries = entries.slice();
  }

  /** The newest epoch, or UNDEFINED_EPOCH when none has begun. */
  get latestEpoch(): number {
    return this.entries.length === 0 ? UNDEFINED_EPOCH : this.entries[this.entries.length - 1].epoch;
  }

  get latestEntry(): EpochEntry | undefined {
    return this.entries[this.entries.length - 1];
  }

  /** Entries, oldest first (a copy). */
  list(): EpochEntry[] {
    return this.entries.slice();
  }

  /**
   * Records that `epoch` begins at `startOffset`, as Kafka's assign: a later epoch, or a
   * repeat of the latest (ignored). Entries that conflict with it (an epoch >= it, or a
   * start offset >= its start) are dropped first: they belonged to a log that was cut.
   * Returns true when the entries changed, so the caller writes the checkpoint.
   */
  assign(epoch: number, startOffset: number): boolean {
    if (!(Number.isInteger(epoch) && epoch >= 0 && epoch <= INT32_MAX)) throw new RangeError(`leader epoch ${epoch} is not a non-negative int32`);
    if (!(Number.isSafeInteger(startOffset) && startOffset >= 0)) throw new RangeError(`start offset ${startOffset} of leader epoch ${epoch} is not a non-negative offset`);
    const latest = this.latestEntry;
    if (latest !== undefined && latest.epoch === epoch && latest.startOffset <= startOffset) return false;
    this.entries = this.entries.filter((e) => e.epoch < epoch && e.startOffset < startOffset);
    this.entries.push({ epoch, startOffset });
    return true;
  }

  /**
   * Kafka's LeaderEpochFileCache.endOffsetFor: for the latest epoch, the log end offset; for
   * an older one, the largest epoch <= it and the start offset of the first epoch above it
   * (where the log asked about ended); an epoch older than every entry answers itself and the
   * first entry's start; UNDEFINED for UNDEFINED or an epoch above the latest.
   */
  endOffsetFor(requestedEpoch: number, logEndOffset: number): EpochEndOffset {
    const undefinedAnswer = { leaderEpoch: UNDEFINED_EPOCH, endOffset: UNDEFINED_EPOCH_OFFSET };
    if (requestedEpoch === UNDEFINED_EPOCH || this.entries.length === 0) return undefinedAnswer;
    if (requestedEpoch === this.latestEpoch) return { leaderEpoch: requestedEpoch, endOffset: logEndOffset };
    const higher = this.entries.findIndex((e) => e.epoch > requestedEpoch);
    if (higher < 0) return undefinedAnswer;
    if (higher === 0) return { leaderEpoch: requestedEpoch, endOffset: this.entries[0].startOffset };
    return { leaderEpoch: this.entries[higher - 1].epoch, endOffset: this.entries[higher].startOffset };
  }

  /** The epoch that wrote `offset` as far as the entries say, or UNDEFINED_EPOCH below them. */
  epochAt(offset: number): number {
    let epoch = UNDEFINED_EPOCH;
    for (const e of this.entries) {
      if (e.startOffset > offset) break;
      epoch = e.epoch;
    }
    return epoch;
  }

  /**
   * The log was cut to end at `endOffset`: epochs that began above it are gone (one that
   * begins exactly there has written nothing yet and stays). Returns true if any went.
   */
  truncateFromEnd(endOffset: number): boolean {
    const kept = this.entries.filter((e) => e.startOffset <= endOffset);
    if (kept.length === this.entries.length) return false;
    this.entries = kept;
    return true;
  }

  /**
   * The log now starts at `startOffset` (retention): epochs that ended below it are
   * forgotten, and the one holding it starts there, so the checkpoint stays as small as
   * the leader changes the log still holds.
   */
  truncateFromStart(startOffset: number): boolean {
    let firstKept = 0;
    while (firstKept + 1 < this.entries.length && this.entries[firstKept + 1].startOffset <= startOffset) firstKept++;
    const first = this.entries[firstKept];
    if (first === undefined || (firstKept === 0 && first.startOffset >= startOffset)) return false;
    this.entries = [{ epoch: first.epoch, startOffset: Math.max(first.startOffset, startOffset) }, ...this.entries.slice(firstKept + 1)];
    return true;
  }

  encode(): Buffer {
    const lines = ['0', String(this.entries.length), ...this.entries.map((e) => `${e.epoch} ${e.startOffset}`)];
    return Buffer.from(`${lines.join('\n')}\n`, 'latin1');
  }
}

function checkEntries(entries: readonly EpochEntry[]): void {
  for (let i = 1; i < entries.length; i++) {
    if (!(entries[i].epoch > entries[i - 1].epoch && entries[i].startOffset >= entries[i - 1].startOffset)) {
      throw new RangeError(`leader epochs out of order: ${entries[i - 1].epoch}@${entries[i - 1].startOffset} then ${entries[i].epoch}@${entries[i].startOffset}`);
    }
  }
}

/** What reading a checkpoint found: its entries, or why there are none to trust. */
export type EpochCheckpointRead = { entries: EpochEntry[] } | { entries: null; problem: 'missing' | string };

export function parseLeaderEpochCheckpoint(text: string): EpochEntry[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] !== '') throw new Error('does not end with a newline');
  lines.pop();
  if (lines[0] !== '0') throw new Error(`unknown version ${JSON.stringify(lines[0]?.slice(0, 16))}`);
  const count = Number(lines[1]);
  if (!(Number.isSafeInteger(count) && count >= 0 && lines.length === count + 2)) throw new Error(`count ${JSON.stringify(lines[1]?.slice(0, 16))} does not match ${lines.length - 2} entries`);
  const entries = lines.slice(2).map((line) => {
    const match = /^(\d{1,10}) (\d{1,16})$/.exec(line);
    if (match === null) throw new Error(`bad entry ${JSON.stringify(line.slice(0, 40))}`);
    const epoch = Number(match[1]);
    const startOffset = Number(match[2]);
    if (epoch > INT32_MAX || !Number.isSafeInteger(startOffset)) throw new Error(`entry out of range ${JSON.stringify(line)}`);
    return { epoch, startOffset };
  });
  try {
    checkEntries(entries);
  } catch (err) {
    throw new Error((err as Error).message);
  }
  return entries;
}

export function readLeaderEpochCheckpoint(ops: FileOps, dir: string): EpochCheckpointRead {
  const bytes = readFileSyncOrNull(ops, path.join(dir, LEADER_EPOCH_CHECKPOINT_FILE));
  if (bytes === null) return { entries: null, problem: 'missing' };
  // A checkpoint is a few lines per leader change; a huge file is not one.
  if (bytes.length > 1024 * 1024) return { entries: null, problem: `${bytes.length} bytes, too large` };
  try {
    return { entries: parseLeaderEpochCheckpoint(bytes.toString('latin1')) };
  } catch (err) {
    return { entries: null, problem: (err as Error).message };
  }
}

export function writeLeaderEpochCheckpoint(ops: FileOps, dir: string, cache: LeaderEpochCache): Promise<void> {
  return writeFileDurable(ops, dir, LEADER_EPOCH_CHECKPOINT_FILE, cache.encode());
}
