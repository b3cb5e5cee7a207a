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
