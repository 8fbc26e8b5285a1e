/**
 * fast-check generators of traces for the cpuid-fault area.
 *
 * As for the other areas, fast-check draws *choices* (small number tuples)
 * and a deterministic builder turns them into events. The builder mirrors
 * what matters of the world (per vCPU: where it is loaded, its thread's own
 * faulting, the guest's MISC_FEATURES_ENABLES and MSR_PLATFORM_INFO, SMM,
 * and a minimal nested setup; per host task: its faulting and its last
 * CPU) and only picks an event that is valid now: guest instructions only
 * on a loaded vCPU, L2 events only while L2 runs, the vCPU thread's
 * arch_prctl only outside KVM_RUN, no VMX instruction in SMM. No draw is
 * rejected, so every shrunk trace is valid too.
 *
 * The builder also predicts each event's outcome under the reference (kind,
 * and the value of every RDMSR and vcpu_put): an independent statement of
 * the area's rules that the tests hold the emulator to.
 *
 * The mix: scheduling (loads, puts, preemption by host tasks, two CPUs),
 * host tasks turning their own faulting on and off and executing CPUID, the
 * vCPU thread's own faulting (a non-zero host value at load), guest writes
 * to 0x140 and 0xCE (valid and not), CPUIDs at every CPL, SMM, and, with
 * nesting, L1's minimal setup (revision id written at the VMXON region and
 * the vmcs12 with l1.write, VMXON, VMPTRLD, VMLAUNCH) then L2's CPUIDs,
 * MSR accesses and exits.
 */
import { MSR, MSR_PLATFORM_INFO_CPUID_FAULT, VMCS, VMCS12_REVISION, CPU_BASED, KVM_CTLS_MUST_BE_1 } from '@nvx/arch';
import { Profile, parseProfile } from '@nvx/emulator';
import { Expect, TraceEvent, TraceHeader, makeHeader } from '@nvx/trace';
import fc from 'fast-check';
import { DivergenceFound, Digits } from './arbitraries';
import { DiffResult, diffEvents } from './diff';

// ---------------------------------------------------------------- options

export interface CpuidBuildOptions {
  vcpus: number;
  pcpus: number;
  /** config.cpuidFaultHw */
  cpuidFaultHw: boolean;
  /** config.l2CpuidFaultArchitectural */
  l2Architectural: boolean;
  /** L1 may set up and run L2 */
  nesting: boolean;
  maxEvents: number;
}

export interface ArbCpuidOptions {
  vcpus?: 1 | 2;
  pcpus?: 1 | 2;
  cpuidFaultHw?: boolean;
  l2Architectural?: boolean;
  nesting?: boolean;
  /** upper bound on the events of a trace (default 60) */
  maxEvents?: number;
}

/** One draw: who acts (a vCPU or a host task), which of the actions valid now, its parameters. */
export type CpuidChoice = [who: number, action: number, param: number];

export interface CpuidTrace {
  header: TraceHeader;
  events: TraceEvent[];
}

/** A built trace with the outcome the builder expects of every event under the reference profile. */
export interface BuiltCpuidTrace extends CpuidTrace {
  expected: Expect[];
}

// ---------------------------------------------------------------- layout and tables

/** one small memslot: whole-state comparisons stay cheap */
export const CPUID_ARB_MEMSLOT_PAGES = 0x40;
const vmxonRegion = (v: number) => BigInt(0x1000 + v * 0x4000);
const vmcs12Region = (v: number) => BigInt(0x2000 + v * 0x4000);
/** an all-zero page: as an MSR bitmap, L1 intercepts no MSR and L2's accesses to 0xCE and 0x140 reach L0 */
const ZERO_BITMAP = 0x3000n;
const HOST_TASKS = [1, 2, 3];
const SUPPORT = BigInt(MSR_PLATFORM_INFO_CPUID_FAULT);
/** values the guest writes to MISC_FEATURES_ENABLES: mostly bit 0 on or off, sometimes a reserved bit */
const MISC_VALUES: readonly bigint[] = [1n, 1n, 1n, 0n, 0n, 2n, 3n, 1n << 63n];
/** values the VMM writes to MSR_PLATFORM_INFO */
const PLATFORM_VALUES: readonly bigint[] = [SUPPORT, 0n, SUPPORT | 0x400n];
const LEAVES = [0x0, 0x1, 0x7, 0xd, 0x4000000a];
/** CPLs, user mode most often */
const CPL_WEIGHTS = [2, 1, 1, 5];


