// What the node itself counted of its connection limits, read from its Prometheus text at
// the end of a run: sockets refused, sockets evicted before admission, and every limit
// reached. The simulator reads them from the outside, as any scraper would, rather than
// importing the node's metrics module: it talks to a node only over the network.

import type { NodeLimitCounts } from './types.js';

const FAMILY_SAMPLE = /^(tributary_connections_refused_total|tributary_connections_closed_total|tributary_limits_reached_total)\{(\w+)="([^"\\]*)"\} (\S+)$/;

/** The counts out of a /metrics body; families that are absent count nothing. */
export function parseNodeLimits(text: string): NodeLimitCounts {
  const counts: NodeLimitCounts = { refused: {}, evicted: 0, limitsReached: {} };
  for (const line of text.split('\n')) {
    const m = FAMILY_SAMPLE.exec(line.trim());
    if (m === null) continue;
    const [, family, , label, raw] = m;
    const value = Number(raw);
    if (!Number.isFinite(value)) continue;
    if (family === 'tributary_connections_refused_total') counts.refused[label] = value;
    else if (family === 'tributary_limits_reached_total') counts.limitsReached[label] = value;
    else if (label === 'preauth_evicted') counts.evicted = value;
  }
  return counts;
}

/** The node's `/metrics` beside its WebSocket endpoint (`ws://host:port/v1`). */
export function metricsUrlOf(nodeUrl: string): string {
  const url = new URL(nodeUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  url.pathname = '/metrics';
  url.search = '';
  return url.toString();
}

/** Reads the counts from a running node; null when it does not answer (it is down, or not ours). */
export async function readNodeLimits(nodeUrl: string, timeoutMs = 5000): Promise<NodeLimitCounts | null> {
  try {
    const response = await fetch(metricsUrlOf(nodeUrl), { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) return null;
    return parseNodeLimits(await response.text());
  } catch {
    return null;
  }
}
