// A power loss that takes back records a consumer group had read and committed, through
// real node processes and the command line (KIP-101, KIP-320). A topic at flush=interval
// with a long interval: nothing of its log is ever fsynced, so a power loss may cut it at
// any batch. The group reads and commits 2,000 records; the node is SIGKILLed and the log
// cut back to a batch boundary near 1,200, as a power loss would leave it. What survives a
// power loss is what was fsynced: `__consumer_offsets` (flush=batch: the commit of 2,000
// with its leader epoch 0), the leader-epoch checkpoint (epoch 0 from offset 0), the topic's
// config, and a recovery point that never moved (the checkpoint job, which could sync and
// record more, is scheduled never here); no producer snapshot or index file was written. So
// the cut log is all there is to make. The restart begins epoch 1 at the cut, and 1,000 new
// records take the offsets the lost ones had. What must hold: the group's next member reads
// every one of the 1,000 new records (none hides behind the committed 2,000), and says on
// stderr that its position diverged.

import { readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { OFFSET_LAST_OFFSET_DELTA, OFFSET_LENGTH, LOG_OVERHEAD, readInt64 } from '../protocol/record-batch.js';
import { cliOk, runCli, startNodeProcess, stopAllNodes, tempDir } from './helpers/node-process.js';

afterEach(stopAllNodes);

const TOPIC = 'readings';
const GROUP = 'G';

/** The byte position and base offset of the first batch of `file` whose base offset is at least `offset`. */
function batchBoundaryAtOrAfter(file: string, offset: number): { position: number; baseOffset: number } {
  const bytes = readFileSync(file);
  let position = 0;
  while (position < bytes.length) {
    const baseOffset = readInt64(bytes, position);
    if (baseOffset >= offset) return { position, baseOffset };
    const lastOffset = baseOffset + bytes.readInt32BE(position + OFFSET_LAST_OFFSET_DELTA);
    expect(lastOffset).toBeGreaterThanOrEqual(baseOffset);
    position += LOG_OVERHEAD + bytes.readInt32BE(position + OFFSET_LENGTH);
  }
  throw new Error(`no batch at or after offset ${offset} in ${file}`);
}

const lines = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(4, '0')}`);

it('a group member whose committed offset a power loss took back reads every record written since, and says it diverged', async () => {
  const dir = tempDir('trib-power-loss-');
  try {
    const config = join(dir.path, 'node.yaml');
    writeFileSync(config, 'auth:\n  anonymous: loopback\nschedule:\n  checkpoint: "0 0 0 1 1 *"\n');
    const data = join(dir.path, 'data');
    const node = await startNodeProcess({ dataDir: data, args: ['--config', config] });
    const broker = ['--broker', node.url];
    await cliOk(['topics', 'create', TOPIC, '--partitions', '1', '--config', 'flush=interval', '--config', 'flush.interval.ms=3600000', ...broker]);
    // Small batches, so that a power loss has boundaries to cut at.
    await cliOk(['produce', TOPIC, '--batch-bytes', '1024', ...broker], lines('old', 2000).join('\n') + '\n');
    const first = await runCli(['consume', TOPIC, '--group', GROUP, '--from-beginning', '--max-messages', '2000', '--timeout-ms', '20000', ...broker], '', 60_000);
    expect([first.code, first.stderr]).toEqual([0, 'consumed 2000 records\n']);
    expect(first.stdout).toBe(lines('old', 2000).join('\n') + '\n');
    expect((await cliOk(['groups', 'describe', GROUP, ...broker])).split('\n').slice(2).join('\n')).toMatch(/^readings\s+0\s+2000\s/);

    await node.kill();
    const partitionDir = join(data, `${TOPIC}-0`);
    const segment = join(partitionDir, readdirSync(partitionDir).filter((f) => f.endsWith('.log')).sort().at(-1) as string);
    const cut = batchBoundaryAtOrAfter(segment, 1200);
    expect(cut.baseOffset).toBeGreaterThanOrEqual(1200);
    expect(cut.baseOffset).toBeLessThan(1300);
    truncateSync(segment, cut.position);

    const restarted = await startNodeProcess({ dataDir: data, args: ['--config', config] });
    const again = ['--broker', restarted.url];
    await cliOk(['produce', TOPIC, '--batch-bytes', '1024', ...again], lines('new', 1000).join('\n') + '\n');
    const second = await runCli(['consume', TOPIC, '--group', GROUP, '--print-offset', '--max-messages', '1000', '--timeout-ms', '20000', ...again], '', 60_000);
    expect(second.code).toBe(0);
    expect(second.stdout).toBe(lines('new', 1000).map((v, i) => `0:${cut.baseOffset + i}\t${v}`).join('\n') + '\n');
    expect(second.stderr).toBe(
      `tributary: ${TOPIC}/0 diverged: the node's log ends at ${cut.baseOffset} in epoch 0, below this consumer's position 2000 (a power loss?); continuing at ${cut.baseOffset}\n` +
        'consumed 1000 records\n',
    );
    // And the group now stands after the new records, in the new epoch.
    expect((await cliOk(['groups', 'describe', GROUP, ...again])).split('\n').slice(2).join('\n')).toMatch(new RegExp(`^readings\\s+0\\s+${cut.baseOffset + 1000}\\s`));
  } finally {
    await stopAllNodes();
    dir.remove();
  }
}, 120_000);
