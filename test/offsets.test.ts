// Committed offsets (OffsetCommit, OffsetFetch) over a real WebSocket: kept across a
// restart in __consumer_offsets, newest commit wins, and each bad part answered alone.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { tempDir } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';

type Committed = { partitions: { topic: string; partition: number; error: number; message?: string }[] };
type Fetched = { partitions: { topic: string; partition: number; offset: number; metadata: string; error: number }[] };

const dir = tempDir();
let broker: Broker;

beforeAll(async () => {
  broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger });
  const c = await RawClient.connect(broker.url);
  await c.request(Kind.CreateTopics, { topics: [{ name: 'orders', partitions: 3 }] });
  c.close();
});

afterAll(async () => {
  await broker?.close();
  dir.remove();
});

it('commits, answers the newest commit, and keeps it across a restart', async () => {
  let c = await RawClient.connect(broker.url);
  const first = await c.request<Committed>(Kind.OffsetCommit, { groupId: 'billing', offsets: [{ topic: 'orders', partition: 0, offset: 10 }, { topic: 'orders', partition: 2, offset: 7, metadata: 'host-a' }] });
  expect(first.partitions.map((p) => p.error)).toEqual([0, 0]);
  await c.request(Kind.OffsetCommit, { groupId: 'billing', offsets: [{ topic: 'orders', partition: 0, offset: 42 }] });
  await c.request(Kind.OffsetCommit, { groupId: 'audit', offsets: [{ topic: 'orders', partition: 0, offset: 1 }] });
  const named = await c.request<Fetched>(Kind.OffsetFetch, { groupId: 'billing', partitions: [{ topic: 'orders', partition: 0 }, { topic: 'orders', partition: 1 }, { topic: 'orders', partition: 2 }] });
  expect(named.partitions.map((p) => [p.partition, p.offset, p.metadata])).toEqual([[0, 42, ''], [1, -1, ''], [2, 7, 'host-a']]);
  c.close();

  await broker.close();
  broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger });
  c = await RawClient.connect(broker.url);
  const all = await c.request<Fetched>(Kind.OffsetFetch, { groupId: 'billing' });
  expect(all.partitions.map((p) => [p.topic, p.partition, p.offset]).sort()).toEqual([['orders', 0, 42], ['orders', 2, 7]]);
  const other = await c.request<Fetched>(Kind.OffsetFetch, { groupId: 'audit' });
  expect(other.partitions.map((p) => p.offset)).toEqual([1]);
  // The internal topic is not in the ordinary topic list.
  const meta = await c.request<{ topics: { name: string }[] }>(Kind.Metadata, {});
  expect(meta.topics.map((t) => t.name)).toEqual(['orders']);
  c.close();
});

it('answers each bad part alone: an unknown partition, long metadata; and refuses a bad group id', async () => {
  const c = await RawClient.connect(broker.url);
  const mixed = await c.request<Committed>(Kind.OffsetCommit, {
    groupId: 'billing',
    offsets: [
      { topic: 'orders', partition: 9, offset: 1 },
      { topic: 'orders', partition: 1, offset: 5, metadata: 'x'.repeat(5000) },
      { topic: 'orders', partition: 1, offset: 6 },
    ],
  });
  expect(mixed.partitions.map((p) => p.error)).toEqual([Errors.UNKNOWN_TOPIC.code, Errors.INVALID_REQUEST.code, 0]);
  const fetched = await c.request<Fetched>(Kind.OffsetFetch, { groupId: 'billing', partitions: [{ topic: 'orders', partition: 1 }] });
  expect(fetched.partitions[0].offset).toBe(6);
  const bad = await c.request<{ error: number; message: string }>(Kind.OffsetCommit, { groupId: 'no spaces', offsets: [] });
  expect(bad.error).toBe(Errors.INVALID_REQUEST.code);
  expect(bad.message).toMatch(/group id "no spaces"/);
  c.close();
});

