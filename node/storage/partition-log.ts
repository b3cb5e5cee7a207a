// One partition's log: an ordered list of segments, the newest one active. Appends are
// synchronous writes into the page cache (validate, patch base offset and leader epoch in
// place, write, index); durability is a separate, asynchronous step chosen per topic by the
// flush policy, with fsyncs coalesced (group commit). Reads return stored batches as they
// are, checked after reading, never a corrupt one.
//
// Offsets, as Kafka names them:
//   logStartOffset <= recoveryPoint <= logEndOffset, and
//   highWatermark = recoveryPoint with flush=batch (never expose what a crash could take
//   back before it was acknowledged), logEndOffset otherwise; after flush is altered to
//   batch at run time, never below the log end consumers were shown before the change.

import * as path from 'node:path';
import { systemClock, type Clock, type ClockTimer } from '../../protocol/clock.js';
import { AssertionError, Errors, TributaryError } from '../../protocol/errors.js';
import { isFetchOffsetInLog, offsetOutOfRange } from '../../protocol/fetch-rules.js';
import {
  BATCH_OVERHEAD,
  OFFSET_BASE_SEQUENCE,
  OFFSET_LAST_OFFSET_DELTA,
  OFFSET_LEADER_EPOCH,
  OFFSET_PRODUCER_EPOCH,
  OFFSET_PRODUCER_ID,
  batchSizeAt,
  lastOffsetOf,
  readBatchHeader,
  readInt64,
  setBaseOffset,
  setPartitionLeaderEpoch,
  validateBatch,
} from '../../protocol/record-batch.js';
import type { BatchHeader } from '../../protocol/record-batch.js';
import { readRecoveryCheckpoint, writeRecoveryCheckpoint } from './checkpoint.js';
import type { TopicConfig } from './config.js';
import { FsyncFailedError, fsyncDir, isDiskFull, nodeFileOps, readFileSyncOrNull, writeFileDurable } from './file-ops.js';
import type { FileOps } from './file-ops.js';
import { ReadFdCache } from './read-fd-cache.js';
import { LeaderEpochCache, readLeaderEpochCheckpoint, UNDEFINED_EPOCH, writeLeaderEpochCheckpoint } from './leader-epoch.js';
import type { EpochEndOffset, EpochEntry } from './leader-epoch.js';
import { addNote, newPartitionRecovery, recoverPartition } from './recovery.js';
import type { PartitionRecovery } from './recovery.js';
import { ProducerStateManager, SNAPSHOT_FILE, snapshotFileName, type ProducerBatchHeader } from './producer-state.js';
import { unlimitedBudget } from './request-budget.js';
import type { RequestBudget } from './request-budget.js';
import { EMPTY_READ, LogSegment } from './segment.js';
import type { LogRead, SegmentContext } from './segment.js';

export type { LogRead, StoredBatch } from './segment.js';

export interface AppendResult {
  baseOffset: number;
  lastOffset: number;
  /** -1: topics use CreateTime (Kafka answers -1 unless message.timestamp.type=LogAppendTime). */
  logAppendTime: number;
  /** Resolves once an fsync covers the batch (flush=batch); DURABLE_ALREADY otherwise. */
  durable: Promise<void>;
  /**
   * True when the batch was an idempotent producer's resend of one already in the log:
   * nothing was appended, and the offsets are where it was written the first time.
   */
  duplicate?: boolean;
}

/** What appendAsFollower appended: the leader's offsets, kept. */
export interface FollowerAppendResult {
  /** Base offset of the first batch appended (the log end offset when there was none). */
  baseOffset: number;
  lastOffset: number;
  /** As AppendResult.durable: the flush policy applies to a follower's appends too. */
  durable: Promise<void>;
}

/**
 * Growth of the active segment between two checkpoints of its indexes (see checkpoint()):
 * 1 MiB, or a 64th of segment.bytes when segments are smaller.
 */
export function activeCheckpointGrowthBytes(segmentBytes: number): number {
  return Math.min(1024 * 1024, Math.floor(segmentBytes / 64));
}

/** Snapshots of producer state kept per partition (the newest two, as Kafka keeps a few). */
const SNAPSHOTS_KEPT = 2;

/** What a PartitionLog shares with its manager. */
export interface PartitionEnv {
  ops: FileOps;
  readFds: ReadFdCache;
  /** Timers (flush.interval.ms) and the wall clock (segment.ms, producer expiry). */
  clock: Clock;
  /** clock.now, bound. */
  now: () => number;
}

export interface OpenPartitionOptions {
  /** True when the clean-shutdown marker says indexes can be trusted without a scan. */
  clean?: boolean;
  ops?: FileOps;
  readFds?: ReadFdCache;
  /** Default systemClock; tests drive a ManualClock. */
  clock?: Clock;
  /**
   * A follower's log: it keeps the epochs of the batches its leader sends and never begins
   * one of its own (not even after an unclean start). Default: this node leads it.
   */
  follower?: boolean;
}

const INT32_MAX = 0x7fffffff;
const RESOLVED: Promise<void> = Promise.resolve();

/**
 * `AppendResult.durable` when the batch is already as durable as the flush policy asks
 * (flush=interval or os, or a resend already synced): callers may answer without waiting.
 */
export const DURABLE_ALREADY: Promise<void> = RESOLVED;
const noop = (): void => {};

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** The idempotence fields of a parsed header, or null for a batch without a producer id. */
function producerFields(header: BatchHeader): ProducerBatchHeader | null {
  if (header.producerId < 0) return null;
  // Kafka's lastSequence = baseSequence + lastOffsetDelta: equal to the record count for an
  // appended batch (validate() checks it), and still right for one the log cleaner thinned.
  return { producerId: header.producerId, producerEpoch: header.producerEpoch, baseSequence: header.baseSequence, recordCount: header.lastOffsetDelta + 1 };
}

/**
 * As producerFields, from the raw header of a replay's walk: four fields read, no object
 * of seventeen made per batch of a long replay.
 */
function producerHeader(batch: Buffer): ProducerBatchHeader | null {
  const producerId = readInt64(batch, OFFSET_PRODUCER_ID);
  if (producerId < 0) return null;
  return {
    producerId,
    producerEpoch: batch.readInt16BE(OFFSET_PRODUCER_EPOCH),
    baseSequence: batch.readInt32BE(OFFSET_BASE_SEQUENCE),
    // Kafka's lastSequence = baseSequence + lastOffsetDelta: equal to the record count for an
    // appended batch (validate() checks it), and still right for one the log cleaner thinned.
    recordCount: batch.readInt32BE(OFFSET_LAST_OFFSET_DELTA) + 1,
  };
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A caller that ignores `durable` (acks=0) must not turn a failed fsync into an
  // unhandled rejection that kills the node; callers that await it still see the error.
  promise.catch(noop);
  return { promise, resolve, reject };
}

