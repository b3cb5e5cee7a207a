// The orchestrator: starts (or attaches to) the node, creates the topic, starts the verifier,
// forks the workers that run the devices, plays the scenario's phases and actions on a clock,
// samples everything once a second, and at the end hands every acknowledged sequence to the
// verifier and builds the RunResult the reports are made from.

import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, Errors, TributaryError, type ConnectOptions } from '../devices/index.js';
import { openFilesLimit, type OpenFilesLimit } from './open-files.js';
import { LatencyHistogram } from './histogram.js';
import { LocalNode } from './local-node.js';
import { readNodeLimits } from './node-limits.js';
import { rateFactorAt, type Action, type Scenario } from './scenario.js';
import type { Percentiles, RunResult, Sample, Verdict } from './types.js';
import { Verifier } from './verifier.js';
import type { FromWorker, ToWorker, WorkerStats } from './worker.js';

const WORKER = join(dirname(fileURLToPath(import.meta.url)), 'worker.js');
const TICK_MS = 100;
/** Longest the workers may take to stop: each device waits at most 30 s for its last sends. */
const WORKER_STOP_TIMEOUT_MS = 60_000;

export interface RunOptions {
  /** Progress lines go here (stderr); a TTY gets one live line, anything else a line every 5 s. */
  progress?: NodeJS.WriteStream | null;
}

interface WorkerHandle {
  proc: ChildProcess;
  latest: WorkerStats | null;
  done: Promise<[string, [number, number][]][]>;
}

/** Counts gathered from the workers between two samples. */
class Window {
  sent = 0;
  acked = 0;
  failed = 0;
  errors = 0;
  readonly ackLatency = new LatencyHistogram();

  add(s: WorkerStats): void {
    this.sent += s.sent;
    this.acked += s.acked;
    this.failed += s.failed;
    for (const n of Object.values(s.errors)) this.errors += n;
    this.ackLatency.merge(s.ackLatency);
  }

  reset(): void {
    this.sent = 0;
    this.acked = 0;
    this.failed = 0;
    this.errors = 0;
    this.ackLatency.reset();
  }
}

/** Scenario actions after which some devices are not connected: each is an outage. */
const OUTAGE_ACTIONS: ReadonlySet<Action['do']> = new Set(['kill-node', 'drop-connections']);

/**
 * The fleet at full load, apart from the rest of the run: from the first sample that counts
 * every device connected to the first outage (a node killed, connections dropped), the first
 * sample short of a device, or the end of the load, whichever comes first. It never reopens:
 * after an outage, devices send what they held back through it, and those acks (and reads)
 * carry the outage's latency however connected the fleet is again.
 */
export class FullFleetWindow {
  /** When the window opened (null: never); it counts from the sample after that one. */
  fromSeconds: number | null = null;
  /** The last sample counted. */
  toSeconds = 0;
  readonly ackLatency = new LatencyHistogram();
  private ended = false;

  constructor(private readonly devices: number) {}

  /**
   * A sample was taken, `ackLatency` the send-to-ack latency since the one before. Returns
   * 'opened' or 'ended' when the window did so at this sample, else null.
   */
  sampled(sample: Sample, ackLatency: LatencyHistogram): 'opened' | 'ended' | null {
    if (this.ended) return null;
    const everyDevice = sample.devicesConnected >= this.devices;
    if (this.fromSeconds === null) {
      if (!everyDevice) return null;
      this.fromSeconds = this.toSeconds = sample.at;
      return 'opened';
    }
    if (!everyDevice) return this.end();
    this.ackLatency.merge(ackLatency);
    this.toSeconds = sample.at;
    return null;
  }

  /** Scenario action `what` was done: an outage ends the window. */
  acted(what: Action['do']): 'ended' | null {
    return OUTAGE_ACTIONS.has(what) ? this.end() : null;
  }

  /** The load stopped: devices disconnect from here on. */
  loadStopped(): 'ended' | null {
    return this.end();
  }

  result(latency: Percentiles): RunResult['totals']['allConnected'] {
    if (this.fromSeconds === null) return null;
    return { fromSeconds: this.fromSeconds, toSeconds: this.toSeconds, latency, ackLatency: this.ackLatency.percentiles() };
  }

  private end(): 'ended' | null {
    if (this.ended) return null;
    this.ended = true;
    return 'ended';
  }
}

/** Files a worker needs besides its devices' sockets: modules, pipes, the IPC channel. */
const WORKER_FILES_SPARE = 64;
/** A local node's files besides the devices' sockets: segments and indexes, the run's own connections. */
const NODE_FILES_SPARE = 320;

