// The truncation rules (KIP-101, KIP-279) as a table: each row a follower's log and its
// leader's, the cuts the follower makes round by round, and where it fetches from after.
// The leader's answers come from a LeaderEpochCache holding the leader's epochs, as the
// leader's OffsetsForLeaderEpoch handler answers; the follower is a model of a log that
// truncates as PartitionLog.truncateTo does (its own tests show the log does so).

import { describe, expect, it } from 'vitest';
import { epochToAsk, truncateToLeader, truncationFor } from './follower-truncation.js';
import type { TruncatableLog, TruncationStep } from './follower-truncation.js';
import { LeaderEpochCache, UNDEFINED_EPOCH } from './leader-epoch.js';
import type { EpochEndOffset, EpochEntry } from './leader-epoch.js';

interface Side {
  /** [epoch, startOffset] pairs, oldest first. */
  epochs: [number, number][];
  logEndOffset: number;
  highWatermark?: number;
}

interface Row {
  name: string;
  follower: Side;
  leader: Side;
  /** The epoch asked in each round, then the cut the rule made. */
  rounds: { asked: number | null; step: TruncationStep }[];
  /** The follower's log end afterwards: where it fetches from. */
  fetchFrom: number;
  /** The follower's epochs afterwards. */
  epochsAfter: [number, number][];
}

const entries = (pairs: [number, number][]): EpochEntry[] => pairs.map(([epoch, startOffset]) => ({ epoch, startOffset }));

class ModelLog implements TruncatableLog {
  private readonly epochs: LeaderEpochCache;
  logEndOffset: number;
  highWatermark: number;
  readonly cuts: number[] = [];

  constructor(side: Side) {
    this.epochs = new LeaderEpochCache(entries(side.epochs));
    this.logEndOffset = side.logEndOffset;
    this.highWatermark = side.highWatermark ?? 0;
  }

  leaderEpochs(): EpochEntry[] {
    return this.epochs.list();
  }

  async truncateTo(offset: number): Promise<void> {
    this.cuts.push(offset);
    if (offset > this.logEndOffset) return;
    // As PartitionLog.truncateTo: an epoch that began at or past the new end goes.
    this.epochs.truncateFromEnd(offset - 1);
    this.logEndOffset = offset;
    this.highWatermark = Math.min(this.highWatermark, offset);
  }
}

function leaderAnswers(leader: Side): (epoch: number) => EpochEndOffset {
  const cache = new LeaderEpochCache(entries(leader.epochs));
  return (epoch) => cache.endOffsetFor(epoch, leader.logEndOffset);
}

const ROWS: Row[] = [
  {
    name: 'follower behind, same epochs: nothing is cut',
    follower: { epochs: [[0, 0], [1, 20]], logEndOffset: 25, highWatermark: 20 },
    leader: { epochs: [[0, 0], [1, 20]], logEndOffset: 40 },
    rounds: [{ asked: 1, step: { offset: 25, completed: true } }],
    fetchFrom: 25,
    epochsAfter: [[0, 0], [1, 20]],
  },
  {
    name: 'follower ahead in an epoch the leader ended earlier: cut to where the leader began the next',
    follower: { epochs: [[0, 0], [1, 20]], logEndOffset: 40, highWatermark: 22 },
    leader: { epochs: [[0, 0], [1, 20], [2, 30]], logEndOffset: 45 },
    rounds: [{ asked: 1, step: { offset: 30, completed: true } }],
    fetchFrom: 30,
    epochsAfter: [[0, 0], [1, 20]],
  },
  {
    name: "follower ahead in the leader's latest epoch: cut to the leader's log end",
    follower: { epochs: [[0, 0]], logEndOffset: 15 },
    leader: { epochs: [[0, 0]], logEndOffset: 10 },
    rounds: [{ asked: 0, step: { offset: 10, completed: true } }],
    fetchFrom: 10,
    epochsAfter: [[0, 0]],
  },
  {
    name: 'diverged in a middle epoch: the follower led epoch 2 the leader never had; two rounds',
    follower: { epochs: [[0, 0], [1, 10], [2, 20], [4, 30]], logEndOffset: 40, highWatermark: 18 },
    leader: { epochs: [[0, 0], [1, 10], [3, 25], [5, 45]], logEndOffset: 50 },
    rounds: [
      // The leader's largest epoch <= 4 is 3 (ended at 45); the follower has no 3: its largest below is 2, ended at 30.
      { asked: 4, step: { offset: 30, completed: false } },
      // Asked about 2, the leader answers 1 ending at 25; the follower's 1 ended at 20.
      { asked: 2, step: { offset: 20, completed: true } },
    ],
    fetchFrom: 20,
    epochsAfter: [[0, 0], [1, 10]],
  },
  {
    name: 'empty log: nothing to ask, fetch from the start',
    follower: { epochs: [], logEndOffset: 0, highWatermark: 0 },
    leader: { epochs: [[0, 0], [3, 50]], logEndOffset: 70 },
    rounds: [{ asked: null, step: { offset: 0, completed: true } }],
    fetchFrom: 0,
    epochsAfter: [],
  },
  {
    name: 'leader with an epoch the follower never saw, below the one asked: cut, ask again, cut to the leader',
    follower: { epochs: [[0, 0], [2, 10]], logEndOffset: 30, highWatermark: 5 },
    leader: { epochs: [[0, 0], [1, 8], [3, 25]], logEndOffset: 40 },
    rounds: [
      // Asked about 2, the leader answers its epoch 1 (ended at 25); the follower has no 1: its 0 ended at 10.
      { asked: 2, step: { offset: 10, completed: false } },
      // Asked about 0, the leader's 0 ended at 8: the follower's 8..9 were never the leader's.
      { asked: 0, step: { offset: 8, completed: true } },
    ],
    fetchFrom: 8,
    epochsAfter: [[0, 0]],
  },
  {
    name: 'leader whose epochs all begin above the one asked (its older ones went with retention)',
    follower: { epochs: [[0, 0], [1, 10]], logEndOffset: 30 },
    leader: { epochs: [[4, 100]], logEndOffset: 120 },
    // The leader answers the epoch asked, ending where its first begins; the follower has it.
    rounds: [{ asked: 1, step: { offset: 30, completed: true } }],
    fetchFrom: 30,
    epochsAfter: [[0, 0], [1, 10]],
  },
  {
    name: 'a leader that knows no epoch at or below the one asked (UNDEFINED): cut to the high watermark',
    follower: { epochs: [[0, 0], [5, 10]], logEndOffset: 20, highWatermark: 12 },
    leader: { epochs: [[0, 0], [3, 15]], logEndOffset: 30 },
    rounds: [{ asked: 5, step: { offset: 12, completed: true } }],
    fetchFrom: 12,
    epochsAfter: [[0, 0], [5, 10]],
  },
  {
    // appendAsFollower drops the empty epoch when the leader's first batch at 20 comes in a
    // later epoch (its own tests show it): nothing needs cutting here.
    name: 'an epoch begun at the log end with no batch, which the leader never had: no cut',
    follower: { epochs: [[0, 0], [2, 20]], logEndOffset: 20, highWatermark: 20 },
    leader: { epochs: [[0, 0], [3, 20]], logEndOffset: 26 },
    rounds: [{ asked: 2, step: { offset: 20, completed: true } }],
    fetchFrom: 20,
    epochsAfter: [[0, 0], [2, 20]],
  },
];

