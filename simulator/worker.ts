// A worker process: runs a range of the scenario's devices and talks to the orchestrator
// (run.ts) over the fork IPC channel. In: init (its range), rate (a phase's factor), drop
// (reconnect storm), stop. Out: stats every 250 ms, and at the end each device's
// acknowledged sequences as ranges, which the verifier checks against what it read.

import { generateIdentity } from '../protocol/key-file.js';
import { issueCredential } from '../protocol/credential.js';
import { Device, errorName, type DeviceAuth, type DeviceStats } from './device.js';
import { LatencyHistogram } from './histogram.js';
import { SendClock } from './send-clock.js';
import { modelFor, type Scenario } from './scenario.js';

export interface WorkerInit {
  type: 'init';
  url: string;
  scenario: Scenario;
  /** Device indexes [from, to). */
  from: number;
  to: number;
  /** This worker's share of the scenario's handshake rate. */
  connectRatePerSecond: number;
  /** Fleet mode: the fleet key pair (hex) that signs each device's credential. */
  fleet?: { publicKey: string; secretKey: string };
}

export type ToWorker = WorkerInit | { type: 'rate'; factor: number } | { type: 'drop' } | { type: 'stop' };

export interface WorkerStats {
  type: 'stats';
  connected: number;
  everConnected: number;
  sent: number;
  acked: number;
  failed: number;
  errors: Record<string, number>;
  /** Epoch ms when the last of this worker's devices first connected; null until then. */
  allConnectedAtMs: number | null;
  /** Send-to-ack latency since the previous stats, encoded (LatencyHistogram.encode). */
  ackLatency: string;
}

export type FromWorker = WorkerStats | { type: 'done'; acked: [device: string, ranges: [number, number][]][] } | { type: 'fatal'; message: string };

const STATS_INTERVAL_MS = 250;

/** A range of devices in one process; also usable without a fork. */
export class DeviceGroup {
  readonly devices: Device[] = [];
  private readonly stats: DeviceStats = { sent: 0, acked: 0, failed: 0, errors: new Map(), ackLatency: new LatencyHistogram() };
  /** One clock for all of this process's devices (see send-clock.ts). */
  private readonly clock = new SendClock();
  private connected = 0;
  private everConnected = 0;
  private allConnectedAtMs: number | null = null;
  private factor = 1;
  private stopping = false;
  private connecting: Promise<void> = Promise.resolve();

  constructor(private readonly init: WorkerInit) {
    const { scenario, fleet } = init;
    const fleetPair = fleet ? { publicKey: Buffer.from(fleet.publicKey, 'hex'), secretKey: Buffer.from(fleet.secretKey, 'hex') } : null;
    for (let index = init.from; index < init.to; index++) {
      let auth: DeviceAuth | undefined;
      if (fleetPair) {
        // Each device its own key and credential, as a real fleet: produce on the run's topic only.
        const identity = generateIdentity();
        const credential = issueCredential(fleetPair, { subject: identity.publicKey, role: 'device', produce: [scenario.topic.name], consume: [], expiresAt: Date.now() + 7 * 24 * 3600_000 });
        auth = { identity, credential, fleetPublicKey: fleetPair.publicKey };
      }
      let seen = false;
      this.devices.push(new Device({
        url: init.url,
        topic: scenario.topic.name,
        index,
        seed: scenario.seed,
        model: modelFor(scenario, index),
        auth,
        stats: this.stats,
        rateFactor: () => this.factor,
        clock: this.clock,
        onConnectionChange: (up) => {
          this.connected += up ? 1 : -1;
          if (up && !seen) {
            seen = true;
            this.everConnected += 1;
            if (this.everConnected === init.to - init.from) this.allConnectedAtMs = Date.now();
          }
        },
      }));
    }
  }

  setRateFactor(factor: number): void {
    this.factor = factor;
  }

  /** Connects the devices at the handshake rate; each starts sending once connected. */
  start(): void {
    const gapMs = 1000 / this.init.connectRatePerSecond;
    this.connecting = (async () => {
      const t0 = performance.now();
      for (let i = 0; i < this.devices.length && !this.stopping; i++) {
        const due = t0 + i * gapMs;
        const wait = due - performance.now();
        // Timers are coarse; wait only when a whole ms is due, and start the rest in a burst.
        if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
        const device = this.devices[i];
        // Not awaited: a device still connecting when the run stops is left to the process exit.
        void device.connect().then(
          () => (this.stopping ? undefined : device.start()),
          (err: unknown) => this.countError(`connect ${errorName(err)}`),
        );
      }
    })();
  }

  private countError(name: string): void {
    this.stats.errors.set(name, (this.stats.errors.get(name) ?? 0) + 1);
  }

  dropConnections(): void {
    for (const d of this.devices) d.dropConnection();
  }

  /** The counts since the previous call. */
  takeStats(): WorkerStats {
    const s = this.stats;
    const out: WorkerStats = { type: 'stats', connected: this.connected, everConnected: this.everConnected, sent: s.sent, acked: s.acked, failed: s.failed, errors: Object.fromEntries(s.errors), allConnectedAtMs: this.allConnectedAtMs, ackLatency: s.ackLatency.encode() };
    s.sent = 0;
    s.acked = 0;
    s.failed = 0;
    s.errors.clear();
    s.ackLatency.reset();
    return out;
  }

  async stop(): Promise<[string, [number, number][]][]> {
    this.stopping = true;
    await this.connecting;
    await Promise.all(this.devices.map((d) => d.stop()));
    return this.devices.map((d) => [d.id, d.acked.toArray()]);
  }
}

/** The worker's main: wire a DeviceGroup to the IPC channel. */
function runAsWorker(): void {
  let group: DeviceGroup | null = null;
  let statsTimer: NodeJS.Timeout | null = null;
  const send = (m: FromWorker) => process.send!(m);
  process.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'init':
        group = new DeviceGroup(m);
        group.start();
        // Four times per sample: counts land in the parent's right second, within 250 ms.
        statsTimer = setInterval(() => send(group!.takeStats()), STATS_INTERVAL_MS);
        break;
      case 'rate':
        group?.setRateFactor(m.factor);
        break;
      case 'drop':
        group?.dropConnections();
        break;
      case 'stop':
        void (async () => {
          const acked = group ? await group.stop() : [];
          if (statsTimer) clearInterval(statsTimer);
          if (group) send(group.takeStats());
          send({ type: 'done', acked });
          process.disconnect();
        })().catch((err: unknown) => send({ type: 'fatal', message: (err as Error).message }));
        break;
    }
  });
  // The orchestrator gone means the run is over: do not linger as an orphan holding sockets.
  process.on('disconnect', () => setTimeout(() => process.exit(0), 1000).unref());
}

if (process.send !== undefined && process.env.TRIBUTARY_SIM_WORKER === '1') runAsWorker();
