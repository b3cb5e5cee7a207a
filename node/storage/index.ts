// The storage engine's public face: what the server imports. Everything else in this
// folder is internal.

export { DEFAULT_TOPIC_CONFIG, parseTopicConfig } from './config.js';
export type { FlushPolicy, TopicConfig } from './config.js';
export { nodeFileOps } from './file-ops.js';
export type { FileOps } from './file-ops.js';
export { CLEAN_SHUTDOWN_FILE, LogManager } from './log-manager.js';
export type { CreateTopicOptions, LogManagerOptions, RecoveryReport, TopicInfo } from './log-manager.js';
export { PartitionLog } from './partition-log.js';
export type { AppendResult } from './partition-log.js';
export type { PartitionRecovery } from './recovery.js';
