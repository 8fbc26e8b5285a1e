/**
 * fast-check generators of traces for the shadow-vmcs area, mixed with the
 * msr-bitmap area's events (L1 bitmap edits, L2 MSR accesses, L0 intercept
 * changes).
 *
 * As in arbitraries.ts, fast-check draws choices (tuples of numbers) and a
 * deterministic builder turns them into events; no draw is rejected, so
 * shrinking works on the choices and every shrunk trace is valid too. The
 * builder asks the reference emulator, which it runs alongside, what state
 * a vCPU is in (VMX on, current vmcs12, L2 running, launch state), and only
 * picks events that can happen then: L2 events while L2 runs, VMX
 * instructions after VMXON, VMRESUME mostly after a launch. Each vCPU has its
 * own pages (vmcs12s, L1's shadow VMCS for L2, VMREAD/VMWRITE bitmaps, MSR
 * bitmap), so no contract can be broken.
 *
 * What it aims at: L1 VMREADs and VMWRITEs of RW- and RO-shadowed fields
 * (AR_BYTES, a 64-bit field and its _HIGH half, the last field of the RW
 * list, fields that need APICv, PML or the preemption timer), of unshadowed
 * and unknown fields, with and without VMWRITE-any-field; switching and
 * clearing vmcs12s; entries and exits in between; and L2's VMREAD/VMWRITE
 * with L1's bitmaps and link pointer in every state.
 */
import { CPU_BASED, EVMCS1_SUPPORTED, INVALID_GPA, KVM_CTLS_MUST_BE_1, MSR, SECONDARY_EXEC, VMCS, VMCS12_REVISION, VMCS_HDR_SHADOW_VMCS, vmcsFieldByEncoding } from '@nvx/arch';
import { Profile, Replayer, parseProfile, vmcs12Get32 } from '@nvx/emulator';
import { TraceEvent, TraceHeader, WorldConfig, makeHeader } from '@nvx/trace';
import fc from 'fast-check';
import { Choice, GeneratedTrace, INTERESTING_U64, acceptedFieldValue, arbChoices, Digits } from './arbitraries';
import { DiffResult, diffEvents } from './diff';

export interface ShadowTraceOptions {
  /** upper bound on the events of a trace (default 70) */
  maxEvents?: number;
  /** vCPUs: drawn from 1-2 when left out */
  vcpus?: 1 | 2;
  /** config.shadowVmcs: drawn (mostly on) when left out */
  shadowVmcs?: boolean;
  /** config.evmcs (default off): L1 then keeps to the controls eVMCS v1 has, so no VMCS shadowing for L2 */
  evmcs?: boolean;
}

export interface ShadowBuildOptions {
  vcpus: number;
  maxEvents: number;
  config: Pick<WorldConfig, 'shadowVmcs' | 'vmwriteAnyField' | 'apicv' | 'pml' | 'preemptionTimer'> & { evmcs?: boolean };
}

// ---------------------------------------------------------------- layout (one memslot of 64 pages)

const PAGE = 0x1000n;
export const SHADOW_ARB_MEMSLOT_PAGES = 0x40;
const vmxonRegion = (v: number) => BigInt(0x1000 * (1 + v));
const vmcs12Region = (v: number, j: number) => 0x4000n + BigInt(v * 3 + j) * PAGE;
/** L1's shadow VMCS for L2 (the region vmcs12's link pointer names) */
const shadowRegion = (v: number) => 0xc000n + BigInt(v) * PAGE;
const vmreadBitmapPage = (v: number) => 0x10000n + BigInt(v) * 0x2000n;
const vmwriteBitmapPage = (v: number) => vmreadBitmapPage(v) + PAGE;
const msrBitmapPage = (v: number) => 0x18000n + BigInt(v) * PAGE;

// ---------------------------------------------------------------- what the builder draws from

