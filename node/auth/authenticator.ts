// Admission: who a connection is, decided once from its handshake and checked again before
// every request (a revocation or an expiry takes effect on the next request of a
// connection that is already open).
//
//   credential present   verified against the fleet key; its subject must be the key that
//                        made the Noise handshake; not revoked; not expired
//   no credential        anonymous: admitted only when the node allows anonymous clients
//                        (dev mode) and the connection comes from loopback
//
// A refusal is not decided by closing in the handshake: the client is told why, in the
// answer to its Hello, over the channel the handshake just set up, and then the
// connection is closed. A peer that never says Hello is closed by the Hello timeout.

import { systemClock } from '../../protocol/clock.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { verifyPeerCredential } from '../../protocol/peer-auth.js';
import type { RemotePeer } from '../../protocol/secure-channel.js';
import type { Revocation, RevocationList } from '../../protocol/revocation.js';
import { isLoopbackAddress } from '../address-ranges.js';
import { ANONYMOUS, principalOf, type Principal } from './acl.js';

export type AnonymousPolicy = 'loopback' | 'none';

export type Admission = { principal: Principal; refusal?: undefined } | { principal?: undefined; refusal: TributaryError };

/** Why a credential that admitted a connection no longer does. */
export interface Lapse {
  why: 'revoked' | 'expired';
  error: TributaryError;
}

export interface AuthenticatorOptions {
  /** Without it the node cannot check credentials and admits only anonymous clients. */
  fleetPublicKey?: Buffer;
  anonymous: AnonymousPolicy;
  revocations: RevocationList;
  now?: () => number;
}

export { isLoopbackAddress };

export class Authenticator {
  private readonly now: () => number;

  constructor(private readonly options: AuthenticatorOptions) {
    this.now = options.now ?? systemClock.now;
  }

  get fleetPublicKey(): Buffer | undefined {
    return this.options.fleetPublicKey;
  }

  get anonymousPolicy(): AnonymousPolicy {
    return this.options.anonymous;
  }

  /** Decides who the peer of a finished handshake is, or why it is refused. */
  admit(remote: RemotePeer, remoteAddress: string): Admission {
    if (remote.payload.length === 0) return this.admitAnonymous(remoteAddress);
    const fleetPublicKey = this.options.fleetPublicKey;
    if (!fleetPublicKey) {
      return refuse('this node has no fleet key (dev mode) and cannot check credentials; connect without one, from loopback');
    }
    let principal: Principal;
    try {
      principal = principalOf(verifyPeerCredential(remote, fleetPublicKey, this.now()));
    } catch (err) {
      if (err instanceof TributaryError) return { refusal: err };
      // Whatever a stranger's bytes make a decoder do, the answer is a refusal, never a
      // failure that leaves the connection half set up.
      return refuse(`credential refused: ${(err as Error)?.message ?? 'unreadable'}`);
    }
    const lapse = this.recheck(principal);
    return lapse ? { refusal: lapse.error } : { principal };
  }

  /** Null while `principal` is still admitted; otherwise why not (revoked, expired). */
  recheck(principal: Principal): Lapse | null {
    if (principal.credentialId === undefined || principal.subject === undefined) return null;
    const revoked = this.options.revocations.find({ id: principal.credentialId, subject: principal.subject, subjectKey: principal.subjectKey });
    if (revoked) return revocationLapse(revoked);
    if (principal.expiresAt !== undefined && principal.expiresAt <= this.now()) {
      return { why: 'expired', error: new TributaryError(Errors.UNAUTHORIZED, `credential expired at ${new Date(principal.expiresAt).toISOString()}`) };
    }
    return null;
  }

  private admitAnonymous(remoteAddress: string): Admission {
    if (this.options.anonymous === 'none') {
      return refuse('this node admits only holders of a fleet credential; connect with an identity and a credential');
    }
    if (!isLoopbackAddress(remoteAddress)) {
      return refuse(`anonymous clients are admitted only from loopback (dev mode); ${remoteAddress} must present a credential`);
    }
    return { principal: ANONYMOUS };
  }
}

/** Why a revocation ends what it names: said to the client and in the logs. */
export function revocationLapse(revocation: Revocation): Lapse {
  const what = 'credentialId' in revocation.target ? 'credential' : 'subject key';
  return { why: 'revoked', error: new TributaryError(Errors.UNAUTHORIZED, `${what} revoked${revocation.reason ? `: ${revocation.reason}` : ''}`) };
}

function refuse(detail: string): Admission {
  return { refusal: new TributaryError(Errors.UNAUTHORIZED, detail) };
}
