// What an idempotent producer needs besides its own bookkeeping: Kafka's sequence
// arithmetic, the producer id fields of a batch already encoded, and InitProducerId.
//
// A producer id comes from the node (InitProducerId, epoch 0). Each batch carries it, its
// epoch and the sequence of its first record; sequences count records per (producer id,
// partition) from 0, so the node can tell a resend (a batch it already has: answered
// DUPLICATE_SEQUENCE with where it was written) from a batch that would leave a gap
// (OUT_OF_ORDER_SEQUENCE).

import { Errors, TributaryError } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import type { Client } from './client.js';

export { nextSequence, stampBatch } from '../protocol/record-batch.js';

const EPOCH_MAX = 0x7fff;

/**
 * The node remembers a producer's last 5 batches per partition, so a resend is recognised
 * only if at most 5 batches of the partition can be unacknowledged at once: Kafka's bound
 * on max.in.flight.requests.per.connection for an idempotent producer.
 */
export const IDEMPOTENT_IN_FLIGHT_MAX = 5;

export interface ProducerIdAndEpoch {
  producerId: number;
  producerEpoch: number;
}

/**
 * Asks the node for a producer id. A node that does not know the request (older than
 * idempotent producers) answers INVALID_REQUEST; the error says how to go on without.
 */
export async function initProducerId(client: Client, timeoutMs: number): Promise<ProducerIdAndEpoch> {
  let answer;
  try {
    answer = await client.request(Kind.InitProducerId, {}, { timeoutMs });
  } catch (err) {
    if (err instanceof TributaryError && err.is(Errors.INVALID_REQUEST)) {
      throw new TributaryError(
        Errors.INVALID_REQUEST,
        `node refused InitProducerId (${err.detail}); a node without idempotent producers needs the producer option idempotent: false`,
        { cause: err },
      );
    }
    throw err;
  }
  const { producerId, producerEpoch } = answer;
  // The id and epoch go into every batch header; a value that does not fit would be written
  // wrong without a word, so an answer out of range is refused here.
  if (!Number.isSafeInteger(producerId) || producerId < 0 || !Number.isInteger(producerEpoch) || producerEpoch < 0 || producerEpoch > EPOCH_MAX) {
    throw new TributaryError(Errors.UNKNOWN, `node answered InitProducerId with producer id ${String(producerId)} epoch ${String(producerEpoch)}`);
  }
  return { producerId, producerEpoch };
}
