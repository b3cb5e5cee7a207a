// A follower in this process replicating a partition of a real node process over ReplicaFetch
// and OffsetsForLeaderEpoch, with a `node` credential, as sync/ will: its log ends
// byte-identical to the leader's, and stays so across a power loss of the leader that took
// back records the follower already had (KIP-101). The leader's topic is at flush=interval
// with a long interval and the checkpoint job scheduled never, so nothing of its log is
// fsynced and a SIGKILL plus a cut of the segment is what a power loss leaves
// (test/power-loss-epochs.test.ts says why only the .log file needs cutting). After the
// restart the leader begins epoch 1 at the cut and writes other records at the offsets the
// lost ones had; the follower must find where the logs part, cut its own there, and fetch
// the leader's new records.

import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { Kind, PROTOCOL_VERSION, type OffsetsForLeaderEpochResponse, type ReplicaFetchPartitionResult } from '../protocol/frames.js';
import { generateIdentity } from '../protocol/key-file.js';
import { OFFSET_LEADER_EPOCH, splitBatches } from '../protocol/record-batch.js';
import { parseTopicConfig } from '../node/storage/config.js';
import { truncateToLeader } from '../node/storage/follower-truncation.js';
import { LEADER_EPOCH_CHECKPOINT_FILE } from '../node/storage/leader-epoch.js';
import { PartitionLog } from '../node/storage/partition-log.js';
import { makeBatch, readWholeLog } from '../node/storage/testing.js';
import { holder as fleetHolder, type Holder } from './helpers/credentials.js';
import { startNodeProcess, stopAllNodes, tempDir } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';

const TOPIC = 'mirrored';
const fleet = generateIdentity();
const holder = (claims: Parameters<typeof fleetHolder>[1]): Holder => fleetHolder(fleet, claims);
const nodeHolder = holder({ role: 'node' });
const admin = holder({ role: 'admin' });
const app = holder({ role: 'app', produce: [TOPIC], consume: [TOPIC] });
const stranger = holder({ role: 'app', produce: ['other'], consume: ['other'] });

const opened: RawClient[] = [];
afterEach(async () => {
  for (const c of opened.splice(0)) c.close();
  await stopAllNodes();
});

async function raw(url: string, who: Holder): Promise<RawClient> {
  const client = await RawClient.connect(url, { hello: false, identity: who.identity, credential: who.credential });
  const answer = await client.request<{ error?: number }>(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'replica-follower-test' });
  expect(answer.error ?? 0).toBe(0);
  opened.push(client);
  return client;
}

async function produce(c: RawClient, batches: number, fill: number): Promise<void> {
  for (let i = 0; i < batches; i++) {
    const answer = await c.request<{ partitions: { error: number }[] }>(Kind.Produce, {
      acks: 1,
      timeoutMs: 10_000,
      partitions: [{ topic: TOPIC, partition: 0, records: makeBatch({ records: 1 + (i % 3), valueBytes: 60, fill: fill + i }) }],
    });
    expect(answer.partitions[0].error).toBe(0);
  }
}

type ReplicaAnswer = { error?: number; partitions: ReplicaFetchPartitionResult[] };

/**
 * Fetches from the follower's log end until it has the leader's log end, small reads so
 * that it takes several rounds, appending what comes and taking the leader's high
 * watermark. Returns the last answer.
 */
async function replicate(leader: RawClient, follower: PartitionLog): Promise<ReplicaFetchPartitionResult> {
  for (let round = 0; round < 1000; round++) {
    const answer = await leader.request<ReplicaAnswer>(Kind.ReplicaFetch, {
      replicaId: 'test-follower',
      maxWaitMs: 0,
      maxBytes: 1 << 20,
      partitions: [{ topic: TOPIC, partition: 0, fetchOffset: follower.logEndOffset, maxBytes: 700 }],
    });
    const p = answer.partitions[0];
    expect([answer.error ?? 0, p.error]).toEqual([0, 0]);
    if (p.records.length > 0) await follower.appendAsFollower(Buffer.from(p.records));
    follower.updateHighWatermark(p.highWatermark);
    if (follower.logEndOffset === p.logEndOffset) return p;
  }
  throw new Error('the follower did not catch up in 1000 rounds');
}

async function endOffsetsFor(c: RawClient, partitions: { topic: string; partition: number; leaderEpoch: number }[]): Promise<OffsetsForLeaderEpochResponse['partitions']> {
  return (await c.request<OffsetsForLeaderEpochResponse>(Kind.OffsetsForLeaderEpoch, { partitions })).partitions;
}

