// Tributary side by side with its peers: the same workload, on loopback, against each
// system in turn, and one table at the end.
//
//   npm run bench:peers -- [--publishers N] [--messages N] [--payload-bytes N]
//                          [--warmup N] [--in-flight N] [--partitions N] [--linger-ms N]
//                          [--systems tributary-os,tributary-fsync,nats,mosquitto,aedes] [--json]
//
// Install the peers first (Debian 12; aedes, aedes-persistence-level, level, nats and mqtt
// are devDependencies, so `npm ci` brings them):
//
//   apt-get install -y nats-server mosquitto
//
// The workload, the same for every system:
// - N publishers, each its own connection, each sending --messages payloads of
//   --payload-bytes to one topic (Tributary: a topic of --partitions partitions, default 1;
//   NATS: a JetStream stream with file storage; MQTT: topic `bench` at QoS 1).
// - Every publish is acknowledged by the server (Tributary acks=1; JetStream PubAck; MQTT
//   PUBACK), and each publisher keeps exactly --in-flight publishes unanswered (default
//   100): --in-flight loops, each sending its next message when its last one is answered.
//   Kafka-style batching happens inside the Tributary producer (lingerMs, default 0 here:
//   a batch is whatever was sent in the same tick); the others send one message a frame.
// - First each publisher sends --warmup messages (default 2,000), untimed, so the code of
//   this process and of the server is compiled before the clock starts.
// - The ack latency of each publish (send call to answer) goes into an HdrHistogram;
//   sends/s is every message over the time from the first send to the last answer.
// - Then one consumer reads everything (warm-up messages included): Tributary a consumer from offset 0 (pushed
//   delivery); JetStream an ordered consumer from the start of the stream; MQTT a
//   persistent session (clean: false, QoS 1) that subscribed and went offline BEFORE the
//   publishers started, so the broker stored every message for it, and that reconnects
//   after the publishers finished (MQTT has no replay: draining the stored queue is its
//   reading of everything). Records/s is every message over connect-to-last-message.
// - RSS is the server process's peak (VmHWM of /proc/PID/status) over the whole run.
// - Every server runs as a child process with a fresh temp data folder on a free loopback
//   port; everything started is stopped and removed at the end, on error and on SIGINT.
//
// The clients of every system run in this one Node.js process; on a 2-core machine they
// share the CPU with the server, the same way for every system.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { connect as natsConnect, StorageType, type NatsConnection } from 'nats';
import mqtt from 'mqtt';
import { connect, type Connection } from '../devices/index.js';
import { NODE_V8_FLAGS } from '../simulator/child-node.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ALL_SYSTEMS = ['tributary-os', 'tributary-fsync', 'nats', 'mosquitto', 'aedes'] as const;
type SystemName = (typeof ALL_SYSTEMS)[number];

const program = new Command('bench-peers')
  .option('--publishers <n>', 'publishers, each its own connection', '10')
  .option('--messages <n>', 'messages per publisher', '20000')
  .option('--payload-bytes <n>', 'bytes of each message', '100')
  .option('--warmup <n>', 'untimed messages per publisher sent first', '2000')
  .option('--in-flight <n>', 'unanswered publishes per publisher', '100')
  .option('--partitions <n>', "partitions of Tributary's topic", '1')
  .option('--linger-ms <n>', "Tributary producer's lingerMs", '0')
  .option('--systems <list>', 'comma-separated subset', ALL_SYSTEMS.join(','))
  .option('--json', 'print only the JSON line')
  .parse();
