// Producer ids for idempotent producers (InitProducerId), unique on this node for its
// whole life: a reused id could make a new producer's batch look like an old one's resend.
// Ids are handed out from blocks; the end of the current block is written durably before
// any id in it is given, so a crash skips at most the rest of a block and never repeats an
// id. (Kafka's controller allocates such blocks to brokers; a cluster will do the same.)

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Errors, TributaryError } from '../protocol/errors.js';
import { writeFileDurably } from './node-meta.js';

const FILE = 'producer-ids.json';
export const PRODUCER_ID_BLOCK = 1000;
/** Producer ids are int64 in the batch header; stay within what a JS number holds exactly. */
const PRODUCER_ID_MAX = Number.MAX_SAFE_INTEGER;

export class ProducerIdAllocator {
  private next: number;
  private blockEnd: number;

  private constructor(
    private readonly dataDir: string,
    start: number,
  ) {
    this.next = start;
    this.blockEnd = start;
  }

  static open(dataDir: string): ProducerIdAllocator {
    const path = join(dataDir, FILE);
    let start = 0;
    try {
      const stored = JSON.parse(readFileSync(path, 'utf8')) as { nextBlock?: unknown };
      if (!Number.isSafeInteger(stored.nextBlock) || (stored.nextBlock as number) < 0) throw new Error(`nextBlock is ${String(stored.nextBlock)}`);
      start = stored.nextBlock as number;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new TributaryError(Errors.STORAGE_ERROR, `cannot read ${path}: ${(err as Error).message} (remove it only if this node never served idempotent producers)`);
      }
    }
    return new ProducerIdAllocator(dataDir, start);
  }

  /** The next producer id; writes (and fsyncs) a new block's end first when needed. */
  allocate(): number {
    if (this.next >= this.blockEnd) {
      const end = this.blockEnd + PRODUCER_ID_BLOCK;
      if (end > PRODUCER_ID_MAX) throw new TributaryError(Errors.STORAGE_ERROR, 'producer ids are exhausted');
      writeFileDurably(this.dataDir, join(this.dataDir, FILE), `${JSON.stringify({ nextBlock: end })}\n`, 0o644);
      this.blockEnd = end;
    }
    return this.next++;
  }
}
