import { Errors, TributaryError } from '../../../protocol/errors.js';
import type { ProducePartitionResult, ProduceResponse } from '../../../protocol/frames.js';
import type { RequestContext } from '../context.js';
import { errorResult } from './errors.js';
import { bytes, int, list, map, PARTITIONS_PER_REQUEST_MAX, str, type Body } from '../validate.js';

// Produce appends each partition's batch as received: the storage engine validates it
// (length, magic, CRC), patches the base offset and leader epoch in place and writes the
// bytes. No record inside a batch is looked at. With acks=1 the answer waits for the
// topic's flush policy (flush=batch: after fsync); with acks=0 nothing is answered.
export async function handleProduce(body: Body, ctx: RequestContext): Promise<ProduceResponse | undefined> {
  const { logs, logger, shuttingDown } = ctx.broker;
  const acks = int(body, 'acks', -1, 1);
  const entries = list(body, 'partitions', PARTITIONS_PER_REQUEST_MAX);
  const results: ProducePartitionResult[] = [];
  const durable: Promise<void>[] = [];
  for (let i = 0; i < entries.length; i++) {
    const result: ProducePartitionResult = { topic: '', partition: -1, error: Errors.NONE.code, baseOffset: -1, logStartOffset: -1 };
    results.push(result);
    try {
      const entry = map(entries[i], `partitions[${i}]`);
      result.topic = str(entry, 'topic');
      result.partition = int(entry, 'partition', 0, 0x7fffffff);
      const records = bytes(entry, 'records');
      if (shuttingDown) throw new TributaryError(Errors.SHUTTING_DOWN);
      const log = logs.partition(result.topic, result.partition);
      if (!log) {
        result.error = Errors.UNKNOWN_TOPIC.code;
        result.message = `unknown topic or partition ${result.topic}/${result.partition}`;
        continue;
      }
      const appended = log.append(records);
      result.baseOffset = appended.baseOffset;
      result.logStartOffset = log.logStartOffset;
      if (acks !== 0) {
        durable.push(
          appended.durable.catch((err: unknown) => {
            Object.assign(result, errorResult(err, logger, { request: 'Produce', topic: result.topic, partition: result.partition }));
          }),
        );
      }
    } catch (err) {
      Object.assign(result, errorResult(err, logger, { request: 'Produce', topic: result.topic, partition: result.partition }));
    }
  }
  if (acks === 0) return undefined;
  await Promise.all(durable);
  return { partitions: results };
}

