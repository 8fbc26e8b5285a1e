/**
 * The mixed generator of `nvx fuzz`: every area's generator, each part on
 * vCPUs, memory and memslots of its own, interleaved.
 *
 *  - each part's events keep the outcomes they have in the part's own trace
 *    (under the reference), so the per-area generators' guarantees
 *    (validity, contracts kept) carry over to the mix;
 *  - mixed traces keep every contract and no correct path diverges on them;
 *  - one seed gives one trace; shrinking drops whole parts.
 */
import fc from 'fast-check';
import { Replayer, parseProfile } from '@nvx/emulator';
import { Outcome, formatEvent, formatOutcome } from '@nvx/trace';
import { arbTrace } from '../src/arbitraries';
import { arbCpuidTrace } from '../src/arbitraries-cpuid';
import { arbPagesTrace } from '../src/arbitraries-pages';
import { arbShadowTrace } from '../src/arbitraries-shadow';
import { ContractMonitor } from '../src/contracts';
import { defaultFuzzProfiles } from '../src/fuzz';
import { screenProfiles } from '../src/minimize';
import { MIX_PARTS, MixedTrace, PartTrace, arbMixedTrace, mixParts, moveEvent, partsForAreas } from '../src/mix';

const reference = parseProfile('reference');

/** Outcomes agree, a value read back may be an address moved by the part's window, CPUID's Hyper-V leaf follows config.evmcs. */
function sameOutcome(alone: Outcome, mixed: Outcome, offset: bigint): boolean {
  if (alone.k !== mixed.k) return false;
  if (alone.k === 'value') return alone.value === (mixed as typeof alone).value || (mixed as typeof alone).value - alone.value === offset;
  if (alone.k === 'ignored') return true;
  return formatOutcome(alone) === formatOutcome(mixed);
}

