// The simulator end to end: the built `tributary sim` starts its own node, runs devices in two
// worker processes, SIGKILLs the node mid-run and starts it again, drops every connection at
// once, and the verifier must still find every acknowledged event once and in order per device.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, tempDir, type CliRun } from './helpers/node-process.js';
import type { RunResult } from '../simulator/types.js';

const RUN_TIMEOUT_MS = 180_000;

/** The built `tributary sim`; it kills its node and workers on its way out, a hung run is killed here. */
function sim(args: string[]): Promise<CliRun> {
  return runCli(['sim', ...args], '', RUN_TIMEOUT_MS);
}

const dirs: { remove(): void }[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) d.remove();
});

describe('tributary sim', () => {
  it('200 devices for 30 s: loses, duplicates and reorders nothing acknowledged across a node SIGKILL and a reconnect storm', async () => {
    const dir = tempDir('trib-sim-');
    dirs.push(dir);
    const scenario = join(dir.path, 'kill.yaml');
    writeFileSync(scenario, `
name: kill-test
topic: { name: sim.test, partitions: 3 }
devices: 200
duration: 30
workers: 2
models:
  - { kind: temperature, share: 0.5, ratePerSecond: 2, jitter: 0.2 }
  - { kind: gps, share: 0.5, ratePerSecond: 1, jitter: 0.2 }
actions:
  - { at: 12, do: kill-node }
  - { at: 15, do: restart-node }
  - { at: 22, do: drop-connections }
`);
    const out = join(dir.path, 'report');
    const r = await sim([scenario, '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as RunResult;
    expect(result.verdict).toMatchObject({ ok: true, lost: 0, duplicated: 0, outOfOrder: 0 });
    // Every device sent and had events acknowledged; every acknowledged event was read.
    expect(result.devices).toBe(200);
    expect(result.totals.acked).toBeGreaterThan(200);
    expect(result.verdict.acked).toBe(result.totals.acked);
    expect(result.verdict.read).toBeGreaterThanOrEqual(result.verdict.acked);
    // All 200 were connected within seconds, until the node was killed at 12 s: the "all
    // connected" latency leaves out the outage and the sends held back through it.
    const all = result.totals.allConnected;
    expect(all).not.toBeNull();
    expect(all!.fromSeconds).toBeLessThan(12);
    expect(all!.toSeconds).toBeGreaterThan(all!.fromSeconds);
    expect(all!.toSeconds).toBeLessThanOrEqual(12.5);
    expect(all!.ackLatency.count).toBeGreaterThan(0);
    expect(all!.ackLatency.count).toBeLessThan(result.totals.ackLatency.count);
    expect(all!.latency.count).toBeGreaterThan(0);
    expect(all!.latency.count).toBeLessThan(result.totals.latency.count);
    expect(result.actions.map((a) => a.what.split(' ')[0])).toEqual(['kill-node', 'restart-node', 'drop-connections']);
    expect(result.workers).toBe(2);
    expect(result.samples.length).toBeGreaterThanOrEqual(30);
    expect(result.samples.some((s) => s.nodeRssMiB !== null)).toBe(true);
    // The node's own counts (since its restart): the 200 devices reconnecting at once at
    // 22 s stayed within its default connection limits.
    expect(result.nodeLimits).not.toBeNull();
    expect(result.nodeLimits!.refused).toEqual({});
    expect(result.nodeLimits!.evicted).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))).toEqual(result);
    expect(readFileSync(join(out, 'report.html'), 'utf8')).toMatch(/<html/i);
  }, RUN_TIMEOUT_MS + 5000);

  it('refuses a bad scenario with one line per mistake and exit code 2, before starting anything', async () => {
    const dir = tempDir('trib-sim-');
    dirs.push(dir);
    const scenario = join(dir.path, 'bad.yaml');
    writeFileSync(scenario, 'devices: 0\nmodels: [{ kind: humidity }]\n');
    const r = await sim([scenario, '--out', join(dir.path, 'report')]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      'tributary: devices must be an integer from 1 to 100000, got 0',
      'tributary: models[0].kind must be one of temperature, vibration, gps, status, got "humidity"',
    ]);
    expect(existsSync(join(dir.path, 'report'))).toBe(false);

    // Text that is not YAML: where, and why, on one line that does not end in a bare colon.
    writeFileSync(scenario, 'devices: 10\nmodels: [\n');
    const notYaml = await sim([scenario, '--out', join(dir.path, 'report')]);
    expect([notYaml.code, notYaml.stderr]).toEqual([2, `tributary: ${scenario}:3:1: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]\n`]);
  });
});
