import { Errors, TributaryError } from '../../../protocol/errors.js';
import type { CreateTopicsResponse, TopicResult } from '../../../protocol/frames.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult } from './errors.js';
import { answeredTopic, int, invalidTopic, list, map, requestEntries, type Body } from '../validate.js';

/** Topics one CreateTopics may name, however many limits.requestEntriesMax allows. */
const TOPICS_PER_REQUEST_MAX = 1000;

export async function handleCreateTopics(body: Body, ctx: RequestContext): Promise<CreateTopicsResponse> {
  const { logs, logger } = ctx.broker;
  // limits.requestEntriesMax first; CreateTopics keeps its own tighter cap: each creation
  // writes and fsyncs files.
  requestEntries(body, 'topics', ctx.broker);
  const entries = list(body, 'topics', TOPICS_PER_REQUEST_MAX).map((e, i) => map(e, `topics[${i}]`));
  const topics: TopicResult[] = [];
  // One at a time: each creation writes and fsyncs its config before the next begins.
  for (const entry of entries) {
    const name = answeredTopic(entry.name);
    const refused = invalidTopic(entry.name, 'name') ?? refusal(ctx, 'createTopics', name);
    if (refused) {
      topics.push({ name, ...refused });
      continue;
    }
    try {
      const partitions = int(entry, 'partitions', -0x80000000, 0x7fffffff);
      const held = logs.topics().reduce((n, t) => n + t.partitions, 0);
      if (partitions > 0 && held + partitions > ctx.broker.limits.partitionsMax) {
        throw new TributaryError(Errors.INVALID_PARTITIONS, `this node holds ${held} partitions; ${partitions} more would pass its limit of ${ctx.broker.limits.partitionsMax}`);
      }
      const config = entry.config === undefined ? undefined : (map(entry.config, 'config') as Record<string, string | number>);
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
