// Identity and fleet commands, all offline: no node is needed to make keys or to sign a
// credential, so a fleet can be provisioned from a laptop and a gateway admits the device
// while it has no uplink.
//
//   tributary keys generate --out FILE [--force]     a device, app, node or admin identity
//   tributary keys show FILE                         print a key file's public key
//   tributary fleet init --out FILE [--force]        the fleet authority's key
//   tributary credentials issue --fleet FILE --subject PUBKEY --role ROLE
//       [--produce PATTERN ...] [--consume PATTERN ...] [--group PATTERN ...] [--expires 90d] --out FILE
//
// `credentials revoke` (which also signs offline, with --out) and `publish-revocation` talk
// to a node, so they live with the client commands (revoke.ts), under the `credentials`
// command made here.

import type { Command } from 'commander';
import { issueCredential, ROLES, type Role } from '../../protocol/credential.js';
import { parseDecimalInteger } from '../../protocol/decimal.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { generateIdentity, parsePublicKey } from '../../protocol/key-file.js';
import { readIdentityFile, writeIdentityFile, writePrivateFile } from '../identity.js';

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90d`, `12h`, `30m`, `45s`: a lifetime from now, of at least one unit. */
export function parseDurationMs(text: string): number {
  // As every number of the command line: decimal digits as typed, no blanks (' 90d').
  const m = /^(\d{1,6})([smhd])$/.exec(text);
  const count = m === null ? undefined : parseDecimalInteger(m[1]);
  if (m === null || count === undefined || count < 1) throw new TributaryError(Errors.INVALID_CONFIG, `--expires must look like 90d, 12h, 30m or 45s, got '${text}'`);
  return count * UNIT_MS[m[2]];
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function fail(err: unknown): void {
  process.stderr.write(`tributary: ${(err as Error).message.split('\n')[0]}\n`);
  process.exitCode = 1;
}

/** A fleet key and any other identity are the same kind of key pair, made the same way. */
function writeNewIdentity(opts: { out: string; force?: boolean }): void {
  try {
    const identity = generateIdentity();
    writeIdentityFile(opts.out, identity, { overwrite: opts.force });
    process.stdout.write(`${identity.publicKey.toString('hex')}\n`);
  } catch (err) {
    fail(err);
  }
}

export function registerKeyCommands(program: Command): { credentials: Command } {
  const keys = program.command('keys').description('make and show identity key files (Ed25519)');
  keys
    .command('generate')
    .description('write a new identity key file (mode 0600) and print its public key')
    .requiredOption('--out <file>', 'where to write the key file')
    .option('--force', 'overwrite an existing file')
    .action(writeNewIdentity);
  keys
    .command('show <file>')
    .description("print a key file's public key")
    .action((file: string) => {
      try {
        process.stdout.write(`${readIdentityFile(file).publicKey.toString('hex')}\n`);
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('fleet')
    .description('the fleet authority, which signs credentials')
    .command('init')
    .description("write the fleet authority's key file (keep it offline) and print the fleet public key nodes pin")
    .requiredOption('--out <file>', 'where to write the fleet key file')
    .option('--force', 'overwrite an existing file')
    .action(writeNewIdentity);

  const credentials = program.command('credentials').description('fleet credentials: what a key may do');
  credentials
    .command('issue')
    .description('sign a credential for a subject key with the fleet key')
    .requiredOption('--fleet <file>', 'the fleet key file')
    .requiredOption('--subject <pubkey>', "the holder's public key (64 hex characters, from keys generate)")
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
    .option('--produce <pattern>', 'topic pattern it may produce to (* matches anything); repeatable', collect, [])
    .option('--consume <pattern>', 'topic pattern it may consume from; repeatable', collect, [])
    .option('--group <pattern>', 'consumer group id pattern it may use (default: none for a device, its --consume patterns for an app, every group for node and admin); repeatable', collect)
    .option('--expires <duration>', 'lifetime: 90d, 12h, 30m, 45s', '90d')
    .requiredOption('--out <file>', 'where to write the credential')
    .option('--force', 'overwrite an existing file')
    .action((opts: { fleet: string; subject: string; role: string; produce: string[]; consume: string[]; group?: string[]; expires: string; out: string; force?: boolean }) => {
      try {
        if (!ROLES.includes(opts.role as Role)) throw new TributaryError(Errors.INVALID_CONFIG, `--role must be one of ${ROLES.join(', ')}, got '${opts.role}'`);
        const fleet = readIdentityFile(opts.fleet);
        const now = Date.now();
        const expiresAt = now + parseDurationMs(opts.expires);
        const credential = issueCredential(
          fleet,
          {
            subject: parsePublicKey(opts.subject, '--subject'),
            role: opts.role as Role,
            produce: opts.produce,
            consume: opts.consume,
            ...(opts.group === undefined ? {} : { groups: opts.group }),
            expiresAt,
          },
          now,
        );
        // A credential is no secret (it names a public key and is useless without the
        // subject's secret key), but nothing is gained by making it world-readable.
        writePrivateFile(opts.out, credential, opts.force ?? false);
        const article = /^[aeiou]/.test(opts.role) ? 'an' : 'a';
        process.stderr.write(`issued ${article} ${opts.role} credential, expires ${new Date(expiresAt).toISOString()}\n`);
      } catch (err) {
        fail(err);
      }
    });
  return { credentials };
}
