import type { Kind, SubscribeResponse, UnsubscribeResponse } from '../../../protocol/frames.js';
import type { DecodedRequests } from '../../../protocol/requests.js';
import { Errors } from '../../../protocol/errors.js';
import type { RequestContext } from '../context.js';

// Subscribe, Credit and Unsubscribe: push delivery, kept per connection in
// server/subscriptions.ts. Credit is not answered: it is sent often, and a grant for a
// subscription that has just ended is no error.
export async function handleSubscribe(request: DecodedRequests[Kind.Subscribe], ctx: RequestContext): Promise<SubscribeResponse> {
  return ctx.subscriptions.subscribe(request, ctx.principal);
}

export async function handleCredit(request: DecodedRequests[Kind.Credit], ctx: RequestContext): Promise<undefined> {
  ctx.subscriptions.credit(request);
  return undefined;
}

export async function handleUnsubscribe(request: DecodedRequests[Kind.Unsubscribe], ctx: RequestContext): Promise<UnsubscribeResponse> {
  ctx.subscriptions.unsubscribe(request);
  return { error: Errors.NONE.code };
}
