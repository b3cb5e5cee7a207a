// The consumer group coordinator, in the KIP-848 model: members heartbeat their
// subscription and the partitions they own; the coordinator keeps a target assignment for
// the group and answers each member with what it may own now.
//
//   target     recomputed whenever membership or subscriptions change (the group epoch
//              moves): per topic, its partitions spread over the members subscribed to it,
//              as evenly as possible, each member keeping what it already had when that
//              fits (sticky), so a change moves as few partitions as it can.
//   handed out cooperatively: a member is given a partition of its target only once no
//              other member reports owning it. A member that loses a partition simply
//              no longer finds it in its answer; it stops processing it, commits, and stops
//              reporting it, and then the new owner gets it. So no partition is ever owned
//              by two live members.
//   liveness   a member that has not heartbeated for sessionTimeoutMs is removed (its
//              partitions are then free), as is one that leaves (memberEpoch -1), and one
//              that still owns partitions it was to give up after rebalanceTimeoutMs
//              (KIP-848's rebalance timeout): it is fenced, so a member cannot keep a
//              partition from its new owner by reporting it for ever.
//   fencing    a heartbeat with a stale member epoch answers FENCED_MEMBER_EPOCH, an
//              unknown member id UNKNOWN_MEMBER_ID: the member rejoins from scratch.
//              OffsetCommit is fenced the same way (validateCommit): a member commits at
//              its epoch; a commit from outside the group only while it has no members.
//   ownership  a member id belongs to the principal that joined with it; another
//              principal using it is refused. What a member reports owning counts only
//              where it was handed the partition (or owned it already) and may consume
//              it: a member cannot hold on to partitions it was never given, which would
//              keep them from the member that should have them.
//   bounds     live members per principal and node-wide (limits.groupMembersPerPrincipalMax,
//              limits.groupMembersMax), members per group, and the bytes of one member's
//              subscription.
//
// Membership lives in memory: after a node restart members get UNKNOWN_MEMBER_ID and join
// again (their committed offsets are durable in __consumer_offsets).

import { systemClock } from '../../protocol/clock.js';
import { randomUUID } from 'node:crypto';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { topicAllowed } from '../../protocol/credential.js';
import { ANONYMOUS } from '../auth/acl.js';
import type { ConsumerGroupHeartbeatResponse } from '../../protocol/frames.js';

export interface CoordinatorOptions {
  /** Partition count of a topic, or undefined if it does not exist. */
  partitionsOf(topic: string): number | undefined;
  /** Every topic name (for pattern subscriptions); internal topics are never matched. */
  topicNames?(): string[];
  now?: () => number;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** How long a member may keep owning partitions no longer in its target; default the session timeout. */
  rebalanceTimeoutMs?: number;
  /** Live members one principal may have joined (limits.groupMembersPerPrincipalMax). */
  membersPerPrincipalMax?: number;
  /** Live members node-wide (limits.groupMembersMax); it also bounds the groups. */
  membersMax?: number;
  /** Told which limit a join reached (its config key), for the metrics. */
  onLimitReached?: (limit: 'groupMembersPerPrincipalMax' | 'groupMembersMax') => void;
}

export const SESSION_TIMEOUT_MS_DEFAULT = 45_000;
export const HEARTBEAT_INTERVAL_MS_DEFAULT = 5_000;
const MEMBERS_PER_GROUP_MAX = 1000;
/** How often every group is swept for silent members (see expireSometimes). */
const EXPIRY_SWEEP_MS = 1000;
/** Characters of topic names one member subscribes to by name: what it can make the node keep. */
export const SUBSCRIPTION_CHARS_MAX = 16 * 1024;

interface Member {
  id: string;
  /** The principal that joined with this id (Principal.key): only it may use the id. */
  owner: string;
  /** Raised each time the member's target changes; the member echoes it. */
  epoch: number;
  /** The epoch last sent to the member: its next heartbeat may carry this one or the current. */
  answered: number;
  topics: string[];
  /** A topic pattern, with the topics it matched at the last look and what the member may read. */
  pattern?: { glob: string; allowed: (topic: string) => boolean };
  /** Explicit topics and, resolved, the pattern's: what the assignment is computed from. */
  resolved: string[];
  /** "topic\0partition" keys the member last reported owning. */
  owned: Set<string>;
  /**
   * What its last answer gave it: it may own these from the moment the answer arrives, so
   * they count as its own until its next heartbeat says otherwise.
   */
  given: Set<string>;
  target: Set<string>;
  lastSeenMs: number;
  /** Since when it has owned partitions outside its target (null: it owns none). */
  revokingSinceMs: number | null;
}

