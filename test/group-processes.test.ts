// A consumer group of real processes (`tributary consume --group`) on a 12-partition topic:
// three members, then one SIGKILLed, one leaving cleanly, one joining, with records produced
// all along. The node's view of the group is sampled throughout: no partition is ever owned
// by two members at once. At the end every record has been printed at least once, and none
// was skipped (each member commits only what it printed).

import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Kind } from '../protocol/frames.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { CLI, tempDir } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';
import { until } from './helpers/until.js';

const PARTITIONS = 12;
const GROUP = 'billing';
const dir = tempDir();
let broker: Broker;
let admin: RawClient;
const members: ChildProcess[] = [];

beforeAll(async () => {
  broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger, groupSessionTimeoutMs: 1500, groupHeartbeatIntervalMs: 100 });
  admin = await RawClient.connect(broker.url);
  await admin.request(Kind.CreateTopics, { topics: [{ name: 'orders', partitions: PARTITIONS }] });
});

afterAll(async () => {
  for (const m of members) if (m.exitCode === null && m.signalCode === null) m.kill('SIGKILL');
  admin?.close();
  await broker?.close();
  dir.remove();
});

let produced = 0;
async function produce(perPartition: number): Promise<void> {
  const partitions = Array.from({ length: PARTITIONS }, (_, partition) => ({
    topic: 'orders',
    partition,
    records: encodeBatch(Array.from({ length: perPartition }, (_, i) => ({ value: Buffer.from(`v${produced + i}`) }))),
  }));
  produced += perPartition;
  const answer = await admin.request<{ partitions: { error: number }[] }>(Kind.Produce, { acks: 1, partitions });
  expect(answer.partitions.every((p) => p.error === 0)).toBe(true);
}

interface Member {
  name: string;
  proc: ChildProcess;
  /** "partition:offset" of every record printed. */
  printed: string[];
  exited: Promise<number | null>;
}

function startMember(name: string): Member {
  const proc = spawn(process.execPath, [CLI, 'consume', 'orders', '--group', GROUP, '--from-beginning', '--print-offset', '--timeout-ms', '3000', '--broker', broker.url], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  members.push(proc);
  const printed: string[] = [];
  let partial = '';
  proc.stdout!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) printed.push(line.split('\t')[0]);
  });
  proc.stderr!.resume();
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { name, proc, printed, exited };
}


it('members come and go: never two owners of a partition, every record at least once', async () => {
  // The node's view, sampled all along: what each member reports owning.
  let sampling = true;
  let samples = 0;
  const all: Member[] = [];
  const overlaps: string[] = [];
  const sampler = (async () => {
    while (sampling) {
      // Before the first member joins, the group does not exist (GROUP_ID_NOT_FOUND, no members).
      const d = await admin.request<{ members?: { memberId: string; owned: string[] }[] }>(Kind.DescribeGroup, { groupId: GROUP });
      const owner = new Map<string, string>();
      for (const m of d.members ?? []) {
        for (const tp of m.owned) {
          if (owner.has(tp)) overlaps.push(`${tp} owned by ${owner.get(tp)} and ${m.memberId}`);
          owner.set(tp, m.memberId);
        }
      }
      samples++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  // Records keep coming while members come and go.
  let producing = true;
  const producer = (async () => {
    while (producing) {
      await produce(5);
      await new Promise((r) => setTimeout(r, 30));
    }
  })();
  try {
    const a = startMember('a');
    const b = startMember('b');
    const c = startMember('c');
    await until(() => a.printed.length > 0 && b.printed.length > 0 && c.printed.length > 0, 'all three members to print');
    a.proc.kill('SIGKILL'); // its partitions move only after the session timeout
    await a.exited;
    const cBefore = c.printed.length;
    await until(() => c.printed.length > cBefore + 50, 'c to go on after the kill');
    b.proc.kill('SIGTERM'); // leaves cleanly: commits what it printed, then leaves
    expect(await b.exited).toBe(0);
    const d = startMember('d');
    await until(() => d.printed.length > 50, 'd to take partitions');
    producing = false;
    await producer;
    // c and d stop by themselves after 3 s without a record.
    expect(await c.exited).toBe(0);
    expect(await d.exited).toBe(0);
    all.push(a, b, c, d);
  } finally {
    producing = false;
    sampling = false;
    await producer.catch(() => {});
    await sampler.catch(() => {});
  }

  expect(samples).toBeGreaterThan(20);
  expect(overlaps).toEqual([]);
  // Every record, at least once, across the members (a's uncommitted ones again by others).
  const seen = new Set(all.flatMap((m) => m.printed));
  const missing: string[] = [];
  for (let partition = 0; partition < PARTITIONS; partition++) for (let offset = 0; offset < produced; offset++) if (!seen.has(`${partition}:${offset}`)) missing.push(`${partition}:${offset}`);
  expect(missing).toEqual([]);
  // And the group's committed offsets cover everything: nothing left behind for a next member.
  const committed = await admin.request<{ partitions: { offset: number }[] }>(Kind.OffsetFetch, {
    groupId: GROUP,
    partitions: Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: 'orders', partition })),
  });
  expect(committed.partitions.map((p) => p.offset)).toEqual(new Array(PARTITIONS).fill(produced));
});
