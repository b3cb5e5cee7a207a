// Kafka's rule for topic names (kafka.common.internals.Topic): 1..249 characters from
// [a-zA-Z0-9._-], not '.' or '..'. Each file name a node makes from a topic name must fit a
// 255-byte file name, or a topic could be created but not deleted: at 249 characters the
// partition folder `<name>-9999` is 254 bytes, the config `<name>.json` 254 and the deletion
// marker `<name>.del` 253 (node/storage/log-manager.ts). Names starting with '__' are
// reserved for internal topics (__consumer_offsets and the like). One rule for the node's
// topics and for every name a request reads (protocol/requests.ts).

import { Errors, TributaryError } from './errors.js';

export const TOPIC_NAME_LENGTH_MAX = 249;
const LEGAL_NAME = /^[a-zA-Z0-9._-]+$/;
/** A subscription's topic pattern: a topic name's characters and `*`, 1-249 of them. */
const TOPIC_PATTERN = /^[A-Za-z0-9._*-]{1,249}$/;
/** Characters of a refused name that its error message shows. */
const NAME_SHOWN_CHARS_MAX = 64;

/**
 * INVALID_TOPIC for a name that breaks the rule, returned rather than thrown; null for a
 * legal name. `internal`: names starting '__' are allowed (the node's own topics; and any
 * name a request reads, since an admin may produce to __revocations). The message shows at
 * most NAME_SHOWN_CHARS_MAX characters of what was sent, whatever its size.
 */
export function topicNameError(name: unknown, internal: boolean): TributaryError | null {
  const problem = topicNameProblem(name, internal);
  return problem === null ? null : new TributaryError(Errors.INVALID_TOPIC, `topic name ${shownTopicName(name)} ${problem}`);
}

function topicNameProblem(name: unknown, internal: boolean): string | null {
  if (typeof name !== 'string' || name.length === 0) return 'must be a non-empty string';
  if (name.length > TOPIC_NAME_LENGTH_MAX) return `is ${name.length} characters long, at most ${TOPIC_NAME_LENGTH_MAX} are allowed`;
  if (name === '.' || name === '..') return "cannot be '.' or '..'";
  if (!LEGAL_NAME.test(name)) return 'may contain only ASCII letters, digits, ., _ and -';
  if (!internal && name.startsWith('__')) return "starts with '__', which is reserved for internal topics";
  return null;
}

/** A name as a message shows it: quoted, its first NAME_SHOWN_CHARS_MAX characters at most. */
function shownTopicName(name: unknown): string {
  if (typeof name !== 'string') return name === null || name === undefined ? String(name) : `(a ${name instanceof Uint8Array ? 'byte string' : typeof name})`;
  if (name.length <= NAME_SHOWN_CHARS_MAX) return JSON.stringify(name);
  return `${JSON.stringify(name.slice(0, NAME_SHOWN_CHARS_MAX))}...`;
}

/** Whether `value` is a topic pattern a group member may subscribe with (`sensors.*`): the SDK checks it as the node does. */
export function isTopicPattern(value: unknown): value is string {
  return typeof value === 'string' && TOPIC_PATTERN.test(value);
}
