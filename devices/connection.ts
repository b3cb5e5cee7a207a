// One connection to a node shared by the producers, consumers and admin made from it: what
// `connect()` hands an application. Closing it flushes its producers, stops its consumers,
// then closes the socket.

import { Admin } from './admin.js';
import { resolveAuthOptions, type AuthOptions } from './auth-options.js';
import { Client, type ClientOptions } from './client.js';
import { Consumer, type ConsumerOptions, type ValueDecoding } from './consumer.js';
import { GroupConsumer, type GroupConsumerOptions } from './group-consumer.js';
import { Producer, type ProducerOptions } from './producer.js';

/**
 * The Client's options, with identity, credential and pins also as file paths and hex,
 * each falling back to its environment variable (see auth-options.ts). Its `clock` is the
 * Client's, and so that of every producer, consumer and group member made from the
 * connection that is not given one of its own.
 */
export type ConnectOptions = Omit<ClientOptions, keyof AuthOptions> & AuthOptions;

export class Connection {
  private readonly producers = new Set<Producer>();
  private readonly consumers = new Set<Consumer<ValueDecoding>>();
  private readonly groupConsumers = new Set<GroupConsumer<ValueDecoding>>();
  private closing: Promise<void> | null = null;

  constructor(readonly client: Client) {}

  producer(options: ProducerOptions = {}): Producer {
    const producer = new Producer(this.client, options);
    this.producers.add(producer);
    return producer;
  }

  consumer<D extends ValueDecoding = 'buffer'>(options: ConsumerOptions<D> = {}): Consumer<D> {
    const consumer = new Consumer<D>(this.client, options);
    this.consumers.add(consumer as unknown as Consumer<ValueDecoding>);
    return consumer;
  }

  /** A member of a consumer group: it joins when first read from (or on start()). */
  groupConsumer<D extends ValueDecoding = 'buffer'>(options: GroupConsumerOptions<D>): GroupConsumer<D> {
    const consumer = new GroupConsumer<D>(this.client, options);
    this.groupConsumers.add(consumer as unknown as GroupConsumer<ValueDecoding>);
    return consumer;
  }

  admin(): Admin {
    return new Admin(this.client);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.producers].map((p) => p.close()));
      // Group members commit and leave, which needs the socket still open.
      await Promise.allSettled([...this.groupConsumers].map((c) => c.close()));
      await Promise.allSettled([...this.consumers].map((c) => c.close()));
      await this.client.close();
    })();
    return this.closing;
  }
}

/**
 * Connects to a node (retrying up to connectTimeoutMs) and returns the shared connection.
 * Given several node URLs, it uses any one of them and goes on to the next when the one in
 * use is gone. Identity, credential and pins not given in `options` are taken from
 * TRIBUTARY_IDENTITY, TRIBUTARY_CREDENTIAL, TRIBUTARY_NODE_KEY and TRIBUTARY_FLEET_KEY.
 */
export async function connect(urls: string | readonly string[], options: ConnectOptions = {}): Promise<Connection> {
  const { identity, identityFile, credential, credentialFile, nodePublicKey, fleetPublicKey, ...rest } = options;
  const auth = resolveAuthOptions({ identity, identityFile, credential, credentialFile, nodePublicKey, fleetPublicKey });
  return new Connection(await Client.connect(urls, { ...rest, ...auth }));
}
