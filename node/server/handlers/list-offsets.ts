import { Errors } from '../../../protocol/errors.js';
import { EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, type ListOffsetsPartitionResult, type ListOffsetsResponse } from '../../../protocol/frames.js';
import { isRefusal } from '../../partition-roles.js';
import { requestBudget } from '../../storage/request-budget.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult, LimitsReached } from './errors.js';
import { answeredTopic, int, map, requestEntries, topicName, type Body } from '../validate.js';
import type { DecompressGrant } from '../principal-rates.js';

// Kafka's ListOffsets: LATEST is the high watermark (what a consumer can reach), EARLIEST
// the log start offset, any other timestamp the first offset whose record timestamp is at
// or after it (-1 when there is none). A lookup by time reads and may inflate a batch: one
// budget per request bounds what all its entries read and inflate together, so that naming
// the same bomb 10,000 times costs one budget, not 10,000 inflates (the rest THROTTLED).
// What it may inflate is granted from the principal's rate at the first lookup by time.
export async function handleListOffsets(body: Body, ctx: RequestContext): Promise<ListOffsetsResponse> {
  const entries = requestEntries(body, 'partitions', ctx.broker);
  const grant = ctx.broker.principalRates.grantFor(ctx.principal.key, requestBudget(ctx.broker.limits));
  const limitsReached = new LimitsReached();
  let partitions: ListOffsetsPartitionResult[];
  try {
    partitions = entries.map((e, i) => listOffset(e, i, ctx, grant, limitsReached));
  } finally {
    grant.release();
  }
  limitsReached.count(ctx.broker.metrics);
  return { partitions };
}

function listOffset(e: unknown, i: number, ctx: RequestContext, grant: DecompressGrant, limitsReached: LimitsReached): ListOffsetsPartitionResult {
  const result: ListOffsetsPartitionResult = { topic: '', partition: -1, error: Errors.NONE.code, offset: -1, timestamp: -1 };
  try {
    const entry = map(e, `partitions[${i}]`);
    result.topic = answeredTopic(entry.topic);
    const topic = topicName(entry, 'topic');
    result.partition = int(entry, 'partition', 0, 0x7fffffff);
    const timestamp = int(entry, 'timestamp', EARLIEST_TIMESTAMP);
    // Only the leader knows where its log ends and what is acknowledged (NOT_LEADER elsewhere).
    const log = refusal(ctx, 'describe', topic) ?? ctx.broker.partitionRoles.leaderLog(topic, result.partition);
    if (isRefusal(log)) {
      Object.assign(result, log);
    } else if (timestamp === LATEST_TIMESTAMP) {
      result.offset = log.highWatermark;
    } else if (timestamp === EARLIEST_TIMESTAMP) {
      result.offset = log.logStartOffset;
    } else {
      const found = log.offsetForTimestamp(timestamp, grant.budgetToInflate());
      if (found) {
        result.offset = found.offset;
        result.timestamp = found.timestamp;
      }
    }
  } catch (err) {
    limitsReached.note(err);
    Object.assign(result, errorResult(err, ctx.broker.logger, { request: 'ListOffsets', topic: result.topic, partition: result.partition }));
  }
  return result;
}
