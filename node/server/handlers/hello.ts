import { Errors, TributaryError } from '../../../protocol/errors.js';
import { PROTOCOL_VERSION, type HelloResponse } from '../../../protocol/frames.js';
import type { RequestContext } from '../context.js';
import { int, type Body } from '../validate.js';

// Hello is the first request of every connection. The connection checks the version and
// records the client id before any other request is read; this answers with the limits
// the client must keep to.
export async function handleHello(body: Body, ctx: RequestContext): Promise<HelloResponse> {
  const version = int(body, 'version', 0, 0xffff);
  if (version !== PROTOCOL_VERSION) {
    throw new TributaryError(Errors.UNSUPPORTED_VERSION, `client speaks version ${version}, this node speaks ${PROTOCOL_VERSION}`);
  }
  const { limits, nodeId } = ctx.broker;
  return { version: PROTOCOL_VERSION, nodeId, frameBytesMax: limits.frameBytesMax, inflightMax: limits.inflightMax };
}
