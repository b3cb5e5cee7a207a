// `tributary config check FILE`: everything `tributary start --config FILE` would check
// before touching the data folder (every setting, topic defaults, the fleet key rule, and
// the key and credential files it names), with one line per mistake and exit code 2.

import type { Command } from 'commander';
import { authOptions, resolveConfig } from './start.js';

export function registerConfigCommand(program: Command): void {
  program
    .command('config')
    .description('node configuration files')
    .command('check <file>')
    .description('check a YAML config as `tributary start --config` would: one line per mistake, exit code 2')
    .action((file: string) => {
      const config = resolveConfig({ config: file });
      authOptions(config);
      process.stdout.write(`config ok: ${file}\n`);
    });
}