/**
 * Refuses a run the open-files limit cannot carry (the workers and the local node inherit
 * it; Node.js raises its soft limit to the hard one at start, so the hard one is what
 * counts). Past it, devices would fail to connect one by one, with EMFILE deep in a worker
 * or a node that drops new connections, and the report would blame the node. Null: unknown.
 */
export function checkOpenFiles(scenario: Scenario, limit: OpenFilesLimit | null = openFilesLimit()): void {
  if (limit === null) return;
  const perWorker = Math.ceil(scenario.devices / scenario.workers) + WORKER_FILES_SPARE;
  const node = scenario.node.start ? scenario.devices + NODE_FILES_SPARE : 0;
  const needed = Math.max(perWorker, node);
  const usable = Math.max(limit.soft, limit.hard);
  if (usable >= needed) return;
  const who = [`${perWorker} in each of the ${scenario.workers} worker processes`];
  if (node > 0) who.push(`${node} in the local node`);
  throw new TributaryError(
    Errors.INVALID_CONFIG,
    `the open-files limit is ${usable}, and ${scenario.devices} devices need about ${who.join(' and ')} (a socket per device at each end): raise the hard limit (ulimit -Hn as root, LimitNOFILE in a systemd unit, /etc/security/limits.conf), or use fewer devices or more workers`,
  );
}

export async function runScenario(scenario: Scenario, options: RunOptions = {}): Promise<RunResult> {
  checkOpenFiles(scenario);
  const startedAt = new Date();
  const node = scenario.node.start ? LocalNode.create(scenario.fleet, scenario.devices) : null;
  const workers: WorkerHandle[] = [];
  let verifier: Verifier | null = null;
  // Ctrl-C (or a service manager's SIGTERM) must not leave a node or workers running behind us.
  const interrupted = (signal: NodeJS.Signals) => {
    for (const w of workers) w.proc.kill('SIGKILL');
    void (node ? node.kill().then(() => node.stopAndRemove()) : Promise.resolve()).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    if (node) await node.start();
    const url = node ? node.url : scenario.node.url!;
    const keys = node?.fleetKeys ?? null;
    const auth: ConnectOptions = keys ? { identity: keys.admin.identity, credential: keys.admin.credential, fleetPublicKey: keys.fleet.publicKey } : {};
    await ensureTopic(url, scenario, auth);
    if (scenario.verify) {
      verifier = new Verifier({ url, topic: scenario.topic.name, auth });
      await verifier.start();
    }
    return await playScenario({ scenario, node, url, verifier, workers, startedAt, progress: options.progress ?? null, fleet: keys?.fleet ?? null });
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGKILL');
    await node?.stopAndRemove();
  }
}

async function ensureTopic(url: string, scenario: Scenario, auth: ConnectOptions): Promise<void> {
  const connection = await connect(url, { ...auth, connectTimeoutMs: 15_000 });
  try {
    await connection.admin().createTopic(scenario.topic.name, { partitions: scenario.topic.partitions });
  } catch (err) {
    // A node we attach to may have the topic from an earlier run: the verifier's fresh group
    // then reads the earlier events too, which it counts as unacknowledged, not as loss.
    if (!(err instanceof TributaryError && err.is(Errors.TOPIC_ALREADY_EXISTS))) throw err;
  } finally {
    await connection.close();
  }
}

/**
 * Young-generation size of a worker, unless the simulator was started with its own
 * `--max-semi-space-size` (workers inherit its Node.js flags). A worker running thousands of
 * devices allocates per event and keeps every connection's state in the old generation;
 * with V8's default (16 MiB at most) each of the two workers of the 10,000-device scenario
 * spent 3.4 s of 40 in scavenges (`--trace-gc`), with 64 MiB 1.5 s. V8 grows the young
 * generation only under such load.
 */
export const WORKER_SEMI_SPACE_MIB = 64;

/** The Node.js flags a worker runs with: the simulator's own, plus the young-generation size. */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  if (execArgv.some((f) => f.startsWith('--max-semi-space-size'))) return [...execArgv];
  return [...execArgv, `--max-semi-space-size=${WORKER_SEMI_SPACE_MIB}`];
}

