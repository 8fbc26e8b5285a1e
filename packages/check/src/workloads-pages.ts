/**
 * Generated workloads for the guest-pages area (seed 003): deterministic
 * event streams, pure functions of their arguments.
 *
 * - `l2SwitchWorkload`: one L1 vCPU runs N L2s, switching among their
 *   vmcs12s for S rounds (the shape of seed 003's vmx_l2_switch_test), to
 *   count nested-context reuses and recycles.
 * - `memslotPerfStream`: the shape of KVM's memslot_perf_test run in L1 with
 *   L2 as its guest (seed 003's benchmark): the "map", "unmap" and
 *   "unmap chunked" phases, as the nested VM-exits and entries they cause.
 */
import { CPU_BASED, KVM_CTLS_MUST_BE_1, MSR, PIN_BASED, SECONDARY_EXEC, VMCS, VMCS12_REVISION, VM_EXIT } from '@nvx/arch';
import { MemslotConfig, TraceEvent, makeHeader } from '@nvx/trace';
import { Replayer, Costs, diffCosts, initialState, parseProfile } from '@nvx/emulator';
import { Workload, WorkloadStream, materialize } from './workloads';

const PAGE = 0x1000n;

/**
 * vmcs12 controls for an L2 whose L1 gives it APIC virtualization: MSR
 * bitmaps, TPR shadow, APIC accesses, posted interrupts; with the must-be-1
 * bits of the TRUE control MSRs (vmx_control_verify) and what posted
 * interrupts need (nested_vmx_check_apicv_controls: external-interrupt
 * exiting, acknowledge interrupt on exit).
 */
const APICV = {
  cpu: BigInt((CPU_BASED.USE_MSR_BITMAPS | CPU_BASED.TPR_SHADOW | CPU_BASED.ACTIVATE_SECONDARY_CONTROLS | KVM_CTLS_MUST_BE_1.cpu) >>> 0),
  secondary: BigInt(SECONDARY_EXEC.VIRTUALIZE_APIC_ACCESSES | SECONDARY_EXEC.APIC_REGISTER_VIRT | SECONDARY_EXEC.VIRTUAL_INTR_DELIVERY),
  pin: BigInt((PIN_BASED.POSTED_INTR | PIN_BASED.EXT_INTR_MASK | KVM_CTLS_MUST_BE_1.pin) >>> 0),
  exit: BigInt((VM_EXIT.ACK_INTR_ON_EXIT | KVM_CTLS_MUST_BE_1.exit) >>> 0),
  entry: BigInt(KVM_CTLS_MUST_BE_1.entry),
};

interface L2Pages {
  vmcs12: bigint;
  msrBitmap: bigint;
  apicAccess: bigint;
  vapic: bigint;
  piDesc: bigint;
}

/** VMPTRLD and VMWRITEs that give an L2 its pages (the revision id written first when `fresh`). */
function* setupVmcs12(vcpu: number, p: L2Pages): Generator<TraceEvent, void, undefined> {
  yield { kind: 'l1.vmptrld', vcpu, gpa: p.vmcs12 };
  yield { kind: 'l1.vmwrite', vcpu, field: VMCS.CPU_BASED_VM_EXEC_CONTROL, value: APICV.cpu };
  yield { kind: 'l1.vmwrite', vcpu, field: VMCS.SECONDARY_VM_EXEC_CONTROL, value: APICV.secondary };
  yield { kind: 'l1.vmwrite', vcpu, field: VMCS.PIN_BASED_VM_EXEC_CONTROL, value: APICV.pin };
  yield { kind: 'l1.vmwrite', vcpu, field: VMCS.VM_EXIT_CONTROLS, value: APICV.exit };
  yield { kind: 'l1.vmwrite', vcpu, field: VMCS.VM_ENTRY_CONTROLS, value: APICV.entry };
  yield { kind: 'l1.vmwrite', vcpu, field: VMCS.POSTED_INTR_NV, value: 0xf2n };
  yield { kind: 'l1.vmwrite', vcpu, field: VMCS.MSR_BITMAP, value: p.msrBitmap };
  yield { kind: 'l1.vmwrite', vcpu, field: VMCS.APIC_ACCESS_ADDR, value: p.apicAccess };
  yield { kind: 'l1.vmwrite', vcpu, field: VMCS.VIRTUAL_APIC_PAGE_ADDR, value: p.vapic };
  yield { kind: 'l1.vmwrite', vcpu, field: VMCS.POSTED_INTR_DESC_ADDR, value: p.piDesc };
}

