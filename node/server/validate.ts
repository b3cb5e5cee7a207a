// Readers for untrusted request bodies. A frame that decodes as CBOR can still hold any
// shape; each handler reads its fields through these, so a wrong type is answered
// INVALID_REQUEST naming the field instead of reaching the storage engine.

import { Errors, LimitReachedError, TributaryError } from '../../protocol/errors.js';
import { TOPIC_NAME_LENGTH_MAX, topicNameError } from '../../protocol/topic-names.js';

export type Body = Record<string, unknown>;

function bad(field: string, expected: string, value: unknown): TributaryError {
  const got = value === undefined ? 'nothing' : value instanceof Uint8Array ? `${value.length} bytes` : JSON.stringify(value)?.slice(0, 40);
  return new TributaryError(Errors.INVALID_REQUEST, `${field} must be ${expected}, got ${got}`);
}

export function int(body: Body, field: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER, fallback?: number): number {
  const v = body[field];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(field, `an integer from ${min} to ${max}`, v);
  return v;
}

export function str(body: Body, field: string): string {
  const v = body[field];
  if (typeof v !== 'string') throw bad(field, 'a string', v);
  return v;
}

/**
 * A topic name a request reads in `field`: 1-249 of Kafka's legal characters, by the rule
 * topics are created with (protocol/topic-names.ts; '__' names allowed, they exist).
 * Another string is INVALID_TOPIC, whose message shows a short prefix of it: answers echo
 * names, and an unbounded one made an answer twice the size of its request. What is no
 * string is INVALID_REQUEST, as for any field.
 */
export function topicName(body: Body, field: string): string {
  return legalTopicName(body[field], field);
}

/** topicName of a value (an element of a list of names). */
export function legalTopicName(value: unknown, field = 'topic'): string {
  const err = topicError(value, field);
  if (err !== null) throw err;
  return value as string;
}

/**
 * For answers built without a throw: the answer for a topic name a request holds that
 * topicName would refuse, or null when it is a legal name.
 */
export function invalidTopic(value: unknown, field = 'topic'): { error: number; message: string } | null {
  const err = topicError(value, field);
  return err === null ? null : { error: err.code, message: err.detail };
}

function topicError(value: unknown, field: string): TributaryError | null {
  return typeof value === 'string' ? topicNameError(value, true) : bad(field, 'a string', value);
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

export function optionalList(body: Body, field: string, maxLength: number): unknown[] | undefined {
  return body[field] === undefined || body[field] === null ? undefined : list(body, field, maxLength);
}

export function map(value: unknown, field: string): Body {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) throw bad(field, 'a map', value);
  return value as Body;
}

export function strings(body: Body, field: string, maxLength: number): string[] {
  const v = list(body, field, maxLength);
  for (const s of v) if (typeof s !== 'string') throw bad(`${field}[]`, 'a string', s);
  return v as string[];
}

/**
 * The entries (partitions, topics) a request names in `field`: at most
 * limits.requestEntriesMax, so that one frame cannot fan out into unbounded work. More is
 * INVALID_REQUEST naming the key, counted in tributary_limits_reached_total.
 */
/** What requestEntries needs of the node (a BrokerContext is one). */
export interface EntriesBound {
  readonly limits: { readonly requestEntriesMax: number };
  readonly metrics: { readonly limitReached: { inc(labels: { limit: string }): void } };
}

export function requestEntries(body: Body, field: string, broker: EntriesBound): unknown[] {
  const v = body[field];
  const max = broker.limits.requestEntriesMax;
  if (Array.isArray(v) && v.length > max) {
    broker.metrics.limitReached.inc({ limit: 'requestEntriesMax' });
    throw new LimitReachedError(Errors.INVALID_REQUEST, 'requestEntriesMax', `${field} names ${v.length} entries; limits.requestEntriesMax allows ${max} per request`);
  }
  return list(body, field, max);
}

/** requestEntries of a field that may be left out (absent or null: undefined). */
export function optionalRequestEntries(body: Body, field: string, broker: EntriesBound): unknown[] | undefined {
  return body[field] === undefined || body[field] === null ? undefined : requestEntries(body, field, broker);
}
