#!/usr/bin/env node
// The `tributary` command. `start` runs a node (node/); every other command is a client of a
// node, built on the SDK's console tools (devices/cli). This entry point is the one place
// where node/ reaches into devices/: it only composes the two command sets, so the broker
// itself never depends on the SDK.

import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { registerClientCommands } from '../../devices/cli/index.js';
import { guardStdout } from '../../devices/cli/output.js';
import { registerConfigCommand } from './config-check.js';
import { registerServiceCommand } from './service.js';
import { registerStartCommand } from './start.js';
import { registerSimCommand } from '../../simulator/cli.js';

export async function main(argv: string[]): Promise<number> {
  const program = new Command('tributary')
    .description('Event streaming from the edge to the datacenter')
    .version(VERSION)
    // Usage mistakes are one line like every other error: "tributary: <what is wrong>".
    .configureOutput({ outputError: (message, write) => write(`tributary: ${message.replace(/^error: /, '').trim()} (see --help)\n`) })
    .exitOverride();
  registerStartCommand(program);
  registerConfigCommand(program);
  registerServiceCommand(program);
  registerClientCommands(program);
  registerSimCommand(program);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    // A configuration mistake is one line per mistake and exit code 2, so a service manager
    // (and a person) can tell a bad config from a node that failed.
    if (err instanceof TributaryError && err.is(Errors.INVALID_CONFIG)) {
      for (const line of err.detail.split('\n')) process.stderr.write(`tributary: ${line}\n`);
      return 2;
    }
    process.stderr.write(`tributary: ${(err as Error).message}\n`);
    return 1;
  }
}

// Compiled to dist/node/cli/, three folders below the package root.
const VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

// Run when executed as the `tributary` binary (not when imported by tests).
const invokedDirectly = process.argv[1] !== undefined && import.meta.url === (await import('node:url')).pathToFileURL((await import('node:fs')).realpathSync(process.argv[1])).href;
if (invokedDirectly) {
  // Help, lists and tables piped into `head` must end quietly, not with an EPIPE stack trace.
  guardStdout();
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
