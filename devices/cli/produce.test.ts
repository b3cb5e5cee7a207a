import { expect, it } from 'vitest';
import { ProduceOutcome } from './produce.js';

const ok = null;
const refused = new Error('INVALID_RECORD');

it('counts what was acknowledged after the first failed line, whichever order the answers come in', () => {
  const outcome = new ProduceOutcome(() => {});
  // Lines 1-5 in one call; line 6 skipped (a bad line); lines 7-9 in another.
  const a = outcome.sent(1, 5);
  const b = outcome.sent(7, 3);
  b(2, null, ok); // line 9, before anything failed
  a(3, null, refused); // line 4 fails
  a(4, null, ok); // line 5, after
  a(1, null, refused); // line 2 fails: the first failed line now
  a(0, null, ok);
  a(2, null, ok); // line 3
  b(0, null, ok);
  b(1, null, ok);
  expect(outcome.failure?.line).toBe(2);
  expect(outcome.acked).toBe(6);
  // Lines 3, 5, 7, 8 and 9 were acknowledged after line 2.
  expect(outcome.ackedAfterFailure).toBe(5);
});

it('holds only the lines in flight, however many went before', async () => {
  const outcome = new ProduceOutcome(() => {});
  for (let first = 1; first <= 1_000_000; first += 1000) {
    const told = outcome.sent(first, 1000);
    for (let i = 999; i >= 0; i--) told(i, null, ok);
  }
  await outcome.settled();
  expect(outcome.acked).toBe(1_000_000);
  expect((outcome as unknown as { states: Uint8Array }).states.length).toBeLessThanOrEqual(4096);
});
