/**
 * Shape checks of msgpack payloads on their raw bytes, before msgpackr
 * builds any object.
 *
 * A frame of 16 MiB can hold 16 million one-byte empty maps, or nest lists
 * a million deep, or declare a provenance value that is a 16 MiB binary
 * blob: decoded blindly, that is gigabytes of objects or a blown stack
 * before the header or event validator sees the first wrong type. So every
 * payload is first walked here, against the shape its frame type allows
 * (derived from EVENT_SCHEMA and the header's keys): each value's type byte
 * is checked before its contents are looked at, element counts are bounded
 * by the shape, strings must be well-formed UTF-8 (msgpack strings are
 * UTF-8; anything else would silently come back as U+FFFD), map keys must be
 * strings and never a reserved object key. Only an accepted payload is handed
 * to msgpackr, and what it builds is then bounded by the shape: at most the
 * counts the shape allows, nesting no deeper than the shape.
 *
 * The walker recurses only where the shape has a container, so its depth is
 * that of the shape (three or four), whatever the input.
 */
import { isUtf8 } from 'buffer';
import { EVENT_KINDS, EVENT_SCHEMA } from './events';
import { LIMITS, defaultConfig } from './header';

/** What a payload value may be. A value of any other msgpack type is refused by its type byte. */
export interface Shape {
  /** nil, booleans, integers and floats */
  scalar?: boolean;
  /** strings, at most this many bytes */
  str?: number;
  /** binary blobs, at most this many bytes (they decode to one buffer of that size) */
  bin?: number;
  list?: { max: number; item: Shape };
  map?: MapShape;
}

export interface MapShape {
  max: number;
  /** the longest key, in bytes */
  keyBytes: number;
  /** the shape of the value under `key`; undefined: the key is not one this map may hold */
  value: (key: string) => Shape | undefined;
  /** what to call a key the map may not hold (default 'unknown key') */
  unknown?: string;
}

/** Keys that would reach an object's prototype machinery once decoded into a plain object. */
export const RESERVED_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** Why a payload was refused, and where in it (the path of keys and list positions from the top value). */
export class ShapeError extends Error {
  constructor(
    readonly problem: string,
    readonly path: readonly (string | number)[],
    /** byte offset in the payload of the value at fault */
    readonly at: number,
    /** the bytes are not msgpack at all (cut inside a value, a never-used byte), rather than a value of the wrong shape */
    readonly malformed = false,
  ) {
    super(problem);
    this.name = 'ShapeError';
  }
}

/** A path as a header field name: `config.memslots[2].gfn`. */
export function pathName(path: readonly (string | number)[]): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s === '' ? p : `.${p}`;
  return s;
}

/** A key or string value for a message: at most 40 characters, and its length when longer. */
export function clipForMessage(s: string, max = 40): string {
  const printable = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return printable.length > max ? `${JSON.stringify(printable.slice(0, max))}... (${s.length} characters)` : JSON.stringify(printable);
}

// ---------------------------------------------------------------- the walker

const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** The type of the value at `p`, in the trace's words (for messages). */
function describeAt(b: Uint8Array, p: number): string {
  const t = b[p];
  if (t <= 0x7f || t >= 0xe0 || (t >= 0xcc && t <= 0xd3)) return 'an integer';
  if (t >= 0x80 && t <= 0x8f) return `a map of ${plural(t & 0x0f, 'entry', 'entries')}`;
  if (t >= 0x90 && t <= 0x9f) return `a list of ${plural(t & 0x0f, 'element', 'elements')}`;
  if (t >= 0xa0 && t <= 0xbf) return `a string of ${plural(t & 0x1f, 'byte', 'bytes')}`;
  switch (t) {
    case 0xc0:
      return 'nil';
    case 0xc2:
    case 0xc3:
      return 'a boolean';
    case 0xca:
    case 0xcb:
      return 'a float';
    case 0xc4:
    case 0xc5:
    case 0xc6:
      return 'a binary blob';
    case 0xd9:
    case 0xda:
    case 0xdb:
      return 'a string';
    case 0xdc:
    case 0xdd:
      return 'a list';
    case 0xde:
    case 0xdf:
      return 'a map';
    case 0xc1:
      return 'the never-used byte 0xc1';
    default:
      return `an extension value (type byte 0x${t.toString(16)})`;
  }
}

