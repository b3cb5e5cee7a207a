import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TributaryError } from '../protocol/errors.js';
import { checkOpenFiles } from './run.js';
import { loadScenario, modelFor, parseScenario, rateFactorAt } from './scenario.js';

const SCENARIOS = join(dirname(fileURLToPath(import.meta.url)), 'scenarios');

/** The lines of the INVALID_CONFIG a scenario text fails with. */
function mistakes(text: string, overrides: Record<string, unknown> = {}): string[] {
  try {
    parseScenario(text, 'bad.yaml', overrides);
  } catch (err) {
    expect(err).toBeInstanceOf(TributaryError);
    expect((err as TributaryError).errorName).toBe('INVALID_CONFIG');
    return (err as TributaryError).detail.split('\n');
  }
  throw new Error('expected the scenario to be refused');
}

describe('scenario files', () => {
  it('reads a full scenario, defaults filled in and phases and actions in time order', () => {
    const s = parseScenario(
      `
name: full
seed: 7
topic: { name: sim.t, partitions: 6 }
devices: 40
duration: 20
workers: 2
models:
  - { kind: gps, share: 0.25, ratePerSecond: 4, jitter: 0.5, payloadBytes: 10 }
  - { kind: status, share: 0.75 }
phases: [{ at: 10, rateFactor: 3 }, { at: 0, rateFactor: 1 }]
actions: [{ at: 9, do: restart-node }, { at: 5, do: kill-node }, { at: 12, do: slow-consumer }]
`,
      'full.yaml',
    );
    expect(s).toMatchObject({ name: 'full', seed: 7, node: { start: true }, fleet: false, topic: { name: 'sim.t', partitions: 6 }, devices: 40, duration: 20, workers: 2, verify: true });
    expect(s.models[1]).toEqual({ kind: 'status', share: 0.75, ratePerSecond: 1, jitter: 0.2, payloadBytes: 0 });
    expect(s.phases.map((p) => p.at)).toEqual([0, 10]);
    expect(s.actions.map((a) => a.do)).toEqual(['kill-node', 'restart-node', 'slow-consumer']);
    expect(s.actions[2].delayMs).toBe(50);
  });

  it('takes its name from the file when it has none', () => {
    expect(parseScenario('devices: 3', 'dir/my-run.yaml').name).toBe('my-run');
  });

  it('loads every shipped scenario', () => {
    const files = readdirSync(SCENARIOS).filter((f) => f.endsWith('.yaml'));
    expect(files).toEqual(expect.arrayContaining(['steady.yaml', 'ramp.yaml', 'burst.yaml', 'reconnect-storm.yaml', 'node-kill.yaml', 'slow-consumer.yaml', 'smoke.yaml']));
    for (const f of files) expect(loadScenario(join(SCENARIOS, f)).devices).toBeGreaterThan(0);
  });

  it.each([
    ['an unknown key', 'devics: 10', ["unknown setting 'devics' (known: name, seed, node, fleet, topic, devices, duration, workers, connectRatePerSecond, models, phases, actions, verify, drainTimeout)"]],
    ['an unknown nested key', 'topic: { name: a, partition: 3 }', ["unknown setting 'topic.partition' (known: name, partitions)"]],
    ['a count that is not an integer', 'devices: 2.5', ['devices must be an integer from 1 to 100000, got 2.5']],
    ['a count out of range', 'workers: 0', ['workers must be an integer from 1 to 64, got 0']],
    ['text for a number', 'duration: soon', ['duration must be a number from 1 to 86400, got "soon"']],
    ['a bad boolean', 'verify: yes please', ['verify must be true or false, got "yes please"']],
    ['a bad topic name', 'topic: { name: "a b" }', ['topic.name must be 1-249 of [A-Za-z0-9._-], got "a b"']],
    ['an unknown model', 'models: [{ kind: humidity }]', ['models[0].kind must be one of temperature, vibration, gps, status, got "humidity"']],
    ['jitter above 1', 'models: [{ kind: gps, jitter: 1.5 }]', ['models[0].jitter must be a number from 0 to 1, got 1.5']],
    ['shares not adding up', 'models: [{ kind: gps, share: 0.5 }, { kind: status, share: 0.4 }]', ['models: shares must add up to 1, they add up to 0.9']],
    ['an unknown action', 'actions: [{ at: 1, do: reboot }]', ['actions[0].do must be one of kill-node, restart-node, drop-connections, slow-consumer, resume-consumer, got "reboot"']],
    ['an action after the end', 'duration: 5\nactions: [{ at: 9, do: drop-connections }]', ['actions: drop-connections at 9 s is after the end of the load (duration 5 s)']],
    ['a kill of a node it did not start', 'node: { url: "ws://127.0.0.1:7400/v1" }\nactions: [{ at: 1, do: kill-node }]', ['actions: kill-node needs node.start: true (the simulator can only kill a node it started)']],
    ['both url and start', 'node: { start: true, url: "ws://h:1/v1" }', ['node: give either start: true or url, not both']],
    ['a bad url', 'node: { url: "http://h" }', ['node.url must be a ws:// or wss:// URL, got "http://h"']],
    ['delayMs on another action', 'actions: [{ at: 1, do: kill-node, delayMs: 5 }]', ['actions[0].delayMs applies to slow-consumer only']],
    ['a phase without a factor', 'phases: [{ at: 1 }]', ['phases[0].rateFactor must be a number from 0 to 1000, got undefined']],
    ['a ramp that is not a boolean', 'phases: [{ at: 1, rateFactor: 2, ramp: yes please }]', ['phases[0].ramp must be true or false, got "yes please"']],
  ])('refuses %s in one line', (_what, text, expected) => {
    expect(mistakes(text)).toEqual(expected);
  });

  it('names every mistake of a file at once', () => {
    expect(mistakes('devices: 0\nworkers: 99\nbogus: 1')).toEqual(["unknown setting 'bogus' (known: name, seed, node, fleet, topic, devices, duration, workers, connectRatePerSecond, models, phases, actions, verify, drainTimeout)", 'devices must be an integer from 1 to 100000, got 0', 'workers must be an integer from 1 to 64, got 99']);
  });

  it('checks command-line overrides by the same rules', () => {
    expect(parseScenario('devices: 10', 's.yaml', { devices: 20, duration: 3 })).toMatchObject({ devices: 20, duration: 3 });
    expect(mistakes('devices: 10', { devices: 'many' })).toEqual(['devices must be an integer from 1 to 100000, got "many"']);
    expect(mistakes('actions: [{ at: 1, do: kill-node }]', { node: { url: 'ws://127.0.0.1:1/v1' } })).toEqual(['actions: kill-node needs node.start: true (the simulator can only kill a node it started)']);
  });

  it('refuses text that is not YAML, or not a map', () => {
    // One line per mistake, where it is, and the reason: not the parser's "at line 1, column 9:".
    expect(mistakes('a: [1, 2')).toEqual(['bad.yaml:1:9: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]']);
    expect(mistakes('- 1\n- 2')).toEqual(['a scenario must be a map of settings']);
  });
});

