import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { run } from '@nvx/cli';
import { TraceEvent, encodeBinaryTrace, formatTextTrace, makeHeader, parseTextTrace, readTraceFile } from '@nvx/trace';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function nvx(args: string[], opts: { tty?: boolean; env?: Record<string, string> } = {}): Promise<Result> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(args, {
    stdout: { write: (s: string) => (out.push(s), true), isTTY: opts.tty },
    stderr: { write: (s: string) => (err.push(s), true), isTTY: opts.tty },
    env: opts.env ?? {},
  });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

const header = makeHeader({ vcpus: 2, evmcs: true }, { generator: 'cli-test', seed: '7' });
const events: TraceEvent[] = [
  { kind: 'l1.vmxon', vcpu: 0, gpa: 0x1000n, expect: { k: 'ok' } },
  { kind: 'l1.vmptrld', vcpu: 0, gpa: 0x2000n },
  { kind: 'l1.vmwrite', vcpu: 0, field: 0x681e, value: 0xffffffff81000000n },
  { kind: 'l1.vmwrite', vcpu: 1, field: 0x4002, value: 0x10000000n },
  { kind: 'l2.rdmsr', vcpu: 1, msr: 0xc0000100, expect: { k: 'exit', reason: 31, qual: 0n } },
];
const many: TraceEvent[] = Array.from({ length: 5000 }, (_, i) => ({ kind: 'l2.wrmsr', vcpu: 0, msr: 0x48, value: BigInt(i) }) as TraceEvent);

