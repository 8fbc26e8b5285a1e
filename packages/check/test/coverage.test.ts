/**
 * Rule coverage (what a fuzz run exercised, per area), computed from the
 * reference replay's events, states and outcomes.
 */
import * as path from 'path';
import fc from 'fast-check';
import { Replayer, parseProfile } from '@nvx/emulator';
import { TraceEvent, TraceHeader, parseTextTrace, readTraceFile } from '@nvx/trace';
import { listTraces } from '../src/corpus';
import { COVERAGE_GROUPS, COVERAGE_RULES, CoverageCounts, CoverageRecorder, coverageGroupsFor, coverageLines, coverageRows, mergeCoverage } from '../src/coverage';
import { arbMixedTrace } from '../src/mix';

const reference = parseProfile('reference');

function record(rec: CoverageRecorder, header: TraceHeader, events: readonly TraceEvent[]): void {
  rec.startTrace();
  const r = Replayer.fromHeader(header, reference);
  for (const e of events) {
    rec.before(r.peek(), e);
    const o = r.apply(e);
    rec.after(r.peek(), e, o);
  }
}

describe('rule coverage', () => {
  it('every group defines its rules once, and a rule hit is always one of them', () => {
    for (const g of COVERAGE_GROUPS) {
      expect(COVERAGE_RULES[g].length).toBeGreaterThan(10);
      expect(new Set(COVERAGE_RULES[g]).size).toBe(COVERAGE_RULES[g].length);
    }
    const rec = new CoverageRecorder();
    for (const t of fc.sample(arbMixedTrace(), { seed: 0xc0, numRuns: 150 })) record(rec, t.header, t.events);
    for (const g of COVERAGE_GROUPS) for (const rule of Object.keys(rec.counts[g])) expect({ g, rule, known: COVERAGE_RULES[g].includes(rule) }).toEqual({ g, rule, known: true });
    // the fuzz generators reach most of what the areas define
    const rows = coverageRows(rec.counts);
    const pct = Object.fromEntries(rows.map((r) => [r.group, r.percent]));
    expect(pct['msr-bitmap']).toBeGreaterThanOrEqual(90);
    expect(pct['cpuid-fault']).toBeGreaterThanOrEqual(90);
    expect(pct['guest-pages']).toBeGreaterThanOrEqual(75);
    expect(pct['shadow-vmcs']).toBeGreaterThanOrEqual(60);
    expect(pct.evmcs).toBeGreaterThanOrEqual(60);
    expect(pct.nested).toBeGreaterThanOrEqual(50);
  });

  it('sees what the scenario traces do: clean groups skipped, bitmap quadrants, cache states, faulting cases', async () => {
    const dir = path.resolve(__dirname, '..', '..', '..', 'traces', 'scenarios');
    const rec = new CoverageRecorder();
    for (const f of listTraces([dir])) {
      const { header, events } = await readTraceFile(f);
      record(rec, header, events);
    }
    const c = rec.counts;
    expect(c.nested['exit MSR_READ']).toBeGreaterThan(0);
    expect(c.nested['vmfail ENTRY_INVALID_CONTROL_FIELD']).toBeGreaterThan(0);
    expect(c['msr-bitmap']['entry refused: unaligned MSR bitmap']).toBeGreaterThan(0);
    expect(c['msr-bitmap']['L2 read outside the bitmap ranges']).toBeGreaterThan(0);
    expect(Object.keys(c.evmcs).filter((k) => k.endsWith('skipped')).length).toBeGreaterThan(3);
    expect(c['shadow-vmcs']['VMWRITE to a read-only field refused']).toBeGreaterThan(0);
    expect(c['guest-pages']['virtual-APIC page: first use']).toBeGreaterThan(0);
    expect(Object.keys(c['guest-pages']).some((k) => k.includes('invalidated by page-migrate'))).toBe(true);
    expect(c['cpuid-fault']['L1 CPUID at CPL > 0, faulting on (#GP)']).toBeGreaterThan(0);
    expect(c['cpuid-fault']['SMI']).toBeGreaterThan(0);
  });

  it('counts exactly what a small trace does', () => {
    const { header, events } = parseTextTrace(`nvx-trace 1
memslot 0 gfn=0x0 npages=0x40 flags=0
events
l1.write 0x1000 4 0x11e57ed0
l1.vmxon 0x1000
l1.write 0x4000 4 0x11e57ed0
l1.vmptrld 0x4000
l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16
l1.vmwrite VM_EXIT_CONTROLS 0x36dfb
l1.vmwrite VM_ENTRY_CONTROLS 0x11fb
l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x14006172
l1.vmwrite MSR_BITMAP 0x18000
l1.msr-bitmap 0x18000 MSR_FS_BASE read true
l1.vmlaunch
l2.rdmsr MSR_GS_BASE
l2.rdmsr MSR_FS_BASE
l1.vmresume
l2.wrmsr 0x10 0x5
l2.rdmsr 0x40000000
`);
    const rec = new CoverageRecorder();
    record(rec, header, events);
    expect(rec.counts['msr-bitmap']).toEqual({
      'L1 sets an intercept': 1,
      'entry with an MSR bitmap': 2,
      'L2 high read: no exit to L1': 1,
      'L2 high read: exit to L1': 1,
      'L2 low write: no exit to L1': 1,
      'L2 read outside the bitmap ranges': 1,
    });
    expect(rec.counts.nested).toEqual({ 'VMLAUNCH entered': 1, 'VMRESUME entered': 1, 'exit MSR_READ': 2 });
    expect(rec.counts['guest-pages']).toEqual({ 'MSR bitmap: first use': 1, 'MSR bitmap: same backing (cache hit)': 1 });
  });

  it('merges counts and reports them per area, as rules hit of rules defined', () => {
    const a: CoverageCounts = { 'msr-bitmap': { 'L1 sets an intercept': 2 } };
    const b: CoverageCounts = { 'msr-bitmap': { 'L1 sets an intercept': 1, 'L1 clears an intercept': 4 }, nested: { 'exit CPUID': 1 } };
    mergeCoverage(a, b);
    expect(a['msr-bitmap']).toEqual({ 'L1 sets an intercept': 3, 'L1 clears an intercept': 4 });
    const rows = coverageRows(a, coverageGroupsFor(['msr-bitmap']));
    expect(rows.map((r) => r.group)).toEqual(['nested', 'msr-bitmap']);
    const mb = rows[1];
    expect([mb.hit, mb.events, mb.total]).toEqual([2, 7, COVERAGE_RULES['msr-bitmap'].length]);
    expect(mb.percent).toBeCloseTo((100 * 2) / mb.total, 1);
    expect(mb.missing).not.toContain('L1 sets an intercept');
    expect(coverageLines(a, ['msr-bitmap'])[1]).toMatch(/msr-bitmap\s+2\/\d+\s+[\d.]+\s+7/);
  });
});
