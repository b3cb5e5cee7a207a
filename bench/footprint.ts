// Footprint and startup benchmark (issue 5: "run it on a gateway for months"). Starts real
// node processes (`tributary start`) and measures:
//   - the RSS of an idle node with an empty data folder (after 30 s alone, when V8 has
//     shrunk its heap; after 5 s too), next to a bare `node` process;
//   - the fill rate and RSS of a node taking --topics x --partitions holding --bytes;
//   - time to ready with that data: after a clean stop, after SIGKILL right after the fill
//     (nothing stopped cleanly since the data was written), after SIGKILL while idle
//     after some writes, and after SIGKILL right after a burst of writes;
//   - the RSS and open fds of the restarted node, and what recovery logged.
// "Ready" is the node printing its listening line (startBroker has opened every partition
// and replayed producer state before it listens) and then GET /healthz answering ok.
//
//   npm run bench:footprint -- [--topics 100] [--partitions 3] [--bytes 1073741824]
//                              [--record-bytes 100] [--runs 3] [--keep] [--cold]
//                              [--cpu-prof DIR] [--node-option FLAG ...]
//
// --cold drops the data folder's pages from the page cache before each timed start (as
// after a reboot); --cpu-prof writes a V8 CPU profile of each timed start into DIR;
// --node-option passes a flag to the node processes; they get the V8 flags of npm start and
// the systemd unit (NODE_V8_FLAGS) unless --no-v8-flags.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command, InvalidArgumentError } from 'commander';
import { connect, type ProducerMessage } from '../devices/index.js';
import { NODE_V8_FLAGS, startChildNode } from '../simulator/child-node.js';
import { filled } from './rates.js';

const MIB = 1024 * 1024;
/** How long a node is left alone before its RSS is read. */
const SETTLE_MS = 5000;
/**
 * How long an idle node is left alone before its idle RSS is read: V8's memory reducer
 * shrinks the heap after some seconds without allocation, so "idle" means after that.
 * The RSS at SETTLE_MS is printed too.
 */
const IDLE_SETTLE_MS = 30_000;
const START_TIMEOUT_MS = 120_000;
/** Records per sendBatch call, all to one topic (their keys spread them over its partitions). */
const CHUNK_RECORDS = 2000;
/** Distinct keys, so every partition of a topic gets records. */
const KEYS = 10_000;