const opts = program.opts<{ publishers: string; messages: string; payloadBytes: string; warmup: string; inFlight: string; partitions: string; lingerMs: string; systems: string; json?: boolean }>();
const PUBLISHERS = positiveInt('--publishers', opts.publishers);
const MESSAGES = positiveInt('--messages', opts.messages);
const PAYLOAD_BYTES = positiveInt('--payload-bytes', opts.payloadBytes);
const IN_FLIGHT = positiveInt('--in-flight', opts.inFlight);
const PARTITIONS = positiveInt('--partitions', opts.partitions);
const LINGER_MS = Number(opts.lingerMs);
const SYSTEMS = opts.systems.split(',').map((s) => s.trim()) as SystemName[];
for (const s of SYSTEMS) if (!ALL_SYSTEMS.includes(s)) throw new Error(`unknown system ${s}; one of ${ALL_SYSTEMS.join(', ')}`);
const WARMUP = Number(opts.warmup);
if (!Number.isInteger(WARMUP) || WARMUP < 0) throw new Error(`--warmup must be a non-negative integer, got ${opts.warmup}`);
const TOTAL = PUBLISHERS * MESSAGES;
/** What the consumer reads: the warm-up messages and the timed ones. */
const STORED = PUBLISHERS * (WARMUP + MESSAGES);

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${text}`);
  return n;
}

// ---------------------------------------------------------------------------------------
// Child processes and temp folders: every one is recorded here, so a failure or Ctrl-C
// still stops them all and removes the folders.

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

function tempDir(system: string): string {
  const dir = mkdtempSync(join(tmpdir(), `peers-${system}-`));
  tempDirs.add(dir);
  return dir;
}

function cleanupNow(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
}
process.once('SIGINT', () => {
  cleanupNow();
  process.exit(130);
});
process.once('exit', cleanupNow);

/** Starts a server and resolves with what `ready` finds in its output (stdout and stderr). */
function startChild(cmd: string, argv: string[], ready: RegExp, env?: NodeJS.ProcessEnv): Promise<{ proc: ChildProcess; match: RegExpExecArray }> {
  const proc = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  children.add(proc);
  let out = '';
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} not ready after 20 s:\n${out}`)), 20_000);
    const onData = (d: Buffer): void => {
      if (out.length < 65_536) out += d.toString();
      const m = ready.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolveStart({ proc, match: m });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited (${code ?? signal}) before it was ready:\n${out}`));
    });
    proc.once('error', reject);
  });
}

async function waitForPort(port: number, proc: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`server exited (${proc.exitCode}) before it listened on ${port}`);
    const ok = await new Promise<boolean>((r) => {
      const s = netConnect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listening on ${port} after 20 s`);
}

function stopChild(proc: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return r();
    const kill = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    proc.once('exit', () => {
      clearTimeout(kill);
      children.delete(proc);
      r();
    });
    proc.kill('SIGTERM');
  });
}

function peakRssMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return NaN;
  }
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (USER_HZ, 100 on Linux).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** A free loopback port, for servers that cannot pick one themselves and say which. */
function freePort(): Promise<number> {
  return new Promise((r, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => r(port));
    });
  });
}

// ---------------------------------------------------------------------------------------
// The systems. Each starts its server, opens publishers, and reads everything back.

interface Publisher {
  /** Resolves when the server acknowledged this message. */
  publish(payload: Buffer): Promise<unknown>;
  close(): Promise<void>;
}

interface System {
  readonly durability: string;
  readonly pid: number;
  publisher(index: number): Promise<Publisher>;
  /** Called before any publisher starts (MQTT: the persistent session subscribes). */
  beforePublish(): Promise<void>;
  /** Reads every message; returns the count read. */
  consumeAll(total: number): Promise<number>;
  stop(): Promise<void>;
}

