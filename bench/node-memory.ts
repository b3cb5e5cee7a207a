// The node's memory under many devices, on a real node process (`tributary start` with the
// V8 flags of npm start and the systemd unit): what each connection holds, what each
// produce request allocates and promotes to the old generation, and the RSS high-water
// mark. Allocation is V8's own count (--trace-gc-nvp prints `allocated` and `promoted` at
// each collection), summed over the collections during the measured rounds, so it covers
// a request's whole path (socket, secure channel, frame, decode, handler, log, answer),
// not one function's; with about a hundred scavenges a run it is exact to about 1%.
//
//   npm run bench:memory -- [--connections 4000] [--rounds 40] [--value-bytes 120]
//
// Each connection is one SDK client with an idempotent producer (lingerMs 0: one Produce
// request per record), as a device is; a round sends one record on every connection and
// waits for every ack. The first round (InitProducerId, first appends) is not measured.
// The bench process holds every client, so it needs an open-files limit above
// --connections.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect, type Connection, type Producer } from '../devices/index.js';
import { NODE_V8_FLAGS, startChildNode } from '../simulator/child-node.js';

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '4000' },
    rounds: { type: 'string', default: '40' },
    'value-bytes': { type: 'string', default: '120' },
  },
});
const CONNECTIONS = positiveInt(args.connections!, '--connections');
const ROUNDS = positiveInt(args.rounds!, '--rounds');
const VALUE_BYTES = positiveInt(args['value-bytes']!, '--value-bytes');
/** Time for the node to settle (sockets, timers, a scavenge) before its RSS is read. */
const SETTLE_MS = 2000;
const KIB_PER_MIB = 1024;
const MIB = 1024 * 1024;

function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${flag} must be a positive integer, got '${value}'`);
  return n;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The node's RSS now and its high-water mark, in KiB, from /proc. */
function memoryOf(pid: number): { rssKiB: number; hwmKiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
}

/** Sums V8's per-collection `allocated` and `promoted` counts from the node's trace, while on. */
class GcCounter {
  on = false;
  allocated = 0;
  promoted = 0;
  scavenges = 0;
  markCompacts = 0;
  private partial = '';

  take(chunk: Buffer): void {
    const lines = (this.partial + chunk.toString()).split('\n');
    this.partial = lines.pop()!;
    if (!this.on) return;
    for (const line of lines) {
      const gc = / gc=(\w+)/.exec(line);
      if (gc === null) continue;
      if (gc[1] === 's') this.scavenges++;
      else this.markCompacts++;
      this.allocated += Number(/ allocated=(\d+)/.exec(line)?.[1] ?? 0);
      this.promoted += Number(/ promoted=(\d+)/.exec(line)?.[1] ?? 0);
    }
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tributary-node-memory-'));
  // A config file makes the node require credentials unless it says otherwise: dev mode is
  // spelled out, with room for every connection.
  writeFileSync(join(dir, 'node.yaml'), `${JSON.stringify({ limits: { connectionsMax: CONNECTIONS + 16 }, auth: { anonymous: 'loopback' } })}\n`);
  const node = await startChildNode({
    args: ['--data', join(dir, 'data'), '--port', '0', '--log-level', 'warn', '--config', join(dir, 'node.yaml')],
    nodeOptions: [...NODE_V8_FLAGS.split(' '), '--trace-gc-nvp'],
  });
  const gc = new GcCounter();
  node.proc.stdout!.on('data', (chunk: Buffer) => gc.take(chunk));
  const pid = node.proc.pid!;
  const clients: { connection: Connection; producer: Producer }[] = [];
  try {
    const admin = await connect(node.url);
    await admin.admin().createTopic('memory', { partitions: 6 });
    await admin.close();
    await sleep(SETTLE_MS);
    const idle = memoryOf(pid);
    for (let i = 0; i < CONNECTIONS; i++) {
      const connection = await connect(node.url, { clientId: `device-${i}` });
      clients.push({ connection, producer: connection.producer({ lingerMs: 0 }) });
      if ((i + 1) % 1000 === 0) process.stderr.write(`${i + 1} connected\n`);
    }
    const value = Buffer.alloc(VALUE_BYTES, 0x61);
    const round = () => Promise.all(clients.map(({ producer }, i) => producer.send('memory', { key: `device-${i}`, value })));
    await round();
    await sleep(SETTLE_MS);
    const connected = memoryOf(pid);
    gc.on = true;
    const startedAt = performance.now();
    for (let r = 0; r < ROUNDS; r++) await round();
    const seconds = (performance.now() - startedAt) / 1000;
    // Collections during the rounds are printed as they happen; this lets the last arrive.
    await sleep(500);
    gc.on = false;
    const after = memoryOf(pid);
    const requests = CONNECTIONS * ROUNDS;
    const out = (line: string) => process.stdout.write(`${line}\n`);
    out(`${CONNECTIONS} connections, ${ROUNDS} rounds: ${requests} Produce requests of one ${VALUE_BYTES}-byte record in ${seconds.toFixed(1)} s`);
    out(`node RSS idle ${(idle.rssKiB / KIB_PER_MIB).toFixed(1)} MiB, connected ${(connected.rssKiB / KIB_PER_MIB).toFixed(1)} MiB: ${((connected.rssKiB - idle.rssKiB) / CONNECTIONS).toFixed(1)} KiB per connection`);
    out(`node RSS after the rounds ${(after.rssKiB / KIB_PER_MIB).toFixed(1)} MiB, high-water ${(after.hwmKiB / KIB_PER_MIB).toFixed(1)} MiB`);
    out(`allocated ${(gc.allocated / MIB).toFixed(1)} MiB: ${(gc.allocated / requests).toFixed(0)} B per request; promoted ${(gc.promoted / MIB).toFixed(1)} MiB: ${(gc.promoted / requests).toFixed(1)} B per request (${gc.scavenges} scavenges, ${gc.markCompacts} mark-compacts)`);
  } finally {
    await Promise.all(clients.map(({ connection }) => connection.close().catch(() => undefined)));
    await node.stop(10_000);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