interface Group {
  id: string;
  epoch: number;
  members: Map<string, Member>;
}

const key = (topic: string, partition: number): string => `${topic}\u0000${partition}`;
const split = (k: string): [string, number] => {
  const i = k.lastIndexOf('\u0000');
  return [k.slice(0, i), Number(k.slice(i + 1))];
};

export interface HeartbeatInput {
  groupId: string;
  /** Who is asking (Principal.key). */
  principal: string;
  memberId: string;
  memberEpoch: number;
  subscribedTopics?: string[];
  subscribedTopicPattern?: string;
  /** Which topics the member's principal may consume: a pattern never reaches others. */
  mayConsume?: (topic: string) => boolean;
  ownedPartitions: { topic: string; partitions: number[] }[];
}

export class GroupCoordinator {
  private readonly groups = new Map<string, Group>();
  /** Live members per principal (Principal.key), for its bound. */
  private readonly membersByPrincipal = new Map<string, number>();
  private memberTotal = 0;
  private sweptAtMs = Number.NEGATIVE_INFINITY;
  private readonly now: () => number;
  readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly rebalanceTimeoutMs: number;
  private readonly membersPerPrincipalMax: number;
  private readonly membersMax: number;

  constructor(private readonly options: CoordinatorOptions) {
    this.now = options.now ?? systemClock.now;
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? SESSION_TIMEOUT_MS_DEFAULT;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS_DEFAULT;
    this.rebalanceTimeoutMs = options.rebalanceTimeoutMs ?? this.sessionTimeoutMs;
    this.membersPerPrincipalMax = options.membersPerPrincipalMax ?? Number.POSITIVE_INFINITY;
    this.membersMax = options.membersMax ?? Number.POSITIVE_INFINITY;
  }

  /** Live members node-wide. */
  get liveMembers(): number {
    return this.memberTotal;
  }

  /** Live members `principal` has joined. */
  membersOf(principal: string): number {
    return this.membersByPrincipal.get(principal) ?? 0;
  }

  private addMember(group: Group, member: Member): void {
    group.members.set(member.id, member);
    this.memberTotal++;
    this.membersByPrincipal.set(member.owner, this.membersOf(member.owner) + 1);
  }

  private removeMember(group: Group, member: Member): void {
    if (!group.members.delete(member.id)) return;
    this.memberTotal--;
    const left = this.membersOf(member.owner) - 1;
    if (left > 0) this.membersByPrincipal.set(member.owner, left);
    else this.membersByPrincipal.delete(member.owner);
  }

  /** A new member may join: the per-principal and node-wide bounds hold. */
  private checkJoin(group: Group | undefined, principal: string): void {
    if (group && group.members.size >= MEMBERS_PER_GROUP_MAX) {
      throw new TributaryError(Errors.RESOURCE_LIMIT, `group ${group.id} has ${MEMBERS_PER_GROUP_MAX} members already`);
    }
    // Anonymous clients (dev mode, loopback only) are one local user: bounded node-wide only.
    if (principal !== ANONYMOUS.key && this.membersOf(principal) >= this.membersPerPrincipalMax) {
      this.options.onLimitReached?.('groupMembersPerPrincipalMax');
      throw new TributaryError(Errors.RESOURCE_LIMIT, `this principal has ${this.membersPerPrincipalMax} live group members already (limits.groupMembersPerPrincipalMax); leave a group first`);
    }
    if (this.memberTotal >= this.membersMax) {
      this.options.onLimitReached?.('groupMembersMax');
      throw new TributaryError(Errors.RESOURCE_LIMIT, `this node has ${this.membersMax} live group members already (limits.groupMembersMax)`);
    }
  }

