// Who may do what. A connection's principal comes from its credential (or, in dev mode on
// loopback, is anonymous); every request is checked against it before its handler runs,
// and a refusal answers UNAUTHORIZED while the connection stays usable.
//
//   role    produce / consume               topics create, delete,  describe (Metadata,
//                                           alter configs           DescribeConfigs)
//   admin   any topic                       yes                     every topic
//   node    any topic (replication, uplink) no                      every topic
//   app     by its patterns                 no                      topics it may use
//   device  by its patterns                 no                      topics it may use
//   anonymous (dev mode, loopback only): everything, as admin.
//   Internal topics (names starting '__') are reached only by admin, node and anonymous.
//   Internal request kinds (node to node: ReplicaFetch; Kafka's ClusterAction) only node:
//   not admin, not anonymous, since only a node keeps a replica.
//
// Consumer groups (heartbeat, commit and fetch offsets, describe, list, reset-offsets) are
// authorized by group id, with the credential's `groups` patterns, or when it has none
// (every credential issued before groups were authorized) by its role's default:
//
//   role    groups it may use
//   admin   every group (a `groups` field changes nothing)
//   node    every group (uplinks and replication keep positions of their own)
//   app     `groups` if given, else groups whose id matches one of its consume patterns
//   device  `groups` if given, else none: a device produces; it joins no one's group
//   anonymous (dev mode): every group

import { topicAllowed, type Credential, type Role } from '../../protocol/credential.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { subjectKey } from '../../protocol/revocation.js';

export type Action = 'produce' | 'consume' | 'createTopics' | 'deleteTopics' | 'alterConfigs' | 'describe' | 'group' | 'clusterAction';

export interface Principal {
  /** How the principal is named in logs and refusals. */
  readonly name: string;
  /**
   * Who this is, for what belongs to a principal (group members, committed offsets) and
   * what is bounded per principal (connections): its identity key, so that a renewed
   * credential of the same key is the same principal, in its X25519 form (subjectKey, what
   * the handshake proves and revocations are matched by). Every anonymous client is one.
   */
  readonly key: string;
  readonly role: Role | 'anonymous';
  readonly produce: readonly string[];
  readonly consume: readonly string[];
  /** Group id patterns, the role's default already applied. */
  readonly groups: readonly string[];
  readonly credentialId?: string;
  /** The Ed25519 identity key the credential names (revocations may name it). */
  readonly subject?: Buffer;
  /** subjectKey(subject), worked out once: how revocations of the key are looked up. */
  readonly subjectKey?: string;
  readonly expiresAt?: number;
}

export const ANONYMOUS: Principal = { name: 'anonymous', key: 'anonymous', role: 'anonymous', produce: ['*'], consume: ['*'], groups: ['*'] };

/** The groups a credential may use: its own patterns, or its role's default (see the top). */
export function groupPatternsOf(credential: Pick<Credential, 'role' | 'consume' | 'groups'>): readonly string[] {
  switch (credential.role) {
    case 'admin':
    case 'node':
      return ['*'];
    case 'app':
      return credential.groups ?? credential.consume;
    case 'device':
      return credential.groups ?? [];
  }
}

/** The Principal.key of the holder of `subject`: what Sessions and revocations match. */
export function principalKeyOf(subject: Buffer): string {
  return `key:${subjectKey(subject)}`;
}

export function principalOf(credential: Credential): Principal {
  const subject = credential.subject.toString('hex');
  const x25519 = subjectKey(credential.subject);
  return {
    name: `${credential.role}:${subject.slice(0, 16)}`,
    key: `key:${x25519}`,
    subjectKey: x25519,
    role: credential.role,
    produce: credential.produce,
    consume: credential.consume,
    groups: groupPatternsOf(credential),
    credentialId: credential.id,
    subject: credential.subject,
    expiresAt: credential.expiresAt,
  };
}

/**
 * Whether `principal` may do `action`; `topic` is the topic, or for the `group` action the
 * group id.
 */
export function isAllowed(principal: Principal, action: Action, topic?: string): boolean {
  const { role } = principal;
  if (action === 'clusterAction') return role === 'node';
  if (role === 'anonymous' || role === 'admin') return true;
  if (action === 'group') return topic !== undefined && topicAllowed(principal.groups, topic);
  // Internal topics ('__revocations', later '__consumer_offsets') hold the node's own state:
  // no topic pattern reaches them, so a device's '*' cannot write revocations.
  if (role !== 'node' && topic !== undefined && topic.startsWith('__')) return false;
  switch (action) {
    case 'createTopics':
    case 'deleteTopics':
    case 'alterConfigs':
      return false;
    case 'produce':
      return role === 'node' || (topic !== undefined && topicAllowed(principal.produce, topic));
    case 'consume':
      return role === 'node' || (topic !== undefined && topicAllowed(principal.consume, topic));
    case 'describe':
      return role === 'node' || (topic !== undefined && (topicAllowed(principal.produce, topic) || topicAllowed(principal.consume, topic)));
  }
}

const VERB: Record<Action, string> = {
  produce: 'produce to',
  consume: 'consume from',
  // A principal sees a topic it may produce to or consume from: a refusal means neither, and
  // says so in the words of what the client was about to do, not of the metadata it asked first.
  describe: 'produce to or consume from',
  createTopics: 'create topic',
  deleteTopics: 'delete topic',
  alterConfigs: 'alter the config of topic',
  group: 'use group',
  clusterAction: 'make requests between nodes, such as',
};

/** The refusal's words: '<principal> may not produce to 'alarms''. */
export function refusalMessage(principal: Principal, action: Action, topic?: string): string {
  return `${principal.name} may not ${VERB[action]}${topic === undefined ? '' : ` '${topic}'`}`;
}

export function authorize(principal: Principal, action: Action, topic?: string): void {
  if (!isAllowed(principal, action, topic)) throw new TributaryError(Errors.UNAUTHORIZED, refusalMessage(principal, action, topic));
}
