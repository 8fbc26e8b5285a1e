import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { crc32 } from 'zlib';
import { Packr } from 'msgpackr';
import {
  BINARY_MAGIC,
  BINARY_VERSION,
  BinaryTraceReader,
  BinaryTraceWriter,
  DEFAULT_CHUNK_EVENTS,
  FRAME_HEADER_SIZE,
  MAX_CHUNK_EVENTS,
  MAX_FRAME_PAYLOAD,
  TraceWarning,
  decodeBinaryTrace,
  encodeBinaryTrace,
  isBinaryTrace,
} from '../src/binary';
import { EVENT_KINDS, EVENT_SCHEMA, FieldType, TraceEvent } from '../src/events';
import { TraceError } from '../src/errors';
import { framesOf, traceError } from './frames';
import { TraceHeader, headerToPlain, makeHeader } from '../src/header';
import type { Outcome } from '../src/outcome';
import { eventToTuple } from '../src/validate';

const header = makeHeader({ vcpus: 2, pcpus: 2 }, { generator: 'binary.test' });

const SAMPLE: Record<FieldType, unknown> = {
  vcpu: 1,
  cpu: 1,
  u8: 0xff,
  u16: 0xffff,
  u32: 0xffffffff,
  u64: 0xffffffff81000000n,
  bool: true,
  cpl: 3,
  field: 0x6c16,
  msr: 0xc0000100,
  access: 'write',
  size: 8,
};

function sampleEvent(kind: (typeof EVENT_KINDS)[number], expect?: Outcome): TraceEvent {
  const e: Record<string, unknown> = { kind };
  for (const [name, type] of EVENT_SCHEMA[kind].fields) e[name] = SAMPLE[type];
  if (expect) e.expect = expect;
  return e as TraceEvent;
}

const OUTCOMES: Outcome[] = [
  { k: 'ok' },
  { k: 'value', value: 0xffffffffffffffffn },
  { k: 'vmfail-invalid' },
  { k: 'vmfail-valid', error: 12 },
  { k: 'gp' },
  { k: 'ud' },
  { k: 'exit', reason: 0x80000021, qual: 0xffffffff81000000n },
  { k: 'entered' },
  { k: 'cpuid', eax: 0xffffffff, ebx: 0, ecx: 1, edx: 2 },
  { k: 'ignored', why: 'no such memslot' },
  // partial expectations: fields left undefined are not checked
  { k: 'exit', reason: 31, qual: undefined as unknown as bigint },
  { k: 'vmfail-valid', error: undefined as unknown as number },
  { k: 'cpuid', eax: 1, ebx: undefined as unknown as number, ecx: undefined as unknown as number, edx: 7 },
];

/** Every kind bare, and every kind with each outcome as its expectation. */
const ALL: TraceEvent[] = [...EVENT_KINDS.map((k) => sampleEvent(k)), ...EVENT_KINDS.flatMap((k, i) => [sampleEvent(k, OUTCOMES[i % OUTCOMES.length])])];

// ---- crafting raw files ----

const packr = new Packr({ useRecords: false, int64AsType: 'bigint' });

// raw files are format version 1 (events frames hold plain msgpack), which readers still read
function fileHeader(version = 1, flags = 0, magic = BINARY_MAGIC): Buffer {
  const b = Buffer.alloc(8);
  b.write(magic, 0, 'latin1');
  b.writeUInt16LE(version, 4);
  b.writeUInt16LE(flags, 6);
  return b;
}

function frame(type: number, payload: Buffer, crc = crc32(payload), length = payload.length): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_SIZE);
  h[0] = type;
  h.writeUInt32LE(length, 1);
  h.writeUInt32LE(crc, 5);
  return Buffer.concat([h, payload]);
}

const pk = (v: unknown) => Buffer.from(packr.pack(v));