function what(shape: Shape): string {
  const alts: string[] = [];
  if (shape.scalar) alts.push('a number', 'a boolean');
  if (shape.str !== undefined) alts.push('a string');
  if (shape.bin !== undefined) alts.push('a binary blob');
  if (shape.list) alts.push('a list');
  if (shape.map) alts.push('a map');
  return alts.length > 1 ? `${alts.slice(0, -1).join(', ')} or ${alts[alts.length - 1]}` : alts.join('');
}

class Walker {
  p = 0;
  readonly path: (string | number)[] = [];

  constructor(private readonly b: Uint8Array) {}

  fail(problem: string, at = this.p, malformed = false): never {
    throw new ShapeError(problem, this.path.slice(), at, malformed);
  }

  need(n: number): void {
    if (this.b.length - this.p < n) this.fail(`the payload ends inside a value (${n} more bytes wanted at byte ${this.p} of ${this.b.length})`, this.p, true);
  }

  u8(): number {
    this.need(1);
    return this.b[this.p++];
  }
  u16(): number {
    this.need(2);
    const b = this.b;
    const v = (b[this.p] << 8) | b[this.p + 1];
    this.p += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const b = this.b;
    const v = b[this.p] * 0x1000000 + ((b[this.p + 1] << 16) | (b[this.p + 2] << 8) | b[this.p + 3]);
    this.p += 4;
    return v;
  }

  /** Skip `n` bytes of a value's contents (checked against what is left before anything else). */
  skip(n: number): void {
    this.need(n);
    this.p += n;
  }

  /** Read a string's bytes after its header; checks the bound, then UTF-8. Returns the start offset. */
  strBody(n: number, max: number, start: number): number {
    if (n > max) this.fail(`a string of ${n} bytes, longer than the ${max} allowed here`, start);
    const s = this.p;
    this.skip(n);
    if (!isUtf8(this.b.subarray(s, s + n))) this.fail(`a string of ${n} bytes that is not valid UTF-8`, start);
    return s;
  }

