// A simulator scenario: a YAML file read into `Scenario`, every key checked. A mistake is one
// line naming the key (all mistakes of a file at once), like node/config.ts, so a scenario
// fails before any device connects. The file's shape, with the defaults:
//
//   name: steady                 # shown in the report (default: the file name)
//   seed: 1                      # drives every device's models; same seed, same readings
//   node:
//     start: true                # start a local node (dev mode) in a temp data folder, or
//     # url: ws://127.0.0.1:7400/v1   # attach to a running node (kill/restart need start)
//   fleet: false                 # true: the local node admits fleet credentials only; every
//                                # device gets its own identity and credential (produce on the topic)
//   topic: { name: sim.events, partitions: 3 }   # created when missing
//   devices: 100                 # virtual devices, each its own client and WebSocket
//   duration: 30                 # seconds of load
//   workers: 1                   # processes the devices are spread over
//   connectRatePerSecond: 500    # handshakes started per second, all workers together
//   models:                      # shares add up to 1; a device's model is fixed by its index
//     - { kind: temperature, share: 1, ratePerSecond: 1, jitter: 0.2, payloadBytes: 0 }
//   phases:                      # rate multiplier from `at` seconds on (ramp, burst)
//     - { at: 0, rateFactor: 1 }
//     - { at: 30, rateFactor: 4, ramp: true }   # ramp: climbs linearly to 4 by 30 s from
//                                              # the previous phase (or 1 at 0 s)
//   actions:                     # what is done to the node or the consumer, at `at` seconds
//     - { at: 10, do: kill-node }          # SIGKILL (needs node.start)
//     - { at: 12, do: restart-node }       # same data folder and port
//     - { at: 15, do: drop-connections }   # every device's socket closes at once: reconnect storm
//     - { at: 18, do: slow-consumer, delayMs: 50 }   # the verifier waits delayMs per batch
//     - { at: 22, do: resume-consumer }
//   verify: true                 # consume everything and check loss, duplicates, order per device
//   drainTimeout: 60             # seconds the verifier may take to read every acked event after the load

import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { parseYamlText } from '../protocol/yaml-text.js';
import { Errors, TributaryError } from '../protocol/errors.js';

export const MODEL_KINDS = ['temperature', 'vibration', 'gps', 'status'] as const;
export type ModelKind = (typeof MODEL_KINDS)[number];

export const ACTION_KINDS = ['kill-node', 'restart-node', 'drop-connections', 'slow-consumer', 'resume-consumer'] as const;
export type ActionKind = (typeof ACTION_KINDS)[number];

export interface ModelSpec {
  kind: ModelKind;
  /** Fraction of the devices running this model. */
  share: number;
  /** Events per second per device, before phases. */
  ratePerSecond: number;
  /** 0..1: each gap between two events is the mean gap times 1 ± jitter. */
  jitter: number;
  /** Padding added to each event's reading, bytes (0: the reading alone). */
  payloadBytes: number;
}

export interface Phase {
  at: number;
  rateFactor: number;
  /** Reached linearly from the previous phase (from 1 at 0 s if none) instead of at once. */
  ramp: boolean;
}

export interface Action {
  at: number;
  do: ActionKind;
  /** slow-consumer only: wait per batch read. */
  delayMs?: number;
}

export interface Scenario {
  name: string;
  seed: number;
  node: { start: boolean; url?: string };
  fleet: boolean;
  topic: { name: string; partitions: number };
  devices: number;
  duration: number;
  workers: number;
  connectRatePerSecond: number;
  models: ModelSpec[];
  phases: Phase[];
  actions: Action[];
  verify: boolean;
  drainTimeout: number;
}

/** Limits on what one scenario may ask for; past them it is a mistake, not a load test. */
const DEVICES_MAX = 100_000;
const WORKERS_MAX = 64;
const DURATION_MAX_SECONDS = 24 * 3600;
const RATE_MAX_PER_SECOND = 10_000;
const PAYLOAD_BYTES_MAX = 1024 * 1024;

