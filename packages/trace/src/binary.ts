/**
 * The binary trace form (`.nvxt`).
 *
 * Layout (all integers little-endian):
 *
 *   file header  8 bytes   'NVXT', u16 format version, u16 flags (0)
 *   frame        9 + n     u8 type, u32 payload length n, u32 CRC-32 of the payload, payload
 *
 * Frame types: 1 the trace header (msgpack of `headerToPlain(header)`, always
 * the first frame), 2 a chunk of events, 3 the end frame (msgpack
 * `{ events: total }`, always last).
 *
 * An events frame holds a msgpack list of event tuples (see validate.ts). In
 * format version 1 the payload is that list. In version 2 (what the writers
 * write) the payload is
 *
 *   u8 codec   0 stored, 1 deflate (raw, RFC 1951)
 *   u32 size   the size of the msgpack list once decoded (at most MAX_FRAME_PAYLOAD)
 *   body       the list, stored or deflated
 *
 * so one chunk is compressed on its own and the file still streams chunk by
 * chunk. The CRC covers the payload as stored, so corruption is found before
 * anything is inflated; the declared size is checked against the bound
 * before inflating and caps what inflating may produce (a decompression bomb
 * stops at that size).
 *
 * A file cut off at any byte still reads: every complete chunk before the
 * cut is returned with a warning saying where the cut is. Corruption (a bad
 * checksum, a malformed or undecompressible payload, an invalid event) is a
 * TraceError naming the file, the byte offset of the frame and, for events,
 * the event index. Every length read from the file is checked against a
 * fixed bound and against the bytes that remain before anything is
 * allocated.
 *
 * Writers go through a temporary file that is renamed onto the final name
 * when complete, so a crash never leaves a half-written trace under that
 * name; the streaming reader holds one frame in memory at a time.
 */
import * as fs from 'fs';
import { ZlibOptions, crc32, deflateRawSync, inflateRawSync } from 'zlib';
import { Packr, Unpackr } from 'msgpackr';
import { TraceError, loneSurrogateAt } from './errors';
import { EVENT_KINDS, EVENT_SCHEMA, EventKind, FieldType, TraceEvent } from './events';
import { TraceHeader, WorldConfig, headerToPlain, validateHeader } from './header';
import { OUTCOME_KINDS, Outcome } from './outcome';
import { eventFromTuple, validateEvent } from './validate';
import { AtomicFile } from './atomic';
import { openForReading } from './readfile';
import { END_SHAPE, HEADER_SHAPE, Shape, ShapeError, checkShape, clipForMessage, eventsShape, pathName } from './shape';

export const BINARY_MAGIC = 'NVXT';
/** The largest payload a frame may declare; a reader rejects larger ones before reading them. */
export const MAX_FRAME_PAYLOAD = 16 * 1024 * 1024;
/** The most events one chunk may hold (bounds the memory one chunk takes once decoded). */
export const MAX_CHUNK_EVENTS = 65536;
export const DEFAULT_CHUNK_EVENTS = 4096;

/**
 * The binary format versions: 1 (events frames hold plain msgpack) and 2
 * (events frames hold a codec byte, the decoded size and the list, deflated
 * when that is smaller). Writers write BINARY_VERSION unless told otherwise;
 * readers read both. (The trace header's own `version`, FORMAT_VERSION, is
 * the version of the header and event schema, shared with the text form.)
 */
export const BINARY_VERSION = 2;
export type BinaryVersion = 1 | 2;
/** Codecs of a version 2 events frame. */
export const CODEC_STORED = 0;
export const CODEC_DEFLATE = 1;
/** The codec byte and the u32 decoded size that start a version 2 events frame. */
export const EVENTS_PREFIX_SIZE = 5;
/** The largest decoded (inflated) events payload a version 2 frame may declare: the frame bound, so a chunk is as large as in version 1. */
export const MAX_DECODED_PAYLOAD = MAX_FRAME_PAYLOAD;
/**
 * Deflate level of the writers. Level 1 (zlib's fastest) makes the CPUID
 * workload 0.6 bytes/event; higher levels gain almost nothing on traces
 * (their repetition is short-range) and cost twice the time
 * (tools/bench/trace.ts prints the comparison).
 */
export const DEFLATE_LEVEL = 1;

/** Options of the binary writers. */
export interface BinaryWriteOptions {
  /** events per chunk (frame), 1..MAX_CHUNK_EVENTS; default DEFAULT_CHUNK_EVENTS */
  chunkEvents?: number;
  /** the format version to write; default BINARY_VERSION (1 writes the older, uncompressed form) */
  version?: BinaryVersion;
}

export const FILE_HEADER_SIZE = 8;
export const FRAME_HEADER_SIZE = 9;
export const FRAME_HEADER = 1;
export const FRAME_EVENTS = 2;
export const FRAME_END = 3;

/** Something a reader wants a person to know that is not an error, such as a cut-off file. */
export interface TraceWarning {
  file?: string;
  offset?: number;
  message: string;
}

const MAGIC_BYTES = Buffer.from(BINARY_MAGIC, 'latin1');
const FRAME_NAMES: Record<number, string> = { [FRAME_HEADER]: 'header', [FRAME_EVENTS]: 'events', [FRAME_END]: 'end' };

// Maps stay plain objects, records are off (every payload stands alone), and
// uint64/int64 always decode as bigint so 64-bit values stay exact.
// msgpackr (and its native decoder) loads with the first payload, not with
// this module: the import above is used for types only, so `nvx --help` and
// the commands on text traces start without it.
let msgpack: { packr: Packr; unpackr: Unpackr } | undefined;
function loadMsgpack(): { packr: Packr; unpackr: Unpackr } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const m = require('msgpackr') as typeof import('msgpackr');
  return { packr: new m.Packr({ useRecords: false, int64AsType: 'bigint' }), unpackr: new m.Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' }) };
}
const packr = { pack: (value: unknown): Buffer => (msgpack ??= loadMsgpack()).packr.pack(value) };
const unpackr = { unpack: (payload: Uint8Array): unknown => (msgpack ??= loadMsgpack()).unpackr.unpack(payload) };

