// Damaged segment files, on real node processes and real files. The rule under test
// (docs/ARCHITECTURE.md, node/storage/README.md): after an unclean stop the tail of each
// partition is CRC-checked, torn or corrupt batches are cut and indexes rebuilt; a
// clean-shutdown marker skips that scan; a corrupt batch met on read is answered
// CORRUPT_BATCH, never served, and never takes the node down.
//
// Every record's value and timestamp are a function of the topic, a generation and its
// offset, so each read is checked against what was acknowledged, value by value.

import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, PartitionError, TributaryError } from '../devices/index.js';
import { Errors } from '../protocol/errors.js';
import { EARLIEST_TIMESTAMP, Kind, LATEST_TIMESTAMP } from '../protocol/frames.js';
import {
  BATCH_OVERHEAD,
  decodeBatch,
  encodeBatch,
  OFFSET_BASE,
  OFFSET_CRC,
  OFFSET_LENGTH,
  OFFSET_MAGIC,
  OFFSET_RECORD_COUNT,
  readBatchHeader,
  splitBatches,
} from '../protocol/record-batch.js';
import { RawClient } from './helpers/raw-client.js';
import { startNodeProcess, stopAllNodes, tempDir, type NodeProcess } from './helpers/node-process.js';

const SEGMENT_BYTES = 4096;
const RECORDS_PER_BATCH = 5;
/** Record timestamps: T0 + offset * TIMESTAMP_STEP_MS, so every offset has its own. */
const T0 = 1_700_000_000_000;
const TIMESTAMP_STEP_MS = 10;
const FETCH_BYTES_MAX = 1 << 20;
const CLEAN_SHUTDOWN_FILE = '.clean-shutdown';
const LOG_LEVEL_WARN = 40;

// flush=batch: an acknowledged batch is fsynced and a rolled segment sealed (checkpoint
// moved) before the answer, so what a SIGKILL leaves on disk does not depend on timing.
const KILL_TOPIC_CONFIG = { 'segment.bytes': SEGMENT_BYTES, flush: 'batch' };

const dirs: { remove(): void }[] = [];
const clients: RawClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await stopAllNodes();
  for (const d of dirs.splice(0)) d.remove();
});

// ---------------------------------------------------------------------------------------
// What was written, and reading it back.

interface Stored {
  value: string;
  timestamp: number;
}

/** The records a partition must hold, by offset. */
type Expected = Map<number, Stored>;

function recordAt(topic: string, generation: number, offset: number): Stored {
  // Padded so that batches have about the same size whatever the offset.
  return { value: `${topic}|gen${generation}|offset${offset}|`.padEnd(48, '~'), timestamp: T0 + offset * TIMESTAMP_STEP_MS };
}

function newDataDir(): string {
  const dir = tempDir('trib-corrupt-');
  dirs.push(dir);
  return dir.path;
}

async function rawClient(node: NodeProcess): Promise<RawClient> {
  const client = await RawClient.connect(node.url);
  clients.push(client);
  return client;
}

async function createTopics(client: RawClient, names: string[], config: Record<string, string | number>): Promise<void> {
  const created = await client.request<{ topics: { name: string; error: number; message?: string }[] }>(Kind.CreateTopics, {
    topics: names.map((name) => ({ name, partitions: 1, config })),
  });
  expect(created.topics.map((t) => [t.name, t.error])).toEqual(names.map((n) => [n, 0]));
}

/**
 * Produces one batch of RECORDS_PER_BATCH records to each topic in one request, the
 * records made for the offsets each topic's log is expected to give them; checks that it
 * did give them and notes them as expected.
 */
