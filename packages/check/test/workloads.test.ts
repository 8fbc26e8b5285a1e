import { EXIT_REASON, VMCS, vmcsFieldByEncoding } from '@nvx/arch';
import { Costs, Replayer, initialState, newCosts, parseProfile } from '@nvx/emulator';
import { Outcome, TraceEvent, encodeBinaryTrace, decodeBinaryTrace, formatOutcome } from '@nvx/trace';
import { diffEvents } from '../src/diff';
import {
  CPUID_LOOP_EVENTS_PER_ITERATION,
  WORKLOAD_LAYOUT,
  Workload,
  cpuidLoop,
  cpuidLoopSetupEvents,
  cpuidLoopStream,
  cpuidLoopVmread,
  evmcsOffsetOf,
} from '../src/workloads';

const PROFILES = ['reference', 'msr-bitmap=merge', 'msr-bitmap=merge-tracked', 'msr-bitmap=enlightened', 'optimized'] as const;

function run(wl: Workload, profile: string): { outcomes: Outcome[]; cost: Costs } {
  const p = parseProfile(profile);
  const r = new Replayer(initialState(wl.header, p), p, newCosts());
  return { outcomes: wl.events.map((e) => r.apply(e)), cost: r.cost };
}

/** The outcome each event must have: stores ok, the launch and resumes enter, CPUID exits, reads see the exit reason. */
function intended(e: TraceEvent, o: Outcome, i: number): string | null {
  const bad = (want: string) => `event ${i} ${e.kind}: wanted ${want}, got ${formatOutcome(o)}`;
  switch (e.kind) {
    case 'l1.vmlaunch':
    case 'l1.vmresume':
      return o.k === 'entered' ? null : bad('entered');
    case 'l2.cpuid':
      return o.k === 'exit' && o.reason === EXIT_REASON.CPUID && o.qual === 0n ? null : bad('exit CPUID');
    case 'l1.read':
      return o.k === 'value' && o.value === BigInt(EXIT_REASON.CPUID) ? null : bad('value CPUID');
    case 'l1.vmread':
      if (e.field === VMCS.VM_EXIT_REASON) return o.k === 'value' && o.value === BigInt(EXIT_REASON.CPUID) ? null : bad('value CPUID');
      return o.k === 'value' ? null : bad('a value');
    default:
      return o.k === 'ok' ? null : bad('ok');
  }
}

describe('workloads: cpuidLoop', () => {
  const N = 20;
  const cases: [string, Workload][] = [
    ['eVMCS', cpuidLoop(N)],
    ['VMCS', cpuidLoop(N, { evmcs: false })],
    ['vmread', cpuidLoopVmread(N)],
  ];

  it('has the announced length and is deterministic', () => {
    for (const [, wl] of cases) expect(wl.events.length).toBe(cpuidLoopSetupEvents() + CPUID_LOOP_EVENTS_PER_ITERATION * N);
    expect(encodeBinaryTrace(cases[0][1].header, cpuidLoop(N).events).equals(encodeBinaryTrace(cases[0][1].header, cases[0][1].events))).toBe(true);
    // the stream gives a fresh iterator each time
    const s = cpuidLoopStream(3);
    expect([...s.events()].length).toBe(s.count);
    expect([...s.events()].length).toBe(s.count);
  });

  it('encodes to a valid binary trace that decodes to the same events', () => {
    const wl = cases[0][1];
    const back = decodeBinaryTrace(encodeBinaryTrace(wl.header, wl.events));
    expect(back.warnings).toEqual([]);
    expect(back.events).toEqual(wl.events);
  });

  it('reads the exit reason at the eVMCS member of VM_EXIT_REASON', () => {
    const off = vmcsFieldByEncoding(VMCS.VM_EXIT_REASON)!.evmcsOffset!;
    expect(evmcsOffsetOf(VMCS.VM_EXIT_REASON)).toBe(off);
    const reads = cases[0][1].events.filter((e): e is Extract<TraceEvent, { kind: 'l1.read' }> => e.kind === 'l1.read');
    expect(reads).toHaveLength(N);
    for (const e of reads) expect(e.gpa).toBe(WORKLOAD_LAYOUT.vmcs + BigInt(off));
  });

  for (const [name, wl] of cases) {
    for (const profile of PROFILES) {
      it(`${name} under ${profile}: every event has its intended outcome`, () => {
        const { outcomes, cost } = run(wl, profile);
        const problems = wl.events.map((e, i) => intended(e, outcomes[i], i)).filter((x) => x !== null);
        expect(problems).toEqual([]);
        expect(outcomes.some((o) => o.k === 'ignored')).toBe(false);
        expect(cost.nestedEntries).toBe(N + 1);
        expect(cost.nestedExits).toBe(N);
        expect(cost.l0Exits).toBe(N);
        expect(cost.cpuidExits).toBe(N);
      });
    }

    it(`${name}: reference and optimized agree event by event and in state`, () => {
      const r = diffEvents(wl.header, wl.events, parseProfile('reference'), parseProfile('optimized'), { checkpointEvery: 7 });
      expect(r.divergence).toBeNull();
      expect(r.violations).toEqual([]);
      expect(r.events).toBe(wl.events.length);
    });
  }

  describe('the MSR-bitmap merge counts behind seed 000', () => {
    const wl = cases[0][1];
    const entries = N + 1;

    it('merge: exactly one merge per nested entry', () => {
      const { cost } = run(wl, 'msr-bitmap=merge');
      expect(cost.nestedEntries).toBe(entries);
      expect(cost.msrBitmapMerges).toBe(entries);
      expect(cost.msrBitmapMergeSkips).toBe(0);
    });

    for (const profile of ['msr-bitmap=enlightened', 'optimized']) {
      it(`${profile}: one merge (the VMLAUNCH), every VMRESUME skips`, () => {
        const { cost } = run(wl, profile);
        expect(cost.msrBitmapMerges).toBe(1);
        expect(cost.msrBitmapMergeSkips).toBe(entries - 1);
      });
    }

    it('merge-tracked: the bitmap page is never written after the launch, so it skips too', () => {
      const { cost } = run(wl, 'msr-bitmap=merge-tracked');
      expect(cost.msrBitmapMerges).toBe(1);
      expect(cost.msrBitmapMergeSkips).toBe(entries - 1);
      expect(cost.msrBitmapWriteTraps).toBe(0);
    });

    it('reference (no-bitmap): no merges, no skips', () => {
      const { cost } = run(wl, 'reference');
      expect(cost.msrBitmapMerges).toBe(0);
      expect(cost.msrBitmapMergeSkips).toBe(0);
    });

    it('without an eVMCS the enlightened path has nothing to go by and merges on every entry', () => {
      const { cost } = run(cases[1][1], 'msr-bitmap=enlightened');
      expect(cost.msrBitmapMerges).toBe(entries);
      expect(cost.msrBitmapMergeSkips).toBe(0);
    });

    it('clean-fields copies only the always-copied fields on a VMRESUME', () => {
      const all = run(wl, 'reference').cost.evmcsFieldsCopied / entries;
      const opt = run(wl, 'optimized').cost.evmcsFieldsCopied;
      // the launch copies everything; each resume copies GUEST_RIP and TPR_THRESHOLD (clean group NONE)
      expect(opt).toBe(all + 2 * (entries - 1));
    });
  });
});
