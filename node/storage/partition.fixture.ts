// For storage tests: a temporary folder per test holding one partition folder, and every
// PartitionLog a test opens closed after it. Registers vitest hooks, so only test files
// import it (the build leaves *.fixture.ts out).

import * as path from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { parseTopicConfig } from './config.js';
import { PartitionLog, type OpenPartitionOptions } from './partition-log.js';
import { makeTempDir, removeDir } from './testing.js';

export interface PartitionFixture {
  /** This test's temporary folder. */
  readonly dir: string;
  /** `<dir>/t-0`, the folder of partition 0 of topic t. */
  readonly partitionDir: string;
  /** Opens (creating) partition t-0 with `config`; closed after the test. */
  open(config: Record<string, string | number>, options?: OpenPartitionOptions): Promise<PartitionLog>;
  /** Closes `log` after the test too (one opened elsewhere). */
  track(log: PartitionLog): PartitionLog;
}

export function usePartitionFixture(): PartitionFixture {
  const opened: PartitionLog[] = [];
  let dir = '';
  beforeEach(() => {
    dir = makeTempDir();
  });
  afterEach(async () => {
    for (const log of opened.splice(0)) await log.close().catch(() => undefined);
    removeDir(dir);
  });
  return {
    get dir() {
      return dir;
    },
    get partitionDir() {
      return path.join(dir, 't-0');
    },
    async open(config, options = {}) {
      const log = await PartitionLog.open(path.join(dir, 't-0'), 't', 0, parseTopicConfig(config), options);
      opened.push(log);
      return log;
    },
    track(log) {
      opened.push(log);
      return log;
    },
  };
}
