import { describe, expect, it } from 'vitest';
import { addressGroupOf, ExemptAddresses, parseCidr } from './address-ranges.js';
import { applyConfig, defaultConfig } from './config.js';

describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/8', { address: '10.0.0.0', prefix: 8, family: 'ipv4' }],
    ['192.168.1.7', { address: '192.168.1.7', prefix: 32, family: 'ipv4' }],
    [' fd00::/8 ', { address: 'fd00::', prefix: 8, family: 'ipv6' }],
    ['::1', { address: '::1', prefix: 128, family: 'ipv6' }],
  ])('reads %j', (text, expected) => {
    expect(parseCidr(text)).toEqual(expected);
  });

  it.each(['', '10.0.0.0/33', 'fd00::/129', '10.0.0/8', 'gateway.local', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/8/8'])('refuses %j', (text) => {
    expect(parseCidr(text)).toBeNull();
  });
});

describe('ExemptAddresses', () => {
  it('always exempts loopback, in every form a socket reports it', () => {
    const exempt = new ExemptAddresses([]);
    for (const a of ['127.0.0.1', '127.9.8.7', '::1', '::ffff:127.0.0.1']) expect(exempt.has(a)).toBe(true);
    for (const a of ['10.1.2.3', '::ffff:10.1.2.3', 'fd00::1', '?']) expect(exempt.has(a)).toBe(false);
  });

  it('exempts the configured ranges, IPv4 peers on a dual-stack socket included', () => {
    const exempt = new ExemptAddresses(['10.0.0.0/8', '192.168.1.7', 'fd00::/8']);
    for (const a of ['10.200.0.1', '::ffff:10.200.0.1', '192.168.1.7', 'fd12::5']) expect(exempt.has(a)).toBe(true);
    for (const a of ['11.0.0.1', '192.168.1.8', 'fe80::1']) expect(exempt.has(a)).toBe(false);
  });
});

describe('limits.exemptAddresses in the config', () => {
  it('takes a list of ranges', () => {
    const config = applyConfig(defaultConfig(), { limits: { exemptAddresses: ['10.0.0.0/8', '192.168.1.7'] } }, 'node.yaml');
    expect(config.limits.exemptAddresses).toEqual(['10.0.0.0/8', '192.168.1.7']);
    expect(defaultConfig().limits.exemptAddresses).toEqual([]);
  });

  it('names every bad entry, with its index', () => {
    expect(() => applyConfig(defaultConfig(), { limits: { exemptAddresses: ['10.0.0.0/8', 'nat-gateway', '10.0.0.0/40'] } }, 'node.yaml')).toThrow(
      /limits\.exemptAddresses\[1\].*"nat-gateway"\n.*limits\.exemptAddresses\[2\].*"10\.0\.0\.0\/40"/,
    );
    expect(() => applyConfig(defaultConfig(), { limits: { exemptAddresses: '10.0.0.0/8' } }, 'node.yaml')).toThrow(/must be a list/);
  });

  it('checks the new numeric limits against their ranges', () => {
    expect(applyConfig(defaultConfig(), { limits: { connectionsPerPrincipalMax: 4 } }, 'node.yaml').limits.connectionsPerPrincipalMax).toBe(4);
    expect(() => applyConfig(defaultConfig(), { limits: { connectionsPerPrincipalMax: 0 } }, 'node.yaml')).toThrow(/limits\.connectionsPerPrincipalMax must be an integer from 1/);
  });
});

describe('addressGroupOf', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:0DB8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
    ['2001:db8::', '2001:db8:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::192.0.2.33', '64:ff9b:0:0::/64'],
    ['::', '0:0:0:0::/64'],
  ])('%s is counted as %s', (address, group) => {
    expect(addressGroupOf(address)).toBe(group);
  });
});
