// The disk guard: an edge node on a small flash disk must never fill it. Two limits:
//   storage.maxBytes      bytes of segment files on this node (0: no limit)
//   storage.minFreeBytes  free bytes the file system must keep (statfs of the data folder)
// Past either, per config:
//   refuse  produce to user topics answers STORAGE_FULL (retriable: devices back off and
//           keep their data) until the node is back under both limits;
//   drop    the oldest closed segments of user topics are deleted, oldest record first,
//           each counted per topic and logged, until the node is under both limits. A
//           segment holding offsets an uplink has not yet forwarded is never dropped unless
//           storage.dropUnsent is set; when nothing may be dropped, the guard refuses instead.
// Internal topics (__consumer_offsets, __revocations) are never dropped, and revocations
// never refused: losing one would let a revoked device back in. Offset commits are refused
// like produce (refusesOffsetCommits): each appends to __consumer_offsets, which only
// compaction shrinks later, so a flood of commits could otherwise fill the disk.
//
// The guard checks on a schedule and, between checks, after every `checkEveryBytes`
// appended, so a burst cannot run far past a limit before it notices. A write that still
// meets a full disk fails cleanly (segment.ts cuts the file back; STORAGE_FULL).

import { statfs } from 'node:fs/promises';
import type { Logger } from '../logger.js';
import type { LogManager } from './log-manager.js';
import type { PartitionLog } from './partition-log.js';
import type { LogSegment } from './segment.js';

export type GuardAction = 'refuse' | 'drop';

export interface DiskGuardOptions {
  maxBytes: number;
  minFreeBytes: number;
  action: GuardAction;
  dropUnsent: boolean;
  logger: Logger;
  /**
   * The first offset an uplink has not yet forwarded from this partition, or undefined
   * when no uplink takes the partition (nothing is waiting to be sent).
   */
  unsentFrom?: (topic: string, partition: number) => number | undefined;
  /** Free bytes of the data folder's file system; statfs unless a test injects one. */
  freeBytes?: (dir: string) => Promise<number>;
  onDropped?: (topic: string, partition: number, bytes: number) => void;
}

export interface GuardStatus {
  usedBytes: number;
  freeBytes: number;
  refusing: boolean;
}

export interface GuardCheck extends GuardStatus {
  /** Segments deleted by this check (drop mode). */
  dropped: { topic: string; partition: number; baseOffset: number; bytes: number }[];
}

const CHECK_EVERY_BYTES_MAX = 4 * 1024 * 1024;

/** `__consumer_offsets`, `__revocations`: never refused nor dropped (see the top). */
function isInternalTopic(topic: string): boolean {
  return topic.startsWith('__');
}

async function statfsFreeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

export class DiskGuard {
  private _refusing = false;
  private lastStatus: GuardStatus = { usedBytes: 0, freeBytes: Number.POSITIVE_INFINITY, refusing: false };
  private running: Promise<GuardCheck> | null = null;
  private stopped = false;
  private appendedSinceCheck = 0;
  private readonly checkEveryBytes: number;
  private readonly freeBytesOf: (dir: string) => Promise<number>;

  constructor(
    private readonly logs: LogManager,
    private readonly options: DiskGuardOptions,
  ) {
    this.freeBytesOf = options.freeBytes ?? statfsFreeBytes;
    // A hundredth of the budget, so a burst overshoots maxBytes by about 1% at most.
    const budget = options.maxBytes > 0 ? options.maxBytes : options.minFreeBytes;
    this.checkEveryBytes = Math.max(64 * 1024, Math.min(CHECK_EVERY_BYTES_MAX, Math.floor(budget / 100)));
  }

  get enabled(): boolean {
    return this.options.maxBytes > 0 || this.options.minFreeBytes > 0;
  }

  /** True while produce to user topics must answer STORAGE_FULL. */
  get refusing(): boolean {
    return this._refusing;
  }

  status(): GuardStatus {
    return { ...this.lastStatus, refusing: this._refusing };
  }

  /**
   * Whether produce to `topic` must answer STORAGE_FULL now. Internal topics stay writable:
   * offset commits and revocations are small, and a revocation that cannot be written
   * would let a revoked device back in.
   */
  refuses(topic: string): boolean {
    return this._refusing && !isInternalTopic(topic);
  }

  /** Whether OffsetCommit must answer STORAGE_FULL now (see the top). */
  refusesOffsetCommits(): boolean {
    return this._refusing;
  }

  /** No check starts after this; resolves when the one running (if any) has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running?.catch(() => undefined);
  }

  /** Called by produce with the bytes it appended: starts a check once enough piled up. */
  noteAppended(bytes: number): void {
    if (!this.enabled || this.stopped) return;
    this.appendedSinceCheck += bytes;
    if (this.appendedSinceCheck >= this.checkEveryBytes && this.running === null) {
      void this.check().catch((err: unknown) => this.options.logger.error({ err }, 'disk guard check failed'));
    }
  }

