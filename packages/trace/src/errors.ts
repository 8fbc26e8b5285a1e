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
    // the parts that can quote the input are clipped here too, for those who print them apart (validate --json)
    const p = oneLine(problem, MAX_PROBLEM_CHARS);
    const w = where.field !== undefined && where.field.length > MAX_FIELD_CHARS ? { ...where, field: oneLine(where.field, MAX_FIELD_CHARS) } : where;
    super(TraceError.format(p, w));
    this.name = 'TraceError';
    this.problem = p;
    this.where = w;
  }

  /** A copy of this error with more context (for example the file name, added by the caller that knows it). */
  at(more: TraceErrorWhere): TraceError {
    return new TraceError(this.problem, { ...more, ...this.where, ...(more.file ? { file: more.file } : {}) });
  }

  /**
   * `file, line 3, field 'x': problem` on one line of at most about 1,000
   * bytes whatever the input: control characters are escaped and every part
   * that can come from the input (the file name, the field, the problem,
   * which may quote a value) is clipped, with its length when clipped.
   */
  static format(problem: string, w: TraceErrorWhere): string {
    const parts: string[] = [];
    if (w.file !== undefined) parts.push(oneLine(w.file, MAX_FILE_CHARS));
    if (w.line !== undefined) parts.push(`line ${w.line}`);
    if (w.offset !== undefined) parts.push(`offset ${w.offset}`);
    if (w.index !== undefined) parts.push(`event ${w.index}`);
    // (room for the '... (N characters in all)' of a part the constructor has clipped already)
    if (w.field !== undefined) parts.push(`field '${oneLine(w.field, MAX_FIELD_CHARS + 40)}'`);
    const p = oneLine(problem, MAX_PROBLEM_CHARS + 40);
    return clipBytes(parts.length ? `${parts.join(', ')}: ${p}` : p, MAX_MESSAGE_BYTES);
  }
}

const MAX_FILE_CHARS = 200;
const MAX_FIELD_CHARS = 120;
const MAX_PROBLEM_CHARS = 500;
/** The longest message in UTF-8 bytes (room left for an `error: ` prefix within 1,000). */
export const MAX_MESSAGE_BYTES = 960;

function clipBytes(s: string, max: number): string {
  if (s.length <= max / 3 || Buffer.byteLength(s, 'utf8') <= max) return s;
  return Buffer.from(s, 'utf8').subarray(0, max - 3).toString('utf8').replace(/\ufffd+$/, '') + '...';
}

/** `s` on one line (control characters escaped), clipped to `max` characters with the full length said. */
export function oneLine(s: string, max: number): string {
  const flat = s.length > 4 * max ? s.slice(0, 4 * max) : s;
  let out = flat.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => (c === '\n' ? '\\n' : c === '\t' ? ' ' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  // a lone surrogate would not survive the trip to a terminal or a UTF-8 log
  out = out.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
  if (out.length <= max && flat.length === s.length) return out;
  let cut = out.slice(0, max);
  if (/[\ud800-\udbff]$/.test(cut)) cut = cut.slice(0, -1);
  return `${cut}... (${s.length} characters in all)`;
}

/**
 * A decoded value for a message, in the trace's terms and never more than
 * about 60 characters: strings clipped with their length, containers by
 * kind. (Never String(v) on an object: a map with a `toString` key makes
 * that throw.)
 */
export function describeValue(v: unknown): string {
  if (typeof v === 'bigint') {
    const s = v.toString();
    return s.length > 40 ? `${s.slice(0, 40)}...n (${s.length} digits)` : `${s}n`;
  }
  if (typeof v === 'string') return v.length > 40 ? `${JSON.stringify(v.slice(0, 40))}... (${v.length} characters)` : JSON.stringify(v);
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `a list of ${v.length} elements`;
  if (v instanceof Uint8Array) return `a binary blob of ${v.length} bytes`;
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'function' || typeof v === 'symbol') return `a ${typeof v}`;
  return String(v);
}

/** The index of the first lone UTF-16 surrogate in `s` (one UTF-8 cannot encode), or -1. */
export function loneSurrogateAt(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
    }
    return i;
  }
  return -1;
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
