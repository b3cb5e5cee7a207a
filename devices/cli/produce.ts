// `tributary produce`: stdin to a topic, one record per line. index.ts reads the flags; this
// file does the run, one idea per part:
//
//   limits      how large a record the topic and a frame take, so an oversized line is
//               refused by its number before anything after it is sent
//   parse       a line -> a message, or why it may not be one
//   read        stdin -> lines, read only as fast as the producer takes them; a line
//               longer than any record can be is refused without holding all of it
//   outcome     which lines were acknowledged, and the first that failed
//   report      the count, or the one line that says why produce stopped
//
// The whole run is bounded by --timeout-ms when given: past the deadline nothing more is
// read or sent, and what was acknowledged is what is told.

import { Errors, TributaryError } from '../../protocol/errors.js';
import { BATCH_OVERHEAD } from '../../protocol/record-batch.js';
import type { Client } from '../client.js';
import { ConnectionError } from '../errors.js';
import { Admin, Producer, type ProducerMessage, type RecordMetadata } from '../index.js';
import { messageOf, UsageError, withClient, type NodeOptions } from './common.js';
import { Once } from './once.js';
import { plural } from './output.js';

export interface ProduceOptions extends NodeOptions {
  keySeparator?: string;
  partition?: string;
  acks: string;
  compression: string;
  lingerMs?: string;
  batchBytes?: string;
  skipBadLines?: boolean;
  timeoutMs?: string;
}

/** The flags of a run, checked. */
export interface ProduceSettings {
  acks: 0 | 1 | -1;
  compression: 'none' | 'gzip';
  partition: number | undefined;
  /** --key-separator as given, and its bytes. */
  keySeparator: string | undefined;
  separator: Buffer | null;
  lingerMs: number | undefined;
  batchBytesAsked: number | undefined;
  timeoutMs: number | undefined;
  skipBadLines: boolean;
}

/** Without --timeout-ms, how long a record may wait for its acknowledgement: Kafka's delivery.timeout.ms. */
export const PRODUCE_DELIVERY_TIMEOUT_MS = 120_000;
/** Room in a Produce frame for its envelope and the partition entry (as the SDK's sender keeps). */
const PRODUCE_FRAME_ENVELOPE_BYTES = 1024 + 64;
/** What gzip may add to bytes it cannot shrink, per byte and in all; the node bounds the compressed batch too. */
const GZIP_GROWTH = 1.01;
const GZIP_HEADER_BYTES = 256;
/** The SDK producer's estimate of a record's bytes beyond its key and value (varints, attributes). */
const RECORD_OVERHEAD_BYTES = 24;

export async function produce(topic: string, opts: NodeOptions, settings: ProduceSettings): Promise<void> {
  const { timeoutMs } = settings;
  const startedMs = Date.now();
  // From before connecting: --timeout-ms bounds the whole wait, the topic's metadata too.
  const deadline = new Deadline(timeoutMs, startedMs);
  const notices = new RetryNotices(timeoutMs);
  const connect = {
    connectTimeoutMs: timeoutMs ?? PRODUCE_DELIVERY_TIMEOUT_MS,
    onUnreachable: (reason: string, url: string) => notices.unreachable(url, reason),
    onConnect: () => notices.reachable(),
    // Past the deadline the socket is cut, not closed politely: a node that does not answer
    // would hold the command a second longer than --timeout-ms.
    closeHandshakeMs: () => (deadline.timedOut ? 0 : undefined),
  };
  try {
    await withClient(opts, (client) => produceLines(client, topic, settings, deadline, notices), connect);
  } catch (err) {
    deadline.clear();
    if (!(err instanceof ConnectionError)) throw err;
    const waited = timeoutMs === undefined ? '' : `gave up after --timeout-ms ${timeoutMs}; `;
    throw new Error(`${messageOf(err)} (${waited}nothing was sent)`);
  }
}

