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

import { topicAllowed, type Credential, type Role } from '../../protocol/credential.js';
import { Errors, TributaryError } from '../../protocol/errors.js';

export type Action = 'produce' | 'consume' | 'createTopics' | 'deleteTopics' | 'alterConfigs' | 'describe';

export interface Principal {
  /** How the principal is named in logs and refusals. */
  readonly name: string;
  readonly role: Role | 'anonymous';
  readonly produce: readonly string[];
  readonly consume: readonly string[];
  readonly credentialId?: string;
  /** The Ed25519 identity key the credential names (revocations may name it). */
  readonly subject?: Buffer;
  readonly expiresAt?: number;
}

export const ANONYMOUS: Principal = { name: 'anonymous', role: 'anonymous', produce: ['*'], consume: ['*'] };

export function principalOf(credential: Credential): Principal {
  return {
    name: `${credential.role}:${credential.subject.toString('hex').slice(0, 16)}`,
    role: credential.role,
    produce: credential.produce,
    consume: credential.consume,
    credentialId: credential.id,
    subject: credential.subject,
    expiresAt: credential.expiresAt,
  };
}

export function isAllowed(principal: Principal, action: Action, topic?: string): boolean {
  const { role } = principal;
  if (role === 'anonymous' || role === 'admin') return true;
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
  describe: 'describe',
  createTopics: 'create topic',
  deleteTopics: 'delete topic',
  alterConfigs: 'alter the config of topic',
};

/** The refusal's words: '<principal> may not produce to 'alarms''. */
export function refusalMessage(principal: Principal, action: Action, topic?: string): string {
  return `${principal.name} may not ${VERB[action]}${topic === undefined ? '' : ` '${topic}'`}`;
}

export function authorize(principal: Principal, action: Action, topic?: string): void {
  if (!isAllowed(principal, action, topic)) throw new TributaryError(Errors.UNAUTHORIZED, refusalMessage(principal, action, topic));
}
