// The client half of the `tributary` command: Kafka-console-tool-like commands built on the
// SDK. Data goes to stdout, one record per line; status and errors go to stderr, an error
// as one line `tributary: <message>` with a non-zero exit code.
//
//   tributary topics create|list|describe|delete|alter|configs
//   tributary produce TOPIC   (stdin, one record per line)
//   tributary consume TOPIC   (stdout, one record per line)
//   tributary credentials revoke   (revoke.ts)
//   tributary groups list|describe|reset-offsets   (groups.ts)
//
// Every command that talks to a node takes --broker and the auth flags --identity,
// --credential, --node-key, --fleet-key (common.ts), each with its environment fallback.

import type { Command } from 'commander';
import { parseDecimalInteger } from '../../protocol/decimal.js';
import { Admin, Consumer, GroupConsumer, Producer, type ProducerMessage } from '../index.js';
import { cborDecode, CONTENT_TYPE, isCborMarked } from '../serde.js';
import { messageOf, run, UsageError, withClient, withNode, type NodeOptions } from './common.js';
import { registerGroupCommands } from './groups.js';
import { registerKeyCommands } from './keys.js';
import { LineWriter, table } from './output.js';
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
  const n = parseDecimalInteger(value);
  if (n === undefined || n < min) throw new UsageError(`${flag} must be a decimal integer of at least ${min}, got '${value}'`);
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
    // Numbers travel as numbers; anything else ('0x10', '1e6') as the text typed, which the
    // node refuses for a numeric key, naming it.
    config[pair.slice(0, eq)] = parseDecimalInteger(value) ?? value;
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
}

function registerProduceCommand(program: Command): void {
  withNode(program.command('produce <topic>'))
    .description('send stdin to a topic, one record per line (key and value split at --key-separator)')
    .option('--key-separator <sep>', 'split each line into key and value at the first <sep>')
    .option('--partition <p>', 'send every record to this partition')
    .option('--acks <acks>', '0 (no answer), 1 (leader appended) or all', '1')
    .option('--compression <codec>', 'none or gzip', 'none')
    .option('--linger-ms <n>', 'longest wait for a batch to fill')
    .option('--batch-bytes <n>', 'batch size per partition')
    .action(run((topic: string, opts: ProduceOptions) => produce(topic, opts)));
}

async function produce(topic: string, opts: ProduceOptions): Promise<void> {
  const acks = parseAcks(opts.acks);
  if (opts.compression !== 'none' && opts.compression !== 'gzip') throw new UsageError(`--compression must be none or gzip, got '${opts.compression}'`);
  const partition = intArg('--partition', opts.partition, 0);
  const separator = opts.keySeparator === undefined ? null : Buffer.from(opts.keySeparator, 'utf8');
  if (separator !== null && separator.length === 0) throw new UsageError('--key-separator must not be empty');
  await withClient(opts, async (client) => {
    const producer = new Producer(client, {
      acks,
      compression: opts.compression as 'none' | 'gzip',
      lingerMs: intArg('--linger-ms', opts.lingerMs, 0),
      batchBytes: intArg('--batch-bytes', opts.batchBytes, 1),
    });
    let acked = 0;
    let failure: Error | null = null;
    const track = (sent: Promise<unknown[]>) =>
      sent.then(
        (r) => void (acked += r.length),
        (err: unknown) => void (failure ??= err as Error),
      );
    const pending: Promise<void>[] = [];
    let lineNumber = 0;
    const lineBytesMax = client.limits.frameBytesMax;
    const toMessage = (line: Buffer): ProducerMessage => {
      lineNumber++;
      if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1); // CRLF input
      if (separator === null) return partition === undefined ? { value: line } : { value: line, partition };
      const at = line.indexOf(separator);
      if (at < 0) throw new UsageError(`no key separator '${opts.keySeparator}' found on line ${lineNumber}`);
      const message: ProducerMessage = { key: line.subarray(0, at), value: line.subarray(at + separator.length) };
      if (partition !== undefined) message.partition = partition;
      return message;
    };
    let inputError: Error | null = null;
    try {
      let carry: Buffer | null = null;
      for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
        const data: Buffer = carry === null ? chunk : Buffer.concat([carry, chunk]);
        carry = null;
        const messages: ProducerMessage[] = [];
        let start = 0;
        try {
          for (let nl = data.indexOf(0x0a, start); nl >= 0; nl = data.indexOf(0x0a, start)) {
            messages.push(toMessage(data.subarray(start, nl)));
            start = nl + 1;
          }
        } catch (err) {
          // The lines before a bad one are still sent, as Kafka's console producer does.
          if (messages.length > 0) pending.push(track(producer.sendBatch(topic, messages)));
          throw err;
        }
        if (start < data.length) {
          carry = data.subarray(start);
          if (carry.length > lineBytesMax) throw new UsageError(`line ${lineNumber + 1} is longer than the node's ${lineBytesMax}-byte frame limit`);
        }
        if (messages.length > 0) pending.push(track(producer.sendBatch(topic, messages)));
        // Backpressure: read more input only once the producer has room for it.
        await producer.whenWritable();
        if (failure !== null) break;
      }
      if (carry !== null && carry.length > 0 && failure === null) pending.push(track(producer.sendBatch(topic, [toMessage(carry)])));
    } catch (err) {
      inputError = err as Error;
    }
    await producer.close();
    await Promise.all(pending);
    if (inputError !== null) throw new Error(`${inputError.message} (${acked} earlier record${acked === 1 ? ' was' : 's were'} produced)`);
    if (failure !== null) throw new Error(`${messageOf(failure)} (${acked} record${acked === 1 ? ' was' : 's were'} produced)`);
    process.stderr.write(`produced ${acked} record${acked === 1 ? '' : 's'}\n`);
  });
}

