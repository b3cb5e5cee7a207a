// A member of a consumer group (KIP-848's protocol, as node/groups/coordinator.ts speaks it),
// built on the plain Consumer: the group decides which partitions this member owns, and
// the Consumer reads them.
//
//   heartbeat loop   join (memberId '', epoch 0), then every heartbeatIntervalMs report
//                    what we own; each answer is what we may own now -> reconcile
//   reconcile        lost: stop delivering (re-assign the Consumer without them), commit
//                    their positions, then stop reporting them (the next heartbeat, sent
//                    at once); gained: OffsetFetch, start at the committed offset, or
//                    where autoOffsetReset puts it (ListOffsets, asked before delivery
//                    starts), report them owned
//   delivery         records()/batches() wrap the Consumer's and remember, per partition,
//                    the offset after the last record handed to the app: that is what a
//                    commit sends, so a commit never covers a record the app has not had
//                    (at-least-once). A partition nothing was handed out of yet commits
//                    where it starts, its reset position included, as Kafka's auto-commit
//                    commits every assigned partition with a valid position
//                    (SubscriptionState.allConsumed): a member that leaves after reading
//                    some partitions, started at the log start by 'earliest', leaves the
//                    others there too, and a later member starting at 'latest' skips nothing.
//                    A partition's position is known from the moment it is gained and moves
//                    only as records are handed out, so an app that commits its own offsets
//                    can take it as the start of what it has been given
//   leader epochs    (KIP-320) each position carries the leader epoch of the record before
//                    it, and a commit carries it; a partition gained at a committed offset
//                    with an epoch is checked against the node's log before it is read
//                    (the Consumer does it, and after every reconnect too), and a position
//                    found diverged moves back to where the logs part, so the next commit
//                    does not skip the records written there since
//
// The coordinator hands a partition to a member only once no other member reports it, and
// we take a lost partition out of `assignment` before the heartbeat that stops reporting
// it, so no two live members ever own the same partition. A member fenced or forgotten
// (UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH) cannot commit any more: it drops everything,
// uncommitted, and joins again; what it had not committed is read again by the next owner.

import type { Clock, ClockTimer } from '../protocol/clock.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { EARLIEST_TIMESTAMP, Kind, LATEST_TIMESTAMP, type ConsumerGroupHeartbeatResponse } from '../protocol/frames.js';
import { isTopicPattern } from '../protocol/topic-names.js';
import type { Client } from './client.js';
import {
  Consumer,
  type ConsumerOptions,
  type ConsumerRecord,
  type DecodedValue,
  type LogDivergence,
  type PartitionAssignment,
  type TopicPartition,
  type ValueDecoding,
} from './consumer.js';
import { wireError } from './errors.js';

/** An offset to commit: the position of the partition's next record. */
export interface CommitOffset extends TopicPartition {
  offset: number;
  /**
   * The leader epoch of the record before `offset` (ConsumerRecord.leaderEpoch), so that the
   * member starting from this commit can check it against the node's log (KIP-320). Omitted: unknown.
   */
  leaderEpoch?: number;
}

/** A position: the offset of the next record and the leader epoch of the record before it (-1: unknown). */
interface Position {
  offset: number;
  leaderEpoch: number;
}

/** The same offset in the same leader epoch (an epoch not known, -1, is one value). */
function samePosition(a: Position | undefined, b: { offset: number; leaderEpoch?: number }): boolean {
  return a !== undefined && a.offset === b.offset && a.leaderEpoch === (b.leaderEpoch !== undefined && b.leaderEpoch >= 0 ? b.leaderEpoch : -1);
}

export interface AssignmentChange {
  gained: TopicPartition[];
  lost: TopicPartition[];
}