interface Options {
  topics: number;
  partitions: number;
  bytes: number;
  recordBytes: number;
  runs: number;
  keep: boolean;
  cold: boolean;
  cpuProf?: string;
  nodeOption: string[];
  v8Flags: boolean;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

function parseOptions(): Options {
  const program = new Command('footprint')
    .description('footprint and startup time of a node holding many partitions')
    .option('--topics <n>', 'topics to create', positiveInt, 100)
    .option('--partitions <n>', 'partitions per topic', positiveInt, 3)
    .option('--bytes <n>', 'bytes of log to fill (on disk, all partitions together)', positiveInt, 1024 * MIB)
    .option('--record-bytes <n>', 'key + value bytes per record', positiveInt, 100)
    .option('--runs <n>', 'timed starts per scenario', positiveInt, 3)
    .option('--keep', 'keep the data folder and print where it is', false)
    .option('--cold', 'drop the data folder from the page cache before each timed start', false)
    .option('--cpu-prof <dir>', 'write a CPU profile of each timed start into this folder')
    .option('--node-option <flag>', 'flag for the node processes (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--no-v8-flags', `run the nodes without the V8 flags npm start and the service use (${NODE_V8_FLAGS})`)
    .parse();
  const options = program.opts<Options>();
  if (options.recordBytes < 24) throw new Error('--record-bytes must be at least 24 (the key takes up to 12)');
  return options;
}

// ---------------------------------------------------------------------------------------
// Processes

const running = new Set<ChildProcess>();
/** The data folder to remove on the way out, whatever ends the run (null with --keep). */
let dataDirToRemove: string | null = null;

function killAll(): void {
  for (const proc of running) proc.kill('SIGKILL');
}

/** SIGKILLs every process started here and waits for them: a live node would refill its folder. */
async function killAllAndWait(): Promise<void> {
  const exits = [...running].map((proc) => new Promise((r) => proc.once('exit', r)));
  killAll();
  await Promise.all(exits);
}

function removeDataDir(): void {
  if (dataDirToRemove !== null) rmSync(dataDirToRemove, { recursive: true, force: true, maxRetries: 3 });
  dataDirToRemove = null;
}

interface NodeRun {
  readonly pid: number;
  readonly url: string;
  readonly port: number;
  /** ms from spawn to the listening line, and to the first ok from /healthz. */
  readonly listeningMs: number;
  readonly readyMs: number;
  /** Its stdout and stderr (the log lines are on stderr). */
  output(): string;
  /** SIGTERM and wait for the exit; resolves with the ms it took. */
  stop(): Promise<number>;
  kill(): Promise<void>;
}

async function startNode(dataDir: string, options: Options, profileName?: string): Promise<NodeRun> {
  // As the node is run by npm start and the systemd unit, unless --no-v8-flags.
  const flags = [...(options.v8Flags ? NODE_V8_FLAGS.split(' ') : []), ...options.nodeOption];
  if (profileName !== undefined && options.cpuProf !== undefined) flags.push('--cpu-prof', '--cpu-prof-dir', options.cpuProf, '--cpu-prof-name', `${profileName}.cpuprofile`);
  const spawnedAt = performance.now();
  const node = await startChildNode({
    args: ['--data', dataDir, '--port', '0', '--log-level', 'warn'],
    nodeOptions: flags,
    startTimeoutMs: START_TIMEOUT_MS,
    onSpawn: (proc) => {
      running.add(proc);
      proc.once('exit', () => running.delete(proc));
    },
  });
  const listeningMs = performance.now() - spawnedAt;
  for (;;) {
    const health = await httpGet(node.port, '/healthz').catch(() => null);
    if (health !== null && (JSON.parse(health) as { status?: string }).status === 'ok') break;
    await sleep(5);
  }
  const readyMs = performance.now() - spawnedAt;
  return {
    pid: node.proc.pid!,
    url: node.url,
    port: node.port,
    listeningMs,
    readyMs,
    output: node.output,
    async stop() {
      const t0 = performance.now();
      await node.stop();
      return performance.now() - t0;
    },
    kill: node.kill,
  };
}

function httpGet(port: number, path: string): Promise<string> {
  return new Promise((resolveBody, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolveBody(body) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${path}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------
// What the kernel says about a process

interface Memory {
  rssMiB: number;
  peakRssMiB: number;
  /** Heap, stacks, buffers: what the process allocated. */
  anonMiB: number;
  /** Mapped files, mostly the node binary's code: shared with other node processes. */
  fileMiB: number;
  fds: number;
}

function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
  return {
    rssMiB: round1(kib('VmRSS')),
    peakRssMiB: round1(kib('VmHWM')),
    anonMiB: round1(kib('RssAnon')),
    fileMiB: round1(kib('RssFile')),
    fds: readdirSync(`/proc/${pid}/fd`).length,
  };
}

/** process_resident_memory_bytes from /metrics, or null when the node does not export it. */
async function metricsRssMiB(port: number): Promise<number | null> {
  const body = await httpGet(port, '/metrics');
  const m = /^process_resident_memory_bytes\s+(\S+)/m.exec(body);
  return m === null ? null : round1(Number(m[1]) / MIB);
}

async function baselineRss(): Promise<Memory> {
  const proc = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  running.add(proc);
  try {
    await sleep(2000);
    return memoryOf(proc.pid!);
  } finally {
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
    running.delete(proc);
  }
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

// ---------------------------------------------------------------------------------------
// Data

function topicName(i: number): string {
  return `footprint-${String(i).padStart(3, '0')}`;
}

/** Bytes of segment files of the benchmark's topics (internal topics left out). */
function logBytes(dataDir: string): number {
  let total = 0;
  for (const entry of readdirSync(dataDir, { withFileTypes: true })) {
    if (!entry.isDirectory() || !entry.name.startsWith('footprint-')) continue;
    for (const file of readdirSync(join(dataDir, entry.name))) {
      if (file.endsWith('.log')) total += statSync(join(dataDir, entry.name, file)).size;
    }
  }
  return total;
}

/** The same CHUNK_RECORDS messages for every send: keys spread over the partitions. */
function chunkMessages(recordBytes: number, seed: number): ProducerMessage[] {
  return Array.from({ length: CHUNK_RECORDS }, (_, i) => {
    const key = `sensor-${((seed * CHUNK_RECORDS + i) * 7919) % KEYS}`;
    return { key, value: filled(recordBytes - key.length, seed * CHUNK_RECORDS + i + 1) };
  });
}

interface Fill {
  records: number;
  logBytes: number;
  seconds: number;
}

/** Produces until the benchmark's topics hold about `bytes` of log, spread over all topics. */
async function produce(url: string, dataDir: string, options: Options, bytes: number): Promise<Fill> {
  const tb = await connect(url, { clientId: 'bench-footprint' });
  try {
    const producer = tb.producer();
    const chunks = [chunkMessages(options.recordBytes, 1), chunkMessages(options.recordBytes, 2), chunkMessages(options.recordBytes, 3)];
    const before = logBytes(dataDir);
    const t0 = performance.now();
    let records = 0;
    let sends = 0;
    // Acks are counted, not kept: ten million RecordMetadata would be the bench's own footprint.
    let acked = 0;
    let failure: unknown = null;
    let allAcked: (() => void) | null = null;
    const onAck = (): void => {
      acked++;
      if (acked === sends) allAcked?.();
    };
    const onFailure = (err: unknown): void => {
      failure ??= err;
      onAck();
    };
    const send = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++, sends++) {
        producer.sendBatch(topicName(sends % options.topics), chunks[sends % chunks.length]).then(onAck, onFailure);
        records += CHUNK_RECORDS;
        await producer.whenWritable();
      }
      await producer.flush();
      if (acked < sends) await new Promise<void>((r) => (allAcked = r));
      allAcked = null;
      if (failure !== null) throw failure;
    };
    // Bytes on disk per record depend on batching (batch headers, varint widths), so the
    // rest is estimated from what is on disk so far, in steps that close in on the target.
    await send(options.topics);
    for (;;) {
      const written = logBytes(dataDir) - before;
      const missingRecords = ((bytes - written) / written) * records;
      if (missingRecords < CHUNK_RECORDS / 2) break;
      await send(Math.max(1, Math.round((missingRecords * 0.8) / CHUNK_RECORDS)));
    }
    const seconds = (performance.now() - t0) / 1000;
    await producer.close();
    return { records, logBytes: logBytes(dataDir) - before, seconds };
  } finally {
    await tb.close();
  }
}

async function createTopics(url: string, options: Options): Promise<void> {
  const tb = await connect(url, { clientId: 'bench-footprint' });
  try {
    const outcomes = await tb.admin().createTopics(Array.from({ length: options.topics }, (_, i) => ({ name: topicName(i), partitions: options.partitions })));
    const failed = outcomes.find((o) => o.error);
    if (failed?.error) throw failed.error;
  } finally {
    await tb.close();
  }
}

/** Evicts every file of the data folder from the page cache (dd's fadvise DONTNEED). */
function dropCache(dataDir: string): void {
  spawnSync('sync');
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else files.push(p);
    }
  };
  walk(dataDir);
  for (let i = 0; i < files.length; i += 200) {
    const script = files.slice(i, i + 200).map((f) => `dd if='${f}' iflag=nocache count=0 status=none`).join('\n');
    spawnSync('sh', ['-c', script], { stdio: 'ignore' });
  }
}