async function produceLines(client: Client, topic: string, settings: ProduceSettings, deadline: Deadline, notices: RetryNotices): Promise<void> {
  const meta = await deadline.until(new Admin(client).topicMetadata(topic));
  if (meta === 'expired') throw new Error(`gave up after --timeout-ms ${settings.timeoutMs}: node at ${client.url} did not answer for the topic's metadata (nothing was sent)`);
  const { partition } = settings;
  if (partition !== undefined && partition >= meta.partitions.length) throw new UsageError(`topic ${topic} has no partition ${partition} (it has ${meta.partitions.length})`);
  const limits = recordLimits(client, topic, meta.config['max.message.bytes'], settings.compression);
  const producer = producerFor(client, settings, limits, notices);
  const parse = lineParser(settings, limits);
  const outcome = new ProduceOutcome(() => notices.over('storage'));
  let lineNumber = 0;
  let skipped = 0;
  let refusedLine: { line: number; reason: string } | null = null;
  /** A bad line: refused, which stops the run, or with --skip-bad-lines named and skipped. */
  const bad = (reason: string): boolean => {
    const line = ++lineNumber;
    if (!settings.skipBadLines) {
      refusedLine = { line, reason };
      return false;
    }
    skipped++;
    process.stderr.write(`tributary: skipped line ${line}: ${reason}\n`);
    return true;
  };
  // The lines of one read of stdin go to the producer together: one call, no promise per
  // record. A bad line sends what came before it, so the lines of a call follow each other.
  let messages: ProducerMessage[] = [];
  const send = (): void => {
    if (messages.length === 0) return;
    producer.sendEach(topic, messages, outcome.sent(lineNumber - messages.length + 1, messages.length));
    messages = [];
  };
  const take = (line: Buffer): boolean => {
    if (outcome.failure !== null) return false;
    const parsed = parse(line);
    if ('refused' in parsed) {
      // What came before a refused line is sent; with --skip-bad-lines the rest follows.
      send();
      return bad(parsed.refused);
    }
    messages.push(parsed.message);
    lineNumber++;
    return true;
  };
  const sink: LineSink = {
    line: take,
    tooLong: (lineBytesMax) => {
      send();
      return bad(`longer than ${lineBytesMax} bytes, a record larger than ${limits.limitName} allows`);
    },
    // Backpressure: read more input only once the producer has room for what was read.
    room: async () => {
      send();
      return (await deadline.until(producer.whenWritable())) !== 'expired' && outcome.failure === null;
    },
  };
  // A line longer than any record can be is refused without holding all of it.
  const lineBytesMax = limits.recordBytesMax - RECORD_OVERHEAD_BYTES + (settings.separator?.length ?? 0) + 1;
  try {
    const rest = await readLines(process.stdin as AsyncIterable<Buffer>, lineBytesMax, sink);
    if (rest !== null && rest.length > 0 && !deadline.timedOut) take(rest);
    if (!deadline.timedOut) send();
  } catch (err) {
    // stdin destroyed at the deadline ends the read with an error; any other ends the run,
    // and its timer must not hold the process until the deadline.
    if (!deadline.timedOut) {
      deadline.clear();
      throw err;
    }
  } finally {
    process.stdin.destroy();
  }
  // Everything sent is answered (or fails) before the count is told, unless the deadline comes first.
  await deadline.until(producer.close().then(() => outcome.settled()));
  deadline.clear();
  if (deadline.timedOut) await client.close(); // what was on its way now fails; what was acknowledged stays counted
  report(outcome, { timeoutMs: deadline.timedOut ? settings.timeoutMs : undefined, refusedLine, skipped, waitingOn: notices.waitingOn });
}

// ---------------------------------------------------------------------------------------
// Limits and parsing.

interface RecordLimits {
  /** The largest record, key and value and overhead, that a batch the node takes can hold. */
  recordBytesMax: number;
  /** Which limit that is, for a refusal. */
  limitName: string;
}

/**
 * A batch the node would refuse as too large takes the records batched with it along:
 * batches stay within the topic's max.message.bytes and a frame, and a record that cannot
 * fit in either is refused here, by its line, before anything after it is sent.
 */