  /** One check; a check already running is joined, never overlapped. */
  check(): Promise<GuardCheck> {
    this.running ??= this.runCheck().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private usedBytes(): number {
    let total = 0;
    for (const topic of this.logs.topics()) {
      for (let p = 0; p < topic.partitions; p++) total += this.logs.partition(topic.name, p)?.sizeBytes ?? 0;
    }
    return total;
  }

  private async measure(): Promise<GuardStatus> {
    const usedBytes = this.usedBytes();
    const freeBytes = this.options.minFreeBytes > 0 ? await this.freeBytesOf(this.logs.dataDir) : Number.POSITIVE_INFINITY;
    return { usedBytes, freeBytes, refusing: this._refusing };
  }

  private over(status: GuardStatus): boolean {
    const { maxBytes, minFreeBytes } = this.options;
    return (maxBytes > 0 && status.usedBytes > maxBytes) || (minFreeBytes > 0 && status.freeBytes < minFreeBytes);
  }

  private async runCheck(): Promise<GuardCheck> {
    this.appendedSinceCheck = 0;
    const dropped: GuardCheck['dropped'] = [];
    if (!this.enabled) return { ...(await this.measure()), dropped };
    let status = await this.measure();
    if (this.over(status) && this.options.action === 'drop') {
      // A partition whose segment could not be deleted is left alone for the rest of this
      // check, so one failing disk operation neither loops nor keeps the guard from refusing.
      const failed = new Set<PartitionLog>();
      while (this.over(status) && !this.stopped) {
        const victim = this.oldestDroppable(failed);
        if (victim === null) break;
        let done = 0;
        try {
          done = await victim.log.maintain(async () => {
            // Re-checked inside the queue: retention or compaction may have changed it.
            const first = victim.log.closedSegments()[0];
            if (first === undefined || first !== victim.segment) return 0;
            return (await victim.log.deleteOldestSegments(1)).bytes;
          });
        } catch (err) {
          failed.add(victim.log);
          if (!victim.log.isClosed) this.options.logger.error({ topic: victim.log.topic, partition: victim.log.partition, err }, 'disk guard could not drop a segment');
        }
        if (done > 0) {
          dropped.push({ topic: victim.log.topic, partition: victim.log.partition, baseOffset: victim.segment.baseOffset, bytes: done });
          this.options.onDropped?.(victim.log.topic, victim.log.partition, done);
          this.options.logger.warn(
            { topic: victim.log.topic, partition: victim.log.partition, baseOffset: victim.segment.baseOffset, bytes: done, logStartOffset: victim.log.logStartOffset },
            'disk guard dropped the oldest segment',
          );
        }
        status = await this.measure();
      }
    }
    const refuse = this.over(status);
    if (refuse !== this._refusing) {
      this._refusing = refuse;
      const fields = { usedBytes: status.usedBytes, freeBytes: status.freeBytes, maxBytes: this.options.maxBytes, minFreeBytes: this.options.minFreeBytes };
      if (refuse) {
        const why = this.options.action === 'drop' ? 'nothing left that may be dropped' : 'storage.guard is refuse';
        this.options.logger.error({ ...fields, why }, 'disk guard: storage full, refusing produce to user topics');
      } else {
        this.options.logger.info(fields, 'disk guard: back under the limits, accepting produce');
      }
    }
    this.lastStatus = { ...status, refusing: refuse };
    return { ...this.lastStatus, dropped };
  }

  /** Across user partitions: the first closed segment with the oldest records that may go. */
  private oldestDroppable(skip: ReadonlySet<PartitionLog>): { log: PartitionLog; segment: LogSegment } | null {
    let best: { log: PartitionLog; segment: LogSegment } | null = null;
    for (const topic of this.logs.topics()) {
      if (isInternalTopic(topic.name)) continue;
      for (let p = 0; p < topic.partitions; p++) {
        const log = this.logs.partition(topic.name, p);
        if (log === undefined || log.isClosed || skip.has(log)) continue;
        const closed = log.closedSegments();
        if (closed.length === 0) continue;
        const segment = closed[0];
        if (!this.options.dropUnsent) {
          const unsentFrom = this.options.unsentFrom?.(topic.name, p);
          // The segment ends where the next one begins; it may go once all of it was sent.
          const segmentEnd = closed.length > 1 ? closed[1].baseOffset : this.nextBaseAfter(log, segment.baseOffset);
          if (unsentFrom !== undefined && unsentFrom < segmentEnd) continue;
        }
        if (best === null || segment.maxTimestamp < best.segment.maxTimestamp) best = { log, segment };
      }
    }
    return best;
  }

  private nextBaseAfter(log: PartitionLog, baseOffset: number): number {
    return log.segmentBaseOffsets().find((b) => b > baseOffset) ?? log.logEndOffset;
  }
}
