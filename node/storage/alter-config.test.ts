// Topic configs changed at run time (AlterConfigs): all or nothing, durable, and applied to
// live partitions at the moment each key is next used.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TributaryError } from '../../protocol/errors.js';
import { splitBatches } from '../../protocol/record-batch.js';
import { DEFAULT_TOPIC_CONFIG } from './config.js';
import { LogManager } from './log-manager.js';
import type { ConfigChange, LogManagerOptions } from './log-manager.js';
import { errorName, faultyFileOps, makeBatch, makeTempDir, removeDir, type FaultyFileOps } from './testing.js';

let dir: string;
const managers: LogManager[] = [];
const faults: FaultyFileOps[] = [];

beforeEach(() => {
  dir = makeTempDir();
});

afterEach(async () => {
  // A test that failed while holding fsyncs must not leave close() waiting for them.
  for (const ops of faults.splice(0)) {
    ops.holdSyncs(false);
    ops.release();
  }
  for (const manager of managers.splice(0)) await manager.close().catch(() => undefined);
  removeDir(dir);
});

async function open(options: LogManagerOptions = {}): Promise<LogManager> {
  const manager = await LogManager.open(dir, options);
  managers.push(manager);
  return manager;
}

function faulty(): FaultyFileOps {
  const ops = faultyFileOps();
  faults.push(ops);
  return ops;
}

async function refusal(run: () => Promise<unknown>): Promise<TributaryError> {
  try {
    await run();
  } catch (err) {
    if (err instanceof TributaryError) return err;
    throw err;
  }
  throw new Error('expected a TributaryError');
}

const set = (name: string, value: string | number): ConfigChange => ({ name, op: 'set', value });
const del = (name: string): ConfigChange => ({ name, op: 'delete' });

/** A few event-loop turns: long enough for any sync that is not held to start. */
async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

function sourcesOf(manager: LogManager, topic: string): Record<string, string> {
  return Object.fromEntries(manager.describeTopicConfig(topic).map((e) => [e.name, `${String(e.value)} (${e.source})`]));
}