// ---------------------------------------------------------------- the builder's model

/** vCPU placement: OWN on the CPU of its own (never loaded explicitly), OUT when put, else a physical CPU. */
const OWN = -2;
const OUT = -1;

interface VcpuModel {
  id: number;
  cpu: number;
  /** the vCPU thread's own faulting (the host's value at vcpu_load) */
  threadFault: boolean;
  /** the CPU its thread runs on or ran on last (OWN: its own) */
  threadCpu: number;
  misc: boolean;
  platformInfo: bigint;
  smm: boolean;
  vmxon: boolean;
  vmcs: boolean;
  launched: boolean;
  l2: boolean;
  /** vmcs12 uses the all-zero MSR bitmap: L2's MSR accesses reach L0 */
  l0Msrs: boolean;
}

interface TaskModel {
  fault: boolean;
  lastCpu: number;
}

const ok: Expect = { k: 'ok' };
const gp: Expect = { k: 'gp' };
const ud: Expect = { k: 'ud' };
const cpuid: Expect = { k: 'cpuid' } as Expect;
const ignoredAny: Expect = { k: 'ignored' } as Expect;
const value = (v: bigint): Expect => ({ k: 'value', value: v });
const exit = (reason: number): Expect => ({ k: 'exit', reason } as Expect);

class CpuidBuilder {
  readonly events: TraceEvent[] = [];
  readonly expected: Expect[] = [];
  private readonly vcpus: VcpuModel[] = [];
  private readonly tasks = new Map<number, TaskModel>();

  constructor(readonly o: CpuidBuildOptions) {
    for (let i = 0; i < o.vcpus; i++) {
      this.vcpus.push({
        id: i,
        cpu: OWN,
        threadFault: false,
        threadCpu: OWN,
        misc: false,
        platformInfo: SUPPORT,
        smm: false,
        vmxon: false,
        vmcs: false,
        launched: false,
        l2: false,
        l0Msrs: false,
      });
    }
  }

  get full(): boolean {
    return this.events.length >= this.o.maxEvents;
  }

  private emit(e: TraceEvent, x: Expect): void {
    this.events.push(e);
    this.expected.push(x);
  }

  /** Whoever is loaded on `cpu` is preempted (vcpu_put) when another task is scheduled there. */
  private preempt(cpu: number, except?: VcpuModel): void {
    for (const u of this.vcpus) if (u !== except && u.cpu === cpu) u.cpu = OUT;
  }

  private task(id: number): TaskModel {
    let t = this.tasks.get(id);
    if (!t) this.tasks.set(id, (t = { fault: false, lastCpu: -1 }));
    return t;
  }

  private cpl(p: Digits): number {
    return p.weighted(CPL_WEIGHTS);
  }

  step(c: CpuidChoice): void {
    const [who, ac, pc] = c;
    const p = new Digits(pc);
    const actions: [number, () => void][] = [];
    const add = (wt: number, f: () => void) => actions.push([wt, f]);
    const w = new Digits(who);
    const v = this.vcpus[w.weighted([3, 2].slice(0, this.o.vcpus))];
    const taskId = HOST_TASKS[w.take(HOST_TASKS.length)];

    // host tasks
    add(2, () => this.taskCpuid(taskId, p));
    add(1, () => this.taskFault(taskId, p));
    // the VMM
    add(1, () => this.platformInfo(v, p));
    add(v.l2 || v.smm ? 0.5 : 1.5, () => this.smi(v));
    if (v.cpu === OUT) {
      add(8, () => this.load(v, p));
      add(4, () => this.threadFault(v, p));
    } else {
      add(v.cpu === OWN ? 2 : 3, () => this.put(v));
      // from the CPU of its own to a physical one (a loaded vCPU is put before it moves)
      if (v.cpu === OWN) add(1, () => this.load(v, p));
      if (v.l2) {
        add(7, () => this.l2Cpuid(v, p));
        add(1, () => this.l2Vmcall(v));
        add(2, () => this.l2Msr(v, p));
      } else {
        add(6, () => this.wrmsrMisc(v, p));
        add(8, () => this.l1Cpuid(v, p));
        add(1, () => this.rdmsr(v, p));
        add(0.5, () => this.wrmsrPlatform(v));
        add(v.smm ? 3 : 0.5, () => this.rsm(v));
        if (this.o.nesting && !v.smm) add(3, () => this.enterL2(v, p));
      }
    }
    const weights = actions.map((a) => Math.round(a[0] * 2));
    actions[new Digits(ac).weighted(weights)][1]();
  }

