// README.md's walkthroughs, run from the README itself: every command of "Set up a fleet"
// and "Put it on a gateway", in order, as a new user types it, through bash and a
// `tributary` on PATH that runs this build. Only what stands for the user's own values is
// filled in: `<fleet public key>` and `<NAME public key>` with what `fleet init` and
// `keys generate --out NAME.key` printed, and `ws://gateway:7400/v1` with the URL of the
// node the walkthrough started. A block whose first line is `# FILE.yaml` is written to
// that file; `tributary start` runs in the background until its listening line (on a free
// loopback port: TRIBUTARY_PORT and TRIBUTARY_HOST override the config, as they would for
// the user); a `# prints: ...` or `# fails: ...` line under a command is what it must
// print or refuse (`...` matches anything). Steps marked *(root)* or *(systemd)* are the
// only ones skipped. A flag renamed, a step missing or an output changed fails here.
// test/fleet-setup.test.ts checks the same flow more closely; this test checks the text.

import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { CLI, ROOT, tempDir } from './helpers/node-process.js';

const SECTIONS = ['Set up a fleet', 'Put it on a gateway'];
const MARKED = /\*\((?:root|systemd)[^)]*\)\*/;
const BROKER_IN_README = 'ws://gateway:7400/v1';
const COMMAND_TIMEOUT_MS = 30_000;
const START_TIMEOUT_MS = 20_000;

interface Block {
  section: string;
  /** The first line of the step (numbered item or paragraph) the block belongs to. */
  step: string;
  lines: string[];
}

/** The code blocks (indented, as the README writes them) of section `## heading`. */
function codeBlocks(markdown: string, heading: string): Block[] {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`README.md has no section '## ${heading}'`);
  const end = markdown.indexOf('\n## ', start + 1);
  const blocks: Block[] = [];
  let step = '';
  let contentIndent = 0; // where the text of the current list item starts
  let previousBlank = true;
  let open: Block | null = null;
  let codeIndent = 0;
  let blanks = 0; // blank lines inside a code block, kept only if the block goes on
  for (const line of markdown.slice(start, end < 0 ? undefined : end).split('\n').slice(2)) {
    if (line.trim() === '') {
      previousBlank = true;
      if (open !== null) blanks++;
      continue;
    }
    const indent = line.length - line.trimStart().length;
    if (open !== null && indent >= codeIndent) {
      open.lines.push(...Array<string>(blanks).fill(''), line.slice(codeIndent));
      blanks = 0;
      previousBlank = false;
      continue;
    }
    open = null;
    blanks = 0;
    if (previousBlank && indent >= contentIndent + 4) {
      codeIndent = contentIndent + 4;
      open = { section: heading, step, lines: [line.slice(codeIndent)] };
      blocks.push(open);
    } else if (previousBlank && indent === 0) {
      step = line;
      contentIndent = /^\d+\.\s+/.exec(line)?.[0].length ?? 0;
    }
    previousBlank = false;
  }
  return blocks;
}

interface Command {
  text: string;
  prints?: string;
  fails?: string;
}

/** A block's commands: lines joined at a trailing backslash, with the `# prints:`/`# fails:` under each. */
function commandsOf(lines: string[]): Command[] {
  const commands: Command[] = [];
  for (let i = 0; i < lines.length; i++) {
    const expectation = /^# (prints|fails): (.+)$/.exec(lines[i]);
    if (expectation !== null) {
      const last = commands[commands.length - 1];
      if (last === undefined) throw new Error(`'${lines[i]}' follows no command`);
      last[expectation[1] as 'prints' | 'fails'] = expectation[2];
      continue;
    }
    if (lines[i].startsWith('#') || lines[i].trim() === '') continue;
    let text = lines[i];
    while (text.endsWith('\\') && i + 1 < lines.length) text += `\n${lines[++i]}`;
    commands.push({ text });
  }
  return commands;
}

/** `...` in the README's expected text matches anything. */
function pattern(expected: string): RegExp {
  return new RegExp(expected.split('...').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^]*'));
}

const started = new Set<ChildProcess>();

afterEach(async () => {
  await Promise.all([...started].map((proc) => stop(proc, 'SIGKILL')));
});

function stop(proc: ChildProcess, signal: NodeJS.Signals): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => {
    proc.once('exit', (code) => {
      started.delete(proc);
      resolve(code);
    });
    try {
      process.kill(-(proc.pid as number), signal); // its own process group: bash, the shim and node
    } catch {
      proc.kill(signal); // the group is gone already, bar the leader
    }
  });
}

