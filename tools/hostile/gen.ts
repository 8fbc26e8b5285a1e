/**
 * Hostile inputs for both trace readers, generated from a seed: valid
 * traces taken apart the way an attacker would (mutated, cut, with lengths
 * that lie, values of the wrong type, huge values, deep nesting), each
 * tagged with its class so that a failure says what kind of input found it.
 *
 * Binary mutations fix up the frame checksum where it matters, so they
 * reach the payload decoder instead of stopping at "checksum mismatch".
 */
import * as fs from 'fs';
import * as path from 'path';
import { crc32, deflateRawSync } from 'zlib';
import { Packr } from 'msgpackr';
import {
  EVENT_KINDS,
  EVENT_SCHEMA,
  FieldType,
  TraceEvent,
  TraceHeader,
  encodeBinaryTrace,
  formatTextTrace,
  headerToPlain,
  makeHeader,
  parseTextTrace,
} from '@nvx/trace';

// ---------------------------------------------------------------- seeded randomness

/** A small seeded generator (mulberry32): the same seed, the same inputs. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** A size, mostly small, sometimes large: log-uniform in 0..max. */
  size(max: number): number {
    return Math.min(max, Math.floor(Math.exp(this.next() * Math.log(max + 1))) - 1 + this.int(2));
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

export interface HostileInput {
  /** the class of mutation (for the report) */
  cls: string;
  bytes: Buffer;
}

export interface GenOptions {
  /** the largest input an in-process run builds (bombs bigger than this go through the CLI sample only) */
  maxBytes: number;
}

// ---------------------------------------------------------------- base traces

const packr = new Packr({ useRecords: false, int64AsType: 'bigint' });
const pk = (v: unknown): Buffer => Buffer.from(packr.pack(v));

function randomValue(rng: Rng, type: FieldType, vcpus: number): unknown {
  switch (type) {
    case 'vcpu':
      return rng.int(vcpus);
    case 'cpu':
      return 0;
    case 'u8':
      return rng.int(256);
    case 'u16':
      return rng.int(0x10000);
    case 'u32':
    case 'field':
    case 'msr':
      return rng.int(0x100000000);
    case 'u64':
      return rng.chance(0.5) ? BigInt(rng.int(0x100000000)) : (BigInt(rng.int(0x100000000)) << 32n) | BigInt(rng.int(0x100000000));
    case 'bool':
      return rng.chance(0.5);
    case 'cpl':
      return rng.int(4);
    case 'access':
      return rng.chance(0.5) ? 'read' : 'write';
    case 'size':
      return rng.pick([1, 2, 4, 8]);
  }
}

/** A valid random trace: every event kind can appear, with and without expect clauses. */
export function syntheticTrace(rng: Rng): { header: TraceHeader; events: TraceEvent[] } {
  const vcpus = 1 + rng.int(3);
  const header = makeHeader({ vcpus }, { generator: 'hostile', seed: String(rng.int(1e9)), note: rng.pick(['', 'a b', 'ünïcödé 🙂', 'x'.repeat(rng.int(200))]) });
  const n = rng.size(300);
  const events: TraceEvent[] = [];
  for (let i = 0; i < n; i++) {
    const kind = rng.pick(EVENT_KINDS);
    const e: Record<string, unknown> = { kind };
    for (const [name, type] of EVENT_SCHEMA[kind].fields) e[name] = randomValue(rng, type, vcpus);
    if (rng.chance(0.3))
      e.expect = rng.pick([
        { k: 'ok' },
        { k: 'value', value: BigInt(rng.int(1000)) },
        { k: 'exit', reason: 31, qual: 0n },
        { k: 'ignored', why: rng.pick(['why', 'no "memslot"', 'ü\n\t']) },
        { k: 'cpuid', eax: 1, ebx: 2, ecx: 3, edx: 4 },
      ]);
    events.push(e as unknown as TraceEvent);
  }
  return { header, events };
}

let corpus: { header: TraceHeader; events: TraceEvent[] }[] | undefined;

/** The project's scenario traces (valid, hand-written) as further bases. */
function scenarioTraces(): { header: TraceHeader; events: TraceEvent[] }[] {
  if (corpus) return corpus;
  const dir = path.join(__dirname, '..', '..', 'traces', 'scenarios');
  corpus = [];
  for (const f of fs.readdirSync(dir).sort()) {
    if (!f.endsWith('.nvx')) continue;
    try {
      corpus.push(parseTextTrace(fs.readFileSync(path.join(dir, f), 'utf8'), f));
    } catch {
      /* a scenario another change broke is not this campaign's business */
    }
  }
  return corpus;
}

function baseTrace(rng: Rng): { header: TraceHeader; events: TraceEvent[] } {
  const s = scenarioTraces();
  return s.length && rng.chance(0.4) ? rng.pick(s) : syntheticTrace(rng);
}

// ---------------------------------------------------------------- binary

const FILE_HEADER = 8;
const FRAME_HEAD = 9;

interface Frame {
  at: number;
  type: number;
  length: number;
}

function framesOf(b: Buffer): Frame[] {
  const out: Frame[] = [];
  let p = FILE_HEADER;
  while (p + FRAME_HEAD <= b.length) {
    const length = b.readUInt32LE(p + 1);
    out.push({ at: p, type: b[p], length });
    p += FRAME_HEAD + length;
  }
  return out;
}

function frame(type: number, payload: Buffer, crcOk = true): Buffer {
  const h = Buffer.alloc(FRAME_HEAD);
  h[0] = type;
  h.writeUInt32LE(payload.length, 1);
  h.writeUInt32LE(crcOk ? crc32(payload) : crc32(payload) ^ 1, 5);
  return Buffer.concat([h, payload]);
}

/**
 * An events frame payload holding `list` (msgpack) in the given format
 * version: as it is in version 1; in version 2 stored or deflated behind a
 * codec byte and the true decoded size, so that the list reaches the shape
 * walk and the event decoder.
 */
function eventsPayload(rng: Rng, version: number, list: Buffer): Buffer {
  if (version === 1) return list;
  const deflate = rng.chance(0.6);
  const body = deflate ? deflateRawSync(list, { level: 1 }) : list;
  const p = Buffer.alloc(5);
  p[0] = deflate ? 1 : 0;
  p.writeUInt32LE(list.length, 1);
  return Buffer.concat([p, body]);
}

let zeros: Buffer | undefined;
/** 32 MiB of zeros deflated (about 32 KiB), made once: twice what a chunk may declare. */
function deflatedZeros(): Buffer {
  return (zeros ??= deflateRawSync(Buffer.alloc(32 * 1024 * 1024), { level: 9 }));
}

/** A version 2 events payload whose codec byte, declared size or deflate stream is hostile. */
function hostileCompressed(rng: Rng, payload: Buffer, max: number): Buffer {
  const head = (codec: number, size: number) => {
    const h = Buffer.alloc(5);
    h[0] = codec;
    h.writeUInt32LE(size >>> 0, 1);
    return h;
  };
  const size = payload.length >= 5 ? payload.readUInt32LE(1) : 0;
  const body = payload.subarray(5);
  switch (rng.int(10)) {
    case 9: // bytes after the end of the deflate stream
      return Buffer.concat([payload, rng.bytes(1 + rng.int(16))]);
    case 0: // a bomb: inflates to far more than it declares (or than any chunk may hold)
      return Buffer.concat([head(1, rng.pick([0, 1, size, 1 << 20, 16 * 1024 * 1024, 16 * 1024 * 1024 + 1, 0xffffffff])), deflatedZeros()]);
    case 1: // a msgpack bomb, deflated, declared truthfully: it reaches the shape walk after inflating
    {
      const list = bombPayload(rng, Math.min(max * 4, 16 * 1024 * 1024 - 8));
      return Buffer.concat([head(1, list.length), deflateRawSync(list, { level: 1 })]);
    }
    case 2: // the declared size lies
      return Buffer.concat([head(payload[0] ?? 1, rng.pick([0, 1, size - 1, size + 1, 2 * size, rng.int(0x100000000)])), body]);
    case 3: // the deflate stream cut short
      return payload.subarray(0, 5 + rng.int(Math.max(1, body.length)));
    case 4: // bytes of the deflate stream flipped
    {
      const p = Buffer.from(payload);
      if (p.length > 5) for (let k = 1 + rng.int(4); k > 0; k--) p[5 + rng.int(p.length - 5)] = rng.int(256);
      return p;
    }
    case 5: // an unknown codec, or stored and deflated swapped
      return Buffer.concat([head(rng.pick([2, 3, 0x78, 0xff, payload[0] === 1 ? 0 : 1]), size), body]);
    case 6: // shorter than the prefix
      return payload.subarray(0, rng.int(5));
    case 7: // random bytes as the deflate stream
      return Buffer.concat([head(1, rng.size(1 << 20)), rng.bytes(rng.size(4096))]);
    default: // hostile event tuples, deflated
      return eventsPayload(rng, 2, hostileEvents(rng, max));
  }
}

/** Replace frame `f`'s payload (and fix its length and checksum). */
function withPayload(b: Buffer, f: Frame, payload: Buffer): Buffer {
  return Buffer.concat([b.subarray(0, f.at), frame(f.type, payload), b.subarray(f.at + FRAME_HEAD + f.length)]);
}

// -- msgpack pieces, written by hand so that they can lie

function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
const listHead = (n: number) => (n < 16 ? Buffer.from([0x90 | n]) : n < 0x10000 ? Buffer.from([0xdc, n >> 8, n & 0xff]) : Buffer.concat([Buffer.from([0xdd]), u32be(n)]));
const mapHead = (n: number) => (n < 16 ? Buffer.from([0x80 | n]) : n < 0x10000 ? Buffer.from([0xde, n >> 8, n & 0xff]) : Buffer.concat([Buffer.from([0xdf]), u32be(n)]));
const str = (s: string) => pk(s);

/** A random msgpack value of any type, nesting a few levels. */
function randomMsgpack(rng: Rng, depth: number): Buffer {
  const r = rng.int(depth > 4 ? 10 : 14);
  switch (r) {
    case 0:
      return Buffer.from([0xc0]);
    case 1:
      return Buffer.from([rng.pick([0xc2, 0xc3, 0xc1])]);
    case 2:
      return pk(rng.int(300) - 40);
    case 3:
      return pk(rng.pick([0xffffffffffffffffn, -1n, 1n << 63n, -(1n << 63n), 2n ** 40n]));
    case 4:
      return pk(rng.pick([NaN, Infinity, -Infinity, 1.5, -0, 1e300]));
    case 5:
      return str(rng.pick(['', 'read', 'write', '__proto__', 'constructor', 'toString', 'ü', '\u0000', 'x'.repeat(rng.size(5000))]));
    case 6:
      return Buffer.concat([Buffer.from([0xc4, 3]), rng.bytes(3)]);
    case 7:
      return Buffer.concat([Buffer.from([rng.pick([0xd4, 0xd5, 0xd6, 0xd7, 0xd8])]), Buffer.from([rng.int(256) - 128 & 0xff]), rng.bytes(16)]).subarray(0, 2 + rng.pick([1, 2, 4, 8, 16]));
    case 8:
      return Buffer.concat([Buffer.from([0xd9, 4]), Buffer.from([0xed, 0xa0, 0x80, 0x41])]); // a surrogate in UTF-8 form: not UTF-8
    case 9:
      return Buffer.concat([Buffer.from([0xa2]), Buffer.from([0xff, 0xfe])]);
    case 10:
    case 11: {
      const n = rng.size(8);
      return Buffer.concat([listHead(n), ...Array.from({ length: n }, () => randomMsgpack(rng, depth + 1))]);
    }
    default: {
      const n = rng.size(6);
      const parts: Buffer[] = [mapHead(n)];
      for (let i = 0; i < n; i++) parts.push(rng.chance(0.9) ? str(rng.pick(['version', 'config', 'provenance', 'events', 'vcpus', 'memslots', 'slot', 'gfn', 'npages', 'flags', '__proto__', 'constructor', 'toString', 'valueOf', 'x'])) : randomMsgpack(rng, depth + 1), randomMsgpack(rng, depth + 1));
      return Buffer.concat(parts);
    }
  }
}

/** Payload bombs: small on disk, huge or deep once decoded naively. */
function bombPayload(rng: Rng, max: number): Buffer {
  const n = Math.max(1, Math.min(max - 8, rng.size(max)));
  switch (rng.int(9)) {
    case 0: // a list of empty maps
      return Buffer.concat([listHead(n), Buffer.alloc(n, 0x80)]);
    case 1: // a list of empty lists
      return Buffer.concat([listHead(n), Buffer.alloc(n, 0x90)]);
    case 2: // lists nested n deep
      return Buffer.concat([Buffer.alloc(n, 0x91), Buffer.from([0xc0])]);
    case 3: // maps nested n/3 deep
      return Buffer.concat([Buffer.alloc(3 * Math.max(1, Math.floor(n / 3)), Buffer.from([0x81, 0xa1, 0x61])), Buffer.from([0xc0])]);
    case 4: // a count that lies
      return Buffer.concat([Buffer.from([rng.pick([0xdd, 0xdf, 0xdb, 0xc6])]), u32be(rng.pick([0xffffffff, 0x7fffffff, n * 4])), Buffer.alloc(Math.min(n, 64))]);
    case 5: // a binary blob
      return Buffer.concat([Buffer.from([0xc6]), u32be(n), Buffer.alloc(n, 0x41)]);
    case 6: // a long string
      return Buffer.concat([Buffer.from([0xdb]), u32be(n), Buffer.alloc(n, 0x61)]);
    case 7: // a list of one-byte strings
      return Buffer.concat([listHead(n), Buffer.alloc(n, 0xa0)]);
    default: // a map with n keys
      return Buffer.concat([mapHead(Math.floor(n / 3)), Buffer.alloc(3 * Math.floor(n / 3), Buffer.from([0xa1, 0x61, 0xc0]))]);
  }
}

/** A header frame payload whose fields have hostile types or sizes. */
function hostileHeader(rng: Rng, max: number): Buffer {
  const good = headerToPlain(makeHeader()) as Record<string, unknown>;
  const bomb = () => bombPayload(rng, Math.min(max, 1 << 20));
  const entries: [string, Buffer][] = [
    ['version', pk(1)],
    ['config', pk(good.config)],
    ['provenance', pk({})],
  ];
  const i = rng.int(3);
  switch (rng.int(7)) {
    case 0:
      entries[i][1] = bomb();
      break;
    case 1:
      entries[i][1] = randomMsgpack(rng, 0);
      break;
    case 2: // config with a hostile value
      entries[1][1] = Buffer.concat([mapHead(1), str(rng.pick(['vcpus', 'memslots', 'evmcs', 'pcpus', '__proto__', 'x'.repeat(300)])), rng.chance(0.5) ? bomb() : randomMsgpack(rng, 1)]);
      break;
    case 3: // memslots: many, or hostile ones
      entries[1][1] = Buffer.concat([mapHead(1), str('memslots'), listHead(rng.pick([1, 600, 100000])), ...Array.from({ length: rng.int(4) }, () => randomMsgpack(rng, 2))]);
      break;
    case 4: // provenance: many entries, long keys, reserved keys, non-strings
      entries[2][1] = Buffer.concat([
        mapHead(rng.pick([1, 2, 65, 70000])),
        ...Array.from({ length: 2 }, () => Buffer.concat([str(rng.pick(['__proto__', 'constructor', 'k', 'x'.repeat(rng.size(20000))])), rng.chance(0.5) ? str('v'.repeat(rng.size(20000))) : randomMsgpack(rng, 2)])),
      ]);
      break;
    case 5: // duplicate and unknown top-level keys
      entries.push([rng.pick(['version', 'config', 'colour', '__proto__']), randomMsgpack(rng, 1)]);
      break;
    default:
      entries[0][1] = pk(rng.pick([0, 2, 99999, -1, 1.5, 'one', 0xffffffffffffffffn]));
  }
  return Buffer.concat([mapHead(entries.length), ...entries.flatMap(([k, v]) => [str(k), v])]);
}

/** An events payload of hostile tuples. */
function hostileEvents(rng: Rng, max: number): Buffer {
  const n = 1 + rng.int(6);
  const tuples: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const kind = rng.pick(EVENT_KINDS);
    const def = EVENT_SCHEMA[kind];
    const len = def.fields.length + 1 + (rng.chance(0.3) ? 1 : 0) + (rng.chance(0.1) ? rng.int(3) - 1 : 0);
    const parts: Buffer[] = [listHead(Math.max(0, len))];
    for (let j = 0; j < len; j++) {
      if (j === 0) parts.push(pk(rng.chance(0.9) ? def.code : rng.pick([0, 9999, -1, 'l1.vmxon', 1.5])));
      else if (j === def.fields.length + 1) parts.push(rng.chance(0.5) ? pk([rng.int(12), ...Array.from({ length: rng.int(5) }, () => rng.pick<unknown>([0, null, 'why', 0xffffffffffffffffn, -1, [1]]))]) : randomMsgpack(rng, 2));
      else parts.push(rng.chance(0.7) ? pk(0) : rng.chance(0.3) ? bombPayload(rng, Math.min(max, 1 << 16)) : randomMsgpack(rng, 2));
    }
    tuples.push(Buffer.concat(parts));
  }
  return Buffer.concat([listHead(tuples.length), ...tuples]);
}

