import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TributaryError } from '../protocol/errors.js';
import { PRODUCER_ID_BLOCK, ProducerIdAllocator } from './producer-ids.js';
import { makeTempDir, removeDir } from './storage/testing.js';

describe('producer ids', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = makeTempDir();
    dirs.push(d);
    return d;
  };
  afterEach(() => dirs.splice(0).forEach(removeDir));

  it('are unique across restarts: a restart skips the rest of the block, never repeats an id', () => {
    const dir = tempDir();
    const first = ProducerIdAllocator.open(dir);
    const given = Array.from({ length: 3 }, () => first.allocate());
    expect(given).toEqual([0, 1, 2]);
    // The block's end was written before the first id was handed out.
    expect(JSON.parse(readFileSync(join(dir, 'producer-ids.json'), 'utf8'))).toEqual({ nextBlock: PRODUCER_ID_BLOCK });
    const second = ProducerIdAllocator.open(dir); // as after a crash: nothing more was written
    expect(second.allocate()).toBe(PRODUCER_ID_BLOCK);
    const many = Array.from({ length: PRODUCER_ID_BLOCK + 5 }, () => second.allocate());
    expect(new Set([...given, PRODUCER_ID_BLOCK, ...many]).size).toBe(3 + 1 + PRODUCER_ID_BLOCK + 5);
    expect(JSON.parse(readFileSync(join(dir, 'producer-ids.json'), 'utf8'))).toEqual({ nextBlock: 3 * PRODUCER_ID_BLOCK });
  });

  it('refuses a damaged file with a clear error rather than starting again at 0', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'producer-ids.json'), '{"nextBlock": "lots"}');
    expect(() => ProducerIdAllocator.open(dir)).toThrow(TributaryError);
    expect(() => ProducerIdAllocator.open(dir)).toThrow(/producer-ids.json: nextBlock is lots/);
  });
});
