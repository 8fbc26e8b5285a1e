import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readTraceFile, formatEvent, TraceEvent } from '@nvx/trace';
import { nvx } from './fixtures/nvx';

const FIX = path.join(__dirname, 'fixtures', 'trace-cmd');
const NEW = path.join(FIX, 'nested-6x.txt');
const OLD = path.join(FIX, 'nested-5.4.txt');

let dir: string;
const p = (name: string) => path.join(dir, name);

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-import-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The events after the preamble, as text lines. */
async function imported(file: string): Promise<{ lines: string[]; events: TraceEvent[]; provenance: Record<string, string> }> {
  const t = await readTraceFile(file);
  const n = Number(t.header.provenance['import.preamble']);
  return { lines: t.events.slice(n).map((e) => formatEvent(e).replace(/\s+/g, ' ')), events: t.events, provenance: t.header.provenance };
}

describe('nvx import trace-cmd: kernels 5.10 and later', () => {
  test('imports nested CPUID and MSR exits, per vCPU and in order', async () => {
    const r = await nvx(['import', 'trace-cmd', NEW, '-o', p('new.nvx')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/nested-6x\.txt -> .*new\.nvx: \d+ events \(19 of them the L1 preamble\) for 2 vCPUs on 2 CPUs, from 73 lines/);
    expect(r.stdout).toMatch(/kvm_exit EPT_VIOLATION \(L2, handled by L0\)\s+1/);
    expect(r.stdout).toMatch(/sched_switch\s+1/);
    expect(r.stdout).toMatch(/IO_INSTRUCTION\s+1/);

    const { lines, provenance } = await imported(p('new.nvx'));
    expect(lines).toEqual([
      'host.vcpu-load 0',
      'l2.cpuid 0x0 0x0 0 expect exit CPUID qual=0x0',
      'l1.cpuid 0x1 0x0 0 expect cpuid eax=0x906ea ebx=0x1000800 ecx=0xf6fa3223 edx=0x1f8bfbff',
      'l1.vmresume expect entered',
      'l2.rdmsr MSR_IA32_APICBASE expect value 0xfee00d00',
      'l2.wrmsr 0xffffffff 0x0 expect exit MSR_WRITE qual=0x0',
      'l1.rdmsr MSR_IA32_FEAT_CTL expect value 0x5',
      'l1.vmresume expect entered',
      '@1 host.vcpu-load 1',
      '@1 l1.cpuid 0x40000000 0x0 0 expect cpuid eax=0x40000001 ebx=0x4b4d564b ecx=0x564b4d56 edx=0x4d',
      '@1 l1.vmlaunch expect entered',
      '@1 l2.rdmsr 0x123 expect gp',
      '@1 l2.cpuid 0x0 0x0 0 expect exit CPUID qual=0x0',
      'l2.vmcall',
      'l1.wrmsr MSR_IA32_TSC_DEADLINE 0x2b1d5e3f4c8 expect ok',
      'l1.vmresume expect entered',
      '@1 l1.vmresume expect entered',
      '@1 l2.vmcall expect exit VMCALL qual=0x0',
      'l2.vmcall',
    ]);
    expect(provenance.imported).toBe('trace-cmd');
    expect(provenance.source).toBe(NEW);
    expect(provenance['source.sha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse(provenance['import.skipped'])).toEqual({
      'kvm_exit EPT_VIOLATION (L2, handled by L0)': 1,
      'kvm_exit EXTERNAL_INTERRUPT (L2, handled by L0)': 1,
      'kvm_exit VMREAD (L1)': 1,
      'kvm_nested_vmenter_failed (entry not replayed)': 1,
      kvm_page_fault: 1,
      sched_switch: 1,
    });
    expect(JSON.parse(provenance['import.standins'])).toEqual({ 'EXTERNAL_INTERRUPT (kvm_nested_intr_vmexit)': 1, IO_INSTRUCTION: 1 });
    expect(JSON.parse(provenance['import.vcpus'])).toEqual({ 0: 'CPU 0/KVM-4711', 1: 'CPU 1/KVM-4712' });
    const host = JSON.parse(provenance['host.exits']);
    expect(host.VMRESUME[0]).toBe(5);
    expect(host.CPUID).toEqual([4, 30000]);
  });

  test('the preamble: VMXON, VMPTRLD and MSR bitmaps per vCPU, VMLAUNCH for the vCPU that starts in L2', async () => {
    const t = await readTraceFile(p('new.nvx'));
    const pre = t.events.slice(0, 16).map((e) => formatEvent(e).replace(/\s+/g, ' '));
    expect(pre[0]).toBe('l1.write 0x10000 4 0x11e57ed0 expect ok');
    expect(pre).toContain('l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x14006172 expect ok');
    expect(pre[9]).toBe('l1.vmlaunch expect entered');
    expect(pre.filter((l) => l.includes('vmlaunch'))).toHaveLength(1);
    expect(pre[10]).toMatch(/^@1 l1\.write/);
    expect(t.header.config.vcpus).toBe(2);
    expect(t.header.config.pcpus).toBe(2);
  });

  test('nvx run reports the agreement rate with the host', async () => {
    const r = await nvx(['run', p('new.nvx')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/agreement with the host under reference: 6 of 6 recorded L2 exits \(100\.0%\)/);
    expect(r.stdout).toMatch(/L1 entries\s+5 \/ 5/);
    expect(r.stdout).toMatch(/values .*: 0 of 4 equal/);
    expect(r.stdout).not.toMatch(/first disagreement/);
    const j = JSON.parse((await nvx(['run', p('new.nvx'), '--json'])).stdout);
    expect(j.agreement.exits).toEqual({ total: 6, agree: 6, rate: 1 });
    expect(j.agreement.first).toBeNull();
    expect(j.agreement.preamble).toEqual({ total: 19, failed: 0, firstFailure: null });
  });

  test('a disagreement: the host handled an MSR the model always reflects to L1', async () => {
    // 0xc0011029 lies outside both MSR-bitmap ranges: KVM reflects every access to it to L1.
    fs.writeFileSync(p('dis.txt'), fs.readFileSync(NEW, 'utf8').replace('msr_read 123 = 0x0 (#GP)', 'msr_read c0011029 = 0x0 (#GP)'));
    expect((await nvx(['import', 'trace-cmd', p('dis.txt'), '-o', p('dis.nvxt'), '-q'])).code).toBe(0);
    const r = await nvx(['run', p('dis.nvxt'), '-q']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/agreement with the host under reference: 4 of 6 recorded L2 exits \(66\.7%\)/);
    expect(r.stdout).toMatch(/first disagreement at event 30: @1 l2\.rdmsr 0xc0011029\n\s+host recorded\s+gp\n\s+reference\s+exit MSR_READ qual=0x0/);
    expect(r.stdout).toMatch(/no exit -> exit MSR_READ x1/);
  });

  test('--json describes the import', async () => {
    const r = await nvx(['import', 'trace-cmd', NEW, '-o', p('j.nvxt'), '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ source: NEW, output: p('j.nvxt'), preambleEvents: 19, vcpus: 2, pcpus: 2, lines: 73, unknownMsr: 1, inferred: { entries: 0, exits: 0 } });
    expect(j.events).toBe(19 + 19);
    expect(j.tracepoints.kvm_exit).toBe(20);
    expect(j.skipped.sched_switch).toBe(1);
    expect(j.provenance.imported).toBe('trace-cmd');
    expect(j.warnings).toEqual([]);
  });

  test('binary and text outputs hold the same events', async () => {
    const a = await readTraceFile(p('new.nvx'));
    const b = await readTraceFile(p('j.nvxt'));
    expect(b.events).toEqual(a.events);
  });
});

describe('nvx import trace-cmd: older kernels', () => {
  test('kvm_exit without a vCPU number, kvm_nested_vmexit with rip first, no kvm_nested_vmenter, kvm_cpuid without idx', async () => {
    const r = await nvx(['import', 'trace-cmd', OLD, '-o', p('old.nvx'), '-q']);
    expect(r.code).toBe(0);
    const { lines, provenance } = await imported(p('old.nvx'));
    expect(lines).toEqual([
      'host.vcpu-load 1',
      'l2.cpuid 0x0 0x0 0 expect exit CPUID qual=0x0',
      'l1.cpuid 0x7 0x0 0 expect cpuid eax=0x0 ebx=0x29c6fbf ecx=0x40000000 edx=0xbc000400',
      // the VMRESUME exit, confirmed by the next exit coming from L2
      'l1.vmresume expect entered',
      'l2.rdmsr MSR_IA32_APICBASE expect value 0xfee00900',
      'l2.wrmsr MSR_IA32_TSC_DEADLINE 0x1d2c3b4a5968 expect ok',
      '@1 host.vcpu-load 0',
    ]);
    // threads named qemu-system-x86 are told apart by the vCPU kvm_entry prints
    expect(JSON.parse(provenance['import.vcpus'])).toEqual({ 0: 'qemu-system-x86-3021', 1: 'qemu-system-x86-3022' });
    // PENDING_INTERRUPT is what older kernels call INTERRUPT_WINDOW
    expect(JSON.parse(provenance['import.skipped'])).toMatchObject({ 'kvm_exit INTERRUPT_WINDOW (L2, handled by L0)': 1, 'kvm_exit HLT (L1)': 1 });
    const run = await nvx(['run', p('old.nvx'), '-q']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/3 of 3 recorded L2 exits \(100\.0%\)/);
  });
});

describe('nvx import trace-cmd: bad input', () => {
  const base = fs.readFileSync(NEW, 'utf8').split('\n');

  test('a malformed line is an error with its line number; --skip-bad counts it', async () => {
    const lines = [...base];
    const i = lines.findIndex((l) => l.includes('func 1 idx 0 rax 906ea'));
    lines[i] = lines[i].replace('rax 906ea', 'rax zz');
    expect(i).toBe(8);
    fs.writeFileSync(p('bad.txt'), lines.join('\n'));
    const r = await nvx(['import', 'trace-cmd', p('bad.txt'), '-o', p('bad.nvx')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.txt, line 9: kvm_cpuid: expected 'func <leaf>/);
    expect(r.stderr).toMatch(/--skip-bad/);
    expect(fs.existsSync(p('bad.nvx'))).toBe(false);
    const s = await nvx(['import', 'trace-cmd', p('bad.txt'), '-o', p('bad.nvx'), '--json', '--skip-bad']);
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout).skipped['malformed lines']).toBe(1);

    fs.writeFileSync(p('garbage.txt'), 'version = 6\nthis is not a trace line\n');
    const g = await nvx(['import', 'trace-cmd', p('garbage.txt'), '-o', p('g.nvx')]);
    expect(g.code).toBe(2);
    expect(g.stderr).toMatch(/garbage\.txt, line 2: not a trace-cmd report line/);
  });

  test('an AMD report is refused: nvx models Intel VMX', async () => {
    fs.writeFileSync(
      p('amd.txt'),
      '       CPU 0/KVM-900   [001] 100.000001: kvm_exit:             vcpu 0 reason msr rip 0xffffffff81070e88 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000\n',
    );
    const r = await nvx(['import', 'trace-cmd', p('amd.txt'), '-o', p('amd.nvx')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/AMD \(SVM\) host; nvx models Intel VMX only/);
  });

  test('usage and file errors exit 2', async () => {
    expect((await nvx(['import', 'trace-cmd', NEW, '-o', p('x.json')])).stderr).toMatch(/use a \.nvx \(text\) or \.nvxt \(binary\) name/);
    const missing = await nvx(['import', 'trace-cmd', p('nope.txt'), '-o', p('x.nvx')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope\.txt: no such file/);
    expect((await nvx(['import', 'trace-cmd', NEW])).code).toBe(2);
    expect((await nvx(['import', 'perf', NEW, '-o', p('x.nvx')])).code).toBe(2);
    fs.writeFileSync(p('dat.txt'), Buffer.from([0x17, 0x08, 0x44, 0x74, 0x72, 0x61, 0x63, 0x69, 0x6e, 0x67, 0, 0, 0]));
    expect((await nvx(['import', 'trace-cmd', p('dat.txt'), '-o', p('x.nvx')])).stderr).toMatch(/binary file: give the text of `trace-cmd report`/);
  });

  test('dropped events: records cut by them are skipped and the import warns', async () => {
    const lines = [...base];
    // lose the kvm_entry closing the reflected MSR_WRITE on CPU 2 (vCPU 0)
    const i = lines.findIndex((l) => l.includes('kvm_nested_vmexit_inject: reason: MSR_WRITE'));
    lines.splice(i + 1, 0, 'CPU:2 [1234 EVENTS DROPPED]');
    fs.writeFileSync(p('lost.txt'), lines.join('\n'));
    const r = await nvx(['import', 'trace-cmd', p('lost.txt'), '-o', p('lost.nvx'), '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/lost events \(1 'EVENTS DROPPED' markers\)/);
    const j = JSON.parse(r.stdout);
    expect(j.dropped).toEqual({ markers: 1, events: 1234 });
    expect(j.skipped['records cut by dropped events']).toBe(1);
    // L1 kept running after the lost exit: the importer infers it so that the next L1 event applies
    expect(j.inferred.exits).toBe(1);
    const run = await nvx(['run', p('lost.nvx'), '-q']);
    expect(run.stdout).toMatch(/5 of 5 recorded L2 exits/);
  });

  test('a progress bar on a terminal only', async () => {
    const tty = await nvx(['import', 'trace-cmd', NEW, '-o', p('tty.nvx')], { tty: true });
    expect(tty.code).toBe(0);
    expect(tty.stderr).toMatch(/importing \[/);
    const pipe = await nvx(['import', 'trace-cmd', NEW, '-o', p('pipe.nvx')]);
    expect(pipe.stderr).toBe('');
  });
});
