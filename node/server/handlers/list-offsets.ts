import { Errors } from '../../../protocol/errors.js';
import { EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, type ListOffsetsPartitionResult, type ListOffsetsResponse } from '../../../protocol/frames.js';
import { requestBudget } from '../../storage/request-budget.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { errorResult, LimitsReached } from './errors.js';
import { answeredTopic, int, map, requestEntries, topicName, type Body } from '../validate.js';

// Kafka's ListOffsets: LATEST is the high watermark (what a consumer can reach), EARLIEST
// the log start offset, any other timestamp the first offset whose record timestamp is at
// or after it (-1 when there is none). A lookup by time reads and may inflate a batch: one
// budget per request bounds what all its entries read and inflate together, so that naming
// the same bomb 10,000 times costs one budget, not 10,000 inflates (the rest THROTTLED).
export async function handleListOffsets(body: Body, ctx: RequestContext): Promise<ListOffsetsResponse> {
  const { logs, logger } = ctx.broker;
  const entries = requestEntries(body, 'partitions', ctx.broker);
  const budget = requestBudget(ctx.broker.limits);
  const limitsReached = new LimitsReached();
  const partitions = entries.map((e, i): ListOffsetsPartitionResult => {
    const result: ListOffsetsPartitionResult = { topic: '', partition: -1, error: Errors.NONE.code, offset: -1, timestamp: -1 };
    try {
      const entry = map(e, `partitions[${i}]`);
      // The answer carries at most a bounded prefix of a bad name, which is refused next.
      result.topic = answeredTopic(entry.topic);
      topicName(entry, 'topic');
      result.partition = int(entry, 'partition', 0, 0x7fffffff);
      const timestamp = int(entry, 'timestamp', EARLIEST_TIMESTAMP);
      const refused = refusal(ctx, 'describe', result.topic);
      const log = refused ? undefined : logs.partition(result.topic, result.partition);
      if (refused) {
        Object.assign(result, refused);
      } else if (!log) {
        result.error = Errors.UNKNOWN_TOPIC.code;
        result.message = `unknown topic or partition ${result.topic}/${result.partition}`;
      } else if (timestamp === LATEST_TIMESTAMP) {
        result.offset = log.highWatermark;
      } else if (timestamp === EARLIEST_TIMESTAMP) {
        result.offset = log.logStartOffset;
      } else {
        const found = log.offsetForTimestamp(timestamp, budget);
        if (found) {
          result.offset = found.offset;
          result.timestamp = found.timestamp;
        }
      }
    } catch (err) {
      limitsReached.note(err);
      Object.assign(result, errorResult(err, logger, { request: 'ListOffsets', topic: result.topic, partition: result.partition }));
    }
    return result;
  });
  limitsReached.count(ctx.broker.metrics);
  return { partitions };
}
