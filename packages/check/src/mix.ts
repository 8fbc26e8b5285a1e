/**
 * One generator for every area: the per-area generators' traces, each given
 * vCPUs, guest-physical memory and memslot numbers of its own, interleaved
 * into one multi-area, multi-vCPU trace.
 *
 * Each part is built by its area's generator exactly as that generator
 * builds it alone (its builder keeps the trace valid and, unless violations
 * are allowed, contract-keeping), then moved:
 *
 *  - vCPU i of part k becomes vCPU base_k + i (parts never share a vCPU);
 *  - every guest-physical address of part k (event `gpa` fields, memslot and
 *    page gfns, and the VMCS fields L0 dereferences: MSR_BITMAP,
 *    VMREAD/VMWRITE_BITMAP, VMCS_LINK_POINTER, APIC_ACCESS_ADDR,
 *    VIRTUAL_APIC_PAGE_ADDR, POSTED_INTR_DESC_ADDR) moves up by the window of
 *    its generator (256 MiB apart), except INVALID_GPA;
 *  - memslot s of part k becomes memslot 16k + s.
 *
 * Guest page 0 stays where it is and stays all zero: a vmcs12 field L1 never
 * wrote reads 0, and every generator's world has a zero page there, so the
 * mix always has a memslot over it (the msr-bitmap generator's, which sits
 * at window 0). The world configuration is the union of the parts' (eVMCS
 * when any part uses it, APICv when any part has it; the shadow-VMCS
 * generator's other hardware features, the
 * cpuid-fault generator's CPUID faulting, the guest-pages generator's
 * unmanaged memory; the most physical CPUs).
 *
 * No part can see another's memory, and host events only touch their own
 * part's memslots and pages, so each part's events keep their outcomes under
 * the reference (mix.test.ts checks it); what the parts share is what the
 * paths under test share: VM-wide caches and generations, physical CPUs,
 * the L0 code. The interleaving is drawn too: a schedule of (part, run
 * length) picks, shrinking towards one part after the other.
 */
import { AREA_IDS, AreaId } from '@nvx/emulator';
import { INVALID_GPA, VMCS } from '@nvx/arch';
import { EVENT_SCHEMA, MemslotConfig, TraceEvent, TraceHeader, WorldConfig, makeHeader } from '@nvx/trace';
import fc from 'fast-check';
import { arbTrace } from './arbitraries';
import { arbCpuidTrace } from './arbitraries-cpuid';
import { arbPagesTrace } from './arbitraries-pages';
import { arbShadowTrace } from './arbitraries-shadow';
import { arbWorldTrace } from './arbitraries-world';

/** The per-area generators, in window order. */
export type MixPartId = 'msr-bitmap+evmcs' | 'shadow-vmcs' | 'guest-pages' | 'cpuid-fault';
export const MIX_PARTS: readonly MixPartId[] = ['msr-bitmap+evmcs', 'shadow-vmcs', 'guest-pages', 'cpuid-fault'];

/** The areas each generator exercises (its events reach these areas' paths). */
export const MIX_PART_AREAS: Record<MixPartId, readonly AreaId[]> = {
  'msr-bitmap+evmcs': ['msr-bitmap', 'evmcs'],
  'shadow-vmcs': ['shadow-vmcs', 'msr-bitmap'],
  'guest-pages': ['guest-pages', 'msr-bitmap', 'evmcs'],
  'cpuid-fault': ['cpuid-fault'],
};

/** The generators to mix for these areas: every generator aimed at one of them. */
export function partsForAreas(areas: readonly AreaId[]): MixPartId[] {
  const aim: Record<MixPartId, AreaId[]> = { 'msr-bitmap+evmcs': ['msr-bitmap', 'evmcs'], 'shadow-vmcs': ['shadow-vmcs'], 'guest-pages': ['guest-pages'], 'cpuid-fault': ['cpuid-fault'] };
  return MIX_PARTS.filter((p) => aim[p].some((a) => areas.includes(a)));
}

export interface MixOptions {
  /** areas to aim at (default: all) */
  areas?: readonly AreaId[];
  /** let the generators that can break a contract do so now and then (the msr-bitmap+evmcs generator) */
  allowViolations?: boolean;
  /** the msr-bitmap+evmcs generator's L1 only as careful as the TLFS asks (arbitraries.ts knownFindings) */
  knownFindings?: boolean;
}

export interface MixPart {
  id: MixPartId;
  /** vCPUs [vcpuBase, vcpuBase + vcpus) */
  vcpuBase: number;
  vcpus: number;
  /** guest-physical offset of the part's window */
  gpaOffset: bigint;
  slotBase: number;
  /** the part's events in the trace (indices, ascending) */
  indices: number[];
}

export interface MixedTrace {
  header: TraceHeader;
  events: TraceEvent[];
  parts: MixPart[];
}

/** A part as its generator built it (before moving). */
export interface PartTrace {
  id: MixPartId;
  header: TraceHeader;
  events: TraceEvent[];
}

// ---------------------------------------------------------------- moving a part