/**
 * The folder a crash right after the fill leaves when no checkpoint job ran since: no
 * clean-shutdown marker, no producer snapshots, and recovery-point checkpoints that say
 * nothing about the active segments (the worst case for an unclean start).
 */
function forgetCleanStop(dataDir: string): void {
  rmSync(join(dataDir, '.clean-shutdown'), { force: true });
  for (const entry of readdirSync(dataDir, { withFileTypes: true })) {
    if (!entry.isDirectory() || !entry.name.startsWith('footprint-')) continue;
    for (const file of readdirSync(join(dataDir, entry.name))) {
      const path = join(dataDir, entry.name, file);
      if (file.endsWith('.snapshot')) rmSync(path);
      // Keep the sealed-segments line, drop the active segment's.
      if (file === 'recovery-point.checkpoint') writeFileSync(path, readFileSync(path, 'latin1').split('\n').slice(0, 2).join('\n') + '\n');
    }
  }
}

// ---------------------------------------------------------------------------------------
// Scenarios

interface Recovery {
  partitions: number;
  scannedBytes: number;
  recoveredPartitions: number;
  truncatedBytes: number;
}

/** What the node's log says recovery did (the warn lines of node/broker.ts logRecovery). */
function recoveryOf(output: string): Recovery | null {
  let found: Recovery | null = null;
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    const entry = JSON.parse(line) as { msg?: string; partitions?: number; scannedBytes?: number; truncatedBytes?: number };
    if (entry.msg === 'no clean-shutdown marker: checked the tail of every partition') {
      found = { partitions: entry.partitions ?? 0, scannedBytes: entry.scannedBytes ?? 0, recoveredPartitions: 0, truncatedBytes: 0 };
    } else if (entry.msg === 'recovered partition' && found !== null) {
      found.recoveredPartitions++;
      found.truncatedBytes += entry.truncatedBytes ?? 0;
    }
  }
  return found;
}

