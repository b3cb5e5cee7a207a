import { describe, expect, it } from 'vitest';
import { LatencyHistogram } from './histogram.js';
import { FullFleetWindow, WORKER_SEMI_SPACE_MIB, workerExecArgv } from './run.js';
import type { Sample } from './types.js';

describe('workerExecArgv', () => {
  it("adds the workers' young-generation size to the simulator's own flags", () => {
    const own = ['--enable-source-maps', '--cpu-prof'];
    expect(workerExecArgv(own)).toEqual(['--enable-source-maps', '--cpu-prof', `--max-semi-space-size=${WORKER_SEMI_SPACE_MIB}`]);
    expect(own).toHaveLength(2);
  });

  it('keeps a young-generation size the simulator was started with, in either spelling', () => {
    expect(workerExecArgv(['--max-semi-space-size=8'])).toEqual(['--max-semi-space-size=8']);
    expect(workerExecArgv(['--max-semi-space-size', '8'])).toEqual(['--max-semi-space-size', '8']);
  });
});

const NO_LATENCY = { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };

/** A sample at `at` s with `connected` devices; its send-to-ack latency is `latencyMs` for each of `acks` acks. */
function sampleAt(at: number, connected: number, latencyMs: number, acks = 10): { sample: Sample; ackLatency: LatencyHistogram } {
  const ackLatency = new LatencyHistogram();
  for (let i = 0; i < acks; i++) ackLatency.record(latencyMs);
  const sample: Sample = { at, devicesConnected: connected, sent: acks, acked: acks, failed: 0, read: acks, latency: NO_LATENCY, ackLatency: ackLatency.percentiles(), nodeRssMiB: null, nodeCpuPercent: null, errors: 0 };
  return { sample, ackLatency };
}

describe('FullFleetWindow: the "all connected" latency', () => {
  const DEVICES = 200;

  /** Feeds one sample a second from `from` to `to` s. */
  function feed(window: FullFleetWindow, from: number, to: number, connected: number, latencyMs: number): ('opened' | 'ended' | null)[] {
    const changes: ('opened' | 'ended' | null)[] = [];
    for (let at = from; at <= to; at++) {
      const { sample, ackLatency } = sampleAt(at, connected, latencyMs);
      changes.push(window.sampled(sample, ackLatency));
    }
    return changes;
  }

  it('a node killed and restarted: the outage and the sends held back through it stay out, though every device reconnects', () => {
    const window = new FullFleetWindow(DEVICES);
    feed(window, 1, 2, 120, 2); // the connect ramp
    expect(feed(window, 3, 12, DEVICES, 5)).toEqual(['opened', ...Array(9).fill(null)]);
    expect(window.acted('kill-node')).toBe('ended');
    feed(window, 13, 15, 0, 0); // the node is down
    expect(window.acted('restart-node')).toBeNull();
    // Every device is back, acknowledged late: what they sent during the outage.
    expect(feed(window, 16, 30, DEVICES, 3000)).toEqual(Array(15).fill(null));
    expect(window.loadStopped()).toBeNull();
    const all = window.result(NO_LATENCY)!;
    expect([all.fromSeconds, all.toSeconds]).toEqual([3, 12]);
    // Samples 4..12 (the opening sample counts from the next one), none of the 3 s acks.
    expect(all.ackLatency.count).toBe(9 * 10);
    expect(all.ackLatency.max).toBeCloseTo(5, 1);
  });

  it('dropped connections end it too, and so does a sample short of a device; a slow consumer does not', () => {
    const dropped = new FullFleetWindow(DEVICES);
    feed(dropped, 1, 5, DEVICES, 4);
    expect(dropped.acted('slow-consumer')).toBeNull();
    expect(dropped.acted('resume-consumer')).toBeNull();
    feed(dropped, 6, 8, DEVICES, 4);
    expect(dropped.acted('drop-connections')).toBe('ended');
    feed(dropped, 9, 20, DEVICES, 900);
    expect(dropped.result(NO_LATENCY)).toMatchObject({ fromSeconds: 1, toSeconds: 8, ackLatency: { count: 70 } });

    const short = new FullFleetWindow(DEVICES);
    feed(short, 1, 4, DEVICES, 4);
    expect(feed(short, 5, 5, DEVICES - 1, 800)).toEqual(['ended']);
    feed(short, 6, 10, DEVICES, 800);
    expect(short.result(NO_LATENCY)).toMatchObject({ fromSeconds: 1, toSeconds: 4, ackLatency: { count: 30, max: 4 } });
  });

  it('an outage before every device connected: there is no such window, even once all are back', () => {
    const window = new FullFleetWindow(DEVICES);
    feed(window, 1, 3, 150, 4);
    expect(window.acted('kill-node')).toBe('ended');
    expect(feed(window, 4, 10, DEVICES, 2000)).toEqual(Array(7).fill(null));
    expect(window.result(NO_LATENCY)).toBeNull();
  });

  it('without an outage, it runs to the last sample of the load and not into the stop', () => {
    const window = new FullFleetWindow(DEVICES);
    feed(window, 1, 30, DEVICES, 4);
    expect(window.loadStopped()).toBe('ended');
    feed(window, 31, 33, 0, 0);
    expect(window.result(NO_LATENCY)).toMatchObject({ fromSeconds: 1, toSeconds: 30, ackLatency: { count: 290 } });
  });
});