function defaults(name: string): Scenario {
  return {
    name,
    seed: 1,
    node: { start: true },
    fleet: false,
    topic: { name: 'sim.events', partitions: 3 },
    devices: 100,
    duration: 30,
    workers: 1,
    connectRatePerSecond: 500,
    models: [{ kind: 'temperature', share: 1, ratePerSecond: 1, jitter: 0.2, payloadBytes: 0 }],
    phases: [],
    actions: [],
    verify: true,
    drainTimeout: 60,
  };
}

/** Collects one line per mistake; `check` runs every rule so a file's mistakes come out together. */
class Problems {
  readonly lines: string[] = [];
  add(line: string): void {
    this.lines.push(line);
  }
}

type Raw = Record<string, unknown>;

function isMap(v: unknown): v is Raw {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function num(p: Problems, key: string, v: unknown, min: number, max: number, integer: boolean): number | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    p.add(`${key} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return undefined;
  }
  return v;
}

function bool(p: Problems, key: string, v: unknown): boolean | undefined {
  if (typeof v !== 'boolean') {
    p.add(`${key} must be true or false, got ${JSON.stringify(v)}`);
    return undefined;
  }
  return v;
}

function known(p: Problems, where: string, raw: Raw, keys: readonly string[]): void {
  for (const key of Object.keys(raw)) {
    if (!keys.includes(key)) p.add(`unknown setting '${where}${key}' (known: ${keys.join(', ')})`);
  }
}

/** Validates a parsed scenario; throws one INVALID_CONFIG with a line per mistake. */
export function checkScenario(raw: unknown, fallbackName = 'scenario'): Scenario {
  const p = new Problems();
  const out = defaults(fallbackName);
  if (!isMap(raw)) throw new TributaryError(Errors.INVALID_CONFIG, 'a scenario must be a map of settings');
  known(p, '', raw, ['name', 'seed', 'node', 'fleet', 'topic', 'devices', 'duration', 'workers', 'connectRatePerSecond', 'models', 'phases', 'actions', 'verify', 'drainTimeout']);
  if (raw.name !== undefined) {
    if (typeof raw.name !== 'string' || raw.name.trim() === '') p.add(`name must be a non-empty string, got ${JSON.stringify(raw.name)}`);
    else out.name = raw.name;
  }
  const setNum = (key: 'seed' | 'devices' | 'duration' | 'workers' | 'connectRatePerSecond' | 'drainTimeout', min: number, max: number, integer: boolean) => {
    if (raw[key] === undefined) return;
    const v = num(p, key, raw[key], min, max, integer);
    if (v !== undefined) out[key] = v;
  };
  setNum('seed', 0, 2 ** 32 - 1, true);
  setNum('devices', 1, DEVICES_MAX, true);
  setNum('duration', 1, DURATION_MAX_SECONDS, false);
  setNum('workers', 1, WORKERS_MAX, true);
  setNum('connectRatePerSecond', 1, 1_000_000, false);
  setNum('drainTimeout', 1, 3600, false);
  for (const key of ['fleet', 'verify'] as const) {
    if (raw[key] !== undefined) {
      const v = bool(p, key, raw[key]);
      if (v !== undefined) out[key] = v;
    }
  }
  if (raw.node !== undefined) out.node = checkNode(p, raw.node);
  if (raw.topic !== undefined) out.topic = checkTopic(p, raw.topic, out.topic);
  if (raw.models !== undefined) out.models = checkModels(p, raw.models);
  if (raw.phases !== undefined) out.phases = checkList(p, 'phases', raw.phases, (item, key) => checkPhase(p, item, key));
  if (raw.actions !== undefined) out.actions = checkList(p, 'actions', raw.actions, (item, key) => checkAction(p, item, key));
  if (out.node.start === false && out.fleet) p.add('fleet: true needs node.start: true (the simulator makes the fleet key the node trusts)');
  for (const a of out.actions) {
    if ((a.do === 'kill-node' || a.do === 'restart-node') && !out.node.start) p.add(`actions: ${a.do} needs node.start: true (the simulator can only kill a node it started)`);
    if (a.at > out.duration) p.add(`actions: ${a.do} at ${a.at} s is after the end of the load (duration ${out.duration} s)`);
    if ((a.do === 'slow-consumer' || a.do === 'resume-consumer') && !out.verify) p.add(`actions: ${a.do} needs verify: true (the verifier is the consumer)`);
  }
  if (p.lines.length > 0) throw new TributaryError(Errors.INVALID_CONFIG, p.lines.join('\n'));
  out.phases.sort((a, b) => a.at - b.at);
  out.actions.sort((a, b) => a.at - b.at);
  return out;
}

function checkNode(p: Problems, raw: unknown): Scenario['node'] {
  if (!isMap(raw)) {
    p.add('node must be a map: { start: true } or { url: ws://... }');
    return { start: true };
  }
  known(p, 'node.', raw, ['start', 'url']);
  const start = raw.start === undefined ? undefined : bool(p, 'node.start', raw.start);
  let url: string | undefined;
  if (raw.url !== undefined) {
    if (typeof raw.url !== 'string' || !/^wss?:\/\/\S+$/.test(raw.url)) p.add(`node.url must be a ws:// or wss:// URL, got ${JSON.stringify(raw.url)}`);
    else url = raw.url;
  }
  if (start === true && url !== undefined) p.add('node: give either start: true or url, not both');
  if (start !== true && url === undefined && raw.start !== undefined) p.add('node: start: false needs a url');
  return url !== undefined && start !== true ? { start: false, url } : { start: true };
}

