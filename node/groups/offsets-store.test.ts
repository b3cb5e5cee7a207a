import { afterEach, expect, it } from 'vitest';
import { TributaryError } from '../../protocol/errors.js';
import { silentLogger } from '../logger.js';
import { LogManager } from '../storage/log-manager.js';
import { makeTempDir, removeDir } from '../storage/testing.js';
import { ConsumerOffsets } from './offsets-store.js';

const open: { logs: LogManager; dir: string }[] = [];
afterEach(async () => {
  for (const { logs, dir } of open.splice(0)) {
    await logs.close();
    removeDir(dir);
  }
});

async function store(groupsMax?: number): Promise<{ offsets: ConsumerOffsets; logs: LogManager; dir: string }> {
  const dir = makeTempDir();
  const logs = await LogManager.open(dir);
  open.push({ logs, dir });
  await logs.createTopic('t', 2);
  return { offsets: await ConsumerOffsets.open(logs, silentLogger, { groupsMax }), logs, dir };
}

it('the newest commit wins, and the store reads back the same from its topic', async () => {
  const { offsets, logs } = await store();
  await offsets.commit('g', [{ topic: 't', partition: 0, offset: 5, metadata: 'a' }], 1);
  await offsets.commit('g', [{ topic: 't', partition: 0, offset: 9, metadata: 'b' }, { topic: 't', partition: 1, offset: 2, metadata: '' }], 2);
  expect(offsets.committed('g', 't', 0)).toEqual({ offset: 9, metadata: 'b', commitMs: 2 });
  const reread = await ConsumerOffsets.open(logs, silentLogger);
  expect(reread.all('g').map((o) => [o.topic, o.partition, o.committed.offset]).sort()).toEqual([['t', 0, 9], ['t', 1, 2]]);
});

it('keeps offsets of at most groupsMax groups: one more is refused, known groups go on', async () => {
  const { offsets } = await store(2);
  await offsets.commit('a', [{ topic: 't', partition: 0, offset: 1, metadata: '' }], 1);
  await offsets.commit('b', [{ topic: 't', partition: 0, offset: 1, metadata: '' }], 1);
  await expect(offsets.commit('c', [{ topic: 't', partition: 0, offset: 1, metadata: '' }], 1)).rejects.toThrow(TributaryError);
  await expect(offsets.commit('c', [{ topic: 't', partition: 0, offset: 1, metadata: '' }], 1)).rejects.toThrow(/at most 2 groups/);
  await offsets.commit('a', [{ topic: 't', partition: 0, offset: 2, metadata: '' }], 2);
  expect(offsets.committed('a', 't', 0)?.offset).toBe(2);
  expect(offsets.committed('c', 't', 0)).toBeUndefined();
});
