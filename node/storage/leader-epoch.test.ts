import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LEADER_EPOCH_CHECKPOINT_FILE, LeaderEpochCache, parseLeaderEpochCheckpoint, readLeaderEpochCheckpoint, UNDEFINED_EPOCH, writeLeaderEpochCheckpoint } from './leader-epoch.js';
import type { EpochEntry } from './leader-epoch.js';
import { nodeFileOps } from './file-ops.js';
import { makeTempDir, removeDir } from './testing.js';

// Epoch 0 from 0, epoch 2 from 100, epoch 5 from 250; the log ends at 400.
const HISTORY: EpochEntry[] = [
  { epoch: 0, startOffset: 0 },
  { epoch: 2, startOffset: 100 },
  { epoch: 5, startOffset: 250 },
];

describe('endOffsetFor (KIP-279)', () => {
  const cases: { asked: number; answer: [number, number]; why: string }[] = [
    { asked: 5, answer: [5, 400], why: 'the latest epoch ends at the log end' },
    { asked: 2, answer: [2, 250], why: 'an older epoch ends where the next begins' },
    { asked: 0, answer: [0, 100], why: 'the first epoch' },
    { asked: 1, answer: [0, 100], why: 'an epoch this log never had: the largest below it, ending where the next above it begins' },
    { asked: 4, answer: [2, 250], why: 'a gap between two epochs' },
    { asked: 6, answer: [UNDEFINED_EPOCH, -1], why: 'newer than any epoch here' },
    { asked: UNDEFINED_EPOCH, answer: [UNDEFINED_EPOCH, -1], why: 'no epoch asked' },
  ];
  for (const c of cases) {
    it(`epoch ${c.asked}: ${c.why}`, () => {
      const cache = new LeaderEpochCache(HISTORY);
      expect(cache.endOffsetFor(c.asked, 400)).toEqual({ leaderEpoch: c.answer[0], endOffset: c.answer[1] });
    });
  }

  it('an epoch older than every entry answers itself and the first start (the log start moved past it)', () => {
    const cache = new LeaderEpochCache([{ epoch: 3, startOffset: 50 }, { epoch: 4, startOffset: 90 }]);
    expect(cache.endOffsetFor(1, 120)).toEqual({ leaderEpoch: 1, endOffset: 50 });
  });

  it('an empty history answers nothing', () => {
    expect(new LeaderEpochCache().endOffsetFor(0, 10)).toEqual({ leaderEpoch: UNDEFINED_EPOCH, endOffset: -1 });
  });
});

describe('assign', () => {
  it('takes a newer epoch, ignores a repeat of the latest, and drops entries a cut log no longer has', () => {
    const cache = new LeaderEpochCache(HISTORY);
    expect(cache.assign(5, 300)).toBe(false);
    expect(cache.assign(6, 400)).toBe(true);
    expect(cache.latestEpoch).toBe(6);
    // A follower told by its leader that epoch 3 began at 200: epochs 5 and 6 were never the leader's.
    expect(cache.assign(3, 200)).toBe(true);
    expect(cache.list()).toEqual([{ epoch: 0, startOffset: 0 }, { epoch: 2, startOffset: 100 }, { epoch: 3, startOffset: 200 }]);
  });

  it('refuses what is no epoch or offset', () => {
    const cache = new LeaderEpochCache();
    expect(() => cache.assign(-1, 0)).toThrow(RangeError);
    expect(() => cache.assign(2 ** 31, 0)).toThrow(RangeError);
    expect(() => cache.assign(0, -5)).toThrow(RangeError);
    expect(() => cache.assign(0, 0.5)).toThrow(RangeError);
  });
});

describe('truncation', () => {
  it('from the end drops epochs that began above the new log end, keeping one that begins exactly there', () => {
    const cache = new LeaderEpochCache(HISTORY);
    expect(cache.truncateFromEnd(400)).toBe(false);
    expect(cache.truncateFromEnd(250)).toBe(false);
    expect(cache.truncateFromEnd(249)).toBe(true);
    expect(cache.list()).toEqual(HISTORY.slice(0, 2));
    expect(cache.truncateFromEnd(0)).toBe(true);
    expect(cache.list()).toEqual([{ epoch: 0, startOffset: 0 }]);
  });

  it('from the start forgets epochs that ended below the log start and starts the one holding it there', () => {
    const cache = new LeaderEpochCache(HISTORY);
    expect(cache.truncateFromStart(0)).toBe(false);
    expect(cache.truncateFromStart(120)).toBe(true);
    expect(cache.list()).toEqual([{ epoch: 2, startOffset: 120 }, { epoch: 5, startOffset: 250 }]);
    expect(cache.truncateFromStart(250)).toBe(true);
    expect(cache.list()).toEqual([{ epoch: 5, startOffset: 250 }]);
    expect(cache.endOffsetFor(2, 400)).toEqual({ leaderEpoch: 2, endOffset: 250 });
  });

  it('epochAt names the epoch that wrote an offset', () => {
    const cache = new LeaderEpochCache(HISTORY);
    expect([0, 99, 100, 249, 250, 399].map((o) => cache.epochAt(o))).toEqual([0, 0, 2, 2, 5, 5]);
  });
});

describe('the checkpoint file', () => {
  let dir: string;
  beforeEach(() => {
    dir = makeTempDir();
  });
  afterEach(() => removeDir(dir));

  it("is Kafka's format and reads back", async () => {
    await writeLeaderEpochCheckpoint(nodeFileOps, dir, new LeaderEpochCache(HISTORY));
    expect(fs.readFileSync(path.join(dir, LEADER_EPOCH_CHECKPOINT_FILE), 'latin1')).toBe('0\n3\n0 0\n2 100\n5 250\n');
    expect(readLeaderEpochCheckpoint(nodeFileOps, dir)).toEqual({ entries: HISTORY });
    expect(fs.readdirSync(dir)).toEqual([LEADER_EPOCH_CHECKPOINT_FILE]);
  });

  it('missing is said as missing', () => {
    expect(readLeaderEpochCheckpoint(nodeFileOps, dir)).toEqual({ entries: null, problem: 'missing' });
  });

  const bad: [string, RegExp][] = [
    ['1\n0\n', /unknown version/],
    ['0\n2\n0 0\n', /count/],
    ['0\n1\n0 0', /newline/],
    ['0\n1\nx 0\n', /bad entry/],
    ['0\n2\n3 10\n2 20\n', /out of order/],
    ['0\n2\n1 20\n2 10\n', /out of order/],
    ['0\n1\n4294967296 0\n', /bad entry|out of range/],
  ];
  for (const [text, why] of bad) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      expect(() => parseLeaderEpochCheckpoint(text)).toThrow(why);
      fs.writeFileSync(path.join(dir, LEADER_EPOCH_CHECKPOINT_FILE), text);
      const read = readLeaderEpochCheckpoint(nodeFileOps, dir);
      expect(read.entries).toBeNull();
    });
  }
});
