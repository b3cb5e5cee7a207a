// Kafka's rules for topic names and partition counts. The name rule is protocol's
// (protocol/topic-names.ts), shared with the decoding of requests; the node creates its
// topics by it.

import { Errors, TributaryError } from '../../protocol/errors.js';
import { topicNameError } from '../../protocol/topic-names.js';

export const PARTITIONS_MAX = 10_000;

/** topicNameError, thrown: INVALID_TOPIC unless `name` is a legal name. */
export function validateTopicName(name: unknown, internal: boolean): asserts name is string {
  const err = topicNameError(name, internal);
  if (err !== null) throw err;
}

export function validatePartitionCount(partitions: unknown): asserts partitions is number {
  if (typeof partitions !== 'number' || !Number.isInteger(partitions) || partitions < 1 || partitions > PARTITIONS_MAX) {
    throw new TributaryError(Errors.INVALID_PARTITIONS, `partition count ${String(partitions)} must be an integer from 1 to ${PARTITIONS_MAX}`);
  }
}