export interface GroupConsumerOptions<D extends ValueDecoding = 'buffer'> extends ConsumerOptions<D> {
  groupId: string;
  /** Topics this member subscribes to; the group spreads their partitions over its members. */
  topics?: string[];
  /**
   * And/or a topic pattern (`*` matches any run of characters): every topic matching it
   * that this client may consume, including topics created later.
   */
  topicPattern?: string;
  /** Commit positions on a timer, before giving a partition up, and on close. Default true. */
  autoCommit?: boolean;
  /** Default 5000, Kafka's auto.commit.interval.ms. */
  autoCommitIntervalMs?: number;
  /**
   * How long heartbeats may go unanswered (the node unreachable) before this member
   * assumes the group removed it: it drops its partitions, uncommitted, and joins again
   * once the node answers. Keep it at or below the node's session timeout. Default 45000.
   */
  sessionTimeoutMs?: number;
  /**
   * Called after each change of `assignment`. Lost partitions are not reported to the
   * group until it settles, so with autoCommit false this is where to commit() them.
   */
  onAssignmentChange?: (change: AssignmentChange) => void | Promise<void>;
}

/** The member as the group knows it. */
interface Membership {
  memberId: string;
  /** 0 to join; else the epoch of the last answer. */
  memberEpoch: number;
}

const HEARTBEAT_BACKOFF_MS_MAX = 1000;

function tpKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

export class GroupConsumer<D extends ValueDecoding = 'buffer'> {
  readonly groupId: string;
  private readonly topics: string[];
  private readonly topicPattern: string | undefined;
  private readonly autoCommit: boolean;
  private readonly autoCommitIntervalMs: number;
  private readonly sessionTimeoutMs: number;
  private readonly retryBackoffMs: number;
  private readonly onAssignmentChange: GroupConsumerOptions<D>['onAssignmentChange'];
  private readonly onDivergence: GroupConsumerOptions<D>['onDivergence'];
  private readonly autoOffsetReset: GroupConsumerOptions<D>['autoOffsetReset'];
  private readonly consumer: Consumer<D>;
  /** Times heartbeats, their backoff, the session timeout and auto-commit. */
  private readonly clock: Clock;

  private membership: Membership = { memberId: '', memberEpoch: 0 };
  /** Partitions we own and report to the group. */
  private readonly owned = new Map<string, TopicPartition>();
  /** Partitions being given up: no longer delivered, still committed by commit(). */
  private readonly revoking = new Map<string, TopicPartition>();
  /** Per partition, the offset after the last record handed to the app (or where it starts). */
  private readonly positions = new Map<string, Position>();
  /**
   * What the group last accepted, so an unchanged position is not committed again. With its
   * epoch: after a divergence the same offset can stand in a later epoch, and the commit of
   * the old one must be replaced, or every later owner would find it diverged again.
   */
  private readonly committed = new Map<string, Position>();
  private heartbeatIntervalMs = 5000;
  /** On the clock's monotonic time. */
  private lastAnsweredMs: number;
  private loop: Promise<void> | null = null;
  private wakeLoop: (() => void) | null = null;
  private autoCommitTimer: ClockTimer | null = null;
  private autoCommitting = false;
  private closed = false;
  private closing: Promise<void> | null = null;
  /** A failure the app must hear of (the node refused our heartbeat for good): thrown once. */
  private fatal: Error | null = null;
  /** A read waiting for a record, woken by a failure the app must hear of (see `untilFatal`). */
  private fatalWaiter: ((err: Error) => void) | null = null;

  constructor(
    private readonly client: Client,
    options: GroupConsumerOptions<D>,
  ) {
    const { groupId, topics = [], topicPattern, autoCommit, autoCommitIntervalMs, sessionTimeoutMs, onAssignmentChange, onDivergence, ...consumerOptions } = options;
    if (typeof groupId !== 'string' || groupId === '') throw new TributaryError(Errors.INVALID_CONFIG, 'groupId must be a non-empty string');
    if (!Array.isArray(topics) || topics.some((t) => typeof t !== 'string' || t === '')) {
      throw new TributaryError(Errors.INVALID_CONFIG, 'topics must be a list of topic names');
    }
    if (topicPattern !== undefined && !isTopicPattern(topicPattern)) {
      throw new TributaryError(Errors.INVALID_CONFIG, `topicPattern must be 1-249 of [A-Za-z0-9._-] and *, got ${JSON.stringify(topicPattern)}`);
    }
    if (topics.length === 0 && topicPattern === undefined) throw new TributaryError(Errors.INVALID_CONFIG, 'give topics, a topicPattern, or both');
    this.topicPattern = topicPattern;
    this.groupId = groupId;
    this.topics = [...new Set(topics)].sort();
    this.autoCommit = autoCommit ?? true;
    this.autoCommitIntervalMs = intOption('autoCommitIntervalMs', autoCommitIntervalMs, 5000, 1);
    this.sessionTimeoutMs = intOption('sessionTimeoutMs', sessionTimeoutMs, 45_000, 1);
    this.retryBackoffMs = intOption('retryBackoffMs', consumerOptions.retryBackoffMs, 100, 0);
    this.onAssignmentChange = onAssignmentChange;
    this.onDivergence = onDivergence;
    this.clock = consumerOptions.clock ?? client.clock;
    this.lastAnsweredMs = this.clock.monotonic();
    // validates autoOffsetReset
    this.consumer = new Consumer<D>(client, { ...consumerOptions, clock: this.clock, onDivergence: (d) => this.onDiverged(d) });
    this.autoOffsetReset = consumerOptions.autoOffsetReset ?? 'latest';
    this.start();
  }