const F = VMCS;
/** RW-shadowed fields (the last of the RW list, HOST_GS_BASE, included) */
const RW_FIELDS = [
  F.GUEST_RIP,
  F.GUEST_RSP,
  F.GUEST_RFLAGS,
  F.GUEST_CR0,
  F.GUEST_CR3,
  F.CR0_READ_SHADOW,
  F.HOST_FS_SELECTOR,
  F.HOST_FS_BASE,
  F.HOST_GS_BASE,
  F.GUEST_INTERRUPTIBILITY_INFO,
  F.EXCEPTION_BITMAP,
  F.TPR_THRESHOLD,
  F.PIN_BASED_VM_EXEC_CONTROL,
  F.VM_ENTRY_INTR_INFO_FIELD,
  F.GUEST_INTR_STATUS,
  F.GUEST_PML_INDEX,
  F.VMX_PREEMPTION_TIMER_VALUE,
];
/** RO-shadowed fields, AR_BYTES and a 64-bit field with its _HIGH half included */
const RO_FIELDS = [
  F.VM_EXIT_REASON,
  F.EXIT_QUALIFICATION,
  F.VM_EXIT_INTR_INFO,
  F.VM_EXIT_INSTRUCTION_LEN,
  F.IDT_VECTORING_INFO_FIELD,
  F.IDT_VECTORING_ERROR_CODE,
  F.VM_EXIT_INTR_ERROR_CODE,
  F.GUEST_LINEAR_ADDRESS,
  F.GUEST_PHYSICAL_ADDRESS,
  F.GUEST_PHYSICAL_ADDRESS_HIGH,
  F.GUEST_CS_AR_BYTES,
  F.GUEST_SS_AR_BYTES,
];
/** not shadowed at all (always exit) */
const PLAIN_FIELDS = [F.VM_INSTRUCTION_ERROR, F.VMX_INSTRUCTION_INFO, F.GUEST_ES_AR_BYTES, F.TSC_OFFSET, F.TSC_OFFSET_HIGH, F.GUEST_CS_LIMIT, F.SECONDARY_VM_EXEC_CONTROL];
/** not in vmcs12 (12), or with bits >= 15 set (always exit) */
const UNKNOWN_FIELDS = [0x7ffe, 0x2034 /* TERTIARY_VM_EXEC_CONTROL */, 0x8000, 0x10000 | F.GUEST_RIP];

const MSRS = [MSR.MSR_FS_BASE, MSR.MSR_GS_BASE, MSR.MSR_IA32_SPEC_CTRL, MSR.MSR_LSTAR, MSR.MSR_X2APIC_TPR];

const A = CPU_BASED.ACTIVATE_SECONDARY_CONTROLS;
const U = CPU_BASED.USE_MSR_BITMAPS;
/** with the must-be-1 bits of TRUE_PROCBASED_CTLS (vmx_control_verify) */
const CPU_BASED_VALUES = [A, A | U, 0, U, A | CPU_BASED.TPR_SHADOW].map((x) => BigInt((x | KVM_CTLS_MUST_BE_1.cpu) >>> 0));
/** an EPT pointer nested_vmx_check_eptp accepts (write-back, 4 levels), for the secondary value with EPT */
const EPTP_WB_4 = 0x2801en;
const SECONDARY_VALUES = [SECONDARY_EXEC.SHADOW_VMCS, SECONDARY_EXEC.SHADOW_VMCS | SECONDARY_EXEC.VIRTUALIZE_X2APIC_MODE, 0, SECONDARY_EXEC.ENABLE_EPT].map((x) => BigInt(x));
const AR_VALUES = [0xa09bn, 0xfffffn, 0x10093n, 0xffffffffn];


interface VcpuModel {
  id: number;
  vmxonRevision: boolean;
  vmcs12Revision: boolean[];
}

class ShadowBuilder {
  readonly events: TraceEvent[] = [];
  private readonly models: VcpuModel[] = [];
  private readonly ref: Replayer;

