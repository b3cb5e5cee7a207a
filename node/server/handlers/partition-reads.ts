// The read path that Fetch (consumers) and ReplicaFetch (followers) share: the long poll in
// the FetchWaiter (Kafka's fetch purgatory), the wait for the connection's outbound slot
// before reading, the answer cut to the send budget's share, and one request budget for the
// index files of the cold segments the reads open (past it, the partitions left that need
// one are answered THROTTLED). What differs is where reads stop (`ReadPlan.readsTo`): a
// consumer reads up to the high watermark, a follower up to the log end.

import { Errors } from '../../../protocol/errors.js';
import { isFetchOffsetInLog, partitionReadBytesMax } from '../../../protocol/fetch-rules.js';
import type { FetchPartitionResult } from '../../../protocol/frames.js';
import { isRefusal, type PartitionRefusal } from '../../partition-roles.js';
import type { PartitionLog } from '../../storage/partition-log.js';
import { requestBudget } from '../../storage/request-budget.js';
import type { RequestBudget } from '../../storage/request-budget.js';
import type { RequestContext } from '../context.js';
import { errorResult, LimitsReached } from './errors.js';

/** One partition a request reads. */
export interface WantedPartition {
  topic: string;
  partition: number;
  fetchOffset: number;
  maxBytes: number;
  /** The partition's log, when this node leads it and the request may read it. */
  log: PartitionLog | undefined;
  /** Set when the partition is not served (bad name, ACLs, not led here, ...): answered at once, never read. */
  refused: PartitionRefusal | null;
}

export interface ReadPlan<W extends WantedPartition = WantedPartition> {
  request: 'Fetch' | 'ReplicaFetch';
  /** The offset reads stop before: the high watermark for consumers, the log end for followers. */
  readsTo(log: PartitionLog): number;
  /** Asked again right before a partition is read, after any wait: why it is no longer served, or null. */
  recheck?(wanted: W, log: PartitionLog): PartitionRefusal | null;
  /** Count what is served in the per-topic traffic metrics (consumers' reads). */
  countsServed: boolean;
}

export interface ReadRequest {
  maxWaitMs: number;
  minBytes: number;
  maxBytes: number;
}

const EMPTY = Buffer.alloc(0);

/**
 * Waits (within maxWaitMs, limits.fetchWaitMsMax and the request's deadline) until minBytes
 * are ready, then for the connection's outbound slot, and reads. Results are in the order
 * of `wanted`, one each.
 */
export async function readPartitions<W extends WantedPartition>(wanted: W[], plan: ReadPlan<W>, request: ReadRequest, ctx: RequestContext): Promise<FetchPartitionResult[]> {
  const { limits, fetchWaiter, clock } = ctx.broker;
  const { maxWaitMs, minBytes, maxBytes } = request;
  // What its reads may load of cold segments' index files (limits.requestScanBytesMax): a
  // Fetch naming 10,000 partitions of cold segments would otherwise load every one's.
  const reading: Reading = { budget: requestBudget(limits), limitsReached: new LimitsReached() };
  // Leave a margin so that a long poll ends before the request's own deadline does.
  const waitMs = Math.min(maxWaitMs, limits.fetchWaitMsMax, Math.max(0, ctx.deadline - clock.monotonic() - 1000));
  const waitUntil = clock.monotonic() + waitMs;
  // minBytes > 1: measure once with a read when data first shows, then add the growth of
  // the logs' sizes, instead of reading everything again on every append.
  let measured: { bytes: number; sizes: number[] } | null = null;
  for (;;) {
    const remaining = waitUntil - clock.monotonic();
    if (remaining <= 0 || ctx.broker.shuttingDown || ctx.signal.aborted) break;
    if (anyReady(wanted, plan, ctx)) {
      if (minBytes <= 1) break;
      measured ??= { bytes: readAll(wanted, plan, maxBytes, ctx, reading).bytes, sizes: wanted.map((w) => w.log?.sizeBytes ?? 0) };
      let grown = 0;
      wanted.forEach((w, i) => (grown += (w.log?.sizeBytes ?? 0) - measured!.sizes[i]));
      if (measured.bytes + grown >= minBytes) break;
    }
    await fetchWaiter.waitForAppend(present(wanted), remaining, ctx.signal);
  }
  await ctx.outboundSlot();
  // While the node is over its send budget, answers are cut to a share (at least a batch).
  const { partitions } = readAll(wanted, plan, ctx.broker.sendBudget.answerBytesMax(maxBytes, ctx.principal.key), ctx, reading, true);
  reading.limitsReached.count(ctx.broker.metrics);
  return partitions;
}