it('ConsumerGroupHeartbeat over the wire: join, take the assignment, share it with a second member', async () => {
  const a = await RawClient.connect(broker.url);
  type Beat = { error: number; message?: string; memberId: string; memberEpoch: number; heartbeatIntervalMs: number; assignment: { topic: string; partitions: number[] }[] };
  const joinA = await a.request<Beat>(Kind.ConsumerGroupHeartbeat, { groupId: 'workers', memberId: '', memberEpoch: 0, subscribedTopics: ['orders'], ownedPartitions: [] });
  expect(joinA.error).toBe(0);
  expect(joinA.assignment).toEqual([{ topic: 'orders', partitions: [0, 1, 2] }]);
  expect(joinA.heartbeatIntervalMs).toBeGreaterThan(0);
  const b = await RawClient.connect(broker.url);
  const joinB = await b.request<Beat>(Kind.ConsumerGroupHeartbeat, { groupId: 'workers', memberId: '', memberEpoch: 0, subscribedTopics: ['orders'], ownedPartitions: [] });
  expect(joinB.assignment).toEqual([]); // a owns everything until it says it let go
  const beatA = await a.request<Beat>(Kind.ConsumerGroupHeartbeat, { groupId: 'workers', memberId: joinA.memberId, memberEpoch: joinA.memberEpoch, ownedPartitions: [{ topic: 'orders', partitions: [0, 1, 2] }] });
  const keptByA = beatA.assignment[0].partitions;
  expect(keptByA.length).toBeGreaterThanOrEqual(1);
  expect(keptByA.length).toBeLessThan(3);
  await a.request<Beat>(Kind.ConsumerGroupHeartbeat, { groupId: 'workers', memberId: joinA.memberId, memberEpoch: beatA.memberEpoch, ownedPartitions: [{ topic: 'orders', partitions: keptByA }] });
  const beatB = await b.request<Beat>(Kind.ConsumerGroupHeartbeat, { groupId: 'workers', memberId: joinB.memberId, memberEpoch: joinB.memberEpoch, ownedPartitions: [] });
  expect([...keptByA, ...beatB.assignment[0].partitions].sort()).toEqual([0, 1, 2]);
  const unknownTopic = await a.request<Beat>(Kind.ConsumerGroupHeartbeat, { groupId: 'workers', memberId: 'nobody', memberEpoch: 5, ownedPartitions: [] });
  expect(unknownTopic.error).toBe(Errors.UNKNOWN_MEMBER_ID.code);
  a.close();
  b.close();
});

it('ListGroups and DescribeGroup: members, committed offsets and lag', async () => {
  const c = await RawClient.connect(broker.url);
  const records = encodeBatch(Array.from({ length: 10 }, (_, i) => ({ value: Buffer.from(`r${i}`) })));
  await c.request(Kind.Produce, { acks: 1, partitions: [{ topic: 'orders', partition: 1, records }] });
  await c.request(Kind.OffsetCommit, { groupId: 'lagging', offsets: [{ topic: 'orders', partition: 1, offset: 4 }] });
  const listed = await c.request<{ groups: { groupId: string; members: number }[] }>(Kind.ListGroups, {});
  expect(listed.groups.map((g) => g.groupId)).toEqual(expect.arrayContaining(['billing', 'audit', 'lagging', 'workers']));
  expect(listed.groups.find((g) => g.groupId === 'workers')?.members).toBe(2);
  const described = await c.request<{ offsets: { topic: string; partition: number; committed: number; highWatermark: number; lag: number }[]; members: unknown[] }>(Kind.DescribeGroup, { groupId: 'lagging' });
  expect(described.members).toEqual([]);
  const hw = described.offsets[0].highWatermark;
  expect(described.offsets).toEqual([{ topic: 'orders', partition: 1, committed: 4, highWatermark: hw, lag: hw - 4 }]);
  expect(hw).toBeGreaterThanOrEqual(10);
  const workers = await c.request<{ members: { assignment: string[] }[] }>(Kind.DescribeGroup, { groupId: 'workers' });
  expect(workers.members.flatMap((m) => m.assignment).sort()).toEqual(['orders/0', 'orders/1', 'orders/2']);
  c.close();
});

it('ConsumerGroupHeartbeat with a topic pattern, and a pattern that is not one', async () => {
  const c = await RawClient.connect(broker.url);
  type Beat = { error: number; message?: string; assignment: { topic: string; partitions: number[] }[] };
  const joined = await c.request<Beat>(Kind.ConsumerGroupHeartbeat, { groupId: 'by-pattern', memberId: '', memberEpoch: 0, subscribedTopicPattern: 'ord*', ownedPartitions: [] });
  expect(joined.assignment).toEqual([{ topic: 'orders', partitions: [0, 1, 2] }]);
  const bad = await c.request<Beat>(Kind.ConsumerGroupHeartbeat, { groupId: 'by-pattern', memberId: '', memberEpoch: 0, subscribedTopicPattern: 'ord ers', ownedPartitions: [] });
  expect(bad.error).toBe(Errors.INVALID_REQUEST.code);
  c.close();
});