  /** Joins the group and heartbeats from then on; the constructor calls it, and calling it again does nothing. */
  start(): void {
    if (this.closed) return;
    this.loop ??= this.heartbeatLoop().catch((err: unknown) => {
      this.setFatal(err as Error); // a bug in the loop must reach the app
    });
    if (this.autoCommit && this.autoCommitTimer === null) this.armAutoCommit();
  }

  /** The partitions this member owns now. */
  get assignment(): TopicPartition[] {
    return [...this.owned.values()].map((tp) => ({ ...tp }));
  }

  /** The member id the group gave us ('' before the first answer and after being dropped). */
  get memberId(): string {
    return this.membership.memberId;
  }

  /**
   * The offset after the last record handed to the app, or where the partition starts (its
   * committed offset, or where autoOffsetReset put it); null if not known yet. Known by the
   * time onAssignmentChange reports the partition gained (unless the node could not say
   * where autoOffsetReset puts it: the Consumer then asks again itself), and moved only as
   * records are handed out.
   */
  position(topic: string, partition: number): number | null {
    const key = tpKey(topic, partition);
    if (!this.owned.has(key) && !this.revoking.has(key)) return this.positions.get(key)?.offset ?? null;
    return this.validPosition(key, { topic, partition })?.offset ?? null;
  }

  /** The leader epoch of the record before position() (what a commit of it carries); -1 when unknown. */
  positionLeaderEpoch(topic: string, partition: number): number {
    const key = tpKey(topic, partition);
    if (!this.owned.has(key) && !this.revoking.has(key)) return this.positions.get(key)?.leaderEpoch ?? -1;
    return this.validPosition(key, { topic, partition })?.leaderEpoch ?? -1;
  }

