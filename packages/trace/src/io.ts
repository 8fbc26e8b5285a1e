/**
 * Trace files in either form behind one interface.
 *
 * The form comes from the extension (`.nvxt` binary, `.nvx` text); for any
 * other name a reader sniffs the magic, and a writer needs the form given.
 * An explicit `form` option always wins. Writers go through a temporary file
 * in the same directory that is renamed onto the final name when complete.
 */
import * as fs from 'fs';
import { TraceError, fsProblem } from './errors';
import { nonFileKind, openForReading } from './readfile';
import type { TraceEvent } from './events';
import type { TraceHeader } from './header';
import { BinaryTraceReader, BinaryTraceWriter, TraceWarning, decodeBinaryTrace, isBinaryTrace } from './binary';
import { TextTraceReader, TextTraceWriter, decodeTextTrace } from './text';

export type TraceForm = 'text' | 'binary';

export const TRACE_FORMS: readonly TraceForm[] = ['text', 'binary'];

/** What both streaming readers offer. */
export interface TraceReader {
  readonly header: TraceHeader;
  /** fills in as events are read (a cut-off binary file is only known at its end) */
  readonly warnings: TraceWarning[];
  /** a binary trace's format version (1 or 2; undefined for text) */
  readonly binaryVersion?: number;
  /** the events chunk by chunk; can be iterated once */
  chunks(): AsyncIterable<TraceEvent[]>;
  events(): AsyncIterable<TraceEvent>;
  close(): Promise<void>;
}

/** What both streaming writers offer. */
export interface TraceWriter {
  /** add an event; an invalid one is a TraceError and is not written */
  write(e: TraceEvent): void;
  /** finish and move the file onto its final name */
  close(): void;
  /** drop the file: the final name is never touched */
  abort(): void;
  readonly count: number;
}

export interface TraceFileOptions {
  /** the form, whatever the file name says */
  form?: TraceForm;
}

/** The form a file name implies: `.nvxt` binary, `.nvx` text, otherwise undefined. */
export function traceFormOf(path: string): TraceForm | undefined {
  const p = path.toLowerCase();
  if (p.endsWith('.nvxt')) return 'binary';
  if (p.endsWith('.nvx')) return 'text';
  return undefined;
}


/**
 * Turn anything thrown while reading or writing `file` into a TraceError
 * that names the file (system errors become a one-line reason). TraceErrors
 * keep their location.
 */
export function asTraceError(e: unknown, file: string): TraceError {
  if (e instanceof TraceError) return e.where.file === undefined ? e.at({ file }) : e;
  if ((e as NodeJS.ErrnoException)?.code !== undefined) return new TraceError(fsProblem(e), { file });
  return new TraceError(e instanceof Error ? e.message : String(e), { file });
}

async function checkReadable(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(path);
  } catch (e) {
    throw asTraceError(e, path);
  }
  if (st.isDirectory()) throw new TraceError('is a directory, not a trace file', { file: path });
  // a FIFO or a device would block or never end: only regular files are traces
  if (!st.isFile()) throw new TraceError(`is ${nonFileKind(st)}, not a regular file: nvx reads traces from regular files`, { file: path });
}


