import { describe, expect, it } from 'vitest';
import { Errors, TributaryError } from '../protocol/errors.js';
import { FOLLOWER_EXPIRY_MS, FOLLOWERS_MAX, FOLLOWERS_PER_PARTITION_MAX, ReplicaProgress } from './replica-progress.js';
import type { PartitionLog } from './storage/partition-log.js';

// The progress keeps logs by identity and reads only their names: a stand-in will do.
const partition = (topic: string, p = 0) => ({ topic, partition: p }) as PartitionLog;

function refusal(run: () => void): string {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(TributaryError);
    expect((err as TributaryError).code).toBe(Errors.RESOURCE_LIMIT.code);
    return (err as TributaryError).detail;
  }
  throw new Error('expected RESOURCE_LIMIT');
}

describe('the followers of a leader', () => {
  it("track each follower's log end and when it was last caught up, by Kafka's rule", () => {
    let now = 1_000;
    const progress = new ReplicaProgress(() => now);
    const log = partition('t');
    const state = () => progress.followersOf(log).find((f) => f.follower === 'key:a');

    // Behind the leader's log end at its first fetch: never caught up.
    progress.record(log, 'key:a', 'a', 5, 10);
    expect(state()).toEqual({ follower: 'key:a', replicaId: 'a', logEndOffset: 5, lastFetchTimeMs: 1_000, lastCaughtUpTimeMs: -1 });
    // Has what the leader had at its previous fetch (10), not what it has now (12): caught up
    // as of the previous fetch.
    now = 2_000;
    progress.record(log, 'key:a', 'a', 10, 12);
    expect(state()).toMatchObject({ logEndOffset: 10, lastFetchTimeMs: 2_000, lastCaughtUpTimeMs: 1_000 });
    // Has the leader's whole log: caught up now.
    now = 3_000;
    progress.record(log, 'key:a', 'a', 12, 12);
    expect(state()).toMatchObject({ logEndOffset: 12, lastCaughtUpTimeMs: 3_000 });
    // Falls behind: the time stays where it was.
    now = 4_000;
    progress.record(log, 'key:a', 'a', 12, 20);
    now = 5_000;
    progress.record(log, 'key:a', 'a', 15, 25);
    expect(state()).toMatchObject({ logEndOffset: 15, lastFetchTimeMs: 5_000, lastCaughtUpTimeMs: 3_000 });
    // Another follower and another partition are kept apart.
    progress.record(log, 'key:b', 'b', 25, 25);
    progress.record(partition('u'), 'key:a', 'a', 0, 0);
    expect(progress.followersOf(log).map((f) => [f.follower, f.logEndOffset])).toEqual([['key:a', 15], ['key:b', 25]]);
    expect(progress.size).toBe(3);
  });

  it('forget a follower not heard from within FOLLOWER_EXPIRY_MS', () => {
    let now = 0;
    const progress = new ReplicaProgress(() => now);
    const log = partition('t');
    progress.record(log, 'key:a', 'a', 0, 0);
    now = 1_000;
    progress.record(log, 'key:b', 'b', 0, 0);
    now = FOLLOWER_EXPIRY_MS - 1;
    expect(progress.followersOf(log).map((f) => f.follower)).toEqual(['key:a', 'key:b']);
    // Fetching again keeps it.
    progress.record(log, 'key:a', 'a', 0, 0);
    now = FOLLOWER_EXPIRY_MS + 1_000;
    expect(progress.followersOf(log).map((f) => f.follower)).toEqual(['key:a']);
    now = 2 * FOLLOWER_EXPIRY_MS;
    expect(progress.followersOf(log)).toEqual([]);
    expect(progress.size).toBe(0);
  });

  it('are bounded per partition and node-wide: a new follower past a bound is refused, the known ones kept', () => {
    let now = 0;
    const progress = new ReplicaProgress(() => now);
    const log = partition('t');
    for (let i = 0; i < FOLLOWERS_PER_PARTITION_MAX; i++) progress.record(log, `key:${i}`, '', 0, 0);
    expect(refusal(() => progress.record(log, 'key:new', '', 0, 0))).toMatch(`t/0 already has ${FOLLOWERS_PER_PARTITION_MAX} followers`);
    now = 1_000;
    progress.record(log, 'key:0', '', 1, 1);
    expect(progress.followersOf(log)).toHaveLength(FOLLOWERS_PER_PARTITION_MAX);
    // Once the others have expired, there is room again.
    now = FOLLOWER_EXPIRY_MS;
    progress.record(log, 'key:new', '', 0, 0);
    expect(progress.followersOf(log).map((f) => f.follower).sort()).toEqual(['key:0', 'key:new']);

    const wide = new ReplicaProgress(() => now);
    const partitions = FOLLOWERS_MAX / FOLLOWERS_PER_PARTITION_MAX;
    for (let p = 0; p < partitions; p++) {
      const each = partition('w', p);
      for (let i = 0; i < FOLLOWERS_PER_PARTITION_MAX; i++) wide.record(each, `key:${i}`, '', 0, 0);
    }
    expect(wide.size).toBe(FOLLOWERS_MAX);
    expect(refusal(() => wide.record(partition('w', partitions), 'key:0', '', 0, 0))).toMatch(`already tracks ${FOLLOWERS_MAX} followers`);
  });
});