function recordLimits(client: Client, topic: string, maxMessageBytesConfig: unknown, compression: 'none' | 'gzip'): RecordLimits {
  const frameBytesMax = client.limits.frameBytesMax;
  const maxMessageBytes = typeof maxMessageBytesConfig === 'number' ? maxMessageBytesConfig : Number.POSITIVE_INFINITY;
  const batchLimitBytes = Math.min(maxMessageBytes, frameBytesMax - PRODUCE_FRAME_ENVELOPE_BYTES - Buffer.byteLength(topic)) - BATCH_OVERHEAD;
  const recordBytesMax = Math.floor(compression === 'gzip' ? (batchLimitBytes - GZIP_HEADER_BYTES) / GZIP_GROWTH : batchLimitBytes);
  const limitName = maxMessageBytes <= frameBytesMax ? `the topic's max.message.bytes ${maxMessageBytes}` : `the node's ${frameBytesMax}-byte frame limit`;
  return { recordBytesMax, limitName };
}

function producerFor(client: Client, settings: ProduceSettings, limits: RecordLimits, notices: RetryNotices): Producer {
  const deliveryTimeoutMs = settings.timeoutMs ?? PRODUCE_DELIVERY_TIMEOUT_MS;
  return new Producer(client, {
    acks: settings.acks,
    compression: settings.compression,
    lingerMs: settings.lingerMs,
    batchBytes: Math.max(1, Math.min(settings.batchBytesAsked ?? 256 * 1024, limits.recordBytesMax)),
    deliveryTimeoutMs,
    maxBlockMs: deliveryTimeoutMs,
    onRetry: (err) => {
      if (err.is(Errors.STORAGE_FULL)) notices.say('storage', `node at ${client.url} is out of storage (STORAGE_FULL)`);
      // A lost connection is announced by the reconnect attempts that fail, with their reason.
      else if (!err.is(Errors.NETWORK)) notices.say(err.errorName, `node at ${client.url} answered ${err.errorName}`);
    },
  });
}

/** One line to send, or why it may not be. */
type ParsedLine = { message: ProducerMessage } | { refused: string };

function lineParser(settings: ProduceSettings, limits: RecordLimits): (line: Buffer) => ParsedLine {
  const { keySeparator, separator, partition } = settings;
  return (line) => {
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1); // CRLF input
    let message: ProducerMessage;
    if (separator === null) message = { value: line };
    else {
      const at = line.indexOf(separator);
      if (at < 0) return { refused: `no key separator '${keySeparator}'` };
      message = { key: line.subarray(0, at), value: line.subarray(at + separator.length) };
    }
    const bytes = line.length - (separator === null ? 0 : separator.length) + RECORD_OVERHEAD_BYTES;
    if (bytes > limits.recordBytesMax) return { refused: `its ${line.length} bytes make a record larger than ${limits.limitName} allows` };
    if (partition !== undefined) message.partition = partition;
    return { message };
  };
}

// ---------------------------------------------------------------------------------------
// Reading stdin.

/** Where readLines hands what it reads; each answer says whether to read on. */
interface LineSink {
  /** A whole line, without its newline. */
  line(bytes: Buffer): boolean;
  /** A line longer than `lineBytesMax`, not kept; reading on skips the rest of it. */
  tooLong(lineBytesMax: number): boolean;
  /** Resolves once more input may be read, or false to stop. */
  room(): Promise<boolean>;
}

/**
 * Splits `input` into lines for `sink`, in order, until the sink says stop (then resolves
 * null) or the input ends: then resolves the last line, which had no newline.
 */
