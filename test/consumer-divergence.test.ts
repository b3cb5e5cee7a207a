// The SDK's consumers find out when a power loss took back records they had read (KIP-320),
// against a real node process that is SIGKILLed and whose log is cut as a power loss cuts
// it (test/power-loss-epochs.test.ts says why only the .log file needs cutting). Records
// carry the leader epoch of their batch; positions carry the epoch of the record before
// them. A Consumer that stays connected through the restart checks its position after the
// reconnect; a GroupConsumer checks the committed offset it starts from (a commit carries
// its epoch). Both tell the app and continue where the logs part, so the records written
// since the restart, at the offsets the lost ones had, are read. A position that stands,
// one without an epoch, 'none', and an epoch the node never had are shown too.

import { readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it, vi } from 'vitest';
import { connect, Errors, Kind, PartitionError, type Connection, type ConsumerRecord, type LogDivergence } from '../devices/index.js';
import { take } from '../devices/testing/take.js';
import { splitBatches } from '../protocol/record-batch.js';
import { startNodeProcess, stopAllNodes, tempDir } from './helpers/node-process.js';

afterEach(stopAllNodes);

const TOPIC = 'readings';
const WAIT = { timeout: 20_000, interval: 20 };
const values = (prefix: string, from: number, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${from + i}`);

/** Sends `values` in batches of 100 records, one batch per call, so batches start at multiples of 100. */
async function produceInHundreds(conn: Connection, all: string[]): Promise<void> {
  const producer = conn.producer({ lingerMs: 0 });
  for (let i = 0; i < all.length; i += 100) await producer.sendBatch(TOPIC, all.slice(i, i + 100).map((value) => ({ partition: 0, value })));
  await producer.close();
}

/** Cuts the partition's newest segment back to the batch starting at `offset`, as a power loss that synced nothing leaves it. */
function powerLossAt(partitionDir: string, offset: number): void {
  const file = join(partitionDir, readdirSync(partitionDir).filter((f) => f.endsWith('.log')).sort().at(-1) as string);
  let position = 0;
  for (const batch of splitBatches(readFileSync(file))) {
    if (Number(batch.readBigInt64BE(0)) === offset) {
      truncateSync(file, position);
      return;
    }
    position += batch.length;
  }
  throw new Error(`no batch starts at ${offset}`);
}

const summary = (records: ConsumerRecord<string>[]) => records.map((r) => [r.offset, r.value, r.leaderEpoch]);

it('consumers whose position a power loss took back say so and read every record written since; positions that stand, or carry no epoch, are left alone', async () => {
  const dir = tempDir('trib-divergence-');
  const opened: Connection[] = [];
  try {
    const config = join(dir.path, 'node.yaml');
    writeFileSync(config, 'auth:\n  anonymous: loopback\nschedule:\n  checkpoint: "0 0 0 1 1 *"\n');
    const data = join(dir.path, 'data');
    const node = await startNodeProcess({ dataDir: data, args: ['--config', config] });
    const open = async (url: string) => {
      const conn = await connect(url, { reconnect: { initialMs: 50, maxMs: 200 } });
      opened.push(conn);
      return conn;
    };
    const before = await open(node.url);
    await before.admin().createTopic(TOPIC, { partitions: 1, config: { flush: 'interval', 'flush.interval.ms': 3_600_000 } });
    await produceInHundreds(before, values('old', 0, 2000));

    // A plain consumer that stays connected through the restart.
    const staying: LogDivergence[] = [];
    const reader = before.consumer<'string'>({ autoOffsetReset: 'earliest', valueDecoding: 'string', onDivergence: (d) => void staying.push(d) });
    reader.assign([{ topic: TOPIC, partition: 0 }]);
    const read = await take(reader, 2000);
    expect(summary(read).at(-1)).toEqual([1999, 'old-1999', 0]);
    expect(read.every((r) => r.leaderEpoch === 0)).toBe(true);
    // A group member that reads everything and commits it, with the epoch of its last record.
    const member = before.groupConsumer<'string'>({ groupId: 'g', topics: [TOPIC], autoOffsetReset: 'earliest', valueDecoding: 'string' });
    expect((await take(member, 2000)).length).toBe(2000);
    await member.close();
    const committed = await before.client.request(Kind.OffsetFetch, { groupId: 'g', partitions: [{ topic: TOPIC, partition: 0 }] });
    expect(committed.partitions.map((p) => [p.offset, p.leaderEpoch])).toEqual([[2000, 0]]);
    // Group 'h' stands at 1600 in epoch 0: after the loss, 400 new records bring a member
    // back to offset 1600, in epoch 1.
    const hCommit = await before.client.request(Kind.OffsetCommit, { groupId: 'h', offsets: [{ topic: TOPIC, partition: 0, offset: 1600, leaderEpoch: 0 }] });
    expect(hCommit.partitions.map((p) => p.error)).toEqual([0]);

    await node.kill();
    powerLossAt(join(data, `${TOPIC}-0`), 1200);
    const restarted = await startNodeProcess({ dataDir: data, port: node.port, args: ['--config', config] });
    const after = await open(restarted.url);
    await produceInHundreds(after, values('new', 0, 1000));
    const diverged = { topic: TOPIC, partition: 0, position: 2000, positionLeaderEpoch: 0, leaderEpoch: 0, divergedAt: 1200 };

    // (b) After its client reconnected, the plain consumer checks its position first.
    const next = await take(reader, 1000);
    expect(staying).toEqual([diverged]);
    expect(summary(next)).toEqual(values('new', 0, 1000).map((v, i) => [1200 + i, v, 1]));

    // (a) The group's next member starts from the commit, checks it, and commits past the new records.
    const told: LogDivergence[] = [];
    const second = after.groupConsumer<'string'>({ groupId: 'g', topics: [TOPIC], valueDecoding: 'string', onDivergence: (d) => void told.push(d) });
    expect(summary(await take(second, 1000))).toEqual(values('new', 0, 1000).map((v, i) => [1200 + i, v, 1]));
    expect(told).toEqual([diverged]);
    expect([second.position(TOPIC, 0), second.positionLeaderEpoch(TOPIC, 0)]).toEqual([2200, 1]);
    await second.close();
    const recommitted = await after.client.request(Kind.OffsetFetch, { groupId: 'g', partitions: [{ topic: TOPIC, partition: 0 }] });
    expect(recommitted.partitions.map((p) => [p.offset, p.leaderEpoch])).toEqual([[2200, 1]]);

    // A member that diverged and read back to the very offset the group had committed
    // commits it again in the new epoch: the old commit would send every later member back.
    const hTold: LogDivergence[] = [];
    const third = after.groupConsumer<'string'>({ groupId: 'h', topics: [TOPIC], valueDecoding: 'string', autoCommit: false, onDivergence: (d) => void hTold.push(d) });
    expect(summary(await take(third, 400)).at(-1)).toEqual([1599, 'new-399', 1]);
    expect(hTold.map((d) => [d.position, d.divergedAt])).toEqual([[1600, 1200]]);
    await third.commit();
    await third.close();
    const hNow = await after.client.request(Kind.OffsetFetch, { groupId: 'h', partitions: [{ topic: TOPIC, partition: 0 }] });
    expect(hNow.partitions.map((p) => [p.offset, p.leaderEpoch])).toEqual([[1600, 1]]);

    // A position read in epoch 0 that the node's log still holds stands; one without an epoch is not checked.
    const quiet: LogDivergence[] = [];
    const standing = after.consumer<'string'>({ valueDecoding: 'string', onDivergence: (d) => void quiet.push(d) });
    standing.assign([{ topic: TOPIC, partition: 0, offset: 1100, leaderEpoch: 0 }]);
    expect(summary(await take(standing, 1))).toEqual([[1100, 'old-1100', 0]]);
    const unchecked = after.consumer<'string'>({ valueDecoding: 'string', onDivergence: (d) => void quiet.push(d) });
    unchecked.assign([{ topic: TOPIC, partition: 0, offset: 2000 }]);
    expect(summary(await take(unchecked, 1))).toEqual([[2000, 'new-800', 1]]);
    expect(quiet).toEqual([]);

    // autoOffsetReset 'none': the partition fails where it stood, and the app is told where to seek.
    const strictTold: LogDivergence[] = [];
    const strict = after.consumer<'string'>({ autoOffsetReset: 'none', valueDecoding: 'string', onDivergence: (d) => void strictTold.push(d) });
    strict.assign([{ topic: TOPIC, partition: 0, offset: 2000, leaderEpoch: 0 }]);
    const failed = await take(strict, 1).then(
      () => null,
      (err: unknown) => err,
    );
    expect(failed).toBeInstanceOf(PartitionError);
    expect(failed).toMatchObject({ code: Errors.OFFSET_OUT_OF_RANGE.code, offset: 2000, message: expect.stringMatching(/the log diverged: the node's log ends at 1200 in leader epoch 0/) });
    expect(strictTold).toEqual([diverged]);

    // An epoch the node's log never had (a position read from another log): continued by autoOffsetReset.
    const strangerTold: LogDivergence[] = [];
    const stranger = after.consumer<'string'>({ autoOffsetReset: 'earliest', valueDecoding: 'string', onDivergence: (d) => void strangerTold.push(d) });
    stranger.assign([{ topic: TOPIC, partition: 0, offset: 1500, leaderEpoch: 9 }]);
    expect(summary(await take(stranger, 1))).toEqual([[0, 'old-0', 0]]);
    await vi.waitFor(() => expect(strangerTold).toEqual([{ topic: TOPIC, partition: 0, position: 1500, positionLeaderEpoch: 9, leaderEpoch: -1, divergedAt: -1 }]), WAIT);
  } finally {
    for (const conn of opened) await conn.close().catch(() => undefined);
    await stopAllNodes();
    dir.remove();
  }
}, 120_000);
