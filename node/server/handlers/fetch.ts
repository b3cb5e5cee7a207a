import { Errors } from '../../../protocol/errors.js';
import type { FetchPartitionResult, FetchResponse } from '../../../protocol/frames.js';
import type { PartitionLog } from '../../storage/partition-log.js';
import { requestBudget } from '../../storage/request-budget.js';
import type { RequestBudget } from '../../storage/request-budget.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult, LimitsReached } from './errors.js';
import { answeredTopic, int, invalidTopic, map, requestEntries, type Body } from '../validate.js';

interface Wanted {
  topic: string;
  partition: number;
  fetchOffset: number;
  maxBytes: number;
  log: PartitionLog | undefined;
  /** Set when the name is no topic's or the ACLs refuse it: answered at once, never read. */
  refused: { error: number; message: string } | null;
}

const EMPTY = Buffer.alloc(0);

// Fetch returns stored batches as they are, up to the high watermark. When fewer than
// minBytes are ready it long-polls (Kafka's fetch purgatory) until data arrives or
// maxWaitMs passes. The read happens only once the connection's send buffer has room, so a
// consumer that does not read its socket stalls its own fetches instead of filling memory.
// The index files of the cold segments it opens are paid from limits.requestScanBytesMax:
// past it, the partitions left that need one are answered THROTTLED (retriable).
export async function handleFetch(body: Body, ctx: RequestContext): Promise<FetchResponse> {
  const { limits, logs, fetchWaiter } = ctx.broker;
  const maxWaitMs = int(body, 'maxWaitMs', 0, 0x7fffffff, 0);
  const minBytes = int(body, 'minBytes', 0, 0x7fffffff, 1);
  const maxBytes = Math.min(int(body, 'maxBytes', 1, 0x7fffffff, limits.fetchBytesMax), limits.fetchBytesMax);
  const wanted: Wanted[] = requestEntries(body, 'partitions', ctx.broker).map((e, i) => {
    const entry = map(e, `partitions[${i}]`);
    const topic = answeredTopic(entry.topic);
    const partition = int(entry, 'partition', 0, 0x7fffffff);
    const refused = invalidTopic(entry.topic) ?? refusal(ctx, 'consume', topic);
    return {
      topic,
      partition,
      fetchOffset: int(entry, 'fetchOffset', 0),
      maxBytes: int(entry, 'maxBytes', 1, 0x7fffffff, maxBytes),
      log: refused ? undefined : logs.partition(topic, partition),
      refused,
    };
  });

  // What its reads may load of cold segments' index files (limits.requestScanBytesMax): a
  // Fetch naming 10,000 partitions of cold segments would otherwise load every one's.
  const reading: Reading = { budget: requestBudget(limits), limitsReached: new LimitsReached() };
  // Leave a margin so that a long poll ends before the request's own deadline does.
  const waitMs = Math.min(maxWaitMs, limits.fetchWaitMsMax, Math.max(0, ctx.deadline - Date.now() - 1000));
  const waitUntil = Date.now() + waitMs;
  // minBytes > 1: measure once with a read when data first shows, then add the growth of
  // the logs' sizes, instead of reading everything again on every append.
  let measured: { bytes: number; sizes: number[] } | null = null;
  for (;;) {
    const remaining = waitUntil - Date.now();
    if (remaining <= 0 || ctx.broker.shuttingDown || ctx.signal.aborted) break;
    if (anyReady(wanted)) {
      if (minBytes <= 1) break;
      measured ??= { bytes: readAll(wanted, maxBytes, ctx, reading).bytes, sizes: wanted.map((w) => w.log?.sizeBytes ?? 0) };
      let grown = 0;
      wanted.forEach((w, i) => (grown += (w.log?.sizeBytes ?? 0) - measured!.sizes[i]));
      if (measured.bytes + grown >= minBytes) break;
    }
    await fetchWaiter.waitForAppend(present(wanted), remaining, ctx.signal);
  }
  await ctx.outboundSlot();
  // While the node is over its send budget, answers are cut to a share (at least a batch).
  const { partitions } = readAll(wanted, ctx.broker.sendBudget.answerBytesMax(maxBytes, ctx.principal.key), ctx, reading, true);
  reading.limitsReached.count(ctx.broker.metrics);
  return { partitions };
}

/** What the reads of one Fetch share: the request's budget, and the limits it reached. */
interface Reading {
  budget: RequestBudget;
  limitsReached: LimitsReached;
}

function present(wanted: Wanted[]): PartitionLog[] {
  const logs: PartitionLog[] = [];
  for (const w of wanted) if (w.log) logs.push(w.log);
  return logs;
}

/**
 * True when some partition would answer at once: it has data below the high watermark at
 * the fetch offset, or the offset is out of range, or the partition is unknown. An offset
 * between the high watermark and the log end (flush=batch, fsync pending) waits, as in
 * Kafka, rather than answering empty in a busy loop.
 */
function anyReady(wanted: Wanted[]): boolean {
  for (const w of wanted) {
    const log = w.log;
    if (!log) return true;
    if (w.fetchOffset < log.highWatermark || w.fetchOffset > log.logEndOffset || w.fetchOffset < log.logStartOffset) return true;
  }
  return false;
}

/**
 * `serving`: the answer is sent, so its bytes count in the metrics and the limits it
 * reached are noted (not a minBytes measure).
 */
function readAll(wanted: Wanted[], maxBytes: number, ctx: RequestContext, reading: Reading, serving = false): { partitions: FetchPartitionResult[]; bytes: number } {
  const partitions: FetchPartitionResult[] = [];
  let bytes = 0;
  for (const w of wanted) {
    const log = w.log;
    const result: FetchPartitionResult = { topic: w.topic, partition: w.partition, error: Errors.NONE.code, highWatermark: -1, logStartOffset: -1, records: EMPTY };
    partitions.push(result);
    if (w.refused) {
      Object.assign(result, w.refused);
      continue;
    }
    if (!log || ctx.broker.logs.partition(w.topic, w.partition) !== log) {
      result.error = Errors.UNKNOWN_TOPIC.code;
      result.message = `unknown topic or partition ${w.topic}/${w.partition}`;
      continue;
    }
    result.highWatermark = log.highWatermark;
    result.logStartOffset = log.logStartOffset;
    // KIP-74: the first partition with data gets at least one whole batch; later ones share
    // what is left of maxBytes and are skipped once it is spent.
    const room = Math.min(w.maxBytes, maxBytes - bytes);
    if (room <= 0 && bytes > 0) continue;
    try {
      const records = log.read(w.fetchOffset, Math.max(room, 1), log.highWatermark, reading.budget);
      result.records = records;
      bytes += records.length;
      if (serving) ctx.broker.metrics.countServed(w.topic, records);
    } catch (err) {
      if (serving) reading.limitsReached.note(err);
      Object.assign(result, errorResult(err, ctx.broker.logger, { request: 'Fetch', topic: w.topic, partition: w.partition, offset: w.fetchOffset }));
    }
  }
  return { partitions, bytes };
}
