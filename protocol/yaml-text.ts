// YAML a person wrote (a node's config, a simulator scenario), parsed with every mistake
// reported as compilers report theirs: one line each, `file:line:column: not valid YAML:
// reason`. The yaml library ends its message with "at line L, column C:" and a picture of
// the line, which does not fit on one line and, cut at the first, ends in a bare colon.

import { createRequire } from 'node:module';
import type { YAMLError } from 'yaml';
import { Errors, TributaryError } from './errors.js';

/** The value `text` holds; INVALID_CONFIG with one line per YAML error of `source` otherwise. */
export function parseYamlText(text: string, source: string): unknown {
  // Loaded here, not at start: a node without a config file does not carry the YAML
  // parser (about 3 MB of memory on a gateway).
  const { parseDocument } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new TributaryError(Errors.INVALID_CONFIG, doc.errors.map((err) => yamlMistake(source, err)).join('\n'));
  try {
    return doc.toJS();
  } catch (err) {
    throw new TributaryError(Errors.INVALID_CONFIG, `${source}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
}

function yamlMistake(source: string, err: YAMLError): string {
  const reason = err.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '').replace(/:$/, '');
  const at = err.linePos?.[0];
  return `${source}${at ? `:${at.line}:${at.col}` : ''}: not valid YAML: ${reason}`;
}