  /** The member `memberId` of `groupId` as `principal` may use it. */
  private memberFor(groupId: string, memberId: string, principal: string): { group: Group; member: Member } {
    const group = this.groups.get(groupId);
    const member = group?.members.get(memberId);
    if (!group || !member) throw new TributaryError(Errors.UNKNOWN_MEMBER_ID, `group ${groupId} has no member ${memberId}`);
    if (member.owner !== principal) throw new TributaryError(Errors.UNAUTHORIZED, `member ${memberId} of group ${groupId} belongs to another principal`);
    return { group, member };
  }

  /**
   * Whether an OffsetCommit may write the group's positions. While the group has live
   * members only one of them may, at its current epoch (or the one it was last told, as a
   * heartbeat may); a commit from outside the group (reset-offsets, a consumer with manual
   * assignment) only while it has none. A member the node forgot (its session ran out, or
   * the node restarted) commits as an outsider: accepted while the group is empty.
   */
  validateCommit(groupId: string, memberId: string | undefined, memberEpoch: number | undefined, principal: string): void {
    const named = this.groups.get(groupId);
    if (named) this.expireGroup(named, this.now());
    const group = this.groups.get(groupId);
    if (!group || group.members.size === 0) return;
    if (memberId === undefined || memberId === '') {
      throw new TributaryError(
        Errors.NON_EMPTY_GROUP,
        `group ${groupId} has ${group.members.size} live member${group.members.size === 1 ? '' : 's'}; commits from outside the group are accepted only while it has none`,
      );
    }
    const { member } = this.memberFor(groupId, memberId, principal);
    const epoch = memberEpoch ?? -1;
    if (epoch === member.epoch || epoch === member.answered) return;
    if (epoch > member.epoch) throw new TributaryError(Errors.FENCED_MEMBER_EPOCH, `member ${memberId} is at epoch ${member.epoch}, not ${epoch}`);
    throw new TributaryError(Errors.STALE_MEMBER_EPOCH, `member ${memberId} committed at epoch ${epoch}; it is at ${member.epoch}: heartbeat, then commit again`);
  }

  heartbeat(input: HeartbeatInput): ConsumerGroupHeartbeatResponse {
    const now = this.now();
    this.expireSometimes(now);
    let group = this.groups.get(input.groupId);
    if (group) this.expireGroup(group, now);
    group = this.groups.get(input.groupId);
    if (input.memberEpoch === -1) {
      // Leaving: its partitions are free at once.
      const member = group?.members.get(input.memberId);
      if (group && member) {
        if (member.owner !== input.principal) throw new TributaryError(Errors.UNAUTHORIZED, `member ${member.id} of group ${group.id} belongs to another principal`);
        this.removeMember(group, member);
        this.rebalance(group);
        if (group.members.size === 0) this.groups.delete(group.id);
      }
      return { error: Errors.NONE.code, memberId: input.memberId, memberEpoch: -1, heartbeatIntervalMs: this.heartbeatIntervalMs, assignment: [] };
    }
    checkSubscriptionSize(input.subscribedTopics);
    let member: Member | undefined;
    if (input.memberId === '' && input.memberEpoch === 0) {
      this.checkJoin(group, input.principal);
      if (!group) {
        group = { id: input.groupId, epoch: 0, members: new Map() };
        this.groups.set(group.id, group);
      }
      member = { id: randomUUID(), owner: input.principal, epoch: 0, answered: 0, topics: [], resolved: [], owned: new Set(), given: new Set(), target: new Set(), lastSeenMs: now, revokingSinceMs: null };
      this.addMember(group, member);
      member.topics = normalizeTopics(input.subscribedTopics ?? []);
      if (input.subscribedTopicPattern !== undefined) member.pattern = { glob: input.subscribedTopicPattern, allowed: input.mayConsume ?? (() => true) };
      this.resolve(member);
      this.rebalance(group);
    } else {
      ({ group, member } = this.memberFor(input.groupId, input.memberId, input.principal));
      // The group may have moved since the last answer (another member joined): the epoch
      // the member was told is still its own. Anything older is a zombie's.
      if (input.memberEpoch !== member.epoch && input.memberEpoch !== member.answered) {
        throw new TributaryError(Errors.FENCED_MEMBER_EPOCH, `member ${member.id} is at epoch ${member.epoch}, not ${input.memberEpoch}`);
      }
      member.lastSeenMs = now;
      if (input.subscribedTopics !== undefined) {
        const topics = normalizeTopics(input.subscribedTopics);
        if (topics.join('\u0000') !== member.topics.join('\u0000')) {
          member.topics = topics;
          this.resolve(member);
          this.rebalance(group);
        }
      }
    }
    // A pattern takes in topics created since the last look.
    let grown = false;
    for (const m of group.members.values()) if (m.pattern && this.resolve(m)) grown = true;
    if (grown) this.rebalance(group);
    member.owned = this.acceptOwned(member, input);
    this.checkRevoking(group, member, now);
    member.answered = member.epoch;
    return { error: Errors.NONE.code, memberId: member.id, memberEpoch: member.epoch, heartbeatIntervalMs: this.heartbeatIntervalMs, assignment: this.handOut(group as Group, member) };
  }

