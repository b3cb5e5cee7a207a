// Topic names where requests are read, over a real WebSocket: every request that names a
// topic answers a name too long to be one, or one with characters Kafka does not allow,
// INVALID_TOPIC for that part, showing no more than a short prefix of it, so that an answer
// stays small whatever the request held (answers echo names: a 1 MB name once came back
// twice, in the topic and in the message). Legal names, internal ones included, are served
// as before. And with the command line and a node process: a topic of the longest legal
// name can be deleted (its deletion marker once passed the 255-byte file-name limit), and a
// name one character longer is refused with the node's reason, not an UNKNOWN.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { Kind, LATEST_TIMESTAMP } from '../protocol/frames.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { runCli, startNodeProcess, stopAllNodes, tempDir, type NodeProcess } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';

const LEGAL = 'names.legal';
/** The longest legal name: 249 characters, every legal kind of character among them. */
const LONGEST = `Az09._-${'n'.repeat(242)}`;
/** A megabyte of name. */
const HUGE = 'x'.repeat(1024 * 1024);
/** What an answer may hold, whatever the names in its request. */
const ANSWER_CHARS_MAX = 4096;
const MESSAGE_CHARS_MAX = 300;

type Part = { topic?: string; name?: string; error: number; message?: string };
type Answer = Partial<Part> & { partitions?: Part[]; topics?: Part[] };

const dir = tempDir();
let broker: Broker;
let client: RawClient;

beforeAll(async () => {
  broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger });
  client = await RawClient.connect(broker.url);
  const created = await client.request<Answer>(Kind.CreateTopics, { topics: [LEGAL, LONGEST].map((name) => ({ name, partitions: 1 })) });
  expect(created.topics?.map((t) => t.error)).toEqual([0, 0]);
});

afterAll(async () => {
  client?.close();
  await broker?.close();
  dir.remove();
});

const batch = (): Buffer => encodeBatch([{ key: null, value: Buffer.from('reading') }]);

/** Every request kind that reads a topic name, naming `name` first and, where it takes a list, a legal topic after it. */
function requestsNaming(name: unknown): { kind: number; label: string; body: object; perPart: boolean }[] {
  const group = { groupId: 'names-group' };
  return [
    { kind: Kind.Produce, label: 'Produce', perPart: true, body: { acks: 1, partitions: [{ topic: name, partition: 0, records: batch() }, { topic: LEGAL, partition: 0, records: batch() }] } },
    { kind: Kind.Fetch, label: 'Fetch', perPart: true, body: { maxWaitMs: 0, partitions: [{ topic: name, partition: 0, fetchOffset: 0 }, { topic: LEGAL, partition: 0, fetchOffset: 0 }] } },
    { kind: Kind.ListOffsets, label: 'ListOffsets', perPart: true, body: { partitions: [{ topic: name, partition: 0, timestamp: LATEST_TIMESTAMP }, { topic: LEGAL, partition: 0, timestamp: LATEST_TIMESTAMP }] } },
    { kind: Kind.Metadata, label: 'Metadata', perPart: true, body: { topics: [name, LEGAL] } },
    { kind: Kind.DescribeConfigs, label: 'DescribeConfigs', perPart: true, body: { topics: [name, LEGAL] } },
    { kind: Kind.AlterConfigs, label: 'AlterConfigs', perPart: true, body: { topics: [{ name, configs: [] }, { name: LEGAL, configs: [] }] } },
    { kind: Kind.CreateTopics, label: 'CreateTopics', perPart: true, body: { topics: [{ name, partitions: 1 }] } },
    { kind: Kind.DeleteTopics, label: 'DeleteTopics', perPart: true, body: { topics: [name] } },
    { kind: Kind.Subscribe, label: 'Subscribe', perPart: true, body: { creditBytes: 1024, partitions: [{ topic: name, partition: 0, fetchOffset: 0 }, { topic: LEGAL, partition: 0, fetchOffset: 0 }] } },
    { kind: Kind.OffsetCommit, label: 'OffsetCommit', perPart: true, body: { ...group, offsets: [{ topic: name, partition: 0, offset: 0 }, { topic: LEGAL, partition: 0, offset: 0 }] } },
    { kind: Kind.OffsetFetch, label: 'OffsetFetch', perPart: false, body: { ...group, partitions: [{ topic: name, partition: 0 }] } },
    { kind: Kind.ConsumerGroupHeartbeat, label: 'ConsumerGroupHeartbeat (subscribedTopics)', perPart: false, body: { ...group, memberId: '', memberEpoch: 0, subscribedTopics: [name], ownedPartitions: [] } },
    {
      kind: Kind.ConsumerGroupHeartbeat,
      label: 'ConsumerGroupHeartbeat (ownedPartitions)',
      perPart: false,
      body: { ...group, memberId: '', memberEpoch: 0, subscribedTopics: [LEGAL], ownedPartitions: [{ topic: name, partitions: [0] }] },
    },
  ];
}