export class PartitionLog {
  readonly recovery: PartitionRecovery;
  private readonly segments: LogSegment[];
  private readonly env: PartitionEnv;
  private readonly segmentContext: SegmentContext;
  private _logEndOffset: number;
  private _recoveryPoint: number;
  private readonly listeners = new Set<() => void>();
  private notifyScheduled = false;
  private closed = false;
  /** Set when an fsync failed: the page cache may have dropped the data, so no retry. */
  private failure: TributaryError | null = null;
  // Group commit: appends since the last sync started wait on `pendingSync`; at most one
  // sync runs at a time, and the next one starts when it ends.
  private pendingSync: Deferred | null = null;
  private syncInFlight: Promise<void> | null = null;
  private syncStartScheduled = false;
  /** Rolled segments whose seal (log fsync, index files) has not run yet, oldest first. */
  private readonly unsealed: LogSegment[] = [];
  /** A segment file was created: the folder needs an fsync before the recovery point moves. */
  private dirNeedsSync = false;
  private flushTimer: ClockTimer | null = null;
  /**
   * The log end when flush last became 'batch' at run time: consumers may already have
   * seen offsets below it (the high watermark was the log end), so it stays exposed.
   */
  private highWatermarkFloor = 0;
  /** Idempotent producers on this partition (see producer-state.ts). */
  readonly producers: ProducerStateManager;
  /** Snapshots written at rolls, chained; close waits for them. */
  private snapshotting: Promise<void> = RESOLVED;
  /** The checkpoint job asked for the active segment's index checkpoint at the next sync. */
  private activeCheckpointWanted = false;
  /** Position in the active segment of the last index checkpoint (-1: none for this segment). */
  private activeCheckpointPosition = -1;
  /** The log end offset of the last producer-state snapshot taken (-1: none this run). */
  private lastSnapshotOffset = -1;
  /** Retention, compaction and the disk guard, one job at a time; close waits for it. */
  private maintenanceQueue: Promise<unknown> = RESOLVED;
  /** Where each leader epoch began (leader-epoch.ts); its checkpoint is written before an epoch's first batch. */
  private readonly epochs = new LeaderEpochCache();
  /** This node follows the partition's leader: batches come only through appendAsFollower. */
  private follower = false;
  /** A follower's high watermark: its leader's, capped at the log end (updateHighWatermark). */
  private followerHighWatermark = 0;
  /** appendAsFollower, truncateTo and the role changes, one at a time, in call order. */
  private replicaQueue: Promise<unknown> = RESOLVED;
  /** Producer-state snapshots taken and not yet written: a truncation waits for them. */
  private snapshotsInFlight = 0;
  private readonly truncationListeners = new Set<(logEndOffset: number) => void>();

  private constructor(
    readonly topic: string,
    readonly partition: number,
    readonly dir: string,
    private topicConfig: TopicConfig,
    env: PartitionEnv,
    segmentContext: SegmentContext,
    segments: LogSegment[],
    logEndOffset: number,
    recovery: PartitionRecovery,
  ) {
    this.env = env;
    this.segmentContext = segmentContext;
    this.segments = segments;
    this._logEndOffset = logEndOffset;
    // Open fsynced everything it kept (clean: at the last close; unclean: after the scan).
    this._recoveryPoint = logEndOffset;
    this.recovery = recovery;
    this.producers = new ProducerStateManager(segmentContext.label);
    const active = this.active;
    if (active.sizeBytes > 0) active.rollingStartMs = active.rollingStartAfterOpen(env.now());
  }

  /** Opens (creating if needed) the partition folder `dir` and recovers it. */
  static async open(dir: string, topic: string, partition: number, config: TopicConfig, options: OpenPartitionOptions = {}): Promise<PartitionLog> {
    const clock = options.clock ?? systemClock;
    const env: PartitionEnv = {
      ops: options.ops ?? nodeFileOps,
      readFds: options.readFds ?? new ReadFdCache(),
      clock,
      now: () => clock.now(),
    };
    const clean = options.clean ?? false;
    const report = newPartitionRecovery(topic, partition, clean);
    const segmentContext: SegmentContext = {
      ops: env.ops,
      readFds: env.readFds,
      label: `${topic}-${partition}`,
      // Read at each index entry, so an altered index.interval.bytes applies from the next batch.
      indexIntervalBytes: () => (log?.config ?? config)['index.interval.bytes'],
      note: (message) => addNote(report, message),
    };
    let log: PartitionLog | undefined;
    await env.ops.mkdir(dir);
    const { segments, logEndOffset } = await recoverPartition(segmentContext, dir, clean, report);
    log = new PartitionLog(topic, partition, dir, config, env, segmentContext, segments, logEndOffset, report);
    log.follower = options.follower ?? false;
    // Nothing says how far the leader had committed until it tells: consumers of a
    // follower see nothing beyond the log start before the first updateHighWatermark.
    log.followerHighWatermark = log.logStartOffset;
    try {
      await log.loadProducerState();
      await log.loadLeaderEpochs(clean, options.follower ?? false);
    } catch (err) {
      for (const segment of segments) segment.close();
      throw err;
    }
    return log;
  }

  /**
   * Producer state at open: the newest snapshot at or below the log end, then the headers
   * of the batches after it. Snapshots above the log end are stale (the log was cut) and
   * go; a damaged snapshot is skipped for an older one, or for a replay of the whole log.
   */
  private async loadProducerState(): Promise<void> {
    const snapshots: number[] = [];
    let deleted = false;
    for (const entry of await this.env.ops.readdir(this.dir)) {
      const match = SNAPSHOT_FILE.exec(entry.name);
      if (match === null || entry.isDirectory) continue;
      const offset = Number(match[1]);
      if (offset > this._logEndOffset) {
        await this.env.ops.rm(path.join(this.dir, entry.name));
        deleted = true;
        addNote(this.recovery, `deleted producer snapshot ${entry.name}: above the log end ${this._logEndOffset}`);
      } else {
        snapshots.push(offset);
      }
    }
    // Durably gone before anything is appended: a power loss must not bring back a snapshot
    // that remembers batches the log no longer holds once the log has grown past it.
    if (deleted) await fsyncDir(this.env.ops, this.dir);
    this.restoreProducerState(snapshots);
  }

  /**
   * The producer state from the newest readable snapshot at or below the log end among
   * `snapshots` (their offsets), then a replay of the headers after it. Synchronous, so a
   * truncation swaps the state in the same step as it cuts the log.
   */
  private restoreProducerState(snapshots: number[]): void {
    this.producers.clear();
    let from = this.logStartOffset;
    for (const offset of snapshots.filter((o) => o <= this._logEndOffset).sort((a, b) => b - a)) {
      const bytes = readFileSyncOrNull(this.env.ops, path.join(this.dir, snapshotFileName(offset)));
      try {
        if (bytes === null) throw new Error('unreadable');
        from = Math.max(this.producers.load(bytes), this.logStartOffset);
        break;
      } catch (err) {
        this.producers.clear();
        addNote(this.recovery, `skipped producer snapshot ${snapshotFileName(offset)}: ${(err as Error).message}`);
      }
    }
    this.replayProducerState(from);
    // A snapshot at the log end already exists unless batches were replayed: then the next
    // checkpoint writes one, so the next unclean start does not replay them again.
    this.lastSnapshotOffset = from === this._logEndOffset ? from : -1;
  }

  /**
   * The leader epochs at open: the checkpoint, cut to the log end recovery left (epochs that
   * began above it were lost with their batches). Without a readable checkpoint (a folder
   * written before epochs existed, or a damaged file) they are rebuilt from the batches'
   * own epoch fields, which is a walk of headers only. A leader then begins epoch 0 on an
   * empty history, and after an unclean start a new epoch at the log end, numbered above
   * every epoch the checkpoint ever held: the offsets from there on may be ones a power
   * loss took and handed out again, and a reader that saw the lost ones must be able to
   * tell (KIP-320). The checkpoint is durable before open returns, so before any append.
   */
  private async loadLeaderEpochs(clean: boolean, follower: boolean): Promise<void> {
    const read = readLeaderEpochCheckpoint(this.env.ops, this.dir);
    let changed = false;
    let highestEverEpoch = -1;
    if (read.entries !== null) {
      for (const e of read.entries) this.epochs.assign(e.epoch, e.startOffset);
      highestEverEpoch = this.epochs.latestEpoch;
      if (this.epochs.truncateFromEnd(this._logEndOffset)) {
        changed = true;
        addNote(this.recovery, `leader epochs that began above the log end ${this._logEndOffset} dropped`);
      }
    } else {
      this.rebuildLeaderEpochs();
      changed = this.epochs.latestEpoch >= 0;
      highestEverEpoch = this.epochs.latestEpoch;
      if (read.problem !== 'missing') addNote(this.recovery, `leader-epoch checkpoint unreadable (${read.problem}): rebuilt from the batches`);
    }
    if (!follower) {
      if (this.epochs.latestEpoch < 0) changed = this.epochs.assign(0, this._logEndOffset) || changed;
      else if (!clean) changed = this.epochs.assign(highestEverEpoch + 1, this._logEndOffset) || changed;
    }
    if (changed) await writeLeaderEpochCheckpoint(this.env.ops, this.dir, this.epochs);
  }