  value(shape: Shape): void {
    const start = this.p;
    const t = this.u8();
    // positive and negative fixint, nil, booleans
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) return this.scalar(shape, start);
    if (t >= 0xa0 && t <= 0xbf) return this.str(shape, t & 0x1f, start);
    if (t >= 0x90 && t <= 0x9f) return this.list(shape, t & 0x0f, start);
    if (t >= 0x80 && t <= 0x8f) return this.map(shape, t & 0x0f, start);
    switch (t) {
      case 0xcc:
      case 0xd0:
        this.scalar(shape, start);
        return this.skip(1);
      case 0xcd:
      case 0xd1:
        this.scalar(shape, start);
        return this.skip(2);
      case 0xca:
      case 0xce:
      case 0xd2:
        this.scalar(shape, start);
        return this.skip(4);
      case 0xcb:
      case 0xcf:
      case 0xd3:
        this.scalar(shape, start);
        return this.skip(8);
      case 0xd9:
        return this.str(shape, this.u8(), start);
      case 0xda:
        return this.str(shape, this.u16(), start);
      case 0xdb:
        return this.str(shape, this.u32(), start);
      case 0xdc:
        return this.list(shape, this.u16(), start);
      case 0xdd:
        return this.list(shape, this.u32(), start);
      case 0xde:
        return this.map(shape, this.u16(), start);
      case 0xdf:
        return this.map(shape, this.u32(), start);
      case 0xc4:
        return this.bin(shape, this.u8(), start);
      case 0xc5:
        return this.bin(shape, this.u16(), start);
      case 0xc6:
        return this.bin(shape, this.u32(), start);
      case 0xc1:
        return this.fail('the byte 0xc1, which is not valid msgpack', start, true);
      default:
        // extension values (0xc7-0xc9, 0xd4-0xd8): no trace value is one
        return this.fail(`${describeAt(this.b, start)}, not ${what(shape)}`, start);
    }
  }

  scalar(shape: Shape, start: number): void {
    if (!shape.scalar) this.fail(`${describeAt(this.b, start)}, not ${what(shape)}`, start);
  }

  str(shape: Shape, n: number, start: number): void {
    if (shape.str === undefined) this.fail(`a string of ${plural(n, 'byte', 'bytes')}, not ${what(shape)}`, start);
    this.strBody(n, shape.str, start);
  }

  bin(shape: Shape, n: number, start: number): void {
    if (shape.bin === undefined) this.fail(`a binary blob of ${plural(n, 'byte', 'bytes')}, not ${what(shape)}`, start);
    if (n > shape.bin) this.fail(`a binary blob of ${n} bytes, longer than the ${shape.bin} allowed here`, start);
    this.skip(n);
  }

  list(shape: Shape, n: number, start: number): void {
    const ls = shape.list;
    if (ls === undefined) this.fail(`a list of ${plural(n, 'element', 'elements')}, not ${what(shape)}`, start);
    this.listBody(ls, n, start);
  }

  listBody(ls: { max: number; item: Shape }, n: number, start: number): void {
    if (n > ls.max) this.fail(`a list of ${n} elements, more than the ${ls.max} allowed here`, start);
    // every element takes at least one byte: a count beyond the bytes left is a lie, refused before the walk
    if (n > this.b.length - this.p) this.fail(`a list of ${n} elements in the ${this.b.length - this.p} bytes left`, start);
    const path = this.path;
    const item = ls.item;
    const b = this.b;
    const end = b.length;
    path.push(0);
    for (let i = 0; i < n; i++) {
      // the common case inline (event tuples are mostly small integers): one type byte, nothing to check but the bounds
      if (item.scalar && this.p < end) {
        const t = b[this.p];
        if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) {
          this.p++;
          continue;
        }
        const w = t === 0xcc ? 2 : t === 0xcd ? 3 : t === 0xce ? 5 : t === 0xcf ? 9 : 0;
        if (w !== 0 && this.p + w <= end) {
          this.p += w;
          continue;
        }
      }
      path[path.length - 1] = i;
      const sub = item.list;
      if (sub !== undefined && this.p < end && (b[this.p] & 0xf0) === 0x90 && (b[this.p] & 0x0f) <= sub.max) {
        // a short list (an event tuple): straight into its loop, without the dispatch of value()
        const m = b[this.p++] & 0x0f;
        this.listBody(sub, m, this.p - 1);
        continue;
      }
      this.value(item);
    }
    path.pop();
  }

  map(shape: Shape, n: number, start: number): void {
    const ms = shape.map;
    if (ms === undefined) this.fail(`a map of ${plural(n, 'entry', 'entries')}, not ${what(shape)}`, start);
    if (n > ms.max) this.fail(`a map of ${n} entries, more than the ${ms.max} allowed here`, start);
    if (n * 2 > this.b.length - this.p) this.fail(`a map of ${n} entries in the ${this.b.length - this.p} bytes left`, start);
    const seen = new Set<string>();
    const path = this.path;
    for (let i = 0; i < n; i++) {
      const key = this.key(ms.keyBytes);
      if (RESERVED_KEYS.has(key)) this.fail(`the reserved key ${clipForMessage(key)}`);
      if (seen.has(key)) this.fail(`the key ${clipForMessage(key)} twice`);
      seen.add(key);
      const vs = ms.value(key);
      path.push(key);
      if (vs === undefined) this.fail(ms.unknown ?? 'unknown key');
      this.value(vs);
      path.pop();
    }
  }

  key(maxBytes: number): string {
    const start = this.p;
    const t = this.u8();
    let n: number;
    if (t >= 0xa0 && t <= 0xbf) n = t & 0x1f;
    else if (t === 0xd9) n = this.u8();
    else if (t === 0xda) n = this.u16();
    else if (t === 0xdb) n = this.u32();
    else return this.fail(`a map key that is ${describeAt(this.b, start)}, not a string`, start);
    const s = this.strBody(n, maxBytes, start);
    return Buffer.from(this.b.buffer, this.b.byteOffset + s, n).toString('utf8');
  }
}

/**
 * Check that `payload` is exactly one msgpack value of the given shape.
 * Throws ShapeError (never anything else) naming the problem and where.
 */
