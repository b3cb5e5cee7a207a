// Test helper: the first n records of a consumer's iterator.

import type { ConsumerRecord } from '../consumer.js';

export async function take<V>(iterable: AsyncIterable<ConsumerRecord<V>>, n: number): Promise<ConsumerRecord<V>[]> {
  const out: ConsumerRecord<V>[] = [];
  if (n === 0) return out;
  for await (const r of iterable) {
    out.push(r);
    if (out.length === n) break;
  }
  return out;
}
