// The leader's side of replication over real WebSockets: a node with a fleet key, a `node`
// credential reading its logs with ReplicaFetch as a follower would, and what must hold:
// the batches are the leader's stored bytes (above the high watermark too), the follower's
// log end is recorded, only a `node` credential is admitted, and a partition this node
// follows is refused NOT_LEADER by every request kind that touches a partition while the
// others keep being served.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { Kind, PROTOCOL_VERSION, type FetchResponse, type ReplicaFetchPartitionResult } from '../protocol/frames.js';
import { generateIdentity } from '../protocol/key-file.js';
import { OFFSET_LEADER_EPOCH, splitBatches } from '../protocol/record-batch.js';
import { principalKeyOf } from '../node/auth/acl.js';
import { startBroker, type Broker } from '../node/broker.js';
import { INTERNAL_KINDS } from '../node/server/dispatch.js';
import { silentLogger } from '../node/logger.js';
import { makeBatch, readWholeLog } from '../node/storage/testing.js';
import { holder as fleetHolder, type Holder } from './helpers/credentials.js';
import { metricSample } from './helpers/metrics.js';
import { RawClient } from './helpers/raw-client.js';
import { clockAt } from '../protocol/clock.js';

const fleet = generateIdentity();
const holder = (claims: Parameters<typeof fleetHolder>[1]): Holder => fleetHolder(fleet, claims);
const follower = holder({ role: 'node' });
const admin = holder({ role: 'admin' });
const app = holder({ role: 'app', produce: ['*'], consume: ['*'] });
const device = holder({ role: 'device', produce: ['*'], consume: ['*'] });

type ReplicaAnswer = { error?: number; message?: string; partitions: ReplicaFetchPartitionResult[] };
type PartitionAnswers = { error?: number; partitions: { partition: number; error: number; message?: string }[] };

let dataDir: string;
let broker: Broker;
/** The node's clock (its logs' and the followers' progress): moved by the tests, so that times can be told apart. */
let clock = Date.now();
const opened: RawClient[] = [];

async function raw(who: Holder): Promise<RawClient> {
  const client = await RawClient.connect(broker.url, { hello: false, identity: who.identity, credential: who.credential });
  const answer = await client.request<{ error?: number }>(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'replica-fetch-test' });
  expect(answer.error ?? 0).toBe(0);
  opened.push(client);
  return client;
}

async function start(): Promise<void> {
  broker = await startBroker({ dataDir, port: 0, logger: silentLogger, auth: { fleetPublicKey: fleet.publicKey }, clock: clockAt(() => clock) });
}

async function produce(c: RawClient, topic: string, partition: number, fill: number): Promise<{ partitions: { error: number; baseOffset: number }[] }> {
  return c.request(Kind.Produce, { acks: 1, timeoutMs: 10_000, partitions: [{ topic, partition, records: makeBatch({ records: 3, fill }) }] });
}

function replicaFetch(c: RawClient, partitions: object[], maxWaitMs = 0): Promise<ReplicaAnswer> {
  return c.request<ReplicaAnswer>(Kind.ReplicaFetch, { replicaId: 'follower-1', maxWaitMs, maxBytes: 1 << 20, partitions });
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tributary-replica-fetch-'));
  await start();
  const a = await raw(admin);
  const created = await a.request<{ topics: { error: number }[] }>(Kind.CreateTopics, {
    topics: [
      { name: 'replicated', partitions: 1, config: { flush: 'batch' } },
      { name: 'roles', partitions: 2 },
    ],
  });
  expect(created.topics.map((t) => t.error)).toEqual([0, 0]);
});

afterEach(() => {
  for (const c of opened.splice(0)) c.close();
});

