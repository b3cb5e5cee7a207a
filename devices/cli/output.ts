// Writing to stdout, for commands whose output may go to a pipe that closes (`| head`) or a
// disk that fills (`> /dev/full`).
//
// Many small lines fast and politely (LineWriter): lines are joined into chunks of ~64 KiB
// and each chunk is waited for before the next, so a slow reader slows us instead of
// filling memory. A line counts as written only once the write of its chunk succeeded:
// what a consumer commits and counts is what reached stdout, not what it queued. A write
// that fails stops the writer; the command decides what that means.
//
// Everything else a command prints (a list, a table, help) goes through process.stdout as
// it is; guardStdout() keeps a reader that went away from ending the process with an
// unhandled 'error' event.

import type { Writable } from 'node:stream';

const CHUNK_CHARS = 64 * 1024;

/** The reader went away: the usual end of `| head`, not a failure of ours. */
export function isBrokenPipe(err: Error | null): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ECONNRESET';
}

/** The error code of a failed write, e.g. 'EPIPE' or 'ENOSPC', for a message. */
export function writeErrorCode(err: Error): string {
  return (err as NodeJS.ErrnoException).code ?? err.message;
}

let stdoutError: Error | null = null;
let stdoutOwned = 0;

/**
 * Makes a failed write to stdout one line (or, for a reader that went away, nothing)
 * instead of an unhandled 'error' event and a stack trace. Call once, at start. A
 * LineWriter in use reports its own failures; this covers the rest (lists, tables, help).
 */
export function guardStdout(): void {
  process.stdout.on('error', (err: Error) => {
    if (stdoutError !== null) return;
    stdoutError = err;
    if (stdoutOwned > 0 || isBrokenPipe(err)) return;
    process.stderr.write(`tributary: cannot write to stdout (${writeErrorCode(err)})\n`);
    process.exitCode = 1;
  });
  // With stderr gone too there is nowhere left to say anything.
  process.stderr.on('error', () => {});
}

export class LineWriter<M = never> {
  private lines: string[] = [];
  private marks: M[] = [];
  private chars = 0;
  private failure: Error | null = null;
  private markFailed: () => void = () => {};
  private disposed = false;
  /** Lines whose chunk was written. */
  writtenLines = 0;
  /** Resolves once a write has failed, so a caller waiting for input can stop too. */
  readonly whenFailed: Promise<'failed'>;
  private readonly onError = (err: Error) => this.fail(err);

  /**
   * `onWritten` gets the marks given with the lines of each chunk once that chunk is
   * written, in order.
   */
  constructor(
    private readonly out: Writable,
    private readonly onWritten: ((marks: readonly M[]) => void) | null = null,
  ) {
    this.whenFailed = new Promise<'failed'>((resolve) => (this.markFailed = () => resolve('failed')));
    out.on('error', this.onError);
    if (out === process.stdout) stdoutOwned++;
  }

  /** The write that failed (EPIPE, ENOSPC...), or null. */
  get error(): Error | null {
    return this.failure;
  }

  /**
   * Queues one line (without its newline) and its mark; resolves once its chunk is written
   * when this line filled one, else returns undefined at once.
   */
  write(line: string, mark?: M): Promise<void> | undefined {
    this.lines.push(line);
    // Kept only for someone who asked to hear of them: plain consume does not.
    if (mark !== undefined && this.onWritten !== null) this.marks.push(mark);
    this.chars += line.length + 1;
    if (this.chars >= CHUNK_CHARS) return this.flush();
    return undefined;
  }

  /** Writes what is queued; resolves once it is written or the write failed. */
  flush(): Promise<void> {
    if (this.lines.length === 0) return Promise.resolve();
    const chunk = this.lines.join('\n') + '\n';
    const count = this.lines.length;
    const marks = this.marks;
    this.lines = [];
    this.marks = [];
    this.chars = 0;
    if (this.failure !== null) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.out.write(chunk, (err?: Error | null) => {
        if (err) this.fail(err);
        else if (this.failure === null) {
          this.writtenLines += count;
          if (marks.length > 0) this.onWritten?.(marks);
        }
        resolve();
      });
    });
  }

  /** Stops listening for errors. Call after the last flush. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.out.off('error', this.onError);
    if (this.out === process.stdout) stdoutOwned--;
    // A late error after the last write must still not crash the process.
    if (this.out.listenerCount('error') === 0) this.out.on('error', () => {});
  }

  private fail(err: Error): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.markFailed();
  }
}

/** Rows under a header, columns padded to their widest cell (the last one not padded). */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [line(header), ...rows.map(line)];
}

/** '1 record', '2 records'. */
export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
