import { describe, expect, it } from 'vitest';
import { Errors, TributaryError } from '../../protocol/errors.js';
import type { ConsumerGroupHeartbeatResponse } from '../../protocol/frames.js';
import { mulberry32 } from '../../protocol/testdata/helpers.js';
import { GroupCoordinator } from './coordinator.js';

const TOPIC = 'orders';
const PARTITIONS = 12;

function coordinator(clock: { now: number }, partitions = PARTITIONS): GroupCoordinator {
  return new GroupCoordinator({ partitionsOf: (t) => (t === TOPIC ? partitions : t === 'other' ? 2 : undefined), now: () => clock.now, sessionTimeoutMs: 1000 });
}

/** A well-behaved member: owns exactly what its last answer gave it. */
class Member {
  id = '';
  epoch = 0;
  owned: number[] = [];
  constructor(
    private readonly c: GroupCoordinator,
    private readonly topics = [TOPIC],
    readonly principal = 'key:team',
  ) {}
  beat(): ConsumerGroupHeartbeatResponse {
    const joining = this.id === '';
    const answer = this.c.heartbeat({
      groupId: 'g',
      principal: this.principal,
      memberId: this.id,
      memberEpoch: this.epoch,
      subscribedTopics: joining ? this.topics : undefined,
      ownedPartitions: this.owned.length ? [{ topic: TOPIC, partitions: this.owned }] : [],
    });
    this.id = answer.memberId;
    this.epoch = answer.memberEpoch;
    this.owned = answer.assignment.find((a) => a.topic === TOPIC)?.partitions ?? [];
    return answer;
  }
  leave(): void {
    this.c.heartbeat({ groupId: 'g', principal: this.principal, memberId: this.id, memberEpoch: -1, ownedPartitions: [] });
  }
}

/** The error code `f` throws, or 0. */
function codeOf(f: () => unknown): number {
  try {
    f();
  } catch (e) {
    return (e as TributaryError).code;
  }
  return 0;
}

function noOverlap(members: Member[]): void {
  const seen = new Map<number, string>();
  for (const m of members) {
    for (const p of m.owned) {
      expect(seen.has(p), `partition ${p} owned by ${seen.get(p)} and ${m.id}`).toBe(false);
      seen.set(p, m.id);
    }
  }
}