/** A file from raw chunks of tuples (no validation on the way). */
function rawTrace(chunks: unknown[][], opts: { end?: number | null; h?: TraceHeader } = {}): Buffer {
  const parts = [fileHeader(), frame(1, pk(headerToPlain(opts.h ?? header)))];
  let n = 0;
  for (const c of chunks) {
    parts.push(frame(2, pk(c)));
    n += c.length;
  }
  if (opts.end !== null) parts.push(frame(3, pk({ events: opts.end ?? n })));
  return Buffer.concat(parts);
}



async function traceErrorAsync(f: () => Promise<unknown>): Promise<TraceError> {
  try {
    await f();
  } catch (e) {
    if (e instanceof TraceError) return e;
    throw new Error(`expected a TraceError, got ${String(e)}`);
  }
  throw new Error('expected a TraceError, nothing was thrown');
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-binary-test-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('round trip', () => {
  it('keeps every event kind, with and without expect', () => {
    const buf = encodeBinaryTrace(header, ALL, { chunkEvents: 5 });
    expect(isBinaryTrace(buf)).toBe(true);
    const d = decodeBinaryTrace(buf);
    expect(d.warnings).toEqual([]);
    expect(d.header).toEqual(header);
    expect(d.events).toEqual(ALL);
    // the decoded objects have exactly the schema's properties, nothing more
    for (let i = 0; i < ALL.length; i++) expect(Object.keys(d.events[i]).sort()).toEqual(Object.keys(ALL[i]).sort());
    expect(ALL.some((e) => e.expect === undefined) && ALL.some((e) => e.expect !== undefined)).toBe(true);
  });

  it('keeps 64-bit values exact in fields, expectations and the header', () => {
    const values = [0n, 1n, 0xffffffffn, 0x100000000n, 2n ** 53n + 1n, 0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffff81000000n, 0xffffffffffffffffn];
    const h = makeHeader({ vcpus: 1, memslots: [{ slot: 3, gfn: 0xfffffffffffffn, npages: 1, flags: 0 }] });
    const events: TraceEvent[] = values.flatMap((v) => [
      { kind: 'l1.vmwrite', vcpu: 0, field: 0x6c16, value: v, expect: { k: 'value', value: v } },
      { kind: 'l1.wrmsr', vcpu: 0, msr: 0xc0000100, value: v, expect: { k: 'exit', reason: 32, qual: v } },
    ]);
    const d = decodeBinaryTrace(encodeBinaryTrace(h, events));
    expect(d.header.config.memslots[0].gfn).toBe(0xfffffffffffffn);
    d.events.forEach((e, i) => {
      const v = values[i >> 1];
      expect((e as { value: bigint }).value).toBe(v);
      const x = e.expect as { value?: bigint; qual?: bigint };
      expect(typeof (x.value ?? x.qual)).toBe('bigint');
      expect(x.value ?? x.qual).toBe(v);
    });
    expect((d.events[14] as { value: bigint }).value).toBe(0xffffffff81000000n);
    expect((d.events[16] as { value: bigint }).value).toBe(0xffffffffffffffffn);
  });

  it('decodes small u64 fields as bigint too', () => {
    const d = decodeBinaryTrace(encodeBinaryTrace(header, [{ kind: 'host.page-zap', gfn: 5n }]));
    expect(d.events[0]).toEqual({ kind: 'host.page-zap', gfn: 5n });
    expect(typeof (d.events[0] as { gfn: unknown }).gfn).toBe('bigint');
  });

  it('handles an empty trace and chunk boundaries', () => {
    expect(decodeBinaryTrace(encodeBinaryTrace(header, [])).events).toEqual([]);
    const events = Array.from({ length: 10 }, (_, i) => ({ kind: 'l2.vmcall', vcpu: i % 2 }) as TraceEvent);
    for (const chunkEvents of [1, 3, 5, 10, 11]) {
      const buf = encodeBinaryTrace(header, events, { chunkEvents });
      expect(framesOf(buf).filter((f) => f.type === 2)).toHaveLength(Math.ceil(10 / chunkEvents));
      expect(decodeBinaryTrace(buf).events).toEqual(events);
    }
    expect(() => encodeBinaryTrace(header, events, { chunkEvents: 0 })).toThrow(RangeError);
    expect(() => encodeBinaryTrace(header, events, { chunkEvents: MAX_CHUNK_EVENTS + 1 })).toThrow(RangeError);
    expect(DEFAULT_CHUNK_EVENTS).toBe(4096);
  });

  it('is compact on a CPUID loop (at most 6 bytes per event)', () => {
    const loop: TraceEvent[] = [
      { kind: 'l2.cpuid', vcpu: 0, leaf: 0, subleaf: 0, cpl: 3 },
      { kind: 'l1.vmread', vcpu: 0, field: 0x4402 },
      { kind: 'l1.vmread', vcpu: 0, field: 0x6400 },
      { kind: 'l1.vmresume', vcpu: 0 },
    ];
    const events = Array.from({ length: 40000 }, (_, i) => loop[i % 4]);
    const buf = encodeBinaryTrace(makeHeader(), events);
    expect(buf.length / events.length).toBeLessThanOrEqual(6);
  });

  it('splits a chunk whose payload would exceed the frame bound', () => {
    const why = 'x'.repeat(4000);
    const events = Array.from({ length: 4300 }, () => ({ kind: 'l2.vmcall', vcpu: 0, expect: { k: 'ignored', why } }) as TraceEvent);
    const buf = encodeBinaryTrace(header, events, { chunkEvents: 4300 });
    const frames = framesOf(buf).filter((f) => f.type === 2);
    expect(frames.length).toBeGreaterThan(1);
    for (const f of frames) expect(f.length).toBeLessThanOrEqual(MAX_FRAME_PAYLOAD);
    const d = decodeBinaryTrace(buf);
    expect(d.events.length).toBe(4300);
    expect(d.events[4299]).toEqual(events[4299]);
  });
});

describe('encoding checks its input', () => {
  it('rejects an event the header does not allow, naming index and field', () => {
    const e = traceError(() => encodeBinaryTrace(header, [{ kind: 'l2.vmcall', vcpu: 0 }, { kind: 'l2.vmcall', vcpu: 2 }]));
    expect(e.where).toMatchObject({ index: 1, field: 'vcpu' });
    expect(traceError(() => encodeBinaryTrace(header, [{ kind: 'nope' } as unknown as TraceEvent])).where).toMatchObject({ index: 0, field: 'kind' });
    const bad = { kind: 'l1.msr-bitmap', vcpu: 0, gpa: 0n, msr: 1, access: 'exec', intercept: true } as unknown as TraceEvent;
    expect(traceError(() => encodeBinaryTrace(header, [bad])).where.field).toBe('access');
    const neg = { kind: 'l1.vmwrite', vcpu: 0, field: 1, value: -1n } as TraceEvent;
    expect(traceError(() => encodeBinaryTrace(header, [neg])).where.field).toBe('value');
    const badExpect = { kind: 'l2.vmcall', vcpu: 0, expect: { k: 'value' } } as unknown as TraceEvent;
    expect(traceError(() => encodeBinaryTrace(header, [badExpect])).where.field).toBe('expect');
  });

  it('rejects a header its reader would refuse', () => {
    const h = makeHeader({ vcpus: 0 });
    expect(traceError(() => encodeBinaryTrace(h, [])).where.field).toBe('config.vcpus');
  });
});

describe('writer and reader', () => {
  const events = ALL.concat(ALL, ALL);

  it('produce the same events as the in-memory codec', async () => {
    const file = path.join(tmp, 'rt.nvxt');
    const w = BinaryTraceWriter.open(file, header, { chunkEvents: 7 });
    for (const e of events) w.write(e);
    expect(w.count).toBe(events.length);
    w.close();
    const bytes = fs.readFileSync(file);
    expect(bytes.equals(encodeBinaryTrace(header, events, { chunkEvents: 7 }))).toBe(true);

    const r = await BinaryTraceReader.open(file);
    expect(r.header).toEqual(header);
    const sizes: number[] = [];
    const got: TraceEvent[] = [];
    for await (const chunk of r.chunks()) {
      sizes.push(chunk.length);
      got.push(...chunk);
    }
    await r.close();
    expect(got).toEqual(events);
    expect(Math.max(...sizes)).toBe(7);
    expect(r.warnings).toEqual([]);

    const r2 = await BinaryTraceReader.open(file);
    const one: TraceEvent[] = [];
    for await (const e of r2.events()) one.push(e);
    await r2.close();
    expect(one).toEqual(events);
  });

  it('never leaves a file under the final name before close', () => {
    const file = path.join(tmp, 'atomic.nvxt');
    const w = BinaryTraceWriter.open(file, header, { chunkEvents: 2 });
    for (const e of events) w.write(e);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.existsSync(w.tmpPath)).toBe(true);
    w.close();
    expect(fs.existsSync(file)).toBe(true);
    expect(fs.existsSync(w.tmpPath)).toBe(false);
    expect(() => w.write(events[0])).toThrow();
  });

  it('keeps an existing trace intact until close replaces it', () => {
    const file = path.join(tmp, 'replace.nvxt');
    const old = encodeBinaryTrace(header, events.slice(0, 3));
    fs.writeFileSync(file, old);
    const w = BinaryTraceWriter.open(file, header, { chunkEvents: 2 });
    for (const e of events) w.write(e);
    expect(fs.readFileSync(file).equals(old)).toBe(true);
    w.close();
    expect(decodeBinaryTrace(fs.readFileSync(file)).events).toEqual(events);
  });

  it('abort leaves no file, and the old trace untouched', () => {
    const file = path.join(tmp, 'aborted.nvxt');
    const w = BinaryTraceWriter.open(file, header, { chunkEvents: 2 });
    for (const e of events) w.write(e);
    w.abort();
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('aborted'))).toEqual([]);

    const kept = path.join(tmp, 'kept.nvxt');
    fs.writeFileSync(kept, encodeBinaryTrace(header, events.slice(0, 2)));
    const w2 = BinaryTraceWriter.open(kept, header);
    w2.write(events[5]);
    w2.abort();
    expect(decodeBinaryTrace(fs.readFileSync(kept)).events).toEqual(events.slice(0, 2));
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('kept'))).toEqual(['kept.nvxt']);
  });

  it('rejects a bad event without writing it and stays usable', () => {
    const file = path.join(tmp, 'reject.nvxt');
    const w = BinaryTraceWriter.open(file, header);
    w.write(events[0]);
    const e = traceError(() => w.write({ kind: 'host.vcpu-load', vcpu: 0, cpu: 9 }));
    expect(e.where).toMatchObject({ index: 1, field: 'cpu' });
    w.write(events[1]);
    w.close();
    expect(decodeBinaryTrace(fs.readFileSync(file)).events).toEqual(events.slice(0, 2));
  });

  it('reads a cut-off file with a warning, like the in-memory decoder', async () => {
    const full = encodeBinaryTrace(header, events, { chunkEvents: 7 });
    const cut = framesOf(full)[3].offset + 20; // inside the third events frame
    const file = path.join(tmp, 'cut.nvxt');
    fs.writeFileSync(file, full.subarray(0, cut));
    const r = await BinaryTraceReader.open(file);
    const got: TraceEvent[] = [];
    for await (const e of r.events()) got.push(e);
    await r.close();
    expect(got).toEqual(events.slice(0, 14));
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatchObject({ file, offset: framesOf(full)[3].offset });
    expect(r.warnings[0].message).toMatch(/^truncated at offset \d+: 14 complete events read/);
    expect(r.warnings).toEqual(decodeBinaryTrace(full.subarray(0, cut), file).warnings);
  });

  it('names the file in reader errors', async () => {
    const file = path.join(tmp, 'badmagic.nvxt');
    fs.writeFileSync(file, Buffer.from('NVXX\x01\x00\x00\x00'));
    const e = await traceErrorAsync(() => BinaryTraceReader.open(file));
    expect(e.where).toMatchObject({ file, offset: 0 });
    expect(e.message).toContain(file);
    const missing = await traceErrorAsync(() => BinaryTraceReader.open(path.join(tmp, 'does-not-exist.nvxt')));
    expect(missing.where.file).toContain('does-not-exist');
  });
});