/** Does the buffer start with the binary trace magic? */
export function isBinaryTrace(buf: Uint8Array): boolean {
  return buf.length >= 4 && buf[0] === MAGIC_BYTES[0] && buf[1] === MAGIC_BYTES[1] && buf[2] === MAGIC_BYTES[2] && buf[3] === MAGIC_BYTES[3];
}

// ---------------------------------------------------------------------------
// Per-event codec.
//
// The schema is compiled once into one small decoder and one encoder per
// event kind (generated source: a fixed object literal per kind, constant
// field names, one inline check per field), so the per-event work is a few
// comparisons and one allocation. The generated source is built from the
// static EVENT_SCHEMA only (names quoted with JSON.stringify), never from input. The checks are exactly those of
// `eventFromTuple` / `validateEvent` (validate.ts) and `outcomeFromTuple`
// (outcome.ts), and the decoded objects are the same, property order
// included; the tests compare the two on valid and mangled tuples. These
// fast paths never throw: on anything they do not accept they return
// undefined and the caller asks the generic validator, which throws the
// precise error (or, should the two ever disagree, decides).
// ---------------------------------------------------------------------------

const U64_MAX = 0xffffffffffffffffn;
const BAD: unique symbol = Symbol('bad');

function u64OrNull(v: unknown): bigint | undefined | typeof BAD {
  if (v === null) return undefined;
  if (typeof v === 'bigint') return v < 0n || v > U64_MAX ? BAD : v;
  if (typeof v === 'number' && v >= 0 && v <= 0xffffffff && Number.isInteger(v)) return BigInt(v);
  return BAD;
}

function u32OrNull(v: unknown): number | undefined | typeof BAD {
  if (v === null) return undefined;
  if (typeof v === 'number' && v >= 0 && v <= 0xffffffff && Number.isInteger(v)) return v;
  return BAD;
}

/** `outcomeFromTuple` without exceptions: the same checks and result, or undefined. */
export function tryOutcomeFromTuple(t: unknown): Outcome | undefined {
  if (!Array.isArray(t) || t.length === 0) return undefined;
  const c = t[0];
  if (typeof c !== 'number') return undefined;
  const k = OUTCOME_KINDS[c];
  if (k === undefined) return undefined;
  const len = t.length;
  switch (k) {
    case 'value': {
      if (len !== 2) return undefined;
      const value = u64OrNull(t[1]);
      if (value === BAD || value === undefined) return undefined;
      return { k, value };
    }
    case 'vmfail-valid': {
      if (len !== 2) return undefined;
      const error = u32OrNull(t[1]);
      if (error === BAD) return undefined;
      return { k, error: error as number };
    }
    case 'exit': {
      if (len !== 3) return undefined;
      const reason = u32OrNull(t[1]);
      const qual = u64OrNull(t[2]);
      if (reason === BAD || qual === BAD) return undefined;
      return { k, reason: reason as number, qual: qual as bigint };
    }
    case 'cpuid': {
      if (len !== 5) return undefined;
      const eax = u32OrNull(t[1]);
      const ebx = u32OrNull(t[2]);
      const ecx = u32OrNull(t[3]);
      const edx = u32OrNull(t[4]);
      if (eax === BAD || ebx === BAD || ecx === BAD || edx === BAD) return undefined;
      return { k, eax: eax as number, ebx: ebx as number, ecx: ecx as number, edx: edx as number };
    }
    case 'ignored': {
      if (len !== 2) return undefined;
      const why = t[1];
      if (why !== null && (typeof why !== 'string' || loneSurrogateAt(why) >= 0)) return undefined;
      return { k, why: (why ?? undefined) as string };
    }
    case 'userspace': {
      if (len !== 3) return undefined;
      const x = t[1];
      const exit = x === null ? undefined : x === 0 ? 'mmio' : x === 1 ? 'internal-error' : x === 2 ? 'shutdown' : BAD;
      const gpa = u64OrNull(t[2]);
      if (exit === BAD || gpa === BAD || (gpa !== undefined && exit !== 'mmio')) return undefined;
      const o: Outcome = { k, exit: exit as 'mmio' };
      if (gpa !== undefined) o.gpa = gpa;
      return o;
    }
    case 'nested-state': {
      if (len !== 6) return undefined;
      const flags = u32OrNull(t[1]);
      const size = u32OrNull(t[2]);
      const vmxon = u64OrNull(t[3]);
      const vmcs12 = u64OrNull(t[4]);
      const smm = u32OrNull(t[5]);
      if (flags === BAD || size === BAD || vmxon === BAD || vmcs12 === BAD || smm === BAD) return undefined;
      if ((flags ?? 0) > 0xffff || (smm ?? 0) > 0xffff) return undefined;
      return { k, flags: flags as number, size: size as number, vmxon: vmxon as bigint, vmcs12: vmcs12 as bigint, smm: smm as number };
    }
    default:
      return len === 1 ? ({ k } as Outcome) : undefined;
  }
}

const OUTCOME_CODE = new Map<string, number>(OUTCOME_KINDS.map((k, i) => [k, i]));

function small64(v: unknown): unknown {
  return v === undefined ? null : (v as bigint) <= 0xffffffffn ? Number(v) : v;
}
function opt(v: unknown): unknown {
  return v === undefined ? null : v;
}

