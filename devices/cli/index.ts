// The client half of the `tributary` command: Kafka-console-tool-like commands built on the
// SDK. Data goes to stdout, one record per line; status and errors go to stderr, an error
// as one line `tributary: <message>` with a non-zero exit code.
//
//   tributary topics create|list|describe|delete|alter|configs
//   tributary produce TOPIC   (stdin, one record per line)
//   tributary consume TOPIC   (stdout, one record per line; consume.ts)
//   tributary credentials revoke|publish-revocation   (revoke.ts)
//   tributary groups list|describe|reset-offsets   (groups.ts)
//
// Every command that talks to a node takes --broker and the auth flags --identity,
// --credential, --node-key, --fleet-key (common.ts), each with its environment fallback.

import type { Command } from 'commander';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { BATCH_OVERHEAD } from '../../protocol/record-batch.js';
import type { Client } from '../client.js';
import { ConnectionError, detailOf } from '../errors.js';
import { Admin, Producer, type ProducerMessage } from '../index.js';
import { messageOf, run, UsageError, withClient, withNode, type NodeOptions } from './common.js';
import { consumeInGroup, consumePartitions, type ConsumeOptions } from './consume.js';
import { registerGroupCommands } from './groups.js';
import { registerKeyCommands } from './keys.js';
import { table } from './output.js';
import { registerRevokeCommand } from './revoke.js';

export { DEFAULT_BROKER } from './common.js';

export function registerClientCommands(program: Command): void {
  const { credentials } = registerKeyCommands(program);
  registerRevokeCommand(credentials);
  registerTopicCommands(program);
  registerProduceCommand(program);
  registerConsumeCommand(program);
  registerGroupCommands(program);
}

// ---------------------------------------------------------------------------------------
// Shared plumbing.

function intArg(flag: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new UsageError(`${flag} must be an integer of at least ${min}, got '${value}'`);
  return n;
}

// ---------------------------------------------------------------------------------------
// topics