/** 256 MiB between windows: every generator's guest memory (and the unbacked addresses it names on purpose) fits below. */
export const MIX_WINDOW = 0x1000_0000n;
const SLOTS_PER_PART = 16;

/** The vmcs12 fields whose values are guest-physical addresses L0 reads or maps. */
export const ADDRESS_FIELDS: ReadonlySet<number> = new Set([
  VMCS.MSR_BITMAP,
  VMCS.VMREAD_BITMAP,
  VMCS.VMWRITE_BITMAP,
  VMCS.VMCS_LINK_POINTER,
  VMCS.APIC_ACCESS_ADDR,
  VMCS.VIRTUAL_APIC_PAGE_ADDR,
  VMCS.POSTED_INTR_DESC_ADDR,
]);

export interface Move {
  vcpuBase: number;
  gpaOffset: bigint;
  slotBase: number;
}

const U64 = (1n << 64n) - 1n;

/** One event moved into its part's vCPUs, window and memslots. */
export function moveEvent(e: TraceEvent, m: Move): TraceEvent {
  if (m.vcpuBase === 0 && m.gpaOffset === 0n && m.slotBase === 0) return e;
  const out = { ...e } as Record<string, unknown>;
  for (const [name, type] of EVENT_SCHEMA[e.kind].fields) {
    const v = out[name];
    if (type === 'vcpu') out[name] = (v as number) + m.vcpuBase;
    else if (name === 'gpa') out[name] = ((v as bigint) + m.gpaOffset) & U64;
    else if (name === 'gfn') out[name] = (v as bigint) + (m.gpaOffset >> 12n);
    else if (name === 'slot') out[name] = (v as number) + m.slotBase;
  }
  if ((e.kind === 'l1.vmwrite' || e.kind === 'l1.evmcs-write') && ADDRESS_FIELDS.has(e.field) && e.value !== INVALID_GPA) out.value = (e.value + m.gpaOffset) & U64;
  return out as unknown as TraceEvent;
}

export function moveMemslot(s: MemslotConfig, m: Move): MemslotConfig {
  return { slot: s.slot + m.slotBase, gfn: s.gfn + (m.gpaOffset >> 12n), npages: s.npages, flags: s.flags };
}

/** The memslot every mix has over guest page 0 (the msr-bitmap+evmcs generator's own slot 0). */
const ZERO_SLOT: MemslotConfig = { slot: 0, gfn: 0n, npages: 0x40, flags: 0 };

// ---------------------------------------------------------------- the combination

/** The union of the parts' world configurations (see the module comment). */
function mixConfig(parts: readonly PartTrace[]): Partial<WorldConfig> {
  const base = makeHeader().config;
  const of = (id: MixPartId) => parts.find((p) => p.id === id)?.header.config;
  const shadow = of('shadow-vmcs');
  const cpuid = of('cpuid-fault');
  const pages = of('guest-pages');
  return {
    evmcs: parts.some((p) => p.header.config.evmcs),
    shadowVmcs: shadow?.shadowVmcs ?? false,
    vmwriteAnyField: shadow?.vmwriteAnyField ?? base.vmwriteAnyField,
    // APICv when any part has it: the guest-pages and MSR-bitmap parts draw APIC-virtualization controls
    // and posted interrupts, which KVM offers L1 only with enable_apicv (nested_vmx_setup_pinbased_ctls,
    // nested_vmx_setup_secondary_ctls; vmx_control_verify refuses them otherwise)
    apicv: parts.length ? parts.some((p) => p.header.config.apicv) : base.apicv,
    pml: shadow?.pml ?? base.pml,
    preemptionTimer: shadow?.preemptionTimer ?? base.preemptionTimer,
    cpuidFaultHw: cpuid?.cpuidFaultHw ?? base.cpuidFaultHw,
    l2CpuidFaultArchitectural: cpuid?.l2CpuidFaultArchitectural ?? base.l2CpuidFaultArchitectural,
    unmanagedMemory: pages?.unmanagedMemory ?? false,
    pcpus: Math.max(1, ...parts.map((p) => p.header.config.pcpus)),
  };
}

/**
 * Combine parts (in MIX_PARTS order, each at most once) with a schedule:
 * each entry picks the next part among those with events left
 * (entry % parts left) and how many of its events come next
 * (1 + floor(entry / parts left) % 8). When the schedule runs out, the
 * parts follow one another.
 */
