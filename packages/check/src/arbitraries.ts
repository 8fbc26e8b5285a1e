/**
 * fast-check generators of traces for the msr-bitmap and evmcs areas.
 *
 * fast-check draws *choices* (a list of small number tuples); a
 * deterministic builder turns them into events. The builder is a small
 * state machine that mirrors what matters of the world (per vCPU: VMXON
 * done, the vmcs12s and which is current, launch states, whether L2 runs
 * and with which MSR bitmap, the eVMCS and its clean bits, the contents of
 * L1's MSR-bitmap pages) and only ever picks an event that is valid now:
 * L2 events only while L2 runs, VMRESUME only after a launch, a bitmap edit
 * never on a page another vCPU's L2 runs with, a clean bit cleared whenever
 * L1 changed its group. No draw is rejected, so shrinking works on the
 * choices and every shrunk trace is valid too.
 *
 * With `allowViolations`, the builder sometimes breaks a contract on purpose
 * (enters with a stale clean bit, or edits a bitmap another vCPU's L2 runs
 * with); the contract monitor then classifies any divergence as permitted.
 */
import {
  CPU_BASED,
  EVMCS,
  HV_ENLIGHTENMENTS_CONTROL,
  HV_VMX_ENLIGHTENED_CLEAN_FIELD,
  INTR_INFO,
  KVM_CTLS_MUST_BE_1,
  KVM_EVMCS_VERSION,
  MSR,
  EVMCS1_SUPPORTED,
  PIN_BASED,
  SECONDARY_EXEC,
  VMCS,
  VMCS12_REVISION,
  VMCS_FIELDS,
  VmcsField,
  msrBitmapPosition,
  vmcsFieldByEncoding,
} from '@nvx/arch';
import { Profile, parseProfile } from '@nvx/emulator';
import { MsrAccess, OutcomeKind, TraceEvent, TraceHeader, formatEvent, formatOutcome, formatTextTrace, makeHeader } from '@nvx/trace';
import fc from 'fast-check';
import { DiffResult, diffEvents } from './diff';

// ---------------------------------------------------------------- options

export interface ArbTraceOptions {
  /** vCPUs in the world; drawn from 1-3 when left out */
  vcpus?: 1 | 2 | 3;
  /** expose the enlightened VMCS to L1 (config.evmcs); drawn when left out */
  evmcs?: boolean;
  /** sometimes break the Hyper-V clean-field or the SDM active-bitmap contract */
  allowViolations?: boolean;
  /** upper bound on the events of a trace (default 80) */
  maxEvents?: number;
  /**
   * Also generate the contract-keeping L1 behaviours behind the known
   * findings in KVM's enlightened MSR-bitmap shortcut (see the findings in
   * properties.test.ts). Off by default: the L1 is then careful beyond the
   * TLFS in two ways KVM silently relies on: it clears the MSR_BITMAP clean
   * bit whenever it changes a control the merge depends on
   * (USE_MSR_BITMAPS, ACTIVATE_SECONDARY_CONTROLS, virtualize x2APIC mode,
   * APIC-register virtualization, virtual-interrupt delivery), and it never
   * points an eVMCS's MSR bitmap outside guest memory.
   */
  knownFindings?: boolean;
}

export interface GeneratedTrace {
  header: TraceHeader;
  events: TraceEvent[];
}

/** One draw: which vCPU, which of the actions valid now, its parameters, a 64-bit value. */
export type Choice = [vcpu: number, action: number, param: number, value: bigint];

export interface BuildOptions {
  vcpus: number;
  evmcs: boolean;
  allowViolations: boolean;
  maxEvents: number;
  knownFindings: boolean;
}

/** A built trace with the outcome kind the builder expects of every event under the reference profile. */
export interface BuiltTrace extends GeneratedTrace {
  expected: OutcomeKind[];
  /** contract violations the builder committed on purpose (event indices) */
  violations: number[];
}

// ---------------------------------------------------------------- the guest-physical layout of generated traces

const PAGE = 0x1000n;
const U64_MAX = (1n << 64n) - 1n;
/** one memslot of 64 pages: small, so whole-state comparisons stay cheap */
export const ARB_MEMSLOT_PAGES = 0x40;
const vmxonRegion = (v: number) => BigInt(0x1000 * (1 + v));
const vmcs12Region = (v: number, j: number) => 0x4000n + BigInt(v * 3 + j) * PAGE;
const evmcsPage = (v: number) => 0x10000n + BigInt(v) * PAGE;
/** L1's MSR-bitmap pages, shared by every vCPU */
const BITMAP_POOL: readonly bigint[] = [0x18000n, 0x19000n, 0x1a000n];
const vapicPage = (v: number) => 0x20000n + BigInt(v) * PAGE;
/** an MSR_BITMAP address that fails VM-entry (not page aligned): VMfailValid 7 */
const BITMAP_UNALIGNED = BITMAP_POOL[0] + 0x800n;
/** an aligned MSR_BITMAP address outside every memslot: L0 cannot map it, every access goes to L1 */
const BITMAP_UNBACKED = 0x100000n;

// ---------------------------------------------------------------- what the builder draws from

const M = MSR;
/** MSRs for L1's bitmap edits, L2 accesses and L0's vmcs01 intercepts: the merged ones first */
const MERGED_MSRS = [M.MSR_FS_BASE, M.MSR_GS_BASE, M.MSR_KERNEL_GS_BASE, M.MSR_IA32_SPEC_CTRL, M.MSR_IA32_PRED_CMD, M.MSR_IA32_FLUSH_CMD];
const X2APIC_MSRS = [M.MSR_X2APIC_TPR, M.MSR_X2APIC_EOI, M.MSR_X2APIC_SELF_IPI, M.MSR_X2APIC_ID, M.MSR_X2APIC_ICR, M.MSR_X2APIC_TMICT];
const OTHER_MSRS = [M.MSR_IA32_SYSENTER_CS, M.MSR_IA32_TSC, M.MSR_IA32_APERF, M.MSR_IA32_TSC_DEADLINE, M.MSR_LSTAR];
/** outside both bitmap ranges: always intercepted */
const OUT_OF_RANGE_MSRS = [M.HV_X64_MSR_GUEST_OS_ID, M.MSR_K7_HWCR];

