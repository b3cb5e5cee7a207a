// tributary credentials revoke --fleet FILE (--credential-file FILE | --id ID | --subject PUBKEY)
//     [--reason TEXT] --out FILE [--force]
// tributary credentials publish-revocation FILE --fleet-key HEX
//     [--broker URL] [--identity FILE --credential FILE] [--node-key HEX]
// tributary credentials revoke --fleet FILE (...) [--reason TEXT]
//     [--broker URL] [--identity FILE --credential FILE --node-key HEX --fleet-key HEX]
//
// A revocation is signed with the fleet key (protocol/revocation.ts) and produced as one
// record to `__revocations`, from where it reaches every node as any record does. The
// signature, not the producer, is what a node trusts; the node still takes records on that
// topic only from admin and node principals (or anyone in dev mode).
//
// The fleet key belongs on a machine that never reaches a node, so signing and publishing
// are two commands: `revoke --out` signs into a file and connects to nothing, and
// `publish-revocation` carries that file to a node with an admin credential, after checking
// that the fleet it pins signed it. `revoke` without --out does both at once, for a fleet
// key kept where a node is reachable anyway (a development fleet). Everything that can be
// checked offline is checked before connecting.

import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CREDENTIAL_BYTES_MAX, verifyCredential, type Credential } from '../../protocol/credential.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { parsePublicKey } from '../../protocol/key-file.js';
import { REVOCATION_BYTES_MAX, REVOCATIONS_TOPIC, revocationKey, signRevocation, verifyRevocation, type RevocationTarget } from '../../protocol/revocation.js';
import { AUTH_ENV } from '../auth-options.js';
import { peekCredential, readCredentialFile, readIdentityFile, writePrivateFile } from '../identity.js';
import { Producer } from '../producer.js';
import { run, UsageError, withClient, withNode, type NodeOptions } from './common.js';

interface RevokeOptions extends NodeOptions {
  fleet: string;
  credentialFile?: string;
  id?: string;
  subject?: string;
  reason?: string;
  out?: string;
  force?: boolean;
}

/** The flags of withNode(), which mean a connection: --out takes none of them. */
const NODE_FLAGS: ReadonlyArray<[keyof NodeOptions, string]> = [
  ['broker', '--broker'],
  ['identity', '--identity'],
  ['credential', '--credential'],
  ['nodeKey', '--node-key'],
  ['fleetKey', '--fleet-key'],
];

/** Registers `credentials revoke` and `credentials publish-revocation`. */
export function registerRevokeCommand(credentials: Command): void {
  const revokeCommand = credentials
    .command('revoke')
    .description('sign a revocation of a credential (or of every credential of a key) with the fleet key: into a file with --out, offline, or produced to a node at once')
    .requiredOption('--fleet <file>', "the fleet authority's key file, which signs the revocation")
    .option('--credential-file <file>', 'revoke this credential (its id is read from the file)')
    .option('--id <id>', 'revoke the credential with this id')
    .option('--subject <pubkey>', 'revoke every credential of this public key (64 hex characters)')
    .option('--reason <text>', 'why, kept with the revocation')
    .option('--out <file>', 'write the signed revocation to this file and connect to no node')
    .option('--force', 'overwrite an existing --out file');
  // The flags of the node it publishes to come after what is revoked, in the help too.
  withNode(revokeCommand)
    .addHelpText(
      'after',
      [
        '',
        'Give exactly one of --credential-file, --id and --subject.',
        '',
        'With --out it only signs, on the machine that keeps the fleet key offline; then, on a',
        'machine that reaches a node, `tributary credentials publish-revocation FILE` sends it.',
        'Without --out it signs and produces the record to --broker in one step. The node takes',
        'the record only from an admin or node credential (--identity and --credential), or from',
        'anyone in dev mode.',
      ].join('\n'),
    )
    .action(run(revoke));

  withNode(credentials.command('publish-revocation <file>'))
    .description('produce a revocation signed offline (credentials revoke --out) to a node, from where it reaches every node')
    .addHelpText(
      'after',
      [
        '',
        `--fleet-key (or ${AUTH_ENV.fleetPublicKey}) is required: the file must be signed by that fleet,`,
        'which is checked before connecting, and the node must hold a node credential of it.',
        'The node takes the record only from an admin or node credential (--identity and',
        '--credential), or from anyone in dev mode.',
      ].join('\n'),
    )
    .action(run(publishRevocation));
}

async function revoke(opts: RevokeOptions, command: Command): Promise<void> {
  const given = [opts.credentialFile, opts.id, opts.subject].filter((t) => t !== undefined).length;
  if (given !== 1) throw new UsageError('give exactly one of --credential-file, --id and --subject');
  if (opts.out !== undefined) {
    const online = NODE_FLAGS.filter(([key]) => command.getOptionValueSource(key) === 'cli').map(([, flag]) => flag);
    if (online.length > 0) {
      throw new UsageError(`--out signs offline and connects to no node, so it takes no ${online.join(' or ')}; send the file with: tributary credentials publish-revocation ${opts.out}`);
    }
  } else if (opts.force) {
    throw new UsageError('--force only applies to --out');
  }
  const fleet = readIdentityFile(opts.fleet);
  const { target, description } = targetOf(opts, fleet.publicKey);
  const value = signRevocation(fleet, target, { reason: opts.reason });
  if (opts.out !== undefined) {
    writePrivateFile(opts.out, value, opts.force ?? false);
    process.stdout.write(`wrote a revocation of ${description} to ${opts.out}; send it with: tributary credentials publish-revocation ${opts.out}\n`);
    return;
  }
  const written = await produceRevocation(opts, target, value);
  process.stdout.write(`revoked ${description} (${REVOCATIONS_TOPIC}/${written.partition} at offset ${written.offset})\n`);
}

