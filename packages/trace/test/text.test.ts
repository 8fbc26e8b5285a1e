import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  MAX_LINE_LENGTH,
  TextTraceReader,
  TextTraceWriter,
  TraceError,
  TraceEvent,
  closestNames,
  defaultConfig,
  formatEvent,
  formatTextTrace,
  makeHeader,
  parseEventLine,
  parseTextTrace,
} from '@nvx/trace';

const HAND = `# a hand-written scenario
nvx-trace 1                                  # magic and version

config evmcs=true shadowVmcs=false vcpus=2   # flags and counts
memslot 0 gfn=0x0 npages=0x400 flags=0
meta generator "hand"                        # provenance
meta note "a # that is not a comment"
events                                       # ends the header
l1.vmxon 0x1000
l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x10000000   expect ok
   # an indented comment line

l1.msr-bitmap 0x3000 MSR_FS_BASE read false
@1 l2.rdmsr MSR_FS_BASE                           expect exit MSR_READ qual=0x0
l2.cpuid leaf=0x1 subleaf=0 cpl=3
host.memslot-create 1 0x1000 16 0
l1.vmwrite GUEST_RIP 0xffffffff81000000           # the kernel text base
l1.vmread 0x4402 expect value 0x1f
`;

const HAND_EVENTS: TraceEvent[] = [
  { kind: 'l1.vmxon', vcpu: 0, gpa: 0x1000n },
  { kind: 'l1.vmwrite', vcpu: 0, field: 0x4002, value: 0x10000000n, expect: { k: 'ok' } },
  { kind: 'l1.msr-bitmap', vcpu: 0, gpa: 0x3000n, msr: 0xc0000100, access: 'read', intercept: false },
  { kind: 'l2.rdmsr', vcpu: 1, msr: 0xc0000100, expect: { k: 'exit', reason: 31, qual: 0n } },
  { kind: 'l2.cpuid', vcpu: 0, leaf: 1, subleaf: 0, cpl: 3 },
  { kind: 'host.memslot-create', slot: 1, gfn: 0x1000n, npages: 16, flags: 0 },
  { kind: 'l1.vmwrite', vcpu: 0, field: 0x681e, value: 0xffffffff81000000n },
  { kind: 'l1.vmread', vcpu: 0, field: 0x4402, expect: { k: 'value', value: 0x1fn } },
];

const CANONICAL = `nvx-trace 1
config vcpus=2 pcpus=1
config evmcs=true shadowVmcs=false vmwriteAnyField=true cpuidFaultHw=true unmanagedMemory=false
config apicv=true pml=true preemptionTimer=true l2CpuidFaultArchitectural=false
memslot 0 gfn=0x0 npages=0x400 flags=0
meta generator "hand"
meta note "a # that is not a comment"
events
l1.vmxon 0x1000
l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x10000000  expect ok
l1.msr-bitmap 0x3000 MSR_FS_BASE read false
@1 l2.rdmsr MSR_FS_BASE                         expect exit MSR_READ qual=0x0
l2.cpuid 0x1 0x0 3
host.memslot-create 1 0x1000 0x10 0
l1.vmwrite GUEST_RIP 0xffffffff81000000
l1.vmread VM_EXIT_REASON                        expect value 0x1f
`;

/** The TraceError thrown by fn (fails the test if none or another type). */
function traceError(fn: () => unknown): TraceError {
  try {
    fn();
  } catch (e) {
    if (e instanceof TraceError) return e;
    throw new Error(`expected a TraceError, got ${String(e)}`);
  }
  throw new Error('expected a TraceError, nothing was thrown');
}

const HEAD = 'nvx-trace 1\nconfig vcpus=2\nmemslot 0 gfn=0 npages=0x10\nevents\n';
/** Parse HEAD + one event line (on line 5) and return the error. */
function lineError(line: string): TraceError {
  return traceError(() => parseTextTrace(HEAD + line + '\n', 'bad.nvx'));
}