const U = CPU_BASED.USE_MSR_BITMAPS;
const A = CPU_BASED.ACTIVATE_SECONDARY_CONTROLS;
const T = CPU_BASED.TPR_SHADOW;
/** every value carries the must-be-1 bits of TRUE_PROCBASED_CTLS (vmx_control_verify), and the TPR shadow wherever secondary controls are activated (the APICv controls need it: nested_vmx_check_apicv_controls) */
const CPU_BASED_VALUES = [U | A | T, U | A | T | CPU_BASED.RDTSC_EXITING, U, U | A | T | CPU_BASED.HLT_EXITING, A | T, 0, U | T].map((x) => (x | KVM_CTLS_MUST_BE_1.cpu) >>> 0);
/**
 * What a new VMCS gets whatever else L1 programs: the must-be-1 pin-based,
 * VM-exit and VM-entry bits, external-interrupt exiting (virtual-interrupt
 * delivery needs it: nested_vmx_check_apicv_controls) and an EPT pointer
 * nested_vmx_check_eptp accepts (write-back, 4 levels), for when a
 * secondary value turns EPT on.
 */
const INIT_CONTROLS: readonly [number, bigint][] = [
  [VMCS.PIN_BASED_VM_EXEC_CONTROL, BigInt((KVM_CTLS_MUST_BE_1.pin | PIN_BASED.EXT_INTR_MASK) >>> 0)],
  [VMCS.VM_EXIT_CONTROLS, BigInt(KVM_CTLS_MUST_BE_1.exit)],
  [VMCS.VM_ENTRY_CONTROLS, BigInt(KVM_CTLS_MUST_BE_1.entry)],
  [VMCS.EPT_POINTER, 0x2801en],
];
const S = SECONDARY_EXEC;
const SECONDARY_VALUES = [
  S.VIRTUALIZE_X2APIC_MODE | S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY,
  S.VIRTUALIZE_X2APIC_MODE,
  S.VIRTUALIZE_X2APIC_MODE | S.VIRTUAL_INTR_DELIVERY,
  S.VIRTUALIZE_X2APIC_MODE | S.APIC_REGISTER_VIRT,
  0,
  S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY,
  S.VIRTUALIZE_APIC_ACCESSES | S.ENABLE_EPT,
];

/** 64-bit values worth writing: canonical kernel addresses, sign bits, all ones */
export const INTERESTING_U64: readonly bigint[] = [
  0n,
  1n,
  0xffffffff81000000n,
  0x00007fffffffe000n,
  0x8000000000000000n,
  0xffffffffffffffffn,
  0xdeadbeefn,
  0x100000000n,
  0xffff888000000000n,
];

const CLEAN_ALL = HV_VMX_ENLIGHTENED_CLEAN_FIELD.ALL;
const MSR_BITMAP_GROUP_BIT = 1 << vmcsFieldByEncoding(VMCS.MSR_BITMAP)!.cleanGroup!;
const groupBit = (field: number): number => {
  const g = vmcsFieldByEncoding(field)?.cleanGroup;
  return g === null || g === undefined || g < 0 ? 0 : 1 << g;
};

/**
 * The fields L1 writes besides the controls above: every read-write field
 * that an eVMCS clean-field group covers, in every width (16, 32, 64 bits
 * and natural width), except those whose value changes what an entry, an
 * exit or an L2 event does in this world (the controls, the pages L0
 * dereferences, the segment access rights the CPL comes from, the
 * exception bitmap). Writing them dirties every group, so a clean-fields
 * path that loses one (copy_enlightened_to_vmcs12 in
 * arch/x86/kvm/vmx/nested.c copies each group on its own bit) leaves
 * vmcs12 different after the entry.
 */
const INTERPRETED_FIELDS: ReadonlySet<number> = new Set([
  VMCS.CPU_BASED_VM_EXEC_CONTROL,
  VMCS.SECONDARY_VM_EXEC_CONTROL,
  VMCS.PIN_BASED_VM_EXEC_CONTROL,
  VMCS.MSR_BITMAP,
  VMCS.VMCS_LINK_POINTER,
  VMCS.APIC_ACCESS_ADDR,
  VMCS.VIRTUAL_APIC_PAGE_ADDR,
  VMCS.POSTED_INTR_DESC_ADDR,
  VMCS.VMREAD_BITMAP,
  VMCS.VMWRITE_BITMAP,
  VMCS.GUEST_SS_AR_BYTES,
  VMCS.GUEST_CS_AR_BYTES,
  VMCS.EXCEPTION_BITMAP,
  // checked at VM-entry (nested_check_vm_execution_controls, nested_check_vm_exit_controls:
  // entry-checks.ts in the emulator): a random value fails the entry
  VMCS.VM_EXIT_CONTROLS,
  VMCS.VM_ENTRY_CONTROLS,
  VMCS.CR3_TARGET_COUNT,
  VMCS.IO_BITMAP_A,
  VMCS.IO_BITMAP_B,
  VMCS.PML_ADDRESS,
  VMCS.VIRTUAL_PROCESSOR_ID,
  VMCS.VM_FUNCTION_CONTROL,
  VMCS.EPTP_LIST_ADDRESS,
  VMCS.EPT_POINTER,
]);
export const GROUP_FIELDS: readonly VmcsField[] = VMCS_FIELDS.filter(
  (f) => !f.isHigh && !f.readOnly && f.cleanGroup !== null && f.cleanGroup >= 0 && f.evmcsOffset !== null && !INTERPRETED_FIELDS.has(f.encoding),
);
/** GROUP_FIELDS by clean-field group, so every group is drawn as often as any other. */
const GROUP_FIELDS_BY_GROUP: readonly (readonly VmcsField[])[] = (() => {
  const by = new Map<number, VmcsField[]>();
  for (const f of GROUP_FIELDS) by.set(f.cleanGroup!, [...(by.get(f.cleanGroup!) ?? []), f]);
  return [...by.keys()].sort((a, b) => a - b).map((g) => by.get(g)!);
})();
const WIDTH_MASK: Record<string, bigint> = { 16: 0xffffn, 32: 0xffffffffn, 64: U64_MAX, natural: U64_MAX };