  constructor(
    readonly header: TraceHeader,
    readonly o: ShadowBuildOptions,
    reference: Profile,
  ) {
    this.ref = Replayer.fromHeader(header, reference);
    for (let i = 0; i < o.vcpus; i++) this.models.push({ id: i, vmxonRevision: false, vmcs12Revision: [false, false, false] });
  }

  get full(): boolean {
    return this.events.length >= this.o.maxEvents;
  }

  private emit(e: TraceEvent): void {
    if (this.full) return;
    this.events.push(e);
    this.ref.apply(e);
  }

  private nested(v: number) {
    return this.ref.peek().vcpus[v].nested;
  }

  step(c: Choice): void {
    const [vc, ac, pc, value] = c;
    const v = this.models[this.o.vcpus > 1 ? new Digits(vc).weighted([3, 1]) : 0];
    const n = this.nested(v.id);
    const p = new Digits(pc);
    const actions: [number, () => void][] = [];
    const add = (weight: number, f: () => void) => actions.push([weight, f]);
    add(1, () => this.hostIntercept(v, p));
    if (n.guestMode) {
      add(14, () => this.l2Vmcs(v, p, value));
      add(4, () => this.l2Msr(v, p, value));
      add(3, () => this.emit(p.take(2) ? { kind: 'l2.vmcall', vcpu: v.id } : { kind: 'l2.cpuid', vcpu: v.id, leaf: p.pick([0, 1, 7]), subleaf: 0, cpl: p.pick([0, 3]) }));
    } else if (!n.vmxon) {
      add(20, () => this.vmxon(v));
    } else if (n.currentVmptr === INVALID_GPA) {
      add(20, () => this.vmptrld(v, p));
      add(2, () => this.emit({ kind: 'l1.vmread', vcpu: v.id, field: this.pickField(p) }));
      add(1, () => this.emit({ kind: 'l1.vmxoff', vcpu: v.id }));
    } else {
      add(16, () => this.vmwrite(v, p, value));
      add(14, () => this.emit({ kind: 'l1.vmread', vcpu: v.id, field: this.pickField(p) }));
      add(6, () => this.setupForL2(v, p));
      add(8, () => this.enter(v, p));
      add(3, () => this.vmptrld(v, p));
      add(2, () => this.vmclear(v, p));
      add(3, () => this.l1BitmapEdit(v, p));
      add(2, () => this.shadowRegionWrite(v, p, value));
      add(2, () => this.emit({ kind: 'l1.msr-bitmap', vcpu: v.id, gpa: msrBitmapPage(v.id), msr: p.pick(MSRS), access: p.take(2) ? 'write' : 'read', intercept: p.take(2) === 0 }));
      add(1, () => this.emit({ kind: 'l1.rdmsr', vcpu: v.id, msr: MSR.MSR_IA32_VMX_MISC }));
      add(1, () => this.emit({ kind: 'l1.vmxoff', vcpu: v.id }));
    }
    actions[new Digits(ac).weighted(actions.map((a) => a[0]))][1]();
  }

  private pickField(p: Digits): number {
    switch (p.weighted([8, 8, 3, 1])) {
      case 0:
        return p.pick(RW_FIELDS);
      case 1:
        return p.pick(RO_FIELDS);
      case 2:
        return p.pick(PLAIN_FIELDS);
      default:
        return p.pick(UNKNOWN_FIELDS);
    }
  }

  private valueFor(field: number, p: Digits, value: bigint): bigint {
    const f = vmcsFieldByEncoding(field);
    if (f && f.name.endsWith('_AR_BYTES')) return p.pick(AR_VALUES);
    if (field === F.CPU_BASED_VM_EXEC_CONTROL) return p.pick(CPU_BASED_VALUES);
    if (field === F.SECONDARY_VM_EXEC_CONTROL) return p.pick(SECONDARY_VALUES);
    if (field === F.PIN_BASED_VM_EXEC_CONTROL) return BigInt(KVM_CTLS_MUST_BE_1.pin);
    // an event injection KVM's entry checks accept: the entries are what this generator is about
    return acceptedFieldValue(field, p.take(3) ? p.pick(INTERESTING_U64) : value);
  }