const BINARY_CLASSES = ['flip', 'flip-crc', 'truncate', 'frame-length', 'frame-order', 'file-header', 'bomb', 'header-shape', 'events-shape', 'end-shape', 'random-msgpack', 'splice', 'compressed'] as const;

/**
 * Full-size bombs in format version 2: a deflated chunk that inflates to
 * 32 MiB while declaring the 16 MiB bound, and msgpack bombs of nearly
 * 16 MiB deflated to a few KiB, declared truthfully, so the decoder inflates
 * them whole and then walks them.
 */
function cliBombsV2(n: number, vmxon: number): HostileInput[] {
  const good = encodeBinaryTrace(makeHeader(), [], { version: 2 });
  const fr = framesOf(good);
  const prefix = (codec: number, size: number) => {
    const h = Buffer.alloc(5);
    h[0] = codec;
    h.writeUInt32LE(size, 1);
    return h;
  };
  const events = (list: Buffer, count = 0) =>
    Buffer.concat([good.subarray(0, fr[1].at), frame(2, Buffer.concat([prefix(1, list.length), deflateRawSync(list, { level: 9 })])), frame(3, pk({ events: count }))]);
  return [
    { cls: 'cli/v2-inflate-bomb', bytes: Buffer.concat([good.subarray(0, fr[1].at), frame(2, Buffer.concat([prefix(1, 16 * 1024 * 1024), deflatedZeros()])), frame(3, pk({ events: 0 }))]) },
    { cls: 'cli/v2-deflated-empty-maps', bytes: events(Buffer.concat([listHead(n), Buffer.alloc(n, 0x80)])) },
    { cls: 'cli/v2-deflated-tuples-of-empty-maps', bytes: events(Buffer.concat([listHead(65536), Buffer.alloc(65536 * 3, Buffer.from([0x92, vmxon, 0x80]))])) },
    { cls: 'cli/v2-deflated-deep-lists', bytes: events(Buffer.concat([Buffer.from([0x91]), Buffer.alloc(n, 0x91), Buffer.from([0xc0])])) },
  ];
}

