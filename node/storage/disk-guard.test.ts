import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import { DiskGuard, type DiskGuardOptions } from './disk-guard.js';
import { LogManager } from './log-manager.js';
import { makeBatch, makeTempDir, removeDir } from './testing.js';

let dir: string;
let manager: LogManager;
let logLines: string[];
const T0 = 1_750_000_000_000;

beforeEach(async () => {
  dir = makeTempDir();
  manager = await LogManager.open(dir);
  logLines = [];
});

afterEach(async () => {
  await manager.close().catch(() => undefined);
  removeDir(dir);
});

function guard(options: Partial<DiskGuardOptions>): DiskGuard {
  const logger = createLogger({ level: 'info', pretty: false, write: (line) => logLines.push(line) });
  return new DiskGuard(manager, { maxBytes: 0, minFreeBytes: 0, action: 'refuse', dropUnsent: false, logger, ...options });
}

/** `count` one-batch segments of ~600 bytes, record timestamps from `t`, one apart. */
async function fill(topic: string, partition: number, count: number, t: number): Promise<void> {
  const log = manager.partition(topic, partition)!;
  for (let i = 0; i < count; i++) log.append(makeBatch({ records: 2, valueBytes: 250, timestamp: t + i }));
  await log.flush();
}

async function setUp(): Promise<void> {
  await manager.createTopic('a', 2, { 'segment.bytes': 1024, flush: 'os' });
  await manager.createTopic('b', 1, { 'segment.bytes': 1024, flush: 'os' });
  await manager.createTopic('__internal', 1, { 'segment.bytes': 1024, flush: 'os' }, { internal: true });
  // Oldest records: b-0, then a-1, then a-0; the internal topic is the oldest of all.
  await fill('a', 0, 3, T0 + 2000);
  await fill('a', 1, 3, T0 + 1000);
  await fill('b', 0, 3, T0);
  await fill('__internal', 0, 3, 0);
}

function used(): number {
  let total = 0;
  for (const t of manager.topics()) for (let p = 0; p < t.partitions; p++) total += manager.partition(t.name, p)!.sizeBytes;
  return total;
}