/** `outcomeToTuple` for an outcome that `tryOutcomeFromTuple` accepts back; undefined for anything else. */
function tryOutcomeToTuple(o: unknown): unknown[] | undefined {
  if (typeof o !== 'object' || o === null) return undefined;
  const r = o as Record<string, unknown>;
  const c = OUTCOME_CODE.get(r.k as string);
  if (c === undefined) return undefined;
  let t: unknown[];
  try {
    switch (r.k) {
      case 'value':
        t = [c, small64(r.value)];
        break;
      case 'vmfail-valid':
        t = [c, opt(r.error)];
        break;
      case 'exit':
        t = [c, opt(r.reason), small64(r.qual)];
        break;
      case 'cpuid':
        t = [c, opt(r.eax), opt(r.ebx), opt(r.ecx), opt(r.edx)];
        break;
      case 'ignored':
        t = [c, opt(r.why)];
        break;
      case 'userspace':
        t = [c, r.exit === undefined ? null : r.exit === 'mmio' ? 0 : r.exit === 'internal-error' ? 1 : r.exit === 'shutdown' ? 2 : -1, small64(r.gpa)];
        break;
      case 'nested-state':
        t = [c, opt(r.flags), opt(r.size), small64(r.vmxon), small64(r.vmcs12), opt(r.smm)];
        break;
      default:
        t = [c];
    }
  } catch {
    return undefined; // a comparison of a bigint with something that cannot be compared
  }
  return tryOutcomeFromTuple(t) === undefined ? undefined : t;
}

type TupleDecode = (t: unknown[], len: number) => TraceEvent | undefined;
type TupleEncode = (e: TraceEvent) => unknown[] | undefined;

/** Index into the limits array handed to the generated code. */
const LIM_VCPU = 0;
const LIM_CPU = 1;
const INT_MAX: Partial<Record<FieldType, number>> = { u8: 0xff, u16: 0xffff, u32: 0xffffffff, field: 0xffffffff, msr: 0xffffffff, cpl: 3, size: 8 };

/** Source of the check of one integer field held in variable `v` (the failure action is `return undefined`). */
function intCheck(type: FieldType, v: string): string {
  const max = type === 'vcpu' ? `lim[${LIM_VCPU}]` : type === 'cpu' ? `lim[${LIM_CPU}]` : String(INT_MAX[type]);
  let s = `if (typeof ${v} !== 'number' || !(${v} >= 0 && ${v} <= ${max}) || !Number.isInteger(${v})) return undefined;`;
  if (type === 'size') s += ` if (${v} !== 1 && ${v} !== 2 && ${v} !== 4 && ${v} !== 8) return undefined;`;
  return s;
}

function decoderSource(kind: EventKind): string {
  const def = EVENT_SCHEMA[kind];
  const n = def.fields.length;
  const lines: string[] = [`if (len !== ${n + 1} && len !== ${n + 2}) return undefined;`];
  def.fields.forEach(([, type], i) => {
    const v = `v${i}`;
    lines.push(`let ${v} = t[${i + 1}];`);
    if (type === 'u64')
      lines.push(
        `if (typeof ${v} === 'number') { if (!(${v} >= 0 && ${v} <= 0xffffffff) || !Number.isInteger(${v})) return undefined; ${v} = BigInt(${v}); }`,
        `else if (typeof ${v} !== 'bigint' || ${v} < 0n || ${v} > 0xffffffffffffffffn) return undefined;`,
      );
    else if (type === 'bool') lines.push(`if (typeof ${v} !== 'boolean') return undefined;`);
    else if (type === 'access') lines.push(`if (${v} === 0) ${v} = 'read'; else if (${v} === 1) ${v} = 'write'; else return undefined;`);
    else lines.push(intCheck(type, v));
  });
  const props = [`kind: ${JSON.stringify(kind)}`, ...def.fields.map(([name], i) => `${JSON.stringify(name)}: v${i}`)];
  lines.push(
    `const e = { ${props.join(', ')} };`,
    `if (len === ${n + 2}) { const x = decodeOutcome(t[${n + 1}]); if (x === undefined) return undefined; e.expect = x; }`,
    'return e;',
  );
  return `return function decode(t, len) {\n  ${lines.join('\n  ')}\n};`;
}

function encoderSource(kind: EventKind): string {
  const def = EVENT_SCHEMA[kind];
  const lines: string[] = [];
  def.fields.forEach(([name, type], i) => {
    const v = `v${i}`;
    lines.push(`let ${v} = e[${JSON.stringify(name)}];`);
    if (type === 'u64')
      lines.push(
        `if (typeof ${v} === 'bigint') { if (${v} < 0n || ${v} > 0xffffffffffffffffn) return undefined; if (${v} <= 0xffffffffn) ${v} = Number(${v}); }`,
        `else if (typeof ${v} !== 'number' || !(${v} >= 0 && ${v} <= 0xffffffff) || !Number.isInteger(${v})) return undefined;`,
        `else ${v} += 0;`, // -0 is written as 0, as eventToTuple does
      );
    else if (type === 'bool') lines.push(`if (typeof ${v} !== 'boolean') return undefined;`);
    else if (type === 'access') lines.push(`if (${v} === 'read') ${v} = 0; else if (${v} === 'write') ${v} = 1; else return undefined;`);
    else lines.push(intCheck(type, v));
  });
  lines.push(
    `const t = [${[def.code, ...def.fields.map((_, i) => `v${i}`)].join(', ')}];`,
    `if (e.expect !== undefined) { const x = encodeOutcome(e.expect); if (x === undefined) return undefined; t.push(x); }`,
    'return t;',
  );
  return `return function encode(e) {\n  ${lines.join('\n  ')}\n};`;
}

type Factory<F> = (lim: Float64Array, outcome: (x: unknown) => unknown) => F;