async function startTributary(flush: 'os' | 'batch'): Promise<System> {
  const dir = tempDir(`tributary-${flush}`);
  const nodeFlags = NODE_V8_FLAGS.split(' ').filter((f) => f !== '');
  const { proc, match } = await startChild(process.execPath, [...nodeFlags, join(ROOT, 'dist/node/cli/main.js'), 'start', '--data', dir, '--port', '0', '--log-level', 'warn'], /listening on (ws:\/\/\S+)/);
  const url = match[1]!;
  const admin = await connect(url, { clientId: 'bench-admin' });
  await admin.admin().createTopic('bench', { partitions: PARTITIONS, config: { flush } });
  const connections: Connection[] = [admin];
  return {
    durability: flush === 'os' ? 'flush=os: ack after write(2) to the OS (page cache); the OS writes it back' : 'flush=batch: ack after fsync of the batch (the disk has it)',
    pid: proc.pid!,
    async beforePublish() {},
    async publisher(index) {
      const tb = await connect(url, { clientId: `bench-pub-${index}` });
      connections.push(tb);
      const producer = tb.producer({ acks: 1, lingerMs: LINGER_MS });
      return { publish: (payload) => producer.send('bench', { value: payload }), close: () => producer.close() };
    },
    async consumeAll(total) {
      const consumer = admin.consumer({ autoOffsetReset: 'earliest' });
      consumer.assign(Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: 'bench', partition, offset: 0 })));
      let received = 0;
      for await (const batch of consumer.batches()) {
        received += batch.length;
        if (received >= total) break;
      }
      await consumer.close();
      return received;
    },
    async stop() {
      for (const c of connections) await c.close().catch(() => undefined);
      await stopChild(proc);
    },
  };
}

async function startNats(): Promise<System> {
  const dir = tempDir('nats');
  const port = await freePort();
  const { proc } = await startChild('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], /Server is ready/);
  const servers = `127.0.0.1:${port}`;
  const admin = await natsConnect({ servers });
  const jsm = await admin.jetstreamManager();
  await jsm.streams.add({ name: 'BENCH', subjects: ['bench'], storage: StorageType.File });
  const connections: NatsConnection[] = [admin];
  return {
    durability: 'JetStream file store (2.9.10 defaults): PubAck after pwrite(2) of the message to its block file (the OS has it), no fsync; fsync every 2 min (sync_interval, settable only from 2.10)',
    pid: proc.pid!,
    async beforePublish() {},
    async publisher() {
      const nc = await natsConnect({ servers });
      connections.push(nc);
      const js = nc.jetstream();
      return { publish: (payload) => js.publish('bench', payload), close: () => nc.drain() };
    },
    async consumeAll(total) {
      // An ordered consumer from the start of the stream, with a deep buffer, so NATS is
      // not held back by its client's default of 100 messages per pull.
      const consumer = await admin.jetstream().consumers.get('BENCH');
      const messages = await consumer.consume({ max_messages: 10_000 });
      let received = 0;
      for await (const m of messages) {
        void m;
        if (++received >= total) break;
      }
      await messages.close();
      return received;
    },
    async stop() {
      for (const c of connections) await c.close().catch(() => undefined);
      await stopChild(proc);
    },
  };
}

/** The MQTT side, shared by Mosquitto and aedes: QoS 1 publishers and a persistent session. */
function mqttSystem(url: string, proc: ChildProcess, durability: string): System {
  const clients: mqtt.MqttClient[] = [];
  const consumerOptions: mqtt.IClientOptions = { clientId: 'bench-consumer', clean: false, reconnectPeriod: 0 };
  return {
    durability,
    pid: proc.pid!,
    async beforePublish() {
      // Subscribe once and go offline: the broker now stores every QoS 1 message for this
      // session until it comes back.
      const c = await mqtt.connectAsync(url, consumerOptions);
      await c.subscribeAsync('bench', { qos: 1 });
      await c.endAsync();
    },
    async publisher(index) {
      const c = await mqtt.connectAsync(url, { clientId: `bench-pub-${index}`, clean: true, reconnectPeriod: 0 });
      clients.push(c);
      return { publish: (payload) => c.publishAsync('bench', payload, { qos: 1 }), close: () => c.endAsync() };
    },
    async consumeAll(total) {
      let received = 0;
      let done: () => void = () => undefined;
      const all = new Promise<void>((r) => (done = r));
      const c = mqtt.connect(url, { ...consumerOptions, manualConnect: true });
      clients.push(c);
      c.on('message', () => {
        if (++received === total) done();
      });
      c.connect();
      await all;
      return received;
    },
    async stop() {
      for (const c of clients) await c.endAsync(true).catch(() => undefined);
      await stopChild(proc);
    },
  };
}

async function startMosquitto(): Promise<System> {
  const dir = tempDir('mosquitto');
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      // Started as root, mosquitto drops to the `mosquitto` user, which cannot write our
      // temp folder; it runs as the user that started the benchmark instead.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${dir}/`,
      // Raised so nothing is dropped or held back: no cap on the stored queue of the
      // offline session, none on QoS 1 messages in flight to it.
      'max_queued_messages 0',
      'max_queued_bytes 0',
      'max_inflight_messages 0',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      '',
    ].join('\n'),
  );
  // Its log to a pipe is buffered, so readiness is its port taking connections.
  // (Its stderr says only that it should not run as root: not shown.)
  const proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'ignore'] });
  children.add(proc);
  await waitForPort(port, proc);
  return mqttSystem(
    `mqtt://127.0.0.1:${port}`,
    proc,
    'QoS 1, persistence true: PUBACK with the message in memory only; mosquitto.db is written every autosave_interval (1800 s default) and at shutdown',
  );
}

