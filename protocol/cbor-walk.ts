// A structural pre-check of CBOR (RFC 8949), run on untrusted bytes before a full decoder
// sees them. A decoder allocates for every item (an empty map becomes an object), so a
// 15 MiB frame of one-byte empty maps costs cbor-x about 1 GB of heap before any check of
// ours runs. Walking the heads first bounds that work by counting: items and nesting depth
// are limited, and every declared length is checked against the bytes present. String
// payloads are skipped by their length, never read, so a Fetch response carrying large
// batches costs a few heads, whatever its size.
//
// Every CBOR data item starts with a head (RFC 8949 section 3):
//
//   initial byte   bits 7-5 major type, bits 4-0 additional info
//     additional info  0..23  the argument itself
//                     24..27  the argument follows in 1, 2, 4 or 8 bytes, big-endian
//                     28..30  reserved: not well-formed
//                         31  indefinite length (major 2..5); the break code 0xff (major 7)
//
//   major 0, 1  unsigned / negative integer  argument = the value
//   major 2, 3  byte / text string           argument = byte length; then the bytes
//   major 4     array                        argument = item count; then the items
//   major 5     map                          argument = pair count; then 2 x count items
//   major 6     tag                          argument = tag number; then one item
//   major 7     simple value or float        argument = the value or the float's bits
//
// An indefinite-length string is definite-length chunks of its own major type, then 0xff.
// An indefinite-length array or map is items (key-value pairs) until 0xff.

import { DecodeError, Errors, TributaryError } from './errors.js';

export interface CborLimits {
  /** Data items in all: each head counts, including tags and indefinite strings' chunks. */
  itemsMax: number;
  /** Arrays, maps and tags open one inside another; a top-level array is depth 1. */
  depthMax: number;
}

// What the stack holds per open container: a definite container's items still to come
// (at least 1), or one of these for an indefinite-length one.
const INDEFINITE_ARRAY = -1;
/** An indefinite map before a key: the break code may come here. */
const INDEFINITE_MAP_KEY = -2;
/** An indefinite map after a key: its value must come first. */
const INDEFINITE_MAP_VALUE = -3;

const BREAK = 0xff;
const TWO_32 = 4294967296;

function fail(detail: string, at: number): never {
  throw new DecodeError(Errors.INVALID_REQUEST, detail, at);
}

/**
 * Bytes that follow the initial byte for additional info `ai` (0..27; 31 takes none).
 * Reserved values (28..30) are refused by the caller first.
 */
function argumentBytes(ai: number): number {
  return ai < 24 || ai === 31 ? 0 : 1 << (ai - 24);
}

/** The argument of a head whose following bytes are known to be present. */
function readArgument(bytes: Uint8Array, at: number, ai: number): number {
  if (ai < 24) return ai;
  switch (ai) {
    case 24:
      return bytes[at];
    case 25:
      return (bytes[at] << 8) | bytes[at + 1];
    case 26:
      return bytes[at] * 0x1000000 + ((bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]);
    default: {
      // 64 bits as a double: exact below 2^53, and anything above is past the end anyway.
      const hi = bytes[at] * 0x1000000 + ((bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]);
      const lo = bytes[at + 4] * 0x1000000 + ((bytes[at + 5] << 16) | (bytes[at + 6] << 8) | bytes[at + 7]);
      return hi * TWO_32 + lo;
    }
  }
}

/**
 * Checks that `bytes` hold exactly one well-formed CBOR item within `limits`, reading only
 * heads. Throws DecodeError(INVALID_REQUEST) naming the first thing wrong. It does not
 * check what a full decoder checks beyond structure (UTF-8 of text, tag semantics).
 */