// Compiled once per kind, by the first binary trace read or written (not when the module loads:
// commands on text traces never need them); instantiated per configuration (the vCPU and CPU bounds).
let factories: { decode: (Factory<TupleDecode> | undefined)[]; encode: Map<string, Factory<TupleEncode>> } | undefined;
function codecFactories(): { decode: (Factory<TupleDecode> | undefined)[]; encode: Map<string, Factory<TupleEncode>> } {
  if (factories) return factories;
  const decode: (Factory<TupleDecode> | undefined)[] = [];
  const encode = new Map<string, Factory<TupleEncode>>();
  for (const kind of EVENT_KINDS) {
    decode[EVENT_SCHEMA[kind].code] = new Function('lim', 'decodeOutcome', decoderSource(kind)) as Factory<TupleDecode>;
    encode.set(kind, new Function('lim', 'encodeOutcome', encoderSource(kind)) as Factory<TupleEncode>);
  }
  return (factories = { decode, encode });
}

function limitsOf(cfg: WorldConfig | undefined): Float64Array {
  const lim = new Float64Array(2);
  lim[LIM_VCPU] = cfg ? Math.min(255, cfg.vcpus - 1) : 255;
  lim[LIM_CPU] = cfg ? Math.min(255, cfg.pcpus - 1) : 255;
  return lim;
}

/**
 * A decoder of event tuples for one configuration: `eventFromTuple(t, i, cfg)`
 * without exceptions (undefined where that would throw), several times faster.
 */
export function tupleDecoder(cfg?: WorldConfig): (t: unknown) => TraceEvent | undefined {
  const lim = limitsOf(cfg);
  const table: (TupleDecode | undefined)[] = codecFactories().decode.map((f) => f && f(lim, tryOutcomeFromTuple));
  return (t) => {
    if (!Array.isArray(t)) return undefined;
    const code = t[0];
    if (typeof code !== 'number') return undefined;
    const f = table[code];
    return f === undefined ? undefined : f(t, t.length);
  };
}

/**
 * An encoder of events for one configuration: the tuple `eventToTuple` makes
 * for an event `validateEvent(e, i, cfg)` accepts, undefined for one it
 * rejects. (Like the tuple form, it ignores properties the kind does not have.)
 */
export function tupleEncoder(cfg?: WorldConfig): (e: TraceEvent) => unknown[] | undefined {
  const lim = limitsOf(cfg);
  const table = new Map<string, TupleEncode>();
  for (const [kind, f] of codecFactories().encode) table.set(kind, f(lim, tryOutcomeToTuple));
  return (e) => {
    if (typeof e !== 'object' || e === null) return undefined;
    const f = table.get(e.kind);
    return f === undefined ? undefined : f(e);
  };
}

/** Decode and validate one tuple; a TraceError names the event index and the frame's byte offset. */
function decodeTuple(
  fast: (t: unknown) => TraceEvent | undefined,
  t: unknown,
  cfg: WorldConfig,
  index: number,
  offset: number,
  file: string | undefined,
): TraceEvent {
  const e = fast(t);
  if (e !== undefined) return e;
  try {
    return eventFromTuple(t, index, cfg);
  } catch (err) {
    if (err instanceof TraceError) throw err.at({ file, offset });
    throw new TraceError('malformed event tuple', { file, offset, index });
  }
}

/** Validate an event for writing and return its tuple; a bad event is a TraceError from validateEvent. */
function encodeEvent(fast: (e: TraceEvent) => unknown[] | undefined, e: TraceEvent, cfg: WorldConfig, index: number): unknown[] {
  const t = fast(e);
  if (t !== undefined) return t;
  validateEvent(e, index, cfg);
  throw new TraceError('event cannot be encoded', { index });
}

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function fileHeaderBytes(version: BinaryVersion): Buffer {
  const b = Buffer.alloc(FILE_HEADER_SIZE);
  MAGIC_BYTES.copy(b, 0);
  b.writeUInt16LE(version, 4);
  b.writeUInt16LE(0, 6);
  return b;
}

function frameHeaderBytes(type: number, payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
  b[0] = type;
  b.writeUInt32LE(payload.length, 1);
  b.writeUInt32LE(crc32(payload), 5);
  return b;
}

function packPayload(value: unknown): Buffer {
  // pack() may return a view of msgpackr's working buffer: copy it out
  return Buffer.from(packr.pack(value));
}

function headerFrame(header: TraceHeader): Buffer[] {
  const payload = packPayload(headerToPlain(header));
  if (payload.length > MAX_FRAME_PAYLOAD) throw new TraceError(`trace header takes ${payload.length} bytes, more than the ${MAX_FRAME_PAYLOAD} a frame may hold`);
  return [frameHeaderBytes(FRAME_HEADER, payload), payload];
}

function endFrame(count: number): Buffer[] {
  const payload = packPayload({ events: count });
  return [frameHeaderBytes(FRAME_END, payload), payload];
}

/**
 * Frames for a list of tuples. A chunk whose payload would exceed the frame
 * bound (long `ignored` reasons) is split; one event too large for a frame is
 * an error, so a writer never produces a file its reader refuses. In version
 * 2 the bound leaves room for the codec prefix, so that a chunk deflate
 * cannot shrink can always be stored.
 */
function eventFrames(tuples: unknown[], firstIndex: number, out: Buffer[], version: BinaryVersion): void {
  const payload = packPayload(tuples);
  const bound = version === 1 ? MAX_FRAME_PAYLOAD : MAX_FRAME_PAYLOAD - EVENTS_PREFIX_SIZE;
  if (payload.length <= bound) {
    const stored = version === 1 ? payload : compressedPayload(payload);
    out.push(frameHeaderBytes(FRAME_EVENTS, stored), stored);
    return;
  }
  if (tuples.length === 1) throw new TraceError(`event takes ${payload.length} bytes, more than the ${bound} a frame may hold`, { index: firstIndex });
  const half = tuples.length >> 1;
  eventFrames(tuples.slice(0, half), firstIndex, out, version);
  eventFrames(tuples.slice(half), firstIndex + half, out, version);
}