export function checkShape(payload: Uint8Array, shape: Shape): void {
  const w = new Walker(payload);
  if (payload.length === 0) w.fail('an empty payload', 0, true);
  w.value(shape);
  if (w.p !== payload.length) w.fail(`${payload.length - w.p} bytes after the value`, w.p, true);
}

// ---------------------------------------------------------------- the shapes of the three frames

const SCALAR: Shape = { scalar: true };

/** The longest event tuple: the code, every field of the widest kind, and an expect outcome. */
export const MAX_TUPLE_LENGTH = 2 + Math.max(...EVENT_KINDS.map((k) => EVENT_SCHEMA[k].fields.length));
/**
 * The longest list inside an event tuple. Today that is an outcome tuple
 * (at most five values); the bound leaves room for list-valued fields a
 * later schema may add, while keeping what a frame decodes to proportional
 * to it (the values of such a list are never containers).
 */
const MAX_INNER_LIST = 4096;

/**
 * An events payload: a list of event tuples, each a list of values (numbers,
 * booleans, strings, blobs) and lists of such values (the outcome tuple).
 * Strings and blobs are allowed wherever a value is, bounded by the frame,
 * so that the validator, which knows each field's type, names the field
 * that holds a wrong one; maps, extension values and deeper lists are
 * refused here.
 */
export function eventsShape(maxEvents: number, maxStr: number): Shape {
  const leaf: Shape = { scalar: true, str: maxStr, bin: maxStr };
  const value: Shape = { ...leaf, list: { max: MAX_INNER_LIST, item: leaf } };
  return { list: { max: maxEvents, item: { ...leaf, list: { max: MAX_TUPLE_LENGTH, item: value } } } };
}

/** The end frame: `{ events: <count> }`. */
export const END_SHAPE: Shape = { map: { max: 1, keyBytes: 16, value: (k) => (k === 'events' ? SCALAR : undefined) } };

const MEMSLOT_KEYS = new Set(['slot', 'gfn', 'npages', 'flags']);
const MEMSLOT: Shape = { map: { max: MEMSLOT_KEYS.size, keyBytes: 16, value: (k) => (MEMSLOT_KEYS.has(k) ? SCALAR : undefined) } };
// a wrong-typed value is left to validateHeader to name (it says which type it wants), as long as it is small
const CONFIG_VALUE: Shape = { scalar: true, str: 64 };
/** UTF-8 bytes of the longest provenance string (at most 3 bytes per UTF-16 code unit). */
const PROVENANCE_BYTES = 3 * LIMITS.maxProvenanceValue;
/**
 * A key this nvx does not know (a newer header, a misspelling): small and
 * shallow, so that validateHeader can name it without it costing anything.
 */
const LEAF: Shape = { scalar: true, str: PROVENANCE_BYTES };
const INNER: Shape = { ...LEAF, list: { max: 256, item: LEAF }, map: { max: 256, keyBytes: 256, value: () => LEAF } };
const UNKNOWN: Shape = { ...LEAF, list: { max: 1024, item: INNER }, map: { max: 1024, keyBytes: 256, value: () => INNER } };

/** The shape of each configuration key, from the type of its default value. */
function configValueShape(key: string): Shape {
  if (key === 'memslots') return { list: { max: LIMITS.maxMemslots, item: MEMSLOT } };
  const d = (defaultConfig() as unknown as Record<string, unknown>)[key];
  return d === undefined || typeof d === 'object' ? UNKNOWN : CONFIG_VALUE;
}
const CONFIG_SHAPES = new Map(Object.keys(defaultConfig()).map((k) => [k, configValueShape(k)]));

/** The header frame: the keys validateHeader knows, each with the type it wants. */
export const HEADER_SHAPE: Shape = {
  map: {
    max: 16,
    keyBytes: 256,
    value: (k) => {
      switch (k) {
        case 'version':
          return SCALAR;
        case 'config':
          return { map: { max: 256, keyBytes: 256, value: (ck) => CONFIG_SHAPES.get(ck) ?? UNKNOWN } };
        case 'provenance':
          return { map: { max: LIMITS.maxProvenanceEntries, keyBytes: PROVENANCE_BYTES, value: () => ({ str: PROVENANCE_BYTES }) } };
        default:
          return UNKNOWN;
      }
    },
  },
};