function parseAcks(value: string): 0 | 1 | -1 {
  if (value === '0') return 0;
  if (value === '1') return 1;
  if (value === 'all' || value === '-1') return -1;
  throw new UsageError(`--acks must be 0, 1 or all, got '${value}'`);
}

// ---------------------------------------------------------------------------------------
// consume

interface ConsumeOptions extends NodeOptions {
  group?: string;
  fromBeginning?: boolean;
  offset?: string;
  partition?: string;
  maxMessages?: string;
  timeoutMs?: string;
  printKey?: boolean;
  printOffset?: boolean;
}

function registerConsumeCommand(program: Command): void {
  withNode(program.command('consume <topic>'))
    .description(
      'print records of a topic to stdout, one per line. Starts at the end of each partition ' +
        "(Kafka's latest) unless --from-beginning or --offset is given. With --group, the group's " +
        'members share the partitions and it starts where the group last committed.',
    )
    .option('--group <id>', 'consume as a member of this consumer group (commits what it printed)')
    .option('--from-beginning', 'start at the first kept record of each partition')
    .option('--offset <n>', 'start at this offset (needs --partition)')
    .option('--partition <p>', 'read only this partition')
    .option('--max-messages <n>', 'stop after this many records')
    .option('--timeout-ms <n>', 'stop after this long without a record')
    .option('--print-key', 'print key<TAB>value (a null key prints as null)')
    .option('--print-offset', 'print partition:offset<TAB> first')
    .addHelpText('after', '\nValues print as UTF-8; CBOR values (content-type: application/cbor) print as JSON.')
    .action(run((topic: string, opts: ConsumeOptions) => consume(topic, opts)));
}

/**
 * `consume --group`: a group member printing records one at a time, so that what it
 * commits (on a timer, before giving a partition up, and when it stops) never covers a
 * record it has not printed: at-least-once, like Kafka's console consumer with a group.
 */
async function consumeInGroup(topic: string, groupId: string, opts: ConsumeOptions, maxMessages: number, timeoutMs: number | undefined): Promise<void> {
  await withClient(opts, async (client) => {
    await new Admin(client).topicMetadata(topic); // a missing topic is one clear line, not a silent wait
    const member = new GroupConsumer(client, { groupId, topics: [topic], autoOffsetReset: opts.fromBeginning ? 'earliest' : 'latest' });
    const out = new LineWriter(process.stdout);
    const { stopped, dispose: stopListening } = untilSignal();
    let printed = 0;
    const records = member[Symbol.asyncIterator]();
    // A read still waiting when we stop may yet hand out a record, which the group then
    // counts as consumed: it is printed after all rather than skipped.
    let waiting: Promise<IteratorResult<PrintableRecord>> | null = null;
    try {
      while (printed < maxMessages && !out.broken) {
        waiting = records.next();
        const next = await nextOrStop(waiting, Promise.race([stopped, out.whenBroken]), timeoutMs);
        if (next === 'stop' || next === 'broken' || next === 'timeout' || next.done) break;
        waiting = null;
        const wait = out.write(formatRecord(next.value, opts));
        if (wait) await wait;
        printed++;
      }
    } finally {
      stopListening();
      const closing = member.close(); // commits what was handed out and leaves the group
      const late = waiting === null ? null : await waiting.catch(() => null);
      if (late && !late.done && !out.broken) {
        out.write(formatRecord(late.value, opts));
        printed++;
      }
      await out.flush();
      out.dispose();
      await closing;
    }
    process.stderr.write(`consumed ${printed} record${printed === 1 ? '' : 's'}\n`);
  });
}