describe('the mixed generator', () => {
  it('keeps every part\'s outcomes, and every contract, on 120 mixes of all four generators', () => {
    // eVMCS is the VM's, on or off for every part (with it KVM refuses what eVMCS v1 cannot express, for every VMCS)
    const arbs = (evmcs: boolean) => fc.tuple(arbTrace({ evmcs }), arbShadowTrace({ evmcs }), arbPagesTrace({ evmcs }), arbCpuidTrace());
    const samples = fc.sample(fc.tuple(fc.boolean().chain(arbs), fc.array(fc.nat(), { maxLength: 48 })), { seed: 0x51, numRuns: 120 });
    let compared = 0;
    for (const [ts, schedule] of samples) {
      const parts: PartTrace[] = ts.map((t, i) => ({ id: MIX_PARTS[i], header: t.header, events: t.events }));
      const m = mixParts(parts, schedule);
      expect(m.events.length).toBe(parts.reduce((a, p) => a + p.events.length, 0));
      const r = Replayer.fromHeader(m.header, reference);
      const monitor = new ContractMonitor();
      const outs = m.events.map((e, i) => {
        monitor.observe(r.peek(), e, i);
        return r.apply(e);
      });
      expect(monitor.violations).toEqual([]);
      m.parts.forEach((p, k) => {
        const alone = Replayer.fromHeader(parts[k].header, reference);
        parts[k].events.forEach((e, j) => {
          const a = alone.apply(e);
          const b = outs[p.indices[j]];
          if (e.kind.endsWith('.cpuid') && (e as { leaf: number }).leaf === 0x4000000a) return;
          compared++;
          if (!sameOutcome(a, b, p.gpaOffset)) throw new Error(`${p.id} event ${j} (${formatEvent(e)}): ${formatOutcome(a)} alone, ${formatOutcome(b)} mixed`);
        });
      });
    }
    expect(compared).toBeGreaterThan(10_000);
  });

  it('moves vCPUs, addresses, memslots and the VMCS fields L0 dereferences, but not INVALID_GPA', () => {
    const mv = { vcpuBase: 2, gpaOffset: 0x1000_0000n, slotBase: 16 };
    expect(moveEvent({ kind: 'l1.vmptrld', vcpu: 1, gpa: 0x4000n }, mv)).toEqual({ kind: 'l1.vmptrld', vcpu: 3, gpa: 0x10004000n });
    expect(moveEvent({ kind: 'l1.vmwrite', vcpu: 0, field: 0x2004 /* MSR_BITMAP */, value: 0x18000n }, mv)).toMatchObject({ vcpu: 2, value: 0x10018000n });
    expect(moveEvent({ kind: 'l1.vmwrite', vcpu: 0, field: 0x2800 /* VMCS_LINK_POINTER */, value: 0xffffffffffffffffn }, mv)).toMatchObject({ value: 0xffffffffffffffffn });
    expect(moveEvent({ kind: 'l1.vmwrite', vcpu: 0, field: 0x681e /* GUEST_RIP */, value: 0x1234n }, mv)).toMatchObject({ value: 0x1234n });
    expect(moveEvent({ kind: 'host.memslot-move', slot: 1, gfn: 0x800n }, mv)).toEqual({ kind: 'host.memslot-move', slot: 17, gfn: 0x10800n });
    expect(moveEvent({ kind: 'l1.posted-intr', vcpu: 0, target: 1, gpa: 0x102000n, vector: 0x30 }, mv)).toEqual({ kind: 'l1.posted-intr', vcpu: 2, target: 3, gpa: 0x10102000n, vector: 0x30 });
  });

  it('no correct path diverges on 60 mixed traces (all profiles fuzz checks by default)', () => {
    const profiles = defaultFuzzProfiles(['msr-bitmap', 'evmcs', 'shadow-vmcs', 'guest-pages', 'cpuid-fault'], ['guest-pages=kvm-map']).map(parseProfile);
    for (const t of fc.sample(arbMixedTrace(), { seed: 0x52, numRuns: 60 })) {
      const hits = screenProfiles(t.header, t.events, reference, profiles);
      const bad = hits.findIndex((h) => h !== null);
      if (bad >= 0) throw new Error(`${profiles[bad].name} diverges at event ${hits[bad]!.index}: ${formatEvent(t.events[hits[bad]!.index])}`);
    }
  });

  it('mixes several parts on several vCPUs, with host events among L1 and L2 events', () => {
    const seen = { parts: new Set<number>(), multiVcpu: 0, interleaved: 0, host: 0, l2: 0 };
    for (const t of fc.sample(arbMixedTrace(), { seed: 0x53, numRuns: 80 })) {
      seen.parts.add(t.parts.length);
      if (t.header.config.vcpus > 1) seen.multiVcpu++;
      // interleaved: some part's events are not one contiguous run
      if (t.parts.some((p) => p.indices.length > 1 && p.indices[p.indices.length - 1] - p.indices[0] + 1 > p.indices.length)) seen.interleaved++;
      if (t.events.some((e) => e.kind.startsWith('host.'))) seen.host++;
      if (t.events.some((e) => e.kind.startsWith('l2.'))) seen.l2++;
    }
    expect([...seen.parts].sort()).toEqual(expect.arrayContaining([1, 2, 3, 4]));
    expect(seen.multiVcpu).toBeGreaterThan(60);
    expect(seen.interleaved).toBeGreaterThan(40);
    expect(seen.host).toBeGreaterThan(60);
    expect(seen.l2).toBeGreaterThan(50);
  });

  it('is deterministic for a seed, and aims at the areas asked for', () => {
    const text = (ts: MixedTrace[]) => ts.map((t) => t.events.map(formatEvent).join('\n'));
    expect(text(fc.sample(arbMixedTrace(), { seed: 5, numRuns: 5 }))).toEqual(text(fc.sample(arbMixedTrace(), { seed: 5, numRuns: 5 })));
    expect(partsForAreas(['cpuid-fault'])).toEqual(['cpuid-fault']);
    expect(partsForAreas(['evmcs', 'guest-pages'])).toEqual(['msr-bitmap+evmcs', 'guest-pages']);
    for (const t of fc.sample(arbMixedTrace({ areas: ['cpuid-fault'] }), { seed: 6, numRuns: 20 })) expect(t.parts.map((p) => p.id)).toEqual(['cpuid-fault']);
  });

  it('shrinks towards fewer parts', () => {
    // a property that fails whenever the cpuid-fault part takes part: the shrunk trace has that part alone
    const d = fc.check(
      fc.property(arbMixedTrace(), (t) => !t.parts.some((p) => p.id === 'cpuid-fault' && p.indices.length > 0)),
      { seed: 7, numRuns: 100 },
    );
    expect(d.failed).toBe(true);
    expect(d.counterexample![0].parts.map((p) => p.id)).toEqual(['cpuid-fault']);
  });
});