async function produceRound(client: RawClient, expected: Map<string, Expected>, generation: number): Promise<void> {
  const entries = [...expected.entries()].map(([topic, stored]) => {
    const first = stored.size === 0 ? 0 : Math.max(...stored.keys()) + 1;
    const records = Array.from({ length: RECORDS_PER_BATCH }, (_, i) => recordAt(topic, generation, first + i));
    return { topic, first, records };
  });
  const answer = await client.request<{ partitions: { topic: string; error: number; message?: string; baseOffset: number }[] }>(Kind.Produce, {
    acks: 1,
    timeoutMs: 10_000,
    partitions: entries.map((e) => ({
      topic: e.topic,
      partition: 0,
      records: encodeBatch(e.records.map((r) => ({ value: Buffer.from(r.value), timestamp: r.timestamp }))),
    })),
  });
  expect(answer.partitions.map((p) => [p.topic, p.error, p.baseOffset])).toEqual(entries.map((e) => [e.topic, 0, e.first]));
  for (const e of entries) e.records.forEach((r, i) => expected.get(e.topic)!.set(e.first + i, r));
}

interface FetchAnswer {
  error: number;
  message?: string;
  highWatermark: number;
  records: Buffer;
}

async function fetchAt(client: RawClient, topic: string, offset: number, maxBytes = FETCH_BYTES_MAX): Promise<FetchAnswer> {
  const f = await client.request<{ error?: number; partitions: (Omit<FetchAnswer, 'records'> & { records: Uint8Array })[] }>(Kind.Fetch, {
    maxWaitMs: 0,
    minBytes: 0,
    maxBytes,
    partitions: [{ topic, partition: 0, fetchOffset: offset, maxBytes }],
  });
  expect(f.error ?? 0).toBe(0);
  const p = f.partitions[0];
  return { error: p.error, message: p.message, highWatermark: p.highWatermark, records: Buffer.from(p.records) };
}

/** Decodes a fetch answer's batches (CRC-checked by decodeBatch) into records by offset. */
function decodeRecords(records: Buffer): Map<number, Stored> {
  const out = new Map<number, Stored>();
  for (const batch of splitBatches(records)) {
    for (const r of decodeBatch(batch).records) out.set(r.offset, { value: r.value!.toString(), timestamp: r.timestamp });
  }
  return out;
}

/** Every record in [from, to), fetched in order; each answer must be error-free and contiguous. */
async function readRange(client: RawClient, topic: string, from: number, to: number): Promise<Expected> {
  const out: Expected = new Map();
  let offset = from;
  while (offset < to) {
    const answer = await fetchAt(client, topic, offset);
    expect(answer.error, `fetch ${topic} at ${offset}: ${answer.message ?? ''}`).toBe(0);
    const got = decodeRecords(answer.records);
    expect(got.size, `fetch ${topic} at ${offset} returned no records below ${to}`).toBeGreaterThan(0);
    for (const [o, r] of got) if (o >= offset && o < to) out.set(o, r);
    const next = Math.max(...got.keys()) + 1;
    expect(next).toBeGreaterThan(offset);
    offset = next;
  }
  return out;
}

async function latestOffset(client: RawClient, topic: string): Promise<number> {
  const answer = await listOffset(client, topic, LATEST_TIMESTAMP);
  expect(answer.error).toBe(0);
  return answer.offset;
}

async function listOffset(client: RawClient, topic: string, timestamp: number): Promise<{ error: number; offset: number; timestamp: number }> {
  const answer = await client.request<{ partitions: { error: number; offset: number; timestamp: number }[] }>(Kind.ListOffsets, {
    partitions: [{ topic, partition: 0, timestamp }],
  });
  return answer.partitions[0];
}

/** Many ListOffsets queries of one partition in one request, answers in order. */
async function listOffsets(client: RawClient, topic: string, timestamps: number[]): Promise<{ error: number; offset: number; timestamp: number }[]> {
  const answer = await client.request<{ partitions: { error: number; offset: number; timestamp: number }[] }>(Kind.ListOffsets, {
    partitions: timestamps.map((timestamp) => ({ topic, partition: 0, timestamp })),
  });
  expect(answer.partitions).toHaveLength(timestamps.length);
  return answer.partitions;
}

function sorted(records: Expected): [number, Stored][] {
  return [...records.entries()].sort((a, b) => a[0] - b[0]);
}

function below(records: Expected, end: number): Expected {
  return new Map([...records].filter(([o]) => o < end));
}

