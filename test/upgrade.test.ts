// Upgrades: a data folder written by an earlier release opens with this build and keeps all
// it holds. test/fixtures/data-16f6c16 has two folders that commit 16f6c16 wrote through a
// real node, its command line and its SDK (test/fixtures/make-data-16f6c16.mjs): `clean`,
// stopped by SIGTERM (the clean-shutdown marker: indexes trusted, producer state from the
// snapshots), and `unclean`, SIGKILLed after writes to a flush=interval topic (every tail
// scanned, the producer state of those writes replayed from their batch headers). Each is
// copied, never opened in place, and started with this build, which must serve every record
// with its offset, key, value, timestamp and headers, the groups' committed offsets and the
// topics' own configs; recognise a resend of each partition's last idempotent batch (so the
// producer state came through); continue at the old log end; and open again what it wrote.

import { chmodSync, cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { connect, type Connection, type ConsumerRecord } from '../devices/index.js';
import { Errors } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import { readBatchHeader, splitBatches } from '../protocol/record-batch.js';
import { RawClient } from './helpers/raw-client.js';
import { cliOk, ROOT, startNodeProcess, stopAllNodes, tempDir, type NodeProcess, logLines, type LogLine } from './helpers/node-process.js';

const FIXTURE = join(ROOT, 'test/fixtures/data-16f6c16');
/** A time after every record of the fixture, for the records this build appends. */
const APPENDED_AT = Date.UTC(2027, 0, 1);

interface StoredRecord {
  offset: number;
  timestamp: number;
  key: string | null;
  value: string | null;
  headers: [string, string | null][];
}

interface StoredPartition {
  partition: number;
  logStartOffset: number;
  logEndOffset: number;
  records: StoredRecord[];
}

type Topics = Record<string, StoredPartition[]>;

/** What the 16f6c16 node served from the folders before it stopped (make-data-16f6c16.mjs). */
interface Expected {
  commit: string;
  topics: Topics;
  groups: Record<string, { topic: string; partition: number; committed: number }[]>;
  configs: Record<string, Record<string, string>>;
  /** `readings` in unclean/; the rest is as in clean/. */
  uncleanReadings: StoredPartition[];
}


const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as Expected;

afterEach(stopAllNodes);

describe.each([
  { variant: 'clean', topics: expected.topics },
  { variant: 'unclean', topics: { ...expected.topics, readings: expected.uncleanReadings } },
])(`a data folder written by ${expected.commit.slice(0, 7)} ($variant)`, ({ variant, topics }) => {
  it('opens with every record, committed offset and topic config, keeps its producers, and grows from its old log end', async () => {
    const dir = tempDir('trib-upgrade-');
    try {
      const dataDir = join(dir.path, 'data');
      cpSync(join(FIXTURE, variant), dataDir, { recursive: true });
      // Git keeps no permission bit but the executable one, and the node refuses a key file
      // that others can read.
      chmodSync(join(dataDir, 'node.key'), 0o600);
      const config = join(dir.path, 'node.yaml');
      // The offsets were committed the day the fixture was made, by groups that have no live
      // member now: after Kafka's 7 days, a retention run during the test would delete them.
      // A config file ends dev mode, so anonymous loopback clients are let in by name.
      writeFileSync(config, 'auth:\n  anonymous: loopback\nlimits:\n  offsetsRetentionMs: -1\n');
      const start = () => startNodeProcess({ dataDir, args: ['--config', config, '--log-level', 'info'] });

      const node = await start();
      await expectStartLog(node, variant);
      expectEpochsGained(dataDir, variant, topics);
      await expectEverythingKept(node, topics);
      await expectProducersKept(node, topics);
      await expectGroupsResume(node, topics);

      const grown = await appendOnePerPartition(node, topics);
      await expectAppendedInEpoch(node, grown, variant === 'clean' ? 0 : 1);
      expect(await node.stop()).toBe(0);

      // What this build wrote over the old folder, it opens again.
      const reopened = await start();
      expect(warnings(reopened)).toEqual([]);
      // A clean stop: the epochs stand as they were, and no new one begins.
      const before = readEpochs(dataDir, grown);
      expectEpochsGained(dataDir, variant, topics);
      expect(readEpochs(dataDir, grown)).toEqual(before);
      const tb = await connect(reopened.url, { clientId: 'upgrade-test' });
      try {
        expect(await readAll(tb, Object.keys(topics))).toEqual(grown);
      } finally {
        await tb.close();
      }
      expect(await reopened.stop()).toBe(0);
    } finally {
      dir.remove();
    }
  });
});

/**
 * A clean start trusts the folder: no tail is checked and no index file of 16f6c16 is found
 * wanting. An unclean one checks every tail and, SIGKILL keeping the page cache, cuts nothing.
 * The committed offsets are loaded after the partitions are opened and their recovery logged,
 * in the same stream: once that line is in, so is every line about the partitions.
 */
async function expectStartLog(node: NodeProcess, variant: string): Promise<void> {
  const committed = Object.values(expected.groups);
  const loaded = await vi.waitFor(() => {
    const line = logLines(node).find((l) => l.msg === 'committed offsets loaded');
    expect(line).toBeDefined();
    return line;
  });
  expect(loaded).toMatchObject({ groups: committed.length, partitions: committed.flat().length });
  const lines = logLines(node);
  const summary = lines.find((l) => /clean-shutdown marker/.test(l.msg));
  if (variant === 'clean') expect(summary).toBeUndefined();
  else expect(summary).toMatchObject({ level: 30, partitionsCut: 0 });
  expect(lines.filter((l) => /rebuilt the indexes/.test(l.msg))).toEqual([]);
  expect(warnings(node)).toEqual([]);
}

/**
 * 16f6c16 wrote no leader-epoch checkpoint and stamped every batch with epoch 0: each
 * partition gains a checkpoint rebuilt from its batches, epoch 0 from its first batch. After
 * the unclean stop a new epoch, 1, begins at the log end (what a power loss took could be
 * handed out again), unless the partition never held a record, which had no epoch to leave.
 */
function expectEpochsGained(dataDir: string, variant: string, topics: Topics): void {
  for (const [topic, partitions] of Object.entries(topics)) {
    for (const { partition, logStartOffset, logEndOffset, records } of partitions) {
      const entries = readEpochs(dataDir, { [topic]: [partitions[partition]] })[`${topic}-${partition}`];
      if (records.length === 0 && logStartOffset === logEndOffset) {
        expect(entries, `${topic}-${partition}`).toEqual([[0, logEndOffset]]);
        continue;
      }
      const [first, ...rest] = entries;
      expect(first[0], `${topic}-${partition}: the first epoch`).toBe(0);
      expect(first[1], `${topic}-${partition}: where epoch 0 begins`).toBeGreaterThanOrEqual(logStartOffset);
      expect(first[1], `${topic}-${partition}: where epoch 0 begins`).toBeLessThanOrEqual(records[0]?.offset ?? logEndOffset);
      expect(rest, `${topic}-${partition}: the epochs after 0`).toEqual(variant === 'clean' ? [] : [[1, logEndOffset]]);
    }
  }
}

/** Each partition's leader-epoch-checkpoint as [epoch, start offset] pairs, by `topic-partition`. */
function readEpochs(dataDir: string, topics: Topics): Record<string, [number, number][]> {
  const out: Record<string, [number, number][]> = {};
  for (const [topic, partitions] of Object.entries(topics)) {
    for (const { partition } of partitions) {
      const lines = readFileSync(join(dataDir, `${topic}-${partition}`, 'leader-epoch-checkpoint'), 'latin1').split('\n');
      expect(lines.slice(0, 2), `${topic}-${partition}: version and count`).toEqual(['0', String(lines.length - 3)]);
      out[`${topic}-${partition}`] = lines.slice(2, -1).map((l) => l.split(' ').map(Number) as [number, number]);
    }
  }
  return out;
}

/** The partition's last stored batch, fetched from the offset before its log end. */
async function lastBatch(raw: RawClient, topic: string, partition: number, logEndOffset: number): Promise<Buffer> {
  const fetched = await raw.request<{ partitions: { error: number; records: Uint8Array }[] }>(Kind.Fetch, {
    maxWaitMs: 0,
    minBytes: 0,
    maxBytes: 1 << 20,
    partitions: [{ topic, partition, fetchOffset: logEndOffset - 1, maxBytes: 1 << 20 }],
  });
  expect(fetched.partitions[0].error, `${topic}-${partition}: fetch of the last batch`).toBe(Errors.NONE.code);
  return splitBatches(Buffer.from(fetched.partitions[0].records)).at(-1) as Buffer;
}

/** The batch appended after the upgrade carries the partition's current leader epoch. */
async function expectAppendedInEpoch(node: NodeProcess, topics: Topics, epoch: number): Promise<void> {
  const raw = await RawClient.connect(node.url);
  try {
    for (const [topic, partitions] of Object.entries(topics)) {
      for (const { partition, logEndOffset } of partitions) {
        const last = await lastBatch(raw, topic, partition, logEndOffset);
        expect(readBatchHeader(last).partitionLeaderEpoch, `${topic}-${partition}: the appended batch's leader epoch`).toBe(epoch);
      }
    }
  } finally {
    raw.close();
  }
}

async function expectEverythingKept(node: NodeProcess, topics: Topics): Promise<void> {
  const tb = await connect(node.url, { clientId: 'upgrade-test' });
  try {
    expect(await readAll(tb, Object.keys(topics))).toEqual(topics);
  } finally {
    await tb.close();
  }
  const listed = (await cliOk(['topics', 'list', '--broker', node.url])).split('\n');
  for (const topic of Object.keys(topics)) expect(listed).toContain(topic);
  for (const [topic, overrides] of Object.entries(expected.configs)) {
    // KEY VALUE SOURCE; a key set on the topic (at creation or by `topics alter`) says `topic`.
    const rows = (await cliOk(['topics', 'configs', topic, '--broker', node.url])).split('\n').slice(1).map((l) => l.trim().split(/\s+/));
    expect(Object.fromEntries(rows.filter(([, , source]) => source === 'topic').map(([key, value]) => [key, value]))).toEqual(overrides);
  }
}

/**
 * Every partition's last batch came from an idempotent producer (the SDK's, or the CLI's on
 * top of it); sent again as it is stored, it must be answered as the duplicate it is, at its
 * original offset, and not appended: the node knows the producer's last sequences, from the
 * snapshot 16f6c16 wrote or from replaying the headers after it.
 */
async function expectProducersKept(node: NodeProcess, topics: Topics): Promise<void> {
  const raw = await RawClient.connect(node.url);
  try {
    for (const [topic, partitions] of Object.entries(topics)) {
      for (const { partition, logEndOffset } of partitions) {
        const last = await lastBatch(raw, topic, partition, logEndOffset);
        const header = readBatchHeader(last);
        expect(header.baseOffset + header.lastOffsetDelta, `${topic}-${partition}: the last batch`).toBe(logEndOffset - 1);
        expect(header.producerId, `${topic}-${partition}: the last batch's producer id`).toBeGreaterThanOrEqual(0);
        const answer = await raw.request<{ partitions: { error: number; baseOffset: number }[] }>(Kind.Produce, {
          acks: 1,
          timeoutMs: 10_000,
          partitions: [{ topic, partition, records: last }],
        });
        expect(answer.partitions[0], `${topic}-${partition}: the resent batch`).toMatchObject({ error: Errors.DUPLICATE_SEQUENCE.code, baseOffset: header.baseOffset });
      }
    }
  } finally {
    raw.close();
  }
}

/** The committed offsets are as they were, and a member of the group resumes at them. */
async function expectGroupsResume(node: NodeProcess, topics: Topics): Promise<void> {
  for (const [group, offsets] of Object.entries(expected.groups)) {
    // TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID, after a header line.
    const rows = (await cliOk(['groups', 'describe', group, '--broker', node.url])).split('\n').slice(2).map((l) => l.trim().split(/\s+/));
    expect(rows).toEqual(
      offsets.map(({ topic, partition, committed }) => {
        const logEnd = topics[topic][partition].logEndOffset;
        return [topic, String(partition), String(committed), String(logEnd), String(logEnd - committed), '-'];
      }),
    );
  }
  const billing = expected.groups.billing;
  const unread = billing.flatMap(({ topic, partition, committed }) =>
    topics[topic][partition].records.filter((r) => r.offset >= committed).map((r) => `${partition}:${r.offset}\t${r.value}`),
  );
  const consumed = await cliOk(['consume', 'sensors', '--group', 'billing', '--print-offset', '--max-messages', String(unread.length), '--timeout-ms', '10000', '--broker', node.url]);
  expect(consumed.split('\n').sort()).toEqual(unread.sort());
}

/**
 * Appends one record to every partition: each lands at its partition's old log end, and the
 * topics then read as before with that record after. Returns them so.
 */
async function appendOnePerPartition(node: NodeProcess, topics: Topics): Promise<Topics> {
  const grown: Topics = {};
  const tb = await connect(node.url, { clientId: 'upgrade-test' });
  try {
    const producer = tb.producer({ lingerMs: 0 });
    for (const [topic, partitions] of Object.entries(topics)) {
      grown[topic] = [];
      for (const p of partitions) {
        const record = { key: `upgraded-${topic}-${p.partition}`, value: `written after the upgrade to ${topic}-${p.partition}`, timestamp: APPENDED_AT };
        const sent = await producer.send(topic, { ...record, partition: p.partition });
        expect(sent.offset, `${topic}-${p.partition}: the first offset after the upgrade`).toBe(p.logEndOffset);
        grown[topic].push({ ...p, logEndOffset: p.logEndOffset + 1, records: [...p.records, { offset: p.logEndOffset, headers: [], ...record }] });
      }
    }
    expect(await readAll(tb, Object.keys(topics))).toEqual(grown);
  } finally {
    await tb.close();
  }
  return grown;
}

/** Every record of every partition of `topics`, from each log start to its log end. */
async function readAll(tb: Connection, topics: readonly string[]): Promise<Topics> {
  const admin = tb.admin();
  const out: Topics = {};
  for (const topic of topics) {
    const meta = await admin.topicMetadata(topic);
    out[topic] = [];
    for (const { partition } of [...meta.partitions].sort((a, b) => a.partition - b.partition)) {
      const [start, end] = await admin.listOffsets([
        { topic, partition, at: 'earliest' },
        { topic, partition, at: 'latest' },
      ]);
      const logStartOffset = start.offset as number;
      const logEndOffset = end.offset as number;
      const records: StoredRecord[] = [];
      if (logEndOffset > logStartOffset) {
        const consumer = tb.consumer({ autoOffsetReset: 'none' });
        consumer.assign([{ topic, partition, offset: logStartOffset }]);
        for await (const r of consumer) {
          records.push(storedRecord(r));
          if (r.offset + 1 >= logEndOffset) break;
        }
        await consumer.close();
      }
      out[topic].push({ partition, logStartOffset, logEndOffset, records });
    }
  }
  return out;
}

/** Keys, values and headers of the fixture are ASCII, so text compares them exactly. */
function storedRecord(r: ConsumerRecord): StoredRecord {
  const text = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString('utf8'));
  return { offset: r.offset, timestamp: r.timestamp, key: text(r.key), value: text(r.value), headers: r.headers.map(([k, v]) => [k, text(v)]) };
}

/** Warnings and errors, but the one a node in dev mode always gives (it admits anonymous clients). */
function warnings(node: NodeProcess): LogLine[] {
  return logLines(node).filter((l) => l.level >= 40 && !/^dev mode:/.test(l.msg));
}

