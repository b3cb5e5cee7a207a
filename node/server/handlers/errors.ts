import { Errors, LimitReachedError, TributaryError } from '../../../protocol/errors.js';
import type { Logger } from '../../logger.js';
import type { NodeMetrics } from '../../metrics.js';

// A failing disk answers every produce to its partitions with STORAGE_ERROR; the node's log
// says so once per partition rather than once per request. Bounded: past it, one line
// says that further partitions are failing too.
const storageFailuresReported = new Set<string>();
const STORAGE_FAILURES_REPORTED_MAX = 1000;

/**
 * The wire form of a failure inside one entry of a request. A TributaryError keeps its
 * code; anything else is a bug or an unexpected system failure, logged and answered as
 * UNKNOWN so that one bad partition never takes the connection down.
 */
export function errorResult(err: unknown, logger: Logger, where: Record<string, unknown>): { error: number; message: string } {
  if (err instanceof TributaryError) {
    if (err.code === Errors.STORAGE_ERROR.code) reportStorageFailure(err, logger, where);
    return { error: err.code, message: err.detail };
  }
  logger.error({ ...where, err: (err as Error)?.stack ?? String(err) }, 'unexpected error while serving a request');
  return { error: Errors.UNKNOWN.code, message: `unexpected server error: ${(err as Error)?.message ?? String(err)}` };
}

function reportStorageFailure(err: TributaryError, logger: Logger, where: Record<string, unknown>): void {
  const key = `${String(where.topic)}/${String(where.partition)}`;
  if (storageFailuresReported.has(key) || storageFailuresReported.size > STORAGE_FAILURES_REPORTED_MAX) return;
  storageFailuresReported.add(key);
  if (storageFailuresReported.size > STORAGE_FAILURES_REPORTED_MAX) {
    logger.error({ partitions: STORAGE_FAILURES_REPORTED_MAX }, 'storage failing on more partitions; not reporting each');
    return;
  }
  logger.error({ ...where, err: err.detail }, 'storage failure on a partition (reported once per partition)');
}

/**
 * The limits one request reached, by config key: each is counted once per request in
 * tributary_limits_reached_total, however many of its partitions it stopped.
 */
export class LimitsReached {
  /** Made at the first limit: most requests (every Fetch) reach none. */
  private keys: Set<string> | null = null;

  /** Notes the limit behind `err`, if a limit it is. */
  note(err: unknown): void {
    if (err instanceof LimitReachedError) (this.keys ??= new Set()).add(err.limit);
  }

  count(metrics: NodeMetrics): void {
    if (this.keys === null) return;
    for (const limit of this.keys) metrics.limitReached.inc({ limit });
  }
}