// ---------------------------------------------------------------------------------------
// The files on disk.

interface StoredBatch {
  position: number;
  sizeBytes: number;
  baseOffset: number;
  lastOffset: number;
}

function partitionDir(dataDir: string, topic: string): string {
  return join(dataDir, `${topic}-0`);
}

function segmentBases(dir: string): number[] {
  return readdirSync(dir)
    .filter((name) => /^\d{20}\.log$/.test(name))
    .map((name) => Number(name.slice(0, 20)))
    .sort((a, b) => a - b);
}

function segmentFile(dir: string, base: number, suffix: '.log' | '.index' | '.timeindex'): string {
  return join(dir, `${String(base).padStart(20, '0')}${suffix}`);
}

/** The batches of a segment file, which must be whole batches back to back. */
function storedBatches(logPath: string): StoredBatch[] {
  const bytes = readFileSync(logPath);
  const out: StoredBatch[] = [];
  let position = 0;
  for (const batch of splitBatches(bytes)) {
    const header = readBatchHeader(batch);
    out.push({ position, sizeBytes: batch.length, baseOffset: header.baseOffset, lastOffset: header.baseOffset + header.lastOffsetDelta });
    position += batch.length;
  }
  expect(position, `${logPath} holds whole batches only`).toBe(bytes.length);
  return out;
}

function flipBit(file: string, position: number): void {
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    expect(readSync(fd, b, 0, 1, position)).toBe(1);
    b[0] ^= 0x01;
    writeSync(fd, b, 0, 1, position);
  } finally {
    closeSync(fd);
  }
}

/** Repeatable garbage (mulberry32): a failing run can be replayed byte for byte. */
function garbage(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let a = seed >>> 0;
  for (let i = 0; i < length; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) & 0xff;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The node's log (JSON lines on stderr, since it is not a terminal).

type LogLine = Record<string, unknown> & { level: number; msg: string };

function logLines(node: NodeProcess): LogLine[] {
  const out: LogLine[] = [];
  for (const line of node.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // A line cut by the kill: not one the node finished writing.
    }
  }
  return out;
}

function recoveredLines(node: NodeProcess, topic: string): LogLine[] {
  return logLines(node).filter((l) => l.msg.startsWith('recovered partition') && l.topic === topic);
}

// ---------------------------------------------------------------------------------------