export function checkCborStructure(bytes: Uint8Array, limits: CborLimits): void {
  const itemsMax = limits.itemsMax;
  const depthMax = limits.depthMax;
  // NaN would compare false everywhere and switch the limits off without a word.
  if (!(itemsMax >= 0) || !(depthMax >= 0)) {
    throw new TributaryError(Errors.INVALID_CONFIG, `CBOR limits must be non-negative numbers, got itemsMax ${itemsMax}, depthMax ${depthMax}`);
  }
  const end = bytes.length;
  let stack = scratch;
  let depth = 0;
  let pos = 0;
  let items = 0;
  for (;;) {
    if (pos >= end) fail(depth === 0 ? 'no CBOR item' : `CBOR ends inside ${openContainer(stack[depth - 1])}`, pos);
    const head = pos;
    const initial = bytes[pos++];
    const major = initial >> 5;
    const ai = initial & 0x1f;
    if (initial === BREAK) {
      const top = depth === 0 ? 0 : stack[depth - 1];
      if (top !== INDEFINITE_ARRAY && top !== INDEFINITE_MAP_KEY) fail('CBOR break code outside an indefinite-length array or map, or after a map key', head);
      depth--;
    } else {
      if (ai >= 28 && ai <= 30) fail(`CBOR reserved additional info ${ai}`, head);
      if (++items > itemsMax) fail(`CBOR holds more than ${itemsMax} items (itemsMax)`, head);
      let argument = ai;
      if (ai >= 24 && ai !== 31) {
        const size = argumentBytes(ai);
        if (size > end - pos) fail('CBOR ends inside an item head', head);
        argument = readArgument(bytes, pos, ai);
        pos += size;
      }
      const indefinite = ai === 31;
      if (major === 2 || major === 3) {
        if (indefinite) {
          // Rare (cbor-x neither writes nor reads them): an object per call is fine here.
          const skipped = skipChunks(bytes, pos, major, itemsMax - items);
          pos = skipped.pos;
          items += skipped.chunks;
        } else {
          if (argument > end - pos) fail(`CBOR ${major === 2 ? 'byte' : 'text'} string of ${argument} bytes runs past the end (${end - pos} left)`, head);
          pos += argument;
        }
      } else if (major >= 4 && major <= 6) {
        if (depth >= depthMax) fail(`CBOR nests deeper than ${depthMax} levels (depthMax)`, head);
        let entry: number;
        if (indefinite) {
          if (major === 6) fail('CBOR tag with indefinite length', head);
          entry = major === 4 ? INDEFINITE_ARRAY : INDEFINITE_MAP_KEY;
        } else if (major === 6) {
          entry = 1;
        } else {
          const count = major === 4 ? argument : argument * 2;
          // Each item takes at least one byte and counts toward itemsMax: a count that
          // cannot fit is refused before any of it is walked.
          const kind = major === 4 ? 'array' : 'map';
          if (count > end - pos) fail(`CBOR ${kind} of ${argument} entries runs past the end (${end - pos} bytes left)`, head);
          if (count > itemsMax - items) fail(`CBOR ${kind} of ${argument} entries: more than ${itemsMax} items (itemsMax)`, head);
          entry = count;
        }
        if (entry !== 0) {
          if (depth === stack.length) stack = growScratch();
          stack[depth++] = entry;
          continue;
        }
      } else if (indefinite) {
        // Major 0 and 1 (integers) take no indefinite length; major 7's is the break code.
        fail(`CBOR ${major === 0 ? 'unsigned' : 'negative'} integer with indefinite length`, head);
      }
    }
    // One item is complete: count it in the containers around it, closing each it fills.
    while (depth > 0) {
      const left = stack[depth - 1];
      if (left > 1) {
        stack[depth - 1] = left - 1;
        break;
      }
      if (left === 1) {
        depth--;
        continue;
      }
      if (left === INDEFINITE_MAP_KEY) stack[depth - 1] = INDEFINITE_MAP_VALUE;
      else if (left === INDEFINITE_MAP_VALUE) stack[depth - 1] = INDEFINITE_MAP_KEY;
      break;
    }
    if (depth === 0) break;
  }
  if (pos !== end) fail(`${end - pos} bytes after the CBOR item`, pos);
}

// The open containers' entries, shared by every walk: a walk runs to its end synchronously,
// so no two use it at once, and the hot path allocates nothing. Grown on demand.
let scratch: Float64Array = new Float64Array(64);

function growScratch(): Float64Array {
  const grown = new Float64Array(scratch.length * 2);
  grown.set(scratch);
  scratch = grown;
  return grown;
}

/**
 * Skips an indefinite-length string's chunks and its break: where it ends, and how many
 * chunks (each an item) it held. More than `chunksMax` is more than itemsMax leaves.
 */
function skipChunks(bytes: Uint8Array, pos: number, major: number, chunksMax: number): { pos: number; chunks: number } {
  const end = bytes.length;
  let chunks = 0;
  for (;;) {
    if (pos >= end) fail('CBOR ends inside an indefinite-length string', pos);
    const head = pos;
    const initial = bytes[pos++];
    if (initial === BREAK) return { pos, chunks };
    const ai = initial & 0x1f;
    if (initial >> 5 !== major || ai >= 28) fail('CBOR indefinite-length string chunk is not a definite string of its type', head);
    if (++chunks > chunksMax) fail('CBOR indefinite-length string has more chunks than itemsMax leaves', head);
    const size = argumentBytes(ai);
    if (size > end - pos) fail('CBOR ends inside an item head', head);
    const length = readArgument(bytes, pos, ai);
    pos += size;
    if (length > end - pos) fail(`CBOR string chunk of ${length} bytes runs past the end (${end - pos} left)`, head);
    pos += length;
  }
}

function openContainer(entry: number): string {
  if (entry === INDEFINITE_ARRAY) return 'an indefinite-length array';
  if (entry === INDEFINITE_MAP_KEY || entry === INDEFINITE_MAP_VALUE) return 'an indefinite-length map';
  return 'an array, map or tag';
}