it("runs README.md's fleet walkthrough as written, skipping only steps marked for root or systemd", async () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const dir = tempDir('trib-readme-');
  const bin = join(dir.path, 'bin');
  const work = join(dir.path, 'walkthrough');
  mkdirSync(bin);
  mkdirSync(work);
  writeFileSync(join(bin, 'tributary'), `#!/bin/sh\nexec '${process.execPath}' '${CLI}' "$@"\n`);
  chmodSync(join(bin, 'tributary'), 0o755);
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${bin}:${process.env.PATH}`, TRIBUTARY_PORT: '0', TRIBUTARY_HOST: '127.0.0.1', TRIBUTARY_LOG_LEVEL: 'warn' };
  for (const name of ['TRIBUTARY_BROKER', 'TRIBUTARY_DATA', 'TRIBUTARY_IDENTITY', 'TRIBUTARY_CREDENTIAL', 'TRIBUTARY_NODE_KEY', 'TRIBUTARY_FLEET_KEY']) delete env[name];

  const values = new Map<string, string>();
  let node: { proc: ChildProcess; url: string } | null = null;
  const fill = (text: string): string =>
    text
      .replace(/<([a-z]+(?: [a-z]+)*)>/g, (placeholder) => {
        const value = values.get(placeholder);
        if (value === undefined) throw new Error(`README.md uses ${placeholder} before a command printed it:\n${text}`);
        return value;
      })
      .replaceAll(BROKER_IN_README, () => {
        if (node === null) throw new Error(`README.md uses ${BROKER_IN_README} before starting a node:\n${text}`);
        return node.url;
      });

  const run = (text: string) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const proc = spawn('bash', ['-o', 'pipefail', '-c', text], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      started.add(proc);
      let stdout = '';
      let stderr = '';
      proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        void stop(proc, 'SIGKILL');
        reject(new Error(`did not finish within ${COMMAND_TIMEOUT_MS} ms:\n${text}\n${stderr}`));
      }, COMMAND_TIMEOUT_MS);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        started.delete(proc);
        resolve({ code, stdout, stderr });
      });
    });

  const startNode = (text: string) =>
    new Promise<{ proc: ChildProcess; url: string }>((resolve, reject) => {
      const proc = spawn('bash', ['-c', text], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      started.add(proc);
      let output = '';
      const timer = setTimeout(() => reject(new Error(`no listening line within ${START_TIMEOUT_MS} ms:\n${text}\n${output}`)), START_TIMEOUT_MS);
      const check = (d: Buffer) => {
        output = (output + d.toString()).slice(-65_536);
        const listening = /listening on (ws:\/\/\S+)/.exec(output);
        if (listening === null) return;
        clearTimeout(timer);
        resolve({ proc, url: listening[1] });
      };
      proc.stdout!.on('data', check);
      proc.stderr!.on('data', check);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${code} before listening:\n${text}\n${output}`));
      });
    });

  const ran: string[] = [];
  const skipped: string[] = [];
  try {
    for (const section of SECTIONS) {
      const blocks = codeBlocks(readme, section);
      expect(blocks.length, `code blocks in '## ${section}'`).toBeGreaterThan(0);
      for (const block of blocks) {
        if (MARKED.test(block.step)) {
          skipped.push(block.lines[0]);
          continue;
        }
        const file = /^# ([\w.-]+\.ya?ml)$/.exec(block.lines[0]);
        if (file !== null) {
          writeFileSync(join(work, file[1]), fill(`${block.lines.join('\n')}\n`));
          ran.push(`(wrote ${file[1]})`);
          continue;
        }
        for (const command of commandsOf(block.lines)) {
          const text = fill(command.text);
          ran.push(command.text);
          if (/^tributary start\b/.test(command.text)) {
            expect(node, 'the walkthrough starts one node').toBeNull();
            node = await startNode(text);
            continue;
          }
          const result = await run(text);
          const said = `${command.text}\nexit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
          if (command.fails !== undefined) {
            expect(result.code, said).not.toBe(0);
            expect(result.stderr, said).toMatch(pattern(command.fails));
            continue;
          }
          expect(result.code, said).toBe(0);
          if (command.prints !== undefined) expect(result.stdout, said).toMatch(pattern(command.prints));
          const made = /^tributary (?:fleet init --out \S+|keys generate --out (\S+)\.key)\b/.exec(command.text);
          if (made !== null) {
            expect(result.stdout.trim(), said).toMatch(/^[0-9a-f]{64}$/);
            values.set(`<${made[1] ?? 'fleet'} public key>`, result.stdout.trim());
          }
        }
      }
    }
    expect(node, 'a node was started').not.toBeNull();
    expect(await stop(node!.proc, 'SIGTERM'), 'the node stops cleanly').toBe(0);
  } finally {
    dir.remove();
  }
});