async function consume(topic: string, opts: ConsumeOptions): Promise<void> {
  const offset = intArg('--offset', opts.offset, 0);
  const onePartition = intArg('--partition', opts.partition, 0);
  const maxMessages = intArg('--max-messages', opts.maxMessages, 1) ?? Number.POSITIVE_INFINITY;
  const timeoutMs = intArg('--timeout-ms', opts.timeoutMs, 1);
  if (offset !== undefined && onePartition === undefined) throw new UsageError('--offset needs --partition');
  if (offset !== undefined && opts.fromBeginning) throw new UsageError('--offset and --from-beginning exclude each other');
  if (opts.group !== undefined && (offset !== undefined || onePartition !== undefined)) {
    throw new UsageError('--group takes the partitions the group gives it: leave out --offset and --partition');
  }
  if (opts.group !== undefined) return consumeInGroup(topic, opts.group, opts, maxMessages, timeoutMs);

  await withClient(opts, async (client) => {
    const meta = await new Admin(client).topicMetadata(topic);
    const count = meta.partitions.length;
    if (onePartition !== undefined && onePartition >= count) throw new UsageError(`topic ${topic} has no partition ${onePartition} (it has ${count})`);
    const partitions = onePartition !== undefined ? [onePartition] : meta.partitions.map((p) => p.partition);
    const consumer = new Consumer(client, { autoOffsetReset: opts.fromBeginning ? 'earliest' : 'latest' });
    consumer.assign(partitions.map((partition) => (offset === undefined ? { topic, partition } : { topic, partition, offset })));
    const out = new LineWriter(process.stdout);
    const { stopped, dispose: stopListening } = untilSignal();
    let printed = 0;
    try {
      const batches = consumer.batches()[Symbol.asyncIterator]();
      while (printed < maxMessages && !out.broken) {
        const next = await nextOrStop(batches.next(), Promise.race([stopped, out.whenBroken]), timeoutMs);
        if (next === 'stop' || next === 'broken' || next === 'timeout' || next.done) break;
        for (const r of next.value) {
          const wait = out.write(formatRecord(r, opts));
          if (wait) await wait;
          if (++printed >= maxMessages || out.broken) break;
        }
      }
      await out.flush();
    } finally {
      stopListening();
      out.dispose();
      await consumer.close();
    }
    process.stderr.write(`consumed ${printed} record${printed === 1 ? '' : 's'}\n`);
  });
}

/** Resolves 'stop' on SIGINT or SIGTERM until disposed: a console consumer stops cleanly. */
function untilSignal(): { stopped: Promise<'stop'>; dispose(): void } {
  let stop: () => void = () => {};
  const stopped = new Promise<'stop'>((resolve) => (stop = () => resolve('stop')));
  const onSignal = () => stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    stopped,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

async function nextOrStop<T, S>(next: Promise<T>, stopped: Promise<S>, timeoutMs: number | undefined): Promise<T | S | 'timeout'> {
  if (timeoutMs === undefined) return Promise.race([next, stopped]);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  try {
    return await Promise.race([next, stopped, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface PrintableRecord {
  partition: number;
  offset: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: [string, Uint8Array | null][];
}

function formatRecord(r: PrintableRecord, opts: ConsumeOptions): string {
  const value = r.value === null ? 'null' : isCborMarked(r.headers, CONTENT_TYPE) ? cborAsJson(r.value) : r.value.toString('utf8');
  let line = value;
  if (opts.printKey) line = `${r.key === null ? 'null' : r.key.toString('utf8')}\t${line}`;
  if (opts.printOffset) line = `${r.partition}:${r.offset}\t${line}`;
  return line;
}

function cborAsJson(bytes: Buffer): string {
  try {
    return JSON.stringify(cborDecode(bytes), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    return bytes.toString('utf8');
  }
}
