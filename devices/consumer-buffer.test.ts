// The consumer's partition buffer, apart from any delivery: how long a delivery may wait
// when nothing is fetchable. The deliveries check and reset positions in prepare() and then
// wait for a change or the time retryDelayMs() gives; a partition that prepare() found not
// yet due and that is due by the delivery's next look at the clock must not be waited on
// without a timer (a consumer once waited for ever after a change of leader).

import { describe, expect, it } from 'vitest';
import { ManualClock } from '../protocol/clock.js';
import type { Client } from './client.js';
import { PartitionBuffer, PartitionState, type BufferSettings, type Delivery } from './consumer-buffer.js';

const clock = new ManualClock();
const settings: BufferSettings = {
  autoOffsetReset: 'earliest',
  valueDecoding: 'buffer',
  bufferedBytesMax: 1 << 20,
  requestTimeoutMs: 30_000,
  retryBackoffMs: 100,
  retryBackoffMaxMs: 1000,
  unknownTopicRetries: 3,
  onDivergence: undefined,
  clock,
};
const idle: Delivery = { run: () => new Promise(() => undefined), onTaken: () => undefined, onReconnect: () => undefined, close: () => undefined };
// retryDelayMs reads only the states and the time given: no client, no delivery runs.
const buffer = new PartitionBuffer(undefined as unknown as Client, settings, () => idle);

function state(fields: Partial<PartitionState>): PartitionState {
  return Object.assign(new PartitionState('t', 0), { position: 10, fetchOffset: 10, leaderEpoch: 0 }, fields);
}

describe('retryDelayMs', () => {
  const now = 5000;

  it('is the time to the first backoff that ends, among partitions not paused', () => {
    const states = [state({ retryAt: now + 300 }), state({ retryAt: now + 120 }), state({ retryAt: now + 50, paused: true })];
    expect(buffer.retryDelayMs(states, now)).toBe(120);
  });

  it('is undefined when no partition waits on time: only a change can move them', () => {
    expect(buffer.retryDelayMs([state({}), state({ paused: true, retryAt: now + 10 })], now)).toBeUndefined();
    // A fetchable partition is the delivery's to fetch, not to wait on.
    expect(buffer.retryDelayMs([state({ retryAt: now })], now)).toBeUndefined();
  });

  it('is 0 when a position check or a reset is due by now, whatever else backs off', () => {
    const backingOff = state({ retryAt: now + 400 });
    // Due a fraction of a millisecond before now: prepare(), a moment earlier, found it not yet due.
    expect(buffer.retryDelayMs([backingOff, state({ awaitingValidation: true, retryAt: now - 0.3 })], now)).toBe(0);
    expect(buffer.retryDelayMs([backingOff, state({ awaitingValidation: true, retryAt: now })], now)).toBe(0);
    expect(buffer.retryDelayMs([backingOff, state({ position: null, fetchOffset: null, retryAt: now - 0.3 })], now)).toBe(0);
    // Paused, it waits for the app's seek instead.
    expect(buffer.retryDelayMs([backingOff, state({ awaitingValidation: true, retryAt: now - 0.3, paused: true })], now)).toBe(400);
  });
});
