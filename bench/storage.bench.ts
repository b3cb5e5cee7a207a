// Micro-benchmarks of the storage engine's hot paths: append (validate, patch base offset
// and leader epoch, positional write into the page cache, index), a follower's append of
// the leader's batch (the same checks, offsets and epoch kept), and an indexed read of
// 1 MiB from the middle of a log (index lookup, header walk, one read, CRC check of every
// batch), plus ListOffsets by time and the replay of a 1 MiB log from its start (what a
// node does for its internal topics at start). Benches register at import; they run only
// when this file is executed directly, so an aggregate bench runner can import it.
//
// Targets: append >= 300 MB/s with flush=os for 16 KiB batches; indexed read >= 1 GB/s
// from the page cache.

import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { bench, do_not_optimize, group, run } from 'mitata';
import { setBaseOffset, setPartitionLeaderEpoch } from '../protocol/record-batch.js';
import { parseTopicConfig } from '../node/storage/config.js';
import { PartitionLog } from '../node/storage/partition-log.js';
import { replayLog } from '../node/storage/replay.js';
import type { OpenPartitionOptions } from '../node/storage/partition-log.js';
import { makeBatch, makeTempDir, removeDir } from '../node/storage/testing.js';

const MIB = 1024 * 1024;
// 100 records of ~150 bytes: a 16 KiB batch, as a gateway's producer would send.
const BATCH = makeBatch({ records: 100, valueBytes: 145, stepMs: 1 });
// Keeps the append benches' disk use bounded: a fresh log after this many bytes.
const APPEND_LOG_BYTES_MAX = 512 * MIB;

/** A log in a fresh temporary folder, removed by the returned cleanup. */
async function openLog(name: string, config: Record<string, string | number>, options: OpenPartitionOptions = {}): Promise<{ log: PartitionLog; cleanUp: () => Promise<void> }> {
  const dir = makeTempDir();
  const log = await PartitionLog.open(path.join(dir, `${name}-0`), name, 0, parseTopicConfig(config), options);
  return {
    log,
    cleanUp: async () => {
      await log.close().catch(() => undefined);
      removeDir(dir);
    },
  };
}

// Setup runs when mitata runs the bench (async generator: setup, yield the body, teardown),
// so importing this file writes nothing.
function appendBench(flush: 'os' | 'interval') {
  return async function* () {
    let current = await openLog(`append-${flush}`, { flush });
    const retired: (() => Promise<void>)[] = [];
    yield () => {
      // Bounded disk use: start over on a new folder (synchronous open is not available,
      // so the swap happens on the next turn; the old log takes the appends until then).
      if (current.log.sizeBytes > APPEND_LOG_BYTES_MAX && retired.length === 0) {
        retired.push(current.cleanUp);
        void openLog(`append-${flush}`, { flush }).then((next) => {
          current = next;
        });
      }
      do_not_optimize(current.log.append(BATCH));
    };
    for (const cleanUp of retired) await cleanUp();
    await current.cleanUp();
  };
}

/** A follower's append of the leader's 100-record batch, at the follower's log end, in epoch 0. */
function followerAppendBench() {
  return async function* () {
    let current = await openLog('follow', { flush: 'os' }, { follower: true });
    // A leader's stored batch: its base offset is set to the follower's log end before each
    // append (outside the CRC, as a leader patches it), and its leader epoch is 0.
    const batch = Buffer.from(BATCH);
    setPartitionLeaderEpoch(batch, 0);
    const retired: (() => Promise<void>)[] = [];
    yield async () => {
      if (current.log.sizeBytes > APPEND_LOG_BYTES_MAX && retired.length === 0) {
        retired.push(current.cleanUp);
        current = await openLog('follow', { flush: 'os' }, { follower: true });
      }
      setBaseOffset(batch, current.log.logEndOffset);
      do_not_optimize(await current.log.appendAsFollower(batch));
    };
    for (const cleanUp of retired) await cleanUp();
    await current.cleanUp();
  };
}

const READ_LOG_BATCHES = 4200; // ~66 MiB: one sealed 64 MiB segment and the active one
const T0 = 1_700_000_000_000;

async function readLog(): Promise<{ log: PartitionLog; cleanUp: () => Promise<void> }> {
  const target = await openLog('read', { flush: 'os' });
  for (let i = 0; i < READ_LOG_BATCHES; i++) {
    target.log.append(makeBatch({ records: 100, valueBytes: 145, timestamp: T0 + i * 1000, stepMs: 1, fill: i }));
  }
  await target.log.flush();
  return target;
}

/** 64 offsets and times spread over the middle half of the read log. */
function middle(i: number): number {
  return 0.25 + i / 128;
}

group(`append one ${BATCH.length}-byte batch (100 records)`, () => {
  bench("append flush='os'", appendBench('os'));
  bench("append flush='interval'", appendBench('interval'));
});

group(`append the leader's ${BATCH.length}-byte batch as a follower`, () => {
  bench("appendAsFollower flush='os'", followerAppendBench());
});

group('read 1 MiB from the middle of a 66 MiB log via the index', () => {
  bench('read(offset, 1 MiB)', async function* () {
    const { log, cleanUp } = await readLog();
    const offsets = Array.from({ length: 64 }, (_, i) => Math.floor(log.logEndOffset * middle(i)) + (i % 100));
    let cursor = 0;
    yield () => {
      cursor = (cursor + 1) & 63;
      do_not_optimize(log.read(offsets[cursor], MIB));
    };
    await cleanUp();
  });
});

group('ListOffsets by time in a 66 MiB log', () => {
  bench('offsetForTimestamp(t)', async function* () {
    const { log, cleanUp } = await readLog();
    const times = Array.from({ length: 64 }, (_, i) => T0 + Math.floor(READ_LOG_BATCHES * middle(i)) * 1000 + (i % 100) + 0.5);
    let cursor = 0;
    yield () => {
      cursor = (cursor + 1) & 63;
      do_not_optimize(log.offsetForTimestamp(times[cursor]));
    };
    await cleanUp();
  });
});

/** Batches of the replayed log: 64 of 16 KiB, 1 MiB and 6,400 records. */
const REPLAY_LOG_BATCHES = 64;

group('replay a 1 MiB log, as a node replays __consumer_offsets and __revocations at start', () => {
  bench('replayLog(1 MiB)', async function* () {
    const target = await openLog('replay', { flush: 'os' });
    for (let i = 0; i < REPLAY_LOG_BATCHES; i++) target.log.append(makeBatch({ records: 100, valueBytes: 145, timestamp: T0 + i * 1000, stepMs: 1, fill: i }));
    await target.log.flush();
    let records = 0;
    yield () => {
      do_not_optimize(replayLog(target.log, () => records++, { decompressedBytesMax: 64 * MIB }));
    };
    do_not_optimize(records);
    await target.cleanUp();
  });
});

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const report = await run();
  for (const trial of report.benchmarks) {
    for (const result of trial.runs) {
      if (result.stats === undefined || trial.alias.startsWith('offsetFor')) continue;
      const bytes = trial.alias.startsWith('read') || trial.alias.startsWith('replay') ? MIB : BATCH.length;
      // avg includes the kernel's dirty-page writeback stalls; p50 is the write path itself.
      const mbPerS = (ns: number): string => (bytes / (ns / 1e9) / 1e6).toFixed(0);
      process.stdout.write(`${trial.alias}: ${mbPerS(result.stats.avg)} MB/s at avg, ${mbPerS(result.stats.p50)} MB/s at p50\n`);
    }
  }
}
