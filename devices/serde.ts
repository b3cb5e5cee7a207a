// How application values become record bytes and back. Values are opaque bytes to the node;
// the SDK's convention is: strings travel as UTF-8,
// bytes as they are, and anything else as CBOR, marked with a `content-type:
// application/cbor` header (and `key-content-type` for a CBOR key) so any reader can tell
// how to decode it without out-of-band knowledge.

import { Decoder, Encoder } from 'cbor-x';
import type { Header } from '../protocol/record-batch.js';

export const CONTENT_TYPE = 'content-type';
export const KEY_CONTENT_TYPE = 'key-content-type';
export const CBOR_MEDIA_TYPE = 'application/cbor';

const CBOR_MEDIA_TYPE_BYTES = Buffer.from(CBOR_MEDIA_TYPE, 'utf8');

// Plain CBOR maps and arrays (no cbor-x record extension), readable by any CBOR library.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

/** A key or value as an application hands it over. */
export type Payload = Uint8Array | string | null | undefined | number | boolean | bigint | object;

/** Headers as an application hands them over: a map, or pairs (repeated names allowed). */
export type HeadersInit = Record<string, string | Uint8Array> | ReadonlyArray<readonly [string, string | Uint8Array | null]>;

export function cborEncode(value: unknown): Buffer {
  return encoder.encode(value);
}

export function cborDecode(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}

/** True when `payload` will be CBOR-encoded rather than passed as bytes or UTF-8. */
export function isCborPayload(payload: Payload): boolean {
  return payload !== null && payload !== undefined && typeof payload !== 'string' && !(payload instanceof Uint8Array);
}

/** Bytes for a key or value: Uint8Array as is, strings as UTF-8, null stays null, else CBOR. */
export function payloadBytes(payload: Payload): Uint8Array | null {
  if (payload instanceof Uint8Array) return payload;
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  if (payload === null || payload === undefined) return null;
  return encoder.encode(payload);
}

export function cborHeader(name: string): Header {
  return [name, CBOR_MEDIA_TYPE_BYTES];
}

/** Converts application headers to record headers, with byte values. */
export function toHeaders(init: HeadersInit | undefined): Header[] {
  if (init === undefined) return [];
  const out: Header[] = [];
  if (Array.isArray(init)) {
    for (const [name, value] of init as ReadonlyArray<readonly [string, string | Uint8Array | null]>) {
      out.push([name, typeof value === 'string' ? Buffer.from(value, 'utf8') : value]);
    }
    return out;
  }
  for (const name of Object.keys(init)) {
    const value = (init as Record<string, string | Uint8Array>)[name];
    out.push([name, typeof value === 'string' ? Buffer.from(value, 'utf8') : value]);
  }
  return out;
}

/** The last value of header `name`, as bytes, or undefined when absent. */
export function headerBytes(headers: readonly Header[], name: string): Uint8Array | null | undefined {
  for (let i = headers.length - 1; i >= 0; i--) {
    if (headers[i][0] === name) return headers[i][1];
  }
  return undefined;
}

/** The last value of header `name` as UTF-8 text, or undefined when absent or null. */
export function headerString(headers: readonly Header[], name: string): string | undefined {
  const value = headerBytes(headers, name);
  return value === null || value === undefined ? undefined : Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
}

/** Whether header `name` marks the payload as CBOR. Compared as bytes: no string per record. */
export function isCborMarked(headers: readonly Header[], name: string): boolean {
  if (headers.length === 0) return false;
  const value = headerBytes(headers, name);
  return value !== null && value !== undefined && Buffer.compare(value, CBOR_MEDIA_TYPE_BYTES) === 0;
}