describe('an unclean stop leaves a damaged tail: recovery cuts it and the log goes on', () => {
  const BATCHES = 30;

  it('torn last batch of the newest segment: cut at the last whole batch, appends continue there', async () => {
    // Where the tear falls in the last batch: mid-records, inside the 61-byte header, and
    // one byte short of its end.
    const cases = [
      { topic: 'torn-mid', keep: (b: StoredBatch) => Math.floor(b.sizeBytes / 2) },
      { topic: 'torn-header', keep: () => 20 },
      { topic: 'torn-one-byte', keep: (b: StoredBatch) => b.sizeBytes - 1 },
    ];
    const dataDir = newDataDir();
    const node = await startNodeProcess({ dataDir });
    const client = await rawClient(node);
    await createTopics(client, cases.map((c) => c.topic), KILL_TOPIC_CONFIG);
    const expected = new Map(cases.map((c) => [c.topic, new Map() as Expected]));
    for (let i = 0; i < BATCHES; i++) await produceRound(client, expected, 1);
    await node.kill();
    expect(existsSync(join(dataDir, CLEAN_SHUTDOWN_FILE))).toBe(false);

    const torn = cases.map((c) => {
      const dir = partitionDir(dataDir, c.topic);
      const bases = segmentBases(dir);
      expect(bases.length, `${c.topic}: segments`).toBeGreaterThanOrEqual(3);
      const newest = segmentFile(dir, bases[bases.length - 1], '.log');
      const batches = storedBatches(newest);
      expect(batches.length, `${c.topic}: batches in the newest segment`).toBeGreaterThanOrEqual(2);
      const last = batches[batches.length - 1];
      expect(last.lastOffset).toBe(BATCHES * RECORDS_PER_BATCH - 1);
      const keptBytes = c.keep(last);
      truncateSync(newest, last.position + keptBytes);
      return { ...c, newest, last, keptBytes };
    });

    const restarted = await startNodeProcess({ dataDir });
    const reader = await rawClient(restarted);
    expect(logLines(restarted).some((l) => l.level === LOG_LEVEL_WARN && /no clean-shutdown marker/.test(l.msg))).toBe(true);
    for (const t of torn) {
      const recovered = recoveredLines(restarted, t.topic);
      expect(recovered, `${t.topic}: one 'recovered partition' warning`).toHaveLength(1);
      expect(recovered[0].level).toBe(LOG_LEVEL_WARN);
      expect(recovered[0].truncatedBytes).toBe(t.keptBytes);
      expect(statSync(t.newest).size, `${t.topic}: newest segment cut at the torn batch`).toBe(t.last.position);

      const logEndOffset = t.last.baseOffset;
      expect(await latestOffset(reader, t.topic)).toBe(logEndOffset);
      const want = below(expected.get(t.topic)!, logEndOffset);
      expect(want.size).toBe(logEndOffset);
      expect(sorted(await readRange(reader, t.topic, 0, logEndOffset))).toEqual(sorted(want));
      // Nothing past the cut is served.
      const atEnd = await fetchAt(reader, t.topic, logEndOffset);
      expect([atEnd.error, atEnd.records.length, atEnd.highWatermark]).toEqual([0, 0, logEndOffset]);
      expected.set(t.topic, want);
    }

    // New appends take the offsets the torn batch had: no gap, no overlap.
    await produceRound(reader, expected, 2);
    await produceRound(reader, expected, 2);
    for (const t of torn) {
      const want = expected.get(t.topic)!;
      expect(Math.min(...[...want].filter(([, r]) => r.value.includes('|gen2|')).map(([o]) => o))).toBe(t.last.baseOffset);
      expect(await latestOffset(reader, t.topic)).toBe(want.size);
      expect(sorted(await readRange(reader, t.topic, 0, want.size))).toEqual(sorted(want));
    }

    // What recovery kept and what came after it survive a clean restart unchanged.
    expect(await restarted.stop()).toBe(0);
    const again = await startNodeProcess({ dataDir });
    const third = await rawClient(again);
    for (const t of torn) {
      const want = expected.get(t.topic)!;
      expect(await latestOffset(third, t.topic)).toBe(want.size);
      expect(sorted(await readRange(third, t.topic, 0, want.size))).toEqual(sorted(want));
      expect(recoveredLines(again, t.topic)).toEqual([]);
    }
    expect(await again.stop()).toBe(0);
  });

  it('bit flip in the newest segment: cut at the damaged batch, earlier data intact', async () => {
    // Which byte of the last batch is flipped: covered by the CRC (a record, the record
    // count), the CRC itself, and the fields outside it that recovery checks on their own
    // (magic, length, base offset). One more case flips a middle batch: the cut is there,
    // and the whole batches after it go too (nothing after a corrupt batch is trusted).
    const cases = [
      { topic: 'flip-record', batch: 'last', at: (b: StoredBatch) => b.sizeBytes - 10 },
      { topic: 'flip-count', batch: 'last', at: () => OFFSET_RECORD_COUNT + 3 },
      { topic: 'flip-crc', batch: 'last', at: () => OFFSET_CRC + 2 },
      { topic: 'flip-magic', batch: 'last', at: () => OFFSET_MAGIC },
      { topic: 'flip-length', batch: 'last', at: () => OFFSET_LENGTH + 3 },
      { topic: 'flip-base-offset', batch: 'last', at: () => OFFSET_BASE + 7 },
      { topic: 'flip-middle', batch: 'middle', at: () => BATCH_OVERHEAD + 5 },
    ] as const;
    const dataDir = newDataDir();
    const node = await startNodeProcess({ dataDir });
    const client = await rawClient(node);
    await createTopics(client, cases.map((c) => c.topic), KILL_TOPIC_CONFIG);
    const expected = new Map(cases.map((c) => [c.topic, new Map() as Expected]));
    for (let i = 0; i < BATCHES; i++) await produceRound(client, expected, 1);
    await node.kill();

    const damaged = cases.map((c) => {
      const dir = partitionDir(dataDir, c.topic);
      const bases = segmentBases(dir);
      expect(bases.length, `${c.topic}: segments`).toBeGreaterThanOrEqual(3);
      const newest = segmentFile(dir, bases[bases.length - 1], '.log');
      const batches = storedBatches(newest);
      expect(batches.length, `${c.topic}: batches in the newest segment`).toBeGreaterThanOrEqual(3);
      const hit = c.batch === 'last' ? batches[batches.length - 1] : batches[Math.floor(batches.length / 2)];
      const sizeBefore = statSync(newest).size;
      flipBit(newest, hit.position + c.at(hit));
      return { ...c, newest, hit, cutBytes: sizeBefore - hit.position };
    });

    const restarted = await startNodeProcess({ dataDir });
    const reader = await rawClient(restarted);
    for (const d of damaged) {
      const recovered = recoveredLines(restarted, d.topic);
      expect(recovered, `${d.topic}: one 'recovered partition' warning`).toHaveLength(1);
      expect(recovered[0].level).toBe(LOG_LEVEL_WARN);
      expect(recovered[0].truncatedBytes, d.topic).toBe(d.cutBytes);
      expect(statSync(d.newest).size, `${d.topic}: cut at the damaged batch`).toBe(d.hit.position);

      const logEndOffset = d.hit.baseOffset;
      expect(await latestOffset(reader, d.topic), d.topic).toBe(logEndOffset);
      const want = below(expected.get(d.topic)!, logEndOffset);
      expect(sorted(await readRange(reader, d.topic, 0, logEndOffset))).toEqual(sorted(want));
      expected.set(d.topic, want);
    }
    await produceRound(reader, expected, 2);
    for (const d of damaged) {
      const want = expected.get(d.topic)!;
      expect(want.get(d.hit.baseOffset)!.value).toContain('|gen2|');
      expect(await latestOffset(reader, d.topic)).toBe(want.size);
      expect(sorted(await readRange(reader, d.topic, 0, want.size))).toEqual(sorted(want));
    }
    expect(await restarted.stop()).toBe(0);
  });
});

