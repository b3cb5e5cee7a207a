import { Errors, TributaryError } from '../../../protocol/errors.js';
import type { DeleteTopicsResponse, Kind, TopicResult } from '../../../protocol/frames.js';
import { isInvalid, type DecodedRequests } from '../../../protocol/requests.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult } from './errors.js';

export async function handleDeleteTopics(request: DecodedRequests[Kind.DeleteTopics], ctx: RequestContext): Promise<DeleteTopicsResponse> {
  const { logs, logger } = ctx.broker;
  const topics: TopicResult[] = [];
  for (const named of request.topics) {
    if (isInvalid(named)) {
      topics.push({ name: named.name, ...named.invalid });
      continue;
    }
    const name = named;
    const refused = refusal(ctx, 'deleteTopics', name);
    if (refused) {
      topics.push({ name, ...refused });
      continue;
    }
    try {
      // The node keeps its own state in internal topics (revocations, later group offsets).
      if (name.startsWith('__')) throw new TributaryError(Errors.INVALID_TOPIC, `'${name}' is an internal topic and cannot be deleted`);
      await logs.deleteTopic(name);
      ctx.broker.metrics.forgetTopic(name);
      logger.info({ topic: name }, 'topic deleted');
      // Its committed offsets go with it (as in Kafka): a topic created again under the name
      // starts without them, and their places under the offset limits are free again.
      await ctx.broker.offsets.forgetTopic(name, ctx.broker.clock.now()).catch((err: unknown) => logger.warn({ topic: name, err }, 'the committed offsets of a deleted topic were not deleted'));
      topics.push({ name, error: Errors.NONE.code });
    } catch (err) {
      topics.push({ name, ...errorResult(err, logger, { request: 'DeleteTopics', topic: name }) });
    }
  }
  return { topics };
}