// ---------------------------------------------------------------- L2 switching

export interface L2SwitchOptions {
  /** vCPUs in the world (the contexts allowed are 8 per vCPU); default 1 */
  vcpus?: number;
  /** switch with VMCLEAR before each VMPTRLD (as when an L2 leaves the vCPU) instead of VMPTRLD alone; default false */
  vmclear?: boolean;
  /** config.unmanagedMemory; default true */
  unmanaged?: boolean;
}

/**
 * L1 on vCPU 0 runs `n` L2s, each with its own vmcs12 and APIC pages, one
 * after the other, `rounds` times: VMPTRLD (VMLAUNCH the first round,
 * VMRESUME after), L2 writes its TPR, VMCALL back to L1. Under pfncache-ctx
 * every VMPTRLD after the first round finds its nested context again when
 * n <= 8 x vCPUs: n x (rounds - 1) reuses, no recycling; beyond that the
 * least recently used context is recycled at every load.
 */
export function l2SwitchWorkload(n: number, rounds: number, opts: L2SwitchOptions = {}): Workload {
  if (!Number.isSafeInteger(n) || n < 1 || n > 64) throw new Error(`n must be 1..64, got ${n}`);
  if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error(`rounds must be a positive integer, got ${rounds}`);
  const vcpus = opts.vcpus ?? 1;
  // slot 0: VMXON regions and the vmcs12s; slot 1: 4 pages per L2 (MSR bitmap, APIC-access, virtual-APIC, PI descriptor)
  const memslots: MemslotConfig[] = [
    { slot: 0, gfn: 0n, npages: 0x100, flags: 0 },
    { slot: 1, gfn: 0x1000n, npages: 4 * n, flags: 0 },
  ];
  const header = makeHeader(
    { vcpus, unmanagedMemory: opts.unmanaged ?? true, memslots },
    { generator: 'nvx workloads l2Switch', n: String(n), rounds: String(rounds), vmclear: String(!!opts.vmclear) },
  );
  const pages = (i: number): L2Pages => {
    const base = 0x1000000n + BigInt(4 * i) * PAGE;
    return { vmcs12: 0x10000n + BigInt(i) * PAGE, msrBitmap: base, apicAccess: base + PAGE, vapic: base + 2n * PAGE, piDesc: base + 3n * PAGE };
  };
  function* events(): Generator<TraceEvent, void, undefined> {
    const vcpu = 0;
    yield { kind: 'l1.write', vcpu, gpa: 0x1000n, size: 4, value: BigInt(VMCS12_REVISION) };
    yield { kind: 'l1.vmxon', vcpu, gpa: 0x1000n };
    for (let i = 0; i < n; i++) yield { kind: 'l1.write', vcpu, gpa: pages(i).vmcs12, size: 4, value: BigInt(VMCS12_REVISION) };
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < n; i++) {
        const p = pages(i);
        if (r === 0) yield* setupVmcs12(vcpu, p);
        else yield { kind: 'l1.vmptrld', vcpu, gpa: p.vmcs12 };
        // after a VMCLEAR the vmcs12 is clear again: VMLAUNCH
        yield { kind: r === 0 || opts.vmclear ? 'l1.vmlaunch' : 'l1.vmresume', vcpu };
        yield { kind: 'l2.apic-write', vcpu, offset: 0x80, value: (0x10 * (i % 15) + r) & 0xff };
        yield { kind: 'l2.vmcall', vcpu };
        if (opts.vmclear) yield { kind: 'l1.vmclear', vcpu, gpa: p.vmcs12 };
      }
    }
  }
  return { header, events: [...events()] };
}

