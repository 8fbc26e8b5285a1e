/**
 * Format versions of the binary form: version 1 (plain msgpack events
 * frames) still reads; version 2 (what the writers write) deflates each
 * chunk on its own, and its decoder bounds what a chunk may inflate to.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { crc32, deflateRawSync } from 'zlib';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import {
  BINARY_VERSION,
  BinaryTraceReader,
  BinaryTraceWriter,
  CODEC_DEFLATE,
  CODEC_STORED,
  EVENTS_PREFIX_SIZE,
  FRAME_HEADER_SIZE,
  MAX_DECODED_PAYLOAD,
  decodeBinaryTrace,
  encodeBinaryTrace,
} from '../src/binary';
import { TraceError } from '../src/errors';
import { framesOf, traceError } from './frames';
import { EVENT_SCHEMA, TraceEvent } from '../src/events';
import { TraceHeader, headerToPlain, makeHeader } from '../src/header';
import { parseTextTrace } from '../src/text';
import { arbEvent, arbHeader } from './arbitraries';

const FIXTURES = path.join(__dirname, 'fixtures');
const WORKLOAD = path.join(__dirname, '..', '..', '..', 'traces', 'workloads', 'cpuid-loop.nvxt');

const packr = new Packr({ useRecords: false, int64AsType: 'bigint' });
const pk = (v: unknown) => Buffer.from(packr.pack(v));

function frame(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_SIZE);
  h[0] = type;
  h.writeUInt32LE(payload.length, 1);
  h.writeUInt32LE(crc32(payload), 5);
  return Buffer.concat([h, payload]);
}

/** A version 2 events payload with any codec, declared size and body (no checks: it may lie). */
function v2Payload(codec: number, size: number, body: Buffer): Buffer {
  const p = Buffer.alloc(EVENTS_PREFIX_SIZE);
  p[0] = codec;
  p.writeUInt32LE(size, 1);
  return Buffer.concat([p, body]);
}

const header = makeHeader({ vcpus: 2 }, { generator: 'binary-format.test' });
const FILE_HEADER_V2 = Buffer.from([0x4e, 0x56, 0x58, 0x54, 2, 0, 0, 0]);

/** A version 2 file whose only events frame has the given payload (and an end frame claiming `events`). */
function v2File(payload: Buffer, events = 1): Buffer {
  return Buffer.concat([FILE_HEADER_V2, frame(1, pk(headerToPlain(header))), frame(2, payload), frame(3, pk({ events }))]);
}



