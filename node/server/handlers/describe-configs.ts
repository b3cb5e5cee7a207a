// DescribeConfigs: every config key of each topic with its value and where it comes from
// (the topic's override, the node's topicDefaults, or the built-in default), for
// `tributary topics configs`. Whoever may describe a topic may read its configs.

import { Errors } from '../../../protocol/errors.js';
import { CONFIG_TOPICS_PER_REQUEST_MAX, type DescribeConfigsResponse } from '../../../protocol/frames.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult } from './errors.js';
import { answeredTopic, invalidTopic, requestEntries, strings, type Body } from '../validate.js';

export async function handleDescribeConfigs(body: Body, ctx: RequestContext): Promise<DescribeConfigsResponse> {
  const { logs, logger } = ctx.broker;
  const topics: DescribeConfigsResponse['topics'] = [];
  // limits.requestEntriesMax first, then the protocol's own cap for config requests.
  requestEntries(body, 'topics', ctx.broker);
  for (const named of strings(body, 'topics', CONFIG_TOPICS_PER_REQUEST_MAX)) {
    // Refused before the lookup, so a refusal says nothing about whether the topic exists.
    const name = answeredTopic(named);
    const refused = invalidTopic(named) ?? refusal(ctx, 'describe', name);
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