describe('group coordinator', () => {
  it('a lone member gets every partition', () => {
    const c = coordinator({ now: 0 });
    const a = new Member(c);
    a.beat();
    expect(a.owned).toEqual(Array.from({ length: PARTITIONS }, (_, i) => i));
  });

  it('a joiner gets its share only once the owner has given it up: never two owners', () => {
    const c = coordinator({ now: 0 });
    const a = new Member(c);
    const b = new Member(c);
    a.beat();
    b.beat();
    expect(b.owned).toEqual([]); // a still owns all twelve
    noOverlap([a, b]);
    a.beat(); // a learns its smaller target and drops the rest
    expect(a.owned).toHaveLength(6);
    b.beat();
    expect(b.owned).toEqual([]); // a has not yet said it let them go
    noOverlap([a, b]);
    a.beat(); // now it has
    b.beat();
    expect(b.owned).toHaveLength(6);
    noOverlap([a, b]);
    expect([...a.owned, ...b.owned].sort((x, y) => x - y)).toEqual(Array.from({ length: PARTITIONS }, (_, i) => i));
  });

  it('is sticky: a third member takes partitions from both, and each keeps the rest', () => {
    const c = coordinator({ now: 0 });
    const a = new Member(c);
    const b = new Member(c);
    const d = new Member(c);
    for (const m of [a, b, a, b, a, b]) m.beat();
    expect([a.owned.length, b.owned.length]).toEqual([6, 6]);
    const before = { a: [...a.owned], b: [...b.owned] };
    for (let i = 0; i < 4; i++) {
      for (const m of [d, a, b]) m.beat();
      noOverlap([a, b, d]);
    }
    for (const [m, prev] of [[a, before.a], [b, before.b]] as const) {
      expect(m.owned).toHaveLength(4);
      expect(m.owned.every((p) => prev.includes(p))).toBe(true); // only lost, never moved around
    }
    expect(d.owned).toHaveLength(4);
    noOverlap([a, b, d]);
  });

  it('a member silent past the session timeout is removed and its partitions go to the others', () => {
    const clock = { now: 0 };
    const c = coordinator(clock);
    const a = new Member(c);
    const b = new Member(c);
    for (const m of [a, b, a, b]) m.beat();
    clock.now = 600;
    a.beat();
    clock.now = 1200; // b has said nothing for 1200 ms, a for 600: only b is gone
    a.beat();
    expect(a.owned).toHaveLength(PARTITIONS);
    expect(() => b.beat()).toThrow(TributaryError);
  });

  it('a member that leaves frees its partitions at once', () => {
    const c = coordinator({ now: 0 });
    const a = new Member(c);
    const b = new Member(c);
    for (const m of [a, b, a, b]) m.beat();
    b.leave();
    a.beat();
    expect(a.owned).toHaveLength(PARTITIONS);
  });

  it('fences stale epochs and unknown members', () => {
    const c = coordinator({ now: 0 });
    const a = new Member(c);
    a.beat();
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as TributaryError).code;
      }
      return 0;
    };
    expect(err(() => c.heartbeat({ groupId: 'g', principal: a.principal, memberId: a.id, memberEpoch: a.epoch + 7, ownedPartitions: [] }))).toBe(Errors.FENCED_MEMBER_EPOCH.code);
    expect(err(() => c.heartbeat({ groupId: 'g', principal: a.principal, memberId: 'nobody', memberEpoch: 3, ownedPartitions: [] }))).toBe(Errors.UNKNOWN_MEMBER_ID.code);
  });

  it('only subscribers of a topic get its partitions', () => {
    const c = coordinator({ now: 0 });
    const a = new Member(c, [TOPIC]);
    const b = new Member(c, ['other']);
    const answerA = a.beat();
    const answerB = b.beat();
    expect(answerA.assignment.map((x) => x.topic)).toEqual([TOPIC]);
    expect(answerB.assignment).toEqual([{ topic: 'other', partitions: [0, 1] }]);
  });

  it('seeded churn: never two live owners, and a quiet group ends balanced with every partition owned', () => {
    const random = mulberry32(0x848);
    const clock = { now: 0 };
    const c = coordinator(clock);
    let members: Member[] = [];
    for (let step = 0; step < 3000; step++) {
      clock.now += 10;
      const r = random();
      if ((r < 0.05 && members.length < 6) || members.length === 0) {
        members.push(new Member(c));
      } else if (r < 0.08) {
        const m = members.splice(Math.floor(random() * members.length), 1)[0];
        m.leave();
      } else if (r < 0.09 && members.length > 1) {
        // A crash: it stops heartbeating and owns nothing from now on; others wait out its session.
        const m = members.splice(Math.floor(random() * members.length), 1)[0];
        m.owned = [];
        for (let t = 0; t < 110; t++) {
          clock.now += 10;
          for (const live of members) live.beat();
          noOverlap(members);
        }
      }
      if (members.length === 0) continue;
      const m = members[Math.floor(random() * members.length)];
      m.beat();
      noOverlap(members);
    }
    for (let round = 0; round < 4; round++) for (const m of members) m.beat();
    noOverlap(members);
    const counts = members.map((m) => m.owned.length);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(PARTITIONS);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
  });
});

describe('group coordinator: pattern subscriptions', () => {
  it('takes every matching topic it may consume, including one created later, never an internal one', () => {
    const topics = new Map<string, number>([
      ['sensors.temp', 2],
      ['sensors.secret', 1],
      ['alarms', 1],
      ['__consumer_offsets', 1],
    ]);
    const c = new GroupCoordinator({ partitionsOf: (t) => topics.get(t), topicNames: () => [...topics.keys()], now: () => 0 });
    const beat = (memberId: string, memberEpoch: number, owned: { topic: string; partitions: number[] }[] = []) =>
      c.heartbeat({ groupId: 'p', principal: 'key:app', memberId, memberEpoch, subscribedTopicPattern: memberId === '' ? 'sensors.*' : undefined, mayConsume: (t) => t !== 'sensors.secret', ownedPartitions: owned });
    const joined = beat('', 0);
    expect(joined.assignment).toEqual([{ topic: 'sensors.temp', partitions: [0, 1] }]);
    topics.set('sensors.vibration', 3);
    const later = beat(joined.memberId, joined.memberEpoch, joined.assignment);
    expect(later.assignment).toEqual([
      { topic: 'sensors.temp', partitions: [0, 1] },
      { topic: 'sensors.vibration', partitions: [0, 1, 2] },
    ]);
    expect(c.describe('p')?.members[0].topics).toEqual(['sensors.temp', 'sensors.vibration']);
  });
});

