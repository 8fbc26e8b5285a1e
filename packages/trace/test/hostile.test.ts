/**
 * Hostile input: shape checks before decoding, one-line clipped messages,
 * lossless strings, regular files only, and the atomic-write helper.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { crc32 } from 'zlib';
import { Packr } from 'msgpackr';
import {
  AtomicFile,
  TraceError,
  TraceEvent,
  checkOutputPath,
  cleanStaleTemps,
  decodeBinaryTrace,
  decodeTextTrace,
  encodeBinaryTrace,
  formatTextTrace,
  headerToPlain,
  makeHeader,
  openTrace,
  parseTextTrace,
  readTraceFile,
  writeFileAtomic,
  writeTraceFile,
} from '@nvx/trace';

const packr = new Packr({ useRecords: false, int64AsType: 'bigint' });
const pk = (v: unknown) => Buffer.from(packr.pack(v));

function frame(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h[0] = type;
  h.writeUInt32LE(payload.length, 1);
  h.writeUInt32LE(crc32(payload), 5);
  return Buffer.concat([h, payload]);
}
const fileHeader = () => Buffer.from([0x4e, 0x56, 0x58, 0x54, 1, 0, 0, 0]);
const goodHeader = () => frame(1, pk(headerToPlain(makeHeader())));
const withHeader = (payload: Buffer) => Buffer.concat([fileHeader(), frame(1, payload), frame(3, pk({ events: 0 }))]);
const withEvents = (payload: Buffer, n = 0) => Buffer.concat([fileHeader(), goodHeader(), frame(2, payload), frame(3, pk({ events: n }))]);

function traceError(f: () => unknown): TraceError {
  try {
    f();
  } catch (e) {
    if (e instanceof TraceError) return e;
    throw new Error(`expected a TraceError, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  throw new Error('expected a TraceError');
}

/** A message the way a user sees it: one line, short, in the trace's terms. */
function expectGoodMessage(e: TraceError): void {
  expect(e.message).not.toMatch(/[\n\r]/);
  expect(Buffer.byteLength(e.message)).toBeLessThanOrEqual(960);
  expect(e.message).not.toMatch(/Maximum call stack|Cannot read|Cannot convert|TypeError|RangeError|undefined/);
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-hostile-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('binary payloads are checked on their bytes before they are decoded', () => {
  const M = 4 * 1024 * 1024;

  it('nesting far deeper than the format allows is refused at the first level too deep', () => {
    const deep = Buffer.concat([Buffer.alloc(M, 0x91), Buffer.from([0xc0])]);
    const e = traceError(() => decodeBinaryTrace(withEvents(deep)));
    expect(e.where.index).toBe(0);
    expect(e.message).toMatch(/malformed event tuple \(tuple value 0, outcome value 0\): a list of 1 element, not/);
    expectGoodMessage(e);
    const deepMaps = Buffer.concat([Buffer.alloc(3 * (M / 3), Buffer.from([0x81, 0xa1, 0x61])), Buffer.from([0xc0])]);
    const h = traceError(() => decodeBinaryTrace(withHeader(deepMaps)));
    expect(h.where.field).toBe('a.a.a'); // an unknown header key may hold two levels; the third is refused
    expectGoodMessage(h);
  });

  it('counts are bounded by the shape before any element is built', () => {
    // millions of one-byte empty maps as memslots: refused by the count, not after building them
    const n = M;
    const memslots = Buffer.concat([Buffer.from([0x82, 0xa7]), Buffer.from('version'), pk(1), Buffer.from([0xa6]), Buffer.from('config'), Buffer.from([0x81, 0xa8]), Buffer.from('memslots'), Buffer.from([0xdd]), Buffer.from([n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]), Buffer.alloc(n, 0x80)]);
    const e = traceError(() => decodeBinaryTrace(withHeader(memslots)));
    expect(e.where.field).toBe('config.memslots');
    expect(e.message).toMatch(/more than the 512 allowed/);
    // a count larger than the bytes left is a lie told before the walk
    const lie = withHeader(Buffer.concat([Buffer.from([0x81, 0xa6]), Buffer.from('config'), Buffer.from([0x81, 0xa8]), Buffer.from('memslots'), Buffer.from([0xdd, 0, 0, 0x01, 0xff, 0x80])]));
    expect(traceError(() => decodeBinaryTrace(lie)).message).toMatch(/a list of 511 elements in the 1 bytes left/);
  });

  it('a header field of the wrong type is refused by its type byte: a provenance blob is never walked', () => {
    const n = M;
    const blob = Buffer.concat([Buffer.from([0x82, 0xa7]), Buffer.from('version'), pk(1), Buffer.from([0xaa]), Buffer.from('provenance'), Buffer.from([0xc6, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]), Buffer.alloc(n)]);
    const e = traceError(() => decodeBinaryTrace(withHeader(blob)));
    expect(e.where.field).toBe('provenance');
    expect(e.message).toMatch(/a binary blob of 4194304 bytes, not a map/);
  });

  it('reserved keys, repeated keys, non-string keys and strings that are not UTF-8 are refused', () => {
    const cases: [Buffer, RegExp, string][] = [
      [pk({ version: 1, provenance: { ['__proto__']: 'x' } }), /reserved key "__proto__"/, 'provenance'],
      [Buffer.concat([Buffer.from([0x82, 0xa7]), Buffer.from('version'), pk(1), Buffer.from([0xa7]), Buffer.from('version'), pk(1)]), /the key "version" twice/, ''],
      [Buffer.concat([Buffer.from([0x81, 0x01, 0x01])]), /a map key that is an integer, not a string/, ''],
      [Buffer.concat([Buffer.from([0x82, 0xa7]), Buffer.from('version'), pk(1), Buffer.from([0xaa]), Buffer.from('provenance'), Buffer.from([0x81, 0xa1, 0x6b, 0xa3, 0xed, 0xa0, 0x80])]), /not valid UTF-8/, 'provenance.k'],
    ];
    for (const [payload, re, field] of cases) {
      const e = traceError(() => decodeBinaryTrace(withHeader(payload)));
      expect(e.message).toMatch(re);
      if (field) expect(e.where.field).toBe(field);
      expectGoodMessage(e);
    }
  });

  it('a decoded map with a toString key never turns into a runtime error', () => {
    const e = traceError(() => decodeBinaryTrace(withHeader(pk({ version: 1, config: { vcpus: { toString: 1 } } }))));
    expect(e.message).toMatch(/config.vcpus.*a map/);
    expectGoodMessage(e);
  });
});

describe('messages', () => {
  it('are one line and clipped whatever the input holds', () => {
    const long = 'x'.repeat(60000);
    const cases = [
      `nvx-trace 1\nevents\nl1.vmxon ${long}\n`,
      `nvx-trace 1\nevents\nl1.vmxon 0x${'f'.repeat(60000)}\n`,
      `nvx-trace 1\nevents\n${long}\n`,
      `nvx-trace 1\nconfig ${long}=1\nevents\n`,
      `nvx-trace 1\nmeta "${long}" v\nevents\n`,
    ];
    for (const text of cases) {
      const e = traceError(() => parseTextTrace(text, `evil\nname${'y'.repeat(5000)}.nvx`));
      expectGoodMessage(e);
      expect(e.message).toMatch(/^evil\\nname/);
    }
    const e = traceError(() => parseTextTrace(`nvx-trace 1\nevents\nl1.vmxon ${long}\n`));
    expect(e.message).toContain('(60000 characters)');
  });
});

describe('lossless strings', () => {
  it('every string the format accepts comes back unchanged through both forms', () => {
    const strings = ['', 'a b', '"quoted" \\ back', 'tab\tnew\nline\r', '\u0000\u001f\u007f', 'ü 🙂 \u2028 \ufeff', '\ud83d\ude00', 'x'.repeat(4096)];
    const provenance: Record<string, string> = {};
    strings.forEach((s, i) => (provenance[`k${i}`] = s));
    provenance['key with "quotes" and ü'] = 'v';
    const header = makeHeader({}, provenance);
    const events = strings.map((why) => ({ kind: 'l1.vmxoff', vcpu: 0, expect: { k: 'ignored', why } }) as TraceEvent);
    const text = formatTextTrace(header, events);
    const viaText = parseTextTrace(text);
    expect(viaText.header).toEqual(header);
    expect(viaText.events).toEqual(events);
    const viaBinary = decodeBinaryTrace(encodeBinaryTrace(viaText.header, viaText.events));
    expect(viaBinary.header).toEqual(header);
    expect(viaBinary.events).toEqual(events);
    expect(formatTextTrace(viaBinary.header, viaBinary.events)).toBe(text);
  });

  it('a lone surrogate is refused clearly by both writers and the text reader, never turned into U+FFFD', () => {
    const bad = makeHeader({}, { note: 'a\udc00b' });
    expect(traceError(() => encodeBinaryTrace(bad, [])).message).toMatch(/provenance.note.*lone surrogate \(\\udc00 at character 1\)/);
    expect(traceError(() => formatTextTrace(bad, []) && parseTextTrace(formatTextTrace(bad, []))).message).toMatch(/line \d+, field 'provenance.note'.*lone surrogate/);
    const why = { kind: 'l1.vmxoff', vcpu: 0, expect: { k: 'ignored', why: '\ud800' } } as TraceEvent;
    expect(traceError(() => encodeBinaryTrace(makeHeader(), [why])).where.field).toBe('expect');
    expect(traceError(() => parseTextTrace('nvx-trace 1\nevents\nl1.vmxoff expect ignored "\\ud800"\n')).message).toMatch(/line 3, field 'expect'.*lone surrogate/);
  });

  it('reserved provenance keys are refused, never silently dropped', () => {
    for (const k of ['__proto__', 'constructor', 'prototype']) {
      const e = traceError(() => parseTextTrace(`nvx-trace 1\nmeta ${k} "x"\nevents\n`));
      expect(e.message).toMatch(new RegExp(`line 2, field 'provenance.${k}': '${k}' is a reserved key`));
    }
  });

  it('text that is not UTF-8 is an error naming the line, in memory and streaming', async () => {
    const bytes = Buffer.concat([Buffer.from('nvx-trace 1\nmeta k "a'), Buffer.from([0xff]), Buffer.from('"\nevents\n')]);
    expect(traceError(() => decodeTextTrace(bytes)).message).toMatch(/^line 2: not valid UTF-8 \(bytes ff/);
    const file = path.join(dir, 'latin1.nvx');
    fs.writeFileSync(file, bytes);
    let err: unknown;
    await openTrace(file).catch((e: unknown) => (err = e));
    expect(err).toBeInstanceOf(TraceError);
    expect((err as TraceError).where).toMatchObject({ file, line: 2 });
  });
});

describe('files', () => {
  it('a FIFO or a device is refused at once, never read', async () => {
    const fifo = path.join(dir, 'pipe.nvx');
    if (spawnSync('mkfifo', [fifo]).status !== 0) return; // no mkfifo here
    for (const f of [fifo, '/dev/zero']) {
      let err: unknown;
      await readTraceFile(f).catch((e: unknown) => (err = e));
      expect((err as TraceError).message).toMatch(/is a (FIFO|device), not a regular file/);
    }
    let err: unknown;
    await openTrace(fifo, { form: 'binary' }).catch((e: unknown) => (err = e));
    expect((err as TraceError).message).toMatch(/FIFO/);
  });

  it('output paths are checked before the work', () => {
    expect(traceError(() => checkOutputPath(path.join(dir, 'missing', 'x.nvx'))).message).toMatch(/the directory '.*missing' does not exist/);
    expect(traceError(() => checkOutputPath(dir)).message).toMatch(/the output is a directory/);
    expect(traceError(() => checkOutputPath('/dev/null')).message).toMatch(/not a regular file/);
    expect(() => checkOutputPath(path.join(dir, 'fine.nvx'))).not.toThrow();
  });

  it('every writer goes through a hidden temporary file and leaves nothing on an error', async () => {
    const out = path.join(dir, 'w', 'x.nvxt');
    fs.mkdirSync(path.dirname(out));
    const f = AtomicFile.open(out);
    expect(path.basename(f.tmpPath)).toMatch(new RegExp(`^\\.x\\.nvxt\\.${process.pid}\\.[0-9a-f]{8}\\.tmp$`));
    f.write('partial');
    f.abort();
    await expect(writeTraceFile(out, makeHeader(), [{ kind: 'l1.vmxoff', vcpu: 7 } as TraceEvent])).rejects.toThrow(TraceError);
    expect(fs.readdirSync(path.dirname(out))).toEqual([]);
    writeFileAtomic(out, 'done');
    expect(fs.readdirSync(path.dirname(out))).toEqual(['x.nvxt']);
  });

  it('stale temporary files are removed: a dead writer any time, a live one only when old', () => {
    const d = path.join(dir, 'stale');
    fs.mkdirSync(d);
    const dead = spawnSync(process.execPath, ['-e', 'process.pid']).pid!; // a pid that has just exited
    const names = [`.a.nvxt.${dead}.0badf00d.tmp`, `.b.nvx.${process.pid}.00000000.tmp`, `.c.nvx.${process.pid}.11111111.tmp`, 'keep.nvx', '.d.nvx.tmp'];
    for (const n of names) fs.writeFileSync(path.join(d, n), 'x');
    const old = (Date.now() - 2 * 24 * 3600 * 1000) / 1000;
    fs.utimesSync(path.join(d, names[2]), old, old);
    expect(cleanStaleTemps(d)).toBe(2);
    expect(fs.readdirSync(d).sort()).toEqual([names[1], '.d.nvx.tmp', 'keep.nvx'].sort());
  });

  it('a writer killed by SIGTERM removes its temporary file; one killed by SIGKILL is cleaned by the next writer', async () => {
    const script = path.join(dir, 'writer.ts');
    const atomic = path.resolve(__dirname, '..', 'src', 'atomic.ts');
    fs.writeFileSync(script, `import { AtomicFile } from ${JSON.stringify(atomic)};\nconst f = AtomicFile.open(process.argv[2]);\nf.write('x');\nprocess.stdout.write(f.tmpPath + '\\n');\nsetInterval(() => undefined, 1000);\n`);
    const run = async (sig: NodeJS.Signals, out: string): Promise<{ tmp: string; signal: string | null }> => {
      const child = spawn(process.execPath, ['--import', 'tsx', script, out], { stdio: ['ignore', 'pipe', 'inherit'] });
      const tmp = await new Promise<string>((resolve) => child.stdout!.once('data', (c: Buffer) => resolve(c.toString().trim())));
      expect(fs.existsSync(tmp)).toBe(true);
      const done = new Promise<string | null>((resolve) => child.on('close', (_code, signal) => resolve(signal)));
      child.kill(sig);
      return { tmp, signal: await done };
    };
    const d = path.join(dir, 'sig');
    fs.mkdirSync(d);
    const term = await run('SIGTERM', path.join(d, 'a.nvx'));
    expect(term.signal).toBe('SIGTERM');
    expect(fs.existsSync(term.tmp)).toBe(false);
    const killed = await run('SIGKILL', path.join(d, 'b.nvx'));
    expect(fs.existsSync(killed.tmp)).toBe(true);
    writeFileAtomic(path.join(d, 'c.nvx'), 'next run');
    expect(fs.readdirSync(d)).toEqual(['c.nvx']);
  }, 30000);
});
