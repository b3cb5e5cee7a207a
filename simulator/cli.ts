// `tributary sim SCENARIO.yaml`: runs a scenario (run.ts) and writes its report: report.json
// and report.html in --out, the summary on stdout (or the JSON with --json). Exit code 0 when
// the verifier found nothing wrong, 1 on loss, duplication or reordering (or a failed run),
// 2 for a bad scenario (an INVALID_CONFIG, turned into one line per mistake by main.ts).

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { parseDecimalInteger } from '../protocol/decimal.js';
import { Errors, TributaryError } from '../protocol/errors.js';

interface SimFlags {
  out?: string;
  json?: boolean;
  nodeUrl?: string;
  devices?: string;
  duration?: string;
}

/**
 * A flag's number, in decimal digits as every number of the command line ('1e3', '0x10',
 * ' 7' and '7.0' are refused, naming the flag); its range is the scenario's to check.
 */
function decimalFlag(flag: string, value: string): number {
  const n = parseDecimalInteger(value);
  if (n === undefined) throw new TributaryError(Errors.INVALID_CONFIG, `${flag} must be a decimal integer, got '${value}'`);
  return n;
}

export function registerSimCommand(program: Command): void {
  program
    .command('sim')
    .description('run a fleet simulation scenario (simulator/scenarios/*.yaml) and report throughput, latency and the verifier\'s verdict')
    .argument('<scenario>', 'scenario YAML file')
    .option('--out <dir>', 'report folder (default ./sim-report-<time>)')
    .option('--json', 'print the run result as JSON instead of the summary')
    .option('--node-url <url>', 'attach to this node instead of the scenario\'s (node kill/restart actions then refuse)')
    .option('--devices <n>', 'override the scenario\'s device count')
    .option('--duration <s>', 'override the scenario\'s duration, seconds')
    .action(async (path: string, flags: SimFlags) => {
      // Loaded here, not at the top: every `tributary` command (a node's `start` too) imports
      // this file, and should not carry the YAML parser, HdrHistogram and the report.
      const [{ loadScenario }, { runScenario }, { htmlReport, terminalSummary }] = await Promise.all([import('./scenario.js'), import('./run.js'), import('./report.js')]);
      const overrides: Record<string, unknown> = {};
      if (flags.nodeUrl !== undefined) overrides.node = { url: flags.nodeUrl };
      if (flags.devices !== undefined) overrides.devices = decimalFlag('--devices', flags.devices);
      if (flags.duration !== undefined) overrides.duration = decimalFlag('--duration', flags.duration);
      const scenario = loadScenario(path, overrides);
      const result = await runScenario(scenario, { progress: process.stderr });
      const out = resolve(flags.out ?? `sim-report-${result.startedAt.replace(/[:.]/g, '-')}`);
      mkdirSync(out, { recursive: true });
      writeFileSync(join(out, 'report.json'), `${JSON.stringify(result, null, 2)}\n`);
      writeFileSync(join(out, 'report.html'), htmlReport(result));
      if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      else process.stdout.write(`${terminalSummary(result, { color: process.stdout.isTTY === true })}\n`);
      process.stderr.write(`report: ${join(out, 'report.html')}\n`);
      process.exitCode = result.verdict.ok ? 0 : 1;
    });
}