  private hostIntercept(v: VcpuModel, p: Digits): void {
    this.emit({ kind: 'host.msr-intercept', vcpu: v.id, msr: p.pick(MSRS), access: p.take(2) ? 'write' : 'read', intercept: p.take(3) !== 0 });
  }

  private vmxon(v: VcpuModel): void {
    if (!v.vmxonRevision) {
      this.emit({ kind: 'l1.write', vcpu: v.id, gpa: vmxonRegion(v.id), size: 4, value: BigInt(VMCS12_REVISION) });
      v.vmxonRevision = true;
    }
    this.emit({ kind: 'l1.vmxon', vcpu: v.id, gpa: vmxonRegion(v.id) });
  }

  private vmptrld(v: VcpuModel, p: Digits): void {
    const j = p.weighted([4, 3, 1]);
    const fresh = !v.vmcs12Revision[j];
    if (fresh) {
      this.emit({ kind: 'l1.write', vcpu: v.id, gpa: vmcs12Region(v.id, j), size: 4, value: BigInt(VMCS12_REVISION) });
      v.vmcs12Revision[j] = true;
    }
    this.emit({ kind: 'l1.vmptrld', vcpu: v.id, gpa: vmcs12Region(v.id, j) });
    if (fresh && this.nested(v.id).currentVmptr === vmcs12Region(v.id, j)) this.mustBe1Controls(v);
  }

  /** A new VMCS gets the must-be-1 bits of the four controls KVM checks with vmx_control_verify. */
  private mustBe1Controls(v: VcpuModel): void {
    const w = (field: number, value: number) => this.emit({ kind: 'l1.vmwrite', vcpu: v.id, field, value: BigInt(value >>> 0) });
    w(F.PIN_BASED_VM_EXEC_CONTROL, KVM_CTLS_MUST_BE_1.pin);
    w(F.CPU_BASED_VM_EXEC_CONTROL, KVM_CTLS_MUST_BE_1.cpu);
    w(F.VM_EXIT_CONTROLS, KVM_CTLS_MUST_BE_1.exit);
    w(F.VM_ENTRY_CONTROLS, KVM_CTLS_MUST_BE_1.entry);
  }

  private vmclear(v: VcpuModel, p: Digits): void {
    const cur = this.nested(v.id).currentVmptr;
    const gpa = p.take(4) ? cur : vmcs12Region(v.id, p.take(3));
    this.emit({ kind: 'l1.vmclear', vcpu: v.id, gpa });
  }

  private vmwrite(v: VcpuModel, p: Digits, value: bigint): void {
    const field = p.take(8) === 0 ? F.CPU_BASED_VM_EXEC_CONTROL : this.pickField(p);
    this.emit({ kind: 'l1.vmwrite', vcpu: v.id, field, value: this.valueFor(field, p, value) });
  }

