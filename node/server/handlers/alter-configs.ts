// AlterConfigs: Kafka's IncrementalAlterConfigs for topics, for `tributary topics alter`.
// Each topic is checked, written and applied on its own (all or nothing per topic), so one
// refused topic leaves the others changed, as Kafka answers per resource.

import { Errors, TributaryError } from '../../../protocol/errors.js';
import { CONFIG_CHANGES_PER_TOPIC_MAX, CONFIG_TOPICS_PER_REQUEST_MAX, type AlterConfigsResponse, type TopicResult } from '../../../protocol/frames.js';
import type { ConfigChange } from '../../storage/log-manager.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult } from './errors.js';
import { answeredTopic, invalidTopic, list, map, requestEntries, str, type Body } from '../validate.js';

export async function handleAlterConfigs(body: Body, ctx: RequestContext): Promise<AlterConfigsResponse> {
  const { logs, logger } = ctx.broker;
  // limits.requestEntriesMax first, then the protocol's own cap for config requests.
  requestEntries(body, 'topics', ctx.broker);
  const entries = list(body, 'topics', CONFIG_TOPICS_PER_REQUEST_MAX).map((e, i) => map(e, `topics[${i}]`));
  const topics: TopicResult[] = [];
  for (const entry of entries) {
    const name = answeredTopic(entry.name);
    const refused = invalidTopic(entry.name, 'name') ?? refusal(ctx, 'alterConfigs', name);
    if (refused) {
      topics.push({ name, ...refused });
      continue;
    }
    try {
      const changes = list(entry, 'configs', CONFIG_CHANGES_PER_TOPIC_MAX).map((c, i) => configChange(map(c, `configs[${i}]`), i));
      await logs.alterTopicConfig(name, changes);
      logger.info({ topic: name, changes: changes.map((c) => (c.op === 'set' ? `${c.name}=${String(c.value)}` : `-${c.name}`)), principal: ctx.principal.name }, 'topic config altered');
      topics.push({ name, error: Errors.NONE.code });
    } catch (err) {
      topics.push({ name, ...errorResult(err, logger, { request: 'AlterConfigs', topic: name }) });
    }
  }
  return { topics };
}

function configChange(c: Body, i: number): ConfigChange {
  const name = str(c, 'name');
  const op = c.op;
  if (op === 'delete') {
    if (c.value !== undefined) throw new TributaryError(Errors.INVALID_REQUEST, `configs[${i}] deletes '${name}' and must carry no value`);
    return { name, op };
  }
  if (op !== 'set') throw new TributaryError(Errors.INVALID_REQUEST, `configs[${i}].op must be 'set' or 'delete', got ${JSON.stringify(op)?.slice(0, 40)}`);
  const value = c.value;
  // The value's own rules (type, range) are the config's: INVALID_CONFIG naming key and value.
  if (typeof value !== 'string' && typeof value !== 'number') {
    throw new TributaryError(Errors.INVALID_CONFIG, `config '${name}' needs a value (a string or a number)`);
  }
  return { name, op, value };
}
