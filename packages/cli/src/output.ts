/**
 * Output for the nvx command: where text goes, colours, and how errors
 * become exit codes.
 */
import pc from 'picocolors';
import type { TraceError as TraceErrorT } from '@nvx/trace';

export type Colors = ReturnType<typeof pc.createColors>;

/** Colours that are no colours: for files (JUnit, logs). */
export const NO_COLORS: Colors = pc.createColors(false);

/** Exit codes (documented in the README). */
export const EXIT = {
  /** success */
  OK: 0,
  /** a check failed: a divergence, a failed expectation (used by check commands) */
  CHECK_FAILED: 1,
  /** bad usage or bad input: unknown option, missing file, corrupt or invalid trace */
  USAGE: 2,
  /** a bug in nvx itself: the message comes with a stack trace */
  INTERNAL: 3,
} as const;

/** The part of a writable stream the CLI uses. */
export interface OutStream {
  write(chunk: string): boolean;
  isTTY?: boolean;
  columns?: number;
  once?(event: string, listener: (...args: unknown[]) => void): unknown;
  removeListener?(event: string, listener: (...args: unknown[]) => void): unknown;
}

export interface CliIO {
  stdout: OutStream;
  stderr: OutStream;
  env: Record<string, string | undefined>;
  /** standard input, for a `-` file argument (process.stdin by default) */
  stdin?: NodeJS.ReadableStream;
}

/** A usage mistake the option parser cannot see (for example an output name without a known extension). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Colours only on a terminal, and never when NO_COLOR is set to anything non-empty (no-color.org). */
export function colorsWanted(stream: OutStream, env: Record<string, string | undefined>): boolean {
  return stream.isTTY === true && !env.NO_COLOR;
}

/**
 * What a command gets: output streams, colours for each, and the exit code
 * it may raise (a check command sets EXIT.CHECK_FAILED).
 */
export class CliContext {
  /** colours for stdout */
  readonly c: Colors;
  /** colours for stderr */
  readonly ce: Colors;
  readonly outColors: boolean;
  readonly errColors: boolean;
  exitCode: number = EXIT.OK;

  constructor(readonly io: CliIO) {
    this.outColors = colorsWanted(io.stdout, io.env);
    this.errColors = colorsWanted(io.stderr, io.env);
    this.c = pc.createColors(this.outColors);
    this.ce = pc.createColors(this.errColors);
  }

  /** Write to stdout (no newline added). */
  out(s: string): void {
    this.io.stdout.write(s);
  }

  /** Write a line to stdout. */
  line(s = ''): void {
    this.io.stdout.write(s + '\n');
  }

  /** Write to stderr (no newline added). */
  err(s: string): void {
    this.io.stderr.write(s);
  }

  /** Write to stdout and wait while the stream's buffer is full (for long streaming output). */
  async write(s: string): Promise<void> {
    const o = this.io.stdout;
    if (o.write(s) || !o.once) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        for (const ev of ['drain', 'close', 'error']) o.removeListener?.(ev, done);
        resolve();
      };
      for (const ev of ['drain', 'close', 'error']) o.once!(ev, done);
    });
  }

  warn(message: string): void {
    this.err(`${this.ce.yellow('warning:')} ${message}\n`);
  }

  error(message: string): void {
    this.err(`${this.ce.red('error:')} ${message}\n`);
  }

  /**
   * Report an error and give the exit code: a TraceError or a usage error is
   * one line without a stack (exit 2); a system error names its code (exit
   * 2); anything else is a bug in nvx and keeps its stack (exit 3).
   */
  fail(e: unknown): number {
    if (isTraceError(e) || e instanceof UsageError) {
      this.error(e.message);
      return EXIT.USAGE;
    }
    const errno = e as NodeJS.ErrnoException;
    if (errno && typeof errno.code === 'string' && /^E[A-Z]+$/.test(errno.code)) {
      this.error(errno.message);
      return EXIT.USAGE;
    }
    const stack = e instanceof Error ? (e.stack ?? e.message) : String(e);
    this.err(`${this.ce.red('internal error:')} ${stack}\n(this is a bug in nvx)\n`);
    return EXIT.INTERNAL;
  }
}

/**
 * `e instanceof TraceError`, without loading the trace package for it:
 * `nvx --help` never loads it, and a TraceError can only come from a
 * command that has.
 */
function isTraceError(e: unknown): e is TraceErrorT {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return e instanceof Error && e.name === 'TraceError' && e instanceof (require('@nvx/trace') as typeof import('@nvx/trace')).TraceError;
}

/** Standard streams of this process. */
export function processIO(): CliIO {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env, stdin: process.stdin };
}