  // ---- host

  private load(v: VcpuModel, p: Digits): void {
    const cpu = p.take(this.o.pcpus);
    this.emit({ kind: 'host.vcpu-load', vcpu: v.id, cpu }, ok);
    this.preempt(cpu, v);
    v.cpu = cpu;
    v.threadCpu = cpu;
  }

  private put(v: VcpuModel): void {
    // the host sees its own value again: the vCPU thread's faulting
    this.emit({ kind: 'host.vcpu-put', vcpu: v.id }, value(v.threadFault ? 1n : 0n));
    v.cpu = OUT;
  }

  private threadFault(v: VcpuModel, p: Digits): void {
    const enable = p.take(3) !== 0;
    if (enable && !this.o.cpuidFaultHw) return this.emit({ kind: 'host.vcpu-thread-cpuid-fault', vcpu: v.id, enable }, ignoredAny);
    this.emit({ kind: 'host.vcpu-thread-cpuid-fault', vcpu: v.id, enable }, ok);
    if (v.threadCpu !== OWN) this.preempt(v.threadCpu, v);
    v.threadFault = enable;
  }

  private taskFault(id: number, p: Digits): void {
    const t = this.task(id);
    const enable = p.take(3) !== 0 ? !t.fault : t.fault;
    if (enable && !this.o.cpuidFaultHw) return this.emit({ kind: 'host.task-cpuid-fault', task: id, enable }, ignoredAny);
    this.emit({ kind: 'host.task-cpuid-fault', task: id, enable }, ok);
    const cpu = Math.max(t.lastCpu, 0);
    this.preempt(cpu);
    t.lastCpu = cpu;
    t.fault = enable;
  }

  private taskCpuid(id: number, p: Digits): void {
    const t = this.task(id);
    const cpu = p.take(this.o.pcpus);
    const cpl = this.cpl(p);
    this.emit({ kind: 'host.task-cpuid', task: id, cpu, cpl }, t.fault && cpl > 0 ? gp : cpuid);
    this.preempt(cpu);
    t.lastCpu = cpu;
  }

  private platformInfo(v: VcpuModel, p: Digits): void {
    const val = PLATFORM_VALUES[p.take(PLATFORM_VALUES.length)];
    // KVM (v6.13) accepts the VMM's write whatever the guest's faulting state
    this.emit({ kind: 'host.platform-info', vcpu: v.id, value: val }, ok);
    v.platformInfo = val;
  }

  private smi(v: VcpuModel): void {
    const refused = v.l2 || v.smm;
    this.emit({ kind: 'host.smi', vcpu: v.id }, refused ? ignoredAny : ok);
    if (!refused) v.smm = true;
  }

  // ---- L1 (or the guest, without nesting)

  private miscWrite(v: VcpuModel, val: bigint): Expect {
    if (val & ~1n) return gp;
    if (val & 1n && !(v.platformInfo & SUPPORT)) return gp;
    v.misc = val === 1n;
    return ok;
  }

  private wrmsrMisc(v: VcpuModel, p: Digits): void {
    // mostly flip the bit, so a write changes something
    const val = p.take(3) === 0 ? MISC_VALUES[p.take(MISC_VALUES.length)] : v.misc ? 0n : 1n;
    const e: TraceEvent = { kind: 'l1.wrmsr', vcpu: v.id, msr: MSR.MSR_MISC_FEATURES_ENABLES, value: val };
    this.emit(e, this.miscWrite(v, val));
  }

  private wrmsrPlatform(v: VcpuModel): void {
    this.emit({ kind: 'l1.wrmsr', vcpu: v.id, msr: MSR.MSR_PLATFORM_INFO, value: v.platformInfo ^ SUPPORT }, gp);
  }

  private rdmsr(v: VcpuModel, p: Digits): void {
    if (p.take(2)) this.emit({ kind: 'l1.rdmsr', vcpu: v.id, msr: MSR.MSR_MISC_FEATURES_ENABLES }, value(v.misc ? 1n : 0n));
    else this.emit({ kind: 'l1.rdmsr', vcpu: v.id, msr: MSR.MSR_PLATFORM_INFO }, value(v.platformInfo));
  }