  /**
   * What a member reports owning, as far as it may: partitions it was handed (or already
   * owned) and may consume. The rest is ignored, so a member cannot keep another's
   * partitions from being handed out by claiming them.
   */
  private acceptOwned(member: Member, input: HeartbeatInput): Set<string> {
    const mayConsume = input.mayConsume ?? (() => true);
    const accepted = new Set<string>();
    for (const o of input.ownedPartitions) {
      if (!mayConsume(o.topic)) continue;
      for (const p of o.partitions) {
        const k = key(o.topic, p);
        if (member.given.has(k) || member.owned.has(k)) accepted.add(k);
      }
    }
    return accepted;
  }

  /**
   * A member that still owns partitions outside its target past the rebalance timeout is
   * fenced: removed, so that its partitions go to their new owners, and told to rejoin.
   */
  private checkRevoking(group: Group, member: Member, now: number): void {
    let holding = false;
    for (const k of member.owned) {
      if (!member.target.has(k)) {
        holding = true;
        break;
      }
    }
    if (!holding) {
      member.revokingSinceMs = null;
      return;
    }
    member.revokingSinceMs ??= now;
    if (now - member.revokingSinceMs <= this.rebalanceTimeoutMs) return;
    this.removeMember(group, member);
    this.rebalance(group);
    if (group.members.size === 0) this.groups.delete(group.id);
    throw new TributaryError(Errors.FENCED_MEMBER_EPOCH, `member ${member.id} kept partitions it was to give up for more than ${this.rebalanceTimeoutMs} ms; join again`);
  }

