import { Errors } from '../../../protocol/errors.js';
import type { CreateTopicsResponse, TopicResult } from '../../../protocol/frames.js';
import type { RequestContext } from '../context.js';
import { errorResult } from './errors.js';
import { int, list, map, str, type Body } from '../validate.js';

export async function handleCreateTopics(body: Body, ctx: RequestContext): Promise<CreateTopicsResponse> {
  const { logs, logger, topicDefaults } = ctx.broker;
  const entries = list(body, 'topics', 1000).map((e, i) => map(e, `topics[${i}]`));
  const topics: TopicResult[] = [];
  // One at a time: each creation writes and fsyncs its config before the next begins.
  for (const entry of entries) {
    const name = str(entry, 'name');
    try {
      const partitions = int(entry, 'partitions', -0x80000000, 0x7fffffff);
      const config = entry.config === undefined ? undefined : (map(entry.config, 'config') as Record<string, string | number>);
      await logs.createTopic(name, partitions, { ...topicDefaults, ...config });
      logger.info({ topic: name, partitions }, 'topic created');
      topics.push({ name, error: Errors.NONE.code });
    } catch (err) {
      topics.push({ name, ...errorResult(err, logger, { request: 'CreateTopics', topic: name }) });
    }
  }
  return { topics };
}