  /** L1 prepares vmcs12 for an L2 that uses VMCS shadowing (or not): controls, bitmaps, link pointer. */
  private setupForL2(v: VcpuModel, p: Digits): void {
    const w = (field: number, value: bigint) => this.emit({ kind: 'l1.vmwrite', vcpu: v.id, field, value });
    if (p.take(3)) {
      // the shadow VMCS region: VMCS12_REVISION with the shadow-VMCS indicator (now and then without it)
      const hdr = p.take(6) ? VMCS12_REVISION | VMCS_HDR_SHADOW_VMCS : VMCS12_REVISION;
      this.emit({ kind: 'l1.write', vcpu: v.id, gpa: shadowRegion(v.id), size: 4, value: BigInt(hdr >>> 0) });
    }
    const cpu = p.pick(CPU_BASED_VALUES.slice(0, 2));
    const drawn = p.take(5) ? BigInt(SECONDARY_EXEC.SHADOW_VMCS) : p.pick(SECONDARY_VALUES);
    // with eVMCS enabled L1 reads filtered capability MSRs: no VMCS shadowing (nested_evmcs_check_controls)
    const secondary = this.o.config.evmcs ? drawn & BigInt(EVMCS1_SUPPORTED.secondary) : drawn;
    // virtualize x2APIC mode needs the TPR shadow (nested_vmx_check_apicv_controls)
    w(F.CPU_BASED_VM_EXEC_CONTROL, secondary & BigInt(SECONDARY_EXEC.VIRTUALIZE_X2APIC_MODE) ? cpu | BigInt(CPU_BASED.TPR_SHADOW) : cpu);
    w(F.SECONDARY_VM_EXEC_CONTROL, secondary);
    // the must-be-1 bits of the other controls (vmx_control_verify), and an EPT pointer for EPT
    w(F.PIN_BASED_VM_EXEC_CONTROL, BigInt(KVM_CTLS_MUST_BE_1.pin));
    w(F.VM_EXIT_CONTROLS, BigInt(KVM_CTLS_MUST_BE_1.exit));
    w(F.VM_ENTRY_CONTROLS, BigInt(KVM_CTLS_MUST_BE_1.entry));
    if (secondary & BigInt(SECONDARY_EXEC.ENABLE_EPT)) w(F.EPT_POINTER, EPTP_WB_4);
    w(F.MSR_BITMAP, msrBitmapPage(v.id));
    if (p.take(2)) {
      w(F.VMREAD_BITMAP, p.take(8) ? vmreadBitmapPage(v.id) : vmreadBitmapPage(v.id) + 8n);
      w(F.VMWRITE_BITMAP, vmwriteBitmapPage(v.id));
    }
    w(F.VMCS_LINK_POINTER, p.take(4) ? shadowRegion(v.id) : p.take(4) ? INVALID_GPA : shadowRegion(v.id) + 0x10n);
  }

  private enter(v: VcpuModel, p: Digits): void {
    // a vmcs12 that lost its must-be-1 control bits (loaded again after VMXOFF, say) gets them back
    // first, so vmx_control_verify refuses no entry the shadowing paths should see
    const n = this.nested(v.id);
    if (n.vmxon && n.currentVmptr !== INVALID_GPA) {
      for (const [field, must] of [
        [F.PIN_BASED_VM_EXEC_CONTROL, KVM_CTLS_MUST_BE_1.pin],
        [F.CPU_BASED_VM_EXEC_CONTROL, KVM_CTLS_MUST_BE_1.cpu],
        [F.VM_EXIT_CONTROLS, KVM_CTLS_MUST_BE_1.exit],
        [F.VM_ENTRY_CONTROLS, KVM_CTLS_MUST_BE_1.entry],
      ] as const) {
        const cur = vmcs12Get32(n, field);
        if ((cur & must) >>> 0 !== must >>> 0) this.emit({ kind: 'l1.vmwrite', vcpu: v.id, field, value: BigInt((cur | must) >>> 0) });
      }
    }
    const launched = this.nested(v.id).launched;
    const right = p.take(8) !== 0;
    this.emit({ kind: launched === right ? 'l1.vmresume' : 'l1.vmlaunch', vcpu: v.id });
  }

  /** Set or clear a field's bit in L1's own VMREAD or VMWRITE bitmap (a byte store). */
  private l1BitmapEdit(v: VcpuModel, p: Digits): void {
    const field = p.take(3) ? p.pick([...RW_FIELDS, ...RO_FIELDS]) : p.pick(UNKNOWN_FIELDS.slice(0, 2));
    const page = p.take(2) ? vmreadBitmapPage(v.id) : vmwriteBitmapPage(v.id);
    const bit = 1n << BigInt(field & 7);
    this.emit({ kind: 'l1.write', vcpu: v.id, gpa: page + BigInt(field >> 3), size: 1, value: p.take(3) ? bit : 0n });
  }