/** A version 2 events payload: the msgpack list deflated, or stored when deflate does not make it smaller. */
function compressedPayload(list: Buffer): Buffer {
  const deflated = deflateRawSync(list, { level: DEFLATE_LEVEL });
  const deflate = deflated.length < list.length;
  const body = deflate ? deflated : list;
  const out = Buffer.allocUnsafe(EVENTS_PREFIX_SIZE + body.length);
  out[0] = deflate ? CODEC_DEFLATE : CODEC_STORED;
  out.writeUInt32LE(list.length, 1);
  body.copy(out, EVENTS_PREFIX_SIZE);
  return out;
}

function chunkSize(opts: BinaryWriteOptions | undefined): number {
  const n = opts?.chunkEvents ?? DEFAULT_CHUNK_EVENTS;
  if (!Number.isInteger(n) || n < 1 || n > MAX_CHUNK_EVENTS) throw new RangeError(`chunkEvents must be an integer in 1..${MAX_CHUNK_EVENTS}, got ${n}`);
  return n;
}

function versionOf(opts: BinaryWriteOptions | undefined): BinaryVersion {
  const v = opts?.version ?? BINARY_VERSION;
  if (v !== 1 && v !== 2) throw new RangeError(`version must be 1 or 2, got ${String(v)}`);
  return v;
}

/** Check the header the way a reader will, so that a writer never writes a header its reader refuses. */
function checkedHeader(header: TraceHeader): TraceHeader {
  return validateHeader(headerToPlain(header));
}

// ---------------------------------------------------------------------------
// Decoding, shared by the whole-buffer decoder and the streaming reader
// ---------------------------------------------------------------------------

interface FrameHead {
  type: number;
  length: number;
  crc: number;
}

/** Check the 8-byte file header (the caller has made sure 8 bytes are there); returns the format version. */
function checkFileHeader(b: Uint8Array, file: string | undefined): BinaryVersion {
  if (!isBinaryTrace(b)) throw new TraceError(`not an nvx binary trace (no '${BINARY_MAGIC}' magic)`, { file, offset: 0 });
  const version = b[4] | (b[5] << 8);
  const flags = b[6] | (b[7] << 8);
  if (version === 0) throw new TraceError('binary format version 0 is not valid', { file, offset: 4 });
  if (version > BINARY_VERSION) throw new TraceError(`binary format version ${version} is newer than this nvx understands (${BINARY_VERSION})`, { file, offset: 4 });
  if (flags !== 0) throw new TraceError(`unknown file flags 0x${flags.toString(16)}`, { file, offset: 6 });
  return version as BinaryVersion;
}

/**
 * Parse a frame header of which `avail` bytes are there (at most 9 are
 * looked at); `remaining` is the number of bytes after the frame header.
 * Returns undefined when the frame is cut off. The type and the length bound
 * are checked first, so garbage is an error, not a truncation.
 */
function parseFrameHead(b: Uint8Array, at: number, avail: number, offset: number, remaining: number, file: string | undefined): FrameHead | undefined {
  const type = b[at];
  if (type !== FRAME_HEADER && type !== FRAME_EVENTS && type !== FRAME_END) throw new TraceError(`unknown frame type ${type}`, { file, offset });
  if (avail < 5) return undefined;
  const length = frameLength(b, at);
  if (length > MAX_FRAME_PAYLOAD) throw new TraceError(`${FRAME_NAMES[type]} frame declares ${length} payload bytes, more than the bound of ${MAX_FRAME_PAYLOAD}`, { file, offset });
  if (avail < FRAME_HEADER_SIZE || length > remaining) return undefined;
  const crc = ((b[at + 5] | (b[at + 6] << 8) | (b[at + 7] << 16)) >>> 0) + b[at + 8] * 0x1000000;
  return { type, length, crc };
}

function frameLength(b: Uint8Array, at: number): number {
  return (b[at + 1] | (b[at + 2] << 8) | (b[at + 3] << 16)) + b[at + 4] * 0x1000000;
}

/** The number of elements a msgpack list header announces, or -1 when the payload does not start with a list. */
function msgpackListLength(p: Uint8Array): number {
  const b0 = p[0];
  if (b0 >= 0x90 && b0 <= 0x9f) return b0 & 0x0f;
  if (b0 === 0xdc && p.length >= 3) return p[1] * 0x100 + p[2];
  if (b0 === 0xdd && p.length >= 5) return p[1] * 0x1000000 + ((p[2] << 16) | (p[3] << 8) | p[4]);
  return -1;
}

// strings in a chunk are bounded by what a chunk may hold once decoded (version 2: inflated)
const EVENTS_SHAPE = eventsShape(MAX_CHUNK_EVENTS, MAX_DECODED_PAYLOAD);

/** The state of a decode: fed complete, checksummed frames in file order. */
class FrameDecoder {
  header: TraceHeader | undefined;
  count = 0;
  ended = false;
  private cfg: WorldConfig | undefined;
  private fast: (t: unknown) => TraceEvent | undefined = tupleDecoder(undefined);

  constructor(
    readonly file: string | undefined,
    readonly version: BinaryVersion,
  ) {}

