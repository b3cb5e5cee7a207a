// DescribeConfigs: every config key of each topic with its value and where it comes from
// (the topic's override, the node's topicDefaults, or the built-in default), for
// `tributary topics configs`. Whoever may describe a topic may read its configs.

import { Errors } from '../../../protocol/errors.js';
import type { DescribeConfigsResponse, Kind } from '../../../protocol/frames.js';
import { isInvalid, type DecodedRequests } from '../../../protocol/requests.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult } from './errors.js';

export async function handleDescribeConfigs(request: DecodedRequests[Kind.DescribeConfigs], ctx: RequestContext): Promise<DescribeConfigsResponse> {
  const { logs, logger } = ctx.broker;
  const topics: DescribeConfigsResponse['topics'] = [];
  for (const named of request.topics) {
    // Refused before the lookup, so a refusal says nothing about whether the topic exists.
    const name = isInvalid(named) ? named.name : named;
    const refused = isInvalid(named) ? named.invalid : refusal(ctx, 'describe', name);
    if (refused) {
      topics.push({ name, ...refused, configs: [] });
      continue;
    }
    try {
      topics.push({ name, error: Errors.NONE.code, configs: logs.describeTopicConfig(name) });
    } catch (err) {
      topics.push({ name, ...errorResult(err, logger, { request: 'DescribeConfigs', topic: name }), configs: [] });
    }
  }
  return { topics };
}