describe('dealing devices and rates', () => {
  it('gives each model its share of the devices', () => {
    const s = parseScenario('devices: 100\nmodels: [{ kind: gps, share: 0.3 }, { kind: status, share: 0.7 }]', 's.yaml');
    const kinds = Array.from({ length: 100 }, (_, i) => modelFor(s, i).kind);
    expect(kinds.filter((k) => k === 'gps')).toHaveLength(30);
    expect(kinds.filter((k) => k === 'status')).toHaveLength(70);
  });

  it('applies the latest phase that has begun', () => {
    const phases = [{ at: 0, rateFactor: 0.5, ramp: false }, { at: 10, rateFactor: 4, ramp: false }];
    expect(rateFactorAt(phases, 0)).toBe(0.5);
    expect(rateFactorAt(phases, 9.9)).toBe(0.5);
    expect(rateFactorAt(phases, 10)).toBe(4);
    expect(rateFactorAt([], 5)).toBe(1);
  });

  it('climbs linearly to a ramping phase from the one before it, or from 1 at 0 s', () => {
    const s = parseScenario('phases: [{ at: 10, rateFactor: 0.5 }, { at: 30, rateFactor: 4.5, ramp: true }, { at: 40, rateFactor: 1 }]', 'ramp.yaml');
    expect(s.phases.map((p) => p.ramp)).toEqual([false, true, false]);
    expect(rateFactorAt(s.phases, 5)).toBe(1);
    expect(rateFactorAt(s.phases, 10)).toBe(0.5);
    expect(rateFactorAt(s.phases, 15)).toBe(1.5);
    expect(rateFactorAt(s.phases, 25)).toBe(3.5);
    expect(rateFactorAt(s.phases, 30)).toBe(4.5);
    expect(rateFactorAt(s.phases, 39)).toBe(4.5);
    expect(rateFactorAt(s.phases, 40)).toBe(1);
    const fromStart = parseScenario('phases: [{ at: 20, rateFactor: 3, ramp: true }]', 'ramp.yaml');
    expect(rateFactorAt(fromStart.phases, 0)).toBe(1);
    expect(rateFactorAt(fromStart.phases, 10)).toBe(2);
    expect(rateFactorAt(fromStart.phases, 25)).toBe(3);
  });
});

describe('the open-files limit', () => {
  const fleet = parseScenario('devices: 10000\nworkers: 2\nnode: { start: true }', 'fleet.yaml');

  it('refuses a run past it, saying what each process needs and how to raise it', () => {
    let err: unknown;
    try {
      checkOpenFiles(fleet, { soft: 8192, hard: 8192 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TributaryError);
    expect((err as TributaryError).errorName).toBe('INVALID_CONFIG');
    expect((err as TributaryError).detail).toBe(
      'the open-files limit is 8192, and 10000 devices need about 5064 in each of the 2 worker processes and 10320 in the local node (a socket per device at each end): raise the hard limit (ulimit -Hn as root, LimitNOFILE in a systemd unit, /etc/security/limits.conf), or use fewer devices or more workers',
    );
  });

  it('lets a run through that fits, counts only the workers when attached to a node, and checks nothing when the limit is unknown', () => {
    expect(() => checkOpenFiles(fleet, { soft: 1024, hard: 10320 })).not.toThrow();
    expect(() => checkOpenFiles(fleet, { soft: 10319, hard: 10319 })).toThrow(/10320 in the local node/);
    const attached = parseScenario('devices: 10000\nworkers: 4\nnode: { url: "ws://127.0.0.1:7400/v1" }', 'a.yaml');
    expect(() => checkOpenFiles(attached, { soft: 2564, hard: 2564 })).not.toThrow();
    expect(() => checkOpenFiles(attached, { soft: 2563, hard: 2563 })).toThrow(/2564 in each of the 4 worker processes \(/);
    expect(() => checkOpenFiles(fleet, null)).not.toThrow();
  });
});
