/**
 * The text form of a trace (`.nvx`): what a person writes by hand and reads
 * in a review. It converts losslessly to and from the binary form.
 *
 * ```
 * nvx-trace 1                       # magic and format version
 * config evmcs=true vcpus=2         # world configuration (WorldConfig keys)
 * memslot 0 gfn=0x0 npages=0x400 flags=0
 * meta generator "hand"             # provenance: key, then a JSON string or a bare token
 * events                            # ends the header
 * l1.vmxon 0x1000
 * l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x10000000   expect ok
 * @1 l2.rdmsr MSR_FS_BASE                            expect exit MSR_READ qual=0x0
 * ```
 *
 * Event line: an optional `@N` (the vCPU, for kinds that have one; default
 * 0), the kind, then the kind's other fields in schema order, positionally or
 * as `name=value` (after a named value only named ones), then optionally
 * `expect <outcome>`. `#` starts a comment anywhere outside a quoted string.
 *
 * The printer is canonical, so print(parse(print(x))) === print(x).
 */
import type { Readable } from 'stream';
import { MSRS, VMCS_FIELDS, VMCS_NOT_IN_VMCS12, msrByName, msrName, vmcsFieldByName, vmcsFieldName } from '@nvx/arch';
import { TraceError, TraceErrorWhere, fsProblem } from './errors';
import { EVENT_KINDS, EVENT_SCHEMA, EventKind, FieldDef, FieldType, TraceEvent, isEventKind } from './events';
import { FORMAT_VERSION, TraceHeader, WorldConfig, defaultConfig, validateHeader } from './header';
import { Expect, formatOutcome, parseOutcome } from './outcome';
import { validateEvent } from './validate';
import type { TraceWarning } from './binary';
import { AtomicFile } from './atomic';
import { openForReading } from './readfile';

/** The first word of a text trace. */
export const TEXT_MAGIC = 'nvx-trace';
/** Lines longer than this (in characters) are an error, so a file without newlines cannot exhaust memory. */
export const MAX_LINE_LENGTH = 64 * 1024;
/** The column where the printer starts `expect` clauses. */
export const EXPECT_COLUMN = 48;

const U64_MAX = 0xffffffffffffffffn;

// ---------------------------------------------------------------- tokens

interface Tok {
  text: string;
  start: number;
  end: number;
  /** the token is (or starts with) a JSON string */
  quoted: boolean;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0b || c === 0x0c;
}

/** Split a line into tokens; `#` outside a string ends the line; `"..."` is a JSON string and may contain spaces. */
function tokenize(line: string, where: TraceErrorWhere): Tok[] {
  const toks: Tok[] = [];
  const n = line.length;
  let i = 0;
  while (i < n) {
    const c = line.charCodeAt(i);
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === 0x23 /* # */) break;
    const start = i;
    let quoted = false;
    while (i < n) {
      const d = line.charCodeAt(i);
      if (isSpace(d) || d === 0x23) break;
      if (d === 0x22 /* " */) {
        if (i === start) quoted = true;
        i++;
        while (i < n && line.charCodeAt(i) !== 0x22) i += line.charCodeAt(i) === 0x5c /* \ */ ? 2 : 1;
        if (i >= n) throw new TraceError('unterminated string (a quote is missing)', where);
      }
      i++;
    }
    toks.push({ text: line.slice(start, i), start, end: i, quoted });
  }
  return toks;
}

function parseJsonString(tok: Tok, where: TraceErrorWhere): string {
  try {
    const v: unknown = JSON.parse(tok.text);
    if (typeof v === 'string') return v;
  } catch {
    /* fall through */
  }
  throw new TraceError(`malformed string ${clip(tok.text)} (a JSON string is expected)`, where);
}

function clip(s: string): string {
  return `'${clipRaw(s)}'`;
}

// ---------------------------------------------------------------- suggestions

function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      const v = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      cur.push(v);
      if (v < best) best = v;
    }
    if (best > limit) return limit + 1;
    prev = cur;
  }
  return prev[b.length];
}

/** Up to `max` known names close to `name` (edit distance, then substring), for "did you mean" hints. */
export function closestNames(name: string, known: Iterable<string>, max = 3): string[] {
  const u = name.toUpperCase();
  const limit = Math.max(2, Math.floor(u.length / 3));
  const scored: [number, string][] = [];
  for (const k of known) {
    const ku = k.toUpperCase();
    let d = editDistance(u, ku, limit);
    if (d > limit && u.length >= 3 && (ku.includes(u) || u.includes(ku))) d = limit;
    if (d <= limit) scored.push([d, k]);
  }
  scored.sort((x, y) => x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0));
  return scored.slice(0, max).map((s) => s[1]);
}

