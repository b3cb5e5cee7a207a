// What this node is for each partition it has: its leader, a follower of another node, or
// nothing (no such partition here). Every handler that touches a partition asks here, through
// `leaderLog`, so NOT_LEADER (Kafka's NOT_LEADER_OR_FOLLOWER) is decided in one place; sync/
// (the site mesh, later) sets the roles through `PartitionRoleControl`.
//
// Until sync/ says otherwise a node leads every partition it has: that is a single node, and
// it is this module's default, not an assumption spread over the handlers. A role is kept on
// the partition's log object (a WeakMap), so it goes with the partition: a deleted topic's
// roles are forgotten with it, a topic created again under the same name starts led here,
// and nothing needs a bound of its own beyond the partitions the node holds.

import { Errors, TributaryError } from '../protocol/errors.js';
import type { PartitionLog } from './storage/partition-log.js';

export type PartitionRole = 'leader' | 'follower' | 'none';

/** A part of a request refused for its partition: the per-partition `error` and `message`. */
export interface PartitionRefusal {
  error: number;
  message: string;
}

/** What handlers and sync/ read. */
export interface PartitionRoleView {
  roleOf(topic: string, partition: number): PartitionRole;
  /** The node id Metadata names as the partition's leader: this node's, the one followed, or '' when unknown. */
  leaderOf(topic: string, partition: number): string;
  /**
   * The log of a partition this node leads, or the refusal for it: UNKNOWN_TOPIC when the
   * node has no such partition, NOT_LEADER when another node leads it.
   */
  leaderLog(topic: string, partition: number): PartitionLog | PartitionRefusal;
}

/** What sync/ uses to move leadership (node/broker.ts hands it out as `Broker.partitionRoles`). */
export interface PartitionRoleControl extends PartitionRoleView {
  /**
   * This node leads the partition (the default) in `leaderEpoch`, never below the log's
   * latest: the epoch begins at the log end, durably, before the partition is served as led
   * here. UNKNOWN_TOPIC if the node has no such partition.
   */
  lead(topic: string, partition: number, leaderEpoch: number): Promise<void>;
  /**
   * Another node leads the partition; `leader` is its node id when known ('' when not), which
   * Metadata names so that clients go there. Refused here at once; the log takes only its
   * leader's batches from then on, and waiting fetches and subscriptions are woken to be told.
   * UNKNOWN_TOPIC if this node has no such partition.
   */
  follow(topic: string, partition: number, leader?: string): Promise<void>;
}

export function isRefusal(found: PartitionLog | PartitionRefusal): found is PartitionRefusal {
  return (found as PartitionRefusal).error !== undefined;
}

export class PartitionRoles implements PartitionRoleControl {
  /** The partitions this node follows, with the leader's node id ('' unknown). Absent: led here. */
  private readonly followed = new WeakMap<PartitionLog, string>();

  constructor(
    private readonly nodeId: string,
    private readonly logs: { partition(topic: string, partition: number): PartitionLog | undefined },
  ) {}

  roleOf(topic: string, partition: number): PartitionRole {
    const log = this.logs.partition(topic, partition);
    if (log === undefined) return 'none';
    return this.followed.has(log) ? 'follower' : 'leader';
  }

  leaderOf(topic: string, partition: number): string {
    const log = this.logs.partition(topic, partition);
    if (log === undefined) return '';
    return this.followed.get(log) ?? this.nodeId;
  }

  // On the path of every produce and fetch: no allocation unless it refuses.
  leaderLog(topic: string, partition: number): PartitionLog | PartitionRefusal {
    const log = this.logs.partition(topic, partition);
    if (log === undefined) return { error: Errors.UNKNOWN_TOPIC.code, message: `unknown topic or partition ${topic}/${partition}` };
    const leader = this.followed.get(log);
    if (leader === undefined) return log;
    return { error: Errors.NOT_LEADER.code, message: `this node does not lead ${topic}/${partition}${leader === '' ? '' : `; node ${leader} does`}` };
  }

  async lead(topic: string, partition: number, leaderEpoch: number): Promise<void> {
    const log = this.existing(topic, partition);
    await log.becomeLeader(leaderEpoch);
    this.followed.delete(log);
  }

  async follow(topic: string, partition: number, leader = ''): Promise<void> {
    const log = this.existing(topic, partition);
    // Refused by every handler from this turn on, before the log's own switch completes.
    this.followed.set(log, leader);
    await log.becomeFollower();
  }

  private existing(topic: string, partition: number): PartitionLog {
    const log = this.logs.partition(topic, partition);
    if (log === undefined) throw new TributaryError(Errors.UNKNOWN_TOPIC, `unknown topic or partition ${topic}/${partition}`);
    return log;
  }
}
