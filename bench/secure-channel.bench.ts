// Micro-benchmarks of the secure channel: the Noise XX handshake (both sides, in memory),
// then sealing and opening single frames of 256 B, 16 KiB and 256 KiB with secretstream,
// then a frame through a memoryPipe with and without the channel. Registered at import (so a
// combined runner can import this file) and run only when the file is executed directly:
//
//   node dist/bench/secure-channel.bench.js
//
// After the mitata table, a summary turns mean times into handshakes/s and MiB/s.
// `open` uses a fresh FrameOpener per op, since a stream opens each frame once and in order:
// that adds one init_pull (a single HChaCha20 block) to each open.

import { pathToFileURL } from 'node:url';
import { filled, meansByName, mibPerSecond } from './rates.js';
import { bench, do_not_optimize, group, run } from 'mitata';
import { FrameOpener, FrameSealer, generateIdentity, noiseKeyPairFromIdentity, secureInitiator, secureResponder } from '../protocol/secure-channel.js';
import type { FrameTransport } from '../protocol/transport.js';
import { memoryPipe } from '../protocol/transport.js';

const KIB = 1024;
const SIZES = [256, 16 * KIB, 256 * KIB] as const;

const label = (size: number): string => (size >= KIB ? `${size / KIB} KiB` : `${size} B`);

const clientKeys = noiseKeyPairFromIdentity(generateIdentity());
const nodeKeys = noiseKeyPairFromIdentity(generateIdentity());
const credential = filled(300, 1); // about a fleet credential's size

/** One handshake with a credential as payload: XX, or IK when the client pins the node key. */
async function handshakeOnce(pattern: 'XX' | 'IK'): Promise<void> {
  const [client, server] = memoryPipe();
  await Promise.all([
    secureInitiator(client, { staticKeyPair: clientKeys, payload: credential, remoteStaticKey: pattern === 'IK' ? nodeKeys.publicKey : undefined }),
    secureResponder(server, { staticKeyPair: nodeKeys }),
  ]);
  client.close();
}

const key = filled(32, 2);
const sealer = new FrameSealer(key);
const frames = new Map(SIZES.map((size, i) => [size, filled(size, 10 + i)]));
// One sealed frame per size, each the first of its own stream, for `open`.
const firstSealed = new Map(
  SIZES.map((size) => {
    const s = new FrameSealer(key);
    return [size, { header: s.header, sealed: s.seal(frames.get(size) as Buffer) }];
  }),
);

const NAMES = {
  handshake: 'handshake: Noise XX, initiator + responder over memoryPipe',
  handshakeIK: 'handshake: Noise IK (node key pinned), same',
  seal: (size: number) => `seal ${label(size)}`,
  open: (size: number) => `open ${label(size)}`,
  plainPipe: `memoryPipe send + receive ${label(256 * KIB)}, plain`,
  securePipe: `memoryPipe send + receive ${label(256 * KIB)}, sealed`,
} as const;

group('handshake', () => {
  bench(NAMES.handshake, async () => handshakeOnce('XX'));
  bench(NAMES.handshakeIK, async () => handshakeOnce('IK'));
});

group('seal and open', () => {
  for (const size of SIZES) {
    const frame = frames.get(size) as Buffer;
    bench(NAMES.seal(size), () => do_not_optimize(sealer.seal(frame)));
    const { header, sealed } = firstSealed.get(size) as { header: Buffer; sealed: Buffer };
    bench(NAMES.open(size), () => {
      const opened = new FrameOpener(key, header).open(sealed);
      if (opened === null) throw new Error('bench frame failed to open');
      return do_not_optimize(opened);
    });
  }
});

// A frame through a transport pair and out of the far end's iterator: what the channel adds
// to the path a produce request takes, against memoryPipe's own copy and microtask.
const plain = memoryPipe();
const plainReader = plain[1][Symbol.asyncIterator]();
const [secureClient, secureServer] = await (async () => {
  const [client, server] = memoryPipe();
  const [c, s] = await Promise.all([secureInitiator(client, { staticKeyPair: clientKeys }), secureResponder(server, { staticKeyPair: nodeKeys })]);
  return [c.transport, s.transport];
})();
const secureReader = secureServer[Symbol.asyncIterator]();

async function through(sender: FrameTransport, reader: AsyncIterator<Buffer>, frame: Buffer): Promise<Buffer> {
  sender.send(frame);
  const next = await reader.next();
  if (next.done) throw new Error('transport ended');
  return next.value;
}

group('through a transport', () => {
  const frame = frames.get(256 * KIB) as Buffer;
  bench(NAMES.plainPipe, async () => do_not_optimize(await through(plain[0], plainReader, frame)));
  bench(NAMES.securePipe, async () => do_not_optimize(await through(secureClient, secureReader, frame)));
});

function printRates(means: Map<string, number>): void {
  const mib = (name: string, bytes: number): string => mibPerSecond(means, name, bytes);
  console.log('\nrates from mean time per op');
  const handshake = means.get(NAMES.handshake);
  if (handshake !== undefined) console.log(`  handshakes XX    ${Math.round(1e9 / handshake).toLocaleString('en-US')}/s (both sides on one core)`);
  const handshakeIK = means.get(NAMES.handshakeIK);
  if (handshakeIK !== undefined) console.log(`  handshakes IK    ${Math.round(1e9 / handshakeIK).toLocaleString('en-US')}/s (both sides on one core)`);
  for (const size of SIZES) {
    console.log(`  seal ${label(size).padEnd(8)}    ${mib(NAMES.seal(size), size)} MiB/s`);
    console.log(`  open ${label(size).padEnd(8)}    ${mib(NAMES.open(size), size)} MiB/s`);
  }
  const plainNs = means.get(NAMES.plainPipe);
  const secureNs = means.get(NAMES.securePipe);
  if (plainNs !== undefined && secureNs !== undefined) {
    console.log(`  memoryPipe 256 KiB  plain ${mib(NAMES.plainPipe, 256 * KIB)} MiB/s, sealed ${mib(NAMES.securePipe, 256 * KIB)} MiB/s (+${(secureNs - plainNs).toFixed(0)} ns per frame)`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { benchmarks } = await run();
  printRates(meansByName(benchmarks));
  plain[0].close();
  secureClient.close();
}