  /**
   * The msgpack list of a version 2 events payload (after its checksum
   * matched): the declared size is checked against the bound before anything
   * is inflated, and inflating stops at that size, so a decompression bomb
   * costs at most MAX_DECODED_PAYLOAD bytes and the time to inflate them.
   */
  private decompress(payload: Uint8Array, offset: number): Uint8Array {
    const file = this.file;
    if (payload.length < EVENTS_PREFIX_SIZE) throw new TraceError(`events frame of ${payload.length} bytes is shorter than its ${EVENTS_PREFIX_SIZE}-byte codec and size prefix`, { file, offset });
    const codec = payload[0];
    const size = ((payload[1] | (payload[2] << 8) | (payload[3] << 16)) >>> 0) + payload[4] * 0x1000000;
    const body = payload.subarray(EVENTS_PREFIX_SIZE);
    if (codec !== CODEC_STORED && codec !== CODEC_DEFLATE) throw new TraceError(`events frame has unknown codec ${codec}`, { file, offset });
    if (size > MAX_DECODED_PAYLOAD) throw new TraceError(`events frame declares ${size} decoded bytes, more than the bound of ${MAX_DECODED_PAYLOAD}`, { file, offset });
    if (codec === CODEC_STORED) {
      if (body.length !== size) throw new TraceError(`stored events frame declares ${size} bytes but holds ${body.length}`, { file, offset });
      return body;
    }
    let out: Buffer;
    let used: number;
    try {
      // maxOutputLength must be at least 1; a declared 0 with any output fails the size check below.
      // `info` gives the engine, whose bytesWritten is the input the deflate stream took.
      const r = inflateRawSync(body, { maxOutputLength: Math.max(size, 1), info: true } as ZlibOptions) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
      out = r.buffer;
      used = r.engine.bytesWritten;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new TraceError(`deflated events frame inflates to more than the ${size} bytes it declares`, { file, offset });
      throw new TraceError(`corrupt deflated events frame (${clipForMessage(errorText(e), 80)})`, { file, offset });
    }
    if (out.length !== size) throw new TraceError(`deflated events frame inflates to ${out.length} bytes, not the ${size} it declares`, { file, offset });
    // zlib stops at the end of the deflate stream and ignores what follows: the writer writes nothing there
    if (used !== body.length) throw new TraceError(`deflated events frame has ${body.length - used} bytes after the end of its deflate stream`, { file, offset });
    return out;
  }

  /**
   * Check the payload's shape on its raw bytes (shape.ts), then decode it:
   * msgpackr only ever sees a payload whose every count, string length and
   * nesting level the shape has bounded.
   */
  private unpack(payload: Uint8Array, type: number, offset: number, shape: Shape, base = 0): unknown {
    try {
      checkShape(payload, shape);
    } catch (e) {
      if (!(e instanceof ShapeError)) throw e;
      throw this.shapeError(e, type, offset, base);
    }
    try {
      return unpackr.unpack(payload);
    } catch (e) {
      // the shape check accepted it, so this is msgpackr disagreeing about bytes: say so in the trace's terms
      throw new TraceError(`malformed ${FRAME_NAMES[type]} frame payload (${clipForMessage(errorText(e), 80)})`, { file: this.file, offset });
    }
  }

  private shapeError(e: ShapeError, type: number, offset: number, base: number): TraceError {
    const file = this.file;
    // a version 2 events payload is walked once decoded: the byte is one of the decoded list
    const at = this.version !== 1 && type === FRAME_EVENTS ? `at byte ${e.at} of the decoded list` : `at payload byte ${e.at}`;
    const index = type === FRAME_EVENTS && e.path.length > 0 ? base + (e.path[0] as number) : undefined;
    if (e.malformed) return new TraceError(`malformed ${FRAME_NAMES[type]} frame payload: ${e.problem} ${at}`, index === undefined ? { file, offset } : { file, offset, index });
    switch (type) {
      case FRAME_EVENTS: {
        if (index === undefined) return new TraceError(`events frame does not hold a list of event tuples: ${e.problem} ${at}`, { file, offset });
        const [, pos, sub] = e.path as number[];
        const inside = pos === undefined ? '' : sub === undefined ? ` (tuple value ${pos})` : ` (tuple value ${pos}, outcome value ${sub})`;
        return new TraceError(`malformed event tuple${inside}: ${e.problem}`, { file, offset, index });
      }
      case FRAME_END:
        return new TraceError(`end frame is not { events: <count> }: ${e.problem} ${at}`, { file, offset });
      default:
        return e.path.length > 0
          ? new TraceError(`${e.problem} ${at}`, { file, offset, field: pathName(e.path) })
          : new TraceError(`trace header is not a map: ${e.problem} ${at}`, { file, offset, field: 'header' });
    }
  }

