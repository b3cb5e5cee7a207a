import { beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../protocol/clock.js';
import type { FrameTransport } from '../../protocol/transport.js';
import { SEND_SHARE_BYTES, SendBudget } from './send-budget.js';

/** A transport whose queue the test sets; `drained` resolves when the test drains it. */
class Queue {
  bufferedBytes = 0;
  isClosed = false;
  drainedCalls = 0;
  private waiters: { low: number; resolve: () => void }[] = [];
  drained(low: number): Promise<void> {
    this.drainedCalls++;
    if (this.bufferedBytes <= low) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ low, resolve }));
  }
  /** Sets the queue as the socket's write callbacks would report it. */
  set(bytes: number): void {
    this.bufferedBytes = bytes;
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) {
      if (bytes <= w.low) w.resolve();
      else this.waiters.push(w);
    }
  }
  /** Closes it: as a socket transport, its drain waiters are let go. */
  close(): void {
    this.isClosed = true;
    for (const w of this.waiters.splice(0)) w.resolve();
  }
  get pendingDrains(): number {
    return this.waiters.length;
  }
  get transport(): FrameTransport {
    return this as unknown as FrameTransport;
  }
}

const MIB = 1024 * 1024;

function queue(bytes: number): Queue {
  const q = new Queue();
  q.bufferedBytes = bytes;
  return q;
}

let clock: ManualClock;

beforeEach(() => {
  clock = new ManualClock();
});

describe('SendBudget', () => {
  it('counts only queues of a share or more, and gives each connection its full allowance until the node is over', () => {
    let overs = 0;
    const budget = new SendBudget({ perConnectionMax: 8 * MIB, perPrincipalMax: 64 * MIB, totalMax: 3 * MIB, onOver: () => overs++, clock });
    budget.note(queue(SEND_SHARE_BYTES - 1).transport, 'key:device');
    expect(budget.totalBytes).toBe(0);
    const slow = [queue(2 * MIB), queue(2 * MIB)];
    budget.note(slow[0].transport, 'key:a');
    expect([budget.totalBytes, budget.allowance('key:x'), budget.answerBytesMax(16 * MIB, 'key:x')]).toEqual([2 * MIB, 8 * MIB, 16 * MIB]);
    budget.note(slow[1].transport, 'key:b');
    // Over: every connection may hold a share only, and answers are cut to it.
    expect([budget.isOver, budget.allowance('key:x'), budget.answerBytesMax(16 * MIB, 'key:x'), overs]).toEqual([true, SEND_SHARE_BYTES, SEND_SHARE_BYTES, 1]);
    slow[0].bufferedBytes = 0;
    budget.note(slow[0].transport, 'key:a');
    expect([budget.totalBytes, budget.isOver, budget.bytesOf('key:a')]).toEqual([2 * MIB, false, 0]);
    budget.close();
  });

  it("throttles a principal over its own bound, and no one else's connections", () => {
    const budget = new SendBudget({ perConnectionMax: 8 * MIB, perPrincipalMax: 4 * MIB, totalMax: 128 * MIB, clock });
    for (let i = 0; i < 3; i++) budget.note(queue(2 * MIB).transport, 'key:hog');
    expect([budget.bytesOf('key:hog'), budget.isOver]).toEqual([6 * MIB, false]);
    expect([budget.allowance('key:hog'), budget.answerBytesMax(MIB, 'key:hog')]).toEqual([SEND_SHARE_BYTES, SEND_SHARE_BYTES]);
    expect([budget.allowance('key:reader'), budget.answerBytesMax(MIB, 'key:reader')]).toEqual([8 * MIB, MIB]);
    // Anonymous dev-mode clients are one principal: bounded by the node's total only.
    for (let i = 0; i < 3; i++) budget.note(queue(2 * MIB).transport, 'anonymous');
    expect(budget.allowance('anonymous')).toBe(8 * MIB);
    budget.close();
  });

  it('holds a connection over its own max until its socket drains to half of it', async () => {
    const budget = new SendBudget({ perConnectionMax: 1 * MIB, perPrincipalMax: 64 * MIB, totalMax: 64 * MIB, clock });
    const a = queue(1.5 * MIB);
    let ready = false;
    const waiting = budget.waitForRoom(a.transport, 'key:a').then(() => (ready = true));
    a.set(0.9 * MIB); // within its max, but not yet drained to half
    await clock.advanceAsync(200, 10);
    expect(ready).toBe(false);
    a.set(0.4 * MIB);
    await waiting;
    expect([ready, a.drainedCalls, a.pendingDrains]).toEqual([true, 1, 0]);
    budget.close();
  });

  it('while the node is over, holds a connection over its share until the node is under its total again', async () => {
    const budget = new SendBudget({ perConnectionMax: 4 * MIB, perPrincipalMax: 64 * MIB, totalMax: 2 * MIB, clock });
    const hog = queue(3 * MIB);
    budget.note(hog.transport, 'key:hog');
    const reader = queue(0.5 * MIB); // within its own max, over the share
    let ready = false;
    const waiting = budget.waitForRoom(reader.transport, 'key:reader').then(() => (ready = true));
    await clock.advanceAsync(200, 10);
    expect(ready).toBe(false);
    hog.bufferedBytes = 0; // the hog reads: the periodic re-read sees it
    await clock.advanceAsync(60, 10);
    await waiting;
    expect([ready, budget.isOver, budget.totalBytes]).toEqual([true, false, 0.5 * MIB]);
    // Held by the node's bound, it waited without a drain callback: none is left behind.
    expect(reader.pendingDrains).toBe(0);
    budget.close();
  });

  it('lets a closed connection go at once, and stops re-reading when nothing is tracked', async () => {
    const budget = new SendBudget({ perConnectionMax: 1 * MIB, perPrincipalMax: 64 * MIB, totalMax: 64 * MIB, clock });
    const a = queue(2 * MIB);
    const waiting = budget.waitForRoom(a.transport, 'key:a');
    a.close();
    await clock.advanceAsync(60, 10);
    await waiting;
    expect(budget.totalBytes).toBe(0);
    expect(clock.pending).toBe(0);
    budget.close();
  });
});