afterAll(async () => {
  for (const c of opened) c.close();
  await broker?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('ReplicaFetch, the leader side', () => {
  it("answers a node's follower with the leader's stored batches byte for byte, past the high watermark, and records its log end", async () => {
    const node = await raw(follower);
    const producer = await raw(app);
    const log = broker.logs.partition('replicated', 0)!;
    expect(log.leaderEpoch).toBeGreaterThanOrEqual(0);

    // A follower at the log end waits; the append wakes it in a microtask, and it reads
    // before the fsync of flush=batch has even started (at the end of the event loop turn):
    // it gets the batch while the high watermark is still below it.
    const firstFetchAt = clock;
    const waiting = replicaFetch(node, [{ topic: 'replicated', partition: 0, fetchOffset: 0, currentLeaderEpoch: log.leaderEpoch }], 20_000);
    await expect.poll(() => broker.stats().fetchesWaiting).toBe(1);
    const produced = await produce(producer, 'replicated', 0, 1);
    expect(produced.partitions[0].error).toBe(0);
    const above = (await waiting).partitions[0];
    expect(above.error).toBe(Errors.NONE.code);
    expect(above).toMatchObject({ leaderEpoch: log.leaderEpoch, highWatermark: 0, logStartOffset: 0, logEndOffset: 3 });
    expect(Buffer.from(above.records)).toEqual(readWholeLog(join(dataDir, 'replicated-0')));

    expect((await produce(producer, 'replicated', 0, 2)).partitions[0].error).toBe(0);
    expect((await produce(producer, 'replicated', 0, 3)).partitions[0].error).toBe(0);
    const all = (await replicaFetch(node, [{ topic: 'replicated', partition: 0, fetchOffset: 0 }])).partitions[0];
    expect(all).toMatchObject({ error: 0, leaderEpoch: log.leaderEpoch, highWatermark: 9, logStartOffset: 0, logEndOffset: 9 });
    const stored = readWholeLog(join(dataDir, 'replicated-0'));
    expect(Buffer.from(all.records)).toEqual(stored);
    expect(splitBatches(stored)).toHaveLength(3);
    // A consumer's Fetch of the same offsets gets the same bytes.
    const consumer = await producer.request<FetchResponse>(Kind.Fetch, { maxWaitMs: 0, partitions: [{ topic: 'replicated', partition: 0, fetchOffset: 0, maxBytes: 1 << 20 }] });
    expect(Buffer.from(consumer.partitions[0].records)).toEqual(Buffer.from(all.records));

    // Its first fetch, from 0 when the log ended at 0, had the whole log: caught up then. Its
    // second, from 0 when the log ended at 9, did not, but had what the leader had at the
    // first, so it stays caught up as of the first (Kafka's rule).
    const key = principalKeyOf(follower.identity.publicKey);
    expect(broker.replicaProgress.followersOf(log)).toEqual([{ follower: key, replicaId: 'follower-1', logEndOffset: 0, lastFetchTimeMs: firstFetchAt, lastCaughtUpTimeMs: firstFetchAt }]);
    // From 3, short of the 9 the leader had at its previous fetch: no longer caught up since.
    clock += 1000;
    expect((await replicaFetch(node, [{ topic: 'replicated', partition: 0, fetchOffset: 3 }])).partitions[0].error).toBe(0);
    expect(broker.replicaProgress.followersOf(log)).toEqual([{ follower: key, replicaId: 'follower-1', logEndOffset: 3, lastFetchTimeMs: clock, lastCaughtUpTimeMs: firstFetchAt }]);
    // From the log end it has all of it: caught up at that fetch.
    clock += 1000;
    const caughtUp = (await replicaFetch(node, [{ topic: 'replicated', partition: 0, fetchOffset: 9 }])).partitions[0];
    expect(caughtUp).toMatchObject({ error: 0, logEndOffset: 9 });
    expect(caughtUp.records).toHaveLength(0);
    expect(broker.replicaProgress.followersOf(log)).toEqual([{ follower: key, replicaId: 'follower-1', logEndOffset: 9, lastFetchTimeMs: clock, lastCaughtUpTimeMs: clock }]);
  });

  it('answers an offset past the log end OFFSET_OUT_OF_RANGE with the leader offsets, and records nothing for it', async () => {
    const node = await raw(follower);
    const log = broker.logs.partition('replicated', 0)!;
    const before = broker.replicaProgress.followersOf(log);
    const past = (await replicaFetch(node, [{ topic: 'replicated', partition: 0, fetchOffset: log.logEndOffset + 1 }])).partitions[0];
    expect(past).toMatchObject({ error: Errors.OFFSET_OUT_OF_RANGE.code, leaderEpoch: log.leaderEpoch, logStartOffset: 0, logEndOffset: log.logEndOffset });
    expect(past.records).toHaveLength(0);
    expect(broker.replicaProgress.followersOf(log)).toEqual(before);
  });

  it('refuses a leader epoch newer than the leader\'s UNKNOWN_LEADER_EPOCH and unknown partitions UNKNOWN_TOPIC', async () => {
    const node = await raw(follower);
    const log = broker.logs.partition('replicated', 0)!;
    const answer = await replicaFetch(node, [
      { topic: 'replicated', partition: 0, fetchOffset: 0, currentLeaderEpoch: log.leaderEpoch + 1 },
      { topic: 'replicated', partition: 7, fetchOffset: 0 },
      { topic: 'nowhere', partition: 0, fetchOffset: 0 },
    ]);
    expect(answer.partitions.map((p) => p.error)).toEqual([Errors.UNKNOWN_LEADER_EPOCH.code, Errors.UNKNOWN_TOPIC.code, Errors.UNKNOWN_TOPIC.code]);
    expect(answer.partitions[0]).toMatchObject({ leaderEpoch: log.leaderEpoch, logEndOffset: log.logEndOffset });
    expect(answer.partitions[1]).toMatchObject({ leaderEpoch: -1, logEndOffset: -1 });
  });

  it('refuses every principal but a node CLUSTER_AUTHORIZATION_FAILED, counts it, and keeps serving the connection', async () => {
    expect([...INTERNAL_KINDS]).toEqual([Kind.ReplicaFetch]);
    const series = 'tributary_requests_unauthorized_total{action="clusterAction"}';
    const countedBefore = (await metricSample(broker.port, series)) || 0;
    for (const who of [admin, app, device]) {
      const c = await raw(who);
      const answer = await replicaFetch(c, [{ topic: 'replicated', partition: 0, fetchOffset: 0 }]);
      expect(answer.error).toBe(Errors.CLUSTER_AUTHORIZATION_FAILED.code);
      expect(answer.message).toMatch(/may not make requests between nodes, such as 'ReplicaFetch'/);
      expect(answer.partitions).toBeUndefined();
      const metadata = await c.request<{ error?: number; topics: unknown[] }>(Kind.Metadata, { topics: ['replicated'] });
      expect(metadata.error ?? 0).toBe(0);
    }
    expect(await metricSample(broker.port, series)).toBe(countedBefore + 3);
    expect(broker.replicaProgress.followersOf(broker.logs.partition('replicated', 0)!).map((f) => f.follower)).toEqual([principalKeyOf(follower.identity.publicKey)]);
  });
});

describe('the partition-role lookup', () => {
  it('refuses a partition this node follows NOT_LEADER in every request kind that touches one, and serves the partition it leads', async () => {
    const a = await raw(admin);
    const node = await raw(follower);
    expect((await produce(a, 'roles', 0, 1)).partitions[0].error).toBe(0);
    expect((await produce(a, 'roles', 1, 1)).partitions[0].error).toBe(0);
    // Subscribed while led here, so that a push shows the change of role.
    const subscribed = await a.request<{ subscriptionId: number; partitions: { error: number }[] }>(Kind.Subscribe, {
      creditBytes: 1 << 20,
      partitions: [{ topic: 'roles', partition: 1, fetchOffset: 3, maxBytes: 1 << 20 }],
    });
    expect(subscribed.partitions[0].error).toBe(0);

    await broker.partitionRoles.follow('roles', 1, 'node-b');
    expect(broker.partitionRoles.roleOf('roles', 1)).toBe('follower');
    expect(broker.partitionRoles.roleOf('roles', 0)).toBe('leader');
    expect(broker.partitionRoles.roleOf('roles', 2)).toBe('none');
    const both = (fields: object) => [0, 1].map((partition) => ({ topic: 'roles', partition, ...fields }));
    const errors = (answer: PartitionAnswers) => answer.partitions.map((p) => p.error);
    const NOT_LEADER = Errors.NOT_LEADER.code;

    const produced = await a.request<PartitionAnswers>(Kind.Produce, { acks: 1, timeoutMs: 10_000, partitions: both({ records: makeBatch() }) });
    expect(errors(produced)).toEqual([0, NOT_LEADER]);
    expect(produced.partitions[1].message).toMatch(/node node-b does/);
    const fetched = await a.request<PartitionAnswers>(Kind.Fetch, { maxWaitMs: 0, partitions: both({ fetchOffset: 0, maxBytes: 1 << 20 }) });
    expect(errors(fetched)).toEqual([0, NOT_LEADER]);
    const listed = await a.request<PartitionAnswers>(Kind.ListOffsets, { partitions: both({ timestamp: -1 }) });
    expect(errors(listed)).toEqual([0, NOT_LEADER]);
    const subscribe = await a.request<PartitionAnswers>(Kind.Subscribe, { creditBytes: 1 << 20, partitions: both({ fetchOffset: 0, maxBytes: 1 << 20 }) });
    expect(errors(subscribe)).toEqual([0, NOT_LEADER]);
    const replica = await replicaFetch(node, both({ fetchOffset: 0 }));
    expect(replica.partitions.map((p) => p.error)).toEqual([0, NOT_LEADER]);
    expect(replica.partitions[1]).toMatchObject({ leaderEpoch: -1, logEndOffset: -1 });

    // Metadata names the leader the lookup knows: this node, or the one followed ('' if unknown).
    type Metadata = { topics: { partitions: { partition: number; leader: string; leaderEpoch: number }[] }[] };
    const leaders = async () => (await a.request<Metadata>(Kind.Metadata, { topics: ['roles'] })).topics[0].partitions.map((p) => p.leader);
    expect(await leaders()).toEqual([broker.nodeId, 'node-b']);
    const metadata = await a.request<Metadata>(Kind.Metadata, { topics: ['roles'] });
    expect(metadata.topics[0].partitions.map((p) => p.leaderEpoch)).toEqual([0, 1].map((p) => broker.logs.partition('roles', p)!.leaderEpoch));
    await broker.partitionRoles.follow('roles', 1);
    expect(await leaders()).toEqual([broker.nodeId, '']);

    // The subscription taken while it was led here is told NOT_LEADER, once, and the
    // partition leaves it: the change of role woke it, no append needed.
    expect(() => broker.logs.partition('roles', 1)!.append(makeBatch({ fill: 9 }))).toThrow(/NOT_LEADER/);
    let push = await a.nextPush(10_000);
    while (push !== null && (push.body.subscriptionId as number) !== subscribed.subscriptionId) push = await a.nextPush(10_000);
    expect((push?.body.partitions as { partition: number; error: number }[]).map((p) => [p.partition, p.error])).toEqual([[1, NOT_LEADER]]);

    // Led here again: served again.
    const log = broker.logs.partition('roles', 1)!;
    const epoch = log.leaderEpoch + 1;
    await broker.partitionRoles.lead('roles', 1, epoch);
    expect(log.leaderEpochs().at(-1)).toEqual({ epoch, startOffset: log.logEndOffset });
    expect(errors(await a.request<PartitionAnswers>(Kind.Produce, { acks: 1, timeoutMs: 10_000, partitions: both({ records: makeBatch() }) }))).toEqual([0, 0]);
    expect(await leaders()).toEqual([broker.nodeId, broker.nodeId]);
  });

  // Bounded below the 30 s long poll: without the wake the answer would come only when it ends.
  it('wakes a long poll waiting on a partition that comes to be followed, and answers it NOT_LEADER', { timeout: 15_000 }, async () => {
    const a = await raw(admin);
    const log = broker.logs.partition('roles', 0)!;
    const waiting = a.request<PartitionAnswers>(Kind.Fetch, { maxWaitMs: 30_000, partitions: [{ topic: 'roles', partition: 0, fetchOffset: log.logEndOffset, maxBytes: 1 << 20 }] });
    // The fetch is parked once its partition has a waiter on it.
    while (broker.stats().fetchesWaiting === 0) await new Promise((r) => setImmediate(r));
    await broker.partitionRoles.follow('roles', 0, 'node-b');
    const answer = await waiting;
    expect(answer.partitions.map((p) => p.error)).toEqual([Errors.NOT_LEADER.code]);
    await broker.partitionRoles.lead('roles', 0, log.leaderEpoch + 1);
  });
});

describe('a leader epoch behind the leader', () => {
  it('is refused FENCED_LEADER_EPOCH after an unclean restart began a new epoch, and the batches of both epochs are served as stored', async () => {
    const epochBefore = broker.logs.partition('replicated', 0)!.leaderEpoch;
    for (const c of opened.splice(0)) c.close();
    await broker.close();
    // A crash: no clean-shutdown marker. The leader begins a new epoch at the recovered log end.
    rmSync(join(dataDir, '.clean-shutdown'));
    expect(existsSync(join(dataDir, '.clean-shutdown'))).toBe(false);
    await start();
    const log = broker.logs.partition('replicated', 0)!;
    expect(log.leaderEpoch).toBe(epochBefore + 1);
    const producer = await raw(app);
    expect((await produce(producer, 'replicated', 0, 4)).partitions[0].error).toBe(0);

    const node = await raw(follower);
    const fenced = (await replicaFetch(node, [{ topic: 'replicated', partition: 0, fetchOffset: 0, currentLeaderEpoch: epochBefore }])).partitions[0];
    expect(fenced).toMatchObject({ error: Errors.FENCED_LEADER_EPOCH.code, leaderEpoch: epochBefore + 1 });
    expect(fenced.records).toHaveLength(0);
    const current = (await replicaFetch(node, [{ topic: 'replicated', partition: 0, fetchOffset: 0, currentLeaderEpoch: epochBefore + 1 }])).partitions[0];
    expect(current.error).toBe(0);
    expect(Buffer.from(current.records)).toEqual(readWholeLog(join(dataDir, 'replicated-0')));
    expect(splitBatches(Buffer.from(current.records)).map((b) => b.readInt32BE(OFFSET_LEADER_EPOCH))).toEqual([epochBefore, epochBefore, epochBefore, epochBefore + 1]);
  });
});