  /** Handle one frame; the events of an events frame are appended to `sink`. */
  frame(type: number, length: number, crc: number, payload: Uint8Array, offset: number, sink: TraceEvent[]): void {
    const file = this.file;
    if (this.ended) throw new TraceError('data after the end frame', { file, offset });
    if (crc32(payload) !== crc) throw new TraceError(`checksum mismatch in ${FRAME_NAMES[type]} frame of ${length} bytes`, { file, offset });
    if (this.header === undefined) {
      if (type !== FRAME_HEADER) throw new TraceError(`the first frame is ${FRAME_NAMES[type]}, not the trace header`, { file, offset });
      try {
        this.header = validateHeader(this.unpack(payload, type, offset, HEADER_SHAPE));
      } catch (e) {
        throw e instanceof TraceError ? e.at({ file, offset }) : new TraceError('malformed trace header', { file, offset });
      }
      this.cfg = this.header.config;
      this.fast = tupleDecoder(this.cfg);
      return;
    }
    if (type === FRAME_HEADER) throw new TraceError('a second trace header frame', { file, offset });
    if (type === FRAME_END) {
      const v = this.unpack(payload, type, offset, END_SHAPE) as Record<string, unknown>;
      if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.keys(v).length !== 1 || typeof v.events !== 'number' || !Number.isSafeInteger(v.events))
        throw new TraceError('end frame is not { events: <count> }', { file, offset });
      if (v.events !== this.count) throw new TraceError(`end frame says ${v.events} events, but ${this.count} were read`, { file, offset });
      this.ended = true;
      return;
    }
    // events: inflate (version 2), then check the announced list length before msgpackr allocates the list
    const data = this.version === 1 ? payload : this.decompress(payload, offset);
    const n = msgpackListLength(data);
    if (n < 0) throw new TraceError('events frame does not hold a list', { file, offset });
    if (n > MAX_CHUNK_EVENTS) throw new TraceError(`events frame announces ${n} events, more than the bound of ${MAX_CHUNK_EVENTS}`, { file, offset });
    if (n * 2 > data.length) throw new TraceError(`events frame announces ${n} events in ${data.length} bytes`, { file, offset });
    const list = this.unpack(data, type, offset, EVENTS_SHAPE, this.count);
    if (!Array.isArray(list)) throw new TraceError('events frame does not hold a list', { file, offset });
    const cfg = this.cfg as WorldConfig;
    const fast = this.fast;
    const base = this.count;
    for (let i = 0; i < list.length; i++) sink.push(decodeTuple(fast, list[i], cfg, base + i, offset, file));
    this.count += list.length;
  }

  truncated(offset: number, detail: string): TraceWarning {
    if (this.header === undefined) throw new TraceError(`file ends before the trace header is complete (${detail === 'no end frame' ? 'no header frame' : detail})`, { file: this.file, offset });
    const w: TraceWarning = { offset, message: `truncated at offset ${offset}: ${this.count} complete events read (${detail})` };
    if (this.file !== undefined) w.file = this.file;
    return w;
  }
}

/**
 * Decode a whole binary trace held in memory. A cut-off file yields its
 * complete chunks and a warning; anything else wrong is a TraceError.
 */
export function decodeBinaryTrace(buf: Uint8Array, file?: string): { header: TraceHeader; events: TraceEvent[]; warnings: TraceWarning[]; version: BinaryVersion } {
  const size = buf.length;
  if (size < FILE_HEADER_SIZE) {
    // a cut inside the file header: say so when what is there matches it
    const magicPrefix = Array.prototype.every.call(buf.subarray(0, 4), (x: number, i: number) => x === MAGIC_BYTES[i]);
    throw new TraceError(magicPrefix ? `file ends before the trace header is complete (${size} bytes)` : `not an nvx binary trace (no '${BINARY_MAGIC}' magic)`, { file, offset: 0 });
  }
  const d = new FrameDecoder(file, checkFileHeader(buf, file));
  const events: TraceEvent[] = [];
  const warnings: TraceWarning[] = [];
  let pos = FILE_HEADER_SIZE;
  while (!d.ended) {
    if (pos === size) {
      warnings.push(d.truncated(pos, 'no end frame'));
      break;
    }
    const avail = Math.min(size - pos, FRAME_HEADER_SIZE);
    const head = parseFrameHead(buf, pos, avail, pos, size - pos - avail, file);
    if (head === undefined) {
      warnings.push(d.truncated(pos, cutDetail(buf, pos, avail, size - pos - avail)));
      break;
    }
    const start = pos + FRAME_HEADER_SIZE;
    d.frame(head.type, head.length, head.crc, buf.subarray(start, start + head.length), pos, events);
    pos = start + head.length;
  }
  if (d.ended && pos !== size) throw new TraceError(`${size - pos} bytes of data after the end frame`, { file, offset: pos });
  return { header: d.header as TraceHeader, events, warnings, version: d.version };
}

function cutDetail(b: Uint8Array, at: number, avail: number, payloadBytes: number): string {
  if (avail < FRAME_HEADER_SIZE) return `frame header cut after ${avail} of ${FRAME_HEADER_SIZE} bytes`;
  return `${FRAME_NAMES[b[at]]} frame cut after ${payloadBytes} of ${frameLength(b, at)} payload bytes`;
}