/**
 * A value for the VM-entry interruption-information field that KVM's entry
 * checks accept (nested_check_vm_entry_controls): with the valid bit set,
 * an external interrupt of the value's vector, which needs no error code and
 * no instruction length; without it, the value as it is (nothing is
 * checked). Other fields' values are returned as they are.
 */
export function acceptedFieldValue(field: number, value: bigint): bigint {
  if (field !== VMCS.VM_ENTRY_INTR_INFO_FIELD || !(value & BigInt(INTR_INFO.VALID_MASK))) return value;
  return BigInt(INTR_INFO.VALID_MASK) | (value & BigInt(INTR_INFO.VECTOR_MASK));
}

/**
 * The controls nested_vmx_prepare_msr_bitmap depends on, as in effect:
 * USE_MSR_BITMAPS, and the x2APIC secondary controls (none without
 * ACTIVATE_SECONDARY_CONTROLS). Packed into one number for comparison.
 */
const X2APIC_SECONDARY = S.VIRTUALIZE_X2APIC_MODE | S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY;
function mergeControls(m: { cpu: number; secondary: number }): number {
  return (m.cpu & A ? m.secondary & X2APIC_SECONDARY : 0) | (m.cpu & U ? 1 : 0);
}

/** Reads mixed-radix digits out of one drawn number (shrinking the number picks the first options). */
export class Digits {
  constructor(private n: number) {}
  take(k: number): number {
    const r = this.n % k;
    this.n = Math.floor(this.n / k);
    return r;
  }
  /** index by weights */
  weighted(weights: readonly number[]): number {
    const total = weights.reduce((a, b) => a + b, 0);
    let r = this.take(total);
    for (let i = 0; i < weights.length; i++) {
      if (r < weights[i]) return i;
      r -= weights[i];
    }
    return weights.length - 1;
  }
  /** one of xs, the first most often when shrinking */
  pick<T>(xs: readonly T[]): T {
    return xs[this.take(xs.length)];
  }
}

// ---------------------------------------------------------------- the builder's model of the world

interface Vmcs12Model {
  revision: boolean;
  launched: boolean;
  cpu: number;
  secondary: number;
  bitmap: bigint;
}

interface EvmcsModel {
  /** revision written and named in the VP assist page */
  ready: boolean;
  /** L0 maps it (hv_evmcs_vmptr): set by the first entry attempt */
  mapped: boolean;
  launched: boolean;
  cpu: number;
  secondary: number;
  bitmap: bigint;
  control: number;
  /** hv_clean_fields as it is in L1 memory */
  clean: number;
  /** groups a careful L1 marks dirty before the next entry */
  pending: number;
  /** the part of `pending` the contract monitor sees (what makes a skipped clear a violation) */
  pendingVisible: number;
}

interface VcpuModel {
  id: number;
  vmxonRevision: boolean;
  vmxon: boolean;
  /** decided at the first VMCS action: ordinary vmcs12s or an eVMCS */
  mode: 'vmcs' | 'evmcs' | null;
  vmcs12: Vmcs12Model[];
  current: number;
  evmcs: EvmcsModel;
  /** L2 runs; with what MSR-bitmap view (null: every MSR access goes to L1) */
  l2: { bitmap: bigint | null } | null;
}

/** Byte offsets of the 8-byte stores that make a bitmap page intercept the merged MSRs and the x2APIC registers. */
const FILL_OFFSETS: readonly number[] = (() => {
  const offs = new Set<number>();
  for (const msr of [...MERGED_MSRS, ...X2APIC_MSRS]) for (const a of ['read', 'write'] as const) offs.add(msrBitmapPosition(msr, a)!.byte & ~7);
  return [...offs].sort((x, y) => x - y);
})();

class Builder {
  readonly events: TraceEvent[] = [];
  readonly expected: OutcomeKind[] = [];
  readonly violations: number[] = [];
  private readonly vcpus: VcpuModel[] = [];
  /** L1's bitmap pages as they are in memory (they start all zero) */
  private readonly pages = new Map<bigint, Uint8Array>();
  /** MSRs whose intercepts L1 or L0 changed lately: L2 goes for them more often */
  private hot: [number, MsrAccess][] = [];

  constructor(readonly o: BuildOptions) {
    for (let i = 0; i < o.vcpus; i++) {
      this.vcpus.push({
        id: i,
        vmxonRevision: false,
        vmxon: false,
        mode: o.evmcs ? null : 'vmcs',
        vmcs12: [0, 1, 2].map(() => ({ revision: false, launched: false, cpu: 0, secondary: 0, bitmap: 0n })),
        current: -1,
        evmcs: { ready: false, mapped: false, launched: false, cpu: 0, secondary: 0, bitmap: 0n, control: 0, clean: 0, pending: 0, pendingVisible: 0 },
        l2: null,
      });
    }
    for (const p of BITMAP_POOL) this.pages.set(p, new Uint8Array(4096));
  }

  get full(): boolean {
    return this.events.length >= this.o.maxEvents;
  }

  private emit(e: TraceEvent, expect: OutcomeKind): void {
    this.events.push(e);
    this.expected.push(expect);
  }

  // ---- facts derived from the model

  private pageOf(gpa: bigint): Uint8Array | undefined {
    return this.pages.get(gpa & ~0xfffn);
  }

  /** Does L1 want this L2 MSR access (the reference's answer, read from L1's bitmap now)? */
  private l1Intercepts(bitmap: bigint | null, msr: number, access: MsrAccess): boolean {
    if (bitmap === null) return true;
    if (!msrBitmapPosition(msr, access)) return true;
    const page = this.pageOf(bitmap);
    // unbacked: always reflected; the one other backed page used (the default address 0) has no intercept for the MSRs drawn here
    if (!page) return bitmap >= BigInt(ARB_MEMSLOT_PAGES) * PAGE;
    const pos = msrBitmapPosition(msr, access)!;
    return (page[pos.byte] & (1 << pos.bit)) !== 0;
  }

  /** How many of the merged and x2APIC intercepts a pool page has. */
  private strictness(gpa: bigint): number {
    const page = this.pages.get(gpa)!;
    let n = 0;
    for (const msr of [...MERGED_MSRS, ...X2APIC_MSRS]) {
      for (const a of ['read', 'write'] as const) {
        const pos = msrBitmapPosition(msr, a)!;
        if (page[pos.byte] & (1 << pos.bit)) n++;
      }
    }
    return n;
  }

