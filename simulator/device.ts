// One virtual device: its own identity (and credential in a fleet), its own client over its
// own WebSocket, an idempotent producer, and a sensor model sending at its rate with jitter.
// It counts what it sent, what was acknowledged (and how fast) and what failed, by error
// name, and keeps the acknowledged sequences as ranges for the verifier.

import { connect, webSocketTransportFactory, type Connection, type FrameTransport, type IdentityKeyPair, type Producer } from '../devices/index.js';
import { createModel, deviceSeed, mulberry32, nextGapMs, type SensorModel } from './models.js';
import type { LatencyHistogram } from './histogram.js';
import type { SendClock, Timed } from './send-clock.js';
import type { ModelSpec } from './scenario.js';
import type { SimEvent } from './types.js';

/** What all the devices of one process count into (reset by the worker each second). */
export interface DeviceStats {
  sent: number;
  acked: number;
  failed: number;
  errors: Map<string, number>;
  ackLatency: LatencyHistogram;
}

export interface DeviceAuth {
  identity: IdentityKeyPair;
  credential: Uint8Array;
  fleetPublicKey: Buffer;
}

export interface DeviceOptions {
  url: string;
  topic: string;
  index: number;
  seed: number;
  model: ModelSpec;
  auth?: DeviceAuth;
  stats: DeviceStats;
  /** Multiplies the model's rate (the scenario's phases); read before each event. */
  rateFactor: () => number;
  /** The worker's clock, which runs every device's next event. */
  clock: SendClock;
  onConnectionChange: (connected: boolean) => void;
}

/** Device ids sort in index order, and are the record keys. */
export function deviceId(index: number): string {
  return `dev-${String(index).padStart(6, '0')}`;
}

/** Why a send failed, as a short stable name: the wire error's name, else the JS error's. */
export function errorName(err: unknown): string {
  const e = err as { errorName?: unknown; name?: unknown };
  if (typeof e?.errorName === 'string') return e.errorName;
  return typeof e?.name === 'string' ? e.name : 'Error';
}

/** Acknowledged sequences of one device as [first, last] ranges, merged as acks arrive. */
export class AckedRanges {
  private readonly ranges: [number, number][] = [];

  add(seq: number): void {
    const last = this.ranges[this.ranges.length - 1];
    // The idempotent producer acknowledges one key's records in order, so this is the path taken.
    if (last !== undefined && seq === last[1] + 1) last[1] = seq;
    else if (last === undefined || seq > last[1] + 1) this.ranges.push([seq, seq]);
    else this.insert(seq);
  }

  private insert(seq: number): void {
    const i = this.ranges.findIndex((r) => seq <= r[1] + 1);
    const r = this.ranges[i];
    if (seq >= r[0] && seq <= r[1]) return;
    if (seq === r[1] + 1) r[1] = seq;
    else if (seq === r[0] - 1) r[0] = seq;
    else this.ranges.splice(i, 0, [seq, seq]);
    // Join neighbours the new sequence now touches.
    for (let j = Math.max(0, i - 1); j + 1 < this.ranges.length && j <= i; ) {
      if (this.ranges[j][1] + 1 >= this.ranges[j + 1][0]) {
        this.ranges[j][1] = Math.max(this.ranges[j][1], this.ranges[j + 1][1]);
        this.ranges.splice(j + 1, 1);
      } else j += 1;
    }
  }

  toArray(): [number, number][] {
    return this.ranges.map((r) => [r[0], r[1]]);
  }
}

/** Longest a producer waits for its last sends at the end of the run before it gives up. */
const CLOSE_TIMEOUT_MS = 30_000;

export class Device implements Timed {
  readonly id: string;
  readonly acked = new AckedRanges();
  private connection: Connection | null = null;
  private producer: Producer | null = null;
  private transport: FrameTransport | null = null;
  private readonly model: SensorModel;
  private readonly random: () => number;
  private readonly padding: string;
  private seq = 0;
  /** On the clock: when the next event is due, and where it sits in the clock's heap. */
  dueAt = 0;
  heapIndex = -1;
  /** The rate factor read when the next event was scheduled: 0 means a pause. */
  private scheduledFactor = 0;
  private running = false;
  private stopped = false;
  private connected = false;
  /**
   * Sends not yet settled, and who waits for none to be left. A count, not a set of the
   * sends' promises: a Set emptied at every acknowledgement reallocates its table each time.
   */
  private inFlight = 0;
  private whenSettled: (() => void) | null = null;

