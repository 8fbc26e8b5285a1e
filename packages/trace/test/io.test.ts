import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  TraceError,
  TraceEvent,
  createTraceWriter,
  detectTraceForm,
  encodeBinaryTrace,
  formatTextTrace,
  makeHeader,
  openTrace,
  readTraceFile,
  traceFormOf,
  writeTraceFile,
} from '@nvx/trace';

const header = makeHeader({ vcpus: 2 }, { generator: 'io-test' });
const events: TraceEvent[] = [
  { kind: 'l1.vmxon', vcpu: 0, gpa: 0x1000n, expect: { k: 'ok' } },
  { kind: 'l1.vmwrite', vcpu: 1, field: 0x681e, value: 0xffffffff81000000n },
  { kind: 'host.page-migrate', gfn: 0x42n },
  { kind: 'l2.rdmsr', vcpu: 1, msr: 0xc0000100, expect: { k: 'exit', reason: 31, qual: 0n } },
];
const many: TraceEvent[] = Array.from({ length: 10000 }, (_, i) => ({ kind: 'l1.write', vcpu: i % 2, gpa: BigInt(i * 8), size: 8, value: BigInt(i) }) as TraceEvent);

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-io-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const p = (name: string) => path.join(dir, name);
const leftovers = () => fs.readdirSync(dir).filter((n) => n.includes('.tmp'));

async function rejection(promise: Promise<unknown>): Promise<TraceError> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof TraceError) return e;
    throw new Error(`expected a TraceError, got ${String(e)}`);
  }
  throw new Error('expected a rejection');
}

describe('trace files', () => {
  test('the form comes from the extension', () => {
    expect(traceFormOf('a/b.nvxt')).toBe('binary');
    expect(traceFormOf('b.NVX')).toBe('text');
    expect(traceFormOf('b.trace')).toBeUndefined();
    expect(traceFormOf('b.nvx.bak')).toBeUndefined();
  });

  test.each(['t.nvx', 't.nvxt'])('write then read %s', async (name) => {
    const n = await writeTraceFile(p(name), header, events);
    expect(n).toBe(events.length);
    const r = await readTraceFile(p(name));
    expect(r.form).toBe(traceFormOf(name));
    expect(r.header).toEqual(header);
    expect(r.events).toEqual(events);
    expect(r.warnings).toEqual([]);
    expect(leftovers()).toEqual([]);
  });

  test('the text file is the canonical text form', async () => {
    await writeTraceFile(p('canon.nvx'), header, events);
    expect(fs.readFileSync(p('canon.nvx'), 'utf8')).toBe(formatTextTrace(header, events));
  });

  test('other names are sniffed; an explicit form wins', async () => {
    fs.writeFileSync(p('bin.dat'), encodeBinaryTrace(header, events));
    fs.writeFileSync(p('txt.dat'), formatTextTrace(header, events));
    expect(await detectTraceForm(p('bin.dat'))).toBe('binary');
    expect(await detectTraceForm(p('txt.dat'))).toBe('text');
    expect((await readTraceFile(p('bin.dat'))).events).toEqual(events);
    expect((await readTraceFile(p('txt.dat'))).events).toEqual(events);
    // a binary trace misnamed .nvx reads with form: 'binary'
    fs.writeFileSync(p('misnamed.nvx'), encodeBinaryTrace(header, events));
    expect((await readTraceFile(p('misnamed.nvx'), { form: 'binary' })).events).toEqual(events);
    await expect(readTraceFile(p('misnamed.nvx'))).rejects.toThrow(TraceError);
    await writeTraceFile(p('out.dat'), header, events, { form: 'text' });
    expect(fs.readFileSync(p('out.dat'), 'utf8')).toBe(formatTextTrace(header, events));
  });

  test('streaming: chunks of both forms, async iterables in', async () => {
    async function* gen() {
      yield* many;
    }
    for (const name of ['big.nvx', 'big.nvxt']) {
      await writeTraceFile(p(name), header, gen());
      const r = await openTrace(p(name));
      let n = 0;
      let chunks = 0;
      for await (const c of r.chunks()) {
        n += c.length;
        chunks++;
      }
      await r.close();
      expect(n).toBe(many.length);
      expect(chunks).toBeGreaterThan(1);
    }
  });

  test('a cut-off binary trace reads its complete prefix with a warning', async () => {
    const buf = encodeBinaryTrace(header, many, { chunkEvents: 1000 });
    fs.writeFileSync(p('cut.nvxt'), buf.subarray(0, Math.floor(buf.length / 2)));
    const r = await readTraceFile(p('cut.nvxt'));
    expect(r.events.length).toBeGreaterThan(0);
    expect(r.events.length % 1000).toBe(0);
    expect(r.events).toEqual(many.slice(0, r.events.length));
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0].offset).toEqual(expect.any(Number));
  });

  test('missing files, directories and unreadable files are TraceErrors naming the file', async () => {
    const missing = await rejection(readTraceFile(p('nope.nvxt')));
    expect(missing.where.file).toBe(p('nope.nvxt'));
    expect(missing.message).toMatch(/no such file/);
    expect((await rejection(readTraceFile(p('nope.dat')))).where.file).toBe(p('nope.dat'));
    fs.mkdirSync(p('adir.nvx'));
    const isDir = await rejection(openTrace(p('adir.nvx')));
    expect(isDir.message).toBe(`${p('adir.nvx')}: is a directory, not a trace file`);
    if (process.getuid?.() !== 0) {
      fs.writeFileSync(p('secret.nvx'), formatTextTrace(header, events));
      fs.chmodSync(p('secret.nvx'), 0o000);
      expect((await rejection(readTraceFile(p('secret.nvx')))).message).toMatch(/permission denied/);
    }
    const noDir = await rejection(writeTraceFile(p('no/such/dir.nvx'), header, events));
    expect(noDir.where.file).toBe(p('no/such/dir.nvx'));
  });

  test('a corrupt text trace names the file and line', async () => {
    fs.writeFileSync(p('bad.nvx'), 'nvx-trace 1\nevents\nl1.vmxon 0x1000\nl1.vmxon\n');
    const e = await rejection(readTraceFile(p('bad.nvx')));
    expect(e.where).toMatchObject({ file: p('bad.nvx'), line: 4, field: 'gpa' });
  });

  test('a failed write leaves nothing under the name, and an older file there untouched', async () => {
    for (const name of ['keep.nvx', 'keep.nvxt']) {
      await writeTraceFile(p(name), header, events);
      const before = fs.readFileSync(p(name));
      const bad = [...events, { kind: 'l1.vmxoff', vcpu: 7 } as TraceEvent];
      const e = await rejection(writeTraceFile(p(name), header, bad));
      expect(e.where.file).toBe(p(name));
      expect(fs.readFileSync(p(name))).toEqual(before);
      const e2 = await rejection(writeTraceFile(p('new-' + name), header, bad));
      expect(e2.where.field).toBe('vcpu');
      expect(fs.existsSync(p('new-' + name))).toBe(false);
    }
    expect(leftovers()).toEqual([]);
  });

  test('a writer needs a form it can tell', () => {
    expect(() => createTraceWriter(p('x.out'), header)).toThrow(/cannot tell the trace form/);
    expect(() => createTraceWriter(p('x.out'), header, { form: 'json' as never })).toThrow(/unknown trace form/);
  });
});
