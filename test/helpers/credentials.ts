// A key pair and the credential a fleet issued for it, as tests need many of them.

import { issueCredential, type CredentialClaims } from '../../protocol/credential.js';
import { generateIdentity, type IdentityKeyPair } from '../../protocol/key-file.js';

export interface Holder {
  identity: IdentityKeyPair;
  credential: Buffer;
}

/** A fresh identity with a credential of `fleet` (valid a day unless `claims` says otherwise). */
export function holder(fleet: IdentityKeyPair, claims: Partial<CredentialClaims> & Pick<CredentialClaims, 'role'>): Holder {
  const identity = generateIdentity();
  return { identity, credential: issueCredential(fleet, { subject: identity.publicKey, produce: [], consume: [], expiresAt: Date.now() + 86_400_000, ...claims }) };
}
