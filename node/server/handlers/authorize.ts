import { Errors } from '../../../protocol/errors.js';
import { isAllowed, refusalMessage, type Action } from '../../auth/acl.js';
import type { RequestContext } from '../context.js';

/**
 * The ACL check of one part of a request (one topic or partition). Null when allowed;
 * otherwise the UNAUTHORIZED result for that part, counted in the metrics. Refusing a part
 * rather than the request lets the rest of it go through, as Kafka answers
 * TOPIC_AUTHORIZATION_FAILED per topic, and leaves the connection usable.
 */
export function refusal(ctx: RequestContext, action: Action, topic?: string): { error: number; message: string } | null {
  if (isAllowed(ctx.principal, action, topic)) return null;
  ctx.broker.metrics.requestsUnauthorized.inc({ action });
  return { error: Errors.UNAUTHORIZED.code, message: refusalMessage(ctx.principal, action, topic) };
}