/** What the reads of one request share: the request's budget, and the limits it reached. */
interface Reading {
  budget: RequestBudget;
  limitsReached: LimitsReached;
}

function present(wanted: WantedPartition[]): PartitionLog[] {
  const logs: PartitionLog[] = [];
  for (const w of wanted) if (w.log) logs.push(w.log);
  return logs;
}

/**
 * True when some partition would answer at once: it has data below where reads stop at the
 * fetch offset, or the offset is out of range, or the partition is not served (or no longer:
 * a change of role wakes the wait too). A consumer's offset between the high watermark and
 * the log end (flush=batch, fsync pending) waits, as in Kafka, rather than answering empty
 * in a busy loop.
 */
function anyReady<W extends WantedPartition>(wanted: W[], plan: ReadPlan<W>, ctx: RequestContext): boolean {
  for (const w of wanted) {
    const log = w.log;
    if (!log) return true;
    if (w.fetchOffset < plan.readsTo(log) || !isFetchOffsetInLog(w.fetchOffset, log.logStartOffset, log.logEndOffset)) return true;
    if (ctx.broker.partitionRoles.leaderLog(w.topic, w.partition) !== log) return true;
  }
  return false;
}

/**
 * `serving`: the answer is sent, so its bytes count in the metrics and the limits it
 * reached are noted (not a minBytes measure).
 */
function readAll<W extends WantedPartition>(wanted: W[], plan: ReadPlan<W>, maxBytes: number, ctx: RequestContext, reading: Reading, serving = false): { partitions: FetchPartitionResult[]; bytes: number } {
  const partitions: FetchPartitionResult[] = [];
  let bytes = 0;
  for (const w of wanted) {
    const result: FetchPartitionResult = { topic: w.topic, partition: w.partition, error: Errors.NONE.code, highWatermark: -1, logStartOffset: -1, records: EMPTY };
    partitions.push(result);
    const log = served(w, plan, ctx);
    if (isRefusal(log)) {
      Object.assign(result, log);
      continue;
    }
    result.highWatermark = log.highWatermark;
    result.logStartOffset = log.logStartOffset;
    // KIP-74: the first partition with data gets at least one whole batch; later ones share
    // what is left of maxBytes and are skipped once it is spent.
    const room = partitionReadBytesMax(w.maxBytes, maxBytes, bytes);
    if (room === 0) continue;
    try {
      const read = log.readBatches(w.fetchOffset, room, plan.readsTo(log), reading.budget);
      result.records = read.bytes;
      bytes += read.bytes.length;
      if (serving && plan.countsServed) ctx.broker.metrics.countServed(w.topic, read);
    } catch (err) {
      if (serving) reading.limitsReached.note(err);
      Object.assign(result, errorResult(err, ctx.broker.logger, { request: plan.request, topic: w.topic, partition: w.partition, offset: w.fetchOffset }));
    }
  }
  return { partitions, bytes };
}

/**
 * The log to read, or why not. Asked again at read time: during a long poll the partition
 * may have been deleted (and created again: another log), or come to be led by another node.
 */
function served<W extends WantedPartition>(w: W, plan: ReadPlan<W>, ctx: RequestContext): PartitionLog | PartitionRefusal {
  if (w.refused) return w.refused;
  const current = ctx.broker.partitionRoles.leaderLog(w.topic, w.partition);
  if (isRefusal(current)) return current;
  if (current !== w.log) return { error: Errors.UNKNOWN_TOPIC.code, message: `unknown topic or partition ${w.topic}/${w.partition}` };
  return plan.recheck?.(w, current) ?? current;
}
