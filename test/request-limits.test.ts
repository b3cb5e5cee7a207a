// What one request may make the node do, over real WebSockets with fleet credentials: a
// device's gzip bomb is refused at produce and nothing of it is stored, while a real gzip
// batch is stored as sent; the batches of one Produce share limits.requestDecompressBytesMax;
// a bomb an older node stored costs a ListOffsets that names it many times no more than that
// budget (the rest THROTTLED) while another device is served; limits.requestScanBytesMax
// bounds what the lookups of one request read; limits.requestEntriesMax refuses an oversized
// request. Each shows in tributary_limits_reached_total.

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { issueCredential, type CredentialClaims } from '../protocol/credential.js';
import { Errors } from '../protocol/errors.js';
import { Kind, LATEST_TIMESTAMP } from '../protocol/frames.js';
import { generateIdentity, type IdentityKeyPair } from '../protocol/key-file.js';
import { Compression, computeCrc, encodeBatch, OFFSET_ATTRIBUTES, OFFSET_CRC, setBaseOffset, setPartitionLeaderEpoch, splitBatches } from '../protocol/record-batch.js';
import type { Record } from '../protocol/record-batch.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { gzipBomb } from '../node/storage/testing.js';
import { tempDir } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';

const DAY = 86_400_000;
const MIB = 1024 * 1024;
const T0 = 1_700_000_000_000;
const fleet = generateIdentity();

// Low enough that a test reaches each with a handful of batches.
const LIMITS = { requestDecompressBytesMax: MIB, requestScanBytesMax: 4 * MIB, requestEntriesMax: 200 };
/** max.message.bytes of the topics holding bombs: four of them spend the decompression budget. */
const BOMB_TOPIC_MESSAGE_BYTES = 256 * 1024;

interface Holder {
  identity: IdentityKeyPair;
  credential: Buffer;
}

function holder(claims: Partial<CredentialClaims> & Pick<CredentialClaims, 'role'>): Holder {
  const identity = generateIdentity();
  const now = Date.now();
  const credential = issueCredential(fleet, { subject: identity.publicKey, produce: [], consume: [], expiresAt: now + 90 * DAY, ...claims }, now);
  return { identity, credential };
}

const admin = holder({ role: 'admin' });
const device = holder({ role: 'device', produce: ['sensors.*', 'bombs'], consume: ['sensors.*', 'bombs', 'stored'] });
const otherDevice = holder({ role: 'device', produce: ['sensors.*'], consume: ['sensors.*'] });

type PartitionResult = { topic: string; partition: number; error: number; message?: string; baseOffset?: number; offset?: number; records?: Uint8Array };
type PartitionResults = { error?: number; message?: string; partitions: PartitionResult[] };

async function connect(url: string, who: Holder): Promise<RawClient> {
  return RawClient.connect(url, { identity: who.identity, credential: who.credential });
}

/** Sensor-like records: a key per sensor, a ~100-byte JSON reading. */
function readings(count: number, valueBytes = 100): Record[] {
  return Array.from({ length: count }, (_, i) => ({
    key: Buffer.from(`sensor-${i % 16}`),
    value: Buffer.from(JSON.stringify({ t: 21.5 + (i % 7), h: 40 + (i % 13), seq: i }).padEnd(valueBytes, ' ')),
    timestamp: T0 + i,
  }));
}

function produce(c: RawClient, partitions: { topic: string; partition: number; records: Buffer }[]): Promise<PartitionResults> {
  return c.request<PartitionResults>(Kind.Produce, { acks: 1, partitions });
}

function listOffsets(c: RawClient, partitions: { topic: string; partition: number; timestamp: number }[]): Promise<PartitionResults> {
  return c.request<PartitionResults>(Kind.ListOffsets, { partitions });
}

async function logEnd(c: RawClient, topic: string, partition = 0): Promise<number> {
  const answer = await listOffsets(c, [{ topic, partition, timestamp: LATEST_TIMESTAMP }]);
  expect(answer.partitions[0].error).toBe(0);
  return answer.partitions[0].offset ?? -1;
}

