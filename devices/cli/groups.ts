// tributary groups list | describe G | reset-offsets G --topic T (--to-earliest |
//   --to-latest | --to-offset N | --to-datetime ISO) [--execute]
//
// As Kafka's kafka-consumer-groups: describe shows each partition committed or assigned,
// its committed offset, log end offset (the high watermark), the lag between them and the
// member it is assigned to, and refuses a group that does not exist; reset-offsets works
// only on a group with no live members (a live one would commit over it) and only prints
// its plan unless --execute is given.

import type { Command } from 'commander';
import { parseDecimalInteger } from '../../protocol/decimal.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { Kind } from '../../protocol/frames.js';
import { Admin } from '../admin.js';
import { wireError } from '../errors.js';
import { run, UsageError, withClient, withNode, type NodeOptions } from './common.js';
import { plural, table } from './output.js';

interface ResetOptions extends NodeOptions {
  topic: string;
  toEarliest?: boolean;
  toLatest?: boolean;
  toOffset?: string;
  toDatetime?: string;
  execute?: boolean;
}

export function registerGroupCommands(program: Command): void {
  const groups = program.command('groups').description('consumer groups: members, committed offsets, lag, and resetting offsets');

  withNode(groups.command('list'))
    .description('list groups with live members or committed offsets')
    .action(
      run(async (opts: NodeOptions) => {
        const answer = await withClient(opts, (client) => client.request(Kind.ListGroups, {}));
        if (answer.groups.length === 0) return;
        process.stdout.write(`${table(['GROUP', 'MEMBERS'], answer.groups.map((g) => [g.groupId, String(g.members)])).join('\n')}\n`);
      }),
    );

  withNode(groups.command('describe <group>'))
    .description('show members, assignments, committed offsets and lag per partition')
    .action(
      run(async (group: string, opts: NodeOptions) => {
        // A group the node does not know is GROUP_ID_NOT_FOUND: one line and exit code 1.
        const d = await withClient(opts, (client) => client.request(Kind.DescribeGroup, { groupId: group }));
        const owner = new Map<string, string>();
        for (const m of d.members) for (const tp of m.assignment) owner.set(tp, m.memberId);
        const shown = (n: number) => (n < 0 ? '-' : String(n));
        // The node answers every partition committed or assigned, each with its log end.
        const rows = d.offsets.map((o) => [o.topic, String(o.partition), shown(o.committed), shown(o.highWatermark), shown(o.lag), owner.get(`${o.topic}/${o.partition}`) ?? '-']);
        // Members given no partition (more members than partitions) are shown too, as Kafka does.
        for (const m of d.members) if (m.assignment.length === 0) rows.push(['-', '-', '-', '-', '-', m.memberId]);
        const lines = [`Group: ${d.groupId}\tMembers: ${d.members.length}\tEpoch: ${d.epoch}`];
        lines.push(...table(['TOPIC', 'PARTITION', 'CURRENT-OFFSET', 'LOG-END-OFFSET', 'LAG', 'CONSUMER-ID'], rows));
        process.stdout.write(`${lines.join('\n')}\n`);
      }),
    );

  withNode(groups.command('reset-offsets <group>'))
    .description("move a group's committed offsets (the group must have no live members)")
    .requiredOption('--topic <topic>', 'the topic whose offsets to move (every partition)')
    .option('--to-earliest', 'to the first kept record')
    .option('--to-latest', 'to the end: skip everything not yet read')
    .option('--to-offset <n>', 'to this offset (kept within each partition)')
    .option('--to-datetime <iso>', 'to the first record at or after this time, e.g. 2026-11-27T08:00:00Z')
    .option('--execute', 'commit the new offsets (without it, only print the plan)')
    .action(
      run(async (group: string, opts: ResetOptions) => {
        const targets = [opts.toEarliest, opts.toLatest, opts.toOffset !== undefined, opts.toDatetime !== undefined].filter(Boolean).length;
        if (targets !== 1) throw new UsageError('give exactly one of --to-earliest, --to-latest, --to-offset and --to-datetime');
        let offset: number | undefined;
        if (opts.toOffset !== undefined) {
          offset = parseDecimalInteger(opts.toOffset);
          if (offset === undefined || offset < 0) throw new UsageError(`--to-offset must be a non-negative decimal integer, got '${opts.toOffset}'`);
        }
        let time: number | undefined;
        if (opts.toDatetime !== undefined) {
          time = Date.parse(opts.toDatetime);
          if (Number.isNaN(time) || time < 0) throw new UsageError(`--to-datetime must be an ISO date and time, got '${opts.toDatetime}'`);
        }
        const plan = await withClient(opts, async (client) => {
          // A group nobody has used yet has no members: its first offsets may be set.
          const d = await client.request(Kind.DescribeGroup, { groupId: group }).catch((err: unknown) => {
            if (err instanceof TributaryError && err.is(Errors.GROUP_ID_NOT_FOUND)) return { members: [] };
            throw err;
          });
          if (d.members.length > 0) {
            throw new TributaryError(Errors.INVALID_REQUEST, `group ${group} has ${plural(d.members.length, 'live member')}; stop them before resetting its offsets`);
          }
          const admin = new Admin(client);
          const meta = await admin.topicMetadata(opts.topic);
          const partitions = meta.partitions.map((p) => p.partition).sort((a, b) => a - b);
          const bounds = await admin.listOffsets(partitions.flatMap((partition) => [{ topic: opts.topic, partition, at: 'earliest' as const }, { topic: opts.topic, partition, at: 'latest' as const }]));
          const byTime = time === undefined ? [] : await admin.listOffsets(partitions.map((partition) => ({ topic: opts.topic, partition, at: time as number })));
          const rows = partitions.map((partition, i) => {
            const earliest = bounds[2 * i].offset ?? 0;
            const latest = bounds[2 * i + 1].offset ?? 0;
            let target: number;
            if (opts.toEarliest) target = earliest;
            else if (opts.toLatest) target = latest;
            else if (offset !== undefined) target = Math.min(Math.max(offset, earliest), latest);
            else target = byTime[i].offset ?? latest; // nothing at or after that time: the end
            return { partition, target };
          });
          if (opts.execute) {
            const answer = await client.request(Kind.OffsetCommit, { groupId: group, offsets: rows.map((r) => ({ topic: opts.topic, partition: r.partition, offset: r.target })) });
            for (const p of answer.partitions) if (p.error !== Errors.NONE.code) throw wireError(p.error, p.message);
          }
          return rows;
        });
        const lines = table(['TOPIC', 'PARTITION', 'NEW-OFFSET'], plan.map((r) => [opts.topic, String(r.partition), String(r.target)]));
        process.stdout.write(`${lines.join('\n')}\n`);
        if (!opts.execute) process.stderr.write('dry run: nothing committed; add --execute to commit these offsets\n');
      }),
    );
}