it("replicates a partition byte-identically, and after the leader's power loss cuts its own log where the two part and fetches the leader's new records", async () => {
  const dir = tempDir('trib-follower-');
  let follower: PartitionLog | undefined;
  try {
    const config = join(dir.path, 'node.yaml');
    writeFileSync(config, 'schedule:\n  checkpoint: "0 0 0 1 1 *"\n');
    const data = join(dir.path, 'leader');
    const args = ['--config', config, '--fleet-key', fleet.publicKey.toString('hex')];
    const first = await startNodeProcess({ dataDir: data, args });
    const created = await (await raw(first.url, admin)).request<{ topics: { error: number }[] }>(Kind.CreateTopics, {
      topics: [{ name: TOPIC, partitions: 1, config: { flush: 'interval', 'flush.interval.ms': 3_600_000 } }],
    });
    expect(created.topics[0].error).toBe(0);
    await produce(await raw(first.url, app), 40, 0);

    follower = await PartitionLog.open(join(dir.path, 'follower', `${TOPIC}-0`), TOPIC, 0, parseTopicConfig({ flush: 'os' }), { follower: true });
    const caughtUp = await replicate(await raw(first.url, nodeHolder), follower);
    expect(caughtUp.logEndOffset).toBe(79); // 40 batches of 1, 2, 3, 1, ... records
    expect(follower.highWatermark).toBe(caughtUp.highWatermark);
    const leaderDir = join(data, `${TOPIC}-0`);
    const followerDir = join(dir.path, 'follower', `${TOPIC}-0`);
    expect(readWholeLog(followerDir).equals(readWholeLog(leaderDir))).toBe(true);
    expect(follower.leaderEpochs()).toEqual([{ epoch: 0, startOffset: 0 }]);

    // The leader's power loss: its log back to the batch at or after offset 50.
    await first.kill();
    const leaderBytes = readWholeLog(leaderDir);
    let position = 0;
    let cut = -1;
    for (const batch of splitBatches(leaderBytes)) {
      const base = Number(batch.readBigInt64BE(0));
      if (base >= 50) {
        cut = base;
        break;
      }
      position += batch.length;
    }
    expect(cut).toBeGreaterThanOrEqual(50);
    truncateSync(join(leaderDir, '00000000000000000000.log'), position);

    const second = await startNodeProcess({ dataDir: data, args });
    await produce(await raw(second.url, app), 12, 100);
    const leader = await raw(second.url, nodeHolder);

    // OffsetsForLeaderEpoch as the leader answers it (KIP-279): the largest epoch at or below
    // the one asked, and where the next began; the latest ends at the log end.
    const ends = await endOffsetsFor(leader, [0, 1, 7].map((leaderEpoch) => ({ topic: TOPIC, partition: 0, leaderEpoch })));
    expect(ends.map((e) => [e.error, e.leaderEpoch, e.endOffset])).toEqual([
      [0, 0, cut],
      [0, 1, cut + 24], // 12 batches of 1, 2, 3, 1, ... records
      [0, -1, -1], // an epoch the leader never reached: UNDEFINED
    ]);
    // Asked with the right to consume the topic; an unknown partition is said so.
    const asApp = await endOffsetsFor(await raw(second.url, app), [{ topic: TOPIC, partition: 0, leaderEpoch: 0 }]);
    expect(asApp.map((e) => [e.error, e.endOffset])).toEqual([[0, cut]]);
    const refused = await endOffsetsFor(await raw(second.url, stranger), [
      { topic: TOPIC, partition: 0, leaderEpoch: 0 },
      { topic: 'other', partition: 0, leaderEpoch: 0 },
    ]);
    expect(refused.map((e) => e.error)).toEqual([Errors.UNAUTHORIZED.code, Errors.UNKNOWN_TOPIC.code]);
    expect(refused[0]).toMatchObject({ leaderEpoch: -1, endOffset: -1 });

    // The follower asks about its latest epoch (0), learns the leader's ended at the cut, and cuts there.
    const asked: number[] = [];
    const fetchFrom = await truncateToLeader(follower, async (epoch) => {
      asked.push(epoch);
      const [answer] = await endOffsetsFor(leader, [{ topic: TOPIC, partition: 0, leaderEpoch: epoch }]);
      expect(answer.error).toBe(0);
      return { leaderEpoch: answer.leaderEpoch, endOffset: answer.endOffset };
    });
    expect(asked).toEqual([0]);
    expect(fetchFrom).toBe(cut);
    expect(follower.logEndOffset).toBe(cut);
    expect(follower.highWatermark).toBeLessThanOrEqual(cut);

    const after = await replicate(leader, follower);
    expect(after.logEndOffset).toBe(cut + 24);
    expect(after.leaderEpoch).toBe(1);
    expect(readWholeLog(followerDir).equals(readWholeLog(leaderDir))).toBe(true);
    expect(follower.leaderEpochs()).toEqual([{ epoch: 0, startOffset: 0 }, { epoch: 1, startOffset: cut }]);
    expect(readFileSync(join(followerDir, LEADER_EPOCH_CHECKPOINT_FILE), 'latin1')).toBe(readFileSync(join(leaderDir, LEADER_EPOCH_CHECKPOINT_FILE), 'latin1'));
    // The records the follower had past the cut are gone; the leader's new ones, in epoch 1, stand there.
    const epochs = splitBatches(readWholeLog(followerDir)).map((b) => b.readInt32BE(OFFSET_LEADER_EPOCH));
    expect(epochs.filter((e) => e === 1)).toHaveLength(12);
    expect(epochs.slice(0, epochs.length - 12).every((e) => e === 0)).toBe(true);
  } finally {
    await follower?.close();
    await stopAllNodes();
    dir.remove();
  }
}, 120_000);