describe('a clean stop skips the scan: damage in a sealed segment is found on read', () => {
  it('a corrupt batch in an older segment is answered CORRUPT_BATCH, never served, and the node goes on', async () => {
    const topic = 'sealed';
    const dataDir = newDataDir();
    const node = await startNodeProcess({ dataDir });
    const client = await rawClient(node);
    await createTopics(client, [topic], { 'segment.bytes': SEGMENT_BYTES });
    const expected = new Map([[topic, new Map() as Expected]]);
    for (let i = 0; i < 50; i++) await produceRound(client, expected, 1);
    const records = expected.get(topic)!;
    expect(await node.stop()).toBe(0);
    expect(existsSync(join(dataDir, CLEAN_SHUTDOWN_FILE))).toBe(true);

    // Flip a bit inside the records of a middle batch of the second segment (sealed; two
    // newer segments follow it).
    const dir = partitionDir(dataDir, topic);
    const bases = segmentBases(dir);
    expect(bases.length).toBeGreaterThanOrEqual(4);
    const sealedLog = segmentFile(dir, bases[1], '.log');
    const batches = storedBatches(sealedLog);
    expect(batches.length).toBeGreaterThanOrEqual(3);
    const hit = batches[Math.floor(batches.length / 2)];
    expect(hit.baseOffset).toBeGreaterThan(bases[1]);
    const sizeBefore = statSync(sealedLog).size;
    flipBit(sealedLog, hit.position + BATCH_OVERHEAD + 5);
    const logEndOffset = records.size;

    const restarted = await startNodeProcess({ dataDir });
    const reader = await rawClient(restarted);
    // The marker was there: no scan, nothing cut, every segment kept.
    expect(logLines(restarted).filter((l) => /no clean-shutdown marker|recovered partition/.test(l.msg))).toEqual([]);
    expect(statSync(sealedLog).size).toBe(sizeBefore);
    expect(segmentBases(dir)).toEqual(bases);
    expect(await latestOffset(reader, topic)).toBe(logEndOffset);

    // At the damaged batch, and at an offset inside it: CORRUPT_BATCH and no bytes.
    for (const offset of [hit.baseOffset, hit.baseOffset + 2, hit.lastOffset]) {
      const answer = await fetchAt(reader, topic, offset);
      expect([answer.error, answer.records.length], `fetch at ${offset}`).toEqual([Errors.CORRUPT_BATCH.code, 0]);
      expect(answer.message).toMatch(/CRC/);
    }
    // From the start of its segment: the good batches before it, and not it.
    const before = await fetchAt(reader, topic, bases[1]);
    expect(before.error).toBe(0);
    expect(splitBatches(before.records).map((b) => readBatchHeader(b).baseOffset)).toEqual(batches.filter((b) => b.baseOffset < hit.baseOffset).map((b) => b.baseOffset));
    expect(sorted(decodeRecords(before.records))).toEqual(sorted(new Map([...records].filter(([o]) => o >= bases[1] && o < hit.baseOffset))));

    // Everything else reads back: the log before the damaged batch, the rest of its
    // segment after it, and the newer segments.
    expect(sorted(await readRange(reader, topic, 0, hit.baseOffset))).toEqual(sorted(below(records, hit.baseOffset)));
    expect(sorted(await readRange(reader, topic, hit.lastOffset + 1, logEndOffset))).toEqual(
      sorted(new Map([...records].filter(([o]) => o > hit.lastOffset))),
    );
    expect(sorted(await readRange(reader, topic, bases[2], logEndOffset))).toEqual(sorted(new Map([...records].filter(([o]) => o >= bases[2]))));

    // ListOffsets by time: a timestamp whose answer lies in the damaged batch needs its
    // records, so it is an error too; timestamps elsewhere answer exactly.
    expect((await listOffset(reader, topic, records.get(hit.baseOffset + 1)!.timestamp)).error).toBe(Errors.CORRUPT_BATCH.code);
    for (const offset of [0, bases[1], hit.lastOffset + 1, bases[2] + 1, logEndOffset - 1]) {
      const answer = await listOffset(reader, topic, records.get(offset)!.timestamp);
      expect([answer.error, answer.offset, answer.timestamp], `ListOffsets for offset ${offset}`).toEqual([0, offset, records.get(offset)!.timestamp]);
    }

    // Through the SDK: the records before the damaged batch, then a PartitionError
    // CORRUPT_BATCH at its offset; a seek past it goes on with the rest.
    const connection = await connect(restarted.url);
    try {
      const consumer = connection.consumer({ autoOffsetReset: 'none', valueDecoding: 'string', maxWaitMs: 50 });
      consumer.assign([{ topic, partition: 0, offset: bases[1] }]);
      const got: Expected = new Map();
      let failure: unknown = null;
      try {
        for await (const r of consumer) {
          got.set(r.offset, { value: r.value!, timestamp: r.timestamp });
          if (r.offset >= hit.baseOffset) break; // served a record it must not have
        }
      } catch (err) {
        failure = err;
      }
      expect(sorted(got)).toEqual(sorted(new Map([...records].filter(([o]) => o >= bases[1] && o < hit.baseOffset))));
      expect(failure).toBeInstanceOf(PartitionError);
      expect(failure).toBeInstanceOf(TributaryError);
      const pe = failure as PartitionError;
      expect([pe.code, pe.errorName, pe.topic, pe.partition, pe.offset]).toEqual([Errors.CORRUPT_BATCH.code, 'CORRUPT_BATCH', topic, 0, hit.baseOffset]);

      consumer.seek(topic, 0, hit.lastOffset + 1);
      const rest: Expected = new Map();
      for await (const r of consumer) {
        rest.set(r.offset, { value: r.value!, timestamp: r.timestamp });
        if (r.offset >= logEndOffset - 1) break;
      }
      expect(sorted(rest)).toEqual(sorted(new Map([...records].filter(([o]) => o > hit.lastOffset))));
    } finally {
      await connection.close();
    }

    // The node is alive and serves everything else.
    expect([restarted.proc.exitCode, restarted.proc.signalCode]).toEqual([null, null]);
    const health = await fetch(`http://127.0.0.1:${restarted.port}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', topics: 1 });
    const metadata = await reader.request<{ topics: { name: string; error: number; partitions: unknown[] }[] }>(Kind.Metadata, {});
    expect(metadata.topics.map((t) => [t.name, t.error, t.partitions.length])).toEqual([[topic, 0, 1]]);
    await produceRound(reader, expected, 2);
    expect(sorted(await readRange(reader, topic, logEndOffset, records.size))).toEqual(sorted(new Map([...records].filter(([o]) => o >= logEndOffset))));
    expect(await restarted.stop()).toBe(0);
  });
});

describe('an unclean stop with lost or garbage index files: restart rebuilds them', () => {
  it('reads at every offset and ListOffsets by time answer exactly', async () => {
    const topic = 'indexed';
    const dataDir = newDataDir();
    const node = await startNodeProcess({ dataDir });
    const client = await rawClient(node);
    // Small index.interval.bytes: each sealed segment's indexes hold many entries, so a
    // lookup really goes through them.
    await createTopics(client, [topic], { ...KILL_TOPIC_CONFIG, 'index.interval.bytes': 256 });
    const expected = new Map([[topic, new Map() as Expected]]);
    for (let i = 0; i < 80; i++) await produceRound(client, expected, 1);
    const records = expected.get(topic)!;
    const logEndOffset = records.size;
    await node.kill();

    const dir = partitionDir(dataDir, topic);
    const bases = segmentBases(dir);
    expect(bases.length).toBeGreaterThanOrEqual(7);
    const sealed = bases.slice(0, -1);
    const original = new Map(sealed.map((b) => [b, { index: readFileSync(segmentFile(dir, b, '.index')), timeindex: readFileSync(segmentFile(dir, b, '.timeindex')) }]));
    for (const [b, files] of original) {
      expect(files.index.length / 8, `entries in ${b}.index`).toBeGreaterThanOrEqual(4);
      expect(files.timeindex.length / 12, `entries in ${b}.timeindex`).toBeGreaterThanOrEqual(4);
    }
    const index = (b: number) => segmentFile(dir, b, '.index');
    const timeindex = (b: number) => segmentFile(dir, b, '.timeindex');
    // One kind of damage per sealed segment. Zero-filled files are what a crash leaves of a
    // file whose size reached the disk before its data did.
    const damage: [string, () => void][] = [
      ['both missing', () => {
        unlinkSync(index(sealed[0]));
        unlinkSync(timeindex(sealed[0]));
      }],
      ['.index intact, .timeindex zero-filled', () => writeFileSync(timeindex(sealed[1]), Buffer.alloc(original.get(sealed[1])!.timeindex.length))],
      ['.index zero-filled, .timeindex intact', () => writeFileSync(index(sealed[2]), Buffer.alloc(original.get(sealed[2])!.index.length))],
      ['.index random bytes, .timeindex random and torn', () => {
        writeFileSync(index(sealed[3]), garbage(original.get(sealed[3])!.index.length, 3));
        writeFileSync(timeindex(sealed[3]), garbage(original.get(sealed[3])!.timeindex.length + 5, 4));
      }],
      ['.index torn mid-entry, .timeindex missing', () => {
        truncateSync(index(sealed[4]), original.get(sealed[4])!.index.length - 3);
        unlinkSync(timeindex(sealed[4]));
      }],
      ['.index intact, .timeindex random whole entries', () => writeFileSync(timeindex(sealed[5]), garbage(original.get(sealed[5])!.timeindex.length, 5))],
    ];
    for (const [, act] of damage) act();
    // The newest segment had no index files (they live in memory until it is sealed):
    // stale garbage ones beside it must not matter.
    writeFileSync(index(bases[bases.length - 1]), garbage(64, 6));
    writeFileSync(timeindex(bases[bases.length - 1]), garbage(96, 7));

    // The sealed segments' index files are rebuilt byte for byte as append wrote them
    // (segment-indexes.ts: one rule for append and rebuild), checked before any read.
    const expectIndexFilesRebuilt = (when: string) => {
      for (const [i, [what]] of damage.entries()) {
        const b = sealed[i];
        for (const [file, want] of [[index(b), original.get(b)!.index], [timeindex(b), original.get(b)!.timeindex]] as const) {
          const found = existsSync(file) ? (readFileSync(file).equals(want) ? 'as written' : 'different') : 'missing';
          expect.soft(found, `${when}, ${what}: ${file.slice(dir.length + 1)}`).toBe('as written');
        }
      }
    };

    const restarted = await startNodeProcess({ dataDir });
    const reader = await rawClient(restarted);
    expectIndexFilesRebuilt('after the unclean restart');
    await expectExactAnswers(reader, topic, records, logEndOffset, 'after the unclean restart');

    // A clean restart trusts the index files it finds: they must still answer exactly.
    expect(await restarted.stop()).toBe(0);
    const again = await startNodeProcess({ dataDir });
    const third = await rawClient(again);
    await expectExactAnswers(third, topic, records, logEndOffset, 'after a clean restart');
    expect(await again.stop()).toBe(0);
    expectIndexFilesRebuilt('after a clean restart and stop');
  });
});

/**
 * Fetch at every offset gives the batch holding it with the right record; ListOffsets for
 * each record's timestamp, and for a time just before it, gives that record; the ends of
 * the log answer as Kafka does. Mismatches are collected so one run shows all of them.
 */
async function expectExactAnswers(client: RawClient, topic: string, records: Expected, logEndOffset: number, when: string): Promise<void> {
  const wrongReads: unknown[] = [];
  for (let offset = 0; offset < logEndOffset; offset++) {
    const answer = await fetchAt(client, topic, offset, 1);
    const got = answer.error === 0 ? decodeRecords(answer.records).get(offset) : undefined;
    if (answer.error !== 0 || got?.value !== records.get(offset)!.value || got?.timestamp !== records.get(offset)!.timestamp) {
      wrongReads.push({ offset, error: answer.error, message: answer.message, got });
    }
  }
  expect.soft({ count: wrongReads.length, first: wrongReads.slice(0, 5) }, `${when}: fetch at every offset`).toEqual({ count: 0, first: [] });

  const queries: { timestamp: number; offset: number }[] = [];
  for (let offset = 0; offset < logEndOffset; offset++) {
    const timestamp = records.get(offset)!.timestamp;
    queries.push({ timestamp, offset }, { timestamp: timestamp - TIMESTAMP_STEP_MS / 2, offset });
  }
  const answers = await listOffsets(client, topic, queries.map((q) => q.timestamp));
  const wrongTimes: unknown[] = [];
  queries.forEach((q, i) => {
    const a = answers[i];
    const want = records.get(q.offset)!.timestamp;
    if (a.error !== 0 || a.offset !== q.offset || a.timestamp !== want) wrongTimes.push({ asked: q.timestamp, want: q.offset, got: a });
  });
  expect.soft({ count: wrongTimes.length, first: wrongTimes.slice(0, 5) }, `${when}: ListOffsets by timestamp`).toEqual({ count: 0, first: [] });

  const [past, earliest, latest] = await listOffsets(client, topic, [T0 + logEndOffset * TIMESTAMP_STEP_MS, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP]);
  expect.soft([past.error, past.offset], `${when}: ListOffsets past the last timestamp`).toEqual([0, -1]);
  expect.soft([earliest.offset, latest.offset], `${when}: earliest and latest`).toEqual([0, logEndOffset]);
}