/** What pfncache-ctx's counters must read after l2SwitchWorkload(n, rounds, { vcpus }). */
export function expectedContextCounters(n: number, rounds: number, vcpus = 1): { reuse: number; recycle: number } {
  const cap = 8 * vcpus;
  if (n <= cap) return { reuse: n * (rounds - 1), recycle: 0 };
  // LRU with a cyclic order larger than the table: every load after the table fills misses
  return { reuse: 0, recycle: n * rounds - cap };
}

// ---------------------------------------------------------------- memslot_perf_test in L1

export type MemslotPerfPhase = 'map' | 'unmap' | 'unmap-chunked';
export const MEMSLOT_PERF_PHASES: readonly MemslotPerfPhase[] = ['map', 'unmap', 'unmap-chunked'];

export interface MemslotPerfOptions {
  /** memslots memslot_perf_test gives its guest (in L1's KVM); default 8192, as in seed 003's run */
  slots?: number;
  /** divide the test areas by this (a quick run with the same shape); default 1 */
  scale?: number;
  /** iterations of each phase; default 1 */
  iterations?: number;
  /** memslots of L1's own memory in L0 (unmanaged memory split into slots); default 64 */
  l0Slots?: number;
  /** config.unmanagedMemory; default true (seed 003's setting) */
  unmanaged?: boolean;
}

/** The selftest's areas, in 4 KiB pages: map 32 MiB, unmap 128 MiB, chunks of 2 MiB. */
const MAP_PAGES = 8192;
const UNMAP_PAGES = 32768;
const CHUNK_PAGES = 512;

/**
 * The nested VM-exits per iteration of each phase, from the selftest's
 * structure: the guest (L2) touching a page L1 unmapped faults into L1 (an
 * EPT violation, reflected); every madvise(MADV_DONTNEED) the host side (L1)
 * makes flushes L1's TLB for L2, an IPI to the vCPU running L2 (an exit to
 * L1). madvise calls stop at memslot boundaries, so their number depends on
 * the slot size: the test area divided among `slots`.
 */
export function memslotPerfShape(phase: MemslotPerfPhase, slots: number, scale = 1): { faults: number; ipis: number } {
  // a scaled run shrinks the areas and the slot count alike, so slot sizes (and the phases' shapes) stay
  const mapPages = Math.max(2, Math.floor(MAP_PAGES / scale));
  const unmapPages = Math.max(2, Math.floor(UNMAP_PAGES / scale));
  slots = Math.max(1, Math.floor(slots / scale));
  const madvise = (pages: number, chunk: number, slotPages: number) => Math.ceil(pages / Math.min(chunk, slotPages));
  switch (phase) {
    case 'map': {
      // two halves: L2 writes every page of one half while L1 unmaps the other, slot by slot
      const slotPages = Math.max(1, Math.floor(mapPages / slots));
      return { faults: mapPages, ipis: 2 * madvise(mapPages / 2, mapPages, slotPages) };
    }
    case 'unmap': {
      // L2 touches one page per half; L1 unmaps each half page by page
      const slotPages = Math.max(1, Math.floor(unmapPages / slots));
      return { faults: 2, ipis: 2 * madvise(unmapPages / 2, 1, slotPages) };
    }
    default: {
      // the same in 2 MiB chunks, each split at memslot boundaries
      const slotPages = Math.max(1, Math.floor(unmapPages / slots));
      return { faults: 2, ipis: 2 * madvise(unmapPages / 2, CHUNK_PAGES, slotPages) };
    }
  }
}

/** Where each phase's events start and end in a memslotPerfStream. */
export interface PhaseRange {
  phase: MemslotPerfPhase;
  first: number;
  end: number;
  faults: number;
  ipis: number;
}