/** Encode a trace in memory. Events are validated against the header's configuration. */
export function encodeBinaryTrace(header: TraceHeader, events: Iterable<TraceEvent>, opts?: BinaryWriteOptions): Buffer {
  const per = chunkSize(opts);
  const version = versionOf(opts);
  const h = checkedHeader(header);
  const fast = tupleEncoder(h.config);
  const parts: Buffer[] = [fileHeaderBytes(version), ...headerFrame(h)];
  let pending: unknown[] = [];
  let count = 0;
  for (const e of events) {
    pending.push(encodeEvent(fast, e, h.config, count));
    count++;
    if (pending.length === per) {
      eventFrames(pending, count - pending.length, parts, version);
      pending = [];
    }
  }
  if (pending.length) eventFrames(pending, count - pending.length, parts, version);
  parts.push(...endFrame(count));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------
// Streaming writer
// ---------------------------------------------------------------------------

/**
 * Writes a binary trace chunk by chunk to a temporary file next to `path`
 * (atomic.ts) and renames it onto `path` in close(), so `path` only ever
 * holds a complete trace.
 */
export class BinaryTraceWriter {
  private out: AtomicFile | undefined;
  private pending: unknown[] = [];
  private n = 0;
  private readonly fast: (e: TraceEvent) => unknown[] | undefined;
  readonly tmpPath: string;

  private constructor(
    readonly path: string,
    private readonly header: TraceHeader,
    private readonly per: number,
    /** the format version this writer writes */
    readonly version: BinaryVersion,
  ) {
    this.fast = tupleEncoder(header.config);
    const out = AtomicFile.open(path);
    this.out = out;
    this.tmpPath = out.tmpPath;
    try {
      this.writeParts([fileHeaderBytes(version), ...headerFrame(header)]);
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  static open(path: string, header: TraceHeader, opts?: BinaryWriteOptions): BinaryTraceWriter {
    return new BinaryTraceWriter(path, checkedHeader(header), chunkSize(opts), versionOf(opts));
  }

  /** Events accepted so far. */
  get count(): number {
    return this.n;
  }

  /** Add an event; an invalid one is a TraceError and is not written. */
  write(e: TraceEvent): void {
    if (this.out === undefined) throw new TraceError('write after the trace writer was closed', { file: this.path });
    this.pending.push(encodeEvent(this.fast, e, this.header.config, this.n));
    this.n++;
    if (this.pending.length >= this.per) this.flush();
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    const parts: Buffer[] = [];
    eventFrames(this.pending, this.n - this.pending.length, parts, this.version);
    this.pending = [];
    this.writeParts(parts);
  }

  private writeParts(parts: Buffer[]): void {
    const out = this.out as AtomicFile;
    for (const p of parts) out.write(p);
  }

  /** Write the last chunk and the end frame, and move the file onto its final name. */
  close(): void {
    const out = this.out;
    if (out === undefined) throw new TraceError('the trace writer was already closed', { file: this.path });
    try {
      this.flush();
      this.writeParts(endFrame(this.n));
      this.out = undefined;
      out.commit();
    } catch (e) {
      this.out = out;
      this.abort();
      throw e;
    }
  }

  /** Drop the trace: close and remove the temporary file; the final name is never touched. */
  abort(): void {
    this.out?.abort();
    this.out = undefined;
    this.pending = [];
  }
}

// ---------------------------------------------------------------------------
// Streaming reader
// ---------------------------------------------------------------------------

/**
 * Reads a binary trace frame by frame through a file handle: memory stays
 * bounded by one frame whatever the file's size. `warnings` fills in as the
 * chunks are read (a cut-off file is only known at its end).
 */
export class BinaryTraceReader {
  readonly warnings: TraceWarning[] = [];
  private pos: number;
  private done = false;
  private started = false;
  private readonly head = Buffer.alloc(FRAME_HEADER_SIZE);

  private constructor(
    private fh: fs.promises.FileHandle | undefined,
    private readonly size: number,
    private readonly d: FrameDecoder,
  ) {
    this.pos = FILE_HEADER_SIZE;
  }

  /** The trace header (read and validated by open()). */
  get header(): TraceHeader {
    return this.d.header as TraceHeader;
  }

  /** The file's binary format version (1 or 2). */
  get binaryVersion(): BinaryVersion {
    return this.d.version;
  }

  static async open(path: string): Promise<BinaryTraceReader> {
    const fh = await openForReading(path);
    try {
      const size = (await fh.stat()).size;
      const fileHead = Buffer.alloc(FILE_HEADER_SIZE);
      const got = await readFully(fh, fileHead, 0, FILE_HEADER_SIZE, 0, path);
      if (got < FILE_HEADER_SIZE) decodeBinaryTrace(fileHead.subarray(0, got), path); // throws the same error as the in-memory decoder
      const version = checkFileHeader(fileHead, path);
      const r = new BinaryTraceReader(fh, size, new FrameDecoder(path, version));
      await r.nextFrame(); // the header frame; a cut or a missing header throws
      return r;
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
  }

  /**
   * Read the next frame. Returns its events (for an events frame), an empty
   * list for other frames, or undefined at the end of the trace.
   */
  private async nextFrame(): Promise<TraceEvent[] | undefined> {
    if (this.done) return undefined;
    const fh = this.fh;
    if (fh === undefined) throw new Error('trace reader is closed');
    const d = this.d;
    const pos = this.pos;
    const left = this.size - pos;
    if (d.ended) {
      this.done = true;
      if (left !== 0) throw new TraceError(`${left} bytes of data after the end frame`, { file: d.file, offset: pos });
      return undefined;
    }
    if (left === 0) return this.cut(d.truncated(pos, 'no end frame'));
    const got = await readFully(fh, this.head, 0, Math.min(left, FRAME_HEADER_SIZE), pos, d.file);
    const head = parseFrameHead(this.head, 0, got, pos, left - got, d.file);
    if (head === undefined) return this.cut(d.truncated(pos, cutDetail(this.head, 0, got, left - got)));
    const payload = Buffer.allocUnsafe(head.length);
    const pgot = await readFully(fh, payload, 0, head.length, pos + FRAME_HEADER_SIZE, d.file);
    if (pgot < head.length) return this.cut(d.truncated(pos, `${FRAME_NAMES[head.type]} frame cut after ${pgot} of ${head.length} payload bytes`));
    const events: TraceEvent[] = [];
    d.frame(head.type, head.length, head.crc, payload, pos, events);
    this.pos = pos + FRAME_HEADER_SIZE + head.length;
    return events;
  }

  private cut(w: TraceWarning): undefined {
    this.warnings.push(w);
    this.done = true;
    return undefined;
  }

  /** The events chunk by chunk (each chunk is one frame). Can be iterated once. */
  async *chunks(): AsyncIterable<TraceEvent[]> {
    if (this.started) throw new Error('trace reader can be iterated only once');
    this.started = true;
    for (;;) {
      const evs = await this.nextFrame();
      if (evs === undefined) return;
      if (evs.length) yield evs;
    }
  }

  /** The events one by one. */
  async *events(): AsyncIterable<TraceEvent> {
    for await (const chunk of this.chunks()) yield* chunk;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    this.done = true;
    if (fh !== undefined) await fh.close();
  }
}

/** Read up to len bytes at position; fewer only at the end of the file. An I/O error is a TraceError at that offset. */
async function readFully(fh: fs.promises.FileHandle, buf: Buffer, off: number, len: number, position: number, file: string | undefined): Promise<number> {
  let got = 0;
  while (got < len) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(buf, off + got, len - got, position + got));
    } catch (e) {
      throw new TraceError(`cannot read: ${(e as NodeJS.ErrnoException).code ?? errorText(e)}`, { file, offset: position + got });
    }
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}
