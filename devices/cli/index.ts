// The client half of the `tributary` command: Kafka-console-tool-like commands built on the
// SDK. Data goes to stdout, one record per line; status and errors go to stderr, an error
// as one line `tributary: <message>` with a non-zero exit code.
//
//   tributary topics create|list|describe|delete|alter|configs
//   tributary produce TOPIC   (stdin, one record per line; produce.ts)
//   tributary consume TOPIC   (stdout, one record per line; consume.ts)
//   tributary credentials revoke|publish-revocation   (revoke.ts)
//   tributary groups list|describe|reset-offsets   (groups.ts)
//
// Every command that talks to a node takes --broker and the auth flags --identity,
// --credential, --node-key, --fleet-key (common.ts), each with its environment fallback.

import type { Command } from 'commander';
import { parseDecimalInteger } from '../../protocol/decimal.js';
import { Admin } from '../index.js';
import { run, UsageError, withClient, withNode, type NodeOptions } from './common.js';
import { consumeInGroup, consumePartitions, type ConsumeOptions } from './consume.js';
import { registerGroupCommands } from './groups.js';
import { registerKeyCommands } from './keys.js';
import { plural, table } from './output.js';
import { produce, PRODUCE_DELIVERY_TIMEOUT_MS, type ProduceOptions } from './produce.js';
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
        process.stdout.write(`created topic ${name} with ${plural(partitions, 'partition')}\n`);
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
// produce (the run: produce.ts)

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
    .action(run((topic: string, opts: ProduceOptions) => produceCommand(topic, opts)));
}

async function produceCommand(topic: string, opts: ProduceOptions): Promise<void> {
  const acks = parseAcks(opts.acks);
  if (opts.compression !== 'none' && opts.compression !== 'gzip') throw new UsageError(`--compression must be none or gzip, got '${opts.compression}'`);
  const partition = intArg('--partition', opts.partition, 0);
  const separator = opts.keySeparator === undefined ? null : Buffer.from(opts.keySeparator, 'utf8');
  if (separator !== null && separator.length === 0) throw new UsageError('--key-separator must not be empty');
  const lingerMs = intArg('--linger-ms', opts.lingerMs, 0);
  const batchBytesAsked = intArg('--batch-bytes', opts.batchBytes, 1);
  const timeoutMs = intArg('--timeout-ms', opts.timeoutMs, 1);
  const skipBadLines = opts.skipBadLines === true;
  await produce(topic, opts, { acks, compression: opts.compression, partition, keySeparator: opts.keySeparator, separator, lingerMs, batchBytesAsked, timeoutMs, skipBadLines });
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
