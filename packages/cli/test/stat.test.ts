import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TraceEvent, encodeBinaryTrace, makeHeader } from '@nvx/trace';
import { nvx } from './fixtures/nvx';

const FIX = path.join(__dirname, 'fixtures');
const DIVERGING = path.join(FIX, 'diverging.nvx');

let dir: string;
const p = (name: string) => path.join(dir, name);

/** A CPUID loop in L2: each CPUID exits to L1, which resumes L2. */
function cpuidLoop(n: number): TraceEvent[] {
  const ev: TraceEvent[] = [
    { kind: 'l1.write', vcpu: 0, gpa: 0x1000n, size: 4, value: 0x11e57ed0n },
    { kind: 'l1.vmxon', vcpu: 0, gpa: 0x1000n },
    { kind: 'l1.write', vcpu: 0, gpa: 0x2000n, size: 4, value: 0x11e57ed0n },
    { kind: 'l1.vmptrld', vcpu: 0, gpa: 0x2000n },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x4002, value: 0x14006172n },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x4000, value: 0x16n }, // the must-be-1 control bits
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x400c, value: 0x36dfbn },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x4012, value: 0x11fbn },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x2004, value: 0x3000n },
    { kind: 'l1.vmlaunch', vcpu: 0 },
  ];
  for (let i = 0; i < n; i++) {
    ev.push({ kind: 'l2.cpuid', vcpu: 0, leaf: 1, subleaf: 0, cpl: 0 });
    ev.push({ kind: 'l1.vmresume', vcpu: 0 });
    ev.push({ kind: 'l2.rdmsr', vcpu: 0, msr: 0x1b });
  }
  return ev;
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-stat-'));
  fs.writeFileSync(p('loop.nvxt'), encodeBinaryTrace(makeHeader({ vcpus: 1 }, { generator: 'stat-test' }), cpuidLoop(100)));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('nvx stat', () => {
  test('a perf kvm stat table per profile, side by side, and the counters', async () => {
    const r = await nvx(['stat', p('loop.nvxt')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^Analyze events for all VMs, all VCPUs: .*loop\.nvxt, 310 events$/);
    const groupHead = lines.find((l) => l.includes('| reference'))!;
    expect(groupHead).toMatch(/\| reference\s+\| optimized/);
    expect(lines.find((l) => /VM-EXIT/.test(l))).toMatch(/VM-EXIT \|\s+Samples\s+Samples%\s+Time%\s+Avg cycles \|\s+Samples\s+Samples%\s+Time%\s+Avg cycles/);
    // 100 CPUID exits and 100 RDMSR exits under both; VMRESUME and the set-up instructions
    expect(lines.find((l) => /^\s+CPUID \|/.test(l))).toMatch(/CPUID \|\s+100\s+\d+\.\d\d%\s+\d+\.\d\d%\s+1000\.0 \|\s+100 /);
    expect(lines.find((l) => /^\s+MSR_READ \|/.test(l))).toMatch(/MSR_READ \|\s+100 /);
    expect(lines.find((l) => /^\s+VMRESUME \|/.test(l))).toMatch(/VMRESUME \|\s+100 .*\|\s+100 /);
    expect(lines.find((l) => /^\s+Total \|/.test(l))).toBeDefined();
    expect(r.stdout).toMatch(/^reference: Total Samples: \d+, estimated cycles of the samples: \d+/m);
    expect(r.stdout).toMatch(/nvx counters:\n\s+counter\s+reference\s+optimized\n/);
    expect(r.stdout).toMatch(/^\s+l0Exits\s+200\s+200$/m);
    expect(r.stdout).toMatch(/^\s+msrBitmapMerges\s+0\s+\d+$/m);
  });

  test('--json', async () => {
    const r = await nvx(['stat', p('loop.nvxt'), '--json', '--profiles', 'reference,msr-bitmap=merge+evmcs=clean-fields']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.events).toBe(310);
    expect(j.host).toBeNull();
    expect(j.profiles.map((x: { profile: string }) => x.profile)).toEqual(['reference', 'msr-bitmap=merge,evmcs=clean-fields']);
    const ref = j.profiles[0];
    expect(ref.rows.find((x: { reason: string }) => x.reason === 'CPUID')).toEqual({ reason: 'CPUID', samples: 100, cycles: 100000 });
    expect(ref.samples).toBe(ref.rows.reduce((s: number, x: { samples: number }) => s + x.samples, 0));
    expect(ref.costs.l0Exits).toBe(200);
    expect(typeof ref.estimatedCycles).toBe('number');
    // the merged profile pays a merge per entry (700 cycles each in the cost table)
    const merged = j.profiles[1];
    expect(merged.costs.msrBitmapMerges).toBe(101);
    expect(merged.rows.find((x: { reason: string }) => x.reason === 'VMRESUME').cycles).toBeGreaterThanOrEqual(100 * 700);
  });

  test('an imported trace shows the host recorded exits beside the model, without the preamble', async () => {
    expect((await nvx(['import', 'trace-cmd', path.join(FIX, 'trace-cmd', 'nested-6x.txt'), '-o', p('host.nvxt'), '-q'])).code).toBe(0);
    const r = await nvx(['stat', p('host.nvxt')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\| host \(recorded\)\s+\| reference\s+\| optimized/);
    expect(r.stdout).toMatch(/VM-EXIT \|\s+Samples\s+Samples%\s+Time%\s+Avg time \|/);
    expect(r.stdout).toMatch(/^\s+EPT_VIOLATION \|\s+1\s+5\.00%\s+6\.12%\s+9\.00us \|/m);
    expect(r.stdout).toMatch(/stand-in \(l2\.vmcall\)/);
    expect(r.stdout).toMatch(/host: Total Samples: 20, Total events handled time: 147\.00us/);
    // the preamble's VMXON and VMPTRLDs are not counted
    expect(r.stdout).not.toMatch(/^\s+VMON \|/m);
    const j = JSON.parse((await nvx(['stat', p('host.nvxt'), '--json'])).stdout);
    expect(j.host.samples).toBe(20);
    expect(j.host.rows[0]).toEqual({ reason: 'VMRESUME', samples: 5, ns: 30000 });
  });

  test('a profile that diverges keeps its own rows', async () => {
    const { registerOpenBitmap } = await import('./fixtures/open-bitmap-path');
    registerOpenBitmap();
    const j = JSON.parse((await nvx(['stat', DIVERGING, '--json', '-p', 'reference,msr-bitmap=test-open-bitmap'])).stdout);
    const reads = (k: number) => j.profiles[k].rows.find((x: { reason: string }) => x.reason === 'MSR_READ')?.samples ?? 0;
    expect(reads(0)).toBe(1);
    expect(reads(1)).toBe(0);
  });

  test('bad profiles and files exit 2', async () => {
    const r = await nvx(['stat', p('loop.nvxt'), '--profiles', 'reference,msr-bitmap=nope']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--profiles: area msr-bitmap has no path 'nope'/);
    expect((await nvx(['stat', p('loop.nvxt'), '--profiles', ','])).code).toBe(2);
    expect((await nvx(['stat', p('missing.nvxt')])).stderr).toMatch(/missing\.nvxt: no such file/);
  });
});
