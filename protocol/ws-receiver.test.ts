import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

// The receiver of `ws` as patched by protocol/patches (applied by `npm ci`): it keeps its
// chunk and fragment arrays from one message to the next instead of allocating new ones.
// These tests check that the patch is in place and that framing still comes out right.

interface ReceiverLike {
  on(event: 'message', listener: (data: unknown, isBinary: boolean) => void): unknown;
  on(event: 'ping', listener: (data: Buffer) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  write(chunk: Buffer): boolean;
  _buffers: Buffer[];
  _fragments: Buffer[];
  _singleFragment: unknown[];
}
type ReceiverClass = new (options: { isServer: boolean; binaryType?: string }) => ReceiverLike;
const { Receiver } = createRequire(import.meta.url)('ws') as { Receiver: ReceiverClass };

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_PING = 0x9;

/** One client-to-server frame (masked, as RFC 6455 section 5.3 requires), built by hand. */
function frame(opcode: number, payload: Buffer, fin = true): Buffer {
  const mask = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
  const length = payload.length;
  const header = length < 126 ? Buffer.alloc(2) : length < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  header[0] = (fin ? 0x80 : 0) | opcode;
  if (length < 126) header[1] = 0x80 | length;
  else if (length < 65536) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(length, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i] ^= mask[i % 4];
  return Buffer.concat([header, mask, masked]);
}

function receiver(binaryType = 'nodebuffer'): { r: ReceiverLike; messages: { data: unknown; isBinary: boolean }[]; errors: Error[] } {
  const r = new Receiver({ isServer: true, binaryType });
  const messages: { data: unknown; isBinary: boolean }[] = [];
  const errors: Error[] = [];
  r.on('message', (data, isBinary) => messages.push({ data, isBinary }));
  r.on('error', (err) => errors.push(err));
  return { r, messages, errors };
}

const payload = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

describe('the patched ws receiver', () => {
  it('keeps its arrays across single-frame messages', () => {
    const { r, messages } = receiver();
    r.write(frame(OP_BINARY, payload(40, 1)));
    const fragments = r._fragments;
    const single = r._singleFragment;
    for (let i = 2; i <= 5; i++) r.write(frame(OP_BINARY, payload(40, i)));
    expect(messages.map((m) => m.data)).toEqual([1, 2, 3, 4, 5].map((i) => payload(40, i)));
    // Unpatched, _fragments is a new array for every message, and _buffers is emptied by
    // shift() (V8 then drops its backing store) instead of keeping an empty placeholder.
    expect(r._fragments).toBe(fragments);
    expect(r._singleFragment).toBe(single);
    expect(r._buffers).toEqual([Buffer.alloc(0)]);
    // Nothing of the last message is held once it is handed over.
    expect(r._singleFragment).toEqual([undefined]);
  });

  it('reassembles a fragmented message, with a ping between its frames', () => {
    const { r, messages } = receiver();
    const pings: Buffer[] = [];
    r.on('ping', (d) => pings.push(d));
    r.write(frame(OP_BINARY, payload(10, 1), false));
    r.write(frame(OP_PING, Buffer.from('hi')));
    r.write(frame(OP_CONTINUATION, payload(20, 2), false));
    r.write(frame(OP_CONTINUATION, payload(30, 3), true));
    r.write(frame(OP_BINARY, payload(5, 4)));
    expect(pings.map((p) => p.toString())).toEqual(['hi']);
    expect(messages.map((m) => m.data)).toEqual([Buffer.concat([payload(10, 1), payload(20, 2), payload(30, 3)]), payload(5, 4)]);
  });

  it('reads frames split at every byte and several frames in one chunk', () => {
    const { r, messages } = receiver();
    const wire = Buffer.concat([frame(OP_BINARY, payload(3, 1)), frame(OP_BINARY, payload(200, 2)), frame(OP_BINARY, payload(70_000, 3)), frame(OP_BINARY, Buffer.alloc(0))]);
    // One byte at a time, then the same frames in one chunk.
    for (let i = 0; i < 300; i++) r.write(wire.subarray(i, i + 1));
    r.write(wire.subarray(300));
    r.write(wire);
    const expected = [payload(3, 1), payload(200, 2), payload(70_000, 3), Buffer.alloc(0)];
    expect(messages.map((m) => m.data)).toEqual([...expected, ...expected]);
  });

  it('gives text messages, whole and fragmented', () => {
    const { r, messages, errors } = receiver();
    r.write(frame(OP_TEXT, Buffer.from('héllo')));
    r.write(frame(OP_TEXT, Buffer.from('wor'), false));
    r.write(frame(OP_CONTINUATION, Buffer.from('ld'), true));
    expect(errors).toEqual([]);
    expect(messages.map((m) => [String(m.data), m.isBinary])).toEqual([['héllo', false], ['world', false]]);
  });

  it('hands each message its own array when binaryType is fragments', () => {
    const { r, messages } = receiver('fragments');
    r.write(frame(OP_BINARY, payload(8, 1)));
    r.write(frame(OP_BINARY, payload(8, 2)));
    const [a, b] = messages.map((m) => m.data as Buffer[]);
    expect(a).toEqual([payload(8, 1)]);
    expect(b).toEqual([payload(8, 2)]);
    expect(a).not.toBe(b);
    expect(a).not.toBe(r._singleFragment);
  });

  it('gives an ArrayBuffer of exactly the message when binaryType is arraybuffer', () => {
    const { r, messages } = receiver('arraybuffer');
    r.write(Buffer.concat([frame(OP_BINARY, payload(9, 1)), frame(OP_BINARY, payload(4, 2))]));
    expect(messages.map((m) => Buffer.from(m.data as ArrayBuffer))).toEqual([payload(9, 1), payload(4, 2)]);
  });
});
