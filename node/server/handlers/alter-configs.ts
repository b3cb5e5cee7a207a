// AlterConfigs: Kafka's IncrementalAlterConfigs for topics, for `tributary topics alter`.
// Each topic is checked, written and applied on its own (all or nothing per topic), so one
// refused topic leaves the others changed, as Kafka answers per resource.

import { Errors } from '../../../protocol/errors.js';
import type { AlterConfigsResponse, Kind, TopicResult } from '../../../protocol/frames.js';
import { isInvalid, type DecodedRequests } from '../../../protocol/requests.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult } from './errors.js';

export async function handleAlterConfigs(request: DecodedRequests[Kind.AlterConfigs], ctx: RequestContext): Promise<AlterConfigsResponse> {
  const { logs, logger } = ctx.broker;
  const topics: TopicResult[] = [];
  for (const entry of request.topics) {
    const { name } = entry;
    if (isInvalid(entry)) {
      topics.push({ name, ...entry.invalid });
      continue;
    }
    const refused = refusal(ctx, 'alterConfigs', name);
    if (refused) {
      topics.push({ name, ...refused });
      continue;
    }
    try {
      const changes = entry.configs;
      await logs.alterTopicConfig(name, changes);
      logger.info({ topic: name, changes: changes.map((c) => (c.op === 'set' ? `${c.name}=${String(c.value)}` : `-${c.name}`)), principal: ctx.principal.name }, 'topic config altered');
      topics.push({ name, error: Errors.NONE.code });
    } catch (err) {
      topics.push({ name, ...errorResult(err, logger, { request: 'AlterConfigs', topic: name }) });
    }
  }
  return { topics };
}