function registerTopicCommands(program: Command): void {
  const topics = program.command('topics').description('create, list, describe, alter and delete topics');

  withNode(topics.command('create <name>'))
    .description('create a topic')
    .requiredOption('--partitions <n>', 'number of partitions')
    .option('--config <key=value...>', 'topic settings by Kafka name, e.g. retention.ms=86400000', [])
    .action(
      run(async (name: string, opts: NodeOptions & { partitions: string; config: string[] }) => {
        const partitions = intArg('--partitions', opts.partitions, 1) as number;
        const config = parseConfig(opts.config);
        await withClient(opts, (client) => new Admin(client).createTopic(name, { partitions, config }));
        process.stdout.write(`created topic ${name} with ${partitions} partition${partitions === 1 ? '' : 's'}\n`);
      }),
    );

  withNode(topics.command('list'))
    .description('list topic names')
    .action(
      run(async (opts: NodeOptions) => {
        const names = await withClient(opts, (client) => new Admin(client).listTopics());
        if (names.length > 0) process.stdout.write(`${names.join('\n')}\n`);
      }),
    );

  withNode(topics.command('describe <name>'))
    .description('show partitions, leaders, offsets and config of a topic')
    .action(
      run(async (name: string, opts: NodeOptions) => {
        const d = await withClient(opts, (client) => new Admin(client).describeTopic(name));
        const config = Object.entries(d.config)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([k, v]) => `${k}=${v}`)
          .join(', ');
        const lines = [`Topic: ${d.name}\tPartitions: ${d.partitions.length}\tConfig: ${config || '(defaults)'}`];
        lines.push(
          ...table(
            ['PARTITION', 'LEADER', 'EPOCH', 'LOG-START', 'LOG-END', 'RECORDS'],
            d.partitions.map((p) => [p.partition, p.leader, p.leaderEpoch, p.logStartOffset, p.logEndOffset, p.logEndOffset - p.logStartOffset].map(String)),
          ),
        );
        process.stdout.write(`${lines.join('\n')}\n`);
      }),
    );

  withNode(topics.command('alter <name>'))
    .description("change a topic's configs at run time (all of them, or none if the node refuses one)")
    .option('--config <key=value...>', 'set a topic config by Kafka name, e.g. retention.ms=86400000 (repeatable)', [])
    .option('--delete-config <key...>', "remove the topic's own value of a config, back to the node default (repeatable)", [])
    .addHelpText('after', "\nKeys are Kafka's topic config names (docs/configuration.md); `tributary topics configs <name>`\nlists every key with its value and source. Each change applies from the next write that uses it.")
    .action(
      run(async (name: string, opts: NodeOptions & { config: string[]; deleteConfig: string[] }) => {
        const set = parseConfig(opts.config) ?? {};
        for (const key of opts.deleteConfig) if (key.trim() === '' || key.includes('=')) throw new UsageError(`--delete-config expects a config name, got '${key}'`);
        if (Object.keys(set).length === 0 && opts.deleteConfig.length === 0) throw new UsageError('nothing to change: give --config key=value or --delete-config key');
        await withClient(opts, (client) => new Admin(client).alterTopicConfigs(name, { set, delete: opts.deleteConfig }));
        const changed = [...Object.entries(set).map(([k, v]) => `${k}=${v}`), ...opts.deleteConfig.map((k) => `${k} (deleted)`)];
        process.stdout.write(`altered topic ${name}: ${changed.join(', ')}\n`);
      }),
    );

  withNode(topics.command('configs <name>'))
    .description('show every config of a topic: its value and source (topic: set on the topic, node: the node default, default: built in)')
    .action(
      run(async (name: string, opts: NodeOptions) => {
        const [d] = await withClient(opts, (client) => new Admin(client).describeTopicConfigs([name]));
        if (d.error) throw d.error;
        const rows = [...d.configs].sort((a, b) => a.name.localeCompare(b.name)).map((c) => [c.name, String(c.value), c.source]);
        process.stdout.write(`${table(['KEY', 'VALUE', 'SOURCE'], rows).join('\n')}\n`);
      }),
    );

  withNode(topics.command('delete <name>'))
    .description('delete a topic and its data')
    .action(
      run(async (name: string, opts: NodeOptions) => {
        await withClient(opts, (client) => new Admin(client).deleteTopic(name));
        process.stdout.write(`deleted topic ${name}\n`);
      }),
    );
}

