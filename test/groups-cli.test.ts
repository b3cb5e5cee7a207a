// `tributary groups list|describe|reset-offsets` as a user runs them: the built CLI against
// a node started in-process, with offsets committed and a member in the group; and, against
// a node process, describe of a group that does not exist and of one with a live member.

import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Client } from '../devices/client.js';
import { GroupConsumer } from '../devices/group-consumer.js';
import { Kind } from '../protocol/frames.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { cliOk, runCli, startNodeProcess, stopAllNodes, tempDir } from './helpers/node-process.js';
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

describe('groups describe against a node process', () => {
  afterEach(stopAllNodes);

  it("a group that does not exist is one line and exit code 1, as Kafka's \"Consumer group 'x' does not exist\"", async () => {
    const data = tempDir();
    try {
      const node = await startNodeProcess({ dataDir: data.path });
      const r = await runCli(['groups', 'describe', 'nobody', '--broker', node.url]);
      expect(r).toEqual({ code: 1, stdout: '', stderr: "tributary: GROUP_ID_NOT_FOUND: consumer group 'nobody' does not exist\n" });
      // Reset-offsets may still give a new group its first offsets.
      await cliOk(['topics', 'create', 'fresh', '--partitions', '1', '--broker', node.url]);
      const reset = await runCli(['groups', 'reset-offsets', 'newcomer', '--topic', 'fresh', '--to-earliest', '--execute', '--broker', node.url]);
      expect(reset.code, reset.stderr).toBe(0);
      expect(reset.stdout).toMatch(/^TOPIC\s+PARTITION\s+NEW-OFFSET\nfresh\s+0\s+0\n$/);
    } finally {
      await stopAllNodes();
      data.remove();
    }
  });

  it('a live member: each partition shows its log end offset before the first commit, then the committed offset and the lag', async () => {
    const data = tempDir();
    let client: Client | undefined;
    let member: GroupConsumer | undefined;
    try {
      const node = await startNodeProcess({ dataDir: data.path });
      const cli = (args: string[], input = '') => cliOk([...args, '--broker', node.url], input);
      await cli(['topics', 'create', 'live', '--partitions', '2']);
      await cli(['produce', 'live', '--partition', '0'], 'a\nb\nc\nd\ne\n');
      await cli(['produce', 'live', '--partition', '1'], 'f\ng\nh\n');
      client = await Client.connect(node.url);
      // Commits only when told to, so what describe shows is known at each step.
      member = new GroupConsumer(client, { groupId: 'live-readers', topics: ['live'], autoCommit: false, autoOffsetReset: 'earliest' });
      const table = async () => {
        const out = await cli(['groups', 'describe', 'live-readers']);
        const [title, header, ...rows] = out.split('\n');
        return { title, header: header.split(/\s+/), rows: rows.map((l) => l.split(/\s+/)) };
      };
      const id = () => member!.memberId;

      const before = await vi.waitFor(async () => {
        const t = await table();
        expect(t.rows.map((r) => r[5])).toEqual([id(), id()]);
        return t;
      }, { timeout: 15_000, interval: 100 });
      expect(before.title).toMatch(/^Group: live-readers\tMembers: 1\tEpoch: \d+$/);
      expect(before.header).toEqual(['TOPIC', 'PARTITION', 'CURRENT-OFFSET', 'LOG-END-OFFSET', 'LAG', 'CONSUMER-ID']);
      expect(before.rows).toEqual([
        ['live', '0', '-', '5', '-', id()],
        ['live', '1', '-', '3', '-', id()],
      ]);

      let read = 0;
      for await (const _record of member) if (++read === 8) break;
      await member.commit();
      await cli(['produce', 'live', '--partition', '0'], 'i\nj\n');
      const after = await table();
      expect(after.rows).toEqual([
        ['live', '0', '5', '7', '2', id()],
        ['live', '1', '3', '3', '0', id()],
      ]);
    } finally {
      await member?.close();
      await client?.close();
      await stopAllNodes();
      data.remove();
    }
  });
});
