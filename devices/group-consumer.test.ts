// GroupConsumer against a real node (node/broker.ts) in-process, with a short session
// timeout and heartbeat interval so that rebalances happen within a test. What must hold:
// every partition owned by one member at a time, every record read at least once across
// members, commits matching OffsetFetch. Waits are bounded; nothing asserts on timing.
// Then its timers on an injected ManualClock, against the fake node answering heartbeats.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../protocol/clock.js';
import { Errors } from '../protocol/errors.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { Kind, connect, type Connection, type GroupConsumer, type TopicPartition } from './index.js';
import { FakeNode, type HookAction } from './testing/fake-node.js';
import { until } from '../test/helpers/until.js';

const SESSION_TIMEOUT_MS = 1500;

let dataDir: string;
let broker: Broker;
let conn: Connection;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tributary-group-'));
  broker = await startBroker({ dataDir, port: 0, logger: silentLogger, groupSessionTimeoutMs: SESSION_TIMEOUT_MS, groupHeartbeatIntervalMs: 50 });
  conn = await connect(broker.url);
});

afterAll(async () => {
  await conn?.close();
  await broker?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

let topicCount = 0;
async function freshTopic(partitions: number, records: number): Promise<string> {
  const topic = `g${++topicCount}`;
  await conn.admin().createTopic(topic, { partitions });
  const producer = conn.producer({ lingerMs: 1 });
  await producer.sendBatch(topic, Array.from({ length: records }, (_, i) => ({ partition: i % partitions, value: `r${i}` })));
  return topic;
}


const keyOf = (tp: TopicPartition) => `${tp.topic}/${tp.partition}`;

/** Reads in the background into `seen` ("partition:offset") until the member closes or fails. */
function drain(gc: GroupConsumer<'string'>, seen: Set<string>): Promise<void> {
  return (async () => {
    try {
      for await (const batch of gc.batches()) for (const r of batch) seen.add(`${r.partition}:${r.offset}`);
    } catch {
      // its client was closed under it (the abrupt-stop test)
    }
  })();
}

function allRecords(partitions: number, records: number): string[] {
  const perPartition = records / partitions;
  return Array.from({ length: partitions }, (_, p) => Array.from({ length: perPartition }, (_, o) => `${p}:${o}`)).flat();
}

/** Fails the test if the two members ever own one partition together, sampled at every change. */
function ownershipChecker(): { check: () => void; violations: string[]; members: GroupConsumer<'string'>[] } {
  const members: GroupConsumer<'string'>[] = [];
  const violations: string[] = [];
  const check = () => {
    const owners = new Map<string, number>();
    for (const m of members) for (const tp of m.assignment) owners.set(keyOf(tp), (owners.get(keyOf(tp)) ?? 0) + 1);
    for (const [k, n] of owners) if (n > 1) violations.push(k);
  };
  return { check, violations, members };
}

async function committed(groupId: string, topic: string, partitions: number): Promise<number[]> {
  const answer = await conn.client.request(Kind.OffsetFetch, { groupId, partitions: Array.from({ length: partitions }, (_, partition) => ({ topic, partition })) });
  return Array.from({ length: partitions }, (_, p) => answer.partitions.find((r) => r.partition === p)?.offset ?? -2);
}

describe('GroupConsumer against a real node', () => {
  it('a lone member owns every partition, reads everything, and commits its positions on close', async () => {
    const topic = await freshTopic(4, 200);
    const gc = conn.groupConsumer({ groupId: 'lone', topics: [topic], autoOffsetReset: 'earliest', valueDecoding: 'string' });
    const seen = new Set<string>();
    const reading = drain(gc, seen);
    await until(() => seen.size === 200, 'all records');
    expect(gc.assignment.map(keyOf).sort()).toEqual([0, 1, 2, 3].map((p) => `${topic}/${p}`));
    expect([...seen].sort()).toEqual(allRecords(4, 200).sort());
    await gc.close();
    await reading;
    expect(gc.assignment).toEqual([]);
    expect(await committed('lone', topic, 4)).toEqual([50, 50, 50, 50]);
  });

  it('commit() commits the positions handed out, as OffsetFetch then reads them', async () => {
    const topic = await freshTopic(2, 40);
    const gc = conn.groupConsumer({ groupId: 'manual', topics: [topic], autoCommit: false, autoOffsetReset: 'earliest', valueDecoding: 'string' });
    const handed = new Map<number, number>();
    let n = 0;
    for await (const r of gc) {
      handed.set(r.partition, r.offset + 1);
      if (++n === 25) break;
    }
    await gc.commit();
    const fetched = await committed('manual', topic, 2);
    expect(fetched).toEqual([0, 1].map((p) => handed.get(p) ?? -1));
    expect(fetched).toEqual([0, 1].map((p) => gc.position(topic, p) ?? -1));
    // Without autoCommit, close commits nothing more.
    await gc.close();
    expect(await committed('manual', topic, 2)).toEqual(fetched);
  });

  it('close commits every partition with a valid position, reset ones included, so a member at latest skips nothing', async () => {
    const topic = `g${++topicCount}`;
    await conn.admin().createTopic(topic, { partitions: 3 });
    const producer = conn.producer({ lingerMs: 1 });
    await producer.sendBatch(topic, Array.from({ length: 10 }, (_, i) => ({ partition: 0, value: `early-${i}` })));
    const first = conn.groupConsumer({ groupId: 'leaver', topics: [topic], autoOffsetReset: 'earliest', valueDecoding: 'string' });
    let read = 0;
    for await (const r of first) if (r.partition === 0 && ++read === 10) break;
    await first.close();
    // Partitions 1 and 2 had nothing to read: their position is where 'earliest' put them.
    expect(await committed('leaver', topic, 3)).toEqual([10, 0, 0]);
    await producer.sendBatch(topic, [0, 1, 2].map((partition) => ({ partition, value: `late-${partition}` })));
    const second = conn.groupConsumer({ groupId: 'leaver', topics: [topic], autoOffsetReset: 'latest', valueDecoding: 'string' });
    const seen = new Set<string>();
    const reading = drain(second, seen);
    await until(() => seen.size === 3, 'the three late records');
    await second.close();
    await reading;
    expect([...seen].sort()).toEqual(['0:10', '1:0', '2:0']);
  });

  it('a partition gained has its position at once, before anything is read, and it moves only as records are handed out', async () => {
    // An app committing its own offsets (consume --group) takes the position as the partition
    // is gained as the start of what it will be given: it must be known then, reset or not.
    const topic = await freshTopic(3, 30);
    await conn.client.request(Kind.OffsetCommit, { groupId: 'starts', offsets: [{ topic, partition: 0, offset: 4 }] });
    for (const [reset, unset] of [['latest', 10], ['earliest', 0]] as const) {
      const atGain = new Map<number, number | null>();
      const gc: GroupConsumer<'string'> = conn.groupConsumer({
        groupId: 'starts',
        topics: [topic],
        autoOffsetReset: reset,
        autoCommit: false,
        valueDecoding: 'string',
        onAssignmentChange: ({ gained }) => {
          for (const tp of gained) atGain.set(tp.partition, gc.position(tp.topic, tp.partition));
        },
      });
      await until(() => atGain.size === 3, 'three partitions gained');
      expect([...atGain].sort(([a], [b]) => a - b)).toEqual([[0, 4], [1, unset], [2, unset]]);
      const next = await gc.batches()[Symbol.asyncIterator]().next();
      const last = next.value![next.value!.length - 1];
      expect(gc.position(topic, last.partition)).toBe(last.offset + 1);
      await gc.close();
    }
  });

  it('two members split 12 partitions, never owning one together', async () => {
    const topic = await freshTopic(12, 120);
    const { check, violations, members } = ownershipChecker();
    const a = conn.groupConsumer({ groupId: 'split', topics: [topic], autoOffsetReset: 'earliest', valueDecoding: 'string', onAssignmentChange: check });
    members.push(a);
    await until(() => a.assignment.length === 12, 'a owns all 12');
    const b = conn.groupConsumer({ groupId: 'split', topics: [topic], autoOffsetReset: 'earliest', valueDecoding: 'string', onAssignmentChange: check });
    members.push(b);
    const seen = new Set<string>();
    const readers = [drain(a, seen), drain(b, seen)];
    await until(() => a.assignment.length === 6 && b.assignment.length === 6, 'a 6/6 split');
    await until(() => seen.size === 120, 'every record');
    expect(violations).toEqual([]);
    expect(new Set([...a.assignment, ...b.assignment].map(keyOf)).size).toBe(12);
    await a.close();
    await b.close();
    await Promise.all(readers);
    expect(violations).toEqual([]);
  });

  it('a member leaving hands its partitions over; the other goes on from the commits and nothing is skipped', async () => {
    const topic = await freshTopic(6, 600);
    const { check, violations, members } = ownershipChecker();
    const options = { groupId: 'handover', topics: [topic], autoOffsetReset: 'earliest' as const, valueDecoding: 'string' as const, onAssignmentChange: check };
    const a = conn.groupConsumer(options);
    members.push(a);
    // A takes 100 records and then no more: the rest stays fetched but never handed out,
    // so its commits (on giving partitions up and on close) stop exactly after those 100.
    const seenA: { partition: number; offset: number }[] = [];
    await until(() => a.assignment.length === 6, 'a owns all 6');
    for await (const r of a) {
      seenA.push({ partition: r.partition, offset: r.offset });
      if (seenA.length === 100) break;
    }
    const b = conn.groupConsumer(options);
    members.push(b);
    const seenB = new Set<string>();
    const readB = drain(b, seenB);
    await until(() => a.assignment.length === 3 && b.assignment.length === 3, 'a 3/3 split');
    await a.close();
    await until(() => b.assignment.length === 6, 'b owns all 6');
    const keysA = seenA.map((r) => `${r.partition}:${r.offset}`);
    await until(() => new Set([...keysA, ...seenB]).size === 600, 'every record seen by someone');
    expect(seenB.size).toBeGreaterThanOrEqual(500);
    expect(violations).toEqual([]);
    // B starts each partition exactly where A's handed-out records end: A committed that.
    for (let p = 0; p < 6; p++) {
      const aEnd = Math.max(-1, ...seenA.filter((r) => r.partition === p).map((r) => r.offset)) + 1;
      const offsetsB = [...seenB].filter((k) => k.startsWith(`${p}:`)).map((k) => Number(k.split(':')[1]));
      if (offsetsB.length === 0) expect(aEnd).toBe(100); // A had read all of it
      else expect(Math.min(...offsetsB)).toBe(aEnd);
    }
    await b.close();
    await readB;
    expect(await committed('handover', topic, 6)).toEqual([100, 100, 100, 100, 100, 100]);
  });

  it('a member that stops heartbeating is removed after the session timeout and its partitions move', async () => {
    const topic = await freshTopic(4, 40);
    const conn2 = await connect(broker.url);
    try {
      const { check, violations, members } = ownershipChecker();
      const a = conn2.groupConsumer({ groupId: 'silent', topics: [topic], autoOffsetReset: 'earliest', valueDecoding: 'string', onAssignmentChange: check });
      members.push(a);
      await until(() => a.assignment.length === 4, 'a owns all 4');
      const b = conn.groupConsumer({ groupId: 'silent', topics: [topic], autoOffsetReset: 'earliest', valueDecoding: 'string', onAssignmentChange: check });
      members.push(b);
      await until(() => a.assignment.length === 2 && b.assignment.length === 2, 'a 2/2 split');
      // Abrupt: the socket goes, no leave is sent. A's heartbeats fail, and it gives up its
      // partitions locally; the node frees them only once the session times out.
      await conn2.client.close();
      await until(() => a.assignment.length === 0, 'a drops its partitions');
      const seen = new Set<string>();
      const readB = drain(b, seen);
      await until(() => b.assignment.length === 4, 'b owns all 4');
      await until(() => seen.size === 40, 'b reads every record');
      expect(violations).toEqual([]);
      await b.close();
      await readB;
    } finally {
      await conn2.close();
    }
  });
});

describe('GroupConsumer on the clock connect() was given', () => {
  /**
   * A member of a group whose coordinator, on a fake node, answers every heartbeat: the one
   * member, epoch 1, owning `assignment`, next heartbeat in `heartbeatIntervalMs`; or, once
   * refused, THROTTLED. Commits are accepted.
   */
  async function member(clock: ManualClock, heartbeatIntervalMs: number, assignment: { topic: string; partitions: number[] }[] = [], autoCommitIntervalMs?: number) {
    const node = new FakeNode();
    node.createTopic('t', 1);
    const heartbeats: Record<string, unknown>[] = [];
    let refuse = false;
    node.hook = (req): HookAction => {
      if (req.kind === Kind.OffsetFetch) return { answer: { partitions: [{ topic: 't', partition: 0, offset: -1, error: 0 }] } };
      if (req.kind === Kind.OffsetCommit) return { answer: { partitions: [{ topic: 't', partition: 0, error: 0 }] } };
      if (req.kind !== Kind.ConsumerGroupHeartbeat) return undefined;
      heartbeats.push(req.body);
      if (refuse) return { answer: { error: Errors.THROTTLED.code, message: 'THROTTLED: coordinator busy' } };
      return { answer: { memberId: 'member-1', memberEpoch: 1, heartbeatIntervalMs, assignment } };
    };
    const conn = await connect('mem://fake', { transportFactory: node.transportFactory, clock });
    const gc = conn.groupConsumer({ groupId: 'clocked', topics: ['t'], ...(autoCommitIntervalMs === undefined ? { autoCommit: false } : { autoCommitIntervalMs }) });
    const commits = () => node.requests.filter((r) => r.kind === Kind.OffsetCommit).map((r) => r.body);
    return { conn, gc, heartbeats, commits, refuseHeartbeats: () => (refuse = true) };
  }

  it('heartbeats every heartbeatIntervalMs of that clock: not a millisecond before, and at it', async () => {
    const clock = new ManualClock();
    const { conn, gc, heartbeats } = await member(clock, 60_000);
    try {
      await until(() => gc.memberId === 'member-1', 'joined');
      expect(heartbeats).toHaveLength(1);
      await clock.advanceAsync(59_999, 1000);
      expect(heartbeats).toHaveLength(1);
      expect(conn.client.pendingRequests).toBe(0);
      clock.advance(1);
      await until(() => heartbeats.length === 2, 'the second heartbeat');
      expect(heartbeats[1]).toMatchObject({ groupId: 'clocked', memberId: 'member-1', memberEpoch: 1 });
    } finally {
      await conn.close();
    }
  });

  it('counts the session timeout on that clock: unanswered heartbeats drop its partitions once sessionTimeoutMs has passed, not before', async () => {
    const clock = new ManualClock();
    const sessionTimeoutMs = 45_000; // the default
    const { conn, gc, heartbeats, refuseHeartbeats } = await member(clock, 1000, [{ topic: 't', partitions: [0] }]);
    try {
      await until(() => gc.assignment.length === 1, 'owns t/0');
      // What it owns changed, so a heartbeat reporting it went at once: its answer, at the
      // clock's time 0, is the last one.
      await until(() => heartbeats.length === 2, 'the heartbeat reporting t/0');
      refuseHeartbeats();
      // Refused from then on, retried with a backoff of at most a second.
      await clock.advanceAsync(sessionTimeoutMs, 100);
      expect(heartbeats.length).toBeGreaterThan(40);
      expect(gc.assignment).toEqual([{ topic: 't', partition: 0 }]);
      await clock.advanceAsync(1000, 100);
      await until(() => gc.assignment.length === 0, 'dropped t/0');
      expect(gc.memberId).toBe('');
    } finally {
      await conn.close();
    }
  });

  it('auto-commits every autoCommitIntervalMs of that clock', async () => {
    const clock = new ManualClock();
    const { conn, gc, commits } = await member(clock, 60_000, [{ topic: 't', partitions: [0] }], 5000);
    try {
      await until(() => gc.position('t', 0) === 0, 'owns t/0, starting at the log end');
      await clock.advanceAsync(4999, 100);
      expect(commits()).toEqual([]);
      expect(conn.client.pendingRequests).toBe(0);
      clock.advance(1);
      expect(conn.client.pendingRequests).toBe(1); // the OffsetCommit, sent from the timer
      await until(() => commits().length === 1, 'the first auto-commit');
      expect(commits()[0]).toMatchObject({ groupId: 'clocked', memberId: 'member-1', memberEpoch: 1, offsets: [{ topic: 't', partition: 0, offset: 0 }] });
    } finally {
      await conn.close();
    }
  });
});
