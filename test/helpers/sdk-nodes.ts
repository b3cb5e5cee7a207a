// The two nodes the SDK's behaviour suites run against: the SDK's FakeNode (in memory, over
// memoryPipe) and a real node (node/broker.ts, in-process, on an ephemeral port, its data in
// a temporary folder). A suite written against SdkNode runs unchanged on both
// (`describe.each(SDK_NODES)`), so the FakeNode cannot drift from what the node does on
// anything such a suite covers. Tests that need faults injected (answers dropped or held,
// connections cut, producer state lost) use the FakeNode alone, in their own files.
//
// The helper sits under test/ because it starts a real node: devices/ may not import node/.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBroker } from '../../node/broker.js';
import { silentLogger } from '../../node/logger.js';
import { decodeBatch, type DecodedRecord } from '../../protocol/record-batch.js';
import { Client, type ClientOptions } from '../../devices/client.js';
import { FakeNode, type FakeRequest } from '../../devices/testing/fake-node.js';

export interface SdkNode {
  /** A client connected to the node; closed by close(). */
  connect(options?: ClientOptions): Promise<Client>;
  createTopic(name: string, partitions: number): Promise<void>;
  /** Appends a batch as another producer would have; returns its base offset. */
  append(topic: string, partition: number, batch: Buffer): number;
  /** The batches a partition stores, as stored (base offsets patched). */
  batches(topic: string, partition: number): Buffer[];
  /** Every stored record of a partition, decoded. */
  records(topic: string, partition: number): DecodedRecord[];
  /**
   * The requests the node received, for the FakeNode only: what a client put on the wire is
   * something only the fake can show (a real node's frames are sealed).
   */
  readonly requests: readonly FakeRequest[] | null;
  /** Closes the clients, stops the node and removes what it wrote. */
  close(): Promise<void>;
}

export type SdkNodeStarter = () => Promise<SdkNode>;

async function closeAll(clients: Client[]): Promise<void> {
  for (const client of clients.splice(0)) await client.close();
}

export const startFakeNode: SdkNodeStarter = async () => {
  const node = new FakeNode();
  const clients: Client[] = [];
  return {
    async connect(options = {}) {
      const client = await Client.connect('mem://fake', { transportFactory: node.transportFactory, ...options });
      clients.push(client);
      return client;
    },
    async createTopic(name, partitions) {
      node.createTopic(name, partitions);
    },
    append: (topic, partition, batch) => node.append(topic, partition, batch),
    batches: (topic, partition) => [...(node.partition(topic, partition)?.batches ?? [])],
    records: (topic, partition) => node.records(topic, partition),
    requests: node.requests,
    close: () => closeAll(clients),
  };
};

export const startRealNode: SdkNodeStarter = async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tributary-sdk-nodes-'));
  const broker = await startBroker({ dataDir, port: 0, logger: silentLogger });
  const clients: Client[] = [];
  const log = (topic: string, partition: number) => {
    const found = broker.logs.partition(topic, partition);
    if (found === undefined) throw new Error(`no partition ${topic}/${partition}`);
    return found;
  };
  const batches = (topic: string, partition: number): Buffer[] => {
    const l = log(topic, partition);
    const out: Buffer[] = [];
    // A read stays within a segment: read on until the log end.
    for (let offset = l.logStartOffset; offset < l.logEndOffset; ) {
      const read = l.readBatches(offset, 64 * 1024 * 1024, l.logEndOffset);
      if (read.batches.length === 0) break;
      let at = 0;
      for (const b of read.batches) {
        out.push(Buffer.from(read.bytes.subarray(at, at + b.sizeBytes)));
        at += b.sizeBytes;
        offset = b.lastOffset + 1;
      }
    }
    return out;
  };
  return {
    async connect(options = {}) {
      const client = await Client.connect(broker.url, options);
      clients.push(client);
      return client;
    },
    async createTopic(name, partitions) {
      await broker.logs.createTopic(name, partitions);
    },
    append: (topic, partition, batch) => log(topic, partition).append(Buffer.from(batch)).baseOffset,
    batches,
    records: (topic, partition) => batches(topic, partition).flatMap((b) => decodeBatch(b).records),
    requests: null,
    async close() {
      try {
        await closeAll(clients);
        await broker.close();
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
};

/** For `describe.each(SDK_NODES)('... (%s)', (_name, start) => ...)`. */
export const SDK_NODES: [string, SdkNodeStarter][] = [
  ['fake node', startFakeNode],
  ['real node', startRealNode],
];