  /** L1 stores a field of its shadow VMCS for L2 directly in memory (the model's vmcs12 layout: slot i at 0x10 + 8i). */
  private shadowRegionWrite(v: VcpuModel, p: Digits, value: bigint): void {
    const f = vmcsFieldByEncoding(p.pick([...RW_FIELDS, ...RO_FIELDS]))!;
    this.emit({ kind: 'l1.write', vcpu: v.id, gpa: shadowRegion(v.id) + 0x10n + BigInt(8 * f.slot), size: 8, value });
  }

  private l2Vmcs(v: VcpuModel, p: Digits, value: bigint): void {
    const field = this.pickField(p);
    if (p.take(2)) this.emit({ kind: 'l2.vmread', vcpu: v.id, field });
    else this.emit({ kind: 'l2.vmwrite', vcpu: v.id, field, value: this.valueFor(field, p, value) });
  }

  private l2Msr(v: VcpuModel, p: Digits, value: bigint): void {
    const msr = p.pick(MSRS);
    if (p.take(2)) this.emit({ kind: 'l2.wrmsr', vcpu: v.id, msr, value });
    else this.emit({ kind: 'l2.rdmsr', vcpu: v.id, msr });
  }
}

const REFERENCE = () => parseProfile('reference');

/** Turn choices into a trace (deterministic). */
export function buildShadowTrace(choices: readonly Choice[], o: ShadowBuildOptions): GeneratedTrace {
  const header = makeHeader(
    { ...o.config, vcpus: o.vcpus, pcpus: 1, memslots: [{ slot: 0, gfn: 0n, npages: SHADOW_ARB_MEMSLOT_PAGES, flags: 0 }] },
    { generator: 'nvx check arbShadowTrace' },
  );
  const b = new ShadowBuilder(header, o, REFERENCE());
  for (const c of choices) {
    if (b.full) break;
    b.step(c);
  }
  return { header, events: b.events };
}

export function arbShadowBuildOptions(opts: ShadowTraceOptions = {}): fc.Arbitrary<ShadowBuildOptions> {
  const maxEvents = Math.max(5, Math.min(opts.maxEvents ?? 70, 120));
  const hw = fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, { arbitrary: fc.constant(false), weight: 1 });
  const shadow = opts.shadowVmcs !== undefined ? fc.constant(opts.shadowVmcs) : fc.oneof({ arbitrary: fc.constant(true), weight: 6 }, { arbitrary: fc.constant(false), weight: 1 });
  return fc
    .record({
      vcpus: opts.vcpus !== undefined ? fc.constant(opts.vcpus) : fc.constantFrom(1, 1, 2),
      shadowVmcs: shadow,
      vmwriteAnyField: hw,
      apicv: hw,
      pml: hw,
      preemptionTimer: hw,
    })
    .map(({ vcpus, ...config }) => ({ vcpus, maxEvents, config: opts.evmcs ? { ...config, evmcs: true } : config }));
}

/** Valid, contract-keeping traces for the shadow-vmcs area (with msr-bitmap events mixed in). */
export function arbShadowTrace(opts: ShadowTraceOptions = {}): fc.Arbitrary<GeneratedTrace> {
  const maxEvents = Math.max(5, Math.min(opts.maxEvents ?? 70, 120));
  return fc.tuple(arbShadowBuildOptions(opts), arbChoices(Math.ceil(maxEvents * 0.8))).map(([o, c]) => buildShadowTrace(c, o));
}

/**
 * The lockstep diff the shadow-vmcs properties use: architectural state
 * compared after every event (traces are short), so a shadow VMCS that
 * disagrees with vmcs12 is reported at the event that made it so, even if
 * a later event hides it again.
 */
export function diffShadowTrace(t: GeneratedTrace, other: Profile, base: Profile = REFERENCE()): DiffResult {
  return diffEvents(t.header, t.events, base, other, { checkpointEvery: 1 });
}

