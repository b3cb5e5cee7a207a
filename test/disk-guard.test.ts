// The disk guard and a full disk, on a real file system of a few MiB: each test mounts a
// tmpfs of its own size in a private mount namespace (`unshare`, which needs no root when
// user namespaces are allowed, and is gone with its last process), then runs the real node
// inside it (`nsenter`), so the node sees a small disk that fills. The test talks to the node
// over WebSockets only, and checks that every record the node acknowledged can be read back.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, Kind, type Connection } from '../devices/index.js';
import { Errors, errorSpecForCode, TributaryError } from '../protocol/errors.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { startNodeProcess, stopAllNodes, type NodeProcess } from './helpers/node-process.js';
import { until } from './helpers/until.js';

const KIB = 1024;
const MIB = 1024 * KIB;

interface SmallDisk {
  /** The mount point, as the node sees it. */
  dir: string;
  /** Runs a command inside the namespace: prefix for startNodeProcess. */
  wrap: string[];
  close(): Promise<void>;
}

const disks: SmallDisk[] = [];
const folders: string[] = [];

afterEach(async () => {
  await stopAllNodes();
  for (const disk of disks.splice(0)) await disk.close();
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

/** A tmpfs of `bytes` mounted in a new mount namespace, held open by a sleeping shell. */
async function smallDisk(bytes: number): Promise<SmallDisk> {
  const base = mkdtempSync(join(tmpdir(), 'trib-disk-'));
  folders.push(base);
  const dir = join(base, 'mnt');
  const holder: ChildProcess = spawn('unshare', ['--user', '--map-root-user', '--mount', 'sh', '-c', 'mkdir -p "$1" && mount -t tmpfs -o size="$2" tmpfs "$1" && echo mounted && exec sleep 600', 'sh', dir, String(bytes)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  holder.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  holder.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((r) => holder.once('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no tmpfs within 10 s: ${output}`)), 10_000);
    holder.stdout!.on('data', () => {
      if (output.includes('mounted')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`could not mount a tmpfs in a user and mount namespace (unshare): ${output}`));
    });
  });
  const disk: SmallDisk = {
    dir,
    wrap: ['nsenter', '--target', String(holder.pid), '--user', '--mount', '--preserve-credentials'],
    async close() {
      holder.kill('SIGKILL');
      await exited;
    },
  };
  disks.push(disk);
  return disk;
}

function configFile(yaml: string): string {
  const folder = mkdtempSync(join(tmpdir(), 'trib-conf-'));
  folders.push(folder);
  const file = join(folder, 'tributary.yaml');
  // A config file turns dev mode off; these tests connect anonymously from loopback.
  writeFileSync(file, `auth:\n  anonymous: loopback\n${yaml}`);
  return file;
}

async function startOn(disk: SmallDisk, config: string): Promise<NodeProcess> {
  return startNodeProcess({ dataDir: join(disk.dir, 'data'), wrap: disk.wrap, args: ['--config', config] });
}

const VALUE_BYTES = KIB;
const RECORDS_PER_BATCH = 16;

/** One batch of 16 records of 1 KiB whose values start with their sequence numbers. */
function batchOf(first: number): Buffer {
  const records = [];
  for (let i = 0; i < RECORDS_PER_BATCH; i++) {
    const value = Buffer.alloc(VALUE_BYTES, 0x61 + (i % 26));
    value.write(`${first + i}:`, 0, 'latin1');
    records.push({ key: Buffer.from(`k${(first + i) % 7}`), value });
  }
  return encodeBatch(records);
}

interface ProduceOutcome {
  /** First sequence numbers of the batches the node acknowledged, in order. */
  acked: number[];
  /** Error names of the refused batches, in order. */
  refused: string[];
}

/**
 * Sends one batch per request (acks=1) until `batches` were sent or `stopAfterRefusals`
 * were refused. Each answer is exact: appended at an offset, or refused with nothing appended.
 */
async function produce(tb: Connection, topic: string, batches: number, stopAfterRefusals: number, from = 0): Promise<ProduceOutcome> {
  const outcome: ProduceOutcome = { acked: [], refused: [] };
  for (let b = 0; b < batches && outcome.refused.length < stopAfterRefusals; b++) {
    const first = from + b * RECORDS_PER_BATCH;
    const response = await tb.client.request(Kind.Produce, { acks: 1, timeoutMs: 10_000, partitions: [{ topic, partition: 0, records: batchOf(first) }] });
    const result = response.partitions[0];
    if (result.error === Errors.NONE.code) outcome.acked.push(first);
    else outcome.refused.push(errorSpecForCode(result.error).name);
  }
  return outcome;
}

/** Every record of partition 0 from the log start to the log end: its sequence numbers. */
async function readAll(tb: Connection, topic: string): Promise<number[]> {
  const [starts, ends] = await tb.admin().listOffsets([
    { topic, partition: 0, at: 'earliest' },
    { topic, partition: 0, at: 'latest' },
  ]);
  const start = starts.offset ?? 0;
  const total = (ends.offset ?? 0) - start;
  const out: number[] = [];
  if (total === 0) return out;
  const consumer = tb.consumer({ autoOffsetReset: 'earliest', maxWaitMs: 200 });
  consumer.assign([{ topic, partition: 0, offset: start }]);
  for await (const batch of consumer.batches()) {
    for (const r of batch) out.push(Number((r.value as Buffer).toString('latin1', 0, 12).split(':')[0]));
    if (out.length >= total) break;
  }
  await consumer.close();
  return out;
}

function expand(batchStarts: number[]): number[] {
  return batchStarts.flatMap((first) => Array.from({ length: RECORDS_PER_BATCH }, (_, i) => first + i));
}

async function metric(node: NodeProcess, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name}{`)));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

const TOPIC_CONFIG = { 'segment.bytes': String(256 * KIB), flush: 'interval' };

describe('disk guard on a 16 MiB file system', () => {
  it('refuse: past storage.minFreeBytes produce answers STORAGE_FULL; every acknowledged record survives a SIGKILL and restart', async () => {
    const disk = await smallDisk(16 * MIB);
    const config = configFile('storage:\n  minFreeBytes: 6MiB\n  guard: refuse\n');
    let node = await startOn(disk, config);
    let tb = await connect(node.url);
    try {
      await tb.admin().createTopic('readings', { partitions: 1, config: TOPIC_CONFIG });
      await tb.admin().createTopic('scratch', { partitions: 1, config: TOPIC_CONFIG });
      expect((await produce(tb, 'scratch', 64, 1)).refused).toEqual([]);
      // 16 MiB of records cannot fit under 10 MiB usable: the guard must step in.
      const outcome = await produce(tb, 'readings', 1000, 5);
      expect(outcome.refused).toEqual(Array(5).fill('STORAGE_FULL'));
      expect(outcome.acked.length * RECORDS_PER_BATCH * VALUE_BYTES).toBeGreaterThan(6 * MIB);
      expect(await metric(node, 'tributary_disk_guard_refusing')).toBe(1);
      expect(await metric(node, 'tributary_disk_guard_refused_batches_total', '{topic="readings"}')).toBeGreaterThanOrEqual(5);
      // Reading goes on, and holds exactly the acknowledged records, in order.
      expect(await readAll(tb, 'readings')).toEqual(expand(outcome.acked));
      // Offset commits append to __consumer_offsets: refused as produce is (retriable).
      const commit = await tb.client.request(Kind.OffsetCommit, { groupId: 'g', offsets: [{ topic: 'readings', partition: 0, offset: 5 }] }).then(
        () => null,
        (err: unknown) => err as TributaryError,
      );
      expect([commit?.code, commit?.retriable]).toEqual([Errors.STORAGE_FULL.code, true]);
      await tb.close();
      await node.kill();

      node = await startOn(disk, config);
      tb = await connect(node.url);
      // Still full after the restart: refused from the first request.
      const again = await produce(tb, 'readings', 1, 1, 1_000_000);
      expect(again.refused).toEqual(['STORAGE_FULL']);
      expect(await readAll(tb, 'readings')).toEqual(expand(outcome.acked));
      // Space freed (here a topic deleted): accepted again from the guard's next scheduled check.
      await tb.admin().deleteTopic('scratch');
      let accepted: ProduceOutcome = { acked: [], refused: [] };
      await until(
        async () => {
          accepted = await produce(tb, 'readings', 1, 1, 2_000_000);
          return accepted.acked.length > 0;
        },
        "the guard's next check to accept produce again",
        { intervalMs: 200 },
      );
      expect(accepted.acked).toEqual([2_000_000]);
      expect(await metric(node, 'tributary_disk_guard_refusing')).toBe(0);
      const commit2 = await tb.client.request(Kind.OffsetCommit, { groupId: 'g', offsets: [{ topic: 'readings', partition: 0, offset: 5 }] });
      expect(commit2.partitions[0].error).toBe(Errors.NONE.code);
    } finally {
      await tb.close();
    }
  });

  it('drop: past storage.maxBytes the oldest closed segments go, counted in /metrics; what remains is the newest records, contiguous', async () => {
    const disk = await smallDisk(16 * MIB);
    const config = configFile('storage:\n  maxBytes: 4MiB\n  minFreeBytes: 0\n  guard: drop\n');
    const node = await startOn(disk, config);
    const tb = await connect(node.url);
    try {
      await tb.admin().createTopic('readings', { partitions: 1, config: TOPIC_CONFIG });
      // 12 MiB through a 4 MiB budget on a 16 MiB disk: only dropping makes it fit.
      const outcome = await produce(tb, 'readings', 750, 1);
      expect(outcome.refused).toEqual([]);
      expect(outcome.acked).toHaveLength(750);
      const dropped = await metric(node, 'tributary_disk_guard_dropped_segments_total', '{topic="readings"}');
      expect(dropped).toBeGreaterThan(0);
      expect(await metric(node, 'tributary_disk_guard_dropped_bytes_total', '{topic="readings"}')).toBeGreaterThan(8 * MIB - 4 * MIB);
      const kept = await readAll(tb, 'readings');
      const all = expand(outcome.acked);
      // The newest records, with nothing missing between the new log start and the end.
      expect(kept).toEqual(all.slice(all.length - kept.length));
      // Within the budget, give or take what arrived between two checks (1% of it) and the active segment.
      expect(kept.length * VALUE_BYTES).toBeLessThan(4 * MIB + 512 * KIB);
      expect(node.output()).toContain('disk guard dropped the oldest segment');
    } finally {
      await tb.close();
    }
  });

  it('without a guard, an append that meets a full disk (ENOSPC) answers STORAGE_FULL and loses nothing acknowledged; freeing space lets produce go on', async () => {
    const disk = await smallDisk(8 * MIB);
    const config = configFile('storage:\n  maxBytes: 0\n  minFreeBytes: 0\n');
    const node = await startOn(disk, config);
    const tb = await connect(node.url);
    try {
      await tb.admin().createTopic('readings', { partitions: 1, config: TOPIC_CONFIG });
      await tb.admin().createTopic('scratch', { partitions: 1, config: TOPIC_CONFIG });
      const scratch = await produce(tb, 'scratch', 64, 1);
      expect(scratch.refused).toEqual([]);
      const outcome = await produce(tb, 'readings', 1000, 3);
      expect(outcome.refused).toEqual(['STORAGE_FULL', 'STORAGE_FULL', 'STORAGE_FULL']);
      expect(await readAll(tb, 'readings')).toEqual(expand(outcome.acked));
      // The partition did not fail: once space is free, the same partition takes writes again.
      await tb.admin().deleteTopic('scratch');
      const after = await produce(tb, 'readings', 8, 1, 1_000_000);
      expect(after.refused).toEqual([]);
      expect(await readAll(tb, 'readings')).toEqual([...expand(outcome.acked), ...expand(after.acked)]);
    } finally {
      await tb.close();
    }
  });
});