  /** Pages another vCPU's L2 runs with (the SDM forbids editing them). */
  private busyPages(self: number): Set<bigint> {
    const busy = new Set<bigint>();
    for (const v of this.vcpus) if (v.id !== self && v.l2?.bitmap != null) busy.add(v.l2.bitmap & ~0xfffn);
    return busy;
  }

  /** The vmcs12 view L1 has of its controls (current vmcs12 or eVMCS). */
  private view(v: VcpuModel): { cpu: number; secondary: number; bitmap: bigint } | null {
    if (v.mode === 'evmcs') return v.evmcs.ready ? v.evmcs : null;
    return v.current >= 0 ? v.vmcs12[v.current] : null;
  }

  // ---- one step

  /**
   * One draw: pick a vCPU, then one of the actions valid for it now, by
   * weight. The first action of each list is the one that moves the story on
   * (choices shrink toward 0, so shrunk traces go there directly).
   */
  step(c: Choice): void {
    const [vc, ac, pc, value] = c;
    const vWeights = [6, 3, 2].slice(0, this.o.vcpus);
    const v = this.vcpus[new Digits(vc).weighted(vWeights)];
    const p = new Digits(pc);
    const actions: [number, () => void][] = [];
    const add = (w: number, f: () => void) => actions.push([w, f]);

    if (v.l2) {
      add(12, () => this.l2Msr(v, p, value));
      add(2, () => this.l2Exit(v, p));
    } else if (!v.vmxon) {
      add(20, () => this.vmxon(v));
    } else if (v.mode === null) {
      add(10, () => this.chooseMode(v, 'evmcs', p));
      add(4, () => this.chooseMode(v, 'vmcs', p));
    } else if (v.mode === 'vmcs') {
      if (v.current < 0) {
        add(20, () => this.vmptrld(v, p));
        add(1, () => this.vmclear(v, p));
      } else {
        const cur = v.vmcs12[v.current];
        add(8, () => this.enter(v, p));
        add(cur.cpu & U ? (cur.launched ? 10 : 6) : 14, () => this.vmwrite(v, p));
        add(7, () => this.bitmapEdit(v, p));
        add(1, () => this.bitmapFill(v, p));
        add(2, () => this.vmptrld(v, p));
        add(1, () => this.vmclear(v, p));
        add(1, () => this.vmread(v, p));
      }
    } else {
      const ev = v.evmcs;
      if (!ev.ready) add(20, () => this.evmcsSetup(v, p));
      else {
        add(8, () => this.enter(v, p));
        add(ev.cpu & U ? (ev.launched ? 10 : 6) : 14, () => this.evmcsWrite(v, p));
        add(7, () => this.bitmapEdit(v, p));
        add(1, () => this.bitmapFill(v, p));
        add(ev.control & HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP ? 1 : 4, () => this.evmcsControl(v, p));
        add(2, () => this.evmcsClean(v, p));
        add(1, () => this.evmcsRead(v, p));
        // VMREAD reads the eVMCS once L0 has mapped it (before that there is no current VMCS)
        if (ev.mapped) add(1, () => this.vmread(v, p));
      }
    }
    // a second vCPU's L1 often just edits the shared bitmaps
    if (!v.l2 && v.id > 0 && !this.view(v)) add(4, () => this.bitmapEdit(v, p));
    // L0 changes its vmcs01 intercepts whenever it likes, also while L2 runs
    add(v.l2 ? 3 : 2, () => this.hostIntercept(v, p));
    actions[new Digits(ac).weighted(actions.map((a) => a[0]))][1]();
  }

  // ---- host

  private touch(msr: number, access: MsrAccess): void {
    this.hot = [[msr, access], ...this.hot.filter(([m, a]) => m !== msr || a !== access)].slice(0, 3) as [number, MsrAccess][];
  }

  private hostIntercept(v: VcpuModel, p: Digits): void {
    const msrs = [...MERGED_MSRS, ...MERGED_MSRS, M.MSR_IA32_SYSENTER_CS, M.MSR_X2APIC_TPR, M.MSR_IA32_TSC];
    const msr = msrs[p.take(msrs.length)];
    const access: MsrAccess = p.take(2) ? 'write' : 'read';
    this.emit({ kind: 'host.msr-intercept', vcpu: v.id, msr, access, intercept: p.take(3) !== 0 }, 'ok');
    this.touch(msr, access);
  }

  // ---- L2

  /** An MSR access for L2: often one whose intercept changed lately, else from the tables. */
  private pickAccess(p: Digits): [number, MsrAccess] {
    const access: MsrAccess = p.take(2) ? 'write' : 'read';
    switch (p.weighted([10, 5, 3, 1, this.hot.length ? 12 : 0])) {
      case 0:
        return [MERGED_MSRS[p.take(MERGED_MSRS.length)], access];
      case 1:
        return [X2APIC_MSRS[p.take(X2APIC_MSRS.length)], access];
      case 2:
        return [OTHER_MSRS[p.take(OTHER_MSRS.length)], access];
      case 3:
        return [OUT_OF_RANGE_MSRS[p.take(OUT_OF_RANGE_MSRS.length)], access];
      default:
        return this.hot[p.take(this.hot.length)];
    }
  }

  private l2Msr(v: VcpuModel, p: Digits, value: bigint): void {
    const [msr, access] = this.pickAccess(p);
    const write = access === 'write';
    const exits = this.l1Intercepts(v.l2!.bitmap, msr, access);
    if (write) this.emit({ kind: 'l2.wrmsr', vcpu: v.id, msr, value }, exits ? 'exit' : 'ok');
    else this.emit({ kind: 'l2.rdmsr', vcpu: v.id, msr }, exits ? 'exit' : 'value');
    if (exits) v.l2 = null;
  }

  private l2Exit(v: VcpuModel, p: Digits): void {
    if (p.take(2)) this.emit({ kind: 'l2.vmcall', vcpu: v.id }, 'exit');
    else this.emit({ kind: 'l2.cpuid', vcpu: v.id, leaf: [0, 1, 0x4000000a][p.take(3)], subleaf: 0, cpl: p.take(2) ? 3 : 0 }, 'exit');
    v.l2 = null;
  }

