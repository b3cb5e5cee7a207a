// A raw TCP client for tests of what the node does with bytes that are not (yet) a
// WebSocket: what it received, and its close.

import { connect, type Socket } from 'node:net';

export interface RawSocket {
  socket: Socket;
  received: () => string;
  closed: Promise<void>;
}

/** Connects to 127.0.0.1:`port`; resolves once connected, after writing `send` if given. */
export async function rawSocket(port: number, send?: string): Promise<RawSocket> {
  const socket = connect(port, '127.0.0.1');
  let received = '';
  socket.on('data', (d: Buffer) => (received += d.toString()));
  socket.on('error', () => {});
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  if (send !== undefined) socket.write(send);
  return { socket, received: () => received, closed };
}
