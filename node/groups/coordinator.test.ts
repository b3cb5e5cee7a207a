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
  ) {}
  beat(): ConsumerGroupHeartbeatResponse {
    const joining = this.id === '';
    const answer = this.c.heartbeat({
      groupId: 'g',
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
    this.c.heartbeat({ groupId: 'g', memberId: this.id, memberEpoch: -1, ownedPartitions: [] });
  }
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
    expect(err(() => c.heartbeat({ groupId: 'g', memberId: a.id, memberEpoch: a.epoch + 7, ownedPartitions: [] }))).toBe(Errors.FENCED_MEMBER_EPOCH.code);
    expect(err(() => c.heartbeat({ groupId: 'g', memberId: 'nobody', memberEpoch: 3, ownedPartitions: [] }))).toBe(Errors.UNKNOWN_MEMBER_ID.code);
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
      c.heartbeat({ groupId: 'p', memberId, memberEpoch, subscribedTopicPattern: memberId === '' ? 'sensors.*' : undefined, mayConsume: (t) => t !== 'sensors.secret', ownedPartitions: owned });
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