  /** What `member` may own now: its target, less what another member still owns. */
  private handOut(group: Group, member: Member): { topic: string; partitions: number[] }[] {
    const ownedByOthers = new Set<string>();
    for (const m of group.members.values()) {
      if (m === member) continue;
      for (const k of m.owned) ownedByOthers.add(k);
      for (const k of m.given) ownedByOthers.add(k);
    }
    const byTopic = new Map<string, number[]>();
    for (const k of member.target) {
      if (ownedByOthers.has(k)) continue;
      const [topic, partition] = split(k);
      let list = byTopic.get(topic);
      if (!list) byTopic.set(topic, (list = []));
      list.push(partition);
    }
    member.given = new Set([...byTopic].flatMap(([topic, partitions]) => partitions.map((p) => key(topic, p))));
    return [...byTopic].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([topic, partitions]) => ({ topic, partitions: partitions.sort((a, b) => a - b) }));
  }

  /** Recomputes every member's target: sticky and balanced per topic. */
  private rebalance(group: Group): void {
    group.epoch++;
    const previous = new Map([...group.members.values()].map((m) => [m.id, m.target]));
    const next = new Map<string, Set<string>>([...group.members.keys()].map((id) => [id, new Set<string>()]));
    const topics = new Set([...group.members.values()].flatMap((m) => m.resolved));
    for (const topic of [...topics].sort()) {
      const count = this.options.partitionsOf(topic);
      if (count === undefined) continue;
      const subscribers = [...group.members.values()].filter((m) => m.resolved.includes(topic)).sort((a, b) => (a.id < b.id ? -1 : 1));
      const base = Math.floor(count / subscribers.length);
      let extra = count % subscribers.length;
      // What each subscriber held of this topic before, still within its partition count.
      const held = new Map<string, number[]>();
      for (const m of subscribers) {
        held.set(m.id, [...(previous.get(m.id) ?? [])].map(split).filter(([t, p]) => t === topic && p < count).map(([, p]) => p));
      }
      // Members already holding more get the extra slots first, so fewer partitions move.
      const quota = new Map<string, number>();
      for (const m of [...subscribers].sort((a, b) => (held.get(b.id) as number[]).length - (held.get(a.id) as number[]).length)) {
        quota.set(m.id, base + (extra > 0 ? 1 : 0));
        if (extra > 0) extra--;
      }
      const taken = new Set<number>();
      const given = new Map<string, number>();
      for (const m of subscribers) {
        let n = 0;
        for (const p of held.get(m.id) as number[]) {
          if (n >= (quota.get(m.id) as number)) break;
          if (taken.has(p)) continue;
          (next.get(m.id) as Set<string>).add(key(topic, p));
          taken.add(p);
          n++;
        }
        given.set(m.id, n);
      }
      let p = 0;
      for (const m of subscribers) {
        for (let n = given.get(m.id) as number; n < (quota.get(m.id) as number); n++) {
          while (taken.has(p)) p++;
          (next.get(m.id) as Set<string>).add(key(topic, p));
          taken.add(p);
        }
      }
    }
    for (const m of group.members.values()) {
      const target = next.get(m.id) as Set<string>;
      if (!sameSet(target, m.target)) {
        m.target = target;
        m.epoch = group.epoch;
      }
    }
  }

  /** Recomputes the member's resolved topics; true when they changed. */
  private resolve(member: Member): boolean {
    const matched = member.pattern
      ? (this.options.topicNames?.() ?? []).filter((t) => !t.startsWith('__') && topicAllowed([member.pattern!.glob], t) && member.pattern!.allowed(t))
      : [];
    const resolved = normalizeTopics([...member.topics, ...matched]);
    if (resolved.join('\u0000') === member.resolved.join('\u0000')) return false;
    member.resolved = resolved;
    return true;
  }

  /**
   * Every group is swept at most once a second, not at every heartbeat: with thousands of
   * members that walk would cost more than the heartbeat. The heartbeat's own group is
   * swept each time.
   */
  private expireSometimes(now: number): void {
    if (now - this.sweptAtMs < EXPIRY_SWEEP_MS && now >= this.sweptAtMs) return;
    this.sweptAtMs = now;
    this.expire(now);
  }

  /** Removes members silent for longer than the session timeout. */
  expire(now = this.now()): void {
    for (const group of this.groups.values()) this.expireGroup(group, now);
  }

  private expireGroup(group: Group, now: number): void {
    let changed = false;
    for (const m of group.members.values()) {
      if (now - m.lastSeenMs > this.sessionTimeoutMs) {
        this.removeMember(group, m);
        changed = true;
      }
    }
    if (changed) this.rebalance(group);
    if (group.members.size === 0) this.groups.delete(group.id);
  }

  /** For `groups describe`: members with their subscription, target and what they own. */
  describe(groupId: string): { groupId: string; epoch: number; members: { memberId: string; memberEpoch: number; topics: string[]; target: string[]; owned: string[] }[] } | undefined {
    const group = this.groups.get(groupId);
    if (!group) return undefined;
    const show = (s: Set<string>) => [...s].map((k) => split(k).join('/')).sort();
    return {
      groupId,
      epoch: group.epoch,
      members: [...group.members.values()].map((m) => ({ memberId: m.id, memberEpoch: m.epoch, topics: m.resolved, target: show(m.target), owned: show(m.owned) })),
    };
  }

  groupIds(): string[] {
    return [...this.groups.keys()].sort();
  }

  /** Live members of a group (0 when the group has none), for the metrics. */
  memberCount(groupId: string): number {
    return this.groups.get(groupId)?.members.size ?? 0;
  }
}

function checkSubscriptionSize(topics: string[] | undefined): void {
  if (topics === undefined) return;
  let chars = 0;
  for (const t of topics) chars += t.length;
  if (chars > SUBSCRIPTION_CHARS_MAX) {
    throw new TributaryError(Errors.INVALID_REQUEST, `subscribedTopics hold ${chars} characters of topic names; at most ${SUBSCRIPTION_CHARS_MAX} (subscribe by pattern instead)`);
  }
}

function normalizeTopics(topics: string[]): string[] {
  return [...new Set(topics)].sort();
}

function sameSet(a: Set<string>, b: Set<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}
