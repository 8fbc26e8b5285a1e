import fc from 'fast-check';
import { crc32 } from 'zlib';
import { Packr } from 'msgpackr';
import { FILE_HEADER_SIZE, decodeBinaryTrace, encodeBinaryTrace, tryOutcomeFromTuple, tupleDecoder, tupleEncoder } from '../src/binary';
import { TraceError } from '../src/errors';
import type { TraceEvent } from '../src/events';
import type { TraceHeader } from '../src/header';
import { outcomeFromTuple } from '../src/outcome';
import { eventFromTuple, eventToTuple, validateEvent } from '../src/validate';
import { arbEvent, arbHeader } from './arbitraries';

const RUNS = { seed: 42, numRuns: 200 };

/** A header and events valid under it. */
const arbTrace: fc.Arbitrary<{ header: TraceHeader; events: TraceEvent[] }> = arbHeader.chain((header) =>
  fc.array(arbEvent(header.config), { maxLength: 40, size: 'max' }).map((events) => ({ header, events })),
);

// bigints beyond 64 bits (in mangled tuples) are written as strings: still invalid, as they should be
const packr = new Packr({ useRecords: false, int64AsType: 'bigint', largeBigIntToString: true });

function frame(type: number, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(9);
  h[0] = type;
  h.writeUInt32LE(payload.length, 1);
  h.writeUInt32LE(crc32(payload), 5);
  return Buffer.concat([h, payload]);
}

/** Decode, returning the error when it is a TraceError and failing the property on anything else. */
function decodeOrTraceError(buf: Uint8Array): ReturnType<typeof decodeBinaryTrace> | TraceError {
  try {
    return decodeBinaryTrace(buf, 'p.nvxt');
  } catch (e) {
    if (e instanceof TraceError) {
      expect(e.where.file).toBe('p.nvxt');
      expect(e.where.offset).toEqual(expect.any(Number));
      return e;
    }
    throw e;
  }
}

/** Values a corrupted tuple may hold: near-misses of valid values and values of the wrong type. */
const arbOddValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(-1, -0, 0, 1, 2, 3, 4, 5, 8, 9, 255, 256, 0xffff, 0x10000, 0xffffffff, 2 ** 32, 2 ** 53, 1.5, NaN, Infinity),
  fc.constantFrom(-1n, 0n, 1n, 0xffffffffn, 0xffffffffffffffffn, 0x10000000000000000n),
  fc.constantFrom(null, undefined, true, false, 'read', 'write', '', 'x', [], [0], [1, 5n], [6, 10, 0], [9, 'why'], [99], {}),
  fc.integer(),
  fc.bigInt({ min: -(2n ** 65n), max: 2n ** 65n }),
);

/** A valid tuple with one value replaced, one dropped or one added (inside the expect tuple too). */
function arbMangledTuple(header: TraceHeader): fc.Arbitrary<unknown[]> {
  return fc
    .tuple(arbEvent(header.config), fc.nat(), fc.nat(), arbOddValue, fc.constantFrom('replace', 'replace', 'replace', 'drop', 'add', 'expect'))
    .map(([e, i, j, v, how]) => {
      const t = eventToTuple(e);
      const at = i % t.length;
      if (how === 'replace') t[at] = v;
      else if (how === 'drop') t.splice(at, 1);
      else if (how === 'add') t.push(v);
      else {
        const last = t[t.length - 1];
        if (Array.isArray(last) && typeof t[0] === 'number') {
          const o = [...last];
          o[j % (o.length + 1)] = v;
          t[t.length - 1] = o;
        } else t[at] = v;
      }
      return t;
    });
}

