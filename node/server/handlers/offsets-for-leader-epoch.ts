import { Errors } from '../../../protocol/errors.js';
import type { OffsetsForLeaderEpochResponse } from '../../../protocol/frames.js';
import { isRefusal } from '../../partition-roles.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult } from './errors.js';
import { answeredTopic, int, invalidTopic, map, requestEntries, type Body } from '../validate.js';

type Result = OffsetsForLeaderEpochResponse['partitions'][number];

// Kafka's OffsetsForLeaderEpoch (KIP-279) as a consumer asks it (KIP-320): per partition,
// the largest epoch of the log at or below the one asked and where the next epoch starts
// (LeaderEpochFileCache.endOffsetFor). A consumer compares the end offset with its
// position to find out whether the records it read are still the node's. It reveals where
// the log's epochs begin, so it is asked with the right to consume the topic (node
// credentials may consume any); a part refused, or naming no partition, is answered alone.
export async function handleOffsetsForLeaderEpoch(body: Body, ctx: RequestContext): Promise<OffsetsForLeaderEpochResponse> {
  const partitions = requestEntries(body, 'partitions', ctx.broker).map((e, i) => endOffsetFor(e, i, ctx));
  return { partitions };
}

function endOffsetFor(e: unknown, i: number, ctx: RequestContext): Result {
  const result: Result = { topic: '', partition: -1, error: Errors.NONE.code, leaderEpoch: -1, endOffset: -1 };
  try {
    const entry = map(e, `partitions[${i}]`);
    result.topic = answeredTopic(entry.topic);
    result.partition = int(entry, 'partition', 0, 0x7fffffff);
    const leaderEpoch = int(entry, 'leaderEpoch', -1, 0x7fffffff);
    // Only the leader's epochs are the answer: a follower's may be behind or diverged.
    const found = invalidTopic(entry.topic) ?? refusal(ctx, 'consume', result.topic) ?? ctx.broker.partitionRoles.leaderLog(result.topic, result.partition);
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
