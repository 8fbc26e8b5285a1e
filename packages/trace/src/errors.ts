/**
 * The one error type every reader, validator and codec throws for bad input.
 * It always says where: the file, and the byte offset, line or event index,
 * and the field when there is one. Anything else escaping a reader is a bug.
 */
export interface TraceErrorWhere {
  file?: string;
  /** byte offset in a binary trace */
  offset?: number;
  /** 1-based line in a text trace */
  line?: number;
  /** 0-based event index */
  index?: number;
  /** the event field or header key at fault */
  field?: string;
}

export class TraceError extends Error {
  readonly where: TraceErrorWhere;
  readonly problem: string;

  constructor(problem: string, where: TraceErrorWhere = {}) {
    super(TraceError.format(problem, where));
    this.name = 'TraceError';
    this.problem = problem;
    this.where = where;
  }

  /** A copy of this error with more context (for example the file name, added by the caller that knows it). */
  at(more: TraceErrorWhere): TraceError {
    return new TraceError(this.problem, { ...more, ...this.where, ...(more.file ? { file: more.file } : {}) });
  }

  static format(problem: string, w: TraceErrorWhere): string {
    const parts: string[] = [];
    if (w.file !== undefined) parts.push(w.file);
    if (w.line !== undefined) parts.push(`line ${w.line}`);
    if (w.offset !== undefined) parts.push(`offset ${w.offset}`);
    if (w.index !== undefined) parts.push(`event ${w.index}`);
    if (w.field !== undefined) parts.push(`field '${w.field}'`);
    return parts.length ? `${parts.join(', ')}: ${problem}` : problem;
  }
}

export function isTraceError(e: unknown): e is TraceError {
  return e instanceof TraceError;
}

/** A file-system error in words, for a TraceError that names the file. */
export function fsProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EISDIR':
      return 'is a directory, not a trace file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOTDIR':
      return 'a component of the path is not a directory';
    default:
      return code ? `cannot access (${code})` : `cannot access (${e instanceof Error ? e.message : String(e)})`;
  }
}