  constructor(private readonly options: DeviceOptions) {
    this.id = deviceId(options.index);
    this.random = mulberry32(deviceSeed(options.seed, options.index));
    this.model = createModel(options.model.kind, this.random);
    this.padding = 'x'.repeat(options.model.payloadBytes);
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** Connects (the SDK retries until connectTimeoutMs) and makes the idempotent producer. */
  async connect(): Promise<void> {
    const base = webSocketTransportFactory();
    const auth = this.options.auth;
    this.connection = await connect(this.options.url, {
      clientId: this.id,
      connectTimeoutMs: 60_000,
      // Short backoff: after a node restart or a dropped socket, devices come back in seconds
      // (the client adds jitter, so they do not all come back in the same millisecond).
      reconnect: { initialMs: 100, maxMs: 2000 },
      // Keep a handle on the live socket, so drop-connections can cut it as a network would.
      transportFactory: async (url, opts) => (this.transport = await base(url, opts)),
      onConnect: () => this.setConnected(true),
      onDisconnect: () => this.setConnected(false),
      ...(auth ? { identity: auth.identity, credential: auth.credential, fleetPublicKey: auth.fleetPublicKey } : {}),
    });
    this.setConnected(true);
    if (this.stopped) {
      await this.connection.close();
      this.setConnected(false);
      return;
    }
    // No linger: a device sending a few events per second gains nothing from batching, and
    // ack latency is what the run reports.
    this.producer = this.connection.producer({ lingerMs: 0 });
  }

  private setConnected(connected: boolean): void {
    if (connected === this.connected) return;
    this.connected = connected;
    this.options.onConnectionChange(connected);
  }

  start(): void {
    this.running = true;
    this.schedule();
  }

  private schedule(): void {
    if (!this.running) return;
    const factor = this.options.rateFactor();
    this.scheduledFactor = factor;
    // Rate factor 0 is a pause: look again in a second.
    const gap = factor > 0 ? nextGapMs(this.options.model.ratePerSecond * factor, this.options.model.jitter, this.random) : 1000;
    this.options.clock.schedule(this, gap);
  }

  /** Called by the clock when the next event is due. */
  fire(): void {
    if (this.scheduledFactor > 0) this.sendOne();
    this.schedule();
  }

  private sendOne(): void {
    const producer = this.producer;
    if (producer === null) return;
    const stats = this.options.stats;
    const reading = this.model.next();
    const event: SimEvent = { d: this.id, s: this.seq++, t: Date.now(), k: this.model.kind, p: this.padding ? { v: reading, pad: this.padding } : reading };
    stats.sent += 1;
    const sentAt = performance.now();
    this.inFlight += 1;
    producer.send(this.options.topic, { key: this.id, value: event }).then(
      () => {
        stats.acked += 1;
        stats.ackLatency.record(performance.now() - sentAt);
        this.acked.add(event.s);
        this.settled();
      },
      (err: unknown) => {
        stats.failed += 1;
        const name = errorName(err);
        stats.errors.set(name, (stats.errors.get(name) ?? 0) + 1);
        this.settled();
      },
    );
  }

  private settled(): void {
    this.inFlight -= 1;
    if (this.inFlight === 0 && this.whenSettled !== null) {
      const resolve = this.whenSettled;
      this.whenSettled = null;
      resolve();
    }
  }

  /** Closes the socket under the client, as a lost network does; the SDK reconnects. */
  dropConnection(): void {
    this.transport?.close(1001, 'simulated drop');
  }

  /** Stops sending, waits (bounded) for the outcome of every send, then closes. */
  async stop(): Promise<void> {
    this.running = false;
    this.stopped = true;
    this.options.clock.cancel(this);
    if (this.inFlight > 0) {
      const settled = new Promise<void>((r) => (this.whenSettled = r));
      await Promise.race([settled, new Promise((r) => setTimeout(r, CLOSE_TIMEOUT_MS).unref())]);
    }
    await this.connection?.close().catch(() => undefined);
    this.setConnected(false);
  }

}
