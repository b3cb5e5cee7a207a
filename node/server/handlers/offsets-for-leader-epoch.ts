import { Errors } from '../../../protocol/errors.js';
import type { Kind, OffsetsForLeaderEpochResponse } from '../../../protocol/frames.js';
import { isInvalid, type DecodedRequests, type OffsetsForLeaderEpochPart, type Part, type PartitionAddress } from '../../../protocol/requests.js';
import { isRefusal } from '../../partition-roles.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult } from './errors.js';

type Result = OffsetsForLeaderEpochResponse['partitions'][number];

// Kafka's OffsetsForLeaderEpoch (KIP-279) as a consumer asks it (KIP-320): per partition,
// the largest epoch of the log at or below the one asked and where the next epoch starts
// (LeaderEpochFileCache.endOffsetFor). A consumer compares the end offset with its
// position to find out whether the records it read are still the node's. It reveals where
// the log's epochs begin, so it is asked with the right to consume the topic (node
// credentials may consume any); a part refused, or naming no partition, is answered alone.
export async function handleOffsetsForLeaderEpoch(request: DecodedRequests[Kind.OffsetsForLeaderEpoch], ctx: RequestContext): Promise<OffsetsForLeaderEpochResponse> {
  return { partitions: request.partitions.map((part) => endOffsetFor(part, ctx)) };
}

function endOffsetFor(part: Part<OffsetsForLeaderEpochPart, PartitionAddress>, ctx: RequestContext): Result {
  const result: Result = { topic: part.topic, partition: part.partition, error: Errors.NONE.code, leaderEpoch: -1, endOffset: -1 };
  if (isInvalid(part)) return Object.assign(result, part.invalid);
  try {
    const { leaderEpoch } = part;
    // Only the leader's epochs are the answer: a follower's may be behind or diverged.
    const found = refusal(ctx, 'consume', result.topic) ?? ctx.broker.partitionRoles.leaderLog(result.topic, result.partition);
    if (isRefusal(found)) {
      Object.assign(result, found);
    } else {
      const end = found.endOffsetForEpoch(leaderEpoch);
      result.leaderEpoch = end.leaderEpoch;
      result.endOffset = end.endOffset;
    }
  } catch (err) {
    Object.assign(result, errorResult(err, ctx.broker.logger, { request: 'OffsetsForLeaderEpoch', topic: result.topic, partition: result.partition }));
  }
  return result;
}