  // ---- L1 setup

  private vmxon(v: VcpuModel): void {
    if (!v.vmxonRevision) {
      this.emit({ kind: 'l1.write', vcpu: v.id, gpa: vmxonRegion(v.id), size: 4, value: BigInt(VMCS12_REVISION) }, 'ok');
      v.vmxonRevision = true;
    }
    this.emit({ kind: 'l1.vmxon', vcpu: v.id, gpa: vmxonRegion(v.id) }, 'ok');
    v.vmxon = true;
  }

  private chooseMode(v: VcpuModel, mode: 'vmcs' | 'evmcs', p: Digits): void {
    v.mode = mode;
    if (mode === 'evmcs') this.evmcsSetup(v, p);
    else this.vmptrld(v, p);
  }

  private vmptrld(v: VcpuModel, p: Digits): void {
    const j = p.weighted([6, 2, 1]);
    const m = v.vmcs12[j];
    const gpa = vmcs12Region(v.id, j);
    const fresh = !m.revision;
    if (fresh) {
      this.emit({ kind: 'l1.write', vcpu: v.id, gpa, size: 4, value: BigInt(VMCS12_REVISION) }, 'ok');
      m.revision = true;
    }
    this.emit({ kind: 'l1.vmptrld', vcpu: v.id, gpa }, 'ok');
    v.current = j;
    if (fresh) this.initControls(p, (field, value) => this.vmwriteOf(v, field, value));
  }

  /** What an L1 usually does with a new VMCS before its first VMLAUNCH: program the controls that matter here. */
  private initControls(p: Digits, write: (field: number, value: bigint) => void): void {
    for (const [field, value] of INIT_CONTROLS) write(field, value);
    // now and then L1 leaves the primary controls at their must-be-1 bits
    if (p.take(5) === 0) return write(VMCS.CPU_BASED_VM_EXEC_CONTROL, BigInt(KVM_CTLS_MUST_BE_1.cpu));
    write(VMCS.CPU_BASED_VM_EXEC_CONTROL, BigInt(CPU_BASED_VALUES[p.weighted([4, 2, 2, 1, 1, 1, 1])]));
    write(VMCS.MSR_BITMAP, BITMAP_POOL[p.take(BITMAP_POOL.length)]);
    if (p.take(2)) write(VMCS.SECONDARY_VM_EXEC_CONTROL, this.secondaryValue(p));
  }

  /**
   * A secondary-controls value; with eVMCS enabled, L1 reads filtered capability MSRs and keeps
   * to what eVMCS v1 can express (KVM refuses the rest: nested_evmcs_check_controls).
   */
  private secondaryValue(p: Digits): bigint {
    const value = SECONDARY_VALUES[p.take(SECONDARY_VALUES.length)];
    return BigInt((this.o.evmcs ? value & EVMCS1_SUPPORTED.secondary : value) >>> 0);
  }

  private vmclear(v: VcpuModel, p: Digits): void {
    // mostly the current one
    const j = v.current >= 0 && p.take(3) ? v.current : p.take(3);
    this.emit({ kind: 'l1.vmclear', vcpu: v.id, gpa: vmcs12Region(v.id, j) }, 'ok');
    v.vmcs12[j].launched = false;
    if (j === v.current) v.current = -1;
  }

  /** A control write: [field, value] from the tables. */
  private pickControl(v: VcpuModel, p: Digits): [number, bigint] {
    switch (p.weighted([5, 4, 6, 1, 4])) {
      case 0:
        return [VMCS.CPU_BASED_VM_EXEC_CONTROL, BigInt(CPU_BASED_VALUES[p.take(CPU_BASED_VALUES.length)])];
      case 1:
        return [VMCS.SECONDARY_VM_EXEC_CONTROL, this.secondaryValue(p)];
      case 2: {
        // mostly move to another page of the pool (the interesting change), now and then a bad address
        const cur = this.view(v)?.bitmap;
        // ... preferably to a stricter page: one that intercepts more of what L2 touches
        const others = BITMAP_POOL.filter((g) => g !== cur).sort((x, y) => this.strictness(y) - this.strictness(x) || Number(x - y));
        const k = p.weighted([8, 3, 1, 1]);
        // (a careful eVMCS user keeps its bitmap in guest memory: see knownFindings)
        const unbacked = v.mode === 'evmcs' && !this.o.knownFindings ? BITMAP_POOL[0] : BITMAP_UNBACKED;
        const gpa = k === 0 ? others[p.weighted([3, 1])] : k === 1 ? BITMAP_POOL[p.take(BITMAP_POOL.length)] : k === 2 ? BITMAP_UNALIGNED : unbacked;
        return [VMCS.MSR_BITMAP, gpa];
      }
      case 3:
        return [VMCS.VIRTUAL_APIC_PAGE_ADDR, vapicPage(v.id)];
      default: {
        // any other field of any clean-field group, with a value of its width
        const group = GROUP_FIELDS_BY_GROUP[p.take(GROUP_FIELDS_BY_GROUP.length)];
        const f = group[p.take(group.length)];
        const value = INTERESTING_U64[1 + p.take(INTERESTING_U64.length - 1)] & WIDTH_MASK[String(f.width)];
        return [f.encoding, acceptedFieldValue(f.encoding, value)];
      }
    }
  }

  private static apply(m: { cpu: number; secondary: number; bitmap: bigint }, field: number, value: bigint): void {
    if (field === VMCS.CPU_BASED_VM_EXEC_CONTROL) m.cpu = Number(value);
    else if (field === VMCS.SECONDARY_VM_EXEC_CONTROL) m.secondary = Number(value);
    else if (field === VMCS.MSR_BITMAP) m.bitmap = value;
  }

  private vmwrite(v: VcpuModel, p: Digits): void {
    const [field, value] = this.pickControl(v, p);
    this.vmwriteOf(v, field, value);
  }

  private vmwriteOf(v: VcpuModel, field: number, value: bigint): void {
    this.emit({ kind: 'l1.vmwrite', vcpu: v.id, field, value }, 'ok');
    const m = v.vmcs12[v.current];
    if (field === VMCS.MSR_BITMAP) this.bitmapMoved(m.bitmap, value);
    Builder.apply(m, field, value);
  }

