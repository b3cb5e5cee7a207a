// A small latency histogram with log buckets (about 1% wide), cheap to record into and to
// send between processes as a sparse list: workers send one per second to the parent, which
// merges them. (The report's HdrHistogram is for the verifier's end-to-end latency; ack
// latencies travel between processes, where a plain sparse array is the simplest wire form.)

import type { Percentiles } from './types.js';

const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
/** Values are ms from 0.01 ms; 2000 buckets reach past ten minutes. */
const UNIT_MS = 0.01;
const BUCKETS = 2000;

export type SparseHistogram = [bucket: number, count: number][];

export class LatencyHistogram {
  private readonly counts = new Map<number, number>();
  private total = 0;
  private maxMs = 0;

  record(ms: number): void {
    const bucket = Math.min(BUCKETS - 1, Math.max(0, Math.floor(Math.log(Math.max(ms, UNIT_MS) / UNIT_MS) / LOG_GROWTH)));
    this.counts.set(bucket, (this.counts.get(bucket) ?? 0) + 1);
    this.total += 1;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  get count(): number {
    return this.total;
  }

  toSparse(): { buckets: SparseHistogram; maxMs: number } {
    return { buckets: [...this.counts], maxMs: this.maxMs };
  }

  merge(other: { buckets: SparseHistogram; maxMs: number }): void {
    for (const [bucket, count] of other.buckets) {
      this.counts.set(bucket, (this.counts.get(bucket) ?? 0) + count);
      this.total += count;
    }
    if (other.maxMs > this.maxMs) this.maxMs = other.maxMs;
  }

  reset(): void {
    this.counts.clear();
    this.total = 0;
    this.maxMs = 0;
  }

  /** The value at quantile q (0..1): the upper edge of its bucket, at most the maximum seen. */
  valueAt(q: number): number {
    if (this.total === 0) return 0;
    const rank = Math.ceil(q * this.total);
    let seen = 0;
    for (const bucket of [...this.counts.keys()].sort((a, b) => a - b)) {
      seen += this.counts.get(bucket)!;
      if (seen >= rank) return Math.min(this.maxMs, Math.round(UNIT_MS * GROWTH ** (bucket + 1) * 1000) / 1000);
    }
    return this.maxMs;
  }

  percentiles(): Percentiles {
    return { count: this.total, p50: this.valueAt(0.5), p90: this.valueAt(0.9), p99: this.valueAt(0.99), p999: this.valueAt(0.999), max: Math.round(this.maxMs * 1000) / 1000 };
  }
}