describe('truncation', () => {
  const events = ALL.slice(0, 12);
  const full = encodeBinaryTrace(header, events, { chunkEvents: 4 });
  const frames = framesOf(full);
  const headerEnd = frames[1].offset;

  type Result = { ok: true; events: TraceEvent[]; warnings: TraceWarning[] } | { ok: false; message: string };
  const results: Result[] = [];
  for (let n = 0; n < full.length; n++) {
    try {
      const d = decodeBinaryTrace(full.subarray(0, n), 'cut.nvxt');
      results.push({ ok: true, events: d.events, warnings: d.warnings });
    } catch (e) {
      if (!(e instanceof TraceError)) throw e;
      results.push({ ok: false, message: e.message });
    }
  }

  it('at every byte: only TraceError, or a prefix of the events and a warning with the offset', () => {
    for (let n = 0; n < full.length; n++) {
      const r = results[n];
      if (n < headerEnd) {
        expect(r.ok).toBe(false); // no header, nothing to return
        continue;
      }
      if (!r.ok) throw new Error(`cut at ${n}: ${r.message}`);
      // the complete frames before the cut, and no more
      const complete = frames.filter((f) => f.type === 2 && f.offset + FRAME_HEADER_SIZE + f.length <= n).length;
      expect(r.events).toEqual(events.slice(0, complete * 4));
      expect(r.warnings).toHaveLength(1);
      const w = r.warnings[0];
      expect(w.file).toBe('cut.nvxt');
      expect(w.offset).toBeLessThanOrEqual(n);
      expect(w.message).toContain(`truncated at offset ${w.offset}: ${r.events.length} complete events read`);
    }
    expect(decodeBinaryTrace(full).warnings).toEqual([]);
  });

  it('the streaming reader agrees with the in-memory decoder at every byte', async () => {
    const file = path.join(tmp, 'cut-every.nvxt');
    for (let n = 0; n < full.length; n += 3) {
      fs.writeFileSync(file, full.subarray(0, n));
      let r: Result;
      try {
        const rd = await BinaryTraceReader.open(file);
        const got: TraceEvent[] = [];
        for await (const c of rd.chunks()) got.push(...c);
        await rd.close();
        r = { ok: true, events: got, warnings: rd.warnings };
      } catch (e) {
        if (!(e instanceof TraceError)) throw e;
        r = { ok: false, message: e.problem };
      }
      const want = results[n];
      if (want.ok) {
        expect(r).toEqual({ ...want, warnings: want.warnings.map((w) => ({ ...w, file })) });
      } else {
        expect(r.ok).toBe(false);
        expect(want.message).toContain((r as { message: string }).message);
      }
    }
  });

  it('a missing end frame after complete chunks is a warning, not an error', () => {
    const d = decodeBinaryTrace(rawTrace([[eventToTuple(events[0])]], { end: null }));
    expect(d.events).toEqual(events.slice(0, 1));
    expect(d.warnings[0].message).toMatch(/truncated at offset \d+: 1 complete events read/);
  });
});

