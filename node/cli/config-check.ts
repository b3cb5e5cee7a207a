// `tributary config check FILE`: everything `tributary start --config FILE` checks before it
// binds its port or touches the data folder (every setting, topic defaults, the fleet key
// rule, the key and credential files it names and the credential itself), with one line
// per mistake and exit code 2. TRIBUTARY_* variables count, as they would for the start.

import type { Command } from 'commander';
import { prepareStart } from './start.js';

export function registerConfigCommand(program: Command): void {
  program
    .command('config')
    .description('node configuration files')
    .command('check <file>')
    .description('check a YAML config as `tributary start --config` would: one line per mistake, exit code 2')
    .action((file: string) => {
      prepareStart({ config: file });
      process.stdout.write(`config ok: ${file}\n`);
    });
}
