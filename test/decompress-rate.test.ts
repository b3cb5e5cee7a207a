// limits.decompressBytesPerPrincipalPerSecond over real WebSockets with fleet credentials:
// a device that pipelines inflightMax ListOffsets or Produce requests over valid gzip
// batches (each inflating to 1 MB) inflates no more than its bucket holds, all its requests
// together, the rest answered THROTTLED naming the key and counted once per request; another
// device is served in full meanwhile; and every anonymous client (dev mode) shares one
// bucket. The node's clock is frozen, so buckets refill only when a test moves it.

import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import { generateIdentity } from '../protocol/key-file.js';
import { BATCH_OVERHEAD, Compression, encodeBatch } from '../protocol/record-batch.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { holder, type Holder } from './helpers/credentials.js';
import { metricSample } from './helpers/metrics.js';
import { tempDir } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';
import { clockAt } from '../protocol/clock.js';

const MIB = 1024 * 1024;
const T0 = 1_700_000_000_000;
const INFLIGHT_MAX = 32;
/** Four 1 MB batches a request, eight a second per principal. */
const LIMITS = { inflightMax: INFLIGHT_MAX, requestDecompressBytesMax: 4 * MIB, decompressBytesPerPrincipalPerSecond: 8 * MIB };
/** Lookups or batches one request names: more than its own budget holds. */
const PER_REQUEST = 8;

type Part = { error: number; message?: string; offset?: number };
type Answer = { partitions: Part[] };

/** A valid gzip batch of a few KB whose records inflate to about 1 MB. */
function megabyteBatch(timestamp = T0): Buffer {
  const text = Buffer.from('{"sensor":"boiler-7","celsius":71.5,"status":"ok"}\n'.repeat(20_000).slice(0, 1_000_000));
  return encodeBatch([{ key: null, value: text, timestamp }], { compression: Compression.Gzip });
}

const BATCH = megabyteBatch();
const INFLATED_BYTES = gunzipSync(BATCH.subarray(BATCH_OVERHEAD)).length;
/** What a full bucket pays for, and one request's own budget. */
const PER_BUCKET = Math.floor(LIMITS.decompressBytesPerPrincipalPerSecond / INFLATED_BYTES);
const PER_REQUEST_BUDGET = Math.floor(LIMITS.requestDecompressBytesMax / INFLATED_BYTES);

const series = (limit: string): string => `tributary_limits_reached_total{limit="${limit}"}`;

async function limitReached(broker: Broker, limit: string): Promise<number> {
  const value = await metricSample(broker.port, series(limit));
  return Number.isNaN(value) ? 0 : value;
}

/** `count` requests sent back to back on one connection, before any is answered. */
function pipelined(client: RawClient, kind: number, body: () => object, count = INFLIGHT_MAX): Promise<Answer[]> {
  return Promise.all(Array.from({ length: count }, () => client.request<Answer>(kind, body())));
}

const listOffsetsBody = () => ({ partitions: Array.from({ length: PER_REQUEST }, () => ({ topic: 'readings', partition: 0, timestamp: T0 })) });
const produceBody = () => ({ acks: 1, partitions: Array.from({ length: PER_REQUEST }, () => ({ topic: 'uploads', partition: 0, records: megabyteBatch() })) });

/** The errors of every part of every answer, counted by code. */
function errorCounts(answers: Answer[]): Map<number, number> {
  const counts = new Map<number, number>();
  for (const a of answers) for (const p of a.partitions) counts.set(p.error, (counts.get(p.error) ?? 0) + 1);
  return counts;
}