export interface MemslotPerfStream extends WorkloadStream {
  readonly phases: readonly PhaseRange[];
}

/** Events per nested round trip: the exit, L1's handling (a store, or the IPI send on vCPU 1), the VMRESUME. */
const EVENTS_PER_ROUND_TRIP = 3;

/**
 * memslot_perf_test's map, unmap and unmap-chunked phases as L0 sees them
 * when L1 runs the test and L2 is its guest (seed 003's benchmark), on
 * unmanaged memory. L2 runs on vCPU 0 with APIC virtualization and posted
 * interrupts (the APIC-access page, the virtual-APIC page, the descriptor)
 * and MSR bitmaps; L1's host thread runs on vCPU 1.
 *
 * Each nested round trip is three events:
 * - a fault: `l2.vmcall` (standing for the EPT violation L1 handles: the
 *   model has no EPT), L1's store to its EPT page, `l1.vmresume`;
 * - an IPI: `l1.wrmsr X2APIC_ICR` on vCPU 1 (L1's TLB-flush IPI),
 *   `l2.vmcall` (standing for the interrupt's exit to L1), `l1.vmresume`.
 * What L0 does for the nested pages at each exit and entry is what the
 * guest-pages paths differ in.
 */
export function memslotPerfStream(phases: readonly MemslotPerfPhase[] = MEMSLOT_PERF_PHASES, opts: MemslotPerfOptions = {}): MemslotPerfStream {
  const slots = opts.slots ?? 8192;
  const scale = opts.scale ?? 1;
  const iterations = opts.iterations ?? 1;
  const l0Slots = Math.max(2, Math.min(opts.l0Slots ?? 64, 512));
  // L1's memory: l0Slots memslots of 0x100 pages from gfn 0
  const memslots: MemslotConfig[] = Array.from({ length: l0Slots }, (_, i) => ({ slot: i, gfn: BigInt(i * 0x100), npages: 0x100, flags: 0 }));
  const header = makeHeader(
    { vcpus: 2, unmanagedMemory: opts.unmanaged ?? true, memslots },
    { generator: 'nvx workloads memslotPerf', phases: phases.join(' '), slots: String(slots), scale: String(scale), iterations: String(iterations), l0Slots: String(l0Slots) },
  );
  const L2: L2Pages = { vmcs12: 0x3000n, msrBitmap: 0x104000n, apicAccess: 0x205000n, vapic: 0x306000n, piDesc: 0x407000n };
  const ept = 0x500000n;
  const setup: TraceEvent[] = [
    { kind: 'l1.write', vcpu: 0, gpa: 0x1000n, size: 4, value: BigInt(VMCS12_REVISION) },
    { kind: 'l1.write', vcpu: 1, gpa: 0x2000n, size: 4, value: BigInt(VMCS12_REVISION) },
    { kind: 'l1.vmxon', vcpu: 0, gpa: 0x1000n },
    { kind: 'l1.vmxon', vcpu: 1, gpa: 0x2000n },
    { kind: 'l1.write', vcpu: 0, gpa: L2.vmcs12, size: 4, value: BigInt(VMCS12_REVISION) },
    ...setupVmcs12(0, L2),
    { kind: 'l1.vmlaunch', vcpu: 0 },
  ];
  const ranges: PhaseRange[] = [];
  let at = setup.length;
  for (const phase of phases) {
    const s = memslotPerfShape(phase, slots, scale);
    const n = iterations * EVENTS_PER_ROUND_TRIP * (s.faults + s.ipis);
    ranges.push({ phase, first: at, end: at + n, faults: s.faults * iterations, ipis: s.ipis * iterations });
    at += n;
  }
  function* events(): Generator<TraceEvent, void, undefined> {
    yield* setup;
    for (const r of ranges) {
      for (let it = 0; it < iterations; it++) {
        const s = memslotPerfShape(r.phase, slots, scale);
        // interleave the two kinds as the two threads would: one fault per ipis/faults IPIs
        let f = 0;
        let i = 0;
        while (f < s.faults || i < s.ipis) {
          if (f < s.faults && (i >= s.ipis || f * s.ipis <= i * s.faults)) {
            yield { kind: 'l2.vmcall', vcpu: 0 };
            yield { kind: 'l1.write', vcpu: 0, gpa: ept + BigInt(8 * (f % 512)), size: 8, value: 0x7n | (BigInt(f) << 12n) };
            f++;
          } else {
            yield { kind: 'l1.wrmsr', vcpu: 1, msr: MSR.MSR_X2APIC_ICR, value: 0xf1n };
            yield { kind: 'l2.vmcall', vcpu: 0 };
            i++;
          }
          yield { kind: 'l1.vmresume', vcpu: 0 };
        }
      }
    }
  }
  return { header, count: at, events, phases: ranges };
}

