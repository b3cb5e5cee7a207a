import { describe, expect, it } from 'vitest';
import { issueCredential, type CredentialClaims, type Role } from '../../protocol/credential.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { generateIdentity, type IdentityKeyPair } from '../../protocol/key-file.js';
import { REVOCATIONS_TOPIC, RevocationList, signRevocation, verifyRevocation, type RevocationTarget } from '../../protocol/revocation.js';
import { noisePublicKeyFromIdentity, type RemotePeer } from '../../protocol/secure-channel.js';
import { ANONYMOUS, isAllowed, type Action, type Principal } from './acl.js';
import { Authenticator, isLoopbackAddress, type Admission, type AnonymousPolicy } from './authenticator.js';

const NOW = 1_800_000_000_000;
const DAY = 86_400_000;
const LOOPBACK = '127.0.0.1';
const fleet = generateIdentity();

interface Holder {
  identity: IdentityKeyPair;
  credential: Buffer;
}

function holder(claims: Partial<CredentialClaims> & Pick<CredentialClaims, 'role'>, signer = fleet): Holder {
  const identity = generateIdentity();
  const credential = issueCredential(signer, { subject: identity.publicKey, produce: [], consume: [], expiresAt: NOW + 30 * DAY, ...claims }, NOW);
  return { identity, credential };
}

/** What the handshake hands the node: the peer's X25519 static key and its message-3 payload. */
function peerOf(identity: IdentityKeyPair, payload: Buffer = Buffer.alloc(0)): RemotePeer {
  return { staticKey: noisePublicKeyFromIdentity(identity.publicKey), payload };
}

function authenticator(options: { fleetPublicKey?: Buffer; anonymous?: AnonymousPolicy; revocations?: RevocationList; now?: () => number } = {}): Authenticator {
  return new Authenticator({
    fleetPublicKey: 'fleetPublicKey' in options ? options.fleetPublicKey : fleet.publicKey,
    anonymous: options.anonymous ?? 'loopback',
    revocations: options.revocations ?? new RevocationList(),
    now: options.now ?? (() => NOW),
  });
}

function admitted(admission: Admission): Principal {
  if (admission.refusal) throw new Error(`expected admission, got refusal: ${admission.refusal.message}`);
  return admission.principal;
}

function refused(admission: Admission, message: RegExp): void {
  expect(admission.principal, 'admitted where it must be refused').toBeUndefined();
  expect(admission.refusal).toBeInstanceOf(TributaryError);
  expect(admission.refusal?.code).toBe(Errors.UNAUTHORIZED.code);
  expect(admission.refusal?.message).toMatch(message);
}

function revoke(target: RevocationTarget, reason?: string): ReturnType<typeof verifyRevocation> {
  // Through the signed form, as the revocation store would add it.
  return verifyRevocation(signRevocation(fleet, target, { reason, now: NOW }), fleet.publicKey);
}

describe('isLoopbackAddress', () => {
  it.each(['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1'])('%s is loopback', (address) => {
    expect(isLoopbackAddress(address)).toBe(true);
  });

  it.each(['10.0.0.1', '192.168.1.5', '::ffff:10.0.0.1', '0.0.0.0', '::', 'localhost', '', '127.0.0.1.evil', '1127.0.0.1'])('%j is not loopback', (address) => {
    expect(isLoopbackAddress(address)).toBe(false);
  });
});

describe('anonymous clients', () => {
  it("'loopback' admits an anonymous client from loopback, as anonymous", () => {
    const auth = authenticator({ fleetPublicKey: undefined, anonymous: 'loopback' });
    const principal = admitted(auth.admit(peerOf(generateIdentity()), LOOPBACK));
    expect(principal).toBe(ANONYMOUS);
    expect(principal.role).toBe('anonymous');
    expect(auth.recheck(principal)).toBeNull();
    expect(admitted(auth.admit(peerOf(generateIdentity()), '::1')).role).toBe('anonymous');
  });

  it("'loopback' refuses an anonymous client from another address, naming loopback", () => {
    const auth = authenticator({ fleetPublicKey: undefined, anonymous: 'loopback' });
    refused(auth.admit(peerOf(generateIdentity()), '10.0.0.7'), /only from loopback.*10\.0\.0\.7 must present a credential/);
    refused(auth.admit(peerOf(generateIdentity()), '::ffff:10.0.0.7'), /loopback/);
  });

  it("'none' refuses an anonymous client even from loopback", () => {
    const auth = authenticator({ anonymous: 'none' });
    refused(auth.admit(peerOf(generateIdentity()), LOOPBACK), /only holders of a fleet credential/);
  });
});