function parseConfig(pairs: string[]): Record<string, string | number> | undefined {
  if (pairs.length === 0) return undefined;
  const config: Record<string, string | number> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--config expects key=value, got '${pair}'`);
    if (Object.prototype.hasOwnProperty.call(config, pair.slice(0, eq))) throw new UsageError(`--config sets '${pair.slice(0, eq)}' twice`);
    const value = pair.slice(eq + 1);
    // Numbers travel as numbers; the node validates each key either way.
    config[pair.slice(0, eq)] = /^-?\d+$/.test(value) && Number.isSafeInteger(Number(value)) ? Number(value) : value;
  }
  return config;
}

// ---------------------------------------------------------------------------------------
// produce

interface ProduceOptions extends NodeOptions {
  keySeparator?: string;
  partition?: string;
  acks: string;
  compression: string;
  lingerMs?: string;
  batchBytes?: string;
  skipBadLines?: boolean;
  timeoutMs?: string;
}

/** Without --timeout-ms, how long a record may wait for its acknowledgement: Kafka's delivery.timeout.ms. */
const PRODUCE_DELIVERY_TIMEOUT_MS = 120_000;
/** Room in a Produce frame for its envelope and the partition entry (as the SDK's sender keeps). */
const PRODUCE_FRAME_ENVELOPE_BYTES = 1024 + 64;
/** What gzip may add to bytes it cannot shrink, per byte and in all; the node bounds the compressed batch too. */
const GZIP_GROWTH = 1.01;
const GZIP_HEADER_BYTES = 256;
/** The SDK producer's estimate of a record's bytes beyond its key and value (varints, attributes). */
const RECORD_OVERHEAD_BYTES = 24;

function registerProduceCommand(program: Command): void {
  withNode(program.command('produce <topic>'))
    .description('send stdin to a topic, one record per line (key and value split at --key-separator)')
    .option('--key-separator <sep>', 'split each line into key and value at the first <sep>')
    .option('--partition <p>', 'send every record to this partition')
    .option('--acks <acks>', '0 (no answer), 1 (leader appended) or all', '1')
    .option('--compression <codec>', 'none or gzip', 'none')
    .option('--linger-ms <n>', 'longest wait for a batch to fill')
    .option('--batch-bytes <n>', 'batch size per partition')
    .option('--skip-bad-lines', 'skip a bad line (named on stderr) instead of stopping at it; exit code 0')
    .option('--timeout-ms <n>', `give up this long after starting: connecting, sending and acks (default: each record waits up to ${PRODUCE_DELIVERY_TIMEOUT_MS} ms)`)
    .addHelpText(
      'after',
      '\nA bad line is one without the key separator, or too large for the topic (max.message.bytes) or\n' +
        'a frame. Produce stops at the first: the records before it are produced, none after it, and it\n' +
        'exits 1 naming the line and the count. With --skip-bad-lines each bad line is named on stderr\n' +
        'and skipped, and the end says how many were produced and skipped. While the node is unreachable\n' +
        'or out of storage, produce says so on stderr and keeps trying. When --timeout-ms runs out it\n' +
        'exits 1 with the count acknowledged; the records not acknowledged may or may not have been written.',
    )
    .action(run((topic: string, opts: ProduceOptions) => produce(topic, opts)));
}

/** One line to send, or why it may not be. */
type ParsedLine = { message: ProducerMessage } | { refused: string };

/**
 * Says at once, and once per spell, that produce is waiting on the node and why, so the user
 * sees a reason rather than a silent wait, and a give-up names it rather than "no answer".
 */
class RetryNotices {
  /** Why produce is waiting now, by kind; a kind leaves when its spell is over. */
  private readonly spells = new Map<string, string>();
  constructor(
    private readonly broker: string,
    private readonly timeoutMs: number | undefined,
  ) {}

  say(kind: string, detail: string): void {
    if (this.spells.has(kind)) return;
    this.spells.set(kind, detail);
    const until = this.timeoutMs === undefined ? '--timeout-ms to give up sooner' : `until --timeout-ms ${this.timeoutMs}`;
    process.stderr.write(`tributary: ${detail}; retrying (${until})\n`);
  }

  unreachable(reason: string): void {
    this.say('unreachable', `node unreachable at ${this.broker} (${reason})`);
  }

  over(kind: string): void {
    this.spells.delete(kind);
  }

  /** What produce is waiting on now, or null. */
  get waitingOn(): string | null {
    return this.spells.size === 0 ? null : [...this.spells.values()].join('; ');
  }
}

async function produce(topic: string, opts: ProduceOptions): Promise<void> {
  const acks = parseAcks(opts.acks);
  if (opts.compression !== 'none' && opts.compression !== 'gzip') throw new UsageError(`--compression must be none or gzip, got '${opts.compression}'`);
  const partition = intArg('--partition', opts.partition, 0);
  const separator = opts.keySeparator === undefined ? null : Buffer.from(opts.keySeparator, 'utf8');
  if (separator !== null && separator.length === 0) throw new UsageError('--key-separator must not be empty');
  const lingerMs = intArg('--linger-ms', opts.lingerMs, 0);
  const batchBytesAsked = intArg('--batch-bytes', opts.batchBytes, 1);
  const timeoutMs = intArg('--timeout-ms', opts.timeoutMs, 1);
  const startedMs = Date.now();
  const notices = new RetryNotices(opts.broker, timeoutMs);
  const connect = {
    connectTimeoutMs: timeoutMs ?? PRODUCE_DELIVERY_TIMEOUT_MS,
    onUnreachable: (reason: string) => notices.unreachable(reason),
    onConnect: () => notices.over('unreachable'),
  };
  const settings = { acks, partition, separator, lingerMs, batchBytesAsked, timeoutMs, startedMs, notices };
  try {
    await withClient(opts, (client) => produceLines(client, topic, opts, settings), connect);
  } catch (err) {
    if (!(err instanceof ConnectionError)) throw err;
    const waited = timeoutMs === undefined ? '' : `gave up after --timeout-ms ${timeoutMs}; `;
    throw new Error(`${messageOf(err)} (${waited}nothing was sent)`);
  }
}

interface ProduceSettings {
  acks: 0 | 1 | -1;
  partition: number | undefined;
  separator: Buffer | null;
  lingerMs: number | undefined;
  batchBytesAsked: number | undefined;
  timeoutMs: number | undefined;
  startedMs: number;
  notices: RetryNotices;
}

async function produceLines(client: Client, topic: string, opts: ProduceOptions, settings: ProduceSettings): Promise<void> {
  const { acks, partition, separator, timeoutMs, notices } = settings;
  const meta = await new Admin(client).topicMetadata(topic);
  if (partition !== undefined && partition >= meta.partitions.length) throw new UsageError(`topic ${topic} has no partition ${partition} (it has ${meta.partitions.length})`);
  // A batch the node would refuse as too large takes the records batched with it along:
  // batches stay within the topic's max.message.bytes and a frame, and a record that
  // cannot fit in either is refused here, by its line, before anything after it is sent.
  const maxMessageBytes = typeof meta.config['max.message.bytes'] === 'number' ? meta.config['max.message.bytes'] : Number.POSITIVE_INFINITY;
  const batchLimitBytes = Math.min(maxMessageBytes, client.limits.frameBytesMax - PRODUCE_FRAME_ENVELOPE_BYTES - Buffer.byteLength(topic)) - BATCH_OVERHEAD;
  const recordBytesMax = Math.floor(opts.compression === 'gzip' ? (batchLimitBytes - GZIP_HEADER_BYTES) / GZIP_GROWTH : batchLimitBytes);
  const limitName = maxMessageBytes <= client.limits.frameBytesMax ? `the topic's max.message.bytes ${maxMessageBytes}` : `the node's ${client.limits.frameBytesMax}-byte frame limit`;
  const deliveryTimeoutMs = timeoutMs ?? PRODUCE_DELIVERY_TIMEOUT_MS;
  const producer = new Producer(client, {
    acks,
    compression: opts.compression as 'none' | 'gzip',
    lingerMs: settings.lingerMs,
    batchBytes: Math.max(1, Math.min(settings.batchBytesAsked ?? 256 * 1024, recordBytesMax)),
    deliveryTimeoutMs,
    maxBlockMs: deliveryTimeoutMs,
    onRetry: (err) => {
      if (err.is(Errors.STORAGE_FULL)) notices.say('storage', `node at ${client.url} is out of storage (STORAGE_FULL)`);
      // A lost connection is announced by the reconnect attempts that fail, with their reason.
      else if (!err.is(Errors.NETWORK)) notices.say(err.errorName, `node at ${client.url} answered ${err.errorName}`);
    },
  });

  let lineNumber = 0;
  const parse = (line: Buffer): ParsedLine => {
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1); // CRLF input
    let message: ProducerMessage;
    if (separator === null) message = { value: line };
    else {
      const at = line.indexOf(separator);
      if (at < 0) return { refused: `no key separator '${opts.keySeparator}'` };
      message = { key: line.subarray(0, at), value: line.subarray(at + separator.length) };
    }
    const bytes = line.length - (separator === null ? 0 : separator.length) + RECORD_OVERHEAD_BYTES;
    if (bytes > recordBytesMax) return { refused: `its ${line.length} bytes make a record larger than ${limitName} allows` };
    if (partition !== undefined) message.partition = partition;
    return { message };
  };

  const outcome = new ProduceOutcome(() => notices.over('storage'));
  let skipped = 0;
  let refusedLine: { line: number; reason: string } | null = null;
  // The whole run is bounded: past the deadline nothing more is read or sent.
  let expire: () => void = () => {};
  const expired = new Promise<'expired'>((resolve) => (expire = () => resolve('expired')));
  let timedOut = false;
  const deadline = timeoutMs === undefined ? null : setTimeout(() => {
    timedOut = true;
    expire();
    process.stdin.destroy();
  }, Math.max(0, settings.startedMs + timeoutMs - Date.now()));
  const skip = (line: number, reason: string) => {
    skipped++;
    process.stderr.write(`tributary: skipped line ${line}: ${reason}\n`);
  };
  /** Sends one line; false when reading must stop (a bad line, or a send already failed). */
  const take = (line: Buffer): boolean => {
    if (outcome.failure !== null) return false;
    const n = ++lineNumber;
    const parsed = parse(line);
    if ('refused' in parsed) {
      if (!opts.skipBadLines) {
        refusedLine = { line: n, reason: parsed.refused };
        return false;
      }
      skip(n, parsed.refused);
      return true;
    }
    outcome.sent(n, producer.send(topic, parsed.message));
    return true;
  };
  // A line longer than any record can be is refused without holding all of it.
  const lineBytesMax = recordBytesMax - RECORD_OVERHEAD_BYTES + (separator?.length ?? 0) + 1;
  try {
    let carry: Buffer | null = null;
    /** Inside a line too long to keep, skipped up to its end. */
    let discarding = false;
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
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
      let stop = false;
      for (let nl = data.indexOf(0x0a, start); nl >= 0 && !stop; nl = data.indexOf(0x0a, start)) {
        stop = !take(data.subarray(start, nl));
        start = nl + 1;
      }
      if (stop) break;
      if (start < data.length) carry = data.subarray(start);
      if (carry !== null && carry.length > lineBytesMax) {
        const reason = `longer than ${lineBytesMax} bytes, a record larger than ${limitName} allows`;
        if (!opts.skipBadLines) {
          refusedLine = { line: ++lineNumber, reason };
          break;
        }
        skip(++lineNumber, reason);
        carry = null;
        discarding = true;
      }
      // Backpressure: read more input only once the producer has room for it.
      if ((await Promise.race([producer.whenWritable(), expired])) === 'expired') break;
      if (outcome.failure !== null) break;
    }
    if (carry !== null && carry.length > 0 && refusedLine === null && !timedOut) take(carry);
  } catch (err) {
    if (!timedOut) throw err; // stdin destroyed at the deadline ends the read with an error
  } finally {
    process.stdin.destroy();
  }
  // Everything sent is answered (or fails) before the count is told, unless the deadline comes first.
  await Promise.race([producer.close().then(() => outcome.settled()), expired]);
  if (deadline !== null) clearTimeout(deadline);
  if (timedOut) {
    await client.close(); // what was on its way now fails; what was acknowledged stays counted
    const unknown = outcome.sentCount - outcome.acked;
    const why = notices.waitingOn === null ? '' : `, ${notices.waitingOn}`;
    throw new Error(
      `gave up after --timeout-ms ${timeoutMs}${why}: ${plural(outcome.acked, 'record')} acknowledged` +
        (unknown > 0 ? `; the other ${unknown} sent may or may not have been written` : ''),
    );
  }
  if (outcome.failure !== null) {
    const { line, err } = outcome.failure;
    const after = outcome.ackedAfter(line);
    // A record that timed out while the node was unreachable says why, not just that no answer came.
    const why = notices.waitingOn !== null && err instanceof TributaryError && err.retriable ? `${notices.waitingOn}: ${messageOf(err)}` : messageOf(err);
    throw new Error(
      `line ${line} was not produced: ${why} (${plural(outcome.acked, 'record')} produced` +
        (after > 0 ? `, ${after} of them after line ${line}, sent before the refusal came` : '') +
        ')',
    );
  }
  if (refusedLine !== null) {
    const { line, reason } = refusedLine;
    throw new Error(`line ${line} refused: ${reason} (${plural(outcome.acked, 'record')} before it produced, none after it)`);
  }
  const skippedNote = skipped > 0 ? `, skipped ${plural(skipped, 'bad line')}` : '';
  process.stderr.write(`produced ${plural(outcome.acked, 'record')}${skippedNote}\n`);
}

/** What became of each line sent: acknowledged, or the first (by line number) that failed. */
class ProduceOutcome {
  acked = 0;
  sentCount = 0;
  failure: { line: number; err: Error } | null = null;
  /** One bit per line, set once acknowledged: how many after a failed line were written is told exactly. */
  private ackedBits = new Uint8Array(1024);
  private outstanding = 0;
  private onSettled: (() => void) | null = null;

  constructor(private readonly onAck: () => void) {}

  sent(line: number, result: Promise<unknown>): void {
    this.sentCount++;
    this.outstanding++;
    result.then(
      () => {
        this.acked++;
        this.markAcked(line);
        this.onAck();
        this.done();
      },
      (err: unknown) => {
        if (this.failure === null || line < this.failure.line) this.failure = { line, err: err as Error };
        this.done();
      },
    );
  }

  ackedAfter(line: number): number {
    let n = 0;
    for (let l = line + 1; l < this.ackedBits.length * 8; l++) if ((this.ackedBits[l >> 3] & (1 << (l & 7))) !== 0) n++;
    return n;
  }

  /** Resolves once every send is answered. */
  settled(): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise<void>((resolve) => (this.onSettled = resolve));
  }

  private markAcked(line: number): void {
    if (line >> 3 >= this.ackedBits.length) {
      const grown = new Uint8Array(Math.max(this.ackedBits.length * 2, (line >> 3) + 1));
      grown.set(this.ackedBits);
      this.ackedBits = grown;
    }
    this.ackedBits[line >> 3] |= 1 << (line & 7);
  }

  private done(): void {
    if (--this.outstanding === 0) this.onSettled?.();
  }
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function parseAcks(value: string): 0 | 1 | -1 {
  if (value === '0') return 0;
  if (value === '1') return 1;
  if (value === 'all' || value === '-1') return -1;
  throw new UsageError(`--acks must be 0, 1 or all, got '${value}'`);
}

// ---------------------------------------------------------------------------------------
// consume (the run: consume.ts)

function registerConsumeCommand(program: Command): void {
  withNode(program.command('consume <topic>'))
    .description(
      'print records of a topic to stdout, one per line. Starts at the end of each partition ' +
        "(Kafka's latest) unless --from-beginning or --offset is given. With --group, the group's " +
        'members share the partitions and it starts where the group last committed.',
    )
    .option('--group <id>', 'consume as a member of this consumer group (commits only what reached stdout)')
    .option('--from-beginning', 'start at the first kept record of each partition')
    .option('--offset <n>', 'start at this offset (needs --partition)')
    .option('--partition <p>', 'read only this partition')
    .option('--max-messages <n>', 'stop after this many records')
    .option('--timeout-ms <n>', 'stop after this long without a record')
    .option('--print-key', 'print key<TAB>value (a null key prints as null)')
    .option('--print-offset', 'print partition:offset<TAB> first')
    .addHelpText('after', '\nValues print as UTF-8; CBOR values (content-type: application/cbor) print as JSON.')
    .action(run((topic: string, opts: ConsumeOptions) => consumeCommand(topic, opts)));
}

async function consumeCommand(topic: string, opts: ConsumeOptions): Promise<void> {
  const offset = intArg('--offset', opts.offset, 0);
  const onePartition = intArg('--partition', opts.partition, 0);
  const maxMessages = intArg('--max-messages', opts.maxMessages, 1) ?? Number.POSITIVE_INFINITY;
  const timeoutMs = intArg('--timeout-ms', opts.timeoutMs, 1);
  if (offset !== undefined && onePartition === undefined) throw new UsageError('--offset needs --partition');
  if (offset !== undefined && opts.fromBeginning) throw new UsageError('--offset and --from-beginning exclude each other');
  if (opts.group !== undefined && (offset !== undefined || onePartition !== undefined)) {
    throw new UsageError('--group takes the partitions the group gives it: leave out --offset and --partition');
  }
  if (opts.group !== undefined) return consumeInGroup(topic, opts.group, opts, { maxMessages, timeoutMs });
  return consumePartitions(topic, opts, { partition: onePartition, offset }, { maxMessages, timeoutMs });
}