describe('what one principal may inflate per second', () => {
  const fleet = generateIdentity();
  const dir = tempDir();
  const clock = { now: T0 };
  const devices: Holder[] = Array.from({ length: 4 }, () => holder(fleet, { role: 'device', produce: ['uploads'], consume: ['readings'] }));
  let broker: Broker;

  beforeAll(async () => {
    expect(INFLATED_BYTES).toBeGreaterThan(990_000);
    expect(BATCH.length).toBeLessThan(16 * 1024);
    expect(PER_REQUEST_BUDGET).toBeLessThan(PER_REQUEST);
    broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger, auth: { fleetPublicKey: fleet.publicKey }, limits: LIMITS, clock: clockAt(() => clock.now) });
    await broker.logs.createTopic('readings', 1);
    await broker.logs.createTopic('uploads', 1);
    // Stored below the produce handler, so that no principal's bucket paid for it.
    broker.logs.partition('readings', 0)?.append(BATCH);
  });

  afterAll(async () => {
    await broker?.close();
    dir.remove();
  });

  const connect = (who: Holder): Promise<RawClient> => RawClient.connect(broker.url, { identity: who.identity, credential: who.credential });

  it('a burst of pipelined ListOffsets inflates one bucket in all, the rest THROTTLED, while another device is served', async () => {
    const before = await limitReached(broker, 'decompressBytesPerPrincipalPerSecond');
    const attacker = await connect(devices[0]);
    const answers = await pipelined(attacker, Kind.ListOffsets, listOffsetsBody);
    const counts = errorCounts(answers);
    // Without the bucket: 32 requests of 4 lookups each.
    expect(counts.get(0)).toBe(PER_BUCKET);
    expect(counts.get(Errors.THROTTLED.code)).toBe(INFLIGHT_MAX * PER_REQUEST - PER_BUCKET);
    const spent = answers.filter((a) => a.partitions.every((p) => p.error === Errors.THROTTLED.code));
    expect(spent.length).toBe(INFLIGHT_MAX - PER_BUCKET / PER_REQUEST_BUDGET);
    for (const a of spent) expect(a.partitions[0].message).toMatch(/limits\.decompressBytesPerPrincipalPerSecond.*retry later/);
    expect(await limitReached(broker, 'decompressBytesPerPrincipalPerSecond')).toBe(before + spent.length);

    const other = await connect(devices[1]);
    const served = await other.request<Answer>(Kind.ListOffsets, listOffsetsBody());
    expect(served.partitions.map((p) => p.error)).toEqual([...Array(PER_REQUEST_BUDGET).fill(0), ...Array(PER_REQUEST - PER_REQUEST_BUDGET).fill(Errors.THROTTLED.code)]);
    expect(served.partitions[PER_REQUEST_BUDGET].message).toMatch(/limits\.requestDecompressBytesMax/);
    // A second later the attacker's bucket is full again.
    clock.now += 1000;
    const later = await attacker.request<Answer>(Kind.ListOffsets, listOffsetsBody());
    expect(later.partitions.filter((p) => p.error === 0)).toHaveLength(PER_REQUEST_BUDGET);
    attacker.close();
    other.close();
  });

  it('a burst of pipelined Produce requests of gzip batches appends one bucket in all, the rest THROTTLED and not appended', async () => {
    const log = broker.logs.partition('uploads', 0);
    if (!log) throw new Error('no partition uploads/0');
    const start = log.logEndOffset;
    const attacker = await connect(devices[2]);
    const answers = await pipelined(attacker, Kind.Produce, produceBody);
    const counts = errorCounts(answers);
    expect(counts.get(0)).toBe(PER_BUCKET);
    expect(counts.get(Errors.THROTTLED.code)).toBe(INFLIGHT_MAX * PER_REQUEST - PER_BUCKET);
    expect(log.logEndOffset - start).toBe(PER_BUCKET);
    const other = await connect(devices[3]);
    const served = await other.request<Answer>(Kind.Produce, produceBody());
    expect(served.partitions.filter((p) => p.error === 0)).toHaveLength(PER_REQUEST_BUDGET);
    expect(log.logEndOffset - start).toBe(PER_BUCKET + PER_REQUEST_BUDGET);
    // Uncompressed batches take nothing from the bucket: still appended.
    const plain = await attacker.request<Answer>(Kind.Produce, { acks: 1, partitions: [{ topic: 'uploads', partition: 0, records: encodeBatch([{ key: null, value: Buffer.from('21.5') }]) }] });
    expect(plain.partitions[0].error).toBe(0);
    attacker.close();
    other.close();
  });
});

describe('anonymous clients (dev mode, loopback only)', () => {
  const dir = tempDir();
  const clock = { now: T0 };
  let broker: Broker;

  beforeAll(async () => {
    broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger, limits: LIMITS, clock: clockAt(() => clock.now) });
    await broker.logs.createTopic('readings', 1);
    broker.logs.partition('readings', 0)?.append(BATCH);
  });

  afterAll(async () => {
    await broker?.close();
    dir.remove();
  });

  it('are one principal: their connections share one bucket', async () => {
    const first = await RawClient.connect(broker.url);
    const second = await RawClient.connect(broker.url);
    for (let i = 0; i < PER_BUCKET / PER_REQUEST_BUDGET; i++) {
      const answer = await first.request<Answer>(Kind.ListOffsets, listOffsetsBody());
      expect(answer.partitions.filter((p) => p.error === 0)).toHaveLength(PER_REQUEST_BUDGET);
    }
    const refused = await second.request<Answer>(Kind.ListOffsets, listOffsetsBody());
    expect(refused.partitions.map((p) => p.error)).toEqual(Array(PER_REQUEST).fill(Errors.THROTTLED.code));
    expect(refused.partitions[0].message).toMatch(/limits\.decompressBytesPerPrincipalPerSecond/);
    first.close();
    second.close();
  });
});