function forkWorker(init: Extract<ToWorker, { type: 'init' }>): WorkerHandle {
  const proc = fork(WORKER, [], {
    env: { ...process.env, TRIBUTARY_SIM_WORKER: '1' },
    execArgv: workerExecArgv(process.execArgv),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  const handle: WorkerHandle = { proc, latest: null, done: Promise.resolve([]) };
  handle.done = new Promise((resolve, reject) => {
    proc.on('message', (m: FromWorker) => {
      if (m.type === 'done') resolve(m.acked);
      else if (m.type === 'fatal') reject(new Error(`worker ${proc.pid}: ${m.message}`));
    });
    proc.once('exit', (code) => reject(new Error(`worker ${proc.pid} exited with ${code} before it reported`)));
  });
  // Swallowed here and awaited later: an early exit must not be an unhandled rejection.
  handle.done.catch(() => undefined);
  proc.send(init);
  return handle;
}

interface Play {
  scenario: Scenario;
  node: LocalNode | null;
  url: string;
  verifier: Verifier | null;
  workers: WorkerHandle[];
  startedAt: Date;
  progress: NodeJS.WriteStream | null;
  fleet: { publicKey: Buffer; secretKey: Buffer } | null;
}

async function playScenario(play: Play): Promise<RunResult> {
  const { scenario, node, verifier, workers } = play;
  const window = new Window();
  const errorsByName: Record<string, number> = {};
  const totals = { sent: 0, acked: 0, failed: 0, read: 0 };
  const totalAckLatency = new LatencyHistogram();
  const fullFleet = new FullFleetWindow(scenario.devices);
  // The verifier counts produce-to-consume latency apart over the same window.
  const windowed = (change: 'opened' | 'ended' | null) => {
    if (change === 'opened') verifier?.startAllConnected();
    if (change === 'ended') verifier?.endAllConnected();
  };
  const samples: Sample[] = [];
  const actions: { at: number; what: string }[] = [];
  const t0 = performance.now();
  const t0EpochMs = Date.now();
  const elapsed = () => (performance.now() - t0) / 1000;

  // Devices are dealt to workers in contiguous ranges; each gets its share of the handshake rate.
  const count = Math.min(scenario.workers, scenario.devices);
  for (let w = 0; w < count; w++) {
    const from = Math.floor((w * scenario.devices) / count);
    const to = Math.floor(((w + 1) * scenario.devices) / count);
    const handle = forkWorker({ type: 'init', url: play.url, scenario, from, to, connectRatePerSecond: scenario.connectRatePerSecond / count, fleet: play.fleet ? { publicKey: play.fleet.publicKey.toString('hex'), secretKey: play.fleet.secretKey.toString('hex') } : undefined });
    handle.proc.on('message', (m: FromWorker) => {
      if (m.type !== 'stats') return;
      handle.latest = m;
      window.add(m);
      for (const [name, n] of Object.entries(m.errors)) errorsByName[name] = (errorsByName[name] ?? 0) + n;
    });
    workers.push(handle);
  }
  const connected = () => workers.reduce((sum, w) => sum + (w.latest?.connected ?? 0), 0);
  // From the start of the load (the first handshakes) to the last device's first connect.
  const connectSeconds = (): number | null => {
    const times = workers.map((w) => w.latest?.allConnectedAtMs ?? null);
    if (times.some((t) => t === null)) return null;
    return Math.round((Math.max(...(times as number[])) - t0EpochMs) / 10) / 100;
  };

  const takeSample = (at: number) => {
    const read = verifier ? verifier.sample() : { read: 0, latency: emptyPercentiles() };
    const resources = node ? node.sampleResources() : { rssMiB: null, cpuPercent: null };
    const sample: Sample = {
      at: Math.round(at * 10) / 10,
      devicesConnected: connected(),
      sent: window.sent,
      acked: window.acked,
      failed: window.failed,
      read: read.read,
      latency: read.latency,
      ackLatency: window.ackLatency.percentiles(),
      nodeRssMiB: resources.rssMiB,
      nodeCpuPercent: resources.cpuPercent,
      errors: window.errors,
    };
    totals.sent += window.sent;
    totals.acked += window.acked;
    totals.failed += window.failed;
    totals.read += read.read;
    totalAckLatency.merge(window.ackLatency);
    windowed(fullFleet.sampled(sample, window.ackLatency));
    window.reset();
    samples.push(sample);
    progress.update(sample);
  };
  const progress = new Progress(play.progress, scenario);

  // The load: phases and actions on a 100 ms clock, a sample every second.
  let factor = 1;
  const pendingActions = [...scenario.actions];
  let nextSampleAt = 1;
  while (elapsed() < scenario.duration) {
    await sleep(TICK_MS);
    const now = elapsed();
    const f = rateFactorAt(scenario.phases, now);
    if (f !== factor) {
      factor = f;
      for (const w of workers) w.proc.send({ type: 'rate', factor } satisfies ToWorker);
    }
    while (pendingActions.length > 0 && pendingActions[0].at <= now) {
      const action = pendingActions.shift()!;
      // An outage ends the window before it begins.
      windowed(fullFleet.acted(action.do));
      actions.push({ at: Math.round(now * 10) / 10, what: await perform(action, play) });
    }
    if (now >= nextSampleAt) {
      takeSample(now);
      nextSampleAt += 1;
    }
  }

  windowed(fullFleet.loadStopped());

  // A node the scenario left down cannot answer the last sends or the verifier: bring it back.
  if (node && !node.isRunning) {
    await node.start();
    actions.push({ at: Math.round(elapsed() * 10) / 10, what: 'restart-node (left down by the scenario; needed to finish)' });
  }
  const stopping = Promise.all(workers.map((w) => {
    w.proc.send({ type: 'stop' } satisfies ToWorker);
    return withTimeout(w.done, WORKER_STOP_TIMEOUT_MS, 'a worker did not stop');
  }));
  // Keep sampling while the last sends settle and the verifier catches up.
  let finished = false;
  const sampler = (async () => {
    while (!finished) {
      await sleep(TICK_MS);
      if (elapsed() >= nextSampleAt) {
        takeSample(elapsed());
        nextSampleAt += 1;
      }
    }
  })();
  let verdict: Verdict;
  try {
    const acked = (await stopping).flat();
    if (verifier) {
      for (const [device, ranges] of acked) for (const [first, last] of ranges) for (let s = first; s <= last; s++) verifier.noteAcked(device, s);
      verdict = await verifier.finish({ timeoutMs: scenario.drainTimeout * 1000 });
    } else {
      verdict = unverified(acked);
    }
  } finally {
    finished = true;
    await sampler;
  }
  takeSample(elapsed());
  progress.end();
  // Only a node of our own: one we attached to counts other clients' connections too.
  const nodeLimits = node ? await readNodeLimits(node.url) : null;
  return {
    scenario: scenario.name,
    startedAt: play.startedAt.toISOString(),
    durationSeconds: Math.round(elapsed() * 10) / 10,
    devices: scenario.devices,
    workers: count,
    nodeUrl: play.url,
    samples,
    totals: {
      ...totals,
      latency: verifier ? verifier.latencyTotal() : emptyPercentiles(),
      ackLatency: totalAckLatency.percentiles(),
      connectSeconds: connectSeconds(),
      allConnected: fullFleet.result(verifier?.latencyAllConnected() ?? emptyPercentiles()),
      errors: errorsByName,
    },
    actions,
    nodeLimits,
    verdict,
  };
}

/** Does one scenario action; returns what the report says was done. */
async function perform(action: Action, play: Play): Promise<string> {
  switch (action.do) {
    case 'kill-node':
      await play.node!.kill();
      return 'kill-node (SIGKILL)';
    case 'restart-node':
      await play.node!.start();
      return 'restart-node';
    case 'drop-connections':
      for (const w of play.workers) w.proc.send({ type: 'drop' } satisfies ToWorker);
      return 'drop-connections (every device at once)';
    case 'slow-consumer':
      play.verifier?.setSlow(action.delayMs ?? 50);
      return `slow-consumer (${action.delayMs ?? 50} ms per batch)`;
    case 'resume-consumer':
      play.verifier?.setSlow(null);
      return 'resume-consumer';
  }
}

/** Without the verifier nothing was read: the verdict only counts what was acknowledged. */
function unverified(acked: [string, [number, number][]][]): Verdict {
  let n = 0;
  for (const [, ranges] of acked) for (const [a, b] of ranges) n += b - a + 1;
  return { lost: 0, duplicated: 0, outOfOrder: 0, unackedSeen: 0, acked: n, read: 0, examples: { lost: [], duplicated: [], outOfOrder: [] }, ok: true };
}

function emptyPercentiles(): Percentiles {
  return { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

/** The live line: rewritten in place on a TTY, a plain line every 5 s otherwise (logs, CI). */
class Progress {
  private lastPlainAt = -Infinity;
  private drawn = false;

  constructor(private readonly out: NodeJS.WriteStream | null, private readonly scenario: Scenario) {}

  update(s: Sample): void {
    if (!this.out) return;
    const line = `${this.scenario.name} ${s.at.toFixed(0)}s  devices ${s.devicesConnected}/${this.scenario.devices}  sent ${s.sent}/s  acked ${s.acked}/s  read ${s.read}/s  ack p99 ${s.ackLatency.p99.toFixed(1)} ms  e2e p99 ${s.latency.p99.toFixed(1)} ms  errors ${s.errors}`;
    if (this.out.isTTY) {
      this.out.write(`\r\x1b[2K${line}`);
      this.drawn = true;
    } else if (s.at - this.lastPlainAt >= 5) {
      this.out.write(`${line}\n`);
      this.lastPlainAt = s.at;
    }
  }

  end(): void {
    if (this.out?.isTTY && this.drawn) this.out.write('\n');
  }
}