async function readLines(input: AsyncIterable<Buffer>, lineBytesMax: number, sink: LineSink): Promise<Buffer | null> {
  let carry: Buffer | null = null;
  /** Inside a line too long to keep, skipped up to its end. */
  let discarding = false;
  for await (const chunk of input) {
    let data: Buffer = chunk;
    if (discarding) {
      const nl = data.indexOf(0x0a);
      if (nl < 0) continue;
      data = data.subarray(nl + 1);
      discarding = false;
    }
    if (carry !== null) data = Buffer.concat([carry, data]);
    carry = null;
    let start = 0;
    for (let nl = data.indexOf(0x0a, start); nl >= 0; nl = data.indexOf(0x0a, start)) {
      if (!sink.line(data.subarray(start, nl))) return null;
      start = nl + 1;
    }
    if (start < data.length) carry = data.subarray(start);
    if (carry !== null && carry.length > lineBytesMax) {
      if (!sink.tooLong(lineBytesMax)) return null;
      carry = null;
      discarding = true;
    }
    if (!(await sink.room())) return null;
  }
  return carry;
}

/** --timeout-ms over the whole run, from before connecting: when it runs out, stdin is closed and every wait ends. */
class Deadline {
  private readonly once = new Once<'expired'>();
  private readonly timer: NodeJS.Timeout | null;

  constructor(timeoutMs: number | undefined, startedMs: number) {
    this.timer =
      timeoutMs === undefined
        ? null
        : setTimeout(() => {
            this.once.fire('expired');
            process.stdin.destroy();
          }, Math.max(0, startedMs + timeoutMs - Date.now()));
  }

  get timedOut(): boolean {
    return this.once.reason !== null;
  }

  /** `p`'s value, or 'expired' if the deadline comes first. */
  until<T>(p: Promise<T>): Promise<T | 'expired'> {
    return this.timer === null ? p : this.once.race(p);
  }

  clear(): void {
    if (this.timer !== null) clearTimeout(this.timer);
  }
}

// ---------------------------------------------------------------------------------------
// Retries, outcome and report.

/** The spell kinds of unreachable nodes begin so; the URL follows. */
const UNREACHABLE = 'unreachable ';

/**
 * Says at once, and once per spell, that produce is waiting on the node and why, so the user
 * sees a reason rather than a silent wait, and a give-up names it rather than "no answer".
 */
class RetryNotices {
  /** Why produce is waiting now, by kind; a kind leaves when its spell is over. */
  private readonly spells = new Map<string, string>();
  constructor(private readonly timeoutMs: number | undefined) {}

  say(kind: string, detail: string): void {
    if (this.spells.has(kind)) return;
    this.spells.set(kind, detail);
    const until = this.timeoutMs === undefined ? '--timeout-ms to give up sooner' : `until --timeout-ms ${this.timeoutMs}`;
    process.stderr.write(`tributary: ${detail}; retrying (${until})\n`);
  }

  /** One spell per node URL: with several --broker nodes, each one tried is named once. */
  unreachable(url: string, reason: string): void {
    this.say(`${UNREACHABLE}${url}`, `node unreachable at ${url} (${reason})`);
  }

  /** A connection is made: every node's unreachable spell is over. */
  reachable(): void {
    for (const kind of this.spells.keys()) if (kind.startsWith(UNREACHABLE)) this.spells.delete(kind);
  }

  over(kind: string): void {
    this.spells.delete(kind);
  }

  /** What produce is waiting on now, or null. */
  get waitingOn(): string | null {
    return this.spells.size === 0 ? null : [...this.spells.values()].join('; ');
  }
}

/** What became of each line sent: acknowledged, or the first (by line number) that failed. */
export class ProduceOutcome {
  acked = 0;
  sentCount = 0;
  failure: { line: number; err: Error } | null = null;
  /** Lines after the failed one that were acknowledged anyway (sent before the failure came): told exactly. */
  ackedAfterFailure = 0;
  /**
   * What became of each line from `base` on, at `states[head + line - base]`: WAITING,
   * ACKED or SETTLED (failed, or never sent). Every line below `base` is settled, so the
   * window spans only the lines in flight: a run of days (`tail -F | produce`) holds no more
   * than the producer's buffer does.
   */
  private states = new Uint8Array(4096);
  private head = 0;
  private base = 1;
  /** The line after the last one sent. */
  private next = 1;
  private outstanding = 0;
  private onSettled: (() => void) | null = null;

  constructor(private readonly onAck: () => void) {}

