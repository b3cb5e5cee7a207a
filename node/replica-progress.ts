// How far each follower's log reaches, per partition this node leads, as its ReplicaFetch
// requests tell it: a follower fetches from its own log end, so its fetch offset is its
// log end offset (Kafka's Replica.updateFetchStateOrThrow). With it, the time the follower
// was last caught up to the leader's log end (Kafka's lastCaughtUpTimeMs), on which the
// in-sync set builds (later, with site replication). sync/ reads it through
// `ReplicaProgressView` (node/broker.ts hands it out as `Broker.replicaProgress`).
//
// Followers are known by their principal's key (the credential's identity key), not by the
// replicaId they send, which is only a label. A `node` credential is trusted, but what it
// can make the leader hold is still bounded: FOLLOWERS_PER_PARTITION_MAX per partition and
// FOLLOWERS_MAX on the node. A follower is forgotten FOLLOWER_EXPIRY_MS after its last
// ReplicaFetch of the partition (its connection gone, or it stopped following): ten times
// Kafka's replica.lag.time.max.ms, long past the point where it counts as out of sync. A
// new follower past a bound, once the expired ones are gone, is refused RESOURCE_LIMIT for
// that partition; those already known keep being served.

import { systemClock } from '../protocol/clock.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import type { PartitionLog } from './storage/partition-log.js';

export const FOLLOWERS_PER_PARTITION_MAX = 32;
export const FOLLOWERS_MAX = 65_536;
export const FOLLOWER_EXPIRY_MS = 300_000;

/** One follower of one partition, as the leader last heard from it. */
export interface FollowerState {
  /** Its principal's key: who it is. */
  readonly follower: string;
  /** The replicaId it sent (a label; '' when none). */
  readonly replicaId: string;
  /** Its log end offset: the fetch offset of its last ReplicaFetch. */
  readonly logEndOffset: number;
  /** When (ms, the node's clock) it last fetched. */
  readonly lastFetchTimeMs: number;
  /** When it was last caught up to the leader's log end; -1 never. */
  readonly lastCaughtUpTimeMs: number;
}

export interface ReplicaProgressView {
  /** The followers of a partition heard from within FOLLOWER_EXPIRY_MS, in no particular order. */
  followersOf(log: PartitionLog): FollowerState[];
}

interface Entry {
  follower: string;
  replicaId: string;
  logEndOffset: number;
  lastFetchTimeMs: number;
  lastCaughtUpTimeMs: number;
  /** The leader's log end at the follower's previous fetch (Kafka's lastFetchLeaderLogEndOffset). */
  lastFetchLeaderLogEndOffset: number;
  readonly log: PartitionLog;
  readonly byFollower: Map<string, Entry>;
}

export class ReplicaProgress implements ReplicaProgressView {
  private readonly partitions = new WeakMap<PartitionLog, Map<string, Entry>>();
  /** Every entry, least recently fetched first: what expires is at the front. */
  private readonly byAge = new Set<Entry>();

  constructor(private readonly now: () => number = systemClock.now) {}

  get size(): number {
    return this.byAge.size;
  }

  /**
   * A follower fetched `fetchOffset` (its log end) while the leader's log ended at
   * `leaderLogEndOffset`. Throws RESOURCE_LIMIT for a new follower past a bound.
   */
  record(log: PartitionLog, follower: string, replicaId: string, fetchOffset: number, leaderLogEndOffset: number): void {
    const now = this.now();
    this.expire(now);
    let followers = this.partitions.get(log);
    let entry = followers?.get(follower);
    if (entry === undefined) {
      if (followers !== undefined && followers.size >= FOLLOWERS_PER_PARTITION_MAX) {
        throw new TributaryError(Errors.RESOURCE_LIMIT, `${log.topic}/${log.partition} already has ${FOLLOWERS_PER_PARTITION_MAX} followers heard from within ${FOLLOWER_EXPIRY_MS} ms`);
      }
      if (this.byAge.size >= FOLLOWERS_MAX) {
        throw new TributaryError(Errors.RESOURCE_LIMIT, `the node already tracks ${FOLLOWERS_MAX} followers of its partitions`);
      }
      if (followers === undefined) this.partitions.set(log, (followers = new Map()));
      entry = { follower, replicaId, logEndOffset: -1, lastFetchTimeMs: now, lastCaughtUpTimeMs: -1, lastFetchLeaderLogEndOffset: -1, log, byFollower: followers };
      followers.set(follower, entry);
    } else {
      this.byAge.delete(entry);
    }
    // Kafka's rule: caught up now if it has the leader's whole log; caught up at its previous
    // fetch if it has now what the leader had then.
    if (fetchOffset >= leaderLogEndOffset) entry.lastCaughtUpTimeMs = Math.max(entry.lastCaughtUpTimeMs, now);
    else if (fetchOffset >= entry.lastFetchLeaderLogEndOffset && entry.lastFetchLeaderLogEndOffset >= 0) {
      entry.lastCaughtUpTimeMs = Math.max(entry.lastCaughtUpTimeMs, entry.lastFetchTimeMs);
    }
    entry.replicaId = replicaId;
    entry.logEndOffset = fetchOffset;
    entry.lastFetchLeaderLogEndOffset = leaderLogEndOffset;
    entry.lastFetchTimeMs = now;
    this.byAge.add(entry);
  }

  followersOf(log: PartitionLog): FollowerState[] {
    this.expire(this.now());
    const followers = this.partitions.get(log);
    if (followers === undefined) return [];
    return [...followers.values()].map(({ follower, replicaId, logEndOffset, lastFetchTimeMs, lastCaughtUpTimeMs }) => ({ follower, replicaId, logEndOffset, lastFetchTimeMs, lastCaughtUpTimeMs }));
  }

  /** Forgets the followers not heard from within FOLLOWER_EXPIRY_MS: the oldest are first, so this stops at the first fresh one. */
  private expire(now: number): void {
    for (const entry of this.byAge) {
      if (now - entry.lastFetchTimeMs < FOLLOWER_EXPIRY_MS) return;
      this.byAge.delete(entry);
      entry.byFollower.delete(entry.follower);
      if (entry.byFollower.size === 0) this.partitions.delete(entry.log);
    }
  }
}