let dir: string;
const p = (name: string) => path.join(dir, name);
const leftovers = () => fs.readdirSync(dir).filter((n) => n.includes('.tmp'));
const ESC = '\u001b[';

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-cli-'));
  fs.writeFileSync(p('t.nvxt'), encodeBinaryTrace(header, events));
  fs.writeFileSync(p('t.nvx'), formatTextTrace(header, events));
  const big = encodeBinaryTrace(header, many, { chunkEvents: 1000 });
  fs.writeFileSync(p('big.nvxt'), big);
  fs.writeFileSync(p('cut.nvxt'), big.subarray(0, big.length - 100));
  const corrupt = Buffer.from(big);
  corrupt[Math.floor(big.length / 2)] ^= 0xff;
  fs.writeFileSync(p('corrupt.nvxt'), corrupt);
  fs.writeFileSync(p('bad.nvx'), 'nvx-trace 1\nevents\nl1.vmxon 0x1000\nl2.rdmsr MSR_FS_BSE\n');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('nvx: usage', () => {
  test('--help on the program and every trace command', async () => {
    const top = await nvx(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/Usage: nvx/);
    expect(top.stdout).toMatch(/Exit codes: 0 success, 1 a check failed, 2 bad usage/);
    for (const cmd of ['info', 'cat', 'convert', 'validate']) {
      const r = await nvx(['trace', cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`Usage: nvx trace ${cmd}`));
    }
    expect((await nvx(['trace', '--help'])).stdout).toMatch(/convert/);
  });

  test('--version', async () => {
    const r = await nvx(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  test('usage errors exit 2', async () => {
    for (const args of [[], ['trace'], ['frobnicate'], ['trace', 'info'], ['trace', 'info', 'a', 'b'], ['trace', 'info', '--bogus', 'x'], ['trace', 'convert', 'a.nvx', 'b.nvxt', '--to', 'json']]) {
      const r = await nvx(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).not.toBe('');
    }
    expect((await nvx(['trace', 'valdate', 'x'])).stderr).toMatch(/validate/);
  });

  test('a missing file exits 2 with one line naming it, no stack', async () => {
    const r = await nvx(['trace', 'info', p('nope.nvxt')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`error: ${p('nope.nvxt')}: no such file\n`);
  });

  test('colours only on a terminal and without NO_COLOR', async () => {
    expect((await nvx(['trace', 'validate', p('t.nvxt')])).stdout).not.toContain(ESC);
    expect((await nvx(['trace', 'validate', p('t.nvxt')], { tty: true })).stdout).toContain(ESC);
    expect((await nvx(['trace', 'validate', p('t.nvxt')], { tty: true, env: { NO_COLOR: '1' } })).stdout).not.toContain(ESC);
  });
});

describe('nvx trace info', () => {
  test('text', async () => {
    const r = await nvx(['trace', 'info', p('t.nvxt')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`(binary, format 1, binary version 2)`);
    expect(r.stdout).toMatch(/config\s+vcpus=2 pcpus=1/);
    expect(r.stdout).toMatch(/on: +evmcs /);
    expect(r.stdout).toMatch(/slot 0: gfn 0x0, 0x400 pages, flags 0/);
    expect(r.stdout).toMatch(/generator: "cli-test"/);
    expect(r.stdout).toMatch(/events\s+5 \(2 with expect\)/);
    expect(r.stdout).toMatch(/l1\.vmwrite\s+2\n/);
  });

  test('--json', async () => {
    const r = await nvx(['trace', 'info', '--json', p('t.nvx')]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({
      form: 'text',
      version: 1,
      events: 5,
      withExpect: 2,
      byKind: { 'l1.vmxon': 1, 'l1.vmptrld': 1, 'l1.vmwrite': 2, 'l2.rdmsr': 1 },
      truncated: false,
      warnings: [],
      provenance: { generator: 'cli-test', seed: '7' },
    });
    expect(j.config.memslots).toEqual([{ slot: 0, gfn: '0x0', npages: 0x400, flags: 0 }]);
  });

  test('a cut-off trace: the warning with its offset on stderr, exit 0', async () => {
    const r = await nvx(['trace', 'info', p('cut.nvxt')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^warning: .*cut\.nvxt.*offset \d+/);
    expect(r.stdout).toMatch(/events\s+4000\n/);
    const j = JSON.parse((await nvx(['trace', 'info', '--json', p('cut.nvxt')])).stdout);
    expect(j.truncated).toBe(true);
    expect(j.warnings[0].offset).toEqual(expect.any(Number));
  });
});

describe('nvx trace cat', () => {
  test('prints the canonical text form of either form', async () => {
    for (const f of ['t.nvxt', 't.nvx']) {
      const r = await nvx(['trace', 'cat', p(f)]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(formatTextTrace(header, events));
    }
    const big = await nvx(['trace', 'cat', p('big.nvxt')]);
    expect(parseTextTrace(big.stdout).events).toEqual(many);
  });

  test('an invalid trace: exit 2, the error names file and line', async () => {
    const r = await nvx(['trace', 'cat', p('bad.nvx')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.nvx, line 4, field 'msr': unknown MSR 'MSR_FS_BSE' \(did you mean MSR_FS_BASE/);
  });
});

describe('nvx trace convert', () => {
  test('text -> binary -> text by extension', async () => {
    expect((await nvx(['trace', 'convert', p('t.nvx'), p('c1.nvxt')])).code).toBe(0);
    const r = await nvx(['trace', 'convert', '-q', p('c1.nvxt'), p('c2.nvx')]);
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(fs.readFileSync(p('c2.nvx'), 'utf8')).toBe(fs.readFileSync(p('t.nvx'), 'utf8'));
    expect((await readTraceFile(p('c1.nvxt'))).events).toEqual(events);
  });

  test('--to and --from override the names', async () => {
    expect((await nvx(['trace', 'convert', '--to', 'binary', p('t.nvx'), p('c3.out')])).code).toBe(0);
    expect((await readTraceFile(p('c3.out'), { form: 'binary' })).events).toEqual(events);
    fs.copyFileSync(p('t.nvxt'), p('misnamed.nvx'));
    expect((await nvx(['trace', 'convert', '--from', 'binary', p('misnamed.nvx'), p('c4.nvx')])).code).toBe(0);
    expect(fs.readFileSync(p('c4.nvx'), 'utf8')).toBe(formatTextTrace(header, events));
  });

  test('an output name without a known extension and no --to: exit 2, nothing written', async () => {
    const r = await nvx(['trace', 'convert', p('t.nvx'), p('c5.out')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--to/);
    expect(fs.existsSync(p('c5.out'))).toBe(false);
  });

  test('a bad input: exit 2, nothing left under the output name, no temporary files', async () => {
    for (const [input, out] of [
      ['bad.nvx', 'c6.nvxt'],
      ['corrupt.nvxt', 'c7.nvx'],
    ]) {
      const r = await nvx(['trace', 'convert', p(input), p(out)]);
      expect(r.code).toBe(2);
      expect(fs.existsSync(p(out))).toBe(false);
    }
    expect(leftovers()).toEqual([]);
  });

  test('a cut-off input converts its complete prefix, with a warning', async () => {
    const r = await nvx(['trace', 'convert', p('cut.nvxt'), p('c8.nvx')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/offset \d+/);
    expect((await readTraceFile(p('c8.nvx'))).events).toEqual(many.slice(0, 4000));
  });
});

describe('nvx trace validate', () => {
  test('a valid trace', async () => {
    const r = await nvx(['trace', 'validate', p('big.nvxt')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`OK ${p('big.nvxt')}: 5000 events (binary)\n`);
    expect(JSON.parse((await nvx(['trace', 'validate', '--json', p('t.nvx')])).stdout)).toEqual({
      file: p('t.nvx'),
      form: 'text',
      valid: true,
      events: 5,
      truncated: false,
      warnings: [],
    });
  });

  test('a cut-off trace: exit 0, says truncated, the offset on stderr', async () => {
    const r = await nvx(['trace', 'validate', p('cut.nvxt')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^OK \(truncated\) .*: 4000 complete events before the cut at offset \d+ \(binary\)\n$/);
    expect(r.stderr).toMatch(/warning: .*offset \d+/);
  });

  test('a corrupt trace: exit 2, the error names the file and the offset', async () => {
    const r = await nvx(['trace', 'validate', p('corrupt.nvxt')]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^error: ${p('corrupt.nvxt').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, offset \\d+`));
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const j = await nvx(['trace', 'validate', '--json', p('bad.nvx')]);
    expect(j.code).toBe(2);
    expect(JSON.parse(j.stdout)).toMatchObject({ valid: false, form: 'text', error: { file: p('bad.nvx'), line: 4, field: 'msr' } });
  });
});