describe('credentials', () => {
  it('without a fleet key, a client presenting a credential is refused, naming dev mode', () => {
    const device = holder({ role: 'device', produce: ['sensors.*'] });
    const auth = authenticator({ fleetPublicKey: undefined, anonymous: 'loopback' });
    refused(auth.admit(peerOf(device.identity, device.credential), LOOPBACK), /no fleet key \(dev mode\)/);
  });

  it('admits a valid credential as its principal: role, patterns, id, subject, expiry', () => {
    const device = holder({ role: 'device', produce: ['sensors.*'], consume: ['commands.dev-1'] });
    const auth = authenticator({ anonymous: 'none' });
    const principal = admitted(auth.admit(peerOf(device.identity, device.credential), '10.0.0.7'));
    expect(principal.role).toBe('device');
    expect(principal.produce).toEqual(['sensors.*']);
    expect(principal.consume).toEqual(['commands.dev-1']);
    expect(principal.credentialId).toMatch(/^[0-9a-f]{24}$/);
    expect(principal.subject?.equals(device.identity.publicKey)).toBe(true);
    expect(principal.expiresAt).toBe(NOW + 30 * DAY);
    expect(principal.name).toBe(`device:${device.identity.publicKey.toString('hex').slice(0, 16)}`);
    // Two credentials are two ids.
    const second = issueCredential(fleet, { subject: device.identity.publicKey, role: 'device', produce: [], consume: [], expiresAt: NOW + DAY }, NOW);
    const other = admitted(auth.admit(peerOf(device.identity, second), '10.0.0.7'));
    expect(other.credentialId).not.toBe(principal.credentialId);
  });

  it('refuses a credential shown with another static key than its subject', () => {
    const device = holder({ role: 'admin' });
    const thief = generateIdentity();
    refused(authenticator().admit(peerOf(thief, device.credential), LOOPBACK), /subject is not the key that made the handshake/);
  });

  it('refuses a credential of another fleet, and bytes that are no credential', () => {
    const foreign = holder({ role: 'admin' }, generateIdentity());
    refused(authenticator().admit(peerOf(foreign.identity, foreign.credential), LOOPBACK), /another fleet/);
    const identity = generateIdentity();
    refused(authenticator().admit(peerOf(identity, Buffer.from([0xff, 0x00, 0x01])), LOOPBACK), /credential refused/);
  });

  it('refuses an expired credential', () => {
    const device = holder({ role: 'device', expiresAt: NOW + DAY });
    refused(authenticator({ now: () => NOW + DAY }).admit(peerOf(device.identity, device.credential), LOOPBACK), /expired/);
    refused(authenticator({ now: () => NOW + 2 * DAY }).admit(peerOf(device.identity, device.credential), LOOPBACK), /expired/);
    expect(admitted(authenticator({ now: () => NOW + DAY - 1 }).admit(peerOf(device.identity, device.credential), LOOPBACK)).role).toBe('device');
  });

  it('recheck reports expiry once the clock passes it, and nothing before', () => {
    let clock = NOW;
    const device = holder({ role: 'device', expiresAt: NOW + DAY });
    const auth = authenticator({ now: () => clock });
    const principal = admitted(auth.admit(peerOf(device.identity, device.credential), LOOPBACK));
    expect(auth.recheck(principal)).toBeNull();
    clock = NOW + DAY - 1;
    expect(auth.recheck(principal)).toBeNull();
    clock = NOW + DAY;
    const lapse = auth.recheck(principal);
    expect(lapse?.why).toBe('expired');
    expect(lapse?.error.code).toBe(Errors.UNAUTHORIZED.code);
    expect(lapse?.error.message).toMatch(/credential expired at /);
  });

  it('a revocation of the credential id ends it: recheck says revoked and admit refuses', () => {
    const revocations = new RevocationList();
    const auth = authenticator({ revocations });
    const device = holder({ role: 'device', produce: ['sensors.*'] });
    const bystander = holder({ role: 'device', produce: ['sensors.*'] });
    const principal = admitted(auth.admit(peerOf(device.identity, device.credential), LOOPBACK));
    const other = admitted(auth.admit(peerOf(bystander.identity, bystander.credential), LOOPBACK));
    expect(auth.recheck(principal)).toBeNull();
    revocations.add(revoke({ credentialId: principal.credentialId as string }, 'lost in transit'));
    const lapse = auth.recheck(principal);
    expect(lapse?.why).toBe('revoked');
    expect(lapse?.error.code).toBe(Errors.UNAUTHORIZED.code);
    expect(lapse?.error.message).toMatch(/credential revoked: lost in transit/);
    refused(auth.admit(peerOf(device.identity, device.credential), LOOPBACK), /credential revoked/);
    // Only that credential: another holder, and a new credential for the same key, still get in.
    expect(auth.recheck(other)).toBeNull();
    const reissued = issueCredential(fleet, { subject: device.identity.publicKey, role: 'device', produce: [], consume: [], expiresAt: NOW + DAY }, NOW);
    expect(admitted(auth.admit(peerOf(device.identity, reissued), LOOPBACK)).role).toBe('device');
  });

  it('a revocation of the subject key ends every credential naming it', () => {
    const revocations = new RevocationList();
    const auth = authenticator({ revocations });
    const device = holder({ role: 'app', consume: ['alarms'] });
    const second = issueCredential(fleet, { subject: device.identity.publicKey, role: 'app', produce: [], consume: [], expiresAt: NOW + DAY }, NOW);
    const bystander = holder({ role: 'app' });
    const principal = admitted(auth.admit(peerOf(device.identity, device.credential), LOOPBACK));
    const other = admitted(auth.admit(peerOf(bystander.identity, bystander.credential), LOOPBACK));
    revocations.add(revoke({ subject: device.identity.publicKey }));
    const lapse = auth.recheck(principal);
    expect(lapse?.why).toBe('revoked');
    expect(lapse?.error.message).toMatch(/subject key revoked/);
    refused(auth.admit(peerOf(device.identity, device.credential), LOOPBACK), /subject key revoked/);
    refused(auth.admit(peerOf(device.identity, second), LOOPBACK), /subject key revoked/);
    expect(auth.recheck(other)).toBeNull();
  });

  it('a revoked credential is reported revoked even once it has also expired', () => {
    let clock = NOW;
    const revocations = new RevocationList();
    const auth = authenticator({ revocations, now: () => clock });
    const device = holder({ role: 'device', expiresAt: NOW + DAY });
    const principal = admitted(auth.admit(peerOf(device.identity, device.credential), LOOPBACK));
    revocations.add(revoke({ credentialId: principal.credentialId as string }));
    clock = NOW + 2 * DAY;
    expect(auth.recheck(principal)?.why).toBe('revoked');
  });
});

