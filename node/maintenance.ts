// The node's background work, as scheduler jobs over every partition:
//   retention   delete policy: whole closed segments past retention.ms / retention.bytes;
//               and committed offsets of empty groups past limits.offsetsRetentionMs
//   compaction  compact policy: newest record per key (the log cleaner)
//   checkpoint  producer-state snapshots of partitions that grew, so unclean starts are short
//   diskGuard   storage.maxBytes / storage.minFreeBytes (see storage/disk-guard.ts)
// A partition whose job fails is logged and skipped; the others still get theirs.

import type { Logger } from './logger.js';
import type { NodeMetrics } from './metrics.js';
import { Scheduler } from './scheduler.js';
import { compactPartition } from './storage/cleaner.js';
import type { DiskGuard } from './storage/disk-guard.js';
import type { LogManager } from './storage/log-manager.js';
import type { PartitionLog } from './storage/partition-log.js';
import { applyRetention } from './storage/retention.js';

export interface Schedules {
  retention: string;
  compaction: string;
  checkpoint: string;
  diskGuard: string;
}

export const DEFAULT_SCHEDULES: Schedules = Object.freeze({
  // Kafka checks retention every 5 minutes (log.retention.check.interval.ms).
  retention: '0 */5 * * * *',
  // Kafka's cleaner polls every 15 s; once a minute is plenty for internal topics at the edge.
  compaction: '30 * * * * *',
  // Kafka checkpoints recovery points every minute (log.flush.offset.checkpoint.interval.ms).
  checkpoint: '15 * * * * *',
  // Often: a small flash disk fills fast, and between runs produce triggers checks too.
  diskGuard: '*/5 * * * * *',
});

export interface MaintenanceOptions {
  logs: LogManager;
  logger: Logger;
  metrics: NodeMetrics;
  guard: DiskGuard;
  schedules: Schedules;
  now: () => number;
  /** Deletes committed offsets past their retention; resolves with the groups deleted. */
  expireOffsets?: () => Promise<number>;
}

function partitionsOf(logs: LogManager, policy?: 'delete' | 'compact'): PartitionLog[] {
  const out: PartitionLog[] = [];
  for (const topic of logs.topics()) {
    if (policy !== undefined && topic.config['cleanup.policy'] !== policy) continue;
    for (let p = 0; p < topic.partitions; p++) {
      const log = logs.partition(topic.name, p);
      if (log !== undefined && !log.isClosed) out.push(log);
    }
  }
  return out;
}

/** Runs `step` on every partition one after the other; failures are logged, not fatal. */
async function eachPartition(logs: PartitionLog[], logger: Logger, job: string, signal: AbortSignal, step: (log: PartitionLog) => Promise<void>): Promise<void> {
  let failed = 0;
  for (const log of logs) {
    if (signal.aborted) return;
    if (log.isClosed) continue;
    try {
      await step(log);
    } catch (err) {
      // A topic deleted while the job ran is closed under it: not a failure.
      if (log.isClosed) continue;
      failed++;
      logger.error({ job, topic: log.topic, partition: log.partition, err }, 'background job failed on a partition');
    }
  }
  if (failed > 0) throw new Error(`${job} failed on ${failed} partition(s)`);
}

export function retentionJob(options: MaintenanceOptions): (signal: AbortSignal) => Promise<void> {
  const { logs, logger, metrics, now } = options;
  return async (signal) => {
    await expireOffsets(options);
    await eachPartition(partitionsOf(logs, 'delete'), logger, 'retention', signal, async (log) => {
      const result = await applyRetention(log, now);
      if (result.byTime + result.bySize === 0) return;
      if (result.byTime > 0) metrics.retentionDeletedSegments.inc({ topic: log.topic, reason: 'time' }, result.byTime);
      if (result.bySize > 0) metrics.retentionDeletedSegments.inc({ topic: log.topic, reason: 'size' }, result.bySize);
      logger.info(
        { topic: log.topic, partition: log.partition, byTime: result.byTime, bySize: result.bySize, bytes: result.bytes, logStartOffset: result.logStartOffset },
        'retention deleted old segments',
      );
    });
  };
}

/** Committed offsets past their retention; a failure is logged, and segments still go. */
async function expireOffsets(options: MaintenanceOptions): Promise<void> {
  if (!options.expireOffsets) return;
  try {
    const groups = await options.expireOffsets();
    if (groups > 0) options.logger.info({ groups }, 'deleted the committed offsets of groups empty past limits.offsetsRetentionMs');
  } catch (err) {
    options.logger.error({ job: 'retention', err }, 'deleting expired committed offsets failed');
  }
}

export function compactionJob(options: MaintenanceOptions): (signal: AbortSignal) => Promise<void> {
  const { logs, logger, metrics, now } = options;
  return (signal) =>
    eachPartition(partitionsOf(logs, 'compact'), logger, 'compaction', signal, async (log) => {
      const result = await compactPartition(log, { now, signal });
      if (result.segmentsCleaned === 0) return;
      metrics.compactionRuns.inc({ topic: log.topic });
      const removed = result.bytesBefore - result.bytesAfter;
      if (removed > 0) metrics.compactionRemovedBytes.inc({ topic: log.topic }, removed);
      logger.info({ topic: log.topic, partition: log.partition, ...result }, 'compacted');
    });
}

export function checkpointJob(options: MaintenanceOptions): (signal: AbortSignal) => Promise<void> {
  const { logs, logger } = options;
  return (signal) => eachPartition(partitionsOf(logs), logger, 'checkpoint', signal, (log) => log.checkpoint());
}

/** The scheduler with the node's four jobs; stop() it before closing the logs. */
export function startMaintenance(options: MaintenanceOptions): Scheduler {
  const scheduler = new Scheduler(options.logger);
  scheduler.add({ name: 'retention', schedule: options.schedules.retention, run: retentionJob(options) });
  scheduler.add({ name: 'compaction', schedule: options.schedules.compaction, run: compactionJob(options) });
  scheduler.add({ name: 'checkpoint', schedule: options.schedules.checkpoint, run: checkpointJob(options) });
  if (options.guard.enabled) scheduler.add({ name: 'diskGuard', schedule: options.schedules.diskGuard, run: () => options.guard.check() });
  return scheduler;
}
