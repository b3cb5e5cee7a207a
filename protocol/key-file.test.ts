import { describe, expect, it } from 'vitest';
import { encodeKeyFile, generateIdentity, parseKeyFile, parsePublicKey } from './key-file.js';

describe('identity key files', () => {
  it('round-trips a key pair', () => {
    const id = generateIdentity();
    const back = parseKeyFile(encodeKeyFile(id));
    expect(back.publicKey.equals(id.publicKey)).toBe(true);
    expect(back.secretKey.equals(id.secretKey)).toBe(true);
  });

  it('refuses files that are not one consistent key pair, naming the problem', () => {
    const a = JSON.parse(encodeKeyFile(generateIdentity()));
    const b = JSON.parse(encodeKeyFile(generateIdentity()));
    const cases: [string, RegExp][] = [
      ['not json', /not JSON/],
      ['{}', /not a Tributary identity file/],
      [JSON.stringify({ ...a, version: 2 }), /version 2/],
      [JSON.stringify({ ...a, publicKey: 'abcd' }), /hex of 32/],
      [JSON.stringify({ ...a, secretKey: a.secretKey.slice(2) }), /hex of 32/],
      [JSON.stringify({ ...a, publicKey: b.publicKey }), /do not belong together/],
    ];
    for (const [text, message] of cases) expect(() => parseKeyFile(text, 'id.key')).toThrow(message);
  });

  it('parses public keys given as hex, and nothing else', () => {
    const id = generateIdentity();
    expect(parsePublicKey(id.publicKey.toString('hex')).equals(id.publicKey)).toBe(true);
    for (const bad of ['', 'xyz', id.publicKey.toString('hex').slice(1), `${id.publicKey.toString('hex')}00`]) {
      expect(() => parsePublicKey(bad)).toThrow(/64 hex characters/);
    }
  });
});