/** One hostile binary trace: format version 1 or 2 (compressed chunks), taken apart. */
export function binaryInput(rng: Rng, opts: GenOptions): HostileInput {
  const base = baseTrace(rng);
  const cls = rng.pick(BINARY_CLASSES);
  const version = cls === 'compressed' || rng.chance(0.5) ? 2 : 1;
  let b: Buffer = encodeBinaryTrace(base.header, base.events, { chunkEvents: 1 + rng.size(200), version });
  const fr = framesOf(b);
  const anyFrame = () => rng.pick(fr);
  const ofType = (t: number) => fr.find((f) => f.type === t) ?? fr[0];
  switch (cls) {
    case 'flip': {
      b = Buffer.from(b);
      for (let k = 1 + rng.int(4); k > 0; k--) b[rng.int(b.length)] = rng.int(256);
      break;
    }
    case 'flip-crc': {
      const f = anyFrame();
      const p = Buffer.from(b.subarray(f.at + FRAME_HEAD, f.at + FRAME_HEAD + f.length));
      if (p.length) for (let k = 1 + rng.int(3); k > 0; k--) p[rng.int(p.length)] = rng.chance(0.5) ? rng.int(256) : rng.pick([0xc1, 0xdd, 0xdf, 0xdb, 0xc6, 0x91, 0x80, 0xff, 0xcf, 0xd3]);
      b = withPayload(b, f, p);
      break;
    }
    case 'truncate':
      b = b.subarray(0, rng.int(b.length));
      break;
    case 'frame-length': {
      const f = anyFrame();
      b = Buffer.from(b);
      b.writeUInt32LE(rng.pick([0, 1, f.length - 1, f.length + 1, 16 * 1024 * 1024, 16 * 1024 * 1024 + 1, 0xffffffff, rng.int(0x100000000)]) >>> 0, f.at + 1);
      break;
    }
    case 'frame-order': {
      const parts = fr.map((f) => b.subarray(f.at, f.at + FRAME_HEAD + f.length));
      const op = rng.int(4);
      if (op === 0 && parts.length > 1) parts.splice(rng.int(parts.length), 1);
      else if (op === 1) parts.splice(rng.int(parts.length + 1), 0, rng.pick(parts));
      else if (op === 2) parts.reverse();
      else parts.splice(rng.int(parts.length), 1, frame(rng.pick([0, 1, 2, 3, 4, 255]), rng.pick(parts).subarray(FRAME_HEAD)));
      b = Buffer.concat([b.subarray(0, FILE_HEADER), ...parts, rng.chance(0.2) ? rng.bytes(rng.int(12)) : Buffer.alloc(0)]);
      break;
    }
    case 'file-header': {
      b = Buffer.from(b);
      const at = rng.int(8);
      b[at] = rng.int(256);
      if (rng.chance(0.3)) b = b.subarray(0, rng.int(9));
      break;
    }
    case 'bomb': {
      const f = rng.chance(0.5) ? ofType(1) : ofType(2);
      const bomb = bombPayload(rng, opts.maxBytes);
      b = withPayload(b, f, f.type === 2 ? eventsPayload(rng, version, bomb) : bomb);
      break;
    }
    case 'header-shape':
      b = withPayload(b, ofType(1), hostileHeader(rng, opts.maxBytes));
      break;
    case 'events-shape': {
      const f = fr.find((x) => x.type === 2) ?? ofType(3);
      const list = hostileEvents(rng, opts.maxBytes);
      b = withPayload(b, f, f.type === 2 ? eventsPayload(rng, version, list) : list);
      break;
    }
    case 'end-shape':
      b = withPayload(b, ofType(3), rng.chance(0.5) ? pk({ events: rng.pick<unknown>([-1, 1.5, 'x', 0xffffffffffffffffn, 2 ** 53, [1], null]) }) : randomMsgpack(rng, 0));
      break;
    case 'random-msgpack': {
      const f = anyFrame();
      const m = randomMsgpack(rng, 0);
      b = withPayload(b, f, f.type === 2 && rng.chance(0.8) ? eventsPayload(rng, version, m) : m);
      break;
    }
    case 'compressed': {
      const f = fr.find((x) => x.type === 2 && rng.chance(0.5)) ?? fr.find((x) => x.type === 2);
      if (f === undefined) {
        // no events: add a chunk
        const end = ofType(3);
        b = Buffer.concat([b.subarray(0, end.at), frame(2, hostileCompressed(rng, eventsPayload(rng, 2, listHead(0)), opts.maxBytes)), b.subarray(end.at)]);
      } else b = withPayload(b, f, hostileCompressed(rng, b.subarray(f.at + FRAME_HEAD, f.at + FRAME_HEAD + f.length), opts.maxBytes));
      break;
    }
    case 'splice': {
      const t = syntheticTrace(rng);
      const other = encodeBinaryTrace(t.header, t.events, { version: rng.chance(0.5) ? 1 : 2 });
      b = Buffer.concat([b.subarray(0, rng.int(b.length)), other.subarray(rng.int(other.length))]);
      break;
    }
  }
  return { cls: `binary/${cls}`, bytes: b };
}

