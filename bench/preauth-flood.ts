// A flood of strangers, to see a node's pre-authentication limits hold: opens TCP
// connections and WebSocket upgrades as fast as it can and never makes a Noise handshake,
// holding every socket until the node closes it. Half the sockets send an upgrade request,
// half send nothing at all. test/preauth-attack.test.ts runs it from a network namespace
// (an address of its own) and from loopback; by hand, against a gateway:
//
//   node dist/bench/preauth-flood.js --host 10.0.0.5 --port 7400 --seconds 5
//
// It stops at SIGTERM, after --seconds, or once it has opened --connections sockets,
// whichever comes first. On stdout, one JSON line once the node first pushed back (a socket
// answered 503, or upgraded and then closed with 1013: {"event":"pressing"}), and one when
// it stops, with what became of its sockets: how the node answered (101, 503 and the limit
// it named, 408, a WebSocket close and its code) or that it closed them without a word, and
// the rate reached.

import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Command, InvalidArgumentError } from 'commander';

interface Options {
  host: string;
  port: number;
  seconds: number;
  connections: number;
  concurrency: number;
  openMax: number;
}

/** What the flood saw, printed when it stops. */
export interface FloodReport {
  event: 'done';
  stoppedBy: 'signal' | 'seconds' | 'connections';
  elapsedMs: number;
  /** Connects started. */
  attempts: number;
  /** Connects that succeeded (the node's kernel accepted them). */
  connected: number;
  attemptsPerSecond: number;
  connectedPerSecond: number;
  /** Most sockets held at once. */
  openPeak: number;
  /** How the node ended each socket, by what it sent: `101 then close 1013`, `503 handshakesPerAddressMax reached`, ... */
  outcomes: Record<string, number>;
  /** Connect and socket errors, by code. */
  errors: Record<string, number>;
}

/** Bytes of the node's answer kept per socket: enough for a status line, a short body and a close frame. */
const ANSWER_BYTES_KEPT = 512;
/** Distinct outcome and error labels kept; the rest are counted as `other`. */
const LABELS_MAX = 32;

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

function parseOptions(): Options {
  return new Command('preauth-flood')
    .description('open TCP connections and WebSocket upgrades to a node as fast as possible, never handshaking')
    .requiredOption('--host <address>', "the node's address")
    .requiredOption('--port <n>', "the node's port", positiveInt)
    .option('--seconds <n>', 'stop after this long', positiveInt, 10)
    .option('--connections <n>', 'stop after opening this many sockets', positiveInt, 50_000)
    .option('--concurrency <n>', 'connects in flight at once', positiveInt, 1024)
    .option('--open-max <n>', 'sockets held at once (this process has a file limit too)', positiveInt, 8000)
    .parse()
    .opts<Options>();
}

function count(table: Record<string, number>, label: string): void {
  const key = label in table || Object.keys(table).length < LABELS_MAX ? label : 'other';
  table[key] = (table[key] ?? 0) + 1;
}

/** What the node's answer on one socket was, from its first bytes. */
function describeAnswer(answer: Buffer): string {
  if (answer.length === 0) return 'closed without an answer';
  const text = answer.toString('latin1');
  const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
  if (status === undefined) return 'not HTTP';
  const headersEnd = text.indexOf('\r\n\r\n');
  if (headersEnd < 0) return `${status} (cut short)`;
  const rest = answer.subarray(headersEnd + 4);
  if (status === '101') {
    // A WebSocket close frame from the node: opcode 8, unmasked, the code in its first two bytes.
    if (rest.length >= 4 && (rest[0] & 0x0f) === 8) return `101 then close ${rest.readUInt16BE(2)}`;
    return rest.length === 0 ? '101 then closed' : '101 then other frames';
  }
  return `${status} ${rest.toString('latin1').trim().slice(0, 80)}`.trim();
}

function upgradeRequest(host: string, port: number): string {
  // The key is fixed: the node checks its form, not its value, and we never read the accept.
  return `GET /v1 HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
}

function flood(options: Options): void {
  const request = upgradeRequest(options.host, options.port);
  const startedAt = performance.now();
  const outcomes: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const sockets = new Set<Socket>();
  let attempts = 0;
  let connected = 0;
  let connecting = 0;
  let openPeak = 0;
  let pressing = false;
  let stopped = false;

  const openOne = (): void => {
    const upgrade = attempts % 2 === 0;
    attempts++;
    connecting++;
    const socket = connect({ host: options.host, port: options.port, noDelay: true });
    sockets.add(socket);
    let answer = Buffer.alloc(0);
    let isConnected = false;
    socket.once('connect', () => {
      isConnected = true;
      connecting--;
      connected++;
      openPeak = Math.max(openPeak, sockets.size - connecting);
      if (upgrade) socket.write(request);
      pump();
    });
    socket.on('data', (d: Buffer) => {
      if (answer.length < ANSWER_BYTES_KEPT) answer = Buffer.concat([answer, d]).subarray(0, ANSWER_BYTES_KEPT);
    });
    socket.on('error', (err: Error & { code?: string }) => count(errors, err.code ?? err.message));
    socket.once('close', () => {
      sockets.delete(socket);
      if (!isConnected) connecting--;
      else if (!stopped) {
        const outcome = describeAnswer(answer);
        count(outcomes, outcome);
        if (!pressing && /^503 |^101 then close 1013$/.test(outcome)) {
          pressing = true;
          process.stdout.write(`${JSON.stringify({ event: 'pressing' })}\n`);
        }
      }
      pump();
    });
  };

  const pump = (): void => {
    while (!stopped && connecting < options.concurrency && sockets.size < options.openMax) {
      if (attempts >= options.connections) return stop('connections');
      openOne();
    }
  };

  const stop = (by: FloodReport['stoppedBy']): void => {
    if (stopped) return;
    stopped = true;
    clearTimeout(deadline);
    const elapsedMs = performance.now() - startedAt;
    for (const socket of sockets) socket.destroy();
    const perSecond = (n: number) => Math.round((n / elapsedMs) * 1000);
    const report: FloodReport = {
      event: 'done',
      stoppedBy: by,
      elapsedMs: Math.round(elapsedMs),
      attempts,
      connected,
      attemptsPerSecond: perSecond(attempts),
      connectedPerSecond: perSecond(connected),
      openPeak,
      outcomes,
      errors,
    };
    process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
  };

  const deadline = setTimeout(() => stop('seconds'), options.seconds * 1000);
  process.once('SIGTERM', () => stop('signal'));
  process.once('SIGINT', () => stop('signal'));
  pump();
}

flood(parseOptions());