interface TimedStart {
  scenario: string;
  run: number;
  listeningMs: number;
  readyMs: number;
  recovery: Recovery | null;
  memory?: Memory;
  stopMs?: number;
}

async function timedStart(dataDir: string, options: Options, scenario: string, run: number, settle: boolean): Promise<{ node: NodeRun; result: TimedStart }> {
  if (options.cold) dropCache(dataDir);
  const node = await startNode(dataDir, options, `${scenario}-${run}`);
  const result: TimedStart = { scenario, run, listeningMs: Math.round(node.listeningMs), readyMs: Math.round(node.readyMs), recovery: recoveryOf(node.output()) };
  if (settle) {
    await sleep(SETTLE_MS);
    result.memory = memoryOf(node.pid);
  }
  const r = result.recovery;
  console.log(
    `  ${scenario} #${run}: ready in ${result.readyMs} ms (listening at ${result.listeningMs} ms)` +
      (r === null ? ', clean start' : `, recovery scanned ${(r.scannedBytes / MIB).toFixed(1)} MiB in ${r.partitions} partitions, cut ${r.truncatedBytes} bytes`) +
      (result.memory ? `; RSS ${result.memory.rssMiB} MiB, ${result.memory.fds} fds` : ''),
  );
  return { node, result };
}

async function main(): Promise<void> {
  const options = parseOptions();
  const workDir = mkdtempSync(join(tmpdir(), 'trib-footprint-'));
  if (!options.keep) dataDirToRemove = workDir;
  const dataDir = join(workDir, 'data');
  if (options.cpuProf !== undefined) mkdirSync(options.cpuProf, { recursive: true });
  const starts: TimedStart[] = [];
  try {
    const baseline = await baselineRss();
    console.log(`bare node (setInterval): RSS ${baseline.rssMiB} MiB (anon ${baseline.anonMiB}, file ${baseline.fileMiB})`);

    // 1. Idle, each run a new node in a new folder (its first start makes its key and the
    // internal topics); the last one goes on to the fill.
    const idles: (Memory & { readyMs: number; metricsRssMiB: number | null; rssAfterSettleMiB: number })[] = [];
    let node!: NodeRun;
    for (let run = 1; run <= options.runs; run++) {
      node = await startNode(run === options.runs ? dataDir : join(workDir, `idle-${run}`), options);
      await sleep(SETTLE_MS);
      const early = memoryOf(node.pid);
      await sleep(IDLE_SETTLE_MS - SETTLE_MS);
      const idle = { ...memoryOf(node.pid), readyMs: Math.round(node.readyMs), metricsRssMiB: await metricsRssMiB(node.port), rssAfterSettleMiB: early.rssMiB };
      idles.push(idle);
      console.log(
        `idle node #${run}, empty folder: ready in ${idle.readyMs} ms; RSS after ${SETTLE_MS / 1000} s ${early.rssMiB} MiB, ` +
          `after ${IDLE_SETTLE_MS / 1000} s ${idle.rssMiB} MiB (anon ${idle.anonMiB}, file ${idle.fileMiB}; ` +
          `/metrics: ${idle.metricsRssMiB ?? 'no process_resident_memory_bytes'}), ${idle.fds} fds`,
      );
      if (run < options.runs) await node.stop();
    }

    // 2. Fill.
    await createTopics(node.url, options);
    const fill = await produce(node.url, dataDir, options, options.bytes);
    const fillMemory = memoryOf(node.pid);
    await sleep(SETTLE_MS);
    const loaded = memoryOf(node.pid);
    console.log(
      `fill: ${fill.records.toLocaleString('en')} records, ${(fill.logBytes / MIB).toFixed(0)} MiB of log in ${options.topics} x ${options.partitions} partitions, ` +
        `${fill.seconds.toFixed(1)} s: ${Math.round(fill.records / fill.seconds).toLocaleString('en')} records/s, ${(fill.logBytes / MIB / fill.seconds).toFixed(1)} MiB/s`,
    );
    console.log(`loaded node after ${SETTLE_MS / 1000} s: RSS ${loaded.rssMiB} MiB (anon ${loaded.anonMiB}, file ${loaded.fileMiB}), peak ${fillMemory.peakRssMiB} MiB, ${loaded.fds} fds`);

    // 3. SIGKILL right after the fill, before any checkpoint job ran: the whole of every
    // active segment is scanned and producer state replayed from the start.
    await node.kill();
    console.log('SIGKILL right after the fill, no checkpoint since (run 1: the killed folder; later runs: clean stop; both with the checkpoint job\'s files removed):');
    for (let run = 1; run <= options.runs; run++) {
      forgetCleanStop(dataDir);
      const t = await timedStart(dataDir, options, 'kill-after-fill', run, true);
      starts.push(t.result);
      t.result.stopMs = Math.round(await t.node.stop());
    }

    // 4. Clean stop, then start.
    console.log('after a clean stop:');
    for (let run = 1; run <= options.runs; run++) {
      const t = await timedStart(dataDir, options, 'clean', run, true);
      starts.push(t.result);
      t.result.stopMs = Math.round(await t.node.stop());
    }

    // 5. SIGKILL while idle after some writes, and right after a burst.
    const smallBytes = Math.min(options.bytes, 16 * MIB);
    const burstBytes = Math.min(options.bytes, 64 * MIB);
    for (const [scenario, bytes, idleMs] of [
      ['kill-idle', smallBytes, 3000],
      ['kill-burst', burstBytes, 0],
    ] as const) {
      console.log(scenario === 'kill-idle' ? `SIGKILL ${idleMs / 1000} s after writing ${smallBytes / MIB} MiB:` : `SIGKILL right after a ${burstBytes / MIB} MiB burst:`);
      for (let run = 1; run <= options.runs; run++) {
        node = await startNode(dataDir, options);
        await produce(node.url, dataDir, options, bytes);
        await sleep(idleMs);
        await node.kill();
        const t = await timedStart(dataDir, options, scenario, run, false);
        starts.push(t.result);
        t.result.stopMs = Math.round(await t.node.stop());
      }
    }

    const finalBytes = logBytes(dataDir);
    console.log(JSON.stringify({ options, baseline, idles, fill, loaded, fillPeakRssMiB: fillMemory.peakRssMiB, finalLogBytes: finalBytes, starts }));
    summarize(starts);
  } finally {
    await killAllAndWait();
    removeDataDir();
    if (options.keep) console.log(`data kept in ${dataDir}`);
  }
}

function summarize(starts: TimedStart[]): void {
  const range = (values: number[]): string => {
    if (values.length === 0) return 'n/a';
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    return lo === hi ? String(lo) : `${lo}–${hi}`;
  };
  console.log('\n| start | ready ms | listening ms | scanned MiB | RSS after MiB | fds | clean stop ms |');
  console.log('|---|---|---|---|---|---|---|');
  for (const scenario of [...new Set(starts.map((s) => s.scenario))]) {
    const runs = starts.filter((s) => s.scenario === scenario);
    const mem = runs.flatMap((s) => (s.memory ? [s.memory] : []));
    console.log(
      `| ${scenario} | ${range(runs.map((s) => s.readyMs))} | ${range(runs.map((s) => s.listeningMs))} | ${range(runs.map((s) => round1((s.recovery?.scannedBytes ?? 0) / MIB)))} | ` +
        `${range(mem.map((m) => m.rssMiB))} | ${range(mem.map((m) => m.fds))} | ${range(runs.map((s) => s.stopMs ?? 0))} |`,
    );
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void killAllAndWait().then(() => {
      removeDataDir();
      process.exit(130);
    });
  });
}
// Last resort (an exception past main's finally): no process outlives the benchmark.
process.once('exit', killAll);

await main();
