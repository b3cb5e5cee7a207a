// Retention: Kafka's delete policy. Whole closed segments go, oldest first, once they are
// past `retention.ms` or while the partition is over `retention.bytes`; the active segment
// never does (Kafka's rule too), and nothing inside a segment is ever cut.
//
// A segment's age is its largest record timestamp, as in Kafka since 0.10.1: the
// producer's CreateTime, not the file's mtime (which copies and restores would reset).
// A device whose clock is far in the past makes its segments look old; Kafka has the same
// property, so docs/configuration.md says so.

import type { PartitionLog } from './partition-log.js';

export interface RetentionPlan {
  /** Oldest closed segments past retention.ms. */
  byTime: number;
  /** Further oldest closed segments to bring the partition under retention.bytes. */
  bySize: number;
  bytes: number;
}

/** What retention would delete now; pure, so tests can check it without deleting. */
export function planRetention(log: PartitionLog, nowMs: number): RetentionPlan {
  const plan: RetentionPlan = { byTime: 0, bySize: 0, bytes: 0 };
  const config = log.config;
  if (config['cleanup.policy'] !== 'delete') return plan;
  const closed = log.closedSegments();
  const retentionMs = config['retention.ms'];
  if (retentionMs >= 0) {
    // A prefix only: deleting a younger segment before an older one would leave a hole.
    while (plan.byTime < closed.length && closed[plan.byTime].maxTimestamp < nowMs - retentionMs) {
      plan.bytes += closed[plan.byTime].sizeBytes;
      plan.byTime++;
    }
  }
  const retentionBytes = config['retention.bytes'];
  if (retentionBytes >= 0) {
    // Kafka's rule: delete a segment while what remains after it is still at least the limit.
    let remaining = log.sizeBytes - plan.bytes;
    let i = plan.byTime;
    while (i < closed.length && remaining - closed[i].sizeBytes >= retentionBytes) {
      remaining -= closed[i].sizeBytes;
      plan.bytes += closed[i].sizeBytes;
      plan.bySize++;
      i++;
    }
  }
  return plan;
}

export interface RetentionResult extends RetentionPlan {
  logStartOffset: number;
}

/**
 * Applies retention to one partition inside its maintenance queue (never alongside
 * compaction or the disk guard). The plan is made inside the queue, so it sees the
 * segments as they are when it runs.
 */
export function applyRetention(log: PartitionLog, now: () => number): Promise<RetentionResult> {
  return log.maintain(async () => {
    const plan = planRetention(log, now());
    const count = plan.byTime + plan.bySize;
    if (count > 0) await log.deleteOldestSegments(count);
    return { ...plan, logStartOffset: log.logStartOffset };
  });
}
