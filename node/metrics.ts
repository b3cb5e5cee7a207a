// The node's Prometheus metrics (prom-client), served at GET /metrics. One registry per
// node, not prom-client's global one, so that several nodes in one process (tests, the
// simulator) each count their own.

import { Counter, Gauge, Registry } from 'prom-client';

/**
 * Why a connection ended. The first group is ordinary; every other reason is a peer that
 * misbehaved or was refused, which an operator watches for.
 */
export type CloseReason =
  | 'client_closed'
  | 'node_shutdown'
  | 'handshake_timeout'
  | 'handshake_malformed'
  | 'handshake_too_big'
  | 'handshake_failed'
  | 'handshake_abandoned'
  | 'unauthorized'
  | 'hello_timeout'
  | 'hello_invalid'
  | 'frame_malformed'
  | 'frame_too_big'
  | 'sealed_frame_failed'
  | 'credential_revoked'
  | 'credential_expired'
  | 'protocol_error'
  /** Only under test: BrokerOptions.faults dropped the connection. */
  | 'fault_injected';

export interface NodeMetrics {
  readonly registry: Registry;
  readonly connectionsClosed: Counter<'reason'>;
  /** Refused at the HTTP upgrade, before any handshake: a limit was reached. */
  readonly connectionsRefused: Counter<'reason'>;
  readonly requestsUnauthorized: Counter<'action'>;
  /** Idempotent resends recognised (answered DUPLICATE_SEQUENCE, nothing appended). */
  readonly duplicateBatches: Counter;
}

export function createMetrics(gauges: { connections(): number; handshakesInProgress(): number }): NodeMetrics {
  const registry = new Registry();
  const connectionsClosed = new Counter({
    name: 'tributary_connections_closed_total',
    help: 'Client connections closed, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const connectionsRefused = new Counter({
    name: 'tributary_connections_refused_total',
    help: 'WebSocket upgrades refused before the handshake, by the limit reached',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const requestsUnauthorized = new Counter({
    name: 'tributary_requests_unauthorized_total',
    help: 'Requests (or parts of requests) refused by the ACLs, by action',
    labelNames: ['action'] as const,
    registers: [registry],
  });
  const duplicateBatches = new Counter({
    name: 'tributary_produce_duplicate_batches_total',
    help: 'Batches an idempotent producer resent that were already in the log (answered with their original offsets)',
    registers: [registry],
  });
  new Gauge({
    name: 'tributary_connections',
    help: 'Open client connections (WebSockets)',
    registers: [registry],
    collect() {
      this.set(gauges.connections());
    },
  });
  new Gauge({
    name: 'tributary_handshakes_in_progress',
    help: 'Connections not yet past their handshake and Hello',
    registers: [registry],
    collect() {
      this.set(gauges.handshakesInProgress());
    },
  });
  return { registry, connectionsClosed, connectionsRefused, requestsUnauthorized, duplicateBatches };
}