  private l1Cpuid(v: VcpuModel, p: Digits): void {
    const cpl = this.cpl(p);
    const leaf = LEAVES[p.take(LEAVES.length)];
    this.emit({ kind: 'l1.cpuid', vcpu: v.id, leaf, subleaf: 0, cpl }, v.misc && cpl > 0 && !v.smm ? gp : cpuid);
  }

  private rsm(v: VcpuModel): void {
    this.emit({ kind: 'l1.rsm', vcpu: v.id }, v.smm ? ok : ud);
    v.smm = false;
  }

  /** The minimal L1 setup, as far as it is not done yet, then VMLAUNCH or VMRESUME. */
  private enterL2(v: VcpuModel, p: Digits): void {
    const vcpu = v.id;
    if (!v.vmxon) {
      this.emit({ kind: 'l1.write', vcpu, gpa: vmxonRegion(vcpu), size: 4, value: BigInt(VMCS12_REVISION) }, ok);
      this.emit({ kind: 'l1.vmxon', vcpu, gpa: vmxonRegion(vcpu) }, ok);
      v.vmxon = true;
    }
    if (!v.vmcs) {
      this.emit({ kind: 'l1.write', vcpu, gpa: vmcs12Region(vcpu), size: 4, value: BigInt(VMCS12_REVISION) }, ok);
      this.emit({ kind: 'l1.vmptrld', vcpu, gpa: vmcs12Region(vcpu) }, ok);
      v.vmcs = true;
      // the must-be-1 bits of the controls KVM verifies at VM-entry (vmx_control_verify)
      this.emit({ kind: 'l1.vmwrite', vcpu, field: VMCS.PIN_BASED_VM_EXEC_CONTROL, value: BigInt(KVM_CTLS_MUST_BE_1.pin) }, ok);
      this.emit({ kind: 'l1.vmwrite', vcpu, field: VMCS.VM_EXIT_CONTROLS, value: BigInt(KVM_CTLS_MUST_BE_1.exit) }, ok);
      this.emit({ kind: 'l1.vmwrite', vcpu, field: VMCS.VM_ENTRY_CONTROLS, value: BigInt(KVM_CTLS_MUST_BE_1.entry) }, ok);
      if (p.take(3) !== 0) {
        this.emit({ kind: 'l1.vmwrite', vcpu, field: VMCS.CPU_BASED_VM_EXEC_CONTROL, value: BigInt((CPU_BASED.USE_MSR_BITMAPS | KVM_CTLS_MUST_BE_1.cpu) >>> 0) }, ok);
        this.emit({ kind: 'l1.vmwrite', vcpu, field: VMCS.MSR_BITMAP, value: ZERO_BITMAP }, ok);
        v.l0Msrs = true;
      } else {
        this.emit({ kind: 'l1.vmwrite', vcpu, field: VMCS.CPU_BASED_VM_EXEC_CONTROL, value: BigInt(KVM_CTLS_MUST_BE_1.cpu) }, ok);
      }
    }
    this.emit({ kind: v.launched ? 'l1.vmresume' : 'l1.vmlaunch', vcpu }, { k: 'entered' });
    v.launched = true;
    v.l2 = true;
  }

  // ---- L2

  private l2Cpuid(v: VcpuModel, p: Digits): void {
    const cpl = this.cpl(p);
    const faults = this.o.l2Architectural && v.misc && cpl > 0;
    this.emit({ kind: 'l2.cpuid', vcpu: v.id, leaf: LEAVES[p.take(LEAVES.length)], subleaf: 0, cpl }, faults ? gp : exit(10));
    if (!faults) v.l2 = false;
  }

  private l2Vmcall(v: VcpuModel): void {
    this.emit({ kind: 'l2.vmcall', vcpu: v.id }, exit(18));
    v.l2 = false;
  }

  private l2Msr(v: VcpuModel, p: Digits): void {
    const write = p.take(3) !== 0;
    const msr = p.take(4) === 0 ? MSR.MSR_PLATFORM_INFO : MSR.MSR_MISC_FEATURES_ENABLES;
    if (write) {
      const val = msr === MSR.MSR_PLATFORM_INFO ? 0n : p.take(3) === 0 ? MISC_VALUES[p.take(MISC_VALUES.length)] : v.misc ? 0n : 1n;
      const e: TraceEvent = { kind: 'l2.wrmsr', vcpu: v.id, msr, value: val };
      if (!v.l0Msrs) {
        this.emit(e, exit(32));
        v.l2 = false;
      } else this.emit(e, msr === MSR.MSR_PLATFORM_INFO ? gp : this.miscWrite(v, val));
    } else {
      const e: TraceEvent = { kind: 'l2.rdmsr', vcpu: v.id, msr };
      if (!v.l0Msrs) {
        this.emit(e, exit(31));
        v.l2 = false;
      } else this.emit(e, value(msr === MSR.MSR_PLATFORM_INFO ? v.platformInfo : v.misc ? 1n : 0n));
    }
  }
}

