// The process's open-files limit (RLIMIT_NOFILE), which bounds sockets and segment files
// together. Node.js cannot read or raise it, so it is read from /proc/self/limits (Linux);
// elsewhere it is unknown and nothing is checked.

import { readFileSync } from 'node:fs';

export interface OpenFilesLimit {
  soft: number;
  hard: number;
}

/** Parses the "Max open files" line of a /proc/<pid>/limits text; null if absent. */
export function parseOpenFilesLimit(text: string): OpenFilesLimit | null {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (!m) return null;
  const value = (s: string) => (s === 'unlimited' ? Number.POSITIVE_INFINITY : Number(s));
  const soft = value(m[1]);
  const hard = value(m[2]);
  return Number.isNaN(soft) || Number.isNaN(hard) ? null : { soft, hard };
}

/** This process's limit, which child processes inherit; null where /proc is not there. */
export function openFilesLimit(path = '/proc/self/limits'): OpenFilesLimit | null {
  try {
    return parseOpenFilesLimit(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}
