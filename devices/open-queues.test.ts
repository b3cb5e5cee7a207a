import { describe, expect, it } from 'vitest';
import { OpenQueues, PartitionQueue } from './producer-batch.js';

const queues = (n: number) => Array.from({ length: n }, (_, i) => new PartitionQueue('t', i));
const listed = (list: OpenQueues) => {
  const out: number[] = [];
  list.forEach((q) => out.push(q.partition));
  return out;
};

describe('OpenQueues', () => {
  it('lists queues once each, in the order added, and forgets removed ones', () => {
    const [a, b, c] = queues(3);
    const list = new OpenQueues();
    list.add(b);
    list.add(a);
    list.add(b);
    list.add(c);
    expect(listed(list)).toEqual([1, 0, 2]);
    expect(list.size).toBe(3);
    list.delete(a);
    list.delete(a);
    expect(listed(list)).toEqual([1, 2]);
    expect(list.size).toBe(2);
  });

  it('a queue removed and added again goes to the end', () => {
    const [a, b] = queues(2);
    const list = new OpenQueues();
    list.add(a);
    list.add(b);
    list.delete(a);
    list.add(a);
    expect(listed(list)).toEqual([1, 0]);
  });

  it('forEach may remove the queue it is on, and every queue is still visited once', () => {
    const qs = queues(5);
    const list = new OpenQueues();
    for (const q of qs) list.add(q);
    const seen: number[] = [];
    list.forEach((q) => {
      seen.push(q.partition);
      list.delete(q);
    });
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(list.size).toBe(0);
    expect(listed(list)).toEqual([]);
  });

  it('one queue added and removed over and over reuses its slot', () => {
    const [a] = queues(1);
    const list = new OpenQueues();
    for (let i = 0; i < 1000; i++) {
      list.add(a);
      list.delete(a);
    }
    expect(list.slots).toBe(0);
  });

  it('holes left while others stay open are closed up, keeping the order', () => {
    const qs = queues(40);
    const list = new OpenQueues();
    list.add(qs[0]);
    // One queue stays open while 39 others come and go: the array must not grow without end.
    for (let round = 0; round < 50; round++) {
      for (let i = 1; i < 40; i++) list.add(qs[i]);
      for (let i = 1; i < 40; i++) if (i !== 7) list.delete(qs[i]);
      list.delete(qs[7]);
    }
    expect(list.slots).toBeLessThanOrEqual(80);
    list.add(qs[3]);
    list.add(qs[2]);
    expect(listed(list)).toEqual([0, 3, 2]);
    expect(list.size).toBe(3);
  });
});