describe('text form: parsing', () => {
  test('a hand-written trace with comments parses to the expected events', () => {
    const t = parseTextTrace(HAND, 'hand.nvx');
    expect(t.events).toEqual(HAND_EVENTS);
    expect(t.header.version).toBe(1);
    expect(t.header.config).toEqual(defaultConfig({ evmcs: true, shadowVmcs: false, vcpus: 2 }));
    expect(t.header.provenance).toEqual({ generator: 'hand', note: 'a # that is not a comment' });
  });

  test('the printer is canonical and stable', () => {
    const t = parseTextTrace(HAND);
    const printed = formatTextTrace(t.header, t.events);
    expect(printed).toBe(CANONICAL);
    const again = parseTextTrace(printed);
    expect(again.events).toEqual(HAND_EVENTS);
    expect(formatTextTrace(again.header, again.events)).toBe(printed);
  });

  test('0xffffffff81000000 and 2^64-1 round-trip exactly', () => {
    for (const v of [0xffffffff81000000n, 0xffffffffffffffffn, 0x100000000n]) {
      const e: TraceEvent = { kind: 'l1.wrmsr', vcpu: 0, msr: 0xc0000100, value: v, expect: { k: 'exit', reason: 32, qual: v } };
      const line = formatEvent(e);
      expect(line).toContain('0x' + v.toString(16));
      expect(parseEventLine(line)).toEqual(e);
    }
    expect(parseEventLine('l1.wrmsr MSR_FS_BASE 18446744071578845184')).toMatchObject({ value: 0xffffffff81000000n });
  });

  test('without memslot lines the world has no memslots; without config lines it has the defaults', () => {
    const t = parseTextTrace('nvx-trace 1\nevents\n');
    expect(t.header.config.memslots).toEqual([]);
    expect({ ...t.header.config, memslots: undefined }).toEqual({ ...defaultConfig(), memslots: undefined });
    expect(t.events).toEqual([]);
  });

  test('values: named fields in any order, decimal or hex, names or numbers, case-insensitive symbolic names', () => {
    const cfg = defaultConfig({ vcpus: 4, pcpus: 2 });
    expect(parseEventLine('@3 l1.msr-bitmap intercept=true access=write msr=0x48 gpa=4096', cfg)).toEqual({
      kind: 'l1.msr-bitmap',
      vcpu: 3,
      gpa: 4096n,
      msr: 0x48,
      access: 'write',
      intercept: true,
    });
    expect(parseEventLine('l1.vmread guest_rip', cfg)).toEqual({ kind: 'l1.vmread', vcpu: 0, field: 0x681e });
    expect(parseEventLine('l2.wrmsr 0xc0000100 1', cfg)).toEqual({ kind: 'l2.wrmsr', vcpu: 0, msr: 0xc0000100, value: 1n });
    expect(parseEventLine('host.vcpu-load 1 # a comment', cfg)).toEqual({ kind: 'host.vcpu-load', vcpu: 0, cpu: 1 });
    expect(parseEventLine('@2 host.vcpu-load cpu=1', cfg)).toEqual({ kind: 'host.vcpu-load', vcpu: 2, cpu: 1 });
    expect(parseEventLine('l1.vmlaunch expect vmfail-valid 7')).toEqual({ kind: 'l1.vmlaunch', vcpu: 0, expect: { k: 'vmfail-valid', error: 7 } });
    expect(parseEventLine('l2.vmcall expect ignored "not in L2: #1"')).toEqual({ kind: 'l2.vmcall', vcpu: 0, expect: { k: 'ignored', why: 'not in L2: #1' } });
  });

  test('printing: @N only for vCPUs other than 0; u32/u64 in hex, cpl/size/u8 in decimal; unknown names in hex', () => {
    expect(formatEvent({ kind: 'l2.cpuid', vcpu: 0, leaf: 0xd, subleaf: 1, cpl: 3 })).toBe('l2.cpuid 0xd 0x1 3');
    expect(formatEvent({ kind: 'l1.write', vcpu: 5, gpa: 0x2000n, size: 8, value: 255n })).toBe('@5 l1.write 0x2000 8 0xff');
    expect(formatEvent({ kind: 'l1.vmwrite', vcpu: 0, field: 0x7ffe, value: 0n })).toBe('l1.vmwrite 0x7ffe 0x0');
    expect(formatEvent({ kind: 'l1.rdmsr', vcpu: 0, msr: 0x12345 })).toBe('l1.rdmsr 0x12345');
    expect(formatEvent({ kind: 'host.memslot-flags', slot: 3, flags: 2 })).toBe('host.memslot-flags 3 2');
    expect(formatEvent({ kind: 'l2.apic-write', vcpu: 0, offset: 0x80, value: 0x10 })).toBe('l2.apic-write 0x80 0x10');
    expect(formatEvent({ kind: 'host.task-cpuid-fault', task: 7, enable: true })).toBe('host.task-cpuid-fault 7 true');
  });

  test('a header key that is not a plain word is quoted', () => {
    const h = makeHeader({}, { 'source file': 'a "b"\nc', seed: '' });
    const text = formatTextTrace(h, []);
    expect(text).toContain('meta "source file" "a \\"b\\"\\nc"');
    expect(parseTextTrace(text).header.provenance).toEqual(h.provenance);
  });

  test('a byte-order mark and CRLF line ends are accepted', () => {
    const t = parseTextTrace('\ufeffnvx-trace 1\r\nevents\r\nl1.vmxoff\r\n');
    expect(t.events).toEqual([{ kind: 'l1.vmxoff', vcpu: 0 }]);
  });

  test('closest names', () => {
    expect(closestNames('MSR_FS_BSE', ['MSR_FS_BASE', 'MSR_GS_BASE', 'MSR_EFER'])[0]).toBe('MSR_FS_BASE');
    expect(closestNames('zzzzzzzz', ['MSR_FS_BASE'])).toEqual([]);
  });
});