  /** Counts lines first..first+count-1 as sent; the callback to give Producer.sendEach for them. */
  sent(first: number, count: number): (index: number, result: RecordMetadata | null, err: Error | null) => void {
    this.sentCount += count;
    this.outstanding += count;
    this.extendTo(first, first + count);
    return (index, _result, err) => {
      const line = first + index;
      if (err === null) {
        this.acked++;
        if (this.failure !== null && line > this.failure.line) this.ackedAfterFailure++;
        this.settle(line, ACKED);
        this.onAck();
      } else {
        if (this.failure === null || line < this.failure.line) {
          this.failure = { line, err };
          this.ackedAfterFailure = this.countAckedAfter(line);
        }
        this.settle(line, SETTLED);
      }
      if (--this.outstanding === 0) this.onSettled?.();
    };
  }

  /** Resolves once every send is answered. */
  settled(): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise<void>((resolve) => (this.onSettled = resolve));
  }

  /** Makes room for lines up to `end`; lines skipped before `first` were never sent, so are settled. */
  private extendTo(first: number, end: number): void {
    const used = this.next - this.base;
    const needed = end - this.base;
    if (this.head + needed > this.states.length) {
      const states = needed > this.states.length / 2 ? new Uint8Array(Math.max(this.states.length * 2, needed)) : this.states;
      states.set(this.states.subarray(this.head, this.head + used));
      states.fill(WAITING, used);
      this.states = states;
      this.head = 0;
    }
    this.states.fill(SETTLED, this.head + used, this.head + (first - this.base));
    this.next = end;
    this.advance();
  }

  private settle(line: number, state: number): void {
    this.states[this.head + line - this.base] = state;
    this.advance();
  }

  private advance(): void {
    while (this.base < this.next && this.states[this.head] !== WAITING) {
      this.states[this.head++] = WAITING;
      this.base++;
    }
  }

  /** Acknowledged lines after `line`, which is in flight: all of them are in the window. */
  private countAckedAfter(line: number): number {
    let n = 0;
    for (let i = this.head + line - this.base + 1; i < this.head + this.next - this.base; i++) if (this.states[i] === ACKED) n++;
    return n;
  }
}

const WAITING = 0;
const ACKED = 1;
const SETTLED = 2;

interface RunEnd {
  /** Set when the run gave up at --timeout-ms. */
  timeoutMs: number | undefined;
  refusedLine: { line: number; reason: string } | null;
  skipped: number;
  waitingOn: string | null;
}

/** Tells the count on stderr, or throws the one line that says why produce stopped and what was produced. */
function report(outcome: ProduceOutcome, end: RunEnd): void {
  if (end.timeoutMs !== undefined) {
    const unknown = outcome.sentCount - outcome.acked;
    const why = end.waitingOn === null ? '' : `, ${end.waitingOn}`;
    throw new Error(
      `gave up after --timeout-ms ${end.timeoutMs}${why}: ${plural(outcome.acked, 'record')} acknowledged` +
        (unknown > 0 ? `; the other ${unknown} sent may or may not have been written` : ''),
    );
  }
  if (outcome.failure !== null) {
    const { line, err } = outcome.failure;
    const after = outcome.ackedAfterFailure;
    // A record that timed out while the node was unreachable says why, not just that no answer came.
    const why = end.waitingOn !== null && err instanceof TributaryError && err.retriable ? `${end.waitingOn}: ${messageOf(err)}` : messageOf(err);
    throw new Error(
      `line ${line} was not produced: ${why} (${plural(outcome.acked, 'record')} produced` +
        (after > 0 ? `, ${after} of them after line ${line}, sent before the refusal came` : '') +
        ')',
    );
  }
  if (end.refusedLine !== null) {
    const { line, reason } = end.refusedLine;
    throw new Error(`line ${line} refused: ${reason} (${plural(outcome.acked, 'record')} before it produced, none after it)`);
  }
  const skippedNote = end.skipped > 0 ? `, skipped ${plural(end.skipped, 'bad line')}` : '';
  process.stderr.write(`produced ${plural(outcome.acked, 'record')}${skippedNote}\n`);
}
