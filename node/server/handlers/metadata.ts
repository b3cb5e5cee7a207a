import { Errors } from '../../../protocol/errors.js';
import type { MetadataResponse, TopicMetadata } from '../../../protocol/frames.js';
import type { TopicInfo } from '../../storage/log-manager.js';
import type { RequestContext } from '../context.js';
import { isAllowed } from '../../auth/acl.js';
import { refusal } from './authorize.js';
import { answeredTopic, invalidTopic, optionalRequestEntries, type Body } from '../validate.js';

export async function handleMetadata(body: Body, ctx: RequestContext): Promise<MetadataResponse> {
  const { logs, nodeId } = ctx.broker;
  const asked = optionalRequestEntries(body, 'topics', ctx.broker);
  const describe = (t: TopicInfo): TopicMetadata => ({
    name: t.name,
    error: Errors.NONE.code,
    // A single node leads every partition; leader epochs start moving with replication.
    partitions: Array.from({ length: t.partitions }, (_, partition) => ({ partition, leader: nodeId, leaderEpoch: 0 })),
    config: { ...t.config },
    ...(t.name.startsWith('__') ? { internal: true } : {}),
  });
  // Listing every topic shows only those the principal may use; naming one it may not
  // answers UNAUTHORIZED whether or not it exists.
  if (asked === undefined) {
    const includeInternal = body.includeInternal === true;
    const visible = logs.topics().filter((t) => (includeInternal || !t.name.startsWith('__')) && isAllowed(ctx.principal, 'describe', t.name));
    return { nodeId, topics: visible.map(describe) };
  }
  const topics = asked.map((name): TopicMetadata => {
    const invalid = invalidTopic(name, 'topics[]');
    if (invalid) return { name: answeredTopic(name), ...invalid, partitions: [], config: {} };
    const topic = name as string;
    const refused = refusal(ctx, 'describe', topic);
    if (refused) return { name: topic, ...refused, partitions: [], config: {} };
    const t = logs.topic(topic);
    if (t) return describe(t);
    return { name: topic, error: Errors.UNKNOWN_TOPIC.code, message: `unknown topic '${topic}'`, partitions: [], config: {} };
  });
  return { nodeId, topics };
}