describe('ACLs', () => {
  const principal = (role: Role, produce: string[] = [], consume: string[] = []): Principal => ({ name: `${role}:x`, key: `key:${role}`, role, produce, consume, groups: [] });
  const device = principal('device', ['sensors.*'], ['commands.dev-1']);
  const app = principal('app', ['alarms'], ['sensors.*', 'a*b*c']);
  const node = principal('node');
  const admin = principal('admin');
  const wildcardDevice = principal('device', ['*'], ['*']);

  it.each([
    // device: by its patterns, never topic administration
    [device, 'produce', 'sensors.temp', true],
    [device, 'produce', 'sensors', false],
    [device, 'produce', 'commands.dev-1', false],
    [device, 'consume', 'commands.dev-1', true],
    [device, 'consume', 'commands.dev-2', false],
    [device, 'describe', 'sensors.x', true],
    [device, 'describe', 'commands.dev-1', true],
    [device, 'describe', 'alarms', false],
    [device, 'createTopics', 'sensors.new', false],
    [device, 'deleteTopics', 'sensors.temp', false],
    // app: the same rules, with patterns of several stars
    [app, 'produce', 'alarms', true],
    [app, 'consume', 'alarms', false],
    [app, 'consume', 'sensors.temp', true],
    [app, 'consume', 'aXXbYYc', true],
    [app, 'consume', 'aXXbYY', false],
    [app, 'describe', 'aXbXc', true],
    [app, 'createTopics', 'alarms', false],
    [app, 'deleteTopics', 'alarms', false],
    // node: any topic for data, no topic administration
    [node, 'produce', 'anything', true],
    [node, 'consume', 'anything', true],
    [node, 'describe', 'anything', true],
    [node, 'createTopics', 'anything', false],
    [node, 'deleteTopics', 'anything', false],
    // admin and anonymous (dev mode): everything
    [admin, 'produce', 'anything', true],
    [admin, 'consume', 'anything', true],
    [admin, 'describe', 'anything', true],
    [admin, 'createTopics', 'anything', true],
    [admin, 'deleteTopics', 'anything', true],
    [ANONYMOUS, 'produce', 'anything', true],
    [ANONYMOUS, 'createTopics', 'anything', true],
    [ANONYMOUS, 'deleteTopics', 'anything', true],
    // a '*' pattern reaches every ordinary topic
    [wildcardDevice, 'produce', 'anything.at.all', true],
    [wildcardDevice, 'consume', 'x', true],
  ] as const)('%o may %s %s: %s', (who, action, topic, allowed) => {
    expect(isAllowed(who, action, topic)).toBe(allowed);
  });

  it('internal topics are out of reach of every pattern: only node, admin and anonymous reach them', () => {
    const actions: Action[] = ['produce', 'consume', 'describe'];
    for (const action of actions) {
      for (const topic of [REVOCATIONS_TOPIC, '__consumer_offsets', '__']) {
        expect(isAllowed(wildcardDevice, action, topic), `device * ${action} ${topic}`).toBe(false);
        expect(isAllowed(principal('app', ['*'], ['*']), action, topic), `app * ${action} ${topic}`).toBe(false);
        expect(isAllowed(principal('device', ['__*'], ['__*']), action, topic), `device __* ${action} ${topic}`).toBe(false);
        expect(isAllowed(node, action, topic), `node ${action} ${topic}`).toBe(true);
        expect(isAllowed(admin, action, topic), `admin ${action} ${topic}`).toBe(true);
        expect(isAllowed(ANONYMOUS, action, topic), `anonymous ${action} ${topic}`).toBe(true);
      }
    }
    // One underscore is an ordinary name.
    expect(isAllowed(wildcardDevice, 'produce', '_private')).toBe(true);
  });
});
