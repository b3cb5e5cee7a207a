import type { SubscribeResponse, UnsubscribeResponse } from '../../../protocol/frames.js';
import { Errors } from '../../../protocol/errors.js';
import type { RequestContext } from '../context.js';
import type { Body } from '../validate.js';

// Subscribe, Credit and Unsubscribe: push delivery, kept per connection in
// server/subscriptions.ts. Credit is not answered: it is sent often, and a grant for a
// subscription that has just ended is no error.
export async function handleSubscribe(body: Body, ctx: RequestContext): Promise<SubscribeResponse> {
  return ctx.subscriptions.subscribe(body, ctx.principal);
}

export async function handleCredit(body: Body, ctx: RequestContext): Promise<undefined> {
  ctx.subscriptions.credit(body);
  return undefined;
}

export async function handleUnsubscribe(body: Body, ctx: RequestContext): Promise<UnsubscribeResponse> {
  ctx.subscriptions.unsubscribe(body);
  return { error: Errors.NONE.code };
}