function checkTopic(p: Problems, raw: unknown, base: Scenario['topic']): Scenario['topic'] {
  if (!isMap(raw)) {
    p.add('topic must be a map: { name: sim.events, partitions: 3 }');
    return base;
  }
  known(p, 'topic.', raw, ['name', 'partitions']);
  const out = { ...base };
  if (raw.name !== undefined) {
    if (typeof raw.name !== 'string' || !/^[A-Za-z0-9._-]{1,249}$/.test(raw.name)) p.add(`topic.name must be 1-249 of [A-Za-z0-9._-], got ${JSON.stringify(raw.name)}`);
    else out.name = raw.name;
  }
  if (raw.partitions !== undefined) {
    const v = num(p, 'topic.partitions', raw.partitions, 1, 1024, true);
    if (v !== undefined) out.partitions = v;
  }
  return out;
}

function checkList<T>(p: Problems, key: string, raw: unknown, each: (item: unknown, key: string) => T | undefined): T[] {
  if (!Array.isArray(raw)) {
    p.add(`${key} must be a list`);
    return [];
  }
  const out: T[] = [];
  raw.forEach((item, i) => {
    const v = each(item, `${key}[${i}]`);
    if (v !== undefined) out.push(v);
  });
  return out;
}

function checkModels(p: Problems, raw: unknown): ModelSpec[] {
  const models = checkList(p, 'models', raw, (item, key) => checkModel(p, item, key));
  if (Array.isArray(raw) && raw.length === 0) p.add('models must name at least one model');
  if (models.length > 0 && models.length === (raw as unknown[]).length) {
    const total = models.reduce((sum, m) => sum + m.share, 0);
    if (Math.abs(total - 1) > 1e-6) p.add(`models: shares must add up to 1, they add up to ${Number(total.toFixed(6))}`);
  }
  return models;
}

function checkModel(p: Problems, raw: unknown, key: string): ModelSpec | undefined {
  if (!isMap(raw)) {
    p.add(`${key} must be a map: { kind, share, ratePerSecond, jitter, payloadBytes }`);
    return undefined;
  }
  known(p, `${key}.`, raw, ['kind', 'share', 'ratePerSecond', 'jitter', 'payloadBytes']);
  const before = p.lines.length;
  if (!MODEL_KINDS.includes(raw.kind as ModelKind)) p.add(`${key}.kind must be one of ${MODEL_KINDS.join(', ')}, got ${JSON.stringify(raw.kind)}`);
  const share = raw.share === undefined ? 1 : num(p, `${key}.share`, raw.share, 0, 1, false);
  const ratePerSecond = raw.ratePerSecond === undefined ? 1 : num(p, `${key}.ratePerSecond`, raw.ratePerSecond, 0.001, RATE_MAX_PER_SECOND, false);
  const jitter = raw.jitter === undefined ? 0.2 : num(p, `${key}.jitter`, raw.jitter, 0, 1, false);
  const payloadBytes = raw.payloadBytes === undefined ? 0 : num(p, `${key}.payloadBytes`, raw.payloadBytes, 0, PAYLOAD_BYTES_MAX, true);
  if (p.lines.length > before) return undefined;
  return { kind: raw.kind as ModelKind, share: share!, ratePerSecond: ratePerSecond!, jitter: jitter!, payloadBytes: payloadBytes! };
}