async function startAedes(): Promise<System> {
  const dir = tempDir('aedes');
  const { proc, match } = await startChild(process.execPath, [join(ROOT, 'dist/bench/peers-aedes.js'), join(dir, 'db')], /listening on (\d+)/);
  return mqttSystem(
    `mqtt://127.0.0.1:${match[1]!}`,
    proc,
    "QoS 1, aedes-persistence-level: PUBACK after the offline session's copy is put to LevelDB without sync (write(2) of its log to the OS)",
  );
}

function start(name: SystemName): Promise<System> {
  switch (name) {
    case 'tributary-os':
      return startTributary('os');
    case 'tributary-fsync':
      return startTributary('batch');
    case 'nats':
      return startNats();
    case 'mosquitto':
      return startMosquitto();
    case 'aedes':
      return startAedes();
  }
}

// ---------------------------------------------------------------------------------------
// The run.

interface Result {
  system: SystemName;
  messages: number;
  sendsPerS: number;
  ackP50Ms: number;
  ackP99Ms: number;
  consumerRecordsPerS: number;
  serverPeakRssMiB: number;
  /** CPU seconds during the publish phase: the server's, and this process's (the clients'). */
  publishServerCpuS: number;
  publishClientCpuS: number;
  /** The same during the consumer phase (in the JSON line only). */
  consumeServerCpuS: number;
  consumeClientCpuS: number;
  durability: string;
}

/** Each publisher sends `count` messages with IN_FLIGHT of them unanswered at a time. */
async function publishAll(publishers: Publisher[], count: number, payload: Buffer, histogram: hdr.Histogram | null): Promise<void> {
  await Promise.all(
    publishers.map(async (p) => {
      let next = 0;
      // IN_FLIGHT loops, each with one publish unanswered at a time: the publisher keeps
      // exactly IN_FLIGHT in flight until its last messages.
      const loop = async (): Promise<void> => {
        while (next < count) {
          next++;
          const sent = performance.now();
          await p.publish(payload);
          histogram?.recordValue(Math.max(1, Math.round((performance.now() - sent) * 1000)));
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, loop));
    }),
  );
}