describe('alterTopicConfig', () => {
  it('persists the new overrides: they are there after a reopen, with their sources', async () => {
    let manager = await open({ defaults: { flush: 'os' } });
    await manager.createTopic('t', 2, { 'segment.bytes': 2048 });
    const info = await manager.alterTopicConfig('t', [set('retention.ms', '3600000'), del('segment.bytes'), set('cleanup.policy', 'compact')]);
    expect(info.config).toEqual({ ...DEFAULT_TOPIC_CONFIG, flush: 'os', 'retention.ms': 3_600_000, 'cleanup.policy': 'compact' });
    expect(manager.partition('t', 1)?.config['retention.ms']).toBe(3_600_000);
    await manager.close();
    manager = await open({ defaults: { flush: 'os' } });
    expect(manager.topic('t')?.config).toEqual({ ...DEFAULT_TOPIC_CONFIG, flush: 'os', 'retention.ms': 3_600_000, 'cleanup.policy': 'compact' });
    expect(manager.partition('t', 0)?.config['cleanup.policy']).toBe('compact');
    const sources = sourcesOf(manager, 't');
    expect(sources['retention.ms']).toBe('3600000 (topic)');
    expect(sources['cleanup.policy']).toBe('compact (topic)');
    expect(sources['flush']).toBe('os (node)');
    expect(sources['segment.bytes']).toBe(`${DEFAULT_TOPIC_CONFIG['segment.bytes']} (default)`);
    expect(Object.keys(sources).sort()).toEqual(Object.keys(DEFAULT_TOPIC_CONFIG).sort());
  });

  it('changes nothing, on disk or in memory, when one key or value of the request is bad', async () => {
    const manager = await open();
    await manager.createTopic('t', 1, { 'retention.ms': 60_000 });
    const file = path.join(dir, 'topics', 't.json');
    const before = fs.readFileSync(file);
    const badRequests: ConfigChange[][] = [
      [set('retention.bytes', 1_000_000), set('segment.bytes', '12abc')],
      [set('retention.bytes', 1_000_000), set('segment.bytes', 100)],
      [del('retention.ms'), set('flush', 'sometimes')],
      [set('retention.bytes', 1_000_000), set('retention.typo', 1)],
      [set('retention.bytes', 1_000_000), del('retention.typo')],
      [set('retention.ms', 1000), set('retention.ms', 2000)],
      [set('retention.ms', 1000), del('retention.ms')],
    ];
    for (const changes of badRequests) {
      const err = await refusal(() => manager.alterTopicConfig('t', changes));
      expect(err.errorName, JSON.stringify(changes)).toBe('INVALID_CONFIG');
    }
    // The message names the key and the value.
    const err = await refusal(() => manager.alterTopicConfig('t', [set('segment.bytes', '12abc')]));
    expect(err.detail).toContain("'segment.bytes'");
    expect(err.detail).toContain("'12abc'");
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(manager.topic('t')?.config['retention.ms']).toBe(60_000);
    expect(manager.topic('t')?.config['retention.bytes']).toBe(-1);
    expect(manager.partition('t', 0)?.config['retention.bytes']).toBe(-1);
    expect(await refusal(() => manager.alterTopicConfig('missing', [set('retention.ms', 1)]))).toMatchObject({ errorName: 'UNKNOWN_TOPIC' });
  });

  it('delete reverts a key to the node default, or the built-in default when the node sets none', async () => {
    const manager = await open({ defaults: { flush: 'os', 'retention.ms': 86_400_000 } });
    await manager.createTopic('t', 1, { flush: 'batch', 'segment.bytes': 4096 });
    expect(sourcesOf(manager, 't')['flush']).toBe('batch (topic)');
    await manager.alterTopicConfig('t', [del('flush'), del('segment.bytes'), del('max.message.bytes')]);
    const sources = sourcesOf(manager, 't');
    expect(sources['flush']).toBe('os (node)');
    expect(sources['retention.ms']).toBe('86400000 (node)');
    expect(sources['segment.bytes']).toBe(`${DEFAULT_TOPIC_CONFIG['segment.bytes']} (default)`);
    expect(manager.partition('t', 0)?.config.flush).toBe('os');
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'topics', 't.json'), 'utf8')).overrides).toEqual({});
  });

  it('refuses to change the cleanup policy or flush of an internal topic, and allows other keys', async () => {
    const manager = await open();
    await manager.createTopic('__consumer_offsets', 1, { 'cleanup.policy': 'compact', flush: 'batch' }, { internal: true });
    const err = await refusal(() => manager.alterTopicConfig('__consumer_offsets', [set('cleanup.policy', 'delete')]));
    expect(err.errorName).toBe('INVALID_CONFIG');
    expect(err.detail).toMatch(/internal topic.*cleanup\.policy stays 'compact'/);
    expect((await refusal(() => manager.alterTopicConfig('__consumer_offsets', [del('cleanup.policy')]))).errorName).toBe('INVALID_CONFIG');
    expect((await refusal(() => manager.alterTopicConfig('__consumer_offsets', [set('flush', 'os')]))).errorName).toBe('INVALID_CONFIG');
    expect(manager.partition('__consumer_offsets', 0)?.config['cleanup.policy']).toBe('compact');
    await manager.alterTopicConfig('__consumer_offsets', [set('segment.bytes', 1 << 20), set('cleanup.policy', 'compact')]);
    expect(manager.partition('__consumer_offsets', 0)?.config['segment.bytes']).toBe(1 << 20);
  });
});