  /** L1 points its VMCS at another bitmap page: the intercepts that differ count as changed lately. */
  private bitmapMoved(from: bigint, to: bigint): void {
    const a = this.pageOf(from);
    const b = this.pageOf(to);
    if (!a || !b || a === b) return;
    for (const msr of [...X2APIC_MSRS, ...MERGED_MSRS]) {
      for (const access of ['read', 'write'] as const) {
        const pos = msrBitmapPosition(msr, access)!;
        if ((a[pos.byte] ^ b[pos.byte]) & (1 << pos.bit)) this.touch(msr, access);
      }
    }
  }

  private vmread(v: VcpuModel, p: Digits): void {
    const fields = [VMCS.VM_EXIT_REASON, VMCS.CPU_BASED_VM_EXEC_CONTROL, VMCS.MSR_BITMAP, VMCS.VM_INSTRUCTION_ERROR, VMCS.EXIT_QUALIFICATION];
    this.emit({ kind: 'l1.vmread', vcpu: v.id, field: fields[p.take(fields.length)] }, 'value');
  }

  // ---- eVMCS

  private evmcsSetup(v: VcpuModel, p: Digits): void {
    const gpa = evmcsPage(v.id);
    this.emit({ kind: 'l1.write', vcpu: v.id, gpa: gpa + BigInt(EVMCS.REVISION_ID_OFFSET), size: 4, value: BigInt(KVM_EVMCS_VERSION) }, 'ok');
    this.emit({ kind: 'l1.evmcs-ptr', vcpu: v.id, gpa }, 'ok');
    v.evmcs.ready = true;
    // most Hyper-V builds turn the enlightened MSR bitmap on right away
    if (p.take(4) !== 0) this.setControl(v, HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP);
    this.initControls(p, (field, value) => this.evmcsWriteOf(v, field, value));
  }

  private setControl(v: VcpuModel, value: number): void {
    const ev = v.evmcs;
    this.emit({ kind: 'l1.evmcs-control', vcpu: v.id, gpa: evmcsPage(v.id), value }, 'ok');
    // A careful L1 also marks the bitmap dirty when it turns the enlightenment on or off.
    if (value !== ev.control) ev.pending |= MSR_BITMAP_GROUP_BIT;
    ev.control = value;
  }

  private evmcsControl(v: VcpuModel, p: Digits): void {
    const values = [HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP, 0, HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP | HV_ENLIGHTENMENTS_CONTROL.NESTED_FLUSH_HYPERCALL];
    this.setControl(v, values[p.take(values.length)]);
  }

  private evmcsWrite(v: VcpuModel, p: Digits): void {
    const [field, value] = this.pickControl(v, p);
    this.evmcsWriteOf(v, field, value);
  }

  private evmcsWriteOf(v: VcpuModel, field: number, value: bigint): void {
    const ev = v.evmcs;
    const mergeBefore = mergeControls(ev);
    this.emit({ kind: 'l1.evmcs-write', vcpu: v.id, gpa: evmcsPage(v.id), field, value }, 'ok');
    if (field === VMCS.MSR_BITMAP) this.bitmapMoved(ev.bitmap, value);
    Builder.apply(ev, field, value);
    ev.pending |= groupBit(field);
    ev.pendingVisible |= groupBit(field);
    if (!this.o.knownFindings && mergeControls(ev) !== mergeBefore) ev.pending |= MSR_BITMAP_GROUP_BIT;
  }

  private writeClean(v: VcpuModel, value: number): void {
    this.emit({ kind: 'l1.evmcs-clean', vcpu: v.id, gpa: evmcsPage(v.id), value }, 'ok');
    v.evmcs.clean = value;
  }

  /** L1 rewrites hv_clean_fields: clears what it changed, sometimes everything, sometimes sets what it did not change. */
  private evmcsClean(v: VcpuModel, p: Digits): void {
    const ev = v.evmcs;
    switch (p.take(3)) {
      case 0:
        return this.writeClean(v, ev.clean & ~ev.pending & CLEAN_ALL);
      case 1:
        return this.writeClean(v, 0);
      default:
        return this.writeClean(v, CLEAN_ALL & ~ev.pending);
    }
  }

  private evmcsRead(v: VcpuModel, p: Digits): void {
    const offs = [EVMCS.HV_CLEAN_FIELDS_OFFSET, EVMCS.HV_ENLIGHTENMENTS_CONTROL_OFFSET, vmcsFieldByEncoding(VMCS.CPU_BASED_VM_EXEC_CONTROL)!.evmcsOffset!];
    this.emit({ kind: 'l1.read', vcpu: v.id, gpa: evmcsPage(v.id) + BigInt(offs[p.take(offs.length)]), size: 4 }, 'value');
  }

  // ---- L1's MSR-bitmap pages

  /** The page a bitmap store goes to: mostly the one L1's own VMCS names; never one another vCPU's L2 runs with, unless violating on purpose. */
  private pickPage(v: VcpuModel, p: Digits): { page: bigint; violate: boolean } | null {
    const busy = this.busyPages(v.id);
    const busyPool = BITMAP_POOL.filter((g) => busy.has(g));
    if (this.o.allowViolations && busyPool.length > 0 && p.take(3) === 0) return { page: busyPool[p.take(busyPool.length)], violate: true };
    const free = BITMAP_POOL.filter((g) => !busy.has(g));
    const own = this.view(v)?.bitmap;
    const ownPage = own === undefined ? undefined : own & ~0xfffn;
    if (ownPage !== undefined && free.includes(ownPage) && p.take(4) !== 0) return { page: ownPage, violate: false };
    return free.length ? { page: free[p.take(free.length)], violate: false } : null;
  }

  /** After a store to bitmap page `page`: every eVMCS naming it has a dirty MSR bitmap. */
  private bitmapStored(page: bigint, violate: boolean, at: number): void {
    if (violate) this.violations.push(at);
    for (const o of this.vcpus) {
      const ev = o.evmcs;
      if (!ev.ready || (ev.bitmap & ~0xfffn) !== page) continue;
      ev.pending |= MSR_BITMAP_GROUP_BIT;
      if (ev.control & HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP) ev.pendingVisible |= MSR_BITMAP_GROUP_BIT;
    }
  }