async function run(name: SystemName): Promise<Result> {
  const system = await start(name);
  try {
    await system.beforePublish();
    const publishers = await Promise.all(Array.from({ length: PUBLISHERS }, (_, i) => system.publisher(i)));
    const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
    const payload = Buffer.alloc(PAYLOAD_BYTES, 120);
    // Untimed first: the same publishers send --warmup messages each, so the clients' and
    // servers' code is compiled before the clock starts (the first system measured would
    // otherwise pay for this process's warm-up). The consumer reads these too.
    await publishAll(publishers, WARMUP, payload, null);
    const serverCpu0 = cpuSeconds(system.pid);
    const clientCpu0 = process.cpuUsage();
    const t0 = performance.now();
    await publishAll(publishers, MESSAGES, payload, histogram);
    const publishS = (performance.now() - t0) / 1000;
    const publishServerCpuS = cpuSeconds(system.pid) - serverCpu0;
    const clientCpu = process.cpuUsage(clientCpu0);
    const publishClientCpuS = (clientCpu.user + clientCpu.system) / 1e6;
    await Promise.all(publishers.map((p) => p.close()));

    const consumeServerCpu0 = cpuSeconds(system.pid);
    const consumeClientCpu0 = process.cpuUsage();
    const t1 = performance.now();
    const read = await system.consumeAll(STORED);
    const consumeS = (performance.now() - t1) / 1000;
    const consumeServerCpuS = cpuSeconds(system.pid) - consumeServerCpu0;
    const consumeClientCpu = process.cpuUsage(consumeClientCpu0);
    if (read !== STORED) throw new Error(`${name}: read ${read} of ${STORED}`);

    return {
      system: name,
      messages: TOTAL,
      sendsPerS: Math.round(TOTAL / publishS),
      ackP50Ms: histogram.getValueAtPercentile(50) / 1000,
      ackP99Ms: histogram.getValueAtPercentile(99) / 1000,
      consumerRecordsPerS: Math.round(STORED / consumeS),
      serverPeakRssMiB: +peakRssMiB(system.pid).toFixed(1),
      publishServerCpuS: +publishServerCpuS.toFixed(2),
      publishClientCpuS: +publishClientCpuS.toFixed(2),
      consumeServerCpuS: +consumeServerCpuS.toFixed(2),
      consumeClientCpuS: +((consumeClientCpu.user + consumeClientCpu.system) / 1e6).toFixed(2),
      durability: system.durability,
    };
  } finally {
    await system.stop();
  }
}

const results: Result[] = [];
try {
  for (const name of SYSTEMS) {
    if (!opts.json) process.stderr.write(`${name}: ${PUBLISHERS} publishers x ${MESSAGES} messages of ${PAYLOAD_BYTES} B, ${IN_FLIGHT} in flight each...\n`);
    const r = await run(name);
    results.push(r);
    if (!opts.json) process.stderr.write(`${name}: ${r.sendsPerS.toLocaleString('en')} sends/s, consumer ${r.consumerRecordsPerS.toLocaleString('en')} records/s\n`);
  }
} finally {
  cleanupNow();
}

const fmt = (n: number): string => n.toLocaleString('en');
if (!opts.json) {
  console.log(
    `\n${PUBLISHERS} publishers x ${fmt(MESSAGES)} timed messages = ${fmt(TOTAL)} per system (after ${fmt(WARMUP)} untimed each; the consumer reads all ${fmt(STORED)}), ${PAYLOAD_BYTES} B payloads, ${IN_FLIGHT} publishes in flight per publisher, loopback\n`,
  );
  console.log('| system | sends/s (acked) | ack p50 ms | ack p99 ms | consumer records/s | server peak RSS MiB | CPU s while publishing: server / clients | what the ack means |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---|');
  for (const r of results) {
    console.log(`| ${r.system} | ${fmt(r.sendsPerS)} | ${r.ackP50Ms.toFixed(2)} | ${r.ackP99Ms.toFixed(2)} | ${fmt(r.consumerRecordsPerS)} | ${r.serverPeakRssMiB.toFixed(1)} | ${r.publishServerCpuS.toFixed(1)} / ${r.publishClientCpuS.toFixed(1)} | ${r.durability} |`);
  }
}
console.log(JSON.stringify({ publishers: PUBLISHERS, messagesPerPublisher: MESSAGES, payloadBytes: PAYLOAD_BYTES, warmupPerPublisher: WARMUP, inFlight: IN_FLIGHT, partitions: PARTITIONS, lingerMs: LINGER_MS, results }));