// ---------------------------------------------------------------- text

const HOSTILE_TOKENS = (rng: Rng): string[] => [
  '9'.repeat(rng.size(70000)),
  '0x' + 'f'.repeat(rng.size(70000)),
  '0x10000000000000000',
  '-1',
  '1e9',
  'NaN',
  '0x',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  '@' + '9'.repeat(rng.size(40)),
  '@-1',
  '@',
  '"unterminated',
  '"\\ud800"',
  '"\\udc00x"',
  '"\\u0000"',
  '"\\"',
  '"a\\qb"',
  '""',
  'expect',
  'expect ignored "x"',
  'expect exit 99999999999 qual=0x' + 'f'.repeat(rng.size(40)),
  'expect cpuid eax=',
  'expect value',
  'ignored',
  '#',
  '=',
  'a=b=c',
  'gpa=',
  'vcpu=1',
  'x'.repeat(rng.size(70000)),
  'ü🙂\u2028\u0085',
  '\u0000',
  '\t\v\f',
  'GUEST_RIPP',
  'MSR_FS_BAS',
  'l1.vmxonn',
];

const HOSTILE_HEADER_LINES = (rng: Rng): string[] => [
  'config vcpus=99999999999999999999',
  'config vcpus=0',
  'config vcpus=1 vcpus=2',
  'config __proto__=1',
  'config constructor=true',
  'config memslots=1',
  'config evmcs=maybe',
  'memslot 0 gfn=0xffffffffffffffffff npages=1',
  'memslot 0 gfn=0x0 npages=0xffffffff',
  'memslot 99999 gfn=0 npages=1',
  'meta __proto__ "x"',
  'meta constructor x',
  'meta prototype x',
  'meta "__proto__" "x"',
  'meta k "\\ud800"',
  'meta "\\udfff" v',
  `meta k "${'v'.repeat(rng.size(70000))}"`,
  `meta "${'k'.repeat(rng.size(70000))}" v`,
  'meta k',
  'meta k v w',
  'nvx-trace 99999',
  'nvx-trace 1',
  'events extra',
  ...Array.from({ length: rng.pick([1, 70, 600]) }, (_, i) => `meta k${i} v`),
  ...Array.from({ length: rng.pick([1, 600]) }, (_, i) => `memslot ${i} gfn=${i * 0x1000} npages=1`),
];

