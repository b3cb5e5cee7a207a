// The SDK's public face. Applications, the simulator and benchmarks import from here only;
// the other files of devices/ are private and may change shape.

export { Client, webSocketTransportFactory } from './client.js';
export type { ConnectionOptions } from './client-connection.js';
export type { ClientOptions, NodeLimits, PushHandler, PushSubscription, ReconnectOptions, RequestKind, RequestOptions, TransportFactory, WebSocketTransportOptions } from './client.js';
export { ManualClock, systemClock } from '../protocol/clock.js';
export type { Clock, ClockTimer } from '../protocol/clock.js';
export { Producer } from './producer.js';
export type { CompressionName, ProducerMessage, ProducerOptions, RecordMetadata } from './producer.js';
export { Consumer } from './consumer.js';
export type {
  AutoOffsetReset,
  ConsumerOptions,
  ConsumerRecord,
  DecodedValue,
  DeliveryMode,
  LogDivergence,
  OffsetForTime,
  PartitionAssignment,
  TopicPartition,
  ValueDecoding,
} from './consumer.js';
export { GroupConsumer } from './group-consumer.js';
export type { AssignmentChange, CommitOffset, GroupConsumerOptions } from './group-consumer.js';
export { Admin } from './admin.js';
export type { ConfigAlteration, ConfigEntry, NewTopic, OffsetAnswer, OffsetQuery, OffsetSpec, PartitionDescription, TopicConfig, TopicConfigDescription, TopicDescription, TopicOutcome } from './admin.js';
export { Connection, connect } from './connection.js';
export type { ConnectOptions } from './connection.js';
export { AUTH_ENV, resolveAuthOptions } from './auth-options.js';
export type { AuthOptions } from './auth-options.js';
export { readCredentialFile, readIdentityFile } from './identity.js';
export type { IdentityKeyPair } from '../protocol/key-file.js';
export { ConnectionError, PartitionError } from './errors.js';
export { CBOR_MEDIA_TYPE, CONTENT_TYPE, KEY_CONTENT_TYPE, cborDecode, cborEncode, headerBytes, headerString } from './serde.js';
export type { HeadersInit, Payload } from './serde.js';
export { Errors, TributaryError } from '../protocol/errors.js';
export type { ErrorName, ErrorSpec } from '../protocol/errors.js';
export { Kind, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP } from '../protocol/frames.js';
export type { Acks } from '../protocol/frames.js';
export type { Header } from '../protocol/record-batch.js';
export type { FrameTransport, CloseInfo } from '../protocol/transport.js';