describe('bad input', () => {
  const good = encodeBinaryTrace(header, ALL, { chunkEvents: 8 });

  it('bad magic', () => {
    const b = Buffer.from(good);
    b[1] = 0x57;
    const e = traceError(() => decodeBinaryTrace(b, 'x.nvxt'));
    expect(e.where).toMatchObject({ file: 'x.nvxt', offset: 0 });
    expect(e.message).toMatch(/magic/);
    expect(isBinaryTrace(b)).toBe(false);
    expect(traceError(() => decodeBinaryTrace(Buffer.from('# nvx text trace\n'))).message).toMatch(/magic/);
    expect(traceError(() => decodeBinaryTrace(Buffer.alloc(0))).where.offset).toBe(0);
  });

  it('newer format version, version 0, unknown flags', () => {
    const newer = Buffer.concat([fileHeader(BINARY_VERSION + 1), good.subarray(8)]);
    const e = traceError(() => decodeBinaryTrace(newer));
    expect(e.message).toMatch(/newer/);
    expect(e.where.offset).toBe(4);
    expect(traceError(() => decodeBinaryTrace(Buffer.concat([fileHeader(0), good.subarray(8)]))).where.offset).toBe(4);
    expect(traceError(() => decodeBinaryTrace(Buffer.concat([fileHeader(BINARY_VERSION, 1), good.subarray(8)]))).message).toMatch(/flags/);
  });

  it('a flipped payload byte is a checksum error at that frame', () => {
    for (const f of framesOf(good)) {
      const b = Buffer.from(good);
      b[f.offset + FRAME_HEADER_SIZE + (f.length >> 1)] ^= 0x10;
      const e = traceError(() => decodeBinaryTrace(b, 't.nvxt'));
      expect(e.where).toMatchObject({ file: 't.nvxt', offset: f.offset });
      expect(e.message).toMatch(/checksum/);
    }
  });

  it('unknown event code', () => {
    const b = rawTrace([[eventToTuple(ALL[0]), [99, 0]]]);
    const e = traceError(() => decodeBinaryTrace(b, 'u.nvxt'));
    expect(e.where).toMatchObject({ file: 'u.nvxt', index: 1, field: 'kind', offset: framesOf(b)[1].offset });
    expect(e.message).toMatch(/unknown event code 99/);
  });

  it('wrong field type, out-of-range values and vCPUs beyond the header', () => {
    const cases: [unknown[], string][] = [
      [[7, 0, 0x4402, 'x'], 'value'], // l1.vmwrite value as a string
      [[7, 0, 0x4402, -1], 'value'],
      [[7, 0, 0x4402, 1.5], 'value'],
      [[7, 0, 0x4402, 2 ** 40], 'value'], // a float64 for a 64-bit value: only small numbers or bigint
      [[12, 0, 0, 0, 4], 'cpl'],
      [[13, 0, 0, 3, 0], 'size'],
      [[15, 0, 0, 16, 2, true], 'access'],
      [[15, 0, 0, 16, 1, 1], 'intercept'],
      [[23, 2], 'vcpu'], // header has 2 vCPUs
      [[46, 0, 2], 'cpu'],
      [[23, 0, [1]], 'expect'],
    ];
    for (const [t, field] of cases) {
      const b = rawTrace([[[23, 0], [23, 1], t]]);
      const e = traceError(() => decodeBinaryTrace(b));
      expect(e.where).toMatchObject({ index: 2, field, offset: framesOf(b)[1].offset });
    }
    // the global index counts events of earlier chunks
    const b = rawTrace([[[23, 0], [23, 1]], [[23, 0], [8]]]);
    expect(traceError(() => decodeBinaryTrace(b)).where).toMatchObject({ index: 3, offset: framesOf(b)[2].offset });
    // a tuple with too many values
    expect(traceError(() => decodeBinaryTrace(rawTrace([[[23, 0, [0], 5]]]))).where.index).toBe(0);
  });

  it('structural errors: frame order, unknown frame type, end count, trailing data, payloads', () => {
    const hdr = frame(1, pk(headerToPlain(header)));
    const ev = frame(2, pk([[23, 0]]));
    const end1 = frame(3, pk({ events: 1 }));
    const cases: [Buffer, RegExp, number][] = [
      [Buffer.concat([fileHeader(), ev, end1]), /first frame is events/, 8],
      [Buffer.concat([fileHeader(), hdr, hdr, ev, end1]), /second trace header/, 8 + hdr.length],
      [Buffer.concat([fileHeader(), hdr, frame(9, pk([])), end1]), /unknown frame type 9/, 8 + hdr.length],
      [Buffer.concat([fileHeader(), hdr, ev, frame(3, pk({ events: 2 }))]), /says 2 events, but 1/, 8 + hdr.length + ev.length],
      [Buffer.concat([fileHeader(), hdr, ev, frame(3, pk({ count: 1 }))]), /end frame is not/, 8 + hdr.length + ev.length],
      [Buffer.concat([fileHeader(), hdr, ev, end1, Buffer.from([0])]), /after the end frame/, 8 + hdr.length + ev.length + end1.length],
      [Buffer.concat([fileHeader(), hdr, frame(2, pk({ a: 1 })), end1]), /not hold a list/, 8 + hdr.length],
      [Buffer.concat([fileHeader(), hdr, frame(2, Buffer.from([0x92, 0x92, 23, 0])), end1]), /malformed events frame payload/, 8 + hdr.length],
      [Buffer.concat([fileHeader(), hdr, frame(2, Buffer.from([0x91, 0x92, 23, 0, 0xc1])), end1]), /malformed events frame payload/, 8 + hdr.length],
      [Buffer.concat([fileHeader(), frame(1, Buffer.from([0xde, 0xff])), ev, end1]), /malformed header frame payload/, 8],
      [Buffer.concat([fileHeader(), frame(1, pk({ version: 1, config: { vcpus: 'two' } })), ev, end1]), /integer/, 8],
      [Buffer.concat([fileHeader(), frame(1, pk({ version: 1, colour: 'red' })), ev, end1]), /unknown header key/, 8],
      [Buffer.concat([fileHeader(), hdr, frame(2, Buffer.from([0xdd, 0x00, 0x01, 0x00, 0x01, 0x92, 23, 0])), end1]), /more than the bound/, 8 + hdr.length],
    ];
    for (const [b, re, offset] of cases) {
      const e = traceError(() => decodeBinaryTrace(b, 's.nvxt'));
      expect(e.message).toMatch(re);
      expect(e.where).toMatchObject({ file: 's.nvxt', offset });
    }
  });

  it('a header error keeps the header field', () => {
    const b = Buffer.concat([fileHeader(), frame(1, pk({ version: 1, config: { vcpus: 'two' } }))]);
    expect(traceError(() => decodeBinaryTrace(b)).where).toMatchObject({ offset: 8, field: 'config.vcpus' });
  });

  it('a length beyond the bound fails at once without reading or allocating it', async () => {
    const hdr = frame(1, pk(headerToPlain(header)));
    const head = Buffer.alloc(FRAME_HEADER_SIZE);
    head[0] = 2;
    head.writeUInt32LE(0xffffffff, 1);
    const b = Buffer.concat([fileHeader(), hdr, head, Buffer.alloc(16)]);
    const t0 = Date.now();
    const e = traceError(() => decodeBinaryTrace(b));
    expect(e.message).toContain(String(MAX_FRAME_PAYLOAD));
    expect(e.where.offset).toBe(8 + hdr.length);
    head.writeUInt32LE(MAX_FRAME_PAYLOAD + 1, 1);
    expect(traceError(() => decodeBinaryTrace(Buffer.concat([fileHeader(), hdr, head]))).message).toMatch(/more than the bound/);
    expect(Date.now() - t0).toBeLessThan(1000);

    // a length within the bound but beyond the file: a cut-off file, read without allocating the claimed size
    head.writeUInt32LE(MAX_FRAME_PAYLOAD, 1);
    const cut = Buffer.concat([fileHeader(), hdr, head, Buffer.alloc(16)]);
    expect(decodeBinaryTrace(cut).warnings[0].message).toMatch(/truncated/);
    const file = path.join(tmp, 'huge.nvxt');
    fs.writeFileSync(file, cut);
    const sizes: number[] = [];
    const spies = (['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const).map((m) => {
      const orig = Buffer[m].bind(Buffer);
      return jest.spyOn(Buffer, m).mockImplementation(((size: number, ...rest: unknown[]) => {
        sizes.push(size);
        return (orig as (...a: unknown[]) => Buffer)(size, ...rest);
      }) as never);
    });
    try {
      const r = await BinaryTraceReader.open(file);
      for await (const c of r.chunks()) expect(c).toBeUndefined();
      await r.close();
      expect(r.warnings).toHaveLength(1);
    } finally {
      for (const s of spies) s.mockRestore();
    }
    expect(Math.max(0, ...sizes)).toBeLessThanOrEqual(cut.length);
  });
});