function didYouMean(name: string, known: Iterable<string>): string {
  const c = closestNames(name, known);
  return c.length ? ` (did you mean ${c.join(', ')}?)` : '';
}

// ---------------------------------------------------------------- symbolic names

let vmcsNames: string[] | undefined;
function knownVmcsNames(): string[] {
  return (vmcsNames ??= [...VMCS_FIELDS.map((f) => f.name), ...Object.keys(VMCS_NOT_IN_VMCS12)]);
}

let msrNames: string[] | undefined;
function knownMsrNames(): string[] {
  return (msrNames ??= MSRS.map((m) => m.name));
}

function vmcsEncodingByName(name: string): number | undefined {
  const f = vmcsFieldByName(name);
  if (f) return f.encoding;
  return Object.prototype.hasOwnProperty.call(VMCS_NOT_IN_VMCS12, name) ? VMCS_NOT_IN_VMCS12[name] : undefined;
}

function msrIndexByName(name: string): number | undefined {
  return msrByName(name);
}

function hex(v: number | bigint): string {
  return '0x' + v.toString(16);
}

/** A VMCS field for the text form: KVM's name when it reads back to the same encoding, else 0x-hex. */
export function formatVmcsField(enc: number): string {
  const name = vmcsFieldName(enc);
  if (!name.startsWith('0x') && vmcsEncodingByName(name) === enc) return name;
  return '0x' + enc.toString(16).padStart(4, '0');
}

/** An MSR for the text form: its name when it reads back to the same index, else 0x-hex. */
export function formatMsr(index: number): string {
  const name = msrName(index);
  if (!name.startsWith('0x') && msrIndexByName(name) === index) return name;
  return hex(index);
}

// ---------------------------------------------------------------- values

const NUM_RE = /^(?:0[xX][0-9a-fA-F]+|[0-9]+)$/;

const MAX_OF: Partial<Record<FieldType, bigint>> = {
  vcpu: 255n,
  cpu: 255n,
  u8: 0xffn,
  u16: 0xffffn,
  u32: 0xffffffffn,
  cpl: 3n,
  size: 8n,
  field: 0xffffffffn,
  msr: 0xffffffffn,
  u64: U64_MAX,
};

/** `where` with the field set (built only when an error is thrown). */
function at(where: TraceErrorWhere, field: string | undefined): TraceErrorWhere {
  return field === undefined ? where : { ...where, field };
}

function parseInteger(tok: string, type: FieldType, where: TraceErrorWhere, field?: string): bigint {
  if (!NUM_RE.test(tok)) throw new TraceError(`'${clipRaw(tok)}' is not a number (decimal or 0x-hex)`, at(where, field));
  const v = BigInt(tok);
  const max = MAX_OF[type] ?? U64_MAX;
  if (v > max) throw new TraceError(`${clipRaw(tok)} is out of range for ${type} (0..${max <= 0xffffn ? max.toString() : hex(max)})`, at(where, field));
  return v;
}