/** tributary_limits_reached_total by its limit label, from /metrics. */
async function limitsReached(broker: Broker): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${broker.port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^tributary_limits_reached_total\{limit="([^"]+)"\} (\d+)$/gm)) out.set(m[1], Number(m[2]));
  return out;
}

describe('what one request may make the node do', () => {
  const dir = tempDir();
  let broker: Broker;
  let client: RawClient;

  beforeAll(async () => {
    broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger, auth: { fleetPublicKey: fleet.publicKey }, limits: LIMITS });
    const a = await connect(broker.url, admin);
    const created = await a.request<{ topics: { name: string; error: number }[] }>(Kind.CreateTopics, {
      topics: [
        { name: 'sensors.gzip', partitions: 4 },
        { name: 'sensors.scan', partitions: 1 },
        { name: 'bombs', partitions: 1, config: { 'max.message.bytes': BOMB_TOPIC_MESSAGE_BYTES } },
        { name: 'stored', partitions: 1, config: { 'max.message.bytes': BOMB_TOPIC_MESSAGE_BYTES } },
      ],
    });
    expect(created.topics.map((t) => t.error)).toEqual([0, 0, 0, 0]);
    a.close();
    client = await connect(broker.url, device);
  });

  afterAll(async () => {
    client?.close();
    await broker?.close();
    dir.remove();
  });

  it("a device's gzip bomb is CORRUPT_BATCH naming max.message.bytes, and nothing is appended", async () => {
    const before = await logEnd(client, 'bombs');
    const bomb = gzipBomb(64 * MIB, T0);
    expect(bomb.length).toBeLessThan(BOMB_TOPIC_MESSAGE_BYTES);
    const answer = await produce(client, [{ topic: 'bombs', partition: 0, records: bomb }]);
    expect(answer.partitions[0].error).toBe(Errors.CORRUPT_BATCH.code);
    expect(answer.partitions[0].message).toMatch(/inflate past 262144 bytes, the topic's max\.message\.bytes/);
    expect(await logEnd(client, 'bombs')).toBe(before);
    expect(broker.logs.partition('bombs', 0)?.logEndOffset).toBe(before);
  });

  it('a snappy batch is UNSUPPORTED_COMPRESSION_TYPE naming the codec, and nothing is appended', async () => {
    const snappy = encodeBatch(readings(3));
    snappy.writeInt16BE(Compression.Snappy, OFFSET_ATTRIBUTES);
    snappy.writeUInt32BE(computeCrc(snappy), OFFSET_CRC);
    const before = await logEnd(client, 'bombs');
    const answer = await produce(client, [{ topic: 'bombs', partition: 0, records: snappy }]);
    expect(answer.partitions[0].error).toBe(Errors.UNSUPPORTED_COMPRESSION_TYPE.code);
    expect(answer.partitions[0].message).toMatch(/snappy/);
    expect(await logEnd(client, 'bombs')).toBe(before);
  });

  it('a legitimate gzip batch is stored, and fetched back byte for byte as sent (base offset and leader epoch patched)', async () => {
    const sent = encodeBatch(readings(100), { compression: Compression.Gzip });
    const answer = await produce(client, [{ topic: 'sensors.gzip', partition: 3, records: sent }]);
    expect(answer.partitions[0].error).toBe(0);
    const baseOffset = answer.partitions[0].baseOffset ?? -1;
    const fetched = await client.request<PartitionResults>(Kind.Fetch, { maxWaitMs: 0, partitions: [{ topic: 'sensors.gzip', partition: 3, fetchOffset: baseOffset }] });
    const batches = splitBatches(Buffer.from(fetched.partitions[0].records ?? []));
    expect(batches).toHaveLength(1);
    const expected = Buffer.from(sent);
    setBaseOffset(expected, baseOffset);
    setPartitionLeaderEpoch(expected, 0);
    expect(batches[0].equals(expected)).toBe(true);
  });

  it('the batches of one Produce share requestDecompressBytesMax: the first are appended, the rest THROTTLED, an uncompressed one still appended', async () => {
    // ~400 KB of records each (gzip makes ~1 KB of them): two fit in 1 MiB, a third does not.
    const gzip = (): Buffer => encodeBatch(readings(4, 100_000), { compression: Compression.Gzip });
    const ends = await Promise.all([0, 1, 2, 3].map((p) => logEnd(client, 'sensors.gzip', p)));
    const answer = await produce(client, [
      { topic: 'sensors.gzip', partition: 0, records: gzip() },
      { topic: 'sensors.gzip', partition: 1, records: gzip() },
      { topic: 'sensors.gzip', partition: 2, records: gzip() },
      { topic: 'sensors.gzip', partition: 3, records: gzip() },
      { topic: 'sensors.gzip', partition: 0, records: encodeBatch(readings(5)) },
    ]);
    expect(answer.partitions.map((p) => p.error)).toEqual([0, 0, Errors.THROTTLED.code, Errors.THROTTLED.code, 0]);
    for (const refused of answer.partitions.slice(2, 4)) {
      expect(refused.message).toMatch(/limits\.requestDecompressBytesMax.*send fewer partitions per request/);
    }
    expect(await Promise.all([0, 1, 2, 3].map((p) => logEnd(client, 'sensors.gzip', p)))).toEqual([ends[0] + 4 + 5, ends[1] + 4, ends[2], ends[3]]);
    // Alone, a refused batch is fine: THROTTLED was the request's budget, not the batch.
    expect((await produce(client, [{ topic: 'sensors.gzip', partition: 2, records: gzip() }])).partitions[0].error).toBe(0);
    expect((await limitsReached(broker)).get('requestDecompressBytesMax')).toBeGreaterThanOrEqual(1);
  });

  it('a bomb an older node stored costs a ListOffsets naming it 150 times one budget, the rest THROTTLED, while another device is served', async () => {
    const log = broker.logs.partition('stored', 0);
    if (!log) throw new Error('no partition stored/0');
    // Below the produce handler, as a node without the produce check stored it.
    log.append(gzipBomb(64 * MIB, T0));
    const entries = Array.from({ length: 150 }, () => ({ topic: 'stored', partition: 0, timestamp: T0 }));
    const other = await connect(broker.url, otherDevice);
    const rounds = 20;
    let attackAnswered = 0;
    const answers: PartitionResults[] = [];
    const attack = (async () => {
      for (let i = 0; i < rounds; i++) {
        answers.push(await listOffsets(client, entries));
        attackAnswered++;
      }
    })();
    await vi.waitFor(() => expect(attackAnswered).toBeGreaterThan(0));
    const served = await produce(other, [{ topic: 'sensors.gzip', partition: 1, records: encodeBatch(readings(10), { compression: Compression.Gzip }) }]);
    const attackAnsweredMeanwhile = attackAnswered;
    await attack;
    other.close();
    expect(served.partitions[0].error).toBe(0);
    expect(attackAnsweredMeanwhile).toBeLessThan(rounds);
    for (const answer of answers) {
      const errors = answer.partitions.map((p) => p.error);
      // Each CORRUPT_BATCH inflated max.message.bytes; the budget holds four of them.
      const corrupt = errors.filter((e) => e === Errors.CORRUPT_BATCH.code).length;
      expect(corrupt).toBe(LIMITS.requestDecompressBytesMax / BOMB_TOPIC_MESSAGE_BYTES);
      expect(errors.slice(0, corrupt).every((e) => e === Errors.CORRUPT_BATCH.code)).toBe(true);
      expect(errors.slice(corrupt).every((e) => e === Errors.THROTTLED.code)).toBe(true);
      expect(answer.partitions[0].message).toMatch(/max\.message\.bytes/);
      expect(answer.partitions[corrupt].message).toMatch(/limits\.requestDecompressBytesMax.*send fewer partitions per request/);
    }
  });

  it('the lookups of one ListOffsets read at most requestScanBytesMax: the first answered, the rest THROTTLED', async () => {
    // One 16 KB batch: each lookup reads a window of headers (8 KiB) and the batch.
    const batch = encodeBatch(readings(150));
    expect((await produce(client, [{ topic: 'sensors.scan', partition: 0, records: batch }])).partitions[0].error).toBe(0);
    const answer = await listOffsets(client, Array.from({ length: LIMITS.requestEntriesMax }, () => ({ topic: 'sensors.scan', partition: 0, timestamp: T0 })));
    const perLookup = 8192 + batch.length;
    const answered = Math.floor(LIMITS.requestScanBytesMax / perLookup);
    expect(answered).toBeLessThan(LIMITS.requestEntriesMax);
    expect(answer.partitions.slice(0, answered).map((p) => [p.error, p.offset])).toEqual(Array.from({ length: answered }, () => [0, 0]));
    for (const refused of answer.partitions.slice(answered)) {
      expect(refused.error).toBe(Errors.THROTTLED.code);
      expect(refused.message).toMatch(/limits\.requestScanBytesMax.*send fewer partitions per request/);
    }
    expect((await limitsReached(broker)).get('requestScanBytesMax')).toBeGreaterThanOrEqual(1);
  });

  it('a request naming more than requestEntriesMax entries is INVALID_REQUEST naming the key, counted once each', async () => {
    const before = (await limitsReached(broker)).get('requestEntriesMax') ?? 0;
    const tooMany = LIMITS.requestEntriesMax + 1;
    const partitions = Array.from({ length: tooMany }, () => ({ topic: 'sensors.gzip', partition: 0, timestamp: T0, fetchOffset: 0, records: encodeBatch(readings(1)) }));
    const answers = [
      await client.request<PartitionResults>(Kind.ListOffsets, { partitions }),
      await client.request<PartitionResults>(Kind.Produce, { acks: 1, partitions }),
      await client.request<PartitionResults>(Kind.Fetch, { maxWaitMs: 0, partitions }),
      await client.request<PartitionResults>(Kind.Metadata, { topics: Array.from({ length: tooMany }, () => 'sensors.gzip') }),
    ];
    for (const answer of answers) {
      expect(answer.error).toBe(Errors.INVALID_REQUEST.code);
      expect(answer.message).toMatch(new RegExp(`names ${tooMany} entries; limits\\.requestEntriesMax allows ${LIMITS.requestEntriesMax} per request`));
    }
    expect((await limitsReached(broker)).get('requestEntriesMax')).toBe(before + answers.length);
    // The topic and config requests of an admin, and Subscribe, alike.
    const a = await connect(broker.url, admin);
    const names = Array.from({ length: tooMany }, (_, i) => `t-${i}`);
    const adminAnswers = [
      await a.request<PartitionResults>(Kind.CreateTopics, { topics: names.map((name) => ({ name, partitions: 1 })) }),
      await a.request<PartitionResults>(Kind.DeleteTopics, { topics: names }),
      await a.request<PartitionResults>(Kind.DescribeConfigs, { topics: names }),
      await a.request<PartitionResults>(Kind.AlterConfigs, { topics: names.map((name) => ({ name, configs: [] })) }),
      await a.request<PartitionResults>(Kind.Subscribe, { creditBytes: 1024, partitions }),
    ];
    a.close();
    for (const answer of adminAnswers) {
      expect(answer.error).toBe(Errors.INVALID_REQUEST.code);
      expect(answer.message).toMatch(/limits\.requestEntriesMax/);
    }
    expect(broker.logs.topic('t-0')).toBeUndefined();
    // At the limit, served.
    const atLimit = await listOffsets(client, partitions.slice(0, LIMITS.requestEntriesMax).map((p) => ({ ...p, timestamp: LATEST_TIMESTAMP })));
    expect(atLimit.partitions).toHaveLength(LIMITS.requestEntriesMax);
    expect(atLimit.partitions.every((p) => p.error === 0)).toBe(true);
  });
});
