import { Errors, TributaryError } from '../../../protocol/errors.js';
import type { CreateTopicsResponse, Kind, TopicResult } from '../../../protocol/frames.js';
import { isInvalid, type DecodedRequests } from '../../../protocol/requests.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult } from './errors.js';

export async function handleCreateTopics(request: DecodedRequests[Kind.CreateTopics], ctx: RequestContext): Promise<CreateTopicsResponse> {
  const { logs, logger } = ctx.broker;
  const topics: TopicResult[] = [];
  // One at a time: each creation writes and fsyncs its config before the next begins.
  for (const entry of request.topics) {
    const { name } = entry;
    if (isInvalid(entry)) {
      topics.push({ name, ...entry.invalid });
      continue;
    }
    const refused = refusal(ctx, 'createTopics', name);
    if (refused) {
      topics.push({ name, ...refused });
      continue;
    }
    try {
      const { partitions, config } = entry;
      const held = logs.topics().reduce((n, t) => n + t.partitions, 0);
      if (partitions > 0 && held + partitions > ctx.broker.limits.partitionsMax) {
        throw new TributaryError(Errors.INVALID_PARTITIONS, `this node holds ${held} partitions; ${partitions} more would pass its limit of ${ctx.broker.limits.partitionsMax}`);
      }
      // Only the topic's own settings are stored; node defaults apply at every start, so a
      // changed default reaches existing topics, as Kafka's broker defaults do.
      await logs.createTopic(name, partitions, config);
      logger.info({ topic: name, partitions }, 'topic created');
      topics.push({ name, error: Errors.NONE.code });
    } catch (err) {
      topics.push({ name, ...errorResult(err, logger, { request: 'CreateTopics', topic: name }) });
    }
  }
  return { topics };
}