const TEXT_CLASSES = ['line-delete', 'line-dup', 'line-swap', 'token', 'header-line', 'bytes', 'invalid-utf8', 'long-line', 'many-lines', 'truncate', 'expect', 'no-newline'] as const;

/** One hostile text trace. */
export function textInput(rng: Rng, opts: GenOptions): HostileInput {
  const base = baseTrace(rng);
  const text = formatTextTrace(base.header, base.events);
  let lines = text.split('\n');
  const headerEnd = Math.max(1, lines.indexOf('events'));
  const cls = rng.pick(TEXT_CLASSES);
  const anyLine = () => rng.int(lines.length);
  let bytes: Buffer | undefined;
  switch (cls) {
    case 'line-delete':
      lines.splice(anyLine(), 1 + rng.int(2));
      break;
    case 'line-dup': {
      const i = anyLine();
      lines.splice(rng.int(lines.length), 0, ...Array.from({ length: rng.size(50) }, () => lines[i]));
      break;
    }
    case 'line-swap': {
      const i = anyLine();
      const j = anyLine();
      [lines[i], lines[j]] = [lines[j], lines[i]];
      break;
    }
    case 'token': {
      const i = anyLine();
      const toks = lines[i].split(' ');
      const tok = rng.pick(HOSTILE_TOKENS(rng));
      if (rng.chance(0.5)) toks[rng.int(toks.length)] = tok;
      else toks.splice(rng.int(toks.length + 1), 0, tok);
      lines[i] = toks.join(' ');
      break;
    }
    case 'header-line':
      lines.splice(1 + rng.int(headerEnd), 0, rng.pick(HOSTILE_HEADER_LINES(rng)));
      break;
    case 'expect': {
      const i = headerEnd + 1 + rng.int(Math.max(1, lines.length - headerEnd - 1));
      lines[i] = `${lines[i] ?? 'l1.vmxoff'} expect ${rng.pick(['ok ok', 'value', 'value 0x1 0x2', 'exit', 'exit FOO', 'exit 31 qual=', 'cpuid eax=1 eax=2', 'ignored', 'ignored "a" "b"', 'ignored "\\ud800"', 'ignored x', 'vmfail-valid 99999999999', 'nothing', 'expect', '"ok"'])}`;
      break;
    }
    case 'long-line':
      lines.splice(anyLine(), 0, rng.pick(['#', 'meta k "', 'l1.vmxon ', '']) + 'a'.repeat(65536 + rng.int(3)));
      break;
    case 'many-lines':
      {
        const at = anyLine();
        const extra = Array.from({ length: rng.size(Math.min(200000, opts.maxBytes / 4)) }, () => rng.pick(['', '#', '   ', '\r']));
        lines = lines.slice(0, at).concat(extra, lines.slice(at));
      }
      break;
    case 'no-newline':
      bytes = Buffer.from(text.replace(/\n/g, rng.pick([' ', '\r', '\u2028'])).repeat(1 + rng.int(3)), 'utf8');
      break;
    default:
      break;
  }
  bytes ??= Buffer.from(lines.join(rng.chance(0.1) ? '\r\n' : '\n'), 'utf8');
  switch (cls) {
    case 'bytes': {
      bytes = Buffer.from(bytes);
      for (let k = 1 + rng.int(4); k > 0; k--) bytes[rng.int(bytes.length)] = rng.int(256);
      break;
    }
    case 'invalid-utf8': {
      const bad = rng.pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xef, 0xbb, 0xbf], [0x00], [0x0d]]);
      const at = rng.int(bytes.length + 1);
      bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(bad), bytes.subarray(at)]);
      break;
    }
    case 'truncate':
      bytes = bytes.subarray(0, rng.int(bytes.length + 1));
      break;
    default:
      break;
  }
  return { cls: `text/${cls}`, bytes };
}

