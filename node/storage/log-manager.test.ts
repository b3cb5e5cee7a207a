import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TributaryError } from '../../protocol/errors.js';
import { splitBatches } from '../../protocol/record-batch.js';
import { DEFAULT_TOPIC_CONFIG } from './config.js';
import { nodeFileOps } from './file-ops.js';
import type { FileOps } from './file-ops.js';
import { CLEAN_SHUTDOWN_FILE, LogManager } from './log-manager.js';
import type { LogManagerOptions } from './log-manager.js';
import { makeBatch, makeTempDir, removeDir } from './testing.js';

let dir: string;
const managers: LogManager[] = [];

beforeEach(() => {
  dir = makeTempDir();
});

afterEach(async () => {
  for (const manager of managers.splice(0)) await manager.close().catch(() => undefined);
  removeDir(dir);
});

async function open(options: LogManagerOptions = {}): Promise<LogManager> {
  const manager = await LogManager.open(dir, options);
  managers.push(manager);
  return manager;
}

async function errorName(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (err) {
    if (err instanceof TributaryError) return err.errorName;
    throw err;
  }
  return 'NONE';
}

describe('topics', () => {
  it('creates topics with their partitions and config, listed by name', async () => {
    const manager = await open({ defaults: { flush: 'os' } });
    const info = await manager.createTopic('sensors', 3, { 'segment.bytes': '4096', 'retention.ms': -1 });
    expect(info).toEqual({ name: 'sensors', partitions: 3, config: { ...DEFAULT_TOPIC_CONFIG, flush: 'os', 'segment.bytes': 4096, 'retention.ms': -1 } });
    await manager.createTopic('alarms', 1);
    expect(manager.topics().map((t) => t.name)).toEqual(['alarms', 'sensors']);
    expect(manager.topic('sensors')?.partitions).toBe(3);
    expect(manager.partition('sensors', 2)?.partition).toBe(2);
    expect(manager.partition('sensors', 3)).toBeUndefined();
    expect(manager.partition('nope', 0)).toBeUndefined();
    expect(fs.existsSync(path.join(dir, 'sensors-2', '00000000000000000000.log'))).toBe(true);
  });

  it('refuses bad names, partition counts, configs and duplicates with typed errors', async () => {
    const manager = await open();
    const badNames = ['', '.', '..', 'a'.repeat(250), 'a/b', 'ü', 'with space', '__internal'];
    for (const name of badNames) expect(await errorName(() => manager.createTopic(name, 1)), name).toBe('INVALID_TOPIC');
    expect(await errorName(() => manager.createTopic('a'.repeat(249), 1))).toBe('NONE');
    expect(await errorName(() => manager.createTopic('__consumer_offsets', 1, {}, { internal: true }))).toBe('NONE');
    for (const count of [0, -1, 10_001, 1.5, Number.NaN]) expect(await errorName(() => manager.createTopic('p', count)), String(count)).toBe('INVALID_PARTITIONS');
    const badConfigs: Record<string, string | number>[] = [
      { 'segment.bytes': '12abc' },
      { 'segment.bytes': 100 },
      { 'segment.bytes': 1.5 },
      { flush: 'sometimes' },
      { 'retention.ms': -2 },
      { 'cleanup.policy.typo': 'compact' },
    ];
    for (const config of badConfigs) expect(await errorName(() => manager.createTopic('c', 1, config)), JSON.stringify(config)).toBe('INVALID_CONFIG');
    await manager.createTopic('dup', 1);
    expect(await errorName(() => manager.createTopic('dup', 2))).toBe('TOPIC_ALREADY_EXISTS');
    expect(await errorName(() => manager.deleteTopic('never'))).toBe('UNKNOWN_TOPIC');
    // Nothing of the refused topics reached the disk.
    expect(fs.readdirSync(path.join(dir, 'topics')).sort()).toEqual([`${'a'.repeat(249)}.json`, '__consumer_offsets.json', 'dup.json'].sort());
  });

  it('runs concurrent creates of one name one at a time', async () => {
    const manager = await open();
    const results = await Promise.allSettled([manager.createTopic('race', 2), manager.createTopic('race', 2)]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
  });
});

describe('persistence', () => {
  it('reopens after a clean close with the same offsets, data and config, without scanning', async () => {
    let manager = await open({ defaults: { flush: 'os' } });
    await manager.createTopic('t', 2, { 'segment.bytes': 2048, 'index.interval.bytes': 100 });
    const written: Buffer[] = [];
    for (let i = 0; i < 50; i++) {
      const batch = makeBatch({ records: 2, valueBytes: 80, fill: i });
      manager.partition('t', i % 2)?.append(batch);
      written.push(Buffer.from(batch));
    }
    await manager.close();
    expect(fs.existsSync(path.join(dir, CLEAN_SHUTDOWN_FILE))).toBe(true);
    manager = await open({ defaults: { flush: 'os' } });
    expect(manager.recoveryReport.clean).toBe(true);
    expect(manager.recoveryReport.partitions.map((p) => p.scannedSegments)).toEqual([0, 0]);
    // The marker is gone while the node runs, so a crash from now on is detected.
    expect(fs.existsSync(path.join(dir, CLEAN_SHUTDOWN_FILE))).toBe(false);
    expect(manager.topic('t')?.config['segment.bytes']).toBe(2048);
    expect(manager.topic('t')?.config.flush).toBe('os');
    for (const p of [0, 1]) {
      const log = manager.partition('t', p);
      expect(log?.logEndOffset).toBe(50);
      const batches: Buffer[] = [];
      for (let offset = 0; offset < 50; offset += 2) batches.push(...splitBatches(log?.read(offset, 1) ?? Buffer.alloc(0)));
      expect(Buffer.concat(batches).equals(Buffer.concat(written.filter((_, i) => i % 2 === p)))).toBe(true);
    }
  });

  it('detects a crash (no marker) and recovers by scanning', async () => {
    const first = await LogManager.open(dir, { defaults: { flush: 'os' } });
    await first.createTopic('t', 1);
    first.partition('t', 0)?.append(makeBatch({ records: 3 }));
    // No close: the process died. (Its fds stay open until this test process ends.)
    const manager = await open();
    expect(manager.recoveryReport.clean).toBe(false);
    expect(manager.recoveryReport.partitions[0].scannedSegments).toBe(1);
    expect(manager.partition('t', 0)?.logEndOffset).toBe(3);
  });

  it('deletes a topic: folders and config gone, and it stays gone after reopening', async () => {
    let manager = await open();
    await manager.createTopic('gone', 3);
    await manager.createTopic('kept', 1);
    manager.partition('gone', 0)?.append(makeBatch());
    await manager.deleteTopic('gone');
    expect(manager.topic('gone')).toBeUndefined();
    expect(manager.partition('gone', 0)).toBeUndefined();
    expect(fs.readdirSync(dir).sort()).toEqual(['kept-0', 'topics']);
    await manager.close();
    manager = await open();
    expect(manager.topics().map((t) => t.name)).toEqual(['kept']);
    // The name is free again, and the new topic starts empty.
    await manager.createTopic('gone', 1);
    expect(manager.partition('gone', 0)?.logEndOffset).toBe(0);
  });

  it('finishes a delete that a crash interrupted', async () => {
    let manager = await open();
    await manager.createTopic('half', 2);
    manager.partition('half', 1)?.append(makeBatch());
    await manager.close();
    // The crash came after the config said `deleting` and one folder was renamed.
    const configFile = path.join(dir, 'topics', 'half.json');
    const stored = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(configFile, JSON.stringify({ ...stored, deleting: true }));
    fs.renameSync(path.join(dir, 'half-0'), path.join(dir, '0011223344556677-delete'));
    manager = await open();
    expect(manager.topics()).toEqual([]);
    expect(manager.recoveryReport.finishedDeletes).toEqual(['half']);
    expect(fs.readdirSync(dir).sort()).toEqual(['topics']);
    expect(fs.readdirSync(path.join(dir, 'topics'))).toEqual([]);
  });

  it('deletes a topic of the longest legal name (its marker once passed 255 bytes), and it stays gone', async () => {
    const longest = 'n'.repeat(249);
    let manager = await open();
    await manager.createTopic(longest, 12);
    manager.partition(longest, 11)?.append(makeBatch());
    await manager.deleteTopic(longest);
    expect(fs.readdirSync(dir)).toEqual(['topics']);
    await manager.close();
    manager = await open();
    expect(manager.topics()).toEqual([]);
    expect(manager.recoveryReport.unreadableTopics).toEqual([]);
    expect(fs.readdirSync(path.join(dir, 'topics'))).toEqual([]);
  });

  it('finishes a delete that an older version marked `<name>.json.deleting`', async () => {
    let manager = await open();
    await manager.createTopic('old', 2);
    await manager.close();
    fs.renameSync(path.join(dir, 'topics', 'old.json'), path.join(dir, 'topics', 'old.json.deleting'));
    manager = await open();
    expect(manager.topics()).toEqual([]);
    expect(manager.recoveryReport.finishedDeletes).toEqual(['old']);
    expect(fs.readdirSync(dir)).toEqual(['topics']);
    expect(fs.readdirSync(path.join(dir, 'topics'))).toEqual([]);
  });

  it('keeps a topic named like a temporary file across a reopen, removing only real leftovers', async () => {
    let manager = await open();
    await manager.createTopic('.tmp-0123456789abcdef', 1);
    await manager.close();
    fs.writeFileSync(path.join(dir, 'topics', '.tmp-fedcba9876543210'), 'half-written');
    manager = await open();
    expect(manager.topics().map((t) => t.name)).toEqual(['.tmp-0123456789abcdef']);
    expect(fs.readdirSync(path.join(dir, 'topics'))).toEqual(['.tmp-0123456789abcdef.json']);
  });

  it('recreates partition folders a crash during create left missing', async () => {
    let manager = await open();
    await manager.createTopic('c', 2);
    await manager.close();
    fs.rmSync(path.join(dir, 'c-1'), { recursive: true });
    manager = await open();
    expect(manager.partition('c', 1)?.logEndOffset).toBe(0);
    expect(manager.partition('c', 1)?.append(makeBatch()).baseOffset).toBe(0);
  });

  it('reports an unreadable topic config, leaves its data alone, and refuses to create over it', async () => {
    let manager = await open();
    await manager.createTopic('x', 1);
    manager.partition('x', 0)?.append(makeBatch());
    await manager.close();
    fs.writeFileSync(path.join(dir, 'topics', 'x.json'), '{ not json');
    manager = await open();
    expect(manager.recoveryReport.unreadableTopics).toHaveLength(1);
    expect(manager.topic('x')).toBeUndefined();
    expect(await errorName(() => manager.createTopic('x', 1))).toBe('TOPIC_ALREADY_EXISTS');
    expect(fs.statSync(path.join(dir, 'x-0', '00000000000000000000.log')).size).toBeGreaterThan(0);
  });

  it('does not write the clean marker when a partition failed', async () => {
    let failSyncs = false;
    const ops: FileOps = {
      ...nodeFileOps,
      fdatasync: (fd) => (failSyncs ? Promise.reject(Object.assign(new Error('EIO'), { code: 'EIO' })) : nodeFileOps.fdatasync(fd)),
    };
    const manager = await LogManager.open(dir, { fileOps: ops });
    await manager.createTopic('t', 1, { flush: 'batch' });
    failSyncs = true;
    const result = manager.partition('t', 0)?.append(makeBatch());
    await expect(result?.durable).rejects.toMatchObject({ errorName: 'STORAGE_ERROR' });
    await expect(manager.close()).rejects.toMatchObject({ errorName: 'STORAGE_ERROR' });
    expect(fs.existsSync(path.join(dir, CLEAN_SHUTDOWN_FILE))).toBe(false);
  });

  it('keeps at most readFdsMax read fds open for sealed segments', async () => {
    const open = new Set<number>();
    const ops: FileOps = {
      ...nodeFileOps,
      openSync: (file, flags) => {
        const fd = nodeFileOps.openSync(file, flags);
        if (flags === 'r' && file.endsWith('.log')) open.add(fd);
        return fd;
      },
      closeSync: (fd) => {
        open.delete(fd);
        nodeFileOps.closeSync(fd);
      },
    };
    const manager = await LogManager.open(dir, { fileOps: ops, readFdsMax: 2, defaults: { flush: 'os' } });
    managers.push(manager);
    await manager.createTopic('t', 1, { 'segment.bytes': 1024 });
    const log = manager.partition('t', 0);
    if (log === undefined) throw new Error('no partition');
    for (let i = 0; i < 40; i++) log.append(makeBatch({ records: 2, valueBytes: 100 }));
    await log.flush();
    expect(log.segmentCount).toBeGreaterThan(5);
    let maxOpen = 0;
    for (let offset = 0; offset < log.logEndOffset; offset += 2) {
      expect(log.read(offset, 1).length).toBeGreaterThan(0);
      maxOpen = Math.max(maxOpen, open.size);
    }
    expect(maxOpen).toBe(2);
  });

  it('refuses work after close', async () => {
    const manager = await LogManager.open(dir);
    await manager.createTopic('t', 1);
    const log = manager.partition('t', 0);
    await manager.close();
    expect(await errorName(() => manager.createTopic('u', 1))).toBe('SHUTTING_DOWN');
    expect(await errorName(async () => log?.append(makeBatch()))).toBe('SHUTTING_DOWN');
  });

  it('refuses invalid defaults at open', async () => {
    expect(await errorName(() => LogManager.open(dir, { defaults: { 'segment.bytes': 10 } }))).toBe('INVALID_CONFIG');
  });
});