/** A value from the input for a message: its first 40 characters, and its length when longer. */
function clipRaw(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}... (${s.length} characters)` : s;
}

/** Parse one value of `field`, of the given type. */
function parseValue(type: FieldType, tok: string, where: TraceErrorWhere, field: string): unknown {
  switch (type) {
    case 'u64':
      return parseInteger(tok, type, where, field);
    case 'bool':
      if (tok === 'true') return true;
      if (tok === 'false') return false;
      throw new TraceError(`must be true or false, got '${clipRaw(tok)}'`, at(where, field));
    case 'access':
      if (tok === 'read' || tok === 'write') return tok;
      throw new TraceError(`must be read or write, got '${clipRaw(tok)}'`, at(where, field));
    case 'field': {
      if (NUM_RE.test(tok)) return Number(parseInteger(tok, type, where, field));
      const enc = vmcsEncodingByName(tok) ?? vmcsEncodingByName(tok.toUpperCase());
      if (enc === undefined) throw new TraceError(`unknown VMCS field '${clipRaw(tok)}'${didYouMean(tok, knownVmcsNames())}`, at(where, field));
      return enc;
    }
    case 'msr': {
      if (NUM_RE.test(tok)) return Number(parseInteger(tok, type, where, field));
      const idx = msrIndexByName(tok) ?? msrIndexByName(tok.toUpperCase());
      if (idx === undefined) throw new TraceError(`unknown MSR '${clipRaw(tok)}'${didYouMean(tok, knownMsrNames())}`, at(where, field));
      return idx;
    }
    default:
      return Number(parseInteger(tok, type, where, field));
  }
}

/** Print one field value canonically. */
function formatValue(type: FieldType, name: string, v: unknown): string {
  switch (type) {
    case 'u64':
    case 'u32':
      return hex(v as bigint | number);
    case 'u16':
      return name === 'offset' ? hex(v as number) : String(v);
    case 'field':
      return formatVmcsField(v as number);
    case 'msr':
      return formatMsr(v as number);
    default:
      return String(v);
  }
}

// ---------------------------------------------------------------- field lists (events and memslot lines)

const NAMED_RE = /^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$/s;

/**
 * Assign the value tokens toks[from..to) to fields: positionally, then
 * `name=value`. `optional` fields may be left out (they get no entry).
 */
function assignFields(
  toks: Tok[],
  from: number,
  to: number,
  fields: readonly FieldDef[],
  what: string,
  where: TraceErrorWhere,
  optional?: readonly string[],
  extraNamed?: (name: string) => TraceError | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const given: boolean[] = [];
  let named = false;
  let pos = 0;
  for (let k = from; k < to; k++) {
    const t = toks[k];
    if (t.quoted) throw new TraceError(`unexpected string ${clip(t.text)} (${what} takes ${describeFields(fields)})`, where);
    const m = t.text.includes('=') ? NAMED_RE.exec(t.text) : null;
    if (m) {
      named = true;
      const [, name, value] = m;
      const fi = fields.findIndex((f) => f[0] === name);
      if (fi < 0) {
        const special = extraNamed?.(name);
        if (special) throw special;
        const names = fields.map((f) => f[0]);
        throw new TraceError(`unknown field for ${what} (fields: ${names.join(', ') || 'none'})${didYouMean(name, names)}`, at(where, name));
      }
      if (given[fi]) throw new TraceError(`given twice`, at(where, name));
      if (value === '') throw new TraceError('missing value after =', at(where, name));
      given[fi] = true;
      out[name] = parseValue(fields[fi][1], value, where, name);
    } else {
      if (named) throw new TraceError(`positional value '${clipRaw(t.text)}' after a named one (write it as name=value)`, where);
      if (pos >= fields.length) {
        throw new TraceError(`extra value '${clipRaw(t.text)}': ${what} takes ${describeFields(fields)}`, where);
      }
      const [name, type] = fields[pos];
      given[pos++] = true;
      out[name] = parseValue(type, t.text, where, name);
    }
  }
  for (let fi = 0; fi < fields.length; fi++) {
    const name = fields[fi][0];
    if (!given[fi] && !optional?.includes(name)) throw new TraceError(`missing value for ${what} (it takes ${describeFields(fields)})`, at(where, name));
  }
  return out;
}

function describeFields(fields: readonly FieldDef[]): string {
  return fields.length ? fields.map((f) => `<${f[0]}>`).join(' ') : 'no values';
}

// ---------------------------------------------------------------- events

const TEXT_FIELDS = new Map<string, readonly FieldDef[]>(EVENT_KINDS.map((k) => [k, EVENT_SCHEMA[k].fields.filter((f) => f[0] !== 'vcpu')]));
const HAS_VCPU = new Set<string>(EVENT_KINDS.filter((k) => EVENT_SCHEMA[k].fields.some((f) => f[0] === 'vcpu')));

/** The fields an event line gives after the kind (all but the vCPU, which is `@N`). */
function eventFields(kind: EventKind): readonly FieldDef[] {
  return TEXT_FIELDS.get(kind)!;
}

function hasVcpu(kind: EventKind): boolean {
  return HAS_VCPU.has(kind);
}

function parseExpect(toks: Tok[], where: TraceErrorWhere): Expect {
  const w = { ...where, field: 'expect' };
  if (toks.length === 0) throw new TraceError('expect needs an outcome (ok, value <v>, exit <reason> ...)', w);
  if (toks[0].text === 'ignored') {
    if (toks.length > 2) throw new TraceError('expect ignored takes one reason (a JSON string)', w);
    if (toks.length === 1) return { k: 'ignored', why: undefined as unknown as string };
    return { k: 'ignored', why: toks[1].quoted ? parseJsonString(toks[1], w) : toks[1].text };
  }
  const q = toks.find((t) => t.quoted);
  if (q) throw new TraceError(`unexpected string ${clip(q.text)} in expect ${toks[0].text}`, w);
  try {
    return parseOutcome(toks.map((t) => t.text).join(' '));
  } catch (e) {
    if (e instanceof TraceError) throw new TraceError(e.problem, w);
    throw new TraceError(`malformed expect: ${(e as Error).message}`, w);
  }
}

function eventFromTokens(toks: Tok[], cfg: WorldConfig | undefined, where: TraceErrorWhere): TraceEvent {
  let i = 0;
  let vcpu: number | undefined;
  if (toks[0].text.startsWith('@')) {
    vcpu = Number(parseInteger(toks[0].text.slice(1), 'vcpu', where, 'vcpu'));
    i++;
  }
  const kt = toks[i++];
  if (!kt) throw new TraceError('missing event kind after the vCPU', where);
  if (kt.quoted || !isEventKind(kt.text)) {
    throw new TraceError(`unknown event kind '${clipRaw(kt.text)}'${didYouMean(kt.text, EVENT_KINDS)}`, { ...where, field: 'kind' });
  }
  const kind = wideVmcsOperand(kt.text, toks, i);
  if (vcpu !== undefined && !hasVcpu(kind)) throw new TraceError(`${kind} has no vCPU: remove @${vcpu}`, { ...where, field: 'vcpu' });
  let j = i;
  while (j < toks.length && !(toks[j].text === 'expect' && !toks[j].quoted)) j++;
  const fields = eventFields(kind);
  const values = assignFields(toks, i, j, fields, kind, where, undefined, (name) =>
    name === 'vcpu' && hasVcpu(kind) ? new TraceError('write the vCPU as @N before the kind', { ...where, field: 'vcpu' }) : undefined,
  );
  const raw: Record<string, unknown> = { kind };
  for (const [name] of EVENT_SCHEMA[kind].fields) raw[name] = name === 'vcpu' ? (vcpu ?? 0) : values[name];
  if (j < toks.length) raw.expect = parseExpect(toks.slice(j + 1), where);
  try {
    return validateEvent(raw, undefined, cfg);
  } catch (e) {
    if (e instanceof TraceError) throw new TraceError(e.problem, { ...where, field: e.where.field });
    throw e;
  }
}

/** VMREAD/VMWRITE whose encoding has bits 63:32 set are the `-wide` kinds (the 64-bit register operand). */
const WIDE_KIND: Partial<Record<EventKind, EventKind>> = { 'l1.vmread': 'l1.vmread-wide', 'l1.vmwrite': 'l1.vmwrite-wide' };
const NARROW_KIND: Partial<Record<EventKind, EventKind>> = { 'l1.vmread-wide': 'l1.vmread', 'l1.vmwrite-wide': 'l1.vmwrite' };

function wideVmcsOperand(kind: EventKind, toks: Tok[], from: number): EventKind {
  const wide = WIDE_KIND[kind];
  if (!wide) return kind;
  for (let k = from; k < toks.length && toks[k].text !== 'expect'; k++) {
    const t = toks[k].text;
    const named = t.startsWith('field=');
    if (!named && t.includes('=')) continue;
    const num = named ? t.slice(6) : t;
    if (NUM_RE.test(num) && BigInt(num) > 0xffffffffn) return wide;
    if (!named) return kind; // the first positional value is the field
  }
  return kind;
}

/**
 * Parse one event line (comments allowed). `cfg` bounds vCPU and CPU
 * numbers; `where` (file, line) goes into errors.
 */
export function parseEventLine(line: string, cfg?: WorldConfig, where: TraceErrorWhere = {}): TraceEvent {
  const toks = tokenize(line, where);
  if (toks.length === 0) throw new TraceError('no event on this line', where);
  return eventFromTokens(toks, cfg, where);
}

/** The canonical text of one event (no newline). */
export function formatEvent(e: TraceEvent): string {
  const r = e as unknown as Record<string, unknown>;
  const parts: string[] = [];
  const vcpu = r.vcpu as number | undefined;
  if (vcpu !== undefined && vcpu !== 0 && hasVcpu(e.kind)) parts.push(`@${vcpu}`);
  const narrow = NARROW_KIND[e.kind];
  parts.push(narrow && (r.field as bigint) > 0xffffffffn ? narrow : e.kind);
  for (const [name, type] of EVENT_SCHEMA[e.kind].fields) {
    if (name === 'vcpu') continue;
    parts.push(formatValue(type, name, r[name]));
  }
  const head = parts.join(' ');
  if (!e.expect) return head;
  return head + ' '.repeat(Math.max(EXPECT_COLUMN - head.length, 2)) + 'expect ' + formatOutcome(e.expect);
}

// ---------------------------------------------------------------- header

const MEMSLOT_FIELDS: readonly FieldDef[] = [
  ['slot', 'u16'],
  ['gfn', 'u64'],
  ['npages', 'u32'],
  ['flags', 'u8'],
];
const BARE_KEY_RE = /^[A-Za-z0-9_][A-Za-z0-9_.:/@+-]*$/;

function configKeys(): string[] {
  return Object.keys(defaultConfig()).filter((k) => k !== 'memslots');
}

const QUIET_WHEN_DEFAULT = new Set<string>(['msrPlatformInfo', 'ept', 'vpid']);

/** The canonical header lines, ending with `events`. */
export function formatTextHeader(h: TraceHeader): string {
  const lines = [`${TEXT_MAGIC} ${h.version}`];
  const c = h.config as unknown as Record<string, unknown>;
  // VM capabilities (added after the first traces were written) are printed only when not KVM's default.
  const dflt = defaultConfig() as unknown as Record<string, unknown>;
  const keys = Object.keys(c).filter((k) => k !== 'memslots' && !(QUIET_WHEN_DEFAULT.has(k) && c[k] === dflt[k]));
  const nums = keys.filter((k) => typeof c[k] !== 'boolean');
  const flags = keys.filter((k) => typeof c[k] === 'boolean');
  if (nums.length) lines.push('config ' + nums.map((k) => `${k}=${String(c[k])}`).join(' '));
  for (let i = 0; i < flags.length; i += 5) lines.push('config ' + flags.slice(i, i + 5).map((k) => `${k}=${String(c[k])}`).join(' '));
  for (const m of h.config.memslots) lines.push(`memslot ${m.slot} gfn=${hex(m.gfn)} npages=${hex(m.npages)} flags=${m.flags}`);
  for (const [k, v] of Object.entries(h.provenance)) lines.push(`meta ${BARE_KEY_RE.test(k) ? k : JSON.stringify(k)} ${JSON.stringify(v)}`);
  lines.push('events');
  return lines.join('\n') + '\n';
}

/** The whole trace as canonical text. */
export function formatTextTrace(header: TraceHeader, events: Iterable<TraceEvent>): string {
  const out = [formatTextHeader(header)];
  for (const e of events) out.push(formatEvent(e), '\n');
  return out.join('');
}

/**
 * The line-by-line parser behind parseTextTrace and TextTraceReader: feed it
 * lines in order; it returns each event, and `header` once the `events` line
 * has been read.
 */
export class TextTraceParser {
  header: TraceHeader | undefined;
  private phase: 'magic' | 'header' | 'events' = 'magic';
  private version = 0;
  private config: Record<string, unknown> = {};
  private memslots: Record<string, unknown>[] = [];
  private provenance: Record<string, string> = Object.create(null) as Record<string, string>;
  /** header field (as validateHeader names it) -> line */
  private lineOf = new Map<string, number>();
  private lastLine = 0;
  count = 0;

  constructor(readonly file?: string) {}

  private where(line: number, field?: string): TraceErrorWhere {
    const w: TraceErrorWhere = {};
    if (this.file !== undefined) w.file = this.file;
    w.line = line;
    if (field !== undefined) w.field = field;
    return w;
  }

  /** Feed line number `lineNo` (1-based); returns the event on it, if any. */
  line(text: string, lineNo: number): TraceEvent | undefined {
    this.lastLine = lineNo;
    const where = this.where(lineNo);
    if (text.length > MAX_LINE_LENGTH) throw new TraceError(`line longer than ${MAX_LINE_LENGTH} characters`, where);
    if (lineNo === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const toks = tokenize(text, where);
    if (toks.length === 0) return undefined;
    if (this.phase === 'events') {
      const e = eventFromTokens(toks, this.header!.config, where);
      this.count++;
      return e;
    }
    const word = toks[0].text;
    if (this.phase === 'magic') {
      if (word !== TEXT_MAGIC) {
        throw new TraceError(`not an nvx text trace: the first line must be '${TEXT_MAGIC} ${FORMAT_VERSION}', got ${clip(text.trim())}`, where);
      }
      if (toks.length !== 2) throw new TraceError(`expected '${TEXT_MAGIC} <version>'`, this.where(lineNo, 'version'));
      const v = toks[1].text;
      if (!/^[0-9]{1,6}$/.test(v) || Number(v) < 1) throw new TraceError(`bad format version '${clipRaw(v)}'`, this.where(lineNo, 'version'));
      this.version = Number(v);
      this.lineOf.set('version', lineNo);
      if (this.version > FORMAT_VERSION) {
        throw new TraceError(`trace format version ${this.version} is newer than this nvx understands (${FORMAT_VERSION})`, this.where(lineNo, 'version'));
      }
      this.phase = 'header';
      return undefined;
    }
    switch (word) {
      case 'config':
        this.configLine(toks.slice(1), lineNo);
        return undefined;
      case 'memslot':
        this.memslotLine(toks.slice(1), lineNo);
        return undefined;
      case 'meta':
        this.metaLine(toks.slice(1), lineNo);
        return undefined;
      case 'events':
        if (toks.length > 1) throw new TraceError(`unexpected '${clipRaw(toks[1].text)}' after 'events'`, where);
        this.endHeader();
        return undefined;
      default:
        if (isEventKind(word) || word.startsWith('@')) throw new TraceError(`event before the 'events' line that ends the header`, where);
        throw new TraceError(`unknown header line '${clipRaw(word)}' (config, memslot, meta or events)${didYouMean(word, ['config', 'memslot', 'meta', 'events'])}`, where);
    }
  }

  private configLine(toks: Tok[], lineNo: number): void {
    if (toks.length === 0) throw new TraceError('config needs key=value pairs', this.where(lineNo));
    const keys = configKeys();
    for (const t of toks) {
      const m = t.quoted ? null : NAMED_RE.exec(t.text);
      if (!m) throw new TraceError(`expected key=value, got ${clip(t.text)}`, this.where(lineNo));
      const [, key, value] = m;
      const field = `config.${key}`;
      if (!keys.includes(key)) {
        const hint = key === 'memslots' ? ' (use memslot lines)' : didYouMean(key, keys);
        throw new TraceError(`unknown configuration key${hint}`, this.where(lineNo, field));
      }
      const prev = this.lineOf.get(field);
      if (prev !== undefined) throw new TraceError(`set twice (first on line ${prev})`, this.where(lineNo, field));
      this.lineOf.set(field, lineNo);
      if (value === 'true' || value === 'false') this.config[key] = value === 'true';
      else if (NUM_RE.test(value)) {
        const v = BigInt(value);
        if (v > 0xffffffffn) throw new TraceError(`${clipRaw(value)} is out of range`, this.where(lineNo, field));
        this.config[key] = Number(v);
      } else throw new TraceError(`must be true, false or an integer, got '${clipRaw(value)}'`, this.where(lineNo, field));
    }
  }

  private memslotLine(toks: Tok[], lineNo: number): void {
    const i = this.memslots.length;
    const where = this.where(lineNo);
    const m = assignFields(toks, 0, toks.length, MEMSLOT_FIELDS, 'memslot', where, ['flags']);
    if (m.flags === undefined) m.flags = 0;
    this.memslots.push(m);
    this.lineOf.set(`config.memslots[${i}]`, lineNo);
    this.lineOf.set('config.memslots', lineNo);
  }

  private metaLine(toks: Tok[], lineNo: number): void {
    if (toks.length !== 2) throw new TraceError('expected: meta <key> <value> (the value a JSON string or a bare token)', this.where(lineNo, 'provenance'));
    const key = toks[0].quoted ? parseJsonString(toks[0], this.where(lineNo, 'provenance')) : toks[0].text;
    const field = `provenance.${key}`;
    const value = toks[1].quoted ? parseJsonString(toks[1], this.where(lineNo, field)) : toks[1].text;
    const prev = this.lineOf.get(field);
    if (prev !== undefined) throw new TraceError(`given twice (first on line ${prev})`, this.where(lineNo, field));
    this.lineOf.set(field, lineNo);
    this.lineOf.set('provenance', lineNo);
    this.provenance[key] = value;
  }

  private endHeader(): void {
    try {
      this.header = validateHeader({
        version: this.version,
        config: { ...this.config, memslots: this.memslots },
        provenance: this.provenance,
      });
    } catch (e) {
      if (!(e instanceof TraceError)) throw e;
      const f = e.where.field;
      let line = this.lastLine;
      if (f !== undefined) {
        // the most specific header line that set this field
        for (let p = f; p; p = p.replace(/(\.[^.[]*|\[[0-9]+\])$/, '')) {
          const l = this.lineOf.get(p);
          if (l !== undefined) {
            line = l;
            break;
          }
          if (!/(\.|\[)/.test(p)) break;
        }
      }
      throw new TraceError(e.problem, this.where(line, f));
    }
    this.phase = 'events';
  }

  /** Call at the end of the input. */
  finish(): TraceHeader {
    if (this.phase === 'magic') throw new TraceError(`empty trace: expected '${TEXT_MAGIC} ${FORMAT_VERSION}'`, this.where(Math.max(this.lastLine, 1)));
    if (this.phase === 'header') throw new TraceError(`the header never ends: an 'events' line is missing`, this.where(Math.max(this.lastLine, 1)));
    return this.header!;
  }

  get inEvents(): boolean {
    return this.phase === 'events';
  }
}

/** Parse a whole text trace held in memory. Throws TraceError naming the file, line and field. */
export function parseTextTrace(text: string, file?: string): { header: TraceHeader; events: TraceEvent[] } {
  const p = new TextTraceParser(file);
  const events: TraceEvent[] = [];
  let pos = 0;
  let lineNo = 0;
  while (pos <= text.length) {
    let nl = text.indexOf('\n', pos);
    if (nl < 0) {
      if (pos === text.length) break;
      nl = text.length;
    }
    lineNo++;
    if (nl - pos > MAX_LINE_LENGTH + 1) throw new TraceError(`line longer than ${MAX_LINE_LENGTH} characters`, file === undefined ? { line: lineNo } : { file, line: lineNo });
    let line = text.slice(pos, nl);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    const e = p.line(line, lineNo);
    if (e) events.push(e);
    pos = nl + 1;
  }
  return { header: p.finish(), events };
}

// ---------------------------------------------------------------- files


function fileError(e: unknown, file: string): TraceError {
  return e instanceof TraceError ? (e.where.file === undefined ? e.at({ file }) : e) : new TraceError(fsProblem(e), { file });
}

/**
 * The lines of a stream, in batches (the lines completed by each chunk read),
 * each at most `max` characters (else TraceError with the line number).
 * Memory stays bounded by a chunk and a line.
 */
async function* streamLines(stream: Readable, file: string, max = MAX_LINE_LENGTH): AsyncGenerator<string[]> {
  // fatal: a byte sequence that is not UTF-8 is an error, never a silent U+FFFD
  const dec = new TextDecoder('utf-8', { fatal: true });
  let pending = '';
  let lineNo = 0;
  const tooLong = () => new TraceError(`line longer than ${max} characters`, { file, line: lineNo + 1 });
  const decode = (chunk: Uint8Array | undefined): string => {
    try {
      return chunk === undefined ? dec.decode() : dec.decode(chunk, { stream: true });
    } catch {
      throw notUtf8(chunk ?? new Uint8Array(0), lineNo + countNewlines(pending), file);
    }
  };
  for await (const chunk of stream) {
    const s = pending + decode(chunk as Buffer);
    const batch: string[] = [];
    let pos = 0;
    let nl: number;
    while ((nl = s.indexOf('\n', pos)) >= 0) {
      if (nl - pos > max + 1) {
        if (batch.length) yield batch;
        throw tooLong();
      }
      lineNo++;
      batch.push(s.charCodeAt(nl - 1) === 0x0d && nl > pos ? s.slice(pos, nl - 1) : s.slice(pos, nl));
      pos = nl + 1;
    }
    pending = s.slice(pos);
    if (batch.length) yield batch;
    if (pending.length > max + 1) throw tooLong();
  }
  pending += decode(undefined);
  if (pending.length > max + 1) throw tooLong();
  if (pending.length) yield [pending.endsWith('\r') ? pending.slice(0, -1) : pending];
}

function countNewlines(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

/**
 * The index of the first byte of `b` that does not start or continue a
 * well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or -1. Continuation bytes at the very start are
 * skipped (they may end a character begun in the previous chunk); a
 * sequence cut at the end counts as well-formed (the next chunk may end it).
 */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < 3 && i < b.length && (b[i] & 0xc0) === 0x80) i++;
  while (i < b.length) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k <= n; k++) {
      if (i + k >= b.length) return -1;
      const d = b[i + k];
      if (k === 1 ? d < lo || d > hi : (d & 0xc0) !== 0x80) return i;
    }
    i += n + 1;
  }
  return -1;
}

/** The error for bytes that are not UTF-8: the line they are on (`linesBefore` lines end before `b`), and the bytes. */
function notUtf8(b: Uint8Array, linesBefore: number, file: string | undefined): TraceError {
  let at = firstInvalidUtf8(b);
  if (at < 0) at = Math.max(0, b.length - 1);
  let line = linesBefore + 1;
  for (let i = 0; i < at; i++) if (b[i] === 0x0a) line++;
  const bytes = Array.from(b.subarray(at, at + 4), (x) => x.toString(16).padStart(2, '0')).join(' ');
  return new TraceError(`not valid UTF-8 (bytes ${bytes}); a text trace must be UTF-8`, file === undefined ? { line } : { file, line });
}

/**
 * Parse a whole text trace held in memory as bytes: the bytes must be UTF-8
 * (an error names the line otherwise), then as parseTextTrace.
 */
export function decodeTextTrace(buf: Uint8Array, file?: string): { header: TraceHeader; events: TraceEvent[] } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    throw notUtf8(buf, 0, file);
  }
  return parseTextTrace(text, file);
}

export interface TextReaderOptions {
  /** events per chunk from chunks() (default 1024) */
  chunkSize?: number;
}

/**
 * Streaming reader of a text trace: the header is read by open(), the
 * events line by line as they are consumed, in constant memory.
 */
export class TextTraceReader {
  readonly warnings: TraceWarning[] = [];
  private lineNo: number;
  private consumed = false;

  private constructor(
    readonly file: string,
    readonly header: TraceHeader,
    private readonly parser: TextTraceParser,
    private readonly lines: AsyncGenerator<string[]>,
    private readonly stream: Readable,
    lineNo: number,
    /** lines of the batch that the header ended in, not parsed yet */
    private rest: string[],
    private readonly chunkSize: number,
  ) {
    this.lineNo = lineNo;
  }

  static async open(path: string, opts: TextReaderOptions = {}): Promise<TextTraceReader> {
    const fh = await openForReading(path);
    const stream = fh.createReadStream({ highWaterMark: 64 * 1024 });
    const lines = streamLines(stream, path);
    const parser = new TextTraceParser(path);
    let lineNo = 0;
    let rest: string[] = [];
    try {
      while (!parser.inEvents) {
        const r = await lines.next();
        if (r.done) {
          parser.finish();
          break;
        }
        let k = 0;
        while (k < r.value.length && !parser.inEvents) parser.line(r.value[k++], ++lineNo);
        rest = r.value.slice(k);
      }
    } catch (e) {
      stream.destroy();
      await lines.return(undefined).catch(() => undefined);
      throw fileError(e, path);
    }
    return new TextTraceReader(path, parser.header!, parser, lines, stream, lineNo, rest, Math.max(1, opts.chunkSize ?? 1024));
  }

  /** Events in chunks; can be consumed once. */
  async *chunks(): AsyncGenerator<TraceEvent[]> {
    if (this.consumed) throw new TraceError('the events of this reader were already read', { file: this.file });
    this.consumed = true;
    let chunk: TraceEvent[] = [];
    let batch = this.rest;
    this.rest = [];
    try {
      for (;;) {
        for (const line of batch) {
          const e = this.parser.line(line, ++this.lineNo);
          if (e) {
            chunk.push(e);
            if (chunk.length >= this.chunkSize) {
              yield chunk;
              chunk = [];
            }
          }
        }
        let r: IteratorResult<string[]>;
        try {
          r = await this.lines.next();
        } catch (e) {
          throw fileError(e, this.file);
        }
        if (r.done) break;
        batch = r.value;
      }
      if (chunk.length) yield chunk;
    } finally {
      await this.close();
    }
  }

  async *events(): AsyncGenerator<TraceEvent> {
    for await (const c of this.chunks()) yield* c;
  }

  /** Events read so far. */
  get count(): number {
    return this.parser.count;
  }

  async close(): Promise<void> {
    this.stream.destroy();
    await this.lines.return(undefined).catch(() => undefined);
  }
}

export interface TextWriterOptions {
  /** check each event against the schema and the header's config (default true) */
  validate?: boolean;
}

/**
 * Writes a text trace to a temporary file next to `path` and renames it on
 * close(), so a crash or an abort() never leaves a partial file under `path`.
 */
export class TextTraceWriter {
  private buf: string[] = [];
  private bufLen = 0;
  private out: AtomicFile | undefined;
  private n = 0;

  private constructor(
    readonly path: string,
    out: AtomicFile,
    private readonly header: TraceHeader,
    private readonly check: boolean,
  ) {
    this.out = out;
  }

  static open(path: string, header: TraceHeader, opts: TextWriterOptions = {}): TextTraceWriter {
    const h = validateHeader(header);
    const w = new TextTraceWriter(path, AtomicFile.open(path), h, opts.validate !== false);
    w.push(formatTextHeader(h));
    return w;
  }

  get count(): number {
    return this.n;
  }

  write(e: TraceEvent): void {
    if (this.out === undefined) throw new TraceError('write after close', { file: this.path });
    const ev = this.check ? validateEvent(e, this.n, this.header.config) : e;
    this.push(formatEvent(ev) + '\n');
    this.n++;
  }

  private push(s: string): void {
    this.buf.push(s);
    this.bufLen += s.length;
    if (this.bufLen >= 64 * 1024) this.flush();
  }

  private flush(): void {
    if (!this.bufLen || this.out === undefined) return;
    const data = this.buf.join('');
    this.buf = [];
    this.bufLen = 0;
    try {
      this.out.write(data);
    } catch (e) {
      this.out = undefined; // the atomic file removed its temporary file
      throw e;
    }
  }

  /** Flush, then rename the temporary file to the final name. */
  close(): void {
    if (this.out === undefined) return;
    this.flush();
    const out = this.out;
    if (out === undefined) return;
    this.out = undefined;
    out.commit();
  }

  /** Drop everything written: the temporary file is removed, `path` is untouched. */
  abort(): void {
    this.out?.abort();
    this.out = undefined;
    this.buf = [];
    this.bufLen = 0;
  }
}
