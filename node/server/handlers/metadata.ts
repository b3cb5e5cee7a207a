import { Errors } from '../../../protocol/errors.js';
import type { MetadataResponse, TopicMetadata } from '../../../protocol/frames.js';
import type { TopicInfo } from '../../storage/log-manager.js';
import type { RequestContext } from '../context.js';
import { optionalList, type Body } from '../validate.js';

export async function handleMetadata(body: Body, ctx: RequestContext): Promise<MetadataResponse> {
  const { logs, nodeId } = ctx.broker;
  const asked = optionalList(body, 'topics', 10_000);
  const describe = (t: TopicInfo): TopicMetadata => ({
    name: t.name,
    error: Errors.NONE.code,
    // A single node leads every partition; leader epochs start moving with replication.
    partitions: Array.from({ length: t.partitions }, (_, partition) => ({ partition, leader: nodeId, leaderEpoch: 0 })),
    config: { ...t.config },
  });
  if (asked === undefined) return { nodeId, topics: logs.topics().map(describe) };
  const topics = asked.map((name): TopicMetadata => {
    const t = typeof name === 'string' ? logs.topic(name) : undefined;
    if (t) return describe(t);
    return { name: String(name), error: Errors.UNKNOWN_TOPIC.code, message: `unknown topic '${String(name)}'`, partitions: [], config: {} };
  });
  return { nodeId, topics };
}