export function mixParts(parts: readonly PartTrace[], schedule: readonly number[], provenance: Record<string, string> = {}): MixedTrace {
  const sorted = [...parts].sort((a, b) => MIX_PARTS.indexOf(a.id) - MIX_PARTS.indexOf(b.id));
  const placed: MixPart[] = [];
  const memslots: MemslotConfig[] = [];
  let vcpuBase = 0;
  for (const p of sorted) {
    const w = MIX_PARTS.indexOf(p.id);
    const mv: Move = { vcpuBase, gpaOffset: MIX_WINDOW * BigInt(w), slotBase: SLOTS_PER_PART * w };
    placed.push({ id: p.id, vcpuBase, vcpus: p.header.config.vcpus, gpaOffset: mv.gpaOffset, slotBase: mv.slotBase, indices: [] });
    for (const s of p.header.config.memslots) memslots.push(moveMemslot(s, mv));
    vcpuBase += p.header.config.vcpus;
  }
  if (!memslots.some((s) => s.gfn === 0n)) memslots.unshift({ ...ZERO_SLOT });
  memslots.sort((a, b) => a.slot - b.slot);

  const events: TraceEvent[] = [];
  const next = sorted.map(() => 0);
  const take = (k: number, n: number) => {
    const p = sorted[k];
    const mv: Move = placed[k];
    for (let i = 0; i < n && next[k] < p.events.length; i++) {
      placed[k].indices.push(events.length);
      events.push(moveEvent(p.events[next[k]++], mv));
    }
  };
  for (const s of schedule) {
    const left = sorted.map((_, k) => k).filter((k) => next[k] < sorted[k].events.length);
    if (!left.length) break;
    take(left[s % left.length], 1 + (Math.floor(s / left.length) % 8));
  }
  sorted.forEach((p, k) => take(k, p.events.length));

  const header = makeHeader(
    { ...mixConfig(sorted), vcpus: Math.max(1, vcpuBase), memslots },
    { generator: 'nvx fuzz mix', parts: placed.map((p) => `${p.id}@vcpu${p.vcpuBase}`).join(' ') || 'none', ...provenance },
  );
  return { header, events, parts: placed };
}

// ---------------------------------------------------------------- the arbitrary

/**
 * One part's generator. `evmcs` is the mix's: eVMCS is enabled for the
 * whole VM or not at all, and with it KVM refuses the controls eVMCS v1
 * cannot express (nested_evmcs_check_controls) for every VMCS, so the parts
 * that set controls are drawn knowing it (their L1 reads filtered MSRs).
 */
function partArbitrary(id: MixPartId, o: MixOptions, evmcs: boolean): fc.Arbitrary<PartTrace> {
  const tag = (a: fc.Arbitrary<{ header: TraceHeader; events: TraceEvent[] }>) => a.map((t) => ({ id, header: t.header, events: t.events }));
  switch (id) {
    case 'msr-bitmap+evmcs':
      return tag(arbTrace({ allowViolations: !!o.allowViolations, knownFindings: !!o.knownFindings, evmcs }));
    case 'shadow-vmcs':
      return tag(arbShadowTrace({ evmcs }));
    case 'guest-pages':
      return tag(arbPagesTrace({ evmcs }));
    case 'cpuid-fault':
      return tag(arbCpuidTrace());
  }
}

/**
 * Mixed traces for the selected areas. With one generator, every trace is
 * that generator's; with several, each takes part in about two traces in
 * three (shrinking drops whole parts first), in an interleaving drawn with
 * them.
 */
export function arbMixedTrace(o: MixOptions = {}): fc.Arbitrary<MixedTrace> {
  const areas = o.areas && o.areas.length ? o.areas : AREA_IDS;
  const ids = partsForAreas(areas);
  if (!ids.length) throw new Error(`no generator for areas ${areas.join(', ')}`);
  const schedule = fc.array(fc.nat(), { maxLength: 48, size: 'max' });
  // eVMCS in two mixes of three, as the msr-bitmap+evmcs generator draws it alone
  return fc.constantFrom(true, true, false).chain((evmcs) => {
    const parts = ids.map((id) => (ids.length === 1 ? partArbitrary(id, o, evmcs) : fc.option(partArbitrary(id, o, evmcs), { freq: 2, nil: null })));
    return fc.tuple(fc.tuple(...parts), schedule).map(([ps, s]) => mixParts(ps.filter((p): p is PartTrace => p !== null), s, { areas: areas.join(',') }));
  });
}

// ---------------------------------------------------------------- the default campaign's traces

/**
 * What a campaign generates. For every area (the default campaign), half
 * the traces come from the whole-world generator (arbitraries-world.ts: one
 * address space, every area's set-up meeting every other area's events,
 * host memory changes under what L1 set up) and half from the per-area mix
 * above (each generator's deep sequences in its own window), whose
 * msr-bitmap+evmcs L1 is then only as careful as the TLFS asks: the inputs
 * are not shaped around known findings; the paths known to diverge on them
 * are left out of the profiles checked (defaultFuzzProfiles). For a choice
 * of areas, the mix alone, as before. A world trace has no parts.
 */
export function arbCampaignTrace(o: MixOptions = {}): fc.Arbitrary<MixedTrace> {
  const areas = o.areas && o.areas.length ? o.areas : AREA_IDS;
  if (!AREA_IDS.every((a) => areas.includes(a))) return arbMixedTrace(o);
  const mixed = arbMixedTrace({ ...o, knownFindings: o.knownFindings ?? true });
  const world = arbWorldTrace({ allowViolations: !!o.allowViolations }).map(
    (t): MixedTrace => ({ header: { ...t.header, provenance: { ...t.header.provenance, generator: 'nvx fuzz world', areas: areas.join(',') } }, events: t.events, parts: [] }),
  );
  return fc.oneof(world, mixed);
}
