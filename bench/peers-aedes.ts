// The aedes MQTT broker for bench/peers.ts, in a process of its own so its RSS is measured
// apart from the benchmark's clients: aedes with aedes-persistence-level (LevelDB) on a
// data folder, so QoS 1 messages queued for an offline persistent session are stored.
//
//   node dist/bench/peers-aedes.js DATA_DIR
//
// Prints `listening on PORT` (a free loopback port) when ready; SIGTERM closes it.

import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { Aedes } from 'aedes';
import { Level } from 'level';

// aedes-persistence-level is CommonJS without type declarations.
const require = createRequire(import.meta.url);
const levelPersistence = require('aedes-persistence-level') as (db: unknown) => unknown;

const dataDir = process.argv[2];
if (dataDir === undefined) throw new Error('usage: peers-aedes DATA_DIR');

const db = new Level(dataDir);
const broker = await Aedes.createBroker({ persistence: levelPersistence(db) });
const server = createServer(broker.handle);
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  process.stdout.write(`listening on ${address.port}\n`);
});

process.once('SIGTERM', () => {
  server.close();
  broker.close(() => {
    void db.close().then(() => process.exit(0));
  });
});
