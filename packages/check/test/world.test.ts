/**
 * The whole-world generator (arbitraries-world.ts), with fixed seeds and
 * bounded runs:
 *
 *  - its traces are valid: they round-trip through the text form, replay
 *    under the reference, and, unless violations are allowed, keep every
 *    contract the monitor knows (with violations allowed it breaks some,
 *    each where it says it does);
 *  - the default campaign's profiles do not diverge on them;
 *  - it makes what the windowed mix cannot: host memory changes under an
 *    enlightened MSR bitmap and under an eVMCS L0 has mapped, CPUID faulting
 *    on for L2, eVMCS and vmcs12 switches on one vCPU, VMXOFF and VMXON again,
 *    every clean-field group dirtied.
 */
import { EVMCS, EVMCS_CLEAN_GROUPS, HV_ENLIGHTENMENTS_CONTROL, INVALID_GPA, VMCS, vmcsFieldByEncoding } from '@nvx/arch';
import { AREA_IDS, Replayer, World, gpaToGfn, initialState, parseProfile, readGuest } from '@nvx/emulator';
import { TraceEvent, TraceHeader, formatTextTrace, parseTextTrace } from '@nvx/trace';
import fc from 'fast-check';
import { GROUP_FIELDS } from '../src/arbitraries';
import { arbWorldTrace, arbWorldTraceWithViolations } from '../src/arbitraries-world';
import { ContractMonitor } from '../src/contracts';
import { defaultFuzzProfiles } from '../src/fuzz';
import { screenProfiles } from '../src/minimize';
import { arbCampaignTrace, arbMixedTrace } from '../src/mix';

const reference = parseProfile('reference');

/** The contract violations of a trace, as the monitor sees them on the reference replay. */
function violations(header: TraceHeader, events: readonly TraceEvent[]): number[] {
  const r = new Replayer(initialState(header, reference), reference);
  const m = new ContractMonitor();
  events.forEach((e, i) => {
    m.observe(r.peek(), e, i);
    r.apply(e);
  });
  return m.violations.map((v) => v.index);
}

