// Where a follower's log must be cut before it fetches from its leader (KIP-101, KIP-279):
// Kafka's AbstractFetcherThread.getOffsetTruncationState as a pure function, and the loop
// that asks the leader and cuts until the two logs agree.
//
// The follower asks the leader (OffsetsForLeaderEpoch) for the end of its own latest epoch.
// The leader answers with the largest epoch it holds at or below that one and where it
// ended in the leader's log. If the follower has that epoch, both logs agree up to the
// smaller of the two end offsets: truncate there, done. If it does not (the leader names
// an epoch the follower never saw), cut to where the follower's largest epoch below it
// ended and ask again: each such round drops at least one epoch of the follower's.

import { AssertionError } from '../../protocol/errors.js';
import { LeaderEpochCache, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET } from './leader-epoch.js';
import type { EpochEndOffset, EpochEntry } from './leader-epoch.js';

/** What the rule needs of the follower's log. */
export interface FollowerLogState {
  /** Where each epoch began, oldest first (PartitionLog.leaderEpochs()). */
  epochs: readonly EpochEntry[];
  logEndOffset: number;
  highWatermark: number;
}

/** Kafka's OffsetTruncationState: cut the log to `offset`; ask again unless `completed`. */
export interface TruncationStep {
  offset: number;
  completed: boolean;
}

/** The epoch a follower asks its leader about: its latest, or null when it has none. */
export function epochToAsk(follower: FollowerLogState): number | null {
  const latest = follower.epochs[follower.epochs.length - 1];
  return latest === undefined ? null : latest.epoch;
}

/**
 * Where `follower` must truncate, given the leader's OffsetsForLeaderEpoch answer for the
 * epoch epochToAsk() named (null: it named none, so nothing was asked). Never above the
 * follower's log end.
 */
export function truncationFor(follower: FollowerLogState, leader: EpochEndOffset | null): TruncationStep {
  const logEndOffset = follower.logEndOffset;
  // No epoch to compare (an empty log, or one written before epochs), or a leader that
  // knows no epoch at or below ours: only what the high watermark covers is known to be
  // the leader's too.
  if (leader === null || leader.endOffset === UNDEFINED_EPOCH_OFFSET) {
    return { offset: Math.min(follower.highWatermark, logEndOffset), completed: true };
  }
  // An answer without an epoch (a leader of a protocol before KIP-279): its end offset.
  if (leader.leaderEpoch === UNDEFINED_EPOCH) return { offset: Math.min(leader.endOffset, logEndOffset), completed: true };
  const own = new LeaderEpochCache(follower.epochs).endOffsetFor(leader.leaderEpoch, logEndOffset);
  // Every epoch of ours is above the leader's answer (our older ones went with retention):
  // the leader's end offset is all there is to go by.
  if (own.endOffset === UNDEFINED_EPOCH_OFFSET) return { offset: Math.min(leader.endOffset, logEndOffset), completed: true };
  // The leader answered an epoch we never saw: cut to where our largest epoch below it
  // ended, then ask again about the epoch that is our latest after the cut.
  if (own.leaderEpoch !== leader.leaderEpoch) return { offset: Math.min(own.endOffset, logEndOffset), completed: false };
  return { offset: Math.min(own.endOffset, leader.endOffset, logEndOffset), completed: true };
}

/** What truncateToLeader needs of a follower's log (a PartitionLog opened with follower: true). */
export interface TruncatableLog {
  leaderEpochs(): EpochEntry[];
  readonly logEndOffset: number;
  readonly highWatermark: number;
  truncateTo(offset: number): Promise<void>;
}

/**
 * Asks the leader (`endOffsetForEpoch`: its OffsetsForLeaderEpoch answer for one epoch) and
 * truncates `log` until the rule says done; returns the log end offset to fetch from.
 */
export async function truncateToLeader(log: TruncatableLog, endOffsetForEpoch: (epoch: number) => Promise<EpochEndOffset>): Promise<number> {
  // Each unfinished round cuts below the start of the latest epoch, so the rounds are
  // bounded by the epochs the log held at the start.
  for (let round = log.leaderEpochs().length + 1; round >= 0; round--) {
    const state: FollowerLogState = { epochs: log.leaderEpochs(), logEndOffset: log.logEndOffset, highWatermark: log.highWatermark };
    const epoch = epochToAsk(state);
    const step = truncationFor(state, epoch === null ? null : await endOffsetForEpoch(epoch));
    // At the log end too when unfinished: an epoch that began there (with no batch) goes.
    if (step.offset < log.logEndOffset || !step.completed) await log.truncateTo(step.offset);
    if (step.completed) return log.logEndOffset;
  }
  throw new AssertionError('follower truncation did not converge: an unfinished round kept the latest epoch');
}
