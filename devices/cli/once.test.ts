import { expect, it } from 'vitest';
import { Once } from './once.js';

it('ends the wait going on with its reason, and every later one at once', async () => {
  const once = new Once<'stop'>();
  const never = new Promise<string>(() => {});
  const waiting = once.race(never);
  once.fire('stop');
  await expect(waiting).resolves.toBe('stop');
  await expect(once.race(never)).resolves.toBe('stop');
  expect(once.reason).toBe('stop');
});

it('passes on what the wait gives, and a wait that is over leaves nothing behind', async () => {
  const once = new Once<'stop'>();
  for (let i = 0; i < 1000; i++) expect(await once.race(Promise.resolve(i))).toBe(i);
  await expect(once.race(Promise.reject(new Error('failed')))).rejects.toThrow('failed');
  // A million waits of a long run hold no waker each: only the waits still going on are kept.
  expect((once as unknown as { wakers: Set<unknown> }).wakers.size).toBe(0);
});