/** The form of an existing file: by extension, else by its first bytes. */
export async function detectTraceForm(path: string, opts: TraceFileOptions = {}): Promise<TraceForm> {
  if (opts.form) return checkForm(opts.form);
  const byName = traceFormOf(path);
  if (byName) return byName;
  await checkReadable(path);
  let fh: fs.promises.FileHandle | undefined;
  try {
    fh = await openForReading(path);
    const buf = Buffer.alloc(8);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return isBinaryTrace(buf.subarray(0, bytesRead)) ? 'binary' : 'text';
  } catch (e) {
    throw asTraceError(e, path);
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

function checkForm(form: string): TraceForm {
  if (form !== 'text' && form !== 'binary') throw new TraceError(`unknown trace form '${form}' (text or binary)`);
  return form;
}

/** A reader with the form and file it reads, and errors that always name the file. */
class FileTraceReader implements TraceReader {
  constructor(
    private readonly inner: TraceReader,
    readonly file: string,
    readonly form: TraceForm,
  ) {}

  get header(): TraceHeader {
    return this.inner.header;
  }

  get warnings(): TraceWarning[] {
    return this.inner.warnings;
  }

  get binaryVersion(): number | undefined {
    return this.inner.binaryVersion;
  }

  async *chunks(): AsyncIterable<TraceEvent[]> {
    const it = this.inner.chunks()[Symbol.asyncIterator]();
    try {
      for (;;) {
        let r: IteratorResult<TraceEvent[]>;
        try {
          r = await it.next();
        } catch (e) {
          throw asTraceError(e, this.file);
        }
        if (r.done) return;
        yield r.value;
      }
    } finally {
      await this.close();
    }
  }

  async *events(): AsyncIterable<TraceEvent> {
    for await (const c of this.chunks()) yield* c;
  }

  async close(): Promise<void> {
    await this.inner.close().catch(() => undefined);
  }
}

export type OpenTraceReader = TraceReader & { readonly file: string; readonly form: TraceForm };

/** The name that stands for standard input where a command reads a trace. */
export const STDIN_NAME = '-';
/** The most standard input is read into memory (it cannot be read twice or from an offset, so it is held whole). */
export const MAX_STDIN_BYTES = 1024 * 1024 * 1024;

let stdinBytes: Promise<Buffer> | undefined;

/** All of standard input, read once (a command that reads its trace twice gets the same bytes). */
function readStdin(): Promise<Buffer> {
  return (stdinBytes ??= (async () => {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of process.stdin) {
      const b = typeof c === 'string' ? Buffer.from(c, 'utf8') : (c as Buffer);
      n += b.length;
      if (n > MAX_STDIN_BYTES) throw new TraceError(`standard input holds more than ${MAX_STDIN_BYTES} bytes: write the trace to a file`, { file: STDIN_NAME });
      parts.push(b);
    }
    return Buffer.concat(parts);
  })());
}

/** A reader over a trace decoded in memory (standard input). */
class MemoryTraceReader implements TraceReader {
  constructor(
    readonly header: TraceHeader,
    private readonly all: TraceEvent[],
    readonly warnings: TraceWarning[],
    readonly binaryVersion?: number,
  ) {}

  async *chunks(): AsyncIterable<TraceEvent[]> {
    for (let i = 0; i < this.all.length; i += 4096) yield this.all.slice(i, i + 4096);
  }

  async *events(): AsyncIterable<TraceEvent> {
    for await (const c of this.chunks()) yield* c;
  }

  async close(): Promise<void> {}
}

async function openStdin(opts: TraceFileOptions): Promise<OpenTraceReader> {
  const buf = await readStdin();
  const form = opts.form ? checkForm(opts.form) : isBinaryTrace(buf) ? 'binary' : 'text';
  try {
    const t = form === 'binary' ? decodeBinaryTrace(buf, STDIN_NAME) : { ...decodeTextTrace(buf, STDIN_NAME), warnings: [], version: undefined };
    return new FileTraceReader(new MemoryTraceReader(t.header, t.events, t.warnings, t.version), STDIN_NAME, form);
  } catch (e) {
    throw asTraceError(e, STDIN_NAME);
  }
}

/**
 * Open a trace for streaming; the header is read and validated here. `-`
 * reads standard input (whole, into memory); any other path must be a
 * regular file.
 */
export async function openTrace(path: string, opts: TraceFileOptions = {}): Promise<OpenTraceReader> {
  if (path === STDIN_NAME) return openStdin(opts);
  await checkReadable(path);
  const form = await detectTraceForm(path, opts);
  try {
    const inner = form === 'binary' ? await BinaryTraceReader.open(path) : await TextTraceReader.open(path);
    return new FileTraceReader(inner, path, form);
  } catch (e) {
    throw asTraceError(e, path);
  }
}

/** Read a whole trace into memory. */
export async function readTraceFile(path: string, opts: TraceFileOptions = {}): Promise<{ header: TraceHeader; events: TraceEvent[]; warnings: TraceWarning[]; form: TraceForm }> {
  const r = await openTrace(path, opts);
  const events: TraceEvent[] = [];
  try {
    for await (const c of r.chunks()) for (const e of c) events.push(e);
  } finally {
    await r.close();
  }
  return { header: r.header, events, warnings: r.warnings, form: r.form };
}

/** The form a trace written to `path` takes; a TraceError if neither the option nor the name says. */
export function outputFormOf(path: string, opts: TraceFileOptions = {}): TraceForm {
  if (opts.form) return checkForm(opts.form);
  const f = traceFormOf(path);
  if (!f) throw new TraceError("cannot tell the trace form from the name: use a .nvx (text) or .nvxt (binary) extension, or give the form", { file: path });
  return f;
}

/** A streaming writer of either form (temporary file, renamed by close()). */
export function createTraceWriter(path: string, header: TraceHeader, opts: TraceFileOptions = {}): TraceWriter {
  const form = outputFormOf(path, opts);
  let inner: TraceWriter;
  try {
    inner = form === 'binary' ? BinaryTraceWriter.open(path, header) : TextTraceWriter.open(path, header);
  } catch (e) {
    throw asTraceError(e, path);
  }
  return {
    write(e: TraceEvent) {
      try {
        inner.write(e);
      } catch (err) {
        throw asTraceError(err, path);
      }
    },
    close() {
      try {
        inner.close();
      } catch (err) {
        throw asTraceError(err, path);
      }
    },
    abort() {
      try {
        inner.abort();
      } catch {
        /* nothing more to clean up */
      }
    },
    get count() {
      return inner.count;
    },
  };
}

/**
 * Write a whole trace. On any error (an invalid event, a full disk) nothing
 * is left under `path` and the previous file there, if any, is untouched.
 */
export async function writeTraceFile(
  path: string,
  header: TraceHeader,
  events: Iterable<TraceEvent> | AsyncIterable<TraceEvent>,
  opts: TraceFileOptions = {},
): Promise<number> {
  const w = createTraceWriter(path, header, opts);
  try {
    for await (const e of events) w.write(e);
    w.close();
  } catch (e) {
    w.abort();
    throw asTraceError(e, path);
  }
  return w.count;
}
