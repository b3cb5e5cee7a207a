// tributary credentials revoke --fleet FILE (--credential-file FILE | --id ID | --subject PUBKEY)
//     [--reason TEXT] [--broker URL] [--identity FILE --credential FILE --node-key HEX --fleet-key HEX]
//
// Signs a revocation with the fleet key (protocol/revocation.ts) and produces it as one
// record to `__revocations`, from where it reaches every node as any record does. The
// signature, not the producer, is what a node trusts; the node still takes records on that
// topic only from admin and node principals (or anyone in dev mode). Everything that can be
// checked offline is checked before connecting.

import type { Command } from 'commander';
import { verifyCredential, type Credential } from '../../protocol/credential.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { parsePublicKey } from '../../protocol/key-file.js';
import { REVOCATIONS_TOPIC, revocationKey, signRevocation, type RevocationTarget } from '../../protocol/revocation.js';
import { peekCredential, readCredentialFile, readIdentityFile } from '../identity.js';
import { Producer } from '../producer.js';
import { run, UsageError, withClient, withNode, type NodeOptions } from './common.js';

interface RevokeOptions extends NodeOptions {
  fleet: string;
  credentialFile?: string;
  id?: string;
  subject?: string;
  reason?: string;
}

export function registerRevokeCommand(credentials: Command): void {
  const command = credentials
    .command('revoke')
    .description('revoke a credential (or every credential of a key) on every node, by producing a fleet-signed record to __revocations')
    .requiredOption('--fleet <file>', "the fleet authority's key file, which signs the revocation")
    .option('--credential-file <file>', 'revoke this credential (its id is read from the file)')
    .option('--id <id>', 'revoke the credential with this id')
    .option('--subject <pubkey>', 'revoke every credential of this public key (64 hex characters)')
    .option('--reason <text>', 'why, kept with the revocation');
  // The flags of the node it publishes to come after what is revoked, in the help too.
  withNode(command)
    .addHelpText('after', '\nGive exactly one of --credential-file, --id and --subject. The node takes the record only\nfrom an admin or node credential (--identity and --credential), or from anyone in dev mode.')
    .action(run(revoke));
}

async function revoke(opts: RevokeOptions): Promise<void> {
  const given = [opts.credentialFile, opts.id, opts.subject].filter((t) => t !== undefined).length;
  if (given !== 1) throw new UsageError('give exactly one of --credential-file, --id and --subject');
  const fleet = readIdentityFile(opts.fleet);
  const { target, description } = targetOf(opts, fleet.publicKey);
  const value = signRevocation(fleet, target, { reason: opts.reason });
  const [written] = await withClient(opts, async (client) => {
    const producer = new Producer(client, { acks: 1, lingerMs: 0 });
    try {
      return await producer.sendBatch(REVOCATIONS_TOPIC, [{ key: revocationKey(target), value }]);
    } finally {
      await producer.close();
    }
  });
  process.stdout.write(`revoked ${description} (${REVOCATIONS_TOPIC}/${written.partition} at offset ${written.offset})\n`);
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