describe('group coordinator: who may use a member, and what it may claim', () => {
  it('a member id belongs to the principal that joined with it', () => {
    const c = coordinator({ now: 0 });
    const a = new Member(c);
    a.beat();
    const thief = { groupId: 'g', principal: 'key:other', memberId: a.id, memberEpoch: a.epoch, ownedPartitions: [] };
    expect(codeOf(() => c.heartbeat(thief))).toBe(Errors.UNAUTHORIZED.code);
    expect(codeOf(() => c.heartbeat({ ...thief, memberEpoch: -1 }))).toBe(Errors.UNAUTHORIZED.code);
    // Still a member, with all it had.
    a.beat();
    expect(a.owned).toHaveLength(PARTITIONS);
  });

  it('partitions a member was never given do not count as its own, so they still reach the member they are for', () => {
    const c = coordinator({ now: 0 });
    const a = new Member(c);
    for (let i = 0; i < 2; i++) a.beat();
    // x joins and, at every heartbeat, claims every partition of the topic.
    let x = { id: '', epoch: 0 };
    const greedy = () => {
      const answer = c.heartbeat({
        groupId: 'g',
        principal: 'key:team',
        memberId: x.id,
        memberEpoch: x.epoch,
        subscribedTopics: x.id === '' ? [TOPIC] : undefined,
        ownedPartitions: [{ topic: TOPIC, partitions: Array.from({ length: PARTITIONS }, (_, i) => i) }],
      });
      x = { id: answer.memberId, epoch: answer.memberEpoch };
      return answer;
    };
    greedy();
    for (let i = 0; i < 3; i++) {
      a.beat();
      greedy();
    }
    expect(a.owned).toHaveLength(6);
    // b joins: a gives up two partitions, which were never x's, so b gets them although x
    // claims to own them.
    const b = new Member(c);
    b.beat();
    a.beat(); // a learns its smaller target
    a.beat(); // and says it let two go
    b.beat();
    expect(a.owned).toHaveLength(4);
    expect(b.owned.length).toBeGreaterThanOrEqual(2);
    expect(b.owned.every((p) => !a.owned.includes(p))).toBe(true);
    const described = c.describe('g')?.members.find((m) => m.memberId === x.id);
    expect(described?.owned).toHaveLength(6); // what it was given, not all twelve
  });

  it('a member that keeps partitions it was to give up is fenced after the rebalance timeout, and they reach their new owner', () => {
    const clock = { now: 0 };
    const c = new GroupCoordinator({ partitionsOf: (t) => (t === TOPIC ? 4 : undefined), now: () => clock.now, sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 3000 });
    // a owns all four and never lets any go.
    const join = c.heartbeat({ groupId: 'g', principal: 'key:a', memberId: '', memberEpoch: 0, subscribedTopics: [TOPIC], ownedPartitions: [] });
    const all = [{ topic: TOPIC, partitions: [0, 1, 2, 3] }];
    let epoch = c.heartbeat({ groupId: 'g', principal: 'key:a', memberId: join.memberId, memberEpoch: join.memberEpoch, ownedPartitions: all }).memberEpoch;
    const b = new Member(c, [TOPIC], 'key:b');
    const hoard = () => {
      epoch = c.heartbeat({ groupId: 'g', principal: 'key:a', memberId: join.memberId, memberEpoch: epoch, ownedPartitions: all }).memberEpoch;
    };
    for (let t = 0; t <= 3000; t += 500) {
      clock.now = t;
      hoard();
      b.beat();
      expect(b.owned).toEqual([]); // within the timeout: a still owns them, so b waits
    }
    // Told to give them up at 500 ms; 3 s later it is fenced.
    clock.now = 3501;
    expect(codeOf(hoard)).toBe(Errors.FENCED_MEMBER_EPOCH.code);
    b.beat();
    expect(b.owned).toEqual([0, 1, 2, 3]);
  });

  it('partitions of a topic the member may not consume are not counted as owned', () => {
    const c = new GroupCoordinator({ partitionsOf: (t) => (t === TOPIC ? 2 : undefined), now: () => 0 });
    const joined = c.heartbeat({ groupId: 'g', principal: 'key:a', memberId: '', memberEpoch: 0, subscribedTopics: [TOPIC], ownedPartitions: [] });
    const input = { groupId: 'g', principal: 'key:a', memberId: joined.memberId, memberEpoch: joined.memberEpoch, ownedPartitions: joined.assignment };
    c.heartbeat({ ...input, mayConsume: () => false });
    expect(c.describe('g')?.members[0].owned).toEqual([]);
    c.heartbeat({ ...input, mayConsume: () => true });
    expect(c.describe('g')?.members[0].owned).toEqual(['orders/0', 'orders/1']);
  });

  it('bounds live members per principal and node-wide; leaving or going silent frees the place', () => {
    const clock = { now: 0 };
    const reached: string[] = [];
    const c = new GroupCoordinator({ partitionsOf: () => 1, now: () => clock.now, sessionTimeoutMs: 1000, membersPerPrincipalMax: 2, membersMax: 3, onLimitReached: (l) => reached.push(l) });
    const join = (group: string, principal: string) => c.heartbeat({ groupId: group, principal, memberId: '', memberEpoch: 0, subscribedTopics: ['t'], ownedPartitions: [] });
    const first = join('g1', 'key:a');
    join('g2', 'key:a');
    expect(codeOf(() => join('g3', 'key:a'))).toBe(Errors.RESOURCE_LIMIT.code);
    join('g3', 'key:b');
    expect(codeOf(() => join('g4', 'key:c'))).toBe(Errors.RESOURCE_LIMIT.code);
    expect(reached).toEqual(['groupMembersPerPrincipalMax', 'groupMembersMax']);
    expect([c.liveMembers, c.membersOf('key:a'), c.membersOf('key:b')]).toEqual([3, 2, 1]);
    c.heartbeat({ groupId: 'g1', principal: 'key:a', memberId: first.memberId, memberEpoch: -1, ownedPartitions: [] });
    join('g3', 'key:a');
    clock.now = 2000; // every member silent past its session
    c.expire();
    expect([c.liveMembers, c.membersOf('key:a')]).toEqual([0, 0]);
    join('g4', 'key:c');
  });

  it('holds anonymous clients (dev mode, one local user) to the node-wide bound only', () => {
    const c = new GroupCoordinator({ partitionsOf: () => 1, now: () => 0, membersPerPrincipalMax: 1, membersMax: 3 });
    const join = (group: string) => c.heartbeat({ groupId: group, principal: 'anonymous', memberId: '', memberEpoch: 0, subscribedTopics: ['t'], ownedPartitions: [] });
    for (const g of ['g1', 'g2', 'g3']) join(g);
    expect(codeOf(() => join('g4'))).toBe(Errors.RESOURCE_LIMIT.code);
    expect(c.liveMembers).toBe(3);
  });

  it('bounds the topic names one member subscribes to', () => {
    const c = coordinator({ now: 0 });
    const names = Array.from({ length: 80 }, (_, i) => `${'t'.repeat(240)}${i}`);
    expect(codeOf(() => c.heartbeat({ groupId: 'g', principal: 'key:a', memberId: '', memberEpoch: 0, subscribedTopics: names, ownedPartitions: [] }))).toBe(Errors.INVALID_REQUEST.code);
    expect(c.liveMembers).toBe(0);
  });
});

