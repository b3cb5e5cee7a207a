// Latency histograms of the simulator, on HdrHistogram: the verifier's produce-to-consume
// latency, and the workers' send-to-ack latency, which each worker sends to the parent in
// HdrHistogram's compressed form every 250 ms and the parent merges.

import * as hdr from 'hdr-histogram-js';
import type { Percentiles } from './types.js';

/** Values are recorded in µs, up to an hour (clamped there: a histogram needs a top). */
const LATENCY_US_MAX = 3_600_000_000;

export class LatencyHistogram {
  private readonly h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_US_MAX, numberOfSignificantValueDigits: 3 });

  record(ms: number): void {
    this.h.recordValue(Math.min(LATENCY_US_MAX, Math.max(0, Math.round(ms * 1000))));
  }

  get count(): number {
    return this.h.totalCount;
  }

  /** The histogram for another process: HdrHistogram's compressed base64 encoding. */
  encode(): string {
    return hdr.encodeIntoCompressedBase64(this.h);
  }

  /** Adds another histogram, or one `encode` made in another process. */
  merge(other: LatencyHistogram | string): void {
    this.h.add(typeof other === 'string' ? hdr.decodeFromCompressedBase64(other) : other.h);
  }

  reset(): void {
    this.h.reset();
  }

  /** In ms, to the µs. */
  percentiles(): Percentiles {
    if (this.h.totalCount === 0) return { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    const ms = (us: number) => us / 1000;
    return {
      count: this.h.totalCount,
      p50: ms(this.h.getValueAtPercentile(50)),
      p90: ms(this.h.getValueAtPercentile(90)),
      p99: ms(this.h.getValueAtPercentile(99)),
      p999: ms(this.h.getValueAtPercentile(99.9)),
      max: ms(this.h.maxValue),
    };
  }
}
