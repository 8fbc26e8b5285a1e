/**
 * `nvx import trace-cmd` on reports as they reach bug trackers and mailing
 * lists: lines without the `comm-pid [cpu] timestamp:` prefix, the older
 * layouts of kvm_exit and kvm_nested_vmexit (arch/x86/kvm/trace.h before
 * 4.4: `reason X rip 0x... info A B`; before 5.10: `rip: 0x... reason: X
 * ext_inf1: ...`; early kernels printed the nested reason as a number), and
 * `-` for standard input.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Readable } from 'stream';
import { run } from '@nvx/cli';
import { formatEvent, readTraceFile } from '@nvx/trace';
import { parseLine } from '../src/importers/trace-cmd-format';
import { nvx } from './fixtures/nvx';

const FIX = path.join(__dirname, 'fixtures', 'trace-cmd');
const PREFIX = /^\s*.*-\d+\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]\s+(?:\S+\s+)?\d+(?:\.\d+)?:\s+/;
/** The fixture as pasted without prefixes. */
const bare = (name: string) => fs.readFileSync(path.join(FIX, name), 'utf8').split('\n').map((l) => l.replace(PREFIX, '')).join('\n');

let dir: string;
const p = (name: string) => path.join(dir, name);
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-import-bare-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The events without the host's vCPU placement (a bare report has no CPU numbers). */
async function events(file: string): Promise<string[]> {
  const t = await readTraceFile(file);
  return t.events.filter((e) => e.kind !== 'host.vcpu-load' && e.kind !== 'host.vcpu-put').map((e) => formatEvent(e).replace(/\s+/g, ' '));
}

describe('prefix-less lines', () => {
  test('a bare line is a record of no thread; meta lines stay meta; anything else is still bad', () => {
    expect(parseLine('kvm_exit: vcpu 1 reason MSR_READ rip 0xffffffff81070e88 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0')).toEqual({
      t: 'record',
      rec: { comm: '', pid: -1, cpu: 0, ts: 0, tracepoint: 'kvm_exit', body: 'vcpu 1 reason MSR_READ rip 0xffffffff81070e88 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0', bare: true },
    });
    expect(parseLine('version = 6').t).toBe('meta');
    expect(parseLine('CPU 3 is empty').t).toBe('meta');
    expect(parseLine('CPU:7 [EVENTS DROPPED]').t).toBe('dropped');
    expect(parseLine('Kvm_exit reason').t).toBe('bad');
  });

  test('a 5.10+ report without prefixes imports the same events as with them', async () => {
    fs.writeFileSync(p('6x-bare.txt'), bare('nested-6x.txt'));
    const a = await nvx(['import', 'trace-cmd', path.join(FIX, 'nested-6x.txt'), '-o', p('6x.nvx'), '-q']);
    const b = await nvx(['import', 'trace-cmd', p('6x-bare.txt'), '-o', p('6x-bare.nvx'), '-q']);
    expect([a.code, b.code, b.stderr]).toEqual([0, 0, '']);
    const ev = await events(p('6x-bare.nvx'));
    expect(ev.length).toBeGreaterThan(20);
    expect(ev).toEqual(await events(p('6x.nvx')));
  });

  test('a 5.4 report (older layouts of kvm_exit and kvm_nested_vmexit) without prefixes, one vCPU', async () => {
    // vCPU 0's lines only: kvm_exit names no vCPU before 4.4-era layouts were extended, so a bare multi-vCPU paste is ambiguous
    const withPrefix = fs.readFileSync(path.join(FIX, 'nested-5.4.txt'), 'utf8').split('\n').filter((l) => !l.includes('-3022 ')).join('\n');
    fs.writeFileSync(p('54.txt'), withPrefix);
    fs.writeFileSync(p('54-bare.txt'), withPrefix.split('\n').map((l) => l.replace(PREFIX, '')).join('\n'));
    expect((await nvx(['import', 'trace-cmd', p('54.txt'), '-o', p('54.nvx'), '-q'])).code).toBe(0);
    const b = await nvx(['import', 'trace-cmd', p('54-bare.txt'), '-o', p('54-bare.nvx'), '-q']);
    expect([b.code, b.stderr]).toEqual([0, '']);
    const ev = await events(p('54-bare.nvx'));
    expect(ev).toContain('l2.rdmsr MSR_IA32_APICBASE expect value 0xfee00900');
    expect(ev).toEqual(await events(p('54.nvx')));
  });

  test('the earliest layouts: kvm_exit without vcpu, the nested reason as a number', async () => {
    const lines = [
      'kvm_exit: reason VMLAUNCH rip 0xffffffffc0a1b400 info 0 0',
      'kvm_nested_vmenter: rip: 0xffffffffc0a1b400 vmcs: 0x0000000000014000 nested_rip: 0xffffffff81000000 int_ctl: 0x00000000 event_inj: 0x00000000 nested_ept=n',
      'kvm_entry: vcpu 0',
      'kvm_exit: reason CPUID rip 0xffffffff8102d5a2 info 0 0',
      '',
      'kvm_nested_vmexit: rip: 0xffffffff8102d5a2 reason: 10 ext_inf1: 0x0000000000000000 ext_inf2: 0x0000000000000000 ext_int: 0x00000000 ext_int_err: 0x00000000',
      '',
      'kvm_nested_vmexit_inject: reason: CPUID ext_inf1: 0x0000000000000000 ext_inf2: 0x0000000000000000 ext_int: 0x00000000 ext_int_err: 0x00000000',
      'kvm_entry: vcpu 0',
    ];
    fs.writeFileSync(p('old.txt'), lines.join('\n') + '\n');
    const r = await nvx(['import', 'trace-cmd', p('old.txt'), '-o', p('old.nvx')]);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout).not.toMatch(/malformed/);
    expect(await events(p('old.nvx'))).toContain('l2.cpuid 0x0 0x0 0 expect exit CPUID qual=0x0');
  });
});

describe("'-' reads standard input", () => {
  const stdinDirs = () => fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('nvx-stdin-')).length;
  async function fromStdin(text: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await run(['import', 'trace-cmd', '-', ...args], {
      stdout: { write: (s: string) => (out.push(s), true) },
      stderr: { write: (s: string) => (err.push(s), true) },
      env: {},
      stdin: Readable.from([text]),
    });
    return { code, stdout: out.join(''), stderr: err.join('') };
  }

  test('imports what is piped in, names it - in the header and messages, and leaves no temporary file', async () => {
    const before = stdinDirs();
    const r = await fromStdin(bare('nested-6x.txt'), ['-o', p('stdin.nvx')]);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/^- -> .*stdin\.nvx: \d+ events/);
    expect((await readTraceFile(p('stdin.nvx'))).header.provenance.source).toBe('-');
    const bad = await fromStdin('kvm_exit: vcpu 0 reason\nnot a line\n', ['-o', p('bad.nvx')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error: -, line 1: kvm_exit: /);
    expect(stdinDirs()).toBe(before);
  });
});