async function publishRevocation(path: string, opts: NodeOptions): Promise<void> {
  const fleetKeyText = opts.fleetKey ?? (process.env[AUTH_ENV.fleetPublicKey] || undefined);
  if (fleetKeyText === undefined) {
    throw new UsageError(`give --fleet-key (or ${AUTH_ENV.fleetPublicKey}): ${path} is checked against the fleet key before it is sent`);
  }
  const fleetPublicKey = parsePublicKey(fleetKeyText, opts.fleetKey !== undefined ? '--fleet-key' : AUTH_ENV.fleetPublicKey);
  const value = readRevocationFile(path);
  let target: RevocationTarget;
  try {
    target = verifyRevocation(value, fleetPublicKey).target;
  } catch (err) {
    throw new TributaryError(Errors.INVALID_CONFIG, `${path}: ${err instanceof TributaryError ? err.detail : String(err)}`);
  }
  const written = await produceRevocation(opts, target, value);
  const description = 'credentialId' in target ? `credential ${target.credentialId}` : `every credential of ${target.subject.toString('hex')}`;
  process.stdout.write(`revoked ${description} (${REVOCATIONS_TOPIC}/${written.partition} at offset ${written.offset})\n`);
}

async function produceRevocation(opts: NodeOptions, target: RevocationTarget, value: Buffer): Promise<{ partition: number; offset: number }> {
  const [written] = await withClient(opts, async (client) => {
    const producer = new Producer(client, { acks: 1, lingerMs: 0 });
    try {
      return await producer.sendBatch(REVOCATIONS_TOPIC, [{ key: revocationKey(target), value }]);
    } finally {
      await producer.close();
    }
  });
  return written;
}

/** A file `revoke --out` wrote: its size is checked before it is read, as a credential's is. */
function readRevocationFile(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new TributaryError(Errors.INVALID_CONFIG, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new TributaryError(Errors.INVALID_CONFIG, `${path} is not a file`);
    const tooBig = () => new TributaryError(Errors.INVALID_CONFIG, `${path} is ${stat.size} bytes; a revocation is 1 to ${REVOCATION_BYTES_MAX}`);
    // Read up to a credential's size: a credential, the same kind of fleet-signed CBOR pair,
    // is the likeliest file to be passed by mistake, and is named as such.
    if (stat.size === 0 || stat.size > CREDENTIAL_BYTES_MAX) throw tooBig();
    const bytes = readFileSync(fd);
    if (peekCredential(bytes) !== null) {
      throw new TributaryError(Errors.INVALID_CONFIG, `${path} is a credential, not a revocation; sign one with: tributary credentials revoke --out FILE`);
    }
    if (bytes.length > REVOCATION_BYTES_MAX) throw tooBig();
    return bytes;
  } finally {
    closeSync(fd);
  }
}

function targetOf(opts: RevokeOptions, fleetPublicKey: Buffer): { target: RevocationTarget; description: string } {
  if (opts.subject !== undefined) {
    const subject = parsePublicKey(opts.subject, '--subject');
    return { target: { subject }, description: `every credential of ${subject.toString('hex')}` };
  }
  if (opts.id !== undefined) return { target: { credentialId: opts.id }, description: `credential ${opts.id}` };
  const path = opts.credentialFile as string;
  const { credential, expired } = credentialToRevoke(path, fleetPublicKey);
  return {
    target: { credentialId: credential.id },
    description: `credential ${credential.id} (role ${credential.role}, subject ${credential.subject.toString('hex')}${expired ? ', already expired' : ''})`,
  };
}

/**
 * The credential in `path`, verified against the fleet key: its id is only trusted once the
 * fleet's signature on it is. An expired credential may still be revoked (a gateway with a
 * slow clock would still admit it), so it is verified as of a moment inside its own
 * validity period: every check but expiry still applies.
 */
function credentialToRevoke(path: string, fleetPublicKey: Buffer): { credential: Credential; expired: boolean } {
  const refused = (err: unknown) => new TributaryError(Errors.INVALID_CONFIG, `--credential-file ${path}: ${err instanceof TributaryError ? err.detail : String(err)}`);
  let bytes: Buffer;
  try {
    bytes = readCredentialFile(path);
  } catch (err) {
    throw new TributaryError(Errors.INVALID_CONFIG, `--credential-file: ${err instanceof TributaryError ? err.detail : String(err)}`);
  }
  const now = Date.now();
  try {
    return { credential: verifyCredential(bytes, fleetPublicKey, now), expired: false };
  } catch (err) {
    const claims = peekCredential(bytes);
    if (claims === null || claims.expiresAt > now) throw refused(err);
    try {
      return { credential: verifyCredential(bytes, fleetPublicKey, claims.expiresAt - 1), expired: true };
    } catch (again) {
      throw refused(again);
    }
  }
}