/** Turn choices into a trace (deterministic). */
export function buildCpuidTrace(choices: readonly CpuidChoice[], o: CpuidBuildOptions): BuiltCpuidTrace {
  const b = new CpuidBuilder(o);
  for (const c of choices) {
    if (b.full) break;
    b.step(c);
  }
  const n = Math.min(b.events.length, o.maxEvents);
  const header = makeHeader(
    {
      vcpus: o.vcpus,
      pcpus: o.pcpus,
      cpuidFaultHw: o.cpuidFaultHw,
      l2CpuidFaultArchitectural: o.l2Architectural,
      memslots: [{ slot: 0, gfn: 0n, npages: CPUID_ARB_MEMSLOT_PAGES, flags: 0 }],
    },
    { generator: 'nvx check arbCpuidTrace' },
  );
  return { header, events: b.events.slice(0, n), expected: b.expected.slice(0, n) };
}

const bool = (given: boolean | undefined, weights: [number, number] = [1, 1]) =>
  given !== undefined ? fc.constant(given) : fc.oneof({ arbitrary: fc.constant(true), weight: weights[0] }, { arbitrary: fc.constant(false), weight: weights[1] });

/** Build options drawn for a trace (what the caller left open). */
export function arbCpuidBuildOptions(opts: ArbCpuidOptions = {}): fc.Arbitrary<CpuidBuildOptions> {
  const maxEvents = Math.max(5, Math.min(opts.maxEvents ?? 60, 200));
  return fc
    .record({
      vcpus: opts.vcpus !== undefined ? fc.constant(opts.vcpus) : fc.constantFrom(1, 2),
      pcpus: opts.pcpus !== undefined ? fc.constant(opts.pcpus) : fc.constantFrom(1, 2),
      cpuidFaultHw: bool(opts.cpuidFaultHw, [6, 1]),
      l2Architectural: bool(opts.l2Architectural),
      nesting: bool(opts.nesting, [2, 1]),
    })
    .map((r) => ({ ...r, maxEvents }));
}

export function arbCpuidChoices(maxSteps: number): fc.Arbitrary<CpuidChoice[]> {
  return fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat()) as fc.Arbitrary<CpuidChoice>, { minLength: 1, maxLength: maxSteps, size: 'max' });
}

/** Traces with their builder's expectations (for checking the builder and the model against each other). */
export function arbBuiltCpuidTrace(opts: ArbCpuidOptions = {}): fc.Arbitrary<BuiltCpuidTrace> {
  const maxEvents = Math.max(5, Math.min(opts.maxEvents ?? 60, 200));
  return fc.tuple(arbCpuidBuildOptions(opts), arbCpuidChoices(maxEvents)).map(([o, c]) => buildCpuidTrace(c, o));
}

/** Valid traces for the cpuid-fault area. */
export function arbCpuidTrace(opts: ArbCpuidOptions = {}): fc.Arbitrary<CpuidTrace> {
  return arbBuiltCpuidTrace(opts).map((t) => ({ header: t.header, events: t.events }));
}

// ---------------------------------------------------------------- the differential property

/** The fixed seed and bounded runs the shipped property tests use. */
export const CPUID_PROPERTY_DEFAULTS = { seed: 0x004cf, numRuns: 400 } as const;

/** Check one trace against the reference; throws DivergenceFound on any divergence (the area has no contracts to break). */
export function checkCpuidTrace(t: CpuidTrace, other: Profile, base: Profile = parseProfile('reference')): DiffResult {
  const r = diffEvents(t.header, t.events, base, other);
  if (r.divergence || r.violations.length) throw new DivergenceFound(t, r);
  return r;
}

/** The property: `other` matches the reference on generated cpuid-fault traces. */
export function cpuidDifferentialProperty(other: Profile, opts: ArbCpuidOptions = {}): fc.IPropertyWithHooks<[CpuidTrace]> {
  const base = parseProfile('reference');
  return fc.property(arbCpuidTrace(opts), (t) => {
    checkCpuidTrace(t, other, base);
  });
}
