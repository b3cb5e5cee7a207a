// Readers for the fields of untrusted request bodies, used by the decoders of
// protocol/requests.ts. A frame that decodes as CBOR can still hold any shape; each field
// is read through these, so a wrong type is INVALID_REQUEST naming the field instead of a
// value of the wrong type reaching a handler.

import { Errors, LimitReachedError, TributaryError } from './errors.js';
import { TOPIC_NAME_LENGTH_MAX, topicNameError } from './topic-names.js';

export type Body = Record<string, unknown>;

/** Why one part of a request (a topic, a partition) is answered on its own. */
export interface PartError {
  error: number;
  message: string;
}

export function bad(field: string, expected: string, value: unknown): TributaryError {
  const got = value === undefined ? 'nothing' : value instanceof Uint8Array ? `${value.length} bytes` : JSON.stringify(value)?.slice(0, 40);
  return new TributaryError(Errors.INVALID_REQUEST, `${field} must be ${expected}, got ${got}`);
}

export function int(body: Body, field: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER, fallback?: number): number {
  const v = body[field];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(field, `an integer from ${min} to ${max}`, v);
  return v;
}

/** int of a field that may be left out: undefined when it is. */
export function optionalInt(body: Body, field: string, min: number, max: number): number | undefined {
  return body[field] === undefined ? undefined : int(body, field, min, max);
}

export function str(body: Body, field: string): string {
  const v = body[field];
  if (typeof v !== 'string') throw bad(field, 'a string', v);
  return v;
}

export function bytes(body: Body, field: string): Buffer {
  const v = body[field];
  if (!(v instanceof Uint8Array)) throw bad(field, 'a byte string', v);
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.length);
}

export function list(body: Body, field: string, maxLength: number): unknown[] {
  const v = body[field];
  if (!Array.isArray(v)) throw bad(field, 'an array', v);
  if (v.length > maxLength) throw new TributaryError(Errors.INVALID_REQUEST, `${field} holds ${v.length} entries, at most ${maxLength} allowed`);
  return v;
}

function isMap(value: unknown): value is Body {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array);
}

export function map(value: unknown, field: string): Body {
  if (!isMap(value)) throw bad(field, 'a map', value);
  return value;
}

/** map() of entry `i` of the list `field`: its name (`field[i]`) made only when it is refused. */
export function entryMap(value: unknown, field: string, i: number): Body {
  if (!isMap(value)) throw bad(`${field}[${i}]`, 'a map', value);
  return value;
}

export function strings(body: Body, field: string, maxLength: number): string[] {
  const v = list(body, field, maxLength);
  for (const s of v) if (typeof s !== 'string') throw bad(`${field}[]`, 'a string', s);
  return v as string[];
}

/**
 * The entries (partitions, topics) a request names in `field`: at most `entriesMax` (the
 * node's limits.requestEntriesMax), so that one frame cannot fan out into unbounded work.
 * More is a LimitReachedError(INVALID_REQUEST) naming the key, which the node counts in
 * tributary_limits_reached_total.
 */
export function entries(body: Body, field: string, entriesMax: number): unknown[] {
  const v = body[field];
  if (Array.isArray(v) && v.length > entriesMax) {
    throw new LimitReachedError(Errors.INVALID_REQUEST, 'requestEntriesMax', `${field} names ${v.length} entries; limits.requestEntriesMax allows ${entriesMax} per request`);
  }
  return list(body, field, entriesMax);
}

/** entries of a field that may be left out (absent or null: undefined). */
export function optionalEntries(body: Body, field: string, entriesMax: number): unknown[] | undefined {
  return body[field] === undefined || body[field] === null ? undefined : entries(body, field, entriesMax);
}

/**
 * Why a topic name a request holds is refused, or null for a legal name: by the rule
 * topics are created with (protocol/topic-names.ts; '__' names allowed, they exist).
 * Another string is INVALID_TOPIC, whose message shows a short prefix of it: answers echo
 * names, and an unbounded one made an answer twice the size of its request. What is no
 * string is INVALID_REQUEST naming `field`, as for any field.
 */
export function topicError(value: unknown, field: string): TributaryError | null {
  return typeof value === 'string' ? topicNameError(value, true) : bad(field, 'a string', value);
}

/** topicError, thrown: for the requests where a bad name fails the whole request. */
export function topicName(value: unknown, field: string): string {
  const err = topicError(value, field);
  if (err !== null) throw err;
  return value as string;
}

/** topicError as the answer to one part: null for a legal name. */
export function invalidTopic(value: unknown, field: string): PartError | null {
  const err = topicError(value, field);
  return err === null ? null : { error: err.code, message: err.detail };
}

/**
 * The topic the answer to a part of a request carries for what was sent: the name, cut to
 * a legal name's length (a client matches its answers by name, and one too long to be a
 * name is not echoed whole); '' for what is no string.
 */
export function answeredTopic(value: unknown): string {
  if (typeof value !== 'string') return '';
  return value.length <= TOPIC_NAME_LENGTH_MAX ? value : value.slice(0, TOPIC_NAME_LENGTH_MAX);
}

/** A TributaryError thrown while one part was read, as that part's answer. */
export function partError(err: unknown): PartError {
  if (err instanceof TributaryError) return { error: err.code, message: err.detail };
  throw err;
}