describe('disk guard', () => {
  it('is off without limits, and under the limits it neither drops nor refuses', async () => {
    await setUp();
    expect(guard({}).enabled).toBe(false);
    const g = guard({ maxBytes: used() + 1 });
    const check = await g.check();
    expect(check).toMatchObject({ usedBytes: used(), refusing: false, dropped: [] });
    expect(g.refusing).toBe(false);
  });

  it('refuse: past storage.maxBytes it refuses, drops nothing, and accepts again once back under', async () => {
    await setUp();
    const total = used();
    const g = guard({ maxBytes: total - 1 });
    expect((await g.check()).refusing).toBe(true);
    expect(g.refusing).toBe(true);
    // User topics are refused; internal ones (offset commits, revocations) are not.
    expect(g.refuses('a')).toBe(true);
    expect(g.refuses('__revocations')).toBe(false);
    expect(used()).toBe(total);
    expect(logLines.some((l) => l.includes('refusing produce'))).toBe(true);
    await manager.deleteTopic('b');
    expect((await g.check()).refusing).toBe(false);
    expect(logLines.some((l) => l.includes('accepting produce'))).toBe(true);
  });

  it('refuse: below storage.minFreeBytes of the file system', async () => {
    await setUp();
    let free = 10_000;
    const g = guard({ minFreeBytes: 5_000, freeBytes: async () => free });
    expect((await g.check()).refusing).toBe(false);
    free = 4_999;
    expect((await g.check()).refusing).toBe(true);
    expect(g.status()).toMatchObject({ freeBytes: 4_999, refusing: true });
  });

  it('drop: deletes the oldest closed segments across user topics, oldest records first, until under the limit', async () => {
    await setUp();
    const segmentBytes = manager.partition('b', 0)!.closedSegments()[0].sizeBytes;
    const dropped: string[] = [];
    const g = guard({ action: 'drop', maxBytes: used() - 3 * segmentBytes, onDropped: (t, p, bytes) => dropped.push(`${t}-${p}:${bytes}`) });
    const check = await g.check();
    expect(check.refusing).toBe(false);
    // b-0 holds the oldest records: both its closed segments go, then a-1's first.
    expect(check.dropped.map((d) => `${d.topic}-${d.partition}@${d.baseOffset}`)).toEqual(['b-0@0', 'b-0@2', 'a-1@0']);
    expect(dropped).toEqual([`b-0:${segmentBytes}`, `b-0:${segmentBytes}`, `a-1:${segmentBytes}`]);
    expect(manager.partition('b', 0)!.logStartOffset).toBe(4);
    expect(manager.partition('a', 1)!.logStartOffset).toBe(2);
    expect(manager.partition('__internal', 0)!.logStartOffset).toBe(0);
    expect(logLines.filter((l) => l.includes('dropped the oldest segment'))).toHaveLength(3);
  });

  it('drop: never a segment holding offsets an uplink has not sent, unless dropUnsent', async () => {
    await setUp();
    const segmentBytes = manager.partition('b', 0)!.closedSegments()[0].sizeBytes;
    // b-0 was forwarded up to offset 3 (its first segment, [0, 2), is sent; [2, 4) is not all sent).
    const unsentFrom = (topic: string, partition: number): number | undefined => (topic === 'b' && partition === 0 ? 3 : topic === 'a' ? 0 : undefined);
    const check = await guard({ action: 'drop', maxBytes: used() - 2 * segmentBytes, unsentFrom }).check();
    expect(check.dropped.map((d) => `${d.topic}-${d.partition}@${d.baseOffset}`)).toEqual(['b-0@0']);
    // Nothing else may go: the guard refuses rather than drop unsent data.
    expect(check.refusing).toBe(true);
    expect(logLines.some((l) => l.includes('nothing left that may be dropped'))).toBe(true);
    const forced = await guard({ action: 'drop', maxBytes: used() - segmentBytes, unsentFrom, dropUnsent: true }).check();
    expect(forced.dropped.map((d) => `${d.topic}-${d.partition}@${d.baseOffset}`)).toEqual(['b-0@2']);
    expect(forced.refusing).toBe(false);
  });

  it('drop: refuses when only active segments and internal topics are left', async () => {
    await setUp();
    const check = await guard({ action: 'drop', maxBytes: 1 }).check();
    // Every closed segment of a and b went; the active ones and the internal topic stay.
    expect(check.dropped).toHaveLength(6);
    expect(check.refusing).toBe(true);
    for (const [t, p] of [['a', 0], ['a', 1], ['b', 0]] as const) expect(manager.partition(t, p)!.segmentCount).toBe(1);
    expect(manager.partition('__internal', 0)!.segmentCount).toBe(3);
  });

  it('noteAppended starts a check once enough bytes were appended, and checks never overlap', async () => {
    await setUp();
    let statfsCalls = 0;
    let release!: () => void;
    const g = guard({
      minFreeBytes: 100 * 1024 * 1024,
      freeBytes: async () => {
        statfsCalls++;
        await new Promise<void>((r) => (release = r));
        return 1;
      },
    });
    g.noteAppended(1024);
    expect(statfsCalls).toBe(0);
    g.noteAppended(1024 * 1024);
    await new Promise((r) => setImmediate(r));
    expect(statfsCalls).toBe(1);
    // A second trigger and an explicit check join the one running.
    g.noteAppended(4 * 1024 * 1024);
    const joined = g.check();
    await new Promise((r) => setImmediate(r));
    expect(statfsCalls).toBe(1);
    release();
    expect((await joined).refusing).toBe(true);
    expect(g.refusing).toBe(true);
  });
});