describe('group coordinator: OffsetCommit fencing', () => {
  it('an empty group takes commits from outside; a live one only from its members at their epoch', () => {
    const c = coordinator({ now: 0 });
    c.validateCommit('g', undefined, undefined, 'key:ops'); // no group yet
    const a = new Member(c);
    a.beat();
    expect(codeOf(() => c.validateCommit('g', undefined, undefined, 'key:ops'))).toBe(Errors.NON_EMPTY_GROUP.code);
    expect(codeOf(() => c.validateCommit('g', '', -1, 'key:team'))).toBe(Errors.NON_EMPTY_GROUP.code);
    expect(codeOf(() => c.validateCommit('g', a.id, a.epoch, 'key:team'))).toBe(0);
    expect(codeOf(() => c.validateCommit('g', a.id, a.epoch, 'key:other'))).toBe(Errors.UNAUTHORIZED.code);
    expect(codeOf(() => c.validateCommit('g', 'nobody', 1, 'key:team'))).toBe(Errors.UNKNOWN_MEMBER_ID.code);
    expect(codeOf(() => c.validateCommit('g', a.id, a.epoch + 1, 'key:team'))).toBe(Errors.FENCED_MEMBER_EPOCH.code);
    // b joins: a's epoch moves, but a has not heard yet; its commit at the epoch it was told still counts.
    const told = a.epoch;
    const b = new Member(c);
    b.beat();
    expect(codeOf(() => c.validateCommit('g', a.id, told, 'key:team'))).toBe(0);
    a.beat();
    a.beat();
    expect(a.epoch).toBeGreaterThan(told);
    expect(codeOf(() => c.validateCommit('g', a.id, told, 'key:team'))).toBe(Errors.STALE_MEMBER_EPOCH.code);
    a.leave();
    b.leave();
    // Empty again: anyone may commit, a forgotten member too.
    expect(codeOf(() => c.validateCommit('g', a.id, told, 'key:team'))).toBe(0);
    expect(codeOf(() => c.validateCommit('g', undefined, undefined, 'key:ops'))).toBe(0);
  });
});
