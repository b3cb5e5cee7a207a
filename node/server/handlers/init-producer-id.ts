import { Errors, TributaryError } from '../../../protocol/errors.js';
import type { InitProducerIdResponse, Kind } from '../../../protocol/frames.js';
import type { DecodedRequests } from '../../../protocol/requests.js';
import type { RequestContext } from '../context.js';

// Kafka's InitProducerId for an idempotent (not transactional) producer: a fresh producer
// id at epoch 0. The producer stamps it, with per-partition sequences, on every batch; the
// partition logs then recognise resends. Only a principal that may produce somewhere gets
// one (Kafka's IDEMPOTENT_WRITE).
export async function handleInitProducerId(_request: DecodedRequests[Kind.InitProducerId], ctx: RequestContext): Promise<InitProducerIdResponse> {
  const { principal } = ctx;
  const mayProduce = principal.role !== 'device' && principal.role !== 'app' ? true : principal.produce.length > 0;
  if (!mayProduce) {
    ctx.broker.metrics.requestsUnauthorized.inc({ action: 'produce' });
    throw new TributaryError(Errors.UNAUTHORIZED, `${principal.name} may not produce anywhere, so it needs no producer id`);
  }
  if (ctx.broker.shuttingDown) throw new TributaryError(Errors.SHUTTING_DOWN);
  return { error: Errors.NONE.code, producerId: ctx.broker.producerIds.allocate(), producerEpoch: 0 };
}