function checkPhase(p: Problems, raw: unknown, key: string): Phase | undefined {
  if (!isMap(raw)) {
    p.add(`${key} must be a map: { at, rateFactor, ramp }`);
    return undefined;
  }
  known(p, `${key}.`, raw, ['at', 'rateFactor', 'ramp']);
  const at = num(p, `${key}.at`, raw.at, 0, DURATION_MAX_SECONDS, false);
  const rateFactor = num(p, `${key}.rateFactor`, raw.rateFactor, 0, 1000, false);
  if (raw.ramp !== undefined && typeof raw.ramp !== 'boolean') p.add(`${key}.ramp must be true or false, got ${JSON.stringify(raw.ramp)}`);
  return at === undefined || rateFactor === undefined ? undefined : { at, rateFactor, ramp: raw.ramp === true };
}

function checkAction(p: Problems, raw: unknown, key: string): Action | undefined {
  if (!isMap(raw)) {
    p.add(`${key} must be a map: { at, do }`);
    return undefined;
  }
  known(p, `${key}.`, raw, ['at', 'do', 'delayMs']);
  const at = num(p, `${key}.at`, raw.at, 0, DURATION_MAX_SECONDS, false);
  const what = raw.do;
  if (!ACTION_KINDS.includes(what as ActionKind)) {
    p.add(`${key}.do must be one of ${ACTION_KINDS.join(', ')}, got ${JSON.stringify(what)}`);
    return undefined;
  }
  let delayMs: number | undefined;
  if (what === 'slow-consumer') delayMs = raw.delayMs === undefined ? 50 : num(p, `${key}.delayMs`, raw.delayMs, 0, 60_000, true);
  else if (raw.delayMs !== undefined) p.add(`${key}.delayMs applies to slow-consumer only`);
  if (at === undefined) return undefined;
  return delayMs === undefined ? { at, do: what as ActionKind } : { at, do: what as ActionKind, delayMs };
}

/**
 * Parses scenario text (YAML); `source` names it in messages. `overrides` replace top-level
 * settings before validation (the command's --devices, --duration, --node-url), so they are
 * checked by the same rules.
 */
export function parseScenario(text: string, source: string, overrides: Record<string, unknown> = {}): Scenario {
  let raw: unknown = parseYamlText(text, source);
  if (isMap(raw)) raw = { ...raw, ...overrides };
  return checkScenario(raw, basename(source, extname(source)));
}

export function loadScenario(path: string, overrides: Record<string, unknown> = {}): Scenario {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new TributaryError(Errors.INVALID_CONFIG, `cannot read scenario ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseScenario(text, path, overrides);
}

/** Which model device `index` runs: devices are dealt to models by share, in index order. */
export function modelFor(scenario: Scenario, index: number): ModelSpec {
  const position = (index + 0.5) / scenario.devices;
  let cumulative = 0;
  for (const m of scenario.models) {
    cumulative += m.share;
    if (position < cumulative) return m;
  }
  return scenario.models[scenario.models.length - 1];
}

/**
 * The rate multiplier in force at `seconds` into the load: the latest phase begun, or on
 * the way to the next one when that one ramps. `phases` are in time order.
 */
export function rateFactorAt(phases: readonly Phase[], seconds: number): number {
  let from = { at: 0, rateFactor: 1 };
  for (const ph of phases) {
    if (ph.at <= seconds) {
      from = ph;
      continue;
    }
    if (ph.ramp) return from.rateFactor + ((ph.rateFactor - from.rateFactor) * (seconds - from.at)) / (ph.at - from.at);
    break;
  }
  return from.rateFactor;
}