describe('the whole-world generator', () => {
  it('makes valid, contract-keeping traces', () => {
    for (const t of fc.sample(arbWorldTrace(), { seed: 0x30, numRuns: 30 })) {
      expect(t.events.length).toBeGreaterThanOrEqual(5);
      const back = parseTextTrace(formatTextTrace(t.header, t.events));
      expect(back.events).toEqual(t.events);
      expect(violations(t.header, t.events)).toEqual([]);
    }
  });

  it('with violations allowed, breaks contracts exactly where it says', () => {
    let broken = 0;
    for (const t of fc.sample(arbWorldTraceWithViolations({ allowViolations: true }), { seed: 0x31, numRuns: 80 })) {
      const seen = violations(t.header, t.events);
      // every violation the monitor sees is one the builder committed (an SDM one may also count as a stale clean bit later)
      for (const i of seen) expect(t.violations.includes(i) || t.violations.some((j) => j < i)).toBe(true);
      if (seen.length) broken++;
    }
    expect(broken).toBeGreaterThan(0);
  });

  it("the default campaign's profiles do not diverge on its traces", () => {
    const profiles = defaultFuzzProfiles(AREA_IDS, ['guest-pages=kvm-map', 'msr-bitmap=enlightened', 'optimized']).map(parseProfile);
    for (const t of fc.sample(arbWorldTrace(), { seed: 0x32, numRuns: 12 })) {
      const hits = screenProfiles(t.header, t.events, reference, profiles, { stateAt: 'entries' });
      expect(hits.filter(Boolean)).toEqual([]);
    }
  });

  /** What a sample of traces reaches, counted on the reference replay. */
  function reach(traces: readonly { header: TraceHeader; events: readonly TraceEvent[] }[]) {
    const n = { hostUnderEnlightenedBitmap: 0, hostUnderMappedEvmcs: 0, l2CpuidFaulting: 0, formSwitch: 0, vmxonAgain: 0, switchBack: 0, manyAddresses: 0 };
    const groups = new Set<number>();
    for (const t of traces) {
      const r = new Replayer(initialState(t.header, reference), reference);
      const hit = { a: false, b: false, c: false, d: false, e: false, f: false, g: false };
      const used = new Map<number, bigint[]>();
      const forms = new Map<number, Set<string>>();
      const vmxoffs = new Set<number>();
      for (const e of t.events) {
        const w: World = r.peek();
        if (e.kind === 'host.page-zap' || e.kind === 'host.page-migrate' || e.kind === 'host.mmu-invalidate-start' || e.kind === 'host.memslot-move' || e.kind === 'host.memslot-delete') {
          const range = hostRange(w, e);
          for (const v of w.vcpus) {
            const ev = v.nested.vpAssistEvmcs;
            if (ev !== INVALID_GPA) {
              const ctl = readGuest(w, ev + BigInt(EVMCS.HV_ENLIGHTENMENTS_CONTROL_OFFSET), 4) ?? 0n;
              const bm = readGuest(w, ev + BigInt(vmcsFieldByEncoding(VMCS.MSR_BITMAP)!.evmcsOffset!), 8);
              if (ctl & BigInt(HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP) && bm !== null && range(gpaToGfn(bm))) hit.a = true;
            }
            if (v.nested.hvEvmcsVmptr !== INVALID_GPA && range(gpaToGfn(v.nested.hvEvmcsVmptr))) hit.b = true;
          }
        }
        if (e.kind === 'l2.cpuid' && w.vcpus[e.vcpu].nested.guestMode && w.vcpus[e.vcpu].cpuidFault.miscFeaturesEnables & 1n) hit.c = true;
        if (e.kind === 'l1.evmcs-ptr' || e.kind === 'l1.vmptrld') {
          const f = forms.get(e.vcpu) ?? new Set<string>();
          f.add(`${e.kind} ${e.gpa}`);
          forms.set(e.vcpu, f);
          if ([...f].some((x) => x.startsWith('l1.evmcs-ptr')) && [...f].some((x) => x.startsWith('l1.vmptrld'))) hit.d = true;
          // away from a vmcs12 or an eVMCS and back to it
          const u = used.get(e.vcpu) ?? [];
          if (e.gpa !== u[u.length - 1]) {
            if (u.includes(e.gpa)) hit.f = true;
            u.push(e.gpa);
          }
          used.set(e.vcpu, u);
          if (new Set(u).size > 8) hit.g = true;
        }
        if (e.kind === 'l1.vmxoff' && w.vcpus[e.vcpu].nested.vmxon) vmxoffs.add(e.vcpu);
        if (e.kind === 'l1.vmxon' && vmxoffs.has(e.vcpu)) hit.e = true;
        if (e.kind === 'l1.evmcs-write') {
          const g = vmcsFieldByEncoding(e.field)?.cleanGroup;
          if (g !== null && g !== undefined && g >= 0) groups.add(g);
        }
        r.apply(e);
      }
      n.hostUnderEnlightenedBitmap += +hit.a;
      n.hostUnderMappedEvmcs += +hit.b;
      n.l2CpuidFaulting += +hit.c;
      n.formSwitch += +hit.d;
      n.vmxonAgain += +hit.e;
      n.switchBack += +hit.f;
      n.manyAddresses += +hit.g;
    }
    return { ...n, groups };
  }

  /** The frames a host event changes what backs. */
  function hostRange(w: World, e: TraceEvent): (gfn: number) => boolean {
    switch (e.kind) {
      case 'host.page-zap':
      case 'host.page-migrate':
        return (g) => g === Number(e.gfn);
      case 'host.mmu-invalidate-start':
        return (g) => g >= Number(e.gfn) && g < Number(e.gfn) + e.npages;
      case 'host.memslot-move':
      case 'host.memslot-delete': {
        const s = w.mem.slots.find((x) => x.slot === e.slot);
        return (g) => !!s && g >= s.gfn && g < s.gfn + s.npages;
      }
      default:
        return () => false;
    }
  }

  it('makes what the windowed mix cannot: host memory changes under an enlightened bitmap and a mapped eVMCS, and more', () => {
    const world = reach(fc.sample(arbWorldTrace(), { seed: 0x33, numRuns: 300 }));
    if (process.env.NVX_WORLD_REACH) process.stderr.write(`${JSON.stringify({ ...world, groups: world.groups.size })}\n`);
    expect(world.hostUnderEnlightenedBitmap).toBeGreaterThanOrEqual(3);
    expect(world.hostUnderMappedEvmcs).toBeGreaterThanOrEqual(5);
    expect(world.l2CpuidFaulting).toBeGreaterThanOrEqual(2);
    expect(world.formSwitch).toBeGreaterThanOrEqual(10);
    expect(world.vmxonAgain).toBeGreaterThanOrEqual(10);
    expect(world.switchBack).toBeGreaterThanOrEqual(10);
    // every clean-field group of a field L1 writes (GROUP_FIELDS, the controls, the MSR bitmap)
    const groups = new Set([...GROUP_FIELDS.map((f) => f.cleanGroup!), vmcsFieldByEncoding(VMCS.MSR_BITMAP)!.cleanGroup!, vmcsFieldByEncoding(VMCS.CPU_BASED_VM_EXEC_CONTROL)!.cleanGroup!]);
    expect([...groups].filter((b) => !world.groups.has(b)).map((b) => EVMCS_CLEAN_GROUPS[b]?.name ?? b)).toEqual([]);
    // the mix keeps each generator's memory in a window of its own: its host events never reach another part's enlightened bitmap
    const mix = reach(fc.sample(arbMixedTrace(), { seed: 0x33, numRuns: 30 }));
    expect(mix.hostUnderEnlightenedBitmap).toBe(0);
  });

  it('the full campaign draws from it; a choice of areas keeps the mix alone', () => {
    const full = fc.sample(arbCampaignTrace(), { seed: 0x34, numRuns: 40 });
    const fromWorld = full.filter((t) => t.header.provenance.generator === 'nvx fuzz world').length;
    expect(fromWorld).toBeGreaterThan(5);
    expect(fromWorld).toBeLessThan(35);
    for (const t of fc.sample(arbCampaignTrace({ areas: ['msr-bitmap', 'evmcs'] }), { seed: 0x34, numRuns: 10 })) expect(t.header.provenance.generator).toBe('nvx fuzz mix');
  });
});
