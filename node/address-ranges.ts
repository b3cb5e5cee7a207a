// Address ranges for the per-address limits: which peers are exempt from them (loopback
// always, and the ranges a config names: a factory whose devices all arrive from one NAT
// address). Matching is Node's own `net.BlockList`, not a parser of ours.

import { BlockList, isIP } from 'node:net';

export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** `10.0.0.0/8`, `192.168.1.7` (a /32), `fd00::/8`; null when it is not one. */
export function parseCidr(text: string): Cidr | null {
  const trimmed = text.trim();
  const slash = trimmed.indexOf('/');
  const address = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return null;
  const bits = version === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const p = trimmed.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return null;
    prefix = Number(p);
    if (prefix > bits) return null;
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** An IPv4 peer on a dual-stack socket shows as `::ffff:a.b.c.d`: its IPv4 form. */
export function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * What the per-address limits count a peer under: its IPv4 address, or for IPv6 its /64
 * prefix. A host is commonly given a whole /64, so counting single IPv6 addresses would
 * give one host 2^64 of them.
 */
export function addressGroupOf(address: string): string {
  const a = normalizeAddress(address);
  if (isIP(a) !== 6) return a;
  const groups = expandIPv6(a);
  return groups === null ? a : `${groups.slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (isIP said 6), as lowercase hex. */
function expandIPv6(address: string): string[] | null {
  let text = address.split('%')[0];
  const last = text.slice(text.lastIndexOf(':') + 1);
  if (last.includes('.')) {
    // An embedded IPv4 address is the last two groups.
    const v4 = last.split('.').map(Number);
    text = `${text.slice(0, text.length - last.length)}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
  }
  const [head, rest] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = rest === undefined ? 0 : 8 - left.length - right.length;
  const all = [...left, ...Array<string>(Math.max(0, zeros)).fill('0'), ...right];
  return all.length === 8 ? all.map((g) => parseInt(g, 16).toString(16)) : null;
}

/** 127.0.0.0/8 and ::1, also in their IPv4-mapped IPv6 forms. */
export function isLoopbackAddress(address: string): boolean {
  const a = normalizeAddress(address);
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/** The addresses exempt from per-address limits: loopback and the configured ranges. */
export class ExemptAddresses {
  private readonly list = new BlockList();
  private readonly empty: boolean;

  constructor(ranges: readonly string[]) {
    for (const range of ranges) {
      const cidr = parseCidr(range);
      if (cidr === null) throw new Error(`not an address or CIDR range: ${range}`);
      this.list.addSubnet(cidr.address, cidr.prefix, cidr.family);
    }
    this.empty = ranges.length === 0;
  }

  has(address: string): boolean {
    if (isLoopbackAddress(address)) return true;
    if (this.empty) return false;
    const a = normalizeAddress(address);
    const version = isIP(a);
    if (version === 0) return false;
    return this.list.check(a, version === 4 ? 'ipv4' : 'ipv6');
  }
}