/** The part of `answer` about the name asked first, and the rest. */
function parts(answer: Answer): Part[] {
  return answer.partitions ?? answer.topics ?? [];
}

describe('topic names in requests', () => {
  it('a megabyte of name is INVALID_TOPIC in every request that reads one, answered in a few hundred bytes', async () => {
    for (const { kind, label, body, perPart } of requestsNaming(HUGE)) {
      const answer = await client.request<Answer>(kind, body);
      expect(JSON.stringify(answer).length, label).toBeLessThan(ANSWER_CHARS_MAX);
      const refused = perPart ? parts(answer)[0] : answer;
      expect(refused.error, label).toBe(Errors.INVALID_TOPIC.code);
      expect(refused.message, label).toMatch(/^topic name "x{64}"\.\.\. is 1048576 characters long, at most 249 are allowed$/);
      const echoed = refused.topic ?? refused.name;
      if (echoed !== undefined) expect(echoed.length, label).toBeLessThanOrEqual(249);
      // The legal topic named after it is served as usual.
      if (perPart && parts(answer).length > 1) expect(parts(answer)[1].error, label).toBe(0);
    }
    expect(broker.logs.topics().map((t) => t.name)).not.toContain(HUGE.slice(0, 249));
  });

  it.each([
    ['a space', 'has space', /may contain only ASCII letters, digits, \., _ and -/],
    ['a slash', 'a/b', /may contain only ASCII letters/],
    ['a letter outside ASCII', 'caf\u00e9', /may contain only ASCII letters/],
    ['a dot-dot', '..', /cannot be '\.' or '\.\.'/],
    ['250 characters', 'n'.repeat(250), /is 250 characters long, at most 249 are allowed/],
    ['the empty string', '', /must be a non-empty string/],
  ])('a name with %s is INVALID_TOPIC, naming why, the rest of the request served', async (_what, name, why) => {
    for (const { kind, label, body, perPart } of requestsNaming(name)) {
      const answer = await client.request<Answer>(kind, body);
      const refused = perPart ? parts(answer)[0] : answer;
      expect(refused.error, label).toBe(Errors.INVALID_TOPIC.code);
      expect(refused.message, label).toMatch(why);
      expect(refused.message?.length ?? 0, label).toBeLessThan(MESSAGE_CHARS_MAX);
      if (perPart && parts(answer).length > 1) expect(parts(answer)[1].error, label).toBe(0);
    }
    // A short name is answered as sent, so a client matches the answer to its part.
    const produced = await client.request<Answer>(Kind.Produce, requestsNaming(name)[0].body);
    expect(parts(produced)[0].topic).toBe(name.slice(0, 249));
  });

  it('what is no string where a name belongs is INVALID_REQUEST, as for any field', async () => {
    const produced = await client.request<Answer>(Kind.Produce, requestsNaming(42)[0].body);
    expect(parts(produced).map((p) => [p.topic, p.error])).toEqual([
      ['', Errors.INVALID_REQUEST.code],
      [LEGAL, 0],
    ]);
    expect(parts(produced)[0].message).toBe('topic must be a string, got 42');
    const metadata = await client.request<Answer>(Kind.Metadata, { topics: [{ huge: HUGE }, LEGAL] });
    expect(JSON.stringify(metadata).length).toBeLessThan(ANSWER_CHARS_MAX);
    expect(parts(metadata).map((p) => p.error)).toEqual([Errors.INVALID_REQUEST.code, 0]);
  });

  it('legal names are served as before: the longest one, and internal topics where they may be named', async () => {
    const produced = await client.request<Answer & { partitions: (Part & { baseOffset: number })[] }>(Kind.Produce, { acks: 1, partitions: [{ topic: LONGEST, partition: 0, records: batch() }] });
    expect(produced.partitions[0]).toMatchObject({ topic: LONGEST, error: 0 });
    const fetched = await client.request<{ partitions: (Part & { records: Uint8Array })[] }>(Kind.Fetch, { maxWaitMs: 0, partitions: [{ topic: LONGEST, partition: 0, fetchOffset: produced.partitions[0].baseOffset }] });
    expect(fetched.partitions[0].error).toBe(0);
    expect(fetched.partitions[0].records.length).toBeGreaterThan(0);
    const metadata = await client.request<Answer>(Kind.Metadata, { topics: [LONGEST, '__consumer_offsets'] });
    expect(metadata.topics?.map((t) => [t.name, t.error])).toEqual([
      [LONGEST, 0],
      ['__consumer_offsets', 0],
    ]);
    // A legal name of no topic is still UNKNOWN_TOPIC, and creating a '__' name still refused.
    const unknown = await client.request<Answer>(Kind.ListOffsets, { partitions: [{ topic: 'no.such-topic_9', partition: 0, timestamp: LATEST_TIMESTAMP }] });
    expect(unknown.partitions?.[0].error).toBe(Errors.UNKNOWN_TOPIC.code);
    const reserved = await client.request<Answer>(Kind.CreateTopics, { topics: [{ name: '__mine', partitions: 1 }] });
    expect(reserved.topics?.[0]).toMatchObject({ error: Errors.INVALID_TOPIC.code, message: expect.stringMatching(/reserved for internal topics/) });
  });
});