async function readAll(file: string): Promise<{ header: TraceHeader; events: TraceEvent[] }> {
  const r = await BinaryTraceReader.open(file);
  try {
    const events: TraceEvent[] = [];
    for await (const c of r.chunks()) events.push(...c);
    return { header: r.header, events };
  } finally {
    await r.close();
  }
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-binary-format-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('format version 1 (written by earlier nvx)', () => {
  // v1-vmx-instruction-errors.nvxt was written by the version 1 writer (16 events per chunk) from its text twin
  const v1 = fs.readFileSync(path.join(FIXTURES, 'v1-vmx-instruction-errors.nvxt'));
  const twin = parseTextTrace(fs.readFileSync(path.join(FIXTURES, 'v1-vmx-instruction-errors.nvx'), 'utf8'));

  it('reads in memory and streaming, to the same trace as its text twin', async () => {
    expect(v1.readUInt16LE(4)).toBe(1);
    const d = decodeBinaryTrace(v1, 'v1.nvxt');
    expect(d.warnings).toEqual([]);
    expect(d.header).toEqual(twin.header);
    expect(d.events).toEqual(twin.events);
    expect(d.events.length).toBeGreaterThan(16); // several chunks
    const file = path.join(tmp, 'v1.nvxt');
    fs.writeFileSync(file, v1);
    expect(await readAll(file)).toEqual({ header: twin.header, events: twin.events });
  });

  it('is still written, byte for byte, when asked for', () => {
    expect(encodeBinaryTrace(twin.header, twin.events, { version: 1, chunkEvents: 16 })).toEqual(v1);
  });

  it('a cut-off version 1 file yields its complete chunks', () => {
    const frames = framesOf(v1);
    const second = frames.filter((f) => f.type === 2)[1];
    const d = decodeBinaryTrace(v1.subarray(0, second.offset + FRAME_HEADER_SIZE + 3), 'v1.nvxt');
    expect(d.events).toEqual(twin.events.slice(0, 16));
    expect(d.warnings[0]).toMatchObject({ file: 'v1.nvxt', offset: second.offset });
  });
});

describe('format version 2', () => {
  const twin = parseTextTrace(fs.readFileSync(path.join(FIXTURES, 'v1-vmx-instruction-errors.nvx'), 'utf8'));

  it('is what the writers write by default: a deflated chunk per frame', async () => {
    const buf = encodeBinaryTrace(twin.header, twin.events, { chunkEvents: 16 });
    expect(BINARY_VERSION).toBe(2);
    expect(buf.readUInt16LE(4)).toBe(2);
    const chunks = framesOf(buf).filter((f) => f.type === 2);
    expect(chunks).toHaveLength(Math.ceil(twin.events.length / 16));
    for (const f of chunks) expect(buf[f.offset + FRAME_HEADER_SIZE]).toBe(CODEC_DEFLATE);
    expect(decodeBinaryTrace(buf).events).toEqual(twin.events);

    const file = path.join(tmp, 'w2.nvxt');
    const w = BinaryTraceWriter.open(file, twin.header, { chunkEvents: 16 });
    expect(w.version).toBe(2);
    for (const e of twin.events) w.write(e);
    w.close();
    expect(fs.readFileSync(file)).toEqual(buf);
    expect(await readAll(file)).toEqual({ header: twin.header, events: twin.events });

    const w1 = BinaryTraceWriter.open(file, twin.header, { chunkEvents: 16, version: 1 });
    for (const e of twin.events) w1.write(e);
    w1.close();
    expect(fs.readFileSync(file)).toEqual(fs.readFileSync(path.join(FIXTURES, 'v1-vmx-instruction-errors.nvxt')));
    expect(() => encodeBinaryTrace(header, [], { version: 3 as 2 })).toThrow(RangeError);
  });

  it('stores a chunk deflate cannot shrink', () => {
    const events: TraceEvent[] = [{ kind: 'l2.vmcall', vcpu: 1 }];
    const buf = encodeBinaryTrace(header, events);
    const f = framesOf(buf).find((x) => x.type === 2)!;
    const p = buf.subarray(f.offset + FRAME_HEADER_SIZE, f.offset + FRAME_HEADER_SIZE + f.length);
    expect(p[0]).toBe(CODEC_STORED);
    expect(p.readUInt32LE(1)).toBe(p.length - EVENTS_PREFIX_SIZE);
    expect(decodeBinaryTrace(buf).events).toEqual(events);
  });

  it('makes the shipped CPUID workload at most 6 bytes per event (version 1: more)', async () => {
    // its first 2 chunks (8,192 events: the setup, then the loop; the whole trace is the bench's)
    const r = await BinaryTraceReader.open(WORKLOAD);
    const events: TraceEvent[] = [];
    try {
      for await (const c of r.chunks()) if (events.push(...c) >= 8192) break;
    } finally {
      await r.close();
    }
    expect(events.length).toBe(8192);
    const v2 = encodeBinaryTrace(r.header, events);
    const v1 = encodeBinaryTrace(r.header, events, { version: 1 });
    expect(v2.length / events.length).toBeLessThanOrEqual(6);
    expect(v1.length / events.length).toBeGreaterThan(6);
    const back = decodeBinaryTrace(v2);
    // the RIP the loop advances is a full 64-bit value: exact through deflate
    expect(back.events).toEqual(events);
  });

  it('round-trips exactly in both versions (property, fixed seed)', () => {
    const arbTrace = arbHeader.chain((h) => fc.tuple(fc.constant(h), fc.array(arbEvent(h.config), { maxLength: 60 }), fc.integer({ min: 1, max: 20 })));
    fc.assert(
      fc.property(arbTrace, ([h, events, chunkEvents]) => {
        const v2 = decodeBinaryTrace(encodeBinaryTrace(h, events, { chunkEvents }));
        const v1 = decodeBinaryTrace(encodeBinaryTrace(h, events, { chunkEvents, version: 1 }));
        expect(v2.events).toEqual(events);
        expect(v1.events).toEqual(v2.events);
        expect(v2.header).toEqual(v1.header);
        // exact bigints: same type and value wherever the event had a bigint
        v2.events.forEach((e, i) => {
          for (const [k, v] of Object.entries(events[i])) if (typeof v === 'bigint') expect((e as unknown as Record<string, unknown>)[k]).toBe(v);
        });
      }),
      { seed: 15, numRuns: 150 },
    );
  });
});

describe('version 2 hostile input', () => {
  const events: TraceEvent[] = Array.from({ length: 40 }, (_, i) => ({ kind: 'l1.vmwrite', vcpu: i % 2, field: 0x681e, value: 0xffffffff81000000n + BigInt(i) }));
  const good = encodeBinaryTrace(header, events, { chunkEvents: 10 });
  const chunks = framesOf(good).filter((f) => f.type === 2);
  const list = pk([[EVENT_SCHEMA['l1.vmwrite'].code, 0, 0x681e, 0xffffffff81000000n]]); // events[0] as a tuple

  it('a file cut inside a deflated chunk yields the chunks before it', () => {
    for (const k of [1, 2, 3]) {
      const f = chunks[k];
      for (const at of [1, FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + EVENTS_PREFIX_SIZE + 2, FRAME_HEADER_SIZE + f.length - 1]) {
        const d = decodeBinaryTrace(good.subarray(0, f.offset + at), 'cut.nvxt');
        expect(d.events).toEqual(events.slice(0, 10 * k));
        expect(d.warnings).toHaveLength(1);
        expect(d.warnings[0]).toMatchObject({ file: 'cut.nvxt', offset: f.offset });
      }
    }
  });

  it('a corrupt deflated chunk (checksum fixed up) is a TraceError at its frame', () => {
    const f = chunks[2];
    const payload = Buffer.from(good.subarray(f.offset + FRAME_HEADER_SIZE, f.offset + FRAME_HEADER_SIZE + f.length));
    const size = payload.readUInt32LE(1);
    const bad = (p: Buffer) => Buffer.concat([good.subarray(0, f.offset), frame(2, p), good.subarray(f.offset + FRAME_HEADER_SIZE + f.length)]);
    // garbage instead of deflate data
    let e = traceError(() => decodeBinaryTrace(bad(v2Payload(CODEC_DEFLATE, size, Buffer.alloc(20, 0xff))), 'c.nvxt'));
    expect(e.where).toMatchObject({ file: 'c.nvxt', offset: f.offset });
    expect(e.message).toMatch(/corrupt deflated events frame/);
    // the deflate stream cut short (the frame itself complete)
    e = traceError(() => decodeBinaryTrace(bad(payload.subarray(0, payload.length - 2)), 'c.nvxt'));
    expect(e.where).toMatchObject({ file: 'c.nvxt', offset: f.offset });
    expect(e.message).toMatch(/corrupt deflated events frame|inflates to \d+ bytes, not the/);
    // every single-byte flip of the body: a TraceError at this frame, or (if it still inflates to a valid list) a valid trace
    for (let i = EVENTS_PREFIX_SIZE; i < payload.length; i++) {
      const p = Buffer.from(payload);
      p[i] ^= 0x5a;
      try {
        decodeBinaryTrace(bad(p), 'c.nvxt');
      } catch (err) {
        if (!(err instanceof TraceError)) throw err;
        expect(err.where).toMatchObject({ file: 'c.nvxt', offset: f.offset });
      }
    }
    // the declared size lies: larger, smaller than what the body inflates to
    expect(traceError(() => decodeBinaryTrace(bad(v2Payload(CODEC_DEFLATE, size + 1, payload.subarray(EVENTS_PREFIX_SIZE))))).message).toMatch(
      new RegExp(`inflates to ${size} bytes, not the ${size + 1} it declares`),
    );
    expect(traceError(() => decodeBinaryTrace(bad(v2Payload(CODEC_DEFLATE, size - 1, payload.subarray(EVENTS_PREFIX_SIZE))))).message).toMatch(
      new RegExp(`inflates to more than the ${size - 1} bytes it declares`),
    );
  });

  it('a decompression bomb stops at the declared size, and a declared size over the bound is refused before inflating', () => {
    const bomb = deflateRawSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 }); // 64 MiB of zeros in about 64 KiB
    const t0 = process.hrtime.bigint();
    let e = traceError(() => decodeBinaryTrace(v2File(v2Payload(CODEC_DEFLATE, MAX_DECODED_PAYLOAD, bomb)), 'bomb.nvxt'));
    expect(e.message).toBe(`bomb.nvxt, offset ${framesOf(v2File(v2Payload(CODEC_DEFLATE, 0, bomb)))[1].offset}: deflated events frame inflates to more than the ${MAX_DECODED_PAYLOAD} bytes it declares`);
    e = traceError(() => decodeBinaryTrace(v2File(v2Payload(CODEC_DEFLATE, 1000, bomb)), 'bomb.nvxt'));
    expect(e.message).toMatch(/inflates to more than the 1000 bytes it declares/);
    e = traceError(() => decodeBinaryTrace(v2File(v2Payload(CODEC_DEFLATE, MAX_DECODED_PAYLOAD + 1, bomb)), 'bomb.nvxt'));
    expect(e.message).toMatch(new RegExp(`declares ${MAX_DECODED_PAYLOAD + 1} decoded bytes, more than the bound of ${MAX_DECODED_PAYLOAD}`));
    e = traceError(() => decodeBinaryTrace(v2File(v2Payload(CODEC_DEFLATE, 0xffffffff, bomb)), 'bomb.nvxt'));
    expect(e.message).toMatch(/more than the bound/);
    expect(Number(process.hrtime.bigint() - t0) / 1e9).toBeLessThan(5);
  });

  it('codec and size prefix: unknown codec, short payload, stored size that lies', () => {
    const offset = framesOf(v2File(list))[1].offset;
    const cases: [Buffer, RegExp][] = [
      [v2Payload(7, list.length, list), /unknown codec 7/],
      [Buffer.from([CODEC_DEFLATE, 0, 0]), /shorter than its 5-byte codec and size prefix/],
      [Buffer.alloc(0), /shorter than its 5-byte/],
      [v2Payload(CODEC_STORED, list.length + 1, list), new RegExp(`declares ${list.length + 1} bytes but holds ${list.length}`)],
      [v2Payload(CODEC_STORED, 1, pk({ a: 1 }).subarray(0, 1)), /does not hold a list/],
      [v2Payload(CODEC_STORED, 2, Buffer.from([0x91, 0xc1])), /at byte 1 of the decoded list/],
    ];
    for (const [p, re] of cases) {
      const e = traceError(() => decodeBinaryTrace(v2File(p), 'p.nvxt'));
      expect(e.message).toMatch(re);
      expect(e.where).toMatchObject({ file: 'p.nvxt', offset });
    }
    // bytes after the end of the deflate stream (zlib itself would ignore them)
    const e = traceError(() => decodeBinaryTrace(v2File(v2Payload(CODEC_DEFLATE, list.length, Buffer.concat([deflateRawSync(list), Buffer.from([1, 2, 3])]))), 'p.nvxt'));
    expect(e.message).toMatch(/3 bytes after the end of its deflate stream/);
    expect(e.where).toMatchObject({ file: 'p.nvxt', offset });
    // a stored chunk and a deflated chunk of the same list decode alike
    expect(decodeBinaryTrace(v2File(v2Payload(CODEC_STORED, list.length, list))).events).toEqual(events.slice(0, 1));
    expect(decodeBinaryTrace(v2File(v2Payload(CODEC_DEFLATE, list.length, deflateRawSync(list)))).events).toEqual(events.slice(0, 1));
  });

  it('the streaming reader gives the same errors', async () => {
    const bomb = deflateRawSync(Buffer.alloc(4 * 1024 * 1024), { level: 9 });
    const file = path.join(tmp, 'bomb.nvxt');
    for (const p of [v2Payload(CODEC_DEFLATE, 4096, bomb), v2Payload(CODEC_DEFLATE, 40, Buffer.alloc(8, 0xff)), v2Payload(9, 1, list)]) {
      const b = v2File(p);
      fs.writeFileSync(file, b);
      const want = traceError(() => decodeBinaryTrace(b, file));
      let got: unknown;
      try {
        await readAll(file);
      } catch (e) {
        got = e;
      }
      expect(got).toBeInstanceOf(TraceError);
      expect((got as TraceError).message).toBe(want.message);
    }
  });
});