describe('binary codec properties', () => {
  it('any valid trace round-trips, whatever the chunk size', () => {
    fc.assert(
      fc.property(arbTrace, fc.integer({ min: 1, max: 17 }), ({ header, events }, chunkEvents) => {
        const d = decodeBinaryTrace(encodeBinaryTrace(header, events, { chunkEvents }));
        expect(d.warnings).toEqual([]);
        expect(d.header).toEqual(header);
        expect(d.events).toEqual(events);
      }),
      RUNS,
    );
  });

  it('the fast tuple decoder accepts exactly what eventFromTuple accepts, and builds the same event', () => {
    fc.assert(
      fc.property(
        arbHeader.chain((h) => fc.tuple(fc.constant(h), fc.array(arbMangledTuple(h), { minLength: 1, maxLength: 20 }))),
        ([h, tuples]) => {
          const fast = tupleDecoder(h.config);
          for (const t of tuples) {
            let slow: TraceEvent | TraceError;
            try {
              slow = eventFromTuple(t, 0, h.config);
            } catch (e) {
              if (!(e instanceof TraceError)) throw e;
              slow = e;
            }
            const got = fast(t);
            if (slow instanceof TraceError) expect(got).toBeUndefined();
            else expect(got).toStrictEqual(slow);
          }
        },
      ),
      RUNS,
    );
  });

  it('the fast outcome decoder agrees with outcomeFromTuple', () => {
    const arbOutcomeTuple = fc.oneof(
      fc.array(arbOddValue, { maxLength: 6 }),
      fc.tuple(fc.integer({ min: 0, max: 10 }), fc.array(arbOddValue, { maxLength: 5 })).map(([c, rest]) => [c, ...rest]),
    );
    fc.assert(
      fc.property(arbOutcomeTuple, (t) => {
        let slow: unknown;
        try {
          slow = outcomeFromTuple(t);
        } catch (e) {
          if (!(e instanceof TraceError)) throw e;
          slow = undefined;
        }
        expect(tryOutcomeFromTuple(t)).toStrictEqual(slow);
      }),
      { ...RUNS, numRuns: 1000 },
    );
  });

  it('the fast encoder writes eventToTuple for valid events and refuses what validateEvent refuses', () => {
    const arbMangledEvent = arbHeader.chain((h) =>
      fc
        .tuple(fc.constant(h), arbEvent(h.config), fc.nat(), arbOddValue, fc.boolean())
        .map(([hh, e, i, v, mangle]) => {
          if (!mangle) return [hh, e] as const;
          const keys = Object.keys(e).filter((k) => k !== 'kind');
          const m: Record<string, unknown> = { ...e };
          if (keys.length) m[keys[i % keys.length]] = v;
          return [hh, m as unknown as TraceEvent] as const;
        }),
    );
    fc.assert(
      fc.property(arbMangledEvent, ([h, e]) => {
        let want: TraceEvent | undefined;
        try {
          want = validateEvent(e, 0, h.config);
        } catch (err) {
          if (!(err instanceof TraceError)) throw err;
        }
        const t = tupleEncoder(h.config)(e);
        if (want === undefined) expect(t).toBeUndefined();
        else {
          expect(t).toBeDefined();
          expect(tupleDecoder(h.config)(t)).toStrictEqual(want);
          expect(t).toStrictEqual(eventToTuple(want));
        }
      }),
      RUNS,
    );
  });

  it('random bytes give a TraceError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        decodeOrTraceError(bytes);
      }),
      RUNS,
    );
  });

  it('random bytes after a valid file header, or after a valid header frame, give a TraceError or a cut-off trace', () => {
    const valid = encodeBinaryTrace(fc.sample(arbHeader, { seed: 1, numRuns: 1 })[0], []);
    const afterFileHeader = valid.subarray(0, FILE_HEADER_SIZE);
    const afterHeaderFrame = valid.subarray(0, valid.length - 20); // the end frame is 20 bytes
    expect(decodeBinaryTrace(afterHeaderFrame).warnings).toHaveLength(1);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), (bytes, early) => {
        const r = decodeOrTraceError(Buffer.concat([early ? afterFileHeader : afterHeaderFrame, bytes]));
        if (!(r instanceof TraceError)) expect(r.events).toEqual([]);
      }),
      RUNS,
    );
  });

  it('frames with valid checksums but random or mangled payloads give a TraceError or valid events', () => {
    const h = fc.sample(arbHeader, { seed: 2, numRuns: 1 })[0];
    const start = encodeBinaryTrace(h, []);
    const prefix = start.subarray(0, start.length - 20);
    const arbPayload = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.array(arbMangledTuple(h), { maxLength: 8 }).map((ts) => Buffer.from(packr.pack(ts))),
    );
    fc.assert(
      fc.property(fc.constantFrom(1, 2, 2, 2, 3), arbPayload, (type, payload) => {
        const r = decodeOrTraceError(Buffer.concat([prefix, frame(type, payload)]));
        if (!(r instanceof TraceError)) for (const e of r.events) expect(validateEvent(e, 0, h.config)).toEqual(e);
      }),
      RUNS,
    );
  });

  it('bit-flipped traces give a TraceError or a prefix of the events with a warning', () => {
    const arbFlipped = arbTrace.chain(({ header, events }) => {
      const buf = encodeBinaryTrace(header, events, { chunkEvents: 5 });
      return fc.tuple(fc.constant(events), fc.constant(buf), fc.array(fc.nat({ max: buf.length * 8 - 1 }), { minLength: 1, maxLength: 4 }));
    });
    fc.assert(
      fc.property(arbFlipped, ([events, buf, bits]) => {
        const b = Buffer.from(buf);
        for (const bit of bits) b[bit >> 3] ^= 1 << (bit & 7);
        const r = decodeOrTraceError(b);
        if (r instanceof TraceError) return;
        expect(r.events).toEqual(events.slice(0, r.events.length));
        if (r.warnings.length === 0) expect(r.events.length).toBe(events.length); // the flips cancelled out
        else expect(r.warnings[0].offset).toEqual(expect.any(Number));
      }),
      RUNS,
    );
  });

  it('a trace cut anywhere gives a TraceError (before the header is complete) or a prefix and a warning', () => {
    const arbCut = arbTrace.chain(({ header, events }) => {
      const buf = encodeBinaryTrace(header, events, { chunkEvents: 3 });
      return fc.tuple(fc.constant(events), fc.constant(buf), fc.nat({ max: buf.length - 1 }));
    });
    fc.assert(
      fc.property(arbCut, ([events, buf, n]) => {
        const r = decodeOrTraceError(buf.subarray(0, n));
        if (r instanceof TraceError) {
          expect(r.message).toMatch(/before the trace header is complete/);
          return;
        }
        expect(r.events).toEqual(events.slice(0, r.events.length));
        expect(r.warnings).toHaveLength(1);
        expect(r.warnings[0].offset).toBeLessThanOrEqual(n);
      }),
      RUNS,
    );
  });

  it('a frame claiming any length fails or reads as cut off, at once', () => {
    const h = fc.sample(arbHeader, { seed: 3, numRuns: 1 })[0];
    const start = encodeBinaryTrace(h, []);
    const prefix = start.subarray(0, start.length - 20);
    const t0 = Date.now();
    fc.assert(
      fc.property(fc.constantFrom(1, 2, 3), fc.nat({ max: 0xffffffff }), fc.uint8Array({ maxLength: 64 }), (type, len, tail) => {
        const head = Buffer.alloc(9);
        head[0] = type;
        head.writeUInt32LE(len, 1);
        const r = decodeOrTraceError(Buffer.concat([prefix, head, tail]));
        if (!(r instanceof TraceError)) {
          expect(len).toBeGreaterThan(tail.length);
          expect(r.warnings).toHaveLength(1);
        }
      }),
      { ...RUNS, numRuns: 500 },
    );
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});
