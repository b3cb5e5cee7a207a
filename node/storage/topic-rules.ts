// Kafka's rules for topic names and partition counts (kafka.common.internals.Topic): names
// of 1..249 characters from [a-zA-Z0-9._-], not '.' or '..'. 249 leaves room for the
// '-<partition>' suffix of the folder within a 255-byte file name. Names starting with '__'
// are reserved for internal topics (__consumer_offsets and the like).

import { Errors, TributaryError } from '../../protocol/errors.js';

export const TOPIC_NAME_LENGTH_MAX = 249;
export const PARTITIONS_MAX = 10_000;
const LEGAL_NAME = /^[a-zA-Z0-9._-]+$/;

export function validateTopicName(name: unknown, internal: boolean): asserts name is string {
  const fail = (why: string): never => {
    throw new TributaryError(Errors.INVALID_TOPIC, `topic name ${JSON.stringify(name)} ${why}`);
  };
  if (typeof name !== 'string' || name.length === 0) fail('must be a non-empty string');
  const text = name as string;
  if (text.length > TOPIC_NAME_LENGTH_MAX) fail(`is ${text.length} characters long, at most ${TOPIC_NAME_LENGTH_MAX} are allowed`);
  if (text === '.' || text === '..') fail("cannot be '.' or '..'");
  if (!LEGAL_NAME.test(text)) fail('may contain only ASCII letters, digits, ., _ and -');
  if (text.startsWith('__') && !internal) fail("starts with '__', which is reserved for internal topics");
}

export function validatePartitionCount(partitions: unknown): asserts partitions is number {
  if (typeof partitions !== 'number' || !Number.isInteger(partitions) || partitions < 1 || partitions > PARTITIONS_MAX) {
    throw new TributaryError(Errors.INVALID_PARTITIONS, `partition count ${String(partitions)} must be an integer from 1 to ${PARTITIONS_MAX}`);
  }
}
