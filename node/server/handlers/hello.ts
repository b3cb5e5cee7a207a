import { Errors, TributaryError } from '../../../protocol/errors.js';
import { PROTOCOL_VERSION, type HelloResponse, type Kind } from '../../../protocol/frames.js';
import type { DecodedRequests } from '../../../protocol/requests.js';
import type { RequestContext } from '../context.js';

// Hello is the first request of every connection. The connection checks the version and
// records the client id before any other request is read; this answers with the limits
// the client must keep to.
export async function handleHello(request: DecodedRequests[Kind.Hello], ctx: RequestContext): Promise<HelloResponse> {
  const { version } = request;
  if (version !== PROTOCOL_VERSION) {
    throw new TributaryError(Errors.UNSUPPORTED_VERSION, `client speaks version ${version}, this node speaks ${PROTOCOL_VERSION}`);
  }
  const { limits, nodeId } = ctx.broker;
  return { version: PROTOCOL_VERSION, nodeId, frameBytesMax: limits.frameBytesMax, inflightMax: limits.inflightMax };
}
