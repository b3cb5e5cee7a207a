// `tributary groups list|describe|reset-offsets` as a user runs them: the built CLI against
// a node started in-process, with offsets committed and a member in the group.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { Kind } from '../protocol/frames.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { runCli, tempDir } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';

const dir = tempDir();
let broker: Broker;
let admin: RawClient;

beforeAll(async () => {
  broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger });
  admin = await RawClient.connect(broker.url);
  await admin.request(Kind.CreateTopics, { topics: [{ name: 'events', partitions: 2 }] });
  for (const partition of [0, 1]) {
    const records = encodeBatch(Array.from({ length: 10 }, (_, i) => ({ value: Buffer.from(`e${i}`), timestamp: 1_800_000_000_000 + i * 1000 })));
    await admin.request(Kind.Produce, { acks: 1, partitions: [{ topic: 'events', partition, records }] });
  }
  await admin.request(Kind.OffsetCommit, { groupId: 'reporting', offsets: [{ topic: 'events', partition: 0, offset: 3 }, { topic: 'events', partition: 1, offset: 10 }] });
});

afterAll(async () => {
  admin?.close();
  await broker?.close();
  dir.remove();
});

const cli = (args: string[]) => runCli([...args, '--broker', broker.url]);

it('lists groups and describes committed offsets with their lag', async () => {
  const listed = await cli(['groups', 'list']);
  expect(listed.code, listed.stderr).toBe(0);
  expect(listed.stdout).toMatch(/^GROUP\s+MEMBERS\nreporting\s+0\n$/);
  const described = await cli(['groups', 'describe', 'reporting']);
  expect(described.code, described.stderr).toBe(0);
  const rows = described.stdout.trim().split('\n').slice(2).map((l) => l.split(/\s+/));
  expect(rows).toEqual([
    ['events', '0', '3', '10', '7', '-'],
    ['events', '1', '10', '10', '0', '-'],
  ]);
});

it('reset-offsets prints its plan, commits only with --execute, and moves by offset, time, earliest and latest', async () => {
  const plan = await cli(['groups', 'reset-offsets', 'reporting', '--topic', 'events', '--to-earliest']);
  expect(plan.code, plan.stderr).toBe(0);
  expect(plan.stderr).toMatch(/dry run: nothing committed/);
  const offsets = async () =>
    (await admin.request<{ partitions: { offset: number }[] }>(Kind.OffsetFetch, { groupId: 'reporting', partitions: [{ topic: 'events', partition: 0 }, { topic: 'events', partition: 1 }] })).partitions.map((p) => p.offset);
  expect(await offsets()).toEqual([3, 10]);
  for (const [flags, expected] of [
    [['--to-earliest'], [0, 0]],
    [['--to-latest'], [10, 10]],
    [['--to-offset', '4'], [4, 4]],
    [['--to-offset', '99'], [10, 10]],
    [['--to-datetime', new Date(1_800_000_000_000 + 6500).toISOString()], [7, 7]],
  ] as const) {
    const r = await cli(['groups', 'reset-offsets', 'reporting', '--topic', 'events', ...flags, '--execute']);
    expect(r.code, r.stderr).toBe(0);
    expect(await offsets(), flags.join(' ')).toEqual(expected);
  }
});

it('refuses to reset a group with live members, and a usage mistake, in one line', async () => {
  await admin.request(Kind.ConsumerGroupHeartbeat, { groupId: 'busy', memberId: '', memberEpoch: 0, subscribedTopics: ['events'], ownedPartitions: [] });
  const busy = await cli(['groups', 'reset-offsets', 'busy', '--topic', 'events', '--to-earliest', '--execute']);
  expect(busy.code).toBe(1);
  expect(busy.stderr).toMatch(/^tributary: INVALID_REQUEST: group busy has 1 live member; stop them before resetting its offsets\n$/);
  const two = await cli(['groups', 'reset-offsets', 'busy', '--topic', 'events', '--to-earliest', '--to-latest']);
  expect(two.code).not.toBe(0);
  expect(two.stderr).toMatch(/give exactly one of --to-earliest, --to-latest, --to-offset and --to-datetime/);
});

it('consume --group starts where the group last committed: two runs print every record once between them', async () => {
  await admin.request(Kind.CreateTopics, { topics: [{ name: 'jobs', partitions: 1 }] });
  const records = encodeBatch(Array.from({ length: 12 }, (_, i) => ({ value: Buffer.from(`job-${i}`) })));
  await admin.request(Kind.Produce, { acks: 1, partitions: [{ topic: 'jobs', partition: 0, records }] });
  const first = await cli(['consume', 'jobs', '--group', 'workers-cli', '--from-beginning', '--max-messages', '5', '--timeout-ms', '5000']);
  expect(first.code, first.stderr).toBe(0);
  const second = await cli(['consume', 'jobs', '--group', 'workers-cli', '--from-beginning', '--max-messages', '7', '--timeout-ms', '5000']);
  expect(second.code, second.stderr).toBe(0);
  const printed = [...first.stdout.trim().split('\n'), ...second.stdout.trim().split('\n')];
  expect(printed).toEqual(Array.from({ length: 12 }, (_, i) => `job-${i}`));
  const described = await cli(['groups', 'describe', 'workers-cli']);
  expect(described.stdout).toMatch(/jobs\s+0\s+12\s+12\s+0\s+-/);
  const mixed = await cli(['consume', 'jobs', '--group', 'x', '--partition', '0']);
  expect(mixed.code).not.toBe(0);
  expect(mixed.stderr).toMatch(/--group takes the partitions the group gives it/);
});
