import { describe, expect, it } from 'vitest';
import { metricsUrlOf, parseNodeLimits } from './node-limits.js';

// A /metrics body as a node serves it, trimmed to the families read and their neighbours.
const METRICS = `# HELP tributary_connections_closed_total Client connections closed, by reason
# TYPE tributary_connections_closed_total counter
tributary_connections_closed_total{reason="client_closed"} 1000
tributary_connections_closed_total{reason="preauth_evicted"} 37
tributary_connections_closed_total{reason="handshake_timeout"} 2
# HELP tributary_connections_refused_total Sockets and WebSocket upgrades refused before the handshake, by the limit reached
# TYPE tributary_connections_refused_total counter
tributary_connections_refused_total{reason="handshakes_per_address"} 120
tributary_connections_refused_total{reason="connections_max"} 3
# HELP tributary_limits_reached_total Times a configured limit stopped a request, a connection or part of one
# TYPE tributary_limits_reached_total counter
tributary_limits_reached_total{limit="handshakesMax"} 37
tributary_limits_reached_total{limit="handshakesPerAddressMax"} 120
# HELP tributary_connections Open client connections (WebSockets)
# TYPE tributary_connections gauge
tributary_connections 998
tributary_request_errors_total{kind="Produce",error="THROTTLED"} 5
`;

describe('parseNodeLimits', () => {
  it('reads refusals by reason, evictions, and limits reached by limit, and nothing else', () => {
    expect(parseNodeLimits(METRICS)).toEqual({
      refused: { handshakes_per_address: 120, connections_max: 3 },
      evicted: 37,
      limitsReached: { handshakesMax: 37, handshakesPerAddressMax: 120 },
    });
  });

  it('counts nothing for a node that has reached no limit (its families have no samples yet)', () => {
    const quiet = METRICS.split('\n').filter((l) => l.startsWith('#') || l.startsWith('tributary_connections ')).join('\n');
    expect(parseNodeLimits(quiet)).toEqual({ refused: {}, evicted: 0, limitsReached: {} });
    expect(parseNodeLimits('')).toEqual({ refused: {}, evicted: 0, limitsReached: {} });
  });
});

describe('metricsUrlOf', () => {
  it("is the node's /metrics on the WebSocket endpoint's host and port", () => {
    expect(metricsUrlOf('ws://127.0.0.1:7400/v1')).toBe('http://127.0.0.1:7400/metrics');
    expect(metricsUrlOf('ws://[::1]:41234/v1?x=1')).toBe('http://[::1]:41234/metrics');
    expect(metricsUrlOf('wss://gateway.example/v1')).toBe('https://gateway.example/metrics');
  });
});
