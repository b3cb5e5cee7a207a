// Readers for untrusted request bodies. A frame that decodes as CBOR can still hold any
// shape; each handler reads its fields through these, so a wrong type is answered
// INVALID_REQUEST naming the field instead of reaching the storage engine.

import { Errors, TributaryError } from '../../protocol/errors.js';

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

/** Per-partition entries in one request: bounded so one frame cannot fan out without limit. */
export const PARTITIONS_PER_REQUEST_MAX = 10_000;