// ---------------------------------------------------------------- CLI bombs (full size, for child processes)

/** Inputs at the format's limits, for the child processes only: each frame at or near 16 MiB. */
export function cliBombs(): HostileInput[] {
  // format version 1 (plain msgpack events frames); the version 2 bombs wrap their lists below
  const good = encodeBinaryTrace(makeHeader(), [], { version: 1 });
  const fr = framesOf(good);
  const hdr = fr.find((f) => f.type === 1)!;
  // payloads just under the 16 MiB frame bound, so that they reach the payload checks
  const n = 16 * 1024 * 1024 - 64;
  const vmxon = EVENT_SCHEMA['l1.vmxon'].code;
  const header = (payload: Buffer) => withPayload(good, hdr, payload);
  const events = (payload: Buffer) => Buffer.concat([good.subarray(0, fr[1].at), frame(2, payload), frame(3, pk({ events: 0 }))]);
  return [
    { cls: 'cli/events-empty-maps', bytes: events(Buffer.concat([listHead(n), Buffer.alloc(n, 0x80)])) },
    { cls: 'cli/events-tuples-of-empty-maps', bytes: events(Buffer.concat([listHead(65536), Buffer.alloc(65536 * 3, Buffer.from([0x92, vmxon, 0x80]))])) },
    { cls: 'cli/events-deep-lists', bytes: events(Buffer.concat([Buffer.from([0x91]), Buffer.alloc(n, 0x91), Buffer.from([0xc0])])) },
    // valid: one event whose expect ignored reason fills the frame
    { cls: 'cli/events-long-reason', bytes: Buffer.concat([good.subarray(0, fr[1].at), frame(2, Buffer.concat([Buffer.from([0x91, 0x94, vmxon, 0x00, 0x00, 0x92, 0x09, 0xdb]), u32be(n), Buffer.alloc(n, 0x61)])), frame(3, pk({ events: 1 }))]) },
    ...cliBombsV2(n, vmxon),
    { cls: 'cli/header-empty-maps', bytes: header(Buffer.concat([mapHead(1), str('config'), mapHead(1), str('memslots'), listHead(n), Buffer.alloc(n, 0x80)])) },
    { cls: 'cli/header-provenance-blob', bytes: header(Buffer.concat([mapHead(2), str('version'), pk(1), str('provenance'), Buffer.from([0xc6]), u32be(n), Buffer.alloc(n, 0x41)])) },
    { cls: 'cli/header-provenance-string', bytes: header(Buffer.concat([mapHead(2), str('version'), pk(1), str('provenance'), mapHead(1), str('k'), Buffer.from([0xdb]), u32be(n), Buffer.alloc(n, 0x61)])) },
    { cls: 'cli/header-deep-maps', bytes: header(Buffer.concat([Buffer.alloc(3 * Math.floor(n / 3), Buffer.from([0x81, 0xa1, 0x61])), Buffer.from([0xc0])])) },
    { cls: 'cli/header-unknown-empty-lists', bytes: header(Buffer.concat([mapHead(1), str('colour'), listHead(n), Buffer.alloc(n, 0x90)])) },
    { cls: 'cli/text-huge-number', bytes: Buffer.from(`nvx-trace 1\nevents\nl1.vmxon ${'9'.repeat(65000)}\n`) },
    { cls: 'cli/text-no-newline', bytes: Buffer.alloc(32 * 1024 * 1024, 0x61) },
    { cls: 'cli/text-long-meta', bytes: Buffer.from(`nvx-trace 1\nmeta k "${'\\u0041'.repeat(10000)}"\nevents\n`) },
    { cls: 'cli/text-many-comment-lines', bytes: Buffer.from('nvx-trace 1\nevents\n' + '#\n'.repeat(4 * 1024 * 1024)) },
  ];
}