  /**
   * Commits positions: by default those of the partitions owned (and of those being given
   * up), the offset after the last record handed to the app, or where the partition starts
   * when nothing was handed out yet. An app that has not finished with every record it was
   * handed (autoCommit false) gives the offsets itself, as Kafka's commitSync(offsets).
   * Throws the first partition's error.
   */
  async commit(offsets?: readonly CommitOffset[]): Promise<void> {
    let wanted: readonly CommitOffset[];
    if (offsets !== undefined) wanted = offsets;
    else {
      const all: CommitOffset[] = [];
      for (const [key, tp] of [...this.owned, ...this.revoking]) {
        const position = this.validPosition(key, tp);
        if (position !== null) all.push({ topic: tp.topic, partition: tp.partition, offset: position.offset, leaderEpoch: position.leaderEpoch });
      }
      wanted = all;
    }
    // An unchanged position (offset and epoch) is not committed again.
    const toCommit = wanted
      .filter((o) => !samePosition(this.committed.get(tpKey(o.topic, o.partition)), o))
      .map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset, ...(o.leaderEpoch !== undefined && o.leaderEpoch >= 0 ? { leaderEpoch: o.leaderEpoch } : {}) }));
    if (toCommit.length === 0) return;
    // KIP-848: a member commits at its epoch, so a zombie of an older epoch cannot move
    // the group's positions; without a member id (not joined yet, or dropped) the node
    // accepts the commit only while the group has no live members.
    const { memberId, memberEpoch } = this.membership;
    const member = memberId === '' ? {} : { memberId, memberEpoch };
    const response = await this.client.request(Kind.OffsetCommit, { groupId: this.groupId, ...member, offsets: toCommit });
    let first: TributaryError | null = null;
    toCommit.forEach((o, i) => {
      const r = response.partitions[i];
      if (r !== undefined && r.error === Errors.NONE.code) this.committed.set(tpKey(o.topic, o.partition), { offset: o.offset, leaderEpoch: o.leaderEpoch ?? -1 });
      else first ??= r === undefined ? new TributaryError(Errors.UNKNOWN, `no answer for ${o.topic}/${o.partition}`) : wireError(r.error, r.message);
    });
    if (first !== null) throw first;
  }

  /** Where the partition's next record is: handed out past, or the Consumer's start or reset position. */
  private validPosition(key: string, tp: TopicPartition): Position | null {
    const handedOut = this.positions.get(key);
    if (handedOut !== undefined) return handedOut;
    const offset = this.consumer.validPosition(tp.topic, tp.partition);
    return offset === null ? null : { offset, leaderEpoch: this.consumer.positionLeaderEpoch(tp.topic, tp.partition) };
  }

  /** Moves the position past a record handed out; the hot path: no object per record. */
  private advance(key: string, record: ConsumerRecord<unknown>): void {
    const p = this.positions.get(key);
    if (p === undefined) this.positions.set(key, { offset: record.offset + 1, leaderEpoch: record.leaderEpoch });
    else {
      p.offset = record.offset + 1;
      p.leaderEpoch = record.leaderEpoch;
    }
  }

  /**
   * The Consumer found a position diverged (KIP-320) and moved it: ours follows, so that
   * commits do not keep the offset past the node's log, where the records written since
   * would be skipped. Then the app hears of it.
   */
  private async onDiverged(d: LogDivergence): Promise<void> {
    const key = tpKey(d.topic, d.partition);
    // With autoOffsetReset 'none' the Consumer failed the partition where it was: the app seeks.
    if (this.owned.has(key) && this.autoOffsetReset !== 'none') {
      if (d.divergedAt >= 0) this.positions.set(key, { offset: d.divergedAt, leaderEpoch: d.leaderEpoch });
      else this.positions.delete(key); // the Consumer's reset position, once it has one
    }
    await this.onDivergence?.(d);
  }

  /** Records one at a time; the position moves past each as it is given. */
  [Symbol.asyncIterator](): AsyncIterator<ConsumerRecord<DecodedValue<D>>> {
    this.start();
    const inner = this.consumer[Symbol.asyncIterator]();
    const pending: { read: Promise<IteratorResult<ConsumerRecord<DecodedValue<D>>>> | null } = { read: null };
    const next = async (): Promise<IteratorResult<ConsumerRecord<DecodedValue<D>>>> => {
      for (;;) {
        const r = await this.untilFatal(() => inner.next(), pending);
        if (r.done) return r;
        const key = tpKey(r.value.topic, r.value.partition);
        if (!this.owned.has(key)) continue; // given up while it was on its way: not ours to hand out
        this.advance(key, r.value);
        return r;
      }
    };
    return { next, return: () => Promise.resolve({ value: undefined, done: true }) };
  }

  /** Records in arrays, each of one partition; the position moves past each array as it is given. */
  batches(): AsyncIterable<ConsumerRecord<DecodedValue<D>>[]> {
    this.start();
    const inner = this.consumer.batches()[Symbol.asyncIterator]();
    const pending: { read: Promise<IteratorResult<ConsumerRecord<DecodedValue<D>>[]>> | null } = { read: null };
    const next = async (): Promise<IteratorResult<ConsumerRecord<DecodedValue<D>>[]>> => {
      for (;;) {
        const r = await this.untilFatal(() => inner.next(), pending);
        if (r.done) return r;
        const records = r.value.filter((x) => this.owned.has(tpKey(x.topic, x.partition)));
        if (records.length === 0) continue;
        for (const x of records) this.advance(tpKey(x.topic, x.partition), x);
        return { value: records, done: false };
      }
    };
    return { [Symbol.asyncIterator]: () => ({ next, return: () => Promise.resolve({ value: undefined, done: true }) }) };
  }

  /**
   * Stops delivery, commits (with autoCommit), leaves the group so its partitions move at
   * once, and closes the consumer. The client stays open.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.autoCommitTimer?.cancel();
      this.wakeLoop?.();
      await this.loop;
      // Closing the Consumer first ends delivery, so no record is handed out past the commit.
      await this.consumer.close();
      if (this.autoCommit) await this.commit().catch(() => undefined); // uncommitted is read again: at-least-once
      const lost = this.assignment;
      this.owned.clear();
      this.revoking.clear();
      if (this.membership.memberId !== '') {
        const leave = { groupId: this.groupId, memberId: this.membership.memberId, memberEpoch: -1, ownedPartitions: [] };
        // Without the leave the group frees our partitions after its session timeout instead.
        await this.client.request(Kind.ConsumerGroupHeartbeat, leave).catch(() => undefined);
      }
      this.membership = { memberId: '', memberEpoch: 0 };
      if (lost.length > 0) await this.notify({ gained: [], lost });
    })();
    return this.closing;
  }

  // -------------------------------------------------------------------------------------
  // Membership.

  private async heartbeatLoop(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      let answer: ConsumerGroupHeartbeatResponse;
      try {
        answer = await this.client.request(Kind.ConsumerGroupHeartbeat, this.heartbeatBody());
      } catch (err) {
        if (this.closed) return;
        const next = await this.onHeartbeatFailed(err);
        if (next === 'stop') return;
        if (next === 'retry') await this.sleep(this.backoffMs(++failures));
        continue;
      }
      if (this.closed) return;
      failures = 0;
      this.lastAnsweredMs = this.clock.monotonic();
      this.membership = { memberId: answer.memberId, memberEpoch: answer.memberEpoch };
      if (Number.isInteger(answer.heartbeatIntervalMs) && answer.heartbeatIntervalMs > 0) this.heartbeatIntervalMs = answer.heartbeatIntervalMs;
      // When what we own changed, the next heartbeat goes at once: the partitions we gave
      // up move to their new owner now, not an interval later.
      if (!(await this.reconcile(answer.assignment))) await this.sleep(this.heartbeatIntervalMs);
    }
  }

  private heartbeatBody() {
    const byTopic = new Map<string, number[]>();
    for (const tp of this.owned.values()) {
      let list = byTopic.get(tp.topic);
      if (!list) byTopic.set(tp.topic, (list = []));
      list.push(tp.partition);
    }
    const ownedPartitions = [...byTopic].map(([topic, partitions]) => ({ topic, partitions: partitions.sort((a, b) => a - b) }));
    const { memberId, memberEpoch } = this.membership;
    return memberEpoch === 0
      ? { groupId: this.groupId, memberId: '', memberEpoch: 0, subscribedTopics: this.topics, subscribedTopicPattern: this.topicPattern, ownedPartitions }
      : { groupId: this.groupId, memberId, memberEpoch, ownedPartitions };
  }

  /** What the loop does after a failed heartbeat: join again at once, retry after a backoff, or end. */
  private async onHeartbeatFailed(err: unknown): Promise<'rejoin' | 'retry' | 'stop'> {
    const te = err instanceof TributaryError ? err : null;
    if (te !== null && (te.is(Errors.UNKNOWN_MEMBER_ID) || te.is(Errors.FENCED_MEMBER_EPOCH))) {
      // The group has moved on without us: our partitions may be someone else's already, so
      // they are not ours to commit. Drop them and join again as a new member.
      await this.dropAll();
      return 'rejoin';
    }
    if (te !== null && te.is(Errors.CLIENT_CLOSED)) {
      await this.dropAll();
      return 'stop';
    }
    if (te !== null && te.retriable) {
      // The client reconnects; a heartbeat changes nothing until answered, so ask again.
      // Past the session timeout the group has removed us: stop processing what we owned.
      if (this.clock.monotonic() - this.lastAnsweredMs > this.sessionTimeoutMs) await this.dropAll();
      return 'retry';
    }
    // Refused for good (UNAUTHORIZED, INVALID_REQUEST): the app hears of it, and we keep
    // trying at the longest backoff, owning nothing, in case it was put right on the node.
    this.setFatal(err as Error);
    await this.dropAll();
    return 'retry';
  }

  /** Everything owned is lost, uncommitted; the next heartbeat joins from scratch. */
  private async dropAll(): Promise<void> {
    this.membership = { memberId: '', memberEpoch: 0 };
    const lost = this.assignment;
    if (lost.length === 0) return;
    this.owned.clear();
    this.revoking.clear();
    for (const tp of lost) {
      const key = tpKey(tp.topic, tp.partition);
      this.positions.delete(key);
      this.committed.delete(key);
    }
    if (!this.closed) this.consumer.assign([]);
    await this.notify({ gained: [], lost });
  }

  /**
   * Applies an answer: gives up what is no longer ours (committing it first), takes what is
   * new at its committed offset. Returns whether what we report changed.
   */
  private async reconcile(assignment: ConsumerGroupHeartbeatResponse['assignment']): Promise<boolean> {
    const target = new Map<string, TopicPartition>();
    for (const a of assignment ?? []) for (const partition of a.partitions) target.set(tpKey(a.topic, partition), { topic: a.topic, partition });
    const lost = [...this.owned].filter(([key]) => !target.has(key));
    const gainedAll = [...target].filter(([key]) => !this.owned.has(key));
    if (lost.length === 0 && gainedAll.length === 0) return false;

    // Stop delivering what we lose before anything else: from here no record of it reaches the app.
    for (const [key, tp] of lost) {
      // The Consumer forgets the partition below; a reset position it resolved is still committed.
      const position = this.validPosition(key, tp);
      if (position !== null) this.positions.set(key, { ...position });
      this.owned.delete(key);
      this.revoking.set(key, tp);
    }
    if (lost.length > 0) this.consumer.assign(this.assignmentOfConsumer());
    if (this.autoCommit && lost.length > 0) await this.commit().catch(() => undefined); // uncommitted is read again

    const committedAt = gainedAll.length > 0 ? await this.committedOffsets(gainedAll.map(([, tp]) => tp)) : new Map<string, Position>();
    const gained = gainedAll.filter(([key]) => committedAt.has(key));
    // Resolved before delivery starts, so the position is where the partition starts until
    // a record is handed out, not wherever the Consumer's own reset and prefetch got to.
    const resets = await this.resetOffsets(gained.filter(([key]) => (committedAt.get(key) as Position).offset < 0).map(([, tp]) => tp));
    const starts = new Map<string, Position>();
    for (const [key, tp] of gained) {
      this.owned.set(key, tp);
      const committed = committedAt.get(key) as Position;
      const reset = resets.get(key);
      // A reset position's epoch is unknown: it is not validated (as in Kafka), a committed one's is.
      const start = committed.offset >= 0 ? committed : reset === undefined ? undefined : { offset: reset, leaderEpoch: -1 };
      if (start !== undefined) {
        this.positions.set(key, { ...start });
        starts.set(key, start);
      } else this.positions.delete(key);
      if (committed.offset >= 0) this.committed.set(key, { ...committed });
      else this.committed.delete(key);
    }
    if (gained.length > 0 && !this.closed) this.consumer.assign(this.assignmentOfConsumer(starts));

    await this.notify({ gained: gained.map(([, tp]) => ({ ...tp })), lost: lost.map(([, tp]) => ({ ...tp })) });
    for (const [key] of lost) {
      this.revoking.delete(key);
      this.positions.delete(key);
      this.committed.delete(key);
    }
    return true;
  }

  /** The owned partitions as the Consumer takes them; those in `starts` at their start (and its epoch, to be validated). */
  private assignmentOfConsumer(starts?: Map<string, Position>): PartitionAssignment[] {
    return [...this.owned].map(([key, tp]) => {
      const start = starts?.get(key);
      if (start === undefined) return { ...tp };
      return start.leaderEpoch >= 0 ? { ...tp, offset: start.offset, leaderEpoch: start.leaderEpoch } : { ...tp, offset: start.offset };
    });
  }

  /**
   * OffsetFetch: each partition's committed offset and its leader epoch, -1 for none (a node
   * older than KIP-320 answers no epoch). Partitions it could not answer for are left out:
   * they are not taken now, and the group offers them again.
   */
  private async committedOffsets(partitions: TopicPartition[]): Promise<Map<string, Position>> {
    const out = new Map<string, Position>();
    let response;
    try {
      response = await this.client.request(Kind.OffsetFetch, { groupId: this.groupId, partitions });
    } catch {
      return out;
    }
    for (const r of response.partitions ?? []) {
      if (r.error !== Errors.NONE.code) continue;
      const leaderEpoch = Number.isInteger(r.leaderEpoch) && r.leaderEpoch >= 0 ? r.leaderEpoch : -1;
      out.set(tpKey(r.topic, r.partition), { offset: r.offset, leaderEpoch });
    }
    return out;
  }

  /**
   * ListOffsets: where autoOffsetReset puts each partition. Partitions it could not answer
   * for are left out: the Consumer resolves their reset itself, as it reads them.
   */
  private async resetOffsets(partitions: TopicPartition[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    if (partitions.length === 0 || this.autoOffsetReset === 'none') return out;
    const timestamp = this.autoOffsetReset === 'earliest' ? EARLIEST_TIMESTAMP : LATEST_TIMESTAMP;
    let response;
    try {
      response = await this.client.request(Kind.ListOffsets, { partitions: partitions.map((tp) => ({ ...tp, timestamp })) });
    } catch {
      return out;
    }
    for (const r of response.partitions ?? []) {
      if (r.error === Errors.NONE.code && r.offset >= 0) out.set(tpKey(r.topic, r.partition), r.offset);
    }
    return out;
  }

  private async notify(change: AssignmentChange): Promise<void> {
    if (this.onAssignmentChange === undefined) return;
    try {
      await this.onAssignmentChange(change);
    } catch (err) {
      this.setFatal(err as Error); // the app's own failure: it hears of it on its next read
    }
  }

  /** Every autoCommitIntervalMs from start() until close(), as setInterval would, on our clock. */
  private armAutoCommit(): void {
    this.autoCommitTimer = this.clock.setTimeout(() => {
      if (this.closed) return;
      this.armAutoCommit();
      void this.autoCommitOnce();
    }, this.autoCommitIntervalMs);
  }

  private async autoCommitOnce(): Promise<void> {
    if (this.autoCommitting || this.closed) return;
    this.autoCommitting = true;
    try {
      await this.commit();
    } catch {
      // Retried at the next tick; a lost commit only means records are read again.
    } finally {
      this.autoCommitting = false;
    }
  }

  private setFatal(err: Error): void {
    this.fatal = err;
    this.fatalWaiter?.(err);
  }

  /**
   * `read` (the inner consumer's next read), or the failure the app must hear of if one
   * comes first: a member the node refused owns nothing, so a read waiting for its
   * records would wait for ever. The read left waiting is kept for the next call.
   */
  private untilFatal<T>(read: () => Promise<T>, pending: { read: Promise<T> | null }): Promise<T> {
    this.throwFatal();
    const inner = (pending.read ??= read().finally(() => {
      if (pending.read === inner) pending.read = null;
    }));
    return new Promise<T>((resolve, reject) => {
      this.fatalWaiter = () => {
        this.fatalWaiter = null;
        try {
          this.throwFatal();
        } catch (err) {
          reject(err as Error);
        }
      };
      inner.then(
        (value) => {
          this.fatalWaiter = null;
          resolve(value);
        },
        (err: unknown) => {
          this.fatalWaiter = null;
          reject(err as Error);
        },
      );
    });
  }

  private throwFatal(): void {
    if (this.fatal === null) return;
    const err = this.fatal;
    this.fatal = null;
    throw err;
  }

  private backoffMs(failures: number): number {
    return Math.min(HEARTBEAT_BACKOFF_MS_MAX, Math.max(1, this.retryBackoffMs) * 2 ** Math.max(0, failures - 1));
  }

  /** Waits `ms`, or until close() wakes the loop. */
  private sleep(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.wakeLoop = null;
        resolve();
      }, ms);
      this.wakeLoop = () => {
        timer.cancel();
        this.wakeLoop = null;
        resolve();
      };
    });
  }
}

function intOption(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) throw new TributaryError(Errors.INVALID_CONFIG, `${name} must be an integer of at least ${min}, got ${String(value)}`);
  return value;
}