  /** One intercept bit, with l1.msr-bitmap. */
  private bitmapEdit(v: VcpuModel, p: Digits): void {
    const pick = this.pickPage(v, p);
    if (!pick) return this.nothingToEdit(v, p);
    const kind = p.weighted([10, 5, 2, 1]);
    const msr = kind === 0 ? MERGED_MSRS[p.take(MERGED_MSRS.length)] : kind === 1 ? X2APIC_MSRS[p.take(X2APIC_MSRS.length)] : kind === 2 ? OTHER_MSRS[p.take(OTHER_MSRS.length)] : OUT_OF_RANGE_MSRS[p.take(OUT_OF_RANGE_MSRS.length)];
    const access: MsrAccess = p.take(2) ? 'write' : 'read';
    const page = this.pages.get(pick.page)!;
    const pos = msrBitmapPosition(msr, access);
    const was = pos !== null && (page[pos.byte] & (1 << pos.bit)) !== 0;
    // mostly flip the bit, so an edit changes something
    const intercept = p.take(4) === 0 ? was : !was;
    this.emit({ kind: 'l1.msr-bitmap', vcpu: v.id, gpa: pick.page, msr, access, intercept }, pos ? 'ok' : 'ignored');
    if (!pos) return;
    if (intercept) page[pos.byte] |= 1 << pos.bit;
    else page[pos.byte] &= ~(1 << pos.bit);
    this.touch(msr, access);
    this.bitmapStored(pick.page, pick.violate, this.events.length - 1);
  }

  /**
   * L1 makes a page intercept everything that matters here (as hypervisors
   * start their bitmaps: all ones), with 8-byte stores over the merged MSRs
   * and the x2APIC registers.
   */
  private bitmapFill(v: VcpuModel, p: Digits): void {
    const pick = this.pickPage(v, p);
    if (!pick) return this.nothingToEdit(v, p);
    const page = this.pages.get(pick.page)!;
    for (const off of FILL_OFFSETS) {
      this.emit({ kind: 'l1.write', vcpu: v.id, gpa: pick.page + BigInt(off), size: 8, value: U64_MAX }, 'ok');
      page.fill(0xff, off, off + 8);
      this.bitmapStored(pick.page, pick.violate, this.events.length - 1);
    }
    this.touch(MERGED_MSRS[p.take(MERGED_MSRS.length)], p.take(2) ? 'write' : 'read');
  }

  private nothingToEdit(v: VcpuModel, p: Digits): void {
    if (v.mode === 'vmcs' && v.current >= 0) return this.vmread(v, p);
    if (v.mode === 'evmcs' && v.evmcs.ready) return this.evmcsRead(v, p);
    this.emit({ kind: 'l1.cpuid', vcpu: v.id, leaf: 0x4000000a, subleaf: 0, cpl: 0 }, 'cpuid');
  }

  // ---- VM-entry

  private enter(v: VcpuModel, p: Digits): void {
    if (v.mode === 'evmcs') return this.enterEvmcs(v, p);
    const m = v.vmcs12[v.current];
    const launch = !m.launched;
    this.emit({ kind: launch ? 'l1.vmlaunch' : 'l1.vmresume', vcpu: v.id }, this.entryFails(m) ? 'vmfail-valid' : 'entered');
    if (this.entryFails(m)) return;
    m.launched = true;
    v.l2 = { bitmap: m.cpu & U ? m.bitmap : null };
  }

  /**
   * VMfailValid 7: an unaligned MSR bitmap (nested_vmx_check_msr_bitmap_controls),
   * or APICv controls without the TPR shadow (nested_vmx_check_apicv_controls).
   */
  private entryFails(m: { cpu: number; secondary: number; bitmap: bigint }): boolean {
    if ((m.cpu & U) !== 0 && (m.bitmap & 0xfffn) !== 0n) return true;
    return (m.cpu & A) !== 0 && (m.secondary & X2APIC_SECONDARY) !== 0 && (m.cpu & T) === 0;
  }

  private enterEvmcs(v: VcpuModel, p: Digits): void {
    const ev = v.evmcs;
    // VMLAUNCH on an eVMCS is always allowed (it has no launch state): now and then L1 starts over
    const launch = !ev.launched || p.take(12) === 0;
    const fresh = launch || !ev.mapped;
    if (!fresh && ev.pending & ev.clean) {
      const violate = this.o.allowViolations && (ev.pendingVisible & ev.clean) !== 0 && p.take(3) === 0;
      if (violate) this.violations.push(this.events.length);
      else this.writeClean(v, ev.clean & ~ev.pending & CLEAN_ALL);
    }
    const fails = this.entryFails(ev);
    this.emit({ kind: launch ? 'l1.vmlaunch' : 'l1.vmresume', vcpu: v.id }, fails ? 'vmfail-valid' : 'entered');
    // L0 consumed the eVMCS (clearing every clean bit first when it starts afresh), and marks it all clean after a good entry
    ev.mapped = true;
    ev.pending = 0;
    ev.pendingVisible = 0;
    if (fresh) ev.clean = 0;
    if (fails) return;
    ev.clean = CLEAN_ALL;
    ev.launched = true;
    v.l2 = { bitmap: ev.cpu & U ? ev.bitmap : null };
  }
}

/** Turn choices into a trace (deterministic). */
export function buildTrace(choices: readonly Choice[], o: BuildOptions): BuiltTrace {
  const b = new Builder(o);
  for (const c of choices) {
    if (b.full) break;
    b.step(c);
  }
  // at least 5 events: go on with the first choice of each step
  while (b.events.length < 5) b.step([0, 0, 0, 0n]);
  const n = Math.min(b.events.length, o.maxEvents);
  const header = makeHeader(
    { evmcs: o.evmcs, vcpus: o.vcpus, pcpus: 1, memslots: [{ slot: 0, gfn: 0n, npages: ARB_MEMSLOT_PAGES, flags: 0 }] },
    { generator: 'nvx check arbTrace', violations: o.allowViolations ? 'allowed' : 'none', 'known-findings': String(o.knownFindings) },
  );
  return { header, events: b.events.slice(0, n), expected: b.expected.slice(0, n), violations: b.violations.filter((i) => i < n) };
}

