import { Errors } from '../../../protocol/errors.js';
import { EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, type Kind, type ListOffsetsPartitionResult, type ListOffsetsResponse } from '../../../protocol/frames.js';
import { isInvalid, type DecodedRequests, type ListOffsetsPart, type Part, type PartitionAddress } from '../../../protocol/requests.js';
import { isRefusal } from '../../partition-roles.js';
import { requestBudget } from '../../storage/request-budget.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult, LimitsReached } from './errors.js';
import type { DecompressGrant } from '../principal-rates.js';

// Kafka's ListOffsets: LATEST is the high watermark (what a consumer can reach), EARLIEST
// the log start offset, any other timestamp the first offset whose record timestamp is at
// or after it (-1 when there is none). A lookup by time reads and may inflate a batch: one
// budget per request bounds what all its entries read and inflate together, so that naming
// the same bomb 10,000 times costs one budget, not 10,000 inflates (the rest THROTTLED).
// What it may inflate is granted from the principal's rate at the first lookup by time.
export async function handleListOffsets(request: DecodedRequests[Kind.ListOffsets], ctx: RequestContext): Promise<ListOffsetsResponse> {
  const grant = ctx.broker.principalRates.grantFor(ctx.principal.key, requestBudget(ctx.broker.limits));
  const limitsReached = new LimitsReached();
  let partitions: ListOffsetsPartitionResult[];
  try {
    partitions = request.partitions.map((part) => listOffset(part, ctx, grant, limitsReached));
  } finally {
    grant.release();
  }
  limitsReached.count(ctx.broker.metrics);
  return { partitions };
}

function listOffset(part: Part<ListOffsetsPart, PartitionAddress>, ctx: RequestContext, grant: DecompressGrant, limitsReached: LimitsReached): ListOffsetsPartitionResult {
  const result: ListOffsetsPartitionResult = { topic: part.topic, partition: part.partition, error: Errors.NONE.code, offset: -1, timestamp: -1 };
  if (isInvalid(part)) return Object.assign(result, part.invalid);
  try {
    const { topic, timestamp } = part;
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