describe('text form: errors name the file, the line and the field', () => {
  test('unknown kind, with the closest kinds', () => {
    const e = lineError('l2.rdmrs MSR_FS_BASE');
    expect(e.where).toMatchObject({ file: 'bad.nvx', line: 5, field: 'kind' });
    expect(e.message).toMatch(/^bad\.nvx, line 5, field 'kind': unknown event kind 'l2\.rdmrs'.*l2\.rdmsr/);
  });

  test('unknown field name', () => {
    const e = lineError('l1.wrmsr msr=MSR_FS_BASE valeu=1');
    expect(e.where).toMatchObject({ file: 'bad.nvx', line: 5, field: 'valeu' });
    expect(e.message).toMatch(/unknown field for l1\.wrmsr.*did you mean value/);
  });

  test('unknown MSR name, with the closest names', () => {
    const e = lineError('l2.rdmsr MSR_FS_BSE');
    expect(e.where).toMatchObject({ line: 5, field: 'msr' });
    expect(e.message).toMatch(/unknown MSR 'MSR_FS_BSE' \(did you mean MSR_FS_BASE/);
  });

  test('unknown VMCS field name, with the closest names', () => {
    const e = lineError('l1.vmread GUEST_RIPP');
    expect(e.where).toMatchObject({ line: 5, field: 'field' });
    expect(e.message).toMatch(/unknown VMCS field 'GUEST_RIPP' \(did you mean GUEST_RIP/);
  });

  test('missing value', () => {
    const e = lineError('l1.vmwrite GUEST_RIP');
    expect(e.where).toMatchObject({ line: 5, field: 'value' });
    expect(e.message).toMatch(/missing value/);
  });

  test('extra value', () => {
    const e = lineError('l1.vmxon 0x1000 0x2000');
    expect(e.where).toMatchObject({ file: 'bad.nvx', line: 5 });
    expect(e.message).toMatch(/extra value '0x2000': l1\.vmxon takes <gpa>/);
  });

  test('a field given twice, and a positional value after a named one', () => {
    expect(lineError('l1.vmxon gpa=1 gpa=2').where).toMatchObject({ line: 5, field: 'gpa' });
    expect(lineError('l1.wrmsr msr=0x10 5').message).toMatch(/positional value '5' after a named one/);
  });

  test('out-of-range values', () => {
    expect(lineError('l1.vmxon 0x10000000000000000').where).toMatchObject({ line: 5, field: 'gpa' });
    expect(lineError('l1.vmxon 0x10000000000000000').message).toMatch(/out of range for u64/);
    expect(lineError('host.memslot-flags 1 256').where).toMatchObject({ line: 5, field: 'flags' });
    expect(lineError('l2.cpuid 1 0 4').where).toMatchObject({ line: 5, field: 'cpl' });
    expect(lineError('l1.read 0x1000 3').where).toMatchObject({ line: 5, field: 'size' });
    expect(lineError('l1.rdmsr 0x100000000').where).toMatchObject({ line: 5, field: 'msr' });
    const v = lineError('@2 l1.vmxoff');
    expect(v.where).toMatchObject({ line: 5, field: 'vcpu' });
    expect(v.message).toMatch(/below config\.vcpus \(2\)/);
  });

  test('ill-typed values', () => {
    expect(lineError('l1.vmxon gpa').where).toMatchObject({ line: 5, field: 'gpa' });
    expect(lineError('l1.vmxon -1').message).toMatch(/not a number/);
    expect(lineError('host.task-cpuid-fault 1 yes').where).toMatchObject({ field: 'enable' });
    expect(lineError('host.msr-intercept 0x48 execute true').where).toMatchObject({ field: 'access' });
    expect(lineError('l1.vmxon "0x1000"').message).toMatch(/unexpected string/);
  });

  test('@N on a kind without a vCPU, and vcpu= instead of @N', () => {
    expect(lineError('@1 host.page-zap 0x10').where).toMatchObject({ line: 5, field: 'vcpu' });
    expect(lineError('l1.vmxoff vcpu=1').message).toMatch(/@N/);
  });

  test('bad expect clauses', () => {
    for (const bad of ['l1.vmxoff expect', 'l1.vmxoff expect okay', 'l1.vmxoff expect value', 'l1.vmxoff expect exit NOT_A_REASON', 'l1.vmxoff expect ok 1', 'l1.vmxoff expect ignored a b']) {
      const e = lineError(bad);
      expect(e.where).toMatchObject({ file: 'bad.nvx', line: 5, field: 'expect' });
    }
    expect(lineError('l1.vmxoff expect exit MSR_READ qual=zz').message).toMatch(/qual/);
    expect(lineError('l1.vmxoff expect ignored "x').message).toBe('bad.nvx, line 5: unterminated string (a quote is missing)');
  });

  test('header errors', () => {
    const h = (text: string) => traceError(() => parseTextTrace(text, 'h.nvx'));
    expect(h('').message).toMatch(/h\.nvx, line 1: empty trace/);
    expect(h('# only a comment\n\n').message).toMatch(/empty trace/);
    expect(h('l1.vmxoff\n').message).toMatch(/line 1: not an nvx text trace/);
    expect(h('nvx-trace 2\nevents\n').where).toMatchObject({ line: 1, field: 'version' });
    expect(h('nvx-trace 2\nevents\n').message).toMatch(/newer/);
    const k = h('nvx-trace 1\nconfig evmsc=true\nevents\n');
    expect(k.where).toMatchObject({ line: 2, field: 'config.evmsc' });
    expect(k.message).toMatch(/did you mean evmcs/);
    expect(h('nvx-trace 1\nconfig vcpus=yes\nevents\n').where).toMatchObject({ line: 2, field: 'config.vcpus' });
    expect(h('nvx-trace 1\n\nconfig vcpus=0\nevents\n').where).toMatchObject({ line: 3, field: 'config.vcpus' });
    expect(h('nvx-trace 1\nconfig evmcs=1\nevents\n').where).toMatchObject({ line: 2, field: 'config.evmcs' });
    expect(h('nvx-trace 1\nconfig vcpus=2\nconfig vcpus=3\nevents\n').where).toMatchObject({ line: 3, field: 'config.vcpus' });
    expect(h('nvx-trace 1\nconfig memslots=1\nevents\n').message).toMatch(/memslot lines/);
    const m = h('nvx-trace 1\nmemslot 0 gfn=0 npages=0x10\nmemslot 1 gfn=0x100 npages=0\nevents\n');
    expect(m.where).toMatchObject({ line: 3, field: 'config.memslots[1].npages' });
    expect(h('nvx-trace 1\nmemslot 0 gfn=0\nevents\n').where).toMatchObject({ line: 2, field: 'npages' });
    expect(h('nvx-trace 1\nmeta a "x"\nmeta a "y"\nevents\n').where).toMatchObject({ line: 3, field: 'provenance.a' });
    expect(h('nvx-trace 1\nmeta a "unterminated\nevents\n').message).toMatch(/line 2: unterminated string/);
    expect(h('nvx-trace 1\nmeta a\nevents\n').where).toMatchObject({ line: 2 });
    expect(h('nvx-trace 1\nl1.vmxoff\n').message).toMatch(/line 2: event before the 'events' line/);
    expect(h('nvx-trace 1\nconfg vcpus=1\n').message).toMatch(/did you mean config/);
    expect(h('nvx-trace 1\nconfig vcpus=2\n').message).toMatch(/line 2: the header never ends/);
  });

  test('a line longer than the limit', () => {
    const e = traceError(() => parseTextTrace(HEAD + 'l1.vmxoff\n' + '#'.repeat(MAX_LINE_LENGTH + 10) + '\n', 'long.nvx'));
    expect(e.where).toMatchObject({ file: 'long.nvx', line: 6 });
    expect(e.message).toMatch(/line longer than/);
  });

  test('parseEventLine alone names the given place', () => {
    const e = traceError(() => parseEventLine('l1.vmxon', undefined, { file: 'x.nvx', line: 42 }));
    expect(e.message).toBe("x.nvx, line 42, field 'gpa': missing value for l1.vmxon (it takes <gpa>)");
    expect(() => parseEventLine('  # nothing')).toThrow(TraceError);
  });
});

describe('text files: streaming reader and writer', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-text-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('reads the header at open and events in chunks', async () => {
    const f = path.join(dir, 'hand.nvx');
    fs.writeFileSync(f, HAND);
    const r = await TextTraceReader.open(f, { chunkSize: 3 });
    expect(r.header.provenance.generator).toBe('hand');
    const chunks: TraceEvent[][] = [];
    for await (const c of r.chunks()) chunks.push(c);
    expect(chunks.map((c) => c.length)).toEqual([3, 3, 2]);
    expect(chunks.flat()).toEqual(HAND_EVENTS);
    expect(r.warnings).toEqual([]);
    await r.close();
  });

  test('a bad line deep in a big file is reported with its line number', async () => {
    const f = path.join(dir, 'big.nvx');
    const n = 20000;
    const body = Array.from({ length: n }, (_, i) => `l1.write 0x${(i * 8).toString(16)} 8 ${i}`).join('\n');
    fs.writeFileSync(f, `nvx-trace 1\nevents\n${body}\nl1.write 0 3 0\n`);
    const r = await TextTraceReader.open(f);
    let count = 0;
    let err: unknown;
    try {
      for await (const e of r.events()) {
        void e;
        count++;
      }
    } catch (e) {
      err = e;
    }
    expect(count).toBe(n - (n % 1024));
    expect(err).toBeInstanceOf(TraceError);
    expect((err as TraceError).where).toMatchObject({ file: f, line: n + 3, field: 'size' });
  });

  test('a file without newlines is cut off at the line limit', async () => {
    const f = path.join(dir, 'oneline.nvx');
    fs.writeFileSync(f, 'nvx-trace 1\nevents\n' + 'x'.repeat(MAX_LINE_LENGTH * 4));
    const r = await TextTraceReader.open(f);
    await expect(
      (async () => {
        for await (const c of r.chunks()) void c;
      })(),
    ).rejects.toMatchObject({ where: { file: f, line: 3 } });
  });

  test('a header error is reported by open()', async () => {
    const f = path.join(dir, 'badhead.nvx');
    fs.writeFileSync(f, 'nvx-trace 1\nconfig vcpus=100\nevents\n');
    await expect(TextTraceReader.open(f)).rejects.toMatchObject({ where: { file: f, line: 2, field: 'config.vcpus' } });
    await expect(TextTraceReader.open(path.join(dir, 'missing.nvx'))).rejects.toThrow(/missing\.nvx: no such file/);
  });

  test('the writer renames on close and leaves nothing on abort', async () => {
    const h = parseTextTrace(HAND).header;
    const f = path.join(dir, 'w.nvx');
    const w = TextTraceWriter.open(f, h);
    for (const e of HAND_EVENTS) w.write(e);
    expect(fs.existsSync(f)).toBe(false);
    w.close();
    expect(fs.readFileSync(f, 'utf8')).toBe(CANONICAL);
    const w2 = TextTraceWriter.open(f, h);
    w2.write(HAND_EVENTS[0]);
    expect(() => w2.write({ kind: 'l1.vmxoff', vcpu: 9 } as TraceEvent)).toThrow(TraceError);
    w2.abort();
    expect(fs.readFileSync(f, 'utf8')).toBe(CANONICAL);
    expect(fs.readdirSync(dir).filter((n) => n.includes('.tmp'))).toEqual([]);
  });
});
