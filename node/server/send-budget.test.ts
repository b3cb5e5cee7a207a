import { describe, expect, it } from 'vitest';
import type { FrameTransport } from '../../protocol/transport.js';
import { SEND_SHARE_BYTES, SendBudget } from './send-budget.js';

/** A transport whose queue the test sets; `drained` resolves when the test drains it. */
class Queue {
  bufferedBytes = 0;
  isClosed = false;
  private waiters: { low: number; resolve: () => void }[] = [];
  drained(low: number): Promise<void> {
    if (this.bufferedBytes <= low) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ low, resolve }));
  }
  set(bytes: number): void {
    this.bufferedBytes = bytes;
    for (const w of this.waiters.splice(0)) {
      if (bytes <= w.low) w.resolve();
      else this.waiters.push(w);
    }
  }
  get transport(): FrameTransport {
    return this as unknown as FrameTransport;
  }
}

const MIB = 1024 * 1024;

describe('SendBudget', () => {
  it('counts only queues of a share or more, and gives each its full allowance until the node is over', () => {
    let overs = 0;
    const budget = new SendBudget({ perConnectionMax: 8 * MIB, totalMax: 3 * MIB, onOver: () => overs++ });
    const device = new Queue();
    device.set(SEND_SHARE_BYTES - 1);
    budget.note(device.transport);
    expect(budget.totalBytes).toBe(0);
    const slow = [new Queue(), new Queue()];
    slow[0].set(2 * MIB);
    budget.note(slow[0].transport);
    expect([budget.totalBytes, budget.allowance(), budget.answerBytesMax(16 * MIB)]).toEqual([2 * MIB, 8 * MIB, 16 * MIB]);
    slow[1].set(2 * MIB);
    budget.note(slow[1].transport);
    // Over: every connection may hold a share only, and answers are cut to it.
    expect([budget.isOver, budget.allowance(), budget.answerBytesMax(16 * MIB), overs]).toEqual([true, SEND_SHARE_BYTES, SEND_SHARE_BYTES, 1]);
    slow[0].set(0);
    budget.note(slow[0].transport);
    expect([budget.totalBytes, budget.isOver]).toEqual([2 * MIB, false]);
    budget.close();
  });

  it('holds a connection over its own max until its queue drains to half of it', async () => {
    const budget = new SendBudget({ perConnectionMax: 1 * MIB, totalMax: 8 * MIB });
    const a = new Queue();
    a.set(1.5 * MIB);
    budget.note(a.transport);
    let ready = false;
    const waiting = budget.waitForRoom(a.transport).then(() => (ready = true));
    a.set(0.9 * MIB); // within its max, but not yet drained to half
    await Promise.resolve();
    expect(ready).toBe(false);
    a.set(0.4 * MIB);
    await waiting;
    expect(ready).toBe(true);
    budget.close();
  });

  it('while the node is over, holds a connection over its share until the node is under budget again', async () => {
    const budget = new SendBudget({ perConnectionMax: 4 * MIB, totalMax: 2 * MIB });
    const hog = new Queue();
    hog.set(3 * MIB);
    budget.note(hog.transport);
    const reader = new Queue();
    reader.set(0.5 * MIB); // within its own max, over the share
    budget.note(reader.transport);
    let ready = false;
    const waiting = budget.waitForRoom(reader.transport).then(() => (ready = true));
    await Promise.resolve();
    expect(ready).toBe(false);
    hog.set(0);
    budget.note(hog.transport); // what a send or the periodic re-read does
    await waiting;
    expect([ready, budget.isOver, budget.totalBytes]).toEqual([true, false, 0.5 * MIB]);
    budget.close();
  });
});