describe('a live partition takes the new config', () => {
  it('segment.bytes: the next append rolls', async () => {
    const manager = await open({ defaults: { flush: 'os' } });
    await manager.createTopic('t', 1);
    const log = manager.partition('t', 0)!;
    log.append(makeBatch({ records: 2, valueBytes: 300 }));
    log.append(makeBatch({ records: 2, valueBytes: 300 }));
    expect(log.segmentCount).toBe(1);
    await manager.alterTopicConfig('t', [set('segment.bytes', 1024)]);
    const result = log.append(makeBatch({ records: 2, valueBytes: 300 }));
    expect(log.segmentCount).toBe(2);
    expect(path.basename(log.segmentFileFor(result.baseOffset))).toBe(`${String(result.baseOffset).padStart(20, '0')}.log`);
  });

  it('max.message.bytes: a batch that was accepted before is refused after', async () => {
    const manager = await open({ defaults: { flush: 'os' } });
    await manager.createTopic('t', 1);
    const log = manager.partition('t', 0)!;
    const batch = () => makeBatch({ records: 4, valueBytes: 500 });
    expect(batch().length).toBeGreaterThan(1024);
    expect(errorName(() => log.append(batch()))).toBe('NONE');
    await manager.alterTopicConfig('t', [set('max.message.bytes', 1024)]);
    expect(errorName(() => log.append(batch()))).toBe('BATCH_TOO_LARGE');
    expect(log.logEndOffset).toBe(4);
    await manager.alterTopicConfig('t', [del('max.message.bytes')]);
    expect(errorName(() => log.append(batch()))).toBe('NONE');
  });

  it('flush interval -> batch: the high watermark never goes back, and the next append is durable only after an fsync', async () => {
    const ops = faulty();
    // An interval the test never reaches: only the switch may sync.
    const manager = await open({ fileOps: ops });
    await manager.createTopic('t', 1, { flush: 'interval', 'flush.interval.ms': 3_600_000 });
    const log = manager.partition('t', 0)!;
    for (let i = 0; i < 3; i++) log.append(makeBatch({ fill: i }));
    expect(log.highWatermark).toBe(3);
    expect(log.recoveryPoint).toBe(0);
    ops.holdSyncs(true);
    const syncsBefore = ops.counts.fdatasync;
    await manager.alterTopicConfig('t', [set('flush', 'batch')]);
    // Consumers were shown offsets 0..2 under interval: they stay shown, though not yet synced.
    expect(log.highWatermark).toBe(3);
    expect(splitBatches(log.read(0, 1 << 20))).toHaveLength(3);
    // The switch asks for a sync of what was acknowledged under the old policy.
    await vi.waitFor(() => expect(ops.counts.fdatasync - syncsBefore).toBe(1), { timeout: 5000 });
    const appended = log.append(makeBatch({ fill: 9 }));
    let durable = false;
    void appended.durable.then(() => (durable = true));
    await turns();
    expect(durable).toBe(false);
    expect(log.logEndOffset).toBe(4);
    expect(log.highWatermark).toBe(3); // not exposed before an fsync covers it
    expect(splitBatches(log.read(0, 1 << 20))).toHaveLength(3);
    ops.holdSyncs(false);
    ops.release();
    await appended.durable;
    expect(log.recoveryPoint).toBe(4);
    expect(log.highWatermark).toBe(4);
  });

  it('flush batch -> interval: the high watermark moves up to the log end and waiting consumers are woken', async () => {
    const ops = faulty();
    const manager = await open({ fileOps: ops });
    await manager.createTopic('t', 1, { flush: 'batch' });
    const log = manager.partition('t', 0)!;
    ops.holdSyncs(true);
    const appended = log.append(makeBatch({ records: 2 }));
    await turns();
    expect(log.highWatermark).toBe(0);
    let wakeups = 0;
    log.onAppend(() => wakeups++);
    await manager.alterTopicConfig('t', [set('flush', 'interval')]);
    expect(log.highWatermark).toBe(2);
    await Promise.resolve();
    expect(wakeups).toBe(1);
    ops.holdSyncs(false);
    ops.release();
    await appended.durable;
    expect(log.recoveryPoint).toBe(2);
  });

  it('flush.interval.ms: a pending flush is re-armed with the new interval', async () => {
    const manager = await open();
    await manager.createTopic('t', 1, { flush: 'interval', 'flush.interval.ms': 3_600_000 });
    const log = manager.partition('t', 0)!;
    log.append(makeBatch({ records: 2 }));
    expect(log.recoveryPoint).toBe(0);
    await manager.alterTopicConfig('t', [set('flush.interval.ms', 10)]);
    // Under the old hour-long timer this would never happen within the wait.
    await vi.waitFor(() => expect(log.recoveryPoint).toBe(2), { timeout: 5000 });
  });
});