  /** Epoch entries from the batches' partitionLeaderEpoch fields, log start to log end. */
  private rebuildLeaderEpochs(): void {
    this.guardRead(() => {
      for (let i = 0; i < this.segments.length; i++) {
        this.segments[i].walkHeaders(this.logStartOffset, this._logEndOffset, (baseOffset, header) => {
          const epoch = header.readInt32BE(OFFSET_LEADER_EPOCH);
          // Epochs never go down in a log this node wrote; a batch that says otherwise (one
          // appended by an older version after a newer one) counts as the epoch before it.
          if (epoch > this.epochs.latestEpoch) this.epochs.assign(epoch, Math.max(baseOffset, this.logStartOffset));
        });
      }
    });
  }

  /**
   * Feeds the producer state every idempotent batch header from `from` to the log end. Only
   * headers are read: the producer fields are in them, and recovery has just checked the
   * batches (a full read here read and CRC-checked the whole log a second time).
   */
  private replayProducerState(from: number): void {
    const openedAtMs = this.env.now();
    this.guardRead(() => {
      for (let i = this.segmentIndexFor(from); i < this.segments.length; i++) {
        // Idle time counts on the node's clock, as for live appends: a record's own
        // timestamp (a device whose clock was never set) would expire it at once.
        this.segments[i].walkHeaders(from, this._logEndOffset, (baseOffset, header) => {
          const producer = producerHeader(header);
          if (producer !== null) this.producers.update(producer, baseOffset, openedAtMs);
        });
      }
    });
  }

  /**
   * Takes a producer-state snapshot at the log end now, then writes it (after any earlier
   * one still being written) and drops all but the newest few.
   */
  private snapshotProducerState(): Promise<void> {
    this.producers.expire(this.env.now());
    const offset = this._logEndOffset;
    const bytes = this.producers.snapshot(offset);
    this.snapshotsInFlight++;
    // An earlier write that failed must not stop this one.
    this.snapshotting = this.snapshotting
      .catch(noop)
      .then(() => this.writeSnapshot(offset, bytes))
      .finally(() => {
        this.snapshotsInFlight--;
      });
    return this.snapshotting;
  }

  private async writeSnapshot(offset: number, bytes: Buffer): Promise<void> {
    await writeFileDurable(this.env.ops, this.dir, snapshotFileName(offset), bytes);
    this.lastSnapshotOffset = offset;
    const kept: number[] = [];
    for (const entry of await this.env.ops.readdir(this.dir)) {
      const match = SNAPSHOT_FILE.exec(entry.name);
      if (match !== null) kept.push(Number(match[1]));
    }
    kept.sort((a, b) => b - a);
    // Snapshots are taken at the log end, which a power loss may take back (flush=interval
    // or os); one at or below the recovery point is kept too, so the next start still has a
    // snapshot to load rather than replaying the whole log.
    const durable = kept.find((o) => o <= this._recoveryPoint);
    for (const old of kept.slice(SNAPSHOTS_KEPT)) {
      if (old !== durable) await this.env.ops.rm(path.join(this.dir, snapshotFileName(old)));
    }
  }

  // -------------------------------------------------------------------------------------
  // Offsets

  get logStartOffset(): number {
    return this.segments[0].baseOffset;
  }

  get logEndOffset(): number {
    return this._logEndOffset;
  }

  get recoveryPoint(): number {
    return this._recoveryPoint;
  }

  /** The current leader epoch: the newest one begun; every batch appended now carries it. */
  get leaderEpoch(): number {
    return this.epochs.latestEpoch;
  }

  /** Where each leader epoch began, oldest first. */
  leaderEpochs(): EpochEntry[] {
    return this.epochs.list();
  }

  /**
   * OffsetsForLeaderEpoch (KIP-279): the largest epoch <= `epoch` this log holds and the
   * offset where it ends here (the log end offset for the current epoch); UNDEFINED (-1, -1)
   * for -1 or an epoch newer than any this log knows.
   */
  endOffsetForEpoch(epoch: number): EpochEndOffset {
    return this.epochs.endOffsetFor(epoch, this._logEndOffset);
  }

  /**
   * Where consumers' reads stop. A partition this node leads: the recovery point with
   * flush=batch, the log end otherwise (see the top of the file). A follower's: its
   * leader's, as updateHighWatermark last gave it, capped at the log end (and never below
   * the log start, which retention may move past it).
   */
  get highWatermark(): number {
    const highWatermark = this.follower
      ? Math.max(this.followerHighWatermark, this.logStartOffset)
      : this.topicConfig.flush === 'batch'
        ? Math.max(this._recoveryPoint, this.highWatermarkFloor)
        : this._logEndOffset;
    if (!(highWatermark <= this._logEndOffset)) throw new AssertionError(`${this.label}: high watermark ${highWatermark} above log end ${this._logEndOffset}`);
    return highWatermark;
  }

  get sizeBytes(): number {
    let total = 0;
    for (const segment of this.segments) total += segment.sizeBytes;
    return total;
  }

  get config(): TopicConfig {
    return this.topicConfig;
  }

  /** Number of segments, for tests and metrics. */
  get segmentCount(): number {
    return this.segments.length;
  }

  private get active(): LogSegment {
    return this.segments[this.segments.length - 1];
  }

  /** True once close() has begun: long maintenance jobs check it and give up early. */
  get isClosed(): boolean {
    return this.closed;
  }

  // -------------------------------------------------------------------------------------
  // Maintenance: retention, compaction, the disk guard

  /**
   * Runs `job` after every maintenance job queued before it on this partition, so two jobs
   * never change the segment list at once. Appends and reads go on meanwhile: a job only
   * touches closed segments, and swaps them in one synchronous step.
   */
  maintain<T>(job: () => Promise<T>): Promise<T> {
    const run = this.maintenanceQueue.then(() => {
      if (this.closed) throw new TributaryError(Errors.SHUTTING_DOWN, `${this.label} is closed`);
      return job();
    });
    this.maintenanceQueue = run.catch(noop);
    return run;
  }

  /**
   * Segments that will not change any more: sealed (fsynced, index files written), oldest
   * first. The active segment and rolled ones still waiting for their seal are not closed.
   */
  closedSegments(): readonly LogSegment[] {
    return this.segments.slice(0, this.segments.length - 1 - this.unsealed.length);
  }

  /**
   * The checkpoint job's step: a producer-state snapshot at the log end when the log grew
   * since the last one, so that an unclean start replays only what came after it (a roll
   * snapshots too, but a quiet partition may not roll for days).
   */
  async checkpoint(): Promise<void> {
    if (this.closed || this.failure !== null) return;
    // A snapshot that cannot be written costs a longer replay; the step below still runs.
    const snapshot = this._logEndOffset !== this.lastSnapshotOffset ? this.snapshotProducerState() : RESOLVED;
    // Awaited last: a failed sync below must not leave its failure unhandled (a crash).
    snapshot.catch(noop);
    // And the active segment's indexes up to what is synced: run as a sync (never beside
    // one), which also syncs whatever was appended since the last. Not under flush=os,
    // which asked for no fsync but at roll and close; and only once the segment grew by
    // activeCheckpointGrowthBytes, because each checkpoint rewrites both index files
    // (flash wears) and an unclean start scans at most that much more without it.
    const grown = this.active.sizeBytes - Math.max(0, this.activeCheckpointPosition);
    if (this.topicConfig.flush !== 'os' && grown >= activeCheckpointGrowthBytes(this.topicConfig['segment.bytes']) && grown > 0 && !this.closed) {
      this.activeCheckpointWanted = true;
      await this.requestSync(false);
    }
    await snapshot;
  }

