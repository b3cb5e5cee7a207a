import { Errors } from '../../../protocol/errors.js';
import type { Kind, MetadataResponse, TopicMetadata } from '../../../protocol/frames.js';
import { isInvalid, type DecodedRequests } from '../../../protocol/requests.js';
import type { TopicInfo } from '../../storage/log-manager.js';
import type { RequestContext } from '../context.js';
import { isAllowed } from '../../auth/acl.js';
import { refusal } from './authorize.js';

export async function handleMetadata(request: DecodedRequests[Kind.Metadata], ctx: RequestContext): Promise<MetadataResponse> {
  const { logs, nodeId, partitionRoles } = ctx.broker;
  const asked = request.topics;
  const describe = (t: TopicInfo): TopicMetadata => ({
    name: t.name,
    error: Errors.NONE.code,
    // The leader as the role lookup knows it: this node, the node a follower partition follows,
    // or '' when that is unknown (as Kafka's leader -1), so that a client asks again rather
    // than send here. The epoch is the log's newest (-1 for a follower's that has none yet).
    partitions: Array.from({ length: t.partitions }, (_, partition) => ({
      partition,
      leader: partitionRoles.leaderOf(t.name, partition),
      leaderEpoch: logs.partition(t.name, partition)?.leaderEpoch ?? -1,
    })),
    config: { ...t.config },
    ...(t.name.startsWith('__') ? { internal: true } : {}),
  });
  // Listing every topic shows only those the principal may use; naming one it may not
  // answers UNAUTHORIZED whether or not it exists.
  if (asked === undefined) {
    const { includeInternal } = request;
    const visible = logs.topics().filter((t) => (includeInternal || !t.name.startsWith('__')) && isAllowed(ctx.principal, 'describe', t.name));
    return { nodeId, topics: visible.map(describe) };
  }
  const topics = asked.map((topic): TopicMetadata => {
    if (isInvalid(topic)) return { name: topic.name, ...topic.invalid, partitions: [], config: {} };
    const refused = refusal(ctx, 'describe', topic);
    if (refused) return { name: topic, ...refused, partitions: [], config: {} };
    const t = logs.topic(topic);
    if (t) return describe(t);
    return { name: topic, error: Errors.UNKNOWN_TOPIC.code, message: `unknown topic '${topic}'`, partitions: [], config: {} };
  });
  return { nodeId, topics };
}