describe('the longest legal name with the command line and a node process', () => {
  afterEach(stopAllNodes);

  it('a 249-character topic of 100 partitions is written to, deleted, and gone after a restart; 250 characters are refused in one line', async () => {
    const data = tempDir();
    try {
      let node: NodeProcess = await startNodeProcess({ dataDir: data.path });
      const cli = (args: string[], input = '') => runCli([...args, '--broker', node.url], input);
      const name = `Az09._-${'m'.repeat(242)}`;
      const created = await cli(['topics', 'create', name, '--partitions', '100']);
      expect(created.code, created.stderr).toBe(0);
      // The last partition's folder, `<name>-99`, is the longest one of this topic (at
      // PARTITIONS_MAX, `<name>-9999` is 254 bytes: node/storage/log-manager.ts).
      const produced = await cli(['produce', name, '--partition', '99'], 'kept until deleted\n');
      expect(produced.code, produced.stderr).toBe(0);
      const deleted = await cli(['topics', 'delete', name]);
      expect([deleted.code, deleted.stdout, deleted.stderr]).toEqual([0, `deleted topic ${name}\n`, '']);

      await node.stop();
      node = await startNodeProcess({ dataDir: data.path });
      const listed = await cli(['topics', 'list']);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout.split('\n')).not.toContain(name);
      const ours = (names: string[]) => names.filter((n) => n.startsWith('Az09'));
      expect(ours(readdirSync(data.path))).toEqual([]);
      expect(ours(readdirSync(join(data.path, 'topics')))).toEqual([]);

      const tooLong = `${name}m`;
      const why = `tributary: INVALID_TOPIC: topic name "${tooLong.slice(0, 64)}"... is 250 characters long, at most 249 are allowed\n`;
      for (const args of [['topics', 'create', tooLong, '--partitions', '1'], ['topics', 'delete', tooLong], ['topics', 'describe', tooLong]]) {
        const refused = await cli(args);
        expect([refused.code, refused.stderr], args.slice(0, 2).join(' ')).toEqual([1, why]);
      }
      const produceRefused = await cli(['produce', tooLong], 'never written\n');
      expect(produceRefused.code).toBe(1);
      expect(produceRefused.stderr).toContain(why.slice(0, -1));
    } finally {
      await stopAllNodes();
      data.remove();
    }
  });
});