describe('truncation rules', () => {
  it.each(ROWS)('$name', async (row) => {
    const log = new ModelLog(row.follower);
    const answer = leaderAnswers(row.leader);
    // The rule, round by round, against the follower as each cut leaves it.
    const seen: { asked: number | null; step: TruncationStep }[] = [];
    const model = new ModelLog(row.follower);
    for (let round = 0; round < 10; round++) {
      const state = { epochs: model.leaderEpochs(), logEndOffset: model.logEndOffset, highWatermark: model.highWatermark };
      const asked = epochToAsk(state);
      const step = truncationFor(state, asked === null ? null : answer(asked));
      seen.push({ asked, step });
      expect(step.offset).toBeLessThanOrEqual(state.logEndOffset);
      await model.truncateTo(step.offset);
      if (step.completed) break;
    }
    expect(seen).toEqual(row.rounds);

    // The loop a follower runs makes the same cuts and ends where the rows say.
    const fetchFrom = await truncateToLeader(log, async (epoch) => answer(epoch));
    expect(fetchFrom).toBe(row.fetchFrom);
    expect(log.leaderEpochs()).toEqual(entries(row.epochsAfter));
    const cutsBelowEnd = row.rounds.filter((r, i) => r.step.offset < (i === 0 ? row.follower.logEndOffset : row.rounds[i - 1].step.offset) || !r.step.completed);
    expect(log.cuts).toEqual(cutsBelowEnd.map((r) => r.step.offset));
  });

  it('takes a pre-KIP-279 answer (no epoch) as the end offset, capped at the log end', () => {
    const follower = { epochs: entries([[0, 0], [1, 10]]), logEndOffset: 30, highWatermark: 0 };
    expect(truncationFor(follower, { leaderEpoch: UNDEFINED_EPOCH, endOffset: 17 })).toEqual({ offset: 17, completed: true });
    expect(truncationFor(follower, { leaderEpoch: UNDEFINED_EPOCH, endOffset: 90 })).toEqual({ offset: 30, completed: true });
  });

  it('ends with both logs agreeing on every epoch the follower keeps', async () => {
    // Every row: after the loop, each epoch the follower keeps ends (for the leader) no
    // earlier than the follower's log end or the follower's next epoch, so fetching from
    // the log end appends the leader's records after records the leader also has.
    for (const row of ROWS) {
      const log = new ModelLog(row.follower);
      const answer = leaderAnswers(row.leader);
      await truncateToLeader(log, async (epoch) => answer(epoch));
      const kept = log.leaderEpochs();
      kept.forEach((e, i) => {
        const followerEnd = i + 1 < kept.length ? kept[i + 1].startOffset : log.logEndOffset;
        const leaderSays = answer(e.epoch);
        if (leaderSays.leaderEpoch !== e.epoch) return; // an epoch below the leader's first: retention
        expect(leaderSays.endOffset, `${row.name}: epoch ${e.epoch}`).toBeGreaterThanOrEqual(followerEnd);
      });
    }
  });
});
