// What each end of a Tributary connection shows in the Noise handshake, and how the other
// end checks it. Both ends carry the same thing as their handshake payload: their fleet
// credential (the bytes `credentials issue` wrote), or nothing.
//
//   message 2, node -> client: the node's credential (role node), or empty
//   message 3, client -> node: the client's credential, or empty (anonymous)
//
// A credential proves something only together with the Noise static key: its subject is
// an Ed25519 identity key, and the handshake proved the peer holds the X25519 form of one.
// So a credential is accepted only when the two are the same key.

import { verifyCredential, type Credential } from './credential.js';
import { Errors, TributaryError } from './errors.js';
import { noisePublicKeyFromIdentity, type RemotePeer } from './secure-channel.js';

/** True when `staticKey` (X25519, from the handshake) is the Noise form of `identityPublicKey`. */
export function isStaticKeyOf(staticKey: Buffer, identityPublicKey: Buffer): boolean {
  let converted: Buffer;
  try {
    converted = noisePublicKeyFromIdentity(identityPublicKey);
  } catch {
    return false; // not a valid Ed25519 point: it cannot be anyone's identity
  }
  return converted.equals(staticKey);
}

/**
 * Checks a peer's handshake payload as a credential of `fleetPublicKey` held by the peer.
 * Throws TributaryError(UNAUTHORIZED) naming what failed.
 */
export function verifyPeerCredential(remote: RemotePeer, fleetPublicKey: Buffer, now = Date.now()): Credential {
  if (remote.payload.length === 0) throw new TributaryError(Errors.UNAUTHORIZED, 'no credential was presented');
  const credential = verifyCredential(remote.payload, fleetPublicKey, now);
  if (!isStaticKeyOf(remote.staticKey, credential.subject)) {
    throw new TributaryError(Errors.UNAUTHORIZED, 'credential refused: its subject is not the key that made the handshake');
  }
  return credential;
}

/** How a client knows it reached the right node. */
export interface NodePins {
  /** The node's identity public key (Ed25519, as `keys show` prints it): exactly this node. */
  nodePublicKey?: Buffer;
  /** The fleet public key: any node holding a valid `node` credential of this fleet. */
  fleetPublicKey?: Buffer;
}

/**
 * The client's check of the node, for `verifyRemote`: with no pin every node is accepted
 * (the channel is still encrypted, but a man in the middle is not excluded); with both,
 * both must hold.
 */
export function verifyNode(remote: RemotePeer, pins: NodePins, now = Date.now()): void {
  if (pins.nodePublicKey && !isStaticKeyOf(remote.staticKey, pins.nodePublicKey)) {
    throw new TributaryError(Errors.UNAUTHORIZED, 'the node is not the one pinned: its key differs from the node key given');
  }
  // Both pins given: the node must be that node and hold a credential of that fleet.
  if (pins.fleetPublicKey) {
    let credential: Credential;
    try {
      credential = verifyPeerCredential(remote, pins.fleetPublicKey, now);
    } catch (err) {
      throw new TributaryError(Errors.UNAUTHORIZED, `the node has no valid credential of the pinned fleet: ${(err as TributaryError).detail ?? String(err)}`);
    }
    if (credential.role !== 'node') throw new TributaryError(Errors.UNAUTHORIZED, `the node's credential has role ${credential.role}, not node`);
  }
}