export function memslotPerfWorkload(phases: readonly MemslotPerfPhase[] = MEMSLOT_PERF_PHASES, opts: MemslotPerfOptions = {}): Workload & { phases: readonly PhaseRange[] } {
  const s = memslotPerfStream(phases, opts);
  return { ...materialize(s), phases: s.phases };
}

/** Seed 003's figures (memslot_perf_test, 8192 memslots, unmanaged memory): seconds before and after the series. */
export const SEED_003_FIGURES: Record<MemslotPerfPhase, { before: number; after: number }> = {
  map: { before: 26.12, after: 1.54 },
  unmap: { before: 40.0, after: 0.017 },
  'unmap-chunked': { before: 10.07, after: 0.005 },
};

/** The profiles the cost summary compares: KVM's merged MSR bitmap, and each guest-pages path. */
export const MEMSLOT_PERF_PROFILES: readonly string[] = ['msr-bitmap=merge,guest-pages=kvm-map', 'msr-bitmap=merge,guest-pages=pfncache', 'msr-bitmap=merge,guest-pages=pfncache-ctx'];

export interface PhaseCosts {
  phase: MemslotPerfPhase;
  profile: string;
  /** nested round trips (exits to L1 and VMRESUMEs) */
  roundTrips: number;
  costs: Costs;
}

/**
 * Replay memslotPerfStream under each profile and split the costs by phase
 * (the setup and the first VMLAUNCH are left out). Every outcome is checked:
 * each VMRESUME must enter, each exit must reach L1.
 */
export function memslotPerfCosts(opts: MemslotPerfOptions = {}, profiles: readonly string[] = MEMSLOT_PERF_PROFILES): PhaseCosts[] {
  const out: PhaseCosts[] = [];
  for (const spec of profiles) {
    const s = memslotPerfStream(MEMSLOT_PERF_PHASES, opts);
    const profile = parseProfile(spec);
    const r = new Replayer(initialState(s.header, profile), profile);
    let i = 0;
    let phase = -1;
    let mark = { ...r.cost };
    for (const e of s.events()) {
      if (phase + 1 < s.phases.length && i === s.phases[phase + 1].first) {
        if (phase >= 0) out.push({ phase: s.phases[phase].phase, profile: spec, roundTrips: s.phases[phase].faults + s.phases[phase].ipis, costs: diffCosts(r.cost, mark) });
        phase++;
        mark = { ...r.cost };
      }
      const o = r.apply(e);
      const bad = (e.kind === 'l1.vmresume' || e.kind === 'l1.vmlaunch') && o.k !== 'entered' ? 'entered' : e.kind === 'l2.vmcall' && o.k !== 'exit' ? 'an exit' : null;
      if (bad) throw new Error(`memslotPerf under ${spec}: event ${i} (${e.kind}) should have ${bad}, got ${o.k}`);
      i++;
    }
    out.push({ phase: s.phases[phase].phase, profile: spec, roundTrips: s.phases[phase].faults + s.phases[phase].ipis, costs: diffCosts(r.cost, mark) });
  }
  return out;
}