/** The choice arbitrary: tuples of small numbers plus a 64-bit value, mostly an interesting one. */
export function arbChoices(maxSteps: number): fc.Arbitrary<Choice[]> {
  const value = fc.oneof({ arbitrary: fc.constantFrom(...INTERESTING_U64), weight: 3 }, { arbitrary: fc.bigInt({ min: 0n, max: U64_MAX }), weight: 1 });
  const choice = fc.tuple(fc.nat(), fc.nat(), fc.nat(), value) as fc.Arbitrary<Choice>;
  return fc.array(choice, { minLength: 3, maxLength: maxSteps, size: 'max' });
}

/** Build options drawn for a trace (vCPU count and eVMCS when the caller left them open). */
export function arbBuildOptions(opts: ArbTraceOptions = {}): fc.Arbitrary<BuildOptions> {
  const maxEvents = Math.max(5, Math.min(opts.maxEvents ?? 80, 80));
  // most bugs need one vCPU's long story; the others mostly add noise (and the SDM contract)
  const vcpus = opts.vcpus !== undefined ? fc.constant(opts.vcpus) : fc.constantFrom(1, 1, 1, 2, 2, 3);
  // eVMCS worlds are the richer ones (both areas at work): two in three
  const evmcs = opts.evmcs !== undefined ? fc.constant(opts.evmcs) : fc.constantFrom(true, true, false);
  const knownFindings = !!opts.knownFindings;
  return fc.record({ vcpus, evmcs }).map(({ vcpus: n, evmcs: e }) => ({ vcpus: n, evmcs: e, allowViolations: !!opts.allowViolations, maxEvents, knownFindings }));
}

/** Traces with their builder's expectations (for checking the builder itself). */
export function arbBuiltTrace(opts: ArbTraceOptions = {}): fc.Arbitrary<BuiltTrace> {
  const maxEvents = Math.max(5, Math.min(opts.maxEvents ?? 80, 80));
  return fc.tuple(arbBuildOptions(opts), arbChoices(maxEvents)).map(([o, c]) => buildTrace(c, o));
}

/**
 * Valid traces for the msr-bitmap and evmcs areas, contract-keeping unless
 * `allowViolations` is set.
 */
export function arbTrace(opts: ArbTraceOptions = {}): fc.Arbitrary<GeneratedTrace> {
  return arbBuiltTrace(opts).map((t) => ({ header: t.header, events: t.events }));
}

// ---------------------------------------------------------------- the differential property

/**
 * Runs and seed of the shipped property tests. Every broken path in
 * fixtures/ is caught within this many runs with this seed, and with most
 * others: each needs a median of at most about 100 runs (fixtures.test.ts).
 */
export const PROPERTY_DEFAULTS = { numRuns: 500, seed: 0x6e7678 } as const;

/**
 * The property failed on this trace. The message is one line (fast-check
 * builds one per failing shrink candidate); `report` has the whole story.
 */
export class DivergenceFound extends Error {
  constructor(
    readonly trace: GeneratedTrace,
    readonly result: DiffResult,
  ) {
    const d = result.divergence;
    super(
      d
        ? `${result.other} diverges from ${result.base} (${d.verdict}) at event ${d.index} of ${trace.events.length}: ${formatEvent(d.event)}`
        : `${result.other}: contract violation in a trace meant to keep every contract (${result.violations[0]?.message ?? ''})`,
    );
    this.name = 'DivergenceFound';
  }

  /** The divergence, its verdict and contract, and the trace in text form. */
  get report(): string {
    return describeResult(this.trace, this.result);
  }
}

/** A short text of a diff result: the divergence, its verdict and contract, and the trace. */
export function describeResult(t: GeneratedTrace, r: DiffResult): string {
  const lines: string[] = [`${r.other} vs ${r.base} over ${t.events.length} events`];
  const d = r.divergence;
  if (d) {
    lines.push(`divergence (${d.kind}, ${d.verdict}) at event ${d.index}: ${formatEvent(d.event)}`);
    lines.push(`  ${r.base}: ${formatOutcome(d.base)}   ${r.other}: ${formatOutcome(d.other)}`);
    for (const a of d.archDiff.slice(0, 8)) lines.push(`  ${a.key}: ${a.a ?? '-'} vs ${a.b ?? '-'}`);
    for (const [k, v] of Object.entries(d.explain.other).slice(0, 8)) lines.push(`  ${k}: ${v}`);
    if (d.contract) lines.push(`  contract ${d.contract.contract} broken at event ${d.contract.index}: ${d.contract.message}`);
  }
  for (const v of r.violations.slice(0, 3)) lines.push(`violation ${v.contract} at event ${v.index}: ${v.message}`);
  lines.push(formatTextTrace(t.header, t.events));
  return lines.join('\n');
}

/**
 * Check one trace against the reference. Throws DivergenceFound (with the
 * trace cut after the divergence) on a divergence with verdict 'bug';
 * without `allowViolations`, also on any divergence or contract violation
 * at all (the generator keeps contracts).
 */
export function checkAgainstReference(t: GeneratedTrace, other: Profile, opts: { allowViolations?: boolean; base?: Profile } = {}): DiffResult {
  const r = diffEvents(t.header, t.events, opts.base ?? parseProfile('reference'), other);
  const d = r.divergence;
  // what follows the divergence is not needed to show it
  const upTo = (): GeneratedTrace => (d ? { header: t.header, events: t.events.slice(0, d.index + 1) } : t);
  if (d && d.verdict === 'bug') throw new DivergenceFound(upTo(), r);
  if (!opts.allowViolations && (d || r.violations.length)) throw new DivergenceFound(upTo(), r);
  return r;
}

/** The property: `other` shows no bug against the reference on generated traces. */
export function differentialProperty(other: Profile, opts: ArbTraceOptions = {}): fc.IPropertyWithHooks<[GeneratedTrace]> {
  const base = parseProfile('reference');
  return fc.property(arbTrace(opts), (t) => {
    checkAgainstReference(t, other, { allowViolations: opts.allowViolations, base });
  });
}