  /** Base offsets of every segment, oldest first, the active one last. */
  segmentBaseOffsets(): number[] {
    return this.segments.map((s) => s.baseOffset);
  }

  /**
   * Deletes the oldest `count` closed segments, oldest first, and moves the log start
   * offset past them. Each segment leaves the list (no read starts on it) before its
   * files go; its .log is unlinked first, so a crash in between leaves either the whole
   * segment or only index files, which the next open removes. Call inside maintain().
   */
  async deleteOldestSegments(count: number): Promise<{ segments: number; bytes: number }> {
    const closed = this.closedSegments();
    if (!(Number.isInteger(count) && count >= 0 && count <= closed.length)) throw new AssertionError(`${this.label}: cannot delete ${count} of ${closed.length} closed segments`);
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const segment = this.segments.shift() as LogSegment;
      bytes += segment.sizeBytes;
      try {
        segment.deleteFiles();
      } catch (err) {
        throw new TributaryError(Errors.STORAGE_ERROR, `${this.label}: deleting segment ${segment.name} failed: ${(err as Error).message}`, { cause: err });
      }
    }
    // In memory only: the checkpoint shrinks at its next write; until then its older
    // entries answer nothing a reader of this log can still ask about.
    if (count > 0) this.epochs.truncateFromStart(this.logStartOffset);
    if (count > 0) {
      // Not needed for safety (a deletion that is lost brings old data back, never a hole),
      // but it makes the space reclaim durable before the disk guard counts it.
      await fsyncDir(this.env.ops, this.dir);
    }
    return { segments: count, bytes };
  }

  // -------------------------------------------------------------------------------------
  // Compaction (cleaner.ts): it rewrites closed segments beside the live ones and swaps
  // each in here, in one synchronous step, inside maintain().

  /** What the log cleaner needs to write a segment's replacement beside it. */
  get cleanerEnv(): { ops: FileOps; segmentContext: SegmentContext } {
    return { ops: this.env.ops, segmentContext: this.segmentContext };
  }

  /**
   * Puts `cleaned` (a LogSegment.existing over the swapped-in files, same base offset) in
   * place of the closed segment `old`, or just removes `old` (null: nothing of it survived;
   * never the first segment, which holds the log start offset). Reads from now on use the
   * new files, or skip the gap to the next segment; the old object's fd and loaded indexes
   * are dropped, so no read sees a stale pair.
   */
  replaceSegment(old: LogSegment, cleaned: LogSegment | null): void {
    const i = this.segments.indexOf(old);
    if (!(i >= 0 && i < this.closedSegments().length)) throw new AssertionError(`${this.label}: segment ${old.name} is not a closed segment`);
    if (cleaned === null) {
      if (!(i > 0)) throw new AssertionError(`${this.label}: the first segment ${old.name} cannot be removed by the cleaner`);
      this.segments.splice(i, 1);
    } else {
      if (!(cleaned.baseOffset === old.baseOffset)) throw new AssertionError(`${this.label}: cleaned segment ${cleaned.name} replaces ${old.name}`);
      this.segments[i] = cleaned;
    }
    old.close();
  }

  private get label(): string {
    return this.segmentContext.label;
  }

  // -------------------------------------------------------------------------------------
  // Append

  /**
   * Appends a producer's batch as the leader: validated, given the next offsets and the
   * current leader epoch. `header`: the batch's header as the caller already parsed it
   * (readBatchHeader of these same bytes), so that it is parsed once per append.
   */
  append(batch: Buffer, header?: BatchHeader): AppendResult {
    this.checkWritable();
    // A produce that raced a role change: retriable, the client finds the new leader.
    if (this.follower) throw new TributaryError(Errors.NOT_LEADER, `${this.label}: this node follows the partition's leader`);
    if (!(this.epochs.latestEpoch >= 0)) throw new AssertionError(`${this.label}: append as leader to a log with no leader epoch`);
    // The header is parsed once (here, or by the caller); everything below reads the struct.
    const checked = this.validate(batch, true, header);
    const producer = producerFields(checked);
    if (producer !== null) {
      const earlier = this.producers.check(producer);
      if (earlier !== null) {
        // A resend: answer where it was written, once that is as durable as an ack needs.
        return { baseOffset: earlier.firstOffset, lastOffset: earlier.lastOffset, logAppendTime: -1, durable: this.durableThrough(earlier.lastOffset), duplicate: true };
      }
    }
    const baseOffset = this._logEndOffset;
    const lastOffset = baseOffset + checked.lastOffsetDelta;
    if (this.needsRoll(batch.length, lastOffset)) this.roll();
    // Both fields lie outside the CRC: patching them keeps the batch valid, records untouched.
    setBaseOffset(batch, baseOffset);
    setPartitionLeaderEpoch(batch, this.epochs.latestEpoch);
    if (!(lastOffsetOf(batch) === lastOffset)) throw new AssertionError(`${this.label}: patched batch ends at ${lastOffsetOf(batch)}, expected ${lastOffset}`);
    const active = this.active;
    if (!(active.baseOffset <= baseOffset && active.isWritable)) throw new AssertionError(`${this.label}: active segment ${active.baseOffset} cannot take offset ${baseOffset}`);
    active.append(batch, baseOffset, checked.maxTimestamp, this.env.now());
    if (!(lastOffset >= this._logEndOffset)) throw new AssertionError(`${this.label}: log end offset going backwards: ${this._logEndOffset} -> ${lastOffset + 1}`);
    this._logEndOffset = lastOffset + 1;
    if (producer !== null) this.producers.update(producer, baseOffset, this.env.now());
    this.scheduleNotify();
    return { baseOffset, lastOffset, logAppendTime: -1, durable: this.afterAppend() };
  }

  // -------------------------------------------------------------------------------------
  // A follower's log: its leader's batches, kept as the leader stored them, and the cut
  // when the two logs diverged (KIP-101). One operation at a time, in call order.

  private replicaOp<T>(op: () => Promise<T>): Promise<T> {
    const run = this.replicaQueue.then(op);
    this.replicaQueue = run.catch(noop);
    return run;
  }

  private checkFollower(what: string): void {
    if (!this.follower) throw new TributaryError(Errors.NOT_LEADER, `${this.label}: ${what} is for a follower's log; this node leads the partition`);
  }

  /**
   * Appends batches as the leader stored them (a replica fetch's answer: whole batches back
   * to back), keeping their base offsets and leader epochs. Each is checked as append
   * checks a producer's (size, CRC, magic, length, count), but may span more offsets than
   * it has records (the log cleaner thinned it); base offsets must increase from the log
   * end on (a hole is a batch the cleaner removed: the log end moves past it) and epochs
   * must not decrease. Nothing is appended unless every batch passes. A batch that begins
   * an epoch is appended only once the epoch checkpoint holding it is durable, so the
   * checkpoint is written (once for the call) before any of them. Producer state follows
   * the batches as Kafka's followers' does, without checking sequences: the leader did.
   */
  appendAsFollower(batches: Buffer): Promise<FollowerAppendResult> {
    return this.replicaOp(() => this.appendAsFollowerNow(batches));
  }

  private async appendAsFollowerNow(batches: Buffer): Promise<FollowerAppendResult> {
    this.checkWritable();
    this.checkFollower('appendAsFollower');
    const checked = this.checkLeaderBatches(batches);
    if (checked.length === 0) return { baseOffset: this._logEndOffset, lastOffset: this._logEndOffset - 1, durable: DURABLE_ALREADY };
    const epochs = this.epochsAfter(checked);
    if (epochs !== null) {
      try {
        await writeLeaderEpochCheckpoint(this.env.ops, this.dir, epochs);
      } catch (err) {
        throw new TributaryError(isDiskFull(err) ? Errors.STORAGE_FULL : Errors.STORAGE_ERROR, `${this.label}: cannot write the leader-epoch checkpoint: ${(err as Error).message}`, { cause: err });
      }
      this.checkWritable();
    }
    // Epochs begun at the log end with nothing written under them (a leadership this node
    // held and lost) give way to the leader's, as epochsAfter() wrote them.
    this.epochs.truncateFromEnd(this._logEndOffset - 1);
    const now = this.env.now();
    let appended = 0;
    try {
      for (const { at, size, header } of checked) {
        const baseOffset = header.baseOffset;
        const lastOffset = baseOffset + header.lastOffsetDelta;
        if (this.needsRoll(size, lastOffset)) this.roll(baseOffset);
        const active = this.active;
        if (!(active.baseOffset <= baseOffset && active.isWritable)) throw new AssertionError(`${this.label}: active segment ${active.baseOffset} cannot take offset ${baseOffset}`);
        active.append(batches.subarray(at, at + size), baseOffset, header.maxTimestamp, now);
        this.epochs.assign(header.partitionLeaderEpoch, baseOffset);
        if (!(lastOffset >= this._logEndOffset)) throw new AssertionError(`${this.label}: log end offset going backwards: ${this._logEndOffset} -> ${lastOffset + 1}`);
        this._logEndOffset = lastOffset + 1;
        const producer = producerFields(header);
        if (producer !== null) this.producers.update(producer, baseOffset, now);
        appended++;
      }
    } finally {
      if (appended > 0) this.scheduleNotify();
    }
    return { baseOffset: checked[0].header.baseOffset, lastOffset: this._logEndOffset - 1, durable: this.afterAppend() };
  }

  /** Splits and checks a leader's batches against this log's end and epochs; throws on the first bad one. */
  private checkLeaderBatches(buf: Buffer): { at: number; size: number; header: BatchHeader }[] {
    const out: { at: number; size: number; header: BatchHeader }[] = [];
    let expected = this._logEndOffset;
    // The epoch of the log's last batch: an epoch entry beginning at the log end has no
    // batch yet and does not count.
    let epochFloor = this._logEndOffset > this.logStartOffset ? this.epochs.epochAt(this._logEndOffset - 1) : UNDEFINED_EPOCH;
    let at = 0;
    while (at < buf.length) {
      const size = batchSizeAt(buf, at);
      if (size < BATCH_OVERHEAD || at + size > buf.length) {
        throw new TributaryError(Errors.CORRUPT_BATCH, `${this.label}: the leader's batches end in a partial or malformed batch at byte ${at} of ${buf.length}`);
      }
      const header = this.validate(buf.subarray(at, at + size), false);
      if (header.baseOffset < expected) {
        throw new TributaryError(Errors.OFFSET_OUT_OF_RANGE, `${this.label}: the leader's batch at offset ${header.baseOffset} does not follow the log end ${expected}`);
      }
      if (header.partitionLeaderEpoch < Math.max(epochFloor, 0)) {
        throw new TributaryError(Errors.INVALID_RECORD, `${this.label}: the leader's batch at offset ${header.baseOffset} has leader epoch ${header.partitionLeaderEpoch}, below ${Math.max(epochFloor, 0)}`);
      }
      out.push({ at, size, header });
      at += size;
      expected = header.baseOffset + header.lastOffsetDelta + 1;
      epochFloor = header.partitionLeaderEpoch;
    }
    return out;
  }

  /** The epoch entries once `checked` is appended, or null when they stay as they are. */
  private epochsAfter(checked: readonly { header: BatchHeader }[]): LeaderEpochCache | null {
    const next = new LeaderEpochCache(this.epochs.list());
    next.truncateFromEnd(this._logEndOffset - 1);
    for (const { header } of checked) next.assign(header.partitionLeaderEpoch, header.baseOffset);
    return next.encode().equals(this.epochs.encode()) ? null : next;
  }

  /**
   * A follower's high watermark from its leader's (a replica fetch's answer carries it),
   * capped at the local log end: consumers of this node read no further. It never moves
   * back but by truncation; a lower value (an answer overtaken by a later one) is ignored.
   * Returns the high watermark now.
   */
  updateHighWatermark(leaderHighWatermark: number): number {
    this.checkFollower('updateHighWatermark');
    if (!(Number.isSafeInteger(leaderHighWatermark) && leaderHighWatermark >= 0)) throw new AssertionError(`${this.label}: high watermark ${leaderHighWatermark} is not an offset`);
    const capped = Math.min(leaderHighWatermark, this._logEndOffset);
    if (capped > this.followerHighWatermark) {
      this.followerHighWatermark = capped;
      this.scheduleNotify();
    }
    return this.highWatermark;
  }

  /**
   * This node leads the partition from now on, in `leaderEpoch` (the controller's, never
   * below the log's latest): the epoch begins at the log end, durably, before any append
   * can carry it. The high watermark the follower had shown stays shown.
   */
  becomeLeader(leaderEpoch: number): Promise<void> {
    return this.replicaOp(async () => {
      this.checkWritable();
      if (!(Number.isInteger(leaderEpoch) && leaderEpoch >= Math.max(this.epochs.latestEpoch, 0))) {
        throw new AssertionError(`${this.label}: leader epoch ${leaderEpoch} is below the log's latest ${this.epochs.latestEpoch}`);
      }
      const next = new LeaderEpochCache(this.epochs.list());
      if (next.assign(leaderEpoch, this._logEndOffset)) {
        await writeLeaderEpochCheckpoint(this.env.ops, this.dir, next);
        this.checkWritable();
        this.epochs.assign(leaderEpoch, this._logEndOffset);
      }
      if (this.follower) {
        this.highWatermarkFloor = Math.max(this.highWatermarkFloor, this.highWatermark);
        this.follower = false;
        this.scheduleNotify();
      }
    });
  }

  /**
   * This node follows the partition's leader from now on: produce is refused (NOT_LEADER)
   * and the high watermark stays where it is until the leader moves it.
   */
  becomeFollower(): Promise<void> {
    return this.replicaOp(async () => {
      if (this.follower) return;
      this.followerHighWatermark = this.highWatermark;
      this.follower = true;
      // Long polls and subscriptions waiting on this log wake and learn it is no longer led here.
      this.scheduleNotify();
    });
  }

  /**
   * Kafka's Log.truncateTo, for a follower whose log diverged from its leader's (KIP-101):
   * every batch whose last offset is >= `offset` goes, with everything that depends on the
   * log end: segments above (deleted), the one holding it (cut, its indexes rebuilt), the
   * epoch entries that began at or past it and their checkpoint, the recovery point,
   * producer state (the newest snapshot at or below the new end, replayed; snapshots above
   * deleted), the high watermark, and readers positioned above it (onTruncate). The new
   * log end is `offset`, or the base offset of the batch holding it (the rules name batch
   * boundaries; a hole the cleaner left stays a hole). Nothing happens past the log end,
   * and at it only an epoch that began there goes. Everything is durable before it
   * resolves, so before any later append.
   *
   * Safe against the jobs that touch segments: it runs inside maintain(), so no
   * retention, compaction or disk-guard job runs meanwhile. Safe against the group
   * commit: it waits until no sync and no snapshot write is in flight, then cuts in one
   * synchronous step, so a sync either ended before the cut (and claimed nothing past it
   * that is not cut back: the recovery point is lowered, the checkpoint's active-segment
   * line is dropped first if it names offsets at or past `offset`) or starts after it and
   * sees only the cut log.
   */
  truncateTo(offset: number): Promise<void> {
    if (!(Number.isSafeInteger(offset) && offset >= 0)) return Promise.reject(new AssertionError(`${this.label}: cannot truncate to ${offset}`));
    return this.replicaOp(() => this.maintain(() => this.truncateNow(offset)));
  }

  private async truncateNow(offset: number): Promise<void> {
    this.checkWritable();
    this.checkFollower('truncateTo');
    if (offset > this._logEndOffset) return;
    if (offset === this._logEndOffset) {
      // No batch goes, but an epoch begun at the log end (a leadership held and lost before
      // it wrote anything) does: the rule asked about it, and it must not be asked again.
      if (this.epochs.truncateFromEnd(offset - 1)) await writeLeaderEpochCheckpoint(this.env.ops, this.dir, this.epochs);
      return;
    }
    const snapshots = await this.settleBeforeTruncation(offset);
    this.checkWritable();
    let logEndOffset: number;
    try {
      logEndOffset = this.cutSegments(offset);
    } catch (err) {
      throw this.failWith(err, `truncation to ${offset} failed`);
    }
    this._logEndOffset = logEndOffset;
    if (this._recoveryPoint > logEndOffset) this._recoveryPoint = logEndOffset;
    this.highWatermarkFloor = Math.min(this.highWatermarkFloor, logEndOffset);
    this.followerHighWatermark = Math.min(this.followerHighWatermark, logEndOffset);
    this.activeCheckpointPosition = -1;
    this.dirNeedsSync = true;
    // Kafka's truncateFromEnd: an epoch that began at the new end has no batch left either.
    const epochsChanged = this.epochs.truncateFromEnd(logEndOffset - 1);
    this.restoreProducerState(snapshots);
    this.scheduleNotify();
    const listeners = [...this.truncationListeners];
    queueMicrotask(() => {
      for (const listener of listeners) listener(logEndOffset);
    });
    try {
      await this.active.flushData();
      await fsyncDir(this.env.ops, this.dir);
      if (epochsChanged) await writeLeaderEpochCheckpoint(this.env.ops, this.dir, this.epochs);
      await this.deleteSnapshotsAbove(logEndOffset);
    } catch (err) {
      throw this.failWith(err, `truncation to ${offset} not made durable`);
    }
  }

  /**
   * Waits until no sync and no producer-state snapshot write is in flight and the recovery
   * checkpoint names nothing at or past `offset` (its active-segment line, which an
   * unclean start would otherwise take as offsets to continue after) and calls no segment
   * from the one holding `offset` on sealed (that one is written again), and lists the
   * snapshot files. Returns with nothing in flight: the caller cuts in the same turn.
   */
  private async settleBeforeTruncation(offset: number): Promise<number[]> {
    const inFlight = (): boolean => this.syncInFlight !== null || this.snapshotsInFlight > 0;
    for (;;) {
      while (inFlight()) {
        await this.syncInFlight;
        await this.snapshotting.catch(noop);
      }
      if (this.failure !== null) throw this.failure;
      const snapshots = await this.snapshotOffsets();
      if (inFlight()) continue;
      const checkpoint = readRecoveryCheckpoint(this.env.ops, this.dir);
      // The segment the cut leaves last becomes writable again: an unclean start must scan it
      // (and what follows), not trust it as sealed, or bytes torn in it after the cut would
      // stay in the middle of the log. Kafka's recoveryPoint = min(recoveryPoint, offset).
      const keptBase = offset < this.logStartOffset ? offset : this.segments[this.segmentIndexFor(offset)].baseOffset;
      const sealedBelow = Math.min(checkpoint.sealedBelow, keptBase);
      if ((checkpoint.active === null || checkpoint.active.offset <= offset) && sealedBelow === checkpoint.sealedBelow) return snapshots;
      await writeRecoveryCheckpoint(this.env.ops, this.dir, sealedBelow);
    }
  }

  /** Cuts the segment list at `offset` (see truncateTo); returns the new log end offset. */
  private cutSegments(offset: number): number {
    if (offset < this.logStartOffset) {
      // Kafka's truncateFullyAndStartAt: nothing stays, the log continues at `offset`.
      const fresh = LogSegment.create(this.segmentContext, this.dir, offset);
      const old = this.segments.splice(0, this.segments.length, fresh);
      this.unsealed.length = 0;
      for (const segment of old.reverse()) segment.deleteFiles();
      return offset;
    }
    const keep = this.segmentIndexFor(offset);
    // Newest first: a crash in between leaves a shorter log, never one with a hole.
    while (this.segments.length > keep + 1) {
      const segment = this.segments.pop() as LogSegment;
      const i = this.unsealed.indexOf(segment);
      if (i >= 0) this.unsealed.splice(i, 1);
      segment.deleteFiles();
    }
    const last = this.segments[keep];
    const i = this.unsealed.indexOf(last);
    if (i >= 0) this.unsealed.splice(i, 1);
    const dropped = last.cutAt(offset);
    // A sealed segment active again rolls as one reopened after a restart does: segment.ms
    // from its first record.
    if (last.rollingStartMs < 0 && last.sizeBytes > 0) last.rollingStartMs = last.rollingStartAfterOpen(this.env.now());
    return dropped >= 0 ? Math.min(offset, dropped) : offset;
  }

  private async snapshotOffsets(): Promise<number[]> {
    const offsets: number[] = [];
    for (const entry of await this.env.ops.readdir(this.dir)) {
      const match = SNAPSHOT_FILE.exec(entry.name);
      if (match !== null && !entry.isDirectory) offsets.push(Number(match[1]));
    }
    return offsets;
  }

  /** Durably, so that no later start loads a snapshot of batches the log no longer holds. */
  private async deleteSnapshotsAbove(offset: number): Promise<void> {
    const above = (await this.snapshotOffsets()).filter((o) => o > offset);
    for (const o of above) await this.env.ops.rm(path.join(this.dir, snapshotFileName(o)));
    if (above.length > 0) await fsyncDir(this.env.ops, this.dir);
  }

  /** Fails the partition (as a failed fsync does): its files may not match its state; a restart recovers them. */
  private failWith(err: unknown, what: string): TributaryError {
    if (err instanceof AssertionError) throw err;
    this.failure ??= new TributaryError(Errors.STORAGE_ERROR, `${this.label}: ${what}: ${(err as Error).message}`, { cause: err });
    return this.failure;
  }

  /** Resolves when `offset` is as durable as the flush policy makes an acknowledged batch. */
  private durableThrough(offset: number): Promise<void> {
    if (this.topicConfig.flush !== 'batch' || offset < this._recoveryPoint) return RESOLVED;
    return this.requestSync(true);
  }

  private checkWritable(): void {
    if (this.closed) throw new TributaryError(Errors.SHUTTING_DOWN, `${this.label} is closed`);
    if (this.failure !== null) throw this.failure;
  }

  /**
   * Checks size, then CRC, magic, length and count; returns the parsed header. A
   * producer's batch (`exactSpan`) must span exactly its records; a leader's may span more,
   * once the log cleaner thinned it.
   */
  private validate(batch: Buffer, exactSpan: boolean, parsed?: BatchHeader): BatchHeader {
    const maxBytes = this.topicConfig['max.message.bytes'];
    // Size first: no point computing the CRC of something refused anyway.
    if (batch.length > maxBytes) {
      throw new TributaryError(Errors.BATCH_TOO_LARGE, `${this.label}: batch of ${batch.length} bytes exceeds max.message.bytes ${maxBytes}`);
    }
    try {
      const header = parsed ?? readBatchHeader(batch);
      validateBatch(batch);
      // Kafka's LogValidator: a producer's batch spans exactly its records. Without this a
      // 1-record batch could claim 2^31 offsets.
      if (exactSpan && header.lastOffsetDelta !== header.recordCount - 1) {
        throw new Error(`inconsistent batch offset range: ${header.recordCount} records, last offset delta ${header.lastOffsetDelta}`);
      }
      return header;
    } catch (err) {
      throw new TributaryError(Errors.CORRUPT_BATCH, `${this.label}: ${(err as Error).message}`, { cause: err });
    }
  }

  private needsRoll(batchBytes: number, lastOffset: number): boolean {
    const active = this.active;
    if (active.sizeBytes === 0) return false;
    return (
      active.sizeBytes > this.topicConfig['segment.bytes'] - batchBytes ||
      this.env.now() - active.rollingStartMs > this.topicConfig['segment.ms'] ||
      // Index entries hold offsets relative to the segment base as int32.
      lastOffset - active.baseOffset > INT32_MAX
    );
  }

  /**
   * Starts a new segment at `baseOffset`: the log end, or for a follower the base offset
   * of the leader's next batch (above the log end after a hole the log cleaner left). The
   * finished one is sealed (fsynced, index files written) in the background by the next
   * sync, in every flush policy.
   */
  private roll(baseOffset: number = this._logEndOffset): void {
    let segment: LogSegment;
    try {
      segment = LogSegment.create(this.segmentContext, this.dir, baseOffset);
    } catch (err) {
      throw new TributaryError(isDiskFull(err) ? Errors.STORAGE_FULL : Errors.STORAGE_ERROR, `${this.label}: cannot create a segment at ${baseOffset}: ${(err as Error).message}`, { cause: err });
    }
    this.unsealed.push(this.active);
    this.segments.push(segment);
    this.activeCheckpointPosition = -1;
    this.dirNeedsSync = true;
    void this.requestSync(true);
    // So that recovery replays at most the active segment. A snapshot that fails to write
    // costs only a longer replay at the next start, never data. One at a time, and close
    // waits for them.
    this.snapshotProducerState().catch(noop);
  }

  private afterAppend(): Promise<void> {
    switch (this.topicConfig.flush) {
      case 'batch':
        return this.requestSync(true);
      case 'interval':
        this.armFlushTimer();
        return RESOLVED;
      case 'os':
        return RESOLVED;
    }
  }

  private armFlushTimer(): void {
    if (this.flushTimer !== null) return;
    // Armed only while there is something to flush: an idle edge node does not wake up.
    this.flushTimer = this.env.clock
      .setTimeout(() => {
        this.flushTimer = null;
        void this.requestSync(false);
      }, this.topicConfig['flush.interval.ms'])
      .unref();
  }

  /**
   * Applies an altered topic config (AlterConfigs). Most keys are read where they are used,
   * so they apply from then on: segment.bytes, segment.ms and max.message.bytes at the next
   * append, index.interval.bytes at the next index entry, retention and cleanup.policy at
   * the next maintenance run. The flush policy needs its timer and the high watermark kept
   * right.
   */
  updateConfig(config: TopicConfig): void {
    const previous = this.topicConfig;
    this.topicConfig = config;
    if (previous.flush === config.flush && previous['flush.interval.ms'] === config['flush.interval.ms']) return;
    this.flushTimer?.cancel();
    this.flushTimer = null;
    if (this.closed || this.failure !== null) return;
    if (config.flush === 'batch' && previous.flush !== 'batch') {
      // Under batch the high watermark is the recovery point, which may lag the log end that
      // consumers were already shown: it must not move back (Kafka's high watermark never
      // does), so what was exposed stays exposed, and one sync makes it durable too.
      this.highWatermarkFloor = this._logEndOffset;
      void this.requestSync(false);
    } else if (config.flush === 'interval' && this.isDirty) {
      // Re-armed with the new interval; the data appended so far must not wait for the next append.
      this.armFlushTimer();
    }
    // Leaving batch exposes everything up to the log end at once.
    this.scheduleNotify();
  }

  // -------------------------------------------------------------------------------------
  // Durability

  /** fsyncs everything appended so far; the recovery point (and with flush=batch the high watermark) advances. */
  flush(): Promise<void> {
    if (this.closed) return RESOLVED;
    return this.requestSync(false);
  }

  private get isDirty(): boolean {
    return this._recoveryPoint < this._logEndOffset || this.unsealed.length > 0 || this.dirNeedsSync || this.activeCheckpointWanted;
  }

  /**
   * A promise of a sync covering everything appended so far. `deferStart` waits for the
   * end of this event loop turn, so every append of the turn shares one fdatasync.
   */
  private requestSync(deferStart: boolean): Promise<void> {
    if (this.failure !== null) {
      const failed = Promise.reject(this.failure);
      failed.catch(noop);
      return failed;
    }
    if (this.pendingSync === null) {
      // Everything appended is already synced (a sync still finishing adds nothing new).
      if (!this.isDirty) return RESOLVED;
      this.pendingSync = deferred();
    }
    const promise = this.pendingSync.promise;
    if (this.syncInFlight === null) {
      if (!deferStart) this.startSync();
      else if (!this.syncStartScheduled) {
        this.syncStartScheduled = true;
        setImmediate(() => {
          this.syncStartScheduled = false;
          this.startSync();
        });
      }
    }
    return promise;
  }

  private startSync(): void {
    if (this.syncInFlight !== null || this.pendingSync === null) return;
    const waiter = this.pendingSync;
    this.pendingSync = null;
    this.syncInFlight = this.syncTo(this._logEndOffset).then(
      () => waiter.resolve(),
      (err: unknown) => {
        if (err instanceof FsyncFailedError) {
          this.failure ??= new TributaryError(Errors.STORAGE_ERROR, `${this.label}: ${err.message}`, { cause: err });
          waiter.reject(this.failure);
          return;
        }
        // Nothing was claimed durable that is not (see syncTo): these waiters are told, and
        // the next sync tries again, asked for by the next append, a producer's retry, the
        // flush timer (re-armed here) or close.
        waiter.reject(new TributaryError(Errors.STORAGE_ERROR, `${this.label}: sync failed, tried again at the next: ${(err as Error).message}`, { cause: err }));
        if (this.topicConfig.flush === 'interval' && !this.closed) this.armFlushTimer();
      },
    );
    void this.syncInFlight.then(() => {
      this.syncInFlight = null;
      const next = this.pendingSync;
      if (next === null) return;
      if (this.failure !== null) {
        this.pendingSync = null;
        next.reject(this.failure);
      } else {
        this.startSync();
      }
    });
  }

  /**
   * Makes offsets below `target` durable: seals rolled segments (their log fsync, then their
   * index files), fsyncs the folder, moves the checkpoint past them, fdatasyncs the active
   * segment, then advances the recovery point. Order matters: the checkpoint may only claim
   * what is sealed, and the recovery point only what is synced.
   *
   * Only an FsyncFailedError fails the partition: a failed fdatasync of a segment's log, or
   * a failed fsync of the folder (it holds the names of the segment files: once its fsync
   * failed, Linux may have dropped those entries and a later fsync that succeeds proves
   * nothing). Anything else (EMFILE opening the folder, a failed ftruncate before a seal's
   * fdatasync) happens before the step it stops, so the recovery point and the checkpoint
   * have claimed nothing yet; the sealing segments stay unsealed (seal() may run again), the
   * folder stays due for its fsync, and the next sync repeats the steps. Index files and the
   * checkpoint file only save work at the next start: failing to write them is noted.
   */
  private async syncTo(target: number): Promise<void> {
    const active = this.active;
    // `target` is the log end now, so this is where it begins in the active segment.
    const syncedPosition = active.sizeBytes;
    const checkpointActive = this.activeCheckpointWanted;
    this.activeCheckpointWanted = false;
    const sealing = this.unsealed.slice();
    for (const segment of sealing) await segment.seal();
    if (this.dirNeedsSync || sealing.length > 0) {
      this.dirNeedsSync = false;
      try {
        await fsyncDir(this.env.ops, this.dir);
      } catch (err) {
        this.dirNeedsSync = true;
        throw err;
      }
    }
    if (sealing.length > 0) {
      this.unsealed.splice(0, sealing.length);
      for (const segment of sealing) segment.closeWriteFd();
      const firstUnsealed = this.unsealed.length > 0 ? this.unsealed[0] : this.active;
      // Everything in the sealed segments is fsynced: the recovery point (and with
      // flush=batch the high watermark) may pass them now. Otherwise retention could delete
      // a just-sealed segment and put the log start offset above the high watermark.
      if (firstUnsealed.baseOffset > this._recoveryPoint) {
        this._recoveryPoint = firstUnsealed.baseOffset;
        if (this.topicConfig.flush === 'batch') this.scheduleNotify();
      }
      try {
        await writeRecoveryCheckpoint(this.env.ops, this.dir, firstUnsealed.baseOffset);
      } catch (err) {
        // An old checkpoint only makes the next unclean start scan more: a full disk, EMFILE
        // or EIO on its temp file must not fail the partition for it. Its folder fsync is
        // the folder's, as above.
        if (err instanceof FsyncFailedError) throw err;
        this.segmentContext.note(`recovery point checkpoint at ${firstUnsealed.baseOffset} not written: ${(err as Error).message}`);
      }
    }
    if (active.isWritable) await active.flushData();
    if (target > this._recoveryPoint) {
      this._recoveryPoint = target;
      if (this.topicConfig.flush === 'batch') this.scheduleNotify();
    }
    if (checkpointActive && active.isWritable && syncedPosition > 0 && syncedPosition !== this.activeCheckpointPosition) {
      await this.writeActiveCheckpoint(active, target, syncedPosition);
    }
  }

  /**
   * After an fdatasync covering `position` of the active segment: its index files up to
   * there, then the checkpoint naming them, so an unclean start scans only what follows.
   * Only a saving: a failure is noted and costs the next unclean start a longer scan.
   */
  private async writeActiveCheckpoint(active: LogSegment, offset: number, position: number): Promise<void> {
    try {
      await active.writeIndexCheckpoint(position, offset);
      // The index files' renames must be durable before a checkpoint that vouches for them.
      await fsyncDir(this.env.ops, this.dir);
      const firstUnsealed = this.unsealed.length > 0 ? this.unsealed[0] : active;
      await writeRecoveryCheckpoint(this.env.ops, this.dir, firstUnsealed.baseOffset, { baseOffset: active.baseOffset, offset, position });
      // A roll during the writes made another segment active: its checkpoint is still to come.
      if (this.active === active) this.activeCheckpointPosition = position;
    } catch (err) {
      // The folder's fsync failing is the folder's, as in syncTo.
      if (err instanceof FsyncFailedError) throw err;
      this.segmentContext.note(`${active.name}: checkpoint of its indexes not written: ${(err as Error).message}`);
    }
  }

  // -------------------------------------------------------------------------------------
  // Read

  /**
   * Whole stored batches from the one holding `fetchOffset`, up to `maxBytes` (but at least
   * one batch, KIP-74), none whose last offset is >= `maxOffset`. A read stays within one
   * segment, as Kafka's does; the next fetch continues in the next. With a request's
   * `budget`, the index files of a cold segment are paid from it before they are loaded.
   */
  read(fetchOffset: number, maxBytes: number, maxOffset: number = this.highWatermark, budget?: RequestBudget): Buffer {
    return this.readBatches(fetchOffset, maxBytes, maxOffset, budget).bytes;
  }

  /**
   * The one read: as read(), with each batch's base and last offset, record count and
   * leader epoch, taken from the header check the read makes anyway, so that a caller
   * (Fetch, a push, a replica fetch, a follower) never walks the bytes again.
   */
  readBatches(fetchOffset: number, maxBytes: number, maxOffset: number = this.highWatermark, budget?: RequestBudget): LogRead {
    if (this.closed) throw new TributaryError(Errors.SHUTTING_DOWN, `${this.label} is closed`);
    if (!isFetchOffsetInLog(fetchOffset, this.logStartOffset, this._logEndOffset)) throw offsetOutOfRange(this.label, fetchOffset, this.logStartOffset, this._logEndOffset);
    const limit = Math.min(maxOffset, this._logEndOffset);
    if (fetchOffset >= limit) return EMPTY_READ;
    return this.guardRead(() => {
      for (let i = this.segmentIndexFor(fetchOffset); i < this.segments.length; i++) {
        const segment = this.segments[i];
        if (segment.baseOffset >= limit) break;
        // Past the end of this segment's data (only after a gap) the next segment continues.
        const out = segment.read(Math.max(fetchOffset, segment.baseOffset), maxBytes, limit, budget);
        if (out !== null) return out;
      }
      return EMPTY_READ;
    });
  }

  /** A failing disk under a read is an answer (STORAGE_ERROR), never a crash of the node. */
  private guardRead<T>(read: () => T): T {
    try {
      return read();
    } catch (err) {
      if (err instanceof TributaryError || err instanceof AssertionError) throw err;
      throw new TributaryError(Errors.STORAGE_ERROR, `${this.label}: read failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The segment holding `offset`: the last one whose base offset is <= it. */
  private segmentIndexFor(offset: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.segments[mid].baseOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * Kafka's ListOffsets by time: the earliest offset whose record timestamp is >=
   * `timestampMs`, below the high watermark as Kafka answers consumers; null if none. Reads
   * and inflates within `budget` (a request's; THROTTLED once spent) and the topic's
   * max.message.bytes, whatever was stored.
   */
  offsetForTimestamp(timestampMs: number, budget: RequestBudget = unlimitedBudget()): { offset: number; timestamp: number } | null {
    if (this.closed) throw new TributaryError(Errors.SHUTTING_DOWN, `${this.label} is closed`);
    if (Number.isNaN(timestampMs)) return null;
    const highWatermark = this.highWatermark;
    const recordsBytesMax = this.topicConfig['max.message.bytes'];
    return this.guardRead(() => {
      for (const segment of this.segments) {
        if (segment.baseOffset >= highWatermark) break;
        const found = segment.findOffsetByTimestamp(timestampMs, budget, recordsBytesMax);
        if (found !== null) return found.offset < highWatermark ? found : null;
      }
      return null;
    });
  }

  // -------------------------------------------------------------------------------------
  // Listeners and lifecycle

  /**
   * `listener` runs (in a microtask) after appends, after the high watermark moves, and
   * after a truncation: whoever waits on the log (a long-poll Fetch, a push) reads again.
   */
  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * `listener` learns, in a microtask after a truncation and before any later append, the
   * new log end offset: a reader positioned above it read offsets that no longer exist.
   */
  onTruncate(listener: (logEndOffset: number) => void): () => void {
    this.truncationListeners.add(listener);
    return () => {
      this.truncationListeners.delete(listener);
    };
  }

  // In a microtask, not inside append: a listener that throws or appends must not make an
  // append that succeeded look failed (the producer would retry and duplicate).
  private scheduleNotify(): void {
    if (this.notifyScheduled || this.listeners.size === 0) return;
    this.notifyScheduled = true;
    queueMicrotask(() => {
      this.notifyScheduled = false;
      for (const listener of [...this.listeners]) listener();
    });
  }

  /**
   * Syncs and seals everything (the active segment's index files are written, so a clean
   * start needs no scan) and closes every fd. Rejects if the log failed or the final sync
   * does; the caller must then not write the clean-shutdown marker.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A follower's append or truncation in progress finishes first (queued ones find the
    // log closed); then the maintenance job, which sees isClosed and stops early: its files
    // must settle before the seal.
    await this.replicaQueue;
    await this.maintenanceQueue;
    this.flushTimer?.cancel();
    this.flushTimer = null;
    try {
      if (this.failure !== null) throw this.failure;
      await this.requestSync(false);
      while (this.syncInFlight !== null) await this.syncInFlight;
      if (this.failure !== null) throw this.failure;
      const active = this.active;
      await active.seal();
      // The active segment is synced and indexed whole now: say so in the checkpoint, so
      // that a crash soon after the next start scans only what that start appends.
      if (active.sizeBytes > 0) {
        await writeRecoveryCheckpoint(this.env.ops, this.dir, active.baseOffset, { baseOffset: active.baseOffset, offset: this._logEndOffset, position: active.sizeBytes }).catch(noop);
      }
      // A clean start then needs no replay at all.
      // Without it the next start replays the log instead: slower, never wrong.
      await this.snapshotProducerState().catch(noop);
      await fsyncDir(this.env.ops, this.dir);
    } finally {
      for (const segment of this.segments) segment.close();
    }
  }

  /** For tests: the file holding `offset`'s segment. */
  segmentFileFor(offset: number): string {
    return path.join(this.dir, this.segments[this.segmentIndexFor(offset)].name);
  }
}
