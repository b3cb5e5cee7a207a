import { describe, expect, it } from 'vitest';
import { LatencyHistogram } from './histogram.js';

describe('latency histogram', () => {
  it('reports percentiles in ms within 0.1%, merged from another process\'s encoding and from another histogram', () => {
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    const c = new LatencyHistogram();
    for (let i = 1; i <= 900; i++) (i % 2 ? a : b).record(i);
    for (let i = 901; i <= 1000; i++) c.record(i);
    a.merge(b.encode());
    a.merge(c);
    const p = a.percentiles();
    expect(p.count).toBe(1000);
    expect(p.p50).toBeGreaterThanOrEqual(500);
    expect(p.p50).toBeLessThanOrEqual(500 * 1.001);
    expect(p.p99).toBeGreaterThanOrEqual(990);
    expect(p.p99).toBeLessThanOrEqual(990 * 1.001);
    expect(p.max).toBeGreaterThanOrEqual(1000);
    expect(p.max).toBeLessThanOrEqual(1000 * 1.001);
  });

  it('keeps sub-millisecond latencies, clamps at an hour, and starts empty again after reset', () => {
    const h = new LatencyHistogram();
    h.record(0.25);
    h.record(-3);
    h.record(10 * 3_600_000);
    const p = h.percentiles();
    expect(p.count).toBe(3);
    expect(p.p50).toBeCloseTo(0.25, 3);
    expect(p.max).toBeGreaterThanOrEqual(3_600_000);
    expect(p.max).toBeLessThanOrEqual(3_600_000 * 1.001);
    h.reset();
    expect(h.percentiles()).toEqual({ count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 });
  });
});
