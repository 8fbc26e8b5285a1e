/**
 * One model-based generator for the whole world: every area's events in one
 * guest-physical address space, drawn from what L1, L2 and the host can do
 * *now*, so each area's set-up meets every other area's events.
 *
 * As in the per-area generators, fast-check draws choices (tuples of small
 * numbers and a 64-bit value) and a deterministic builder turns them into
 * events; no draw is rejected, so shrinking works on the choices and every
 * shrunk trace is valid too. The builder runs the reference emulator
 * alongside and asks it what each vCPU has set up (VMX on, the current
 * vmcs12, the eVMCS the VP assist page names and the one L0 has mapped,
 * L2 running, SMM), so it only picks events that can happen then: L2
 * events while L2 runs, L1's while L1 runs, host events at any time.
 *
 * What meets what (the gaps of the per-area generators that mix.ts keeps
 * apart in windows of their own):
 *
 *  - host memory changes (memslot move, delete, re-add, resize, flags,
 *    page migration and zap, mmu-notifier invalidation windows) over the
 *    pages L1 set up: vmcs12s, eVMCSs, the (enlightened) MSR bitmap, the
 *    shadow VMCS, the VMREAD/VMWRITE bitmaps, the APIC pages;
 *  - CPUID faulting (host tasks, the vCPU thread, MSR_PLATFORM_INFO,
 *    MSR_MISC_FEATURES_ENABLES, SMM) and vCPU loads during nested runs;
 *  - L1 switching between vmcs12s and eVMCSs (more addresses per vCPU than
 *    L0 keeps nested contexts: NESTED_CONTEXTS_PER_VCPU), VMCLEAR, VMXOFF
 *    and VMXON again with host memory churn between;
 *  - every read-write vmcs12/eVMCS field of every clean-field group, in
 *    every width (GROUP_FIELDS), by VMWRITE or into the eVMCS, and the
 *    controls and addresses L0 interprets, from lists of values that pass
 *    or fail the entry checks on purpose.
 *
 * Contracts are kept unless violations are allowed, the way
 * contracts.ts's monitor judges them: before an entry with an eVMCS, L1
 * clears the clean bit of every group it changed since L0 last consumed
 * that eVMCS (an eVMCS field store, a raw store into the page, a store
 * into the MSR-bitmap page an eVMCS names with the enlightened bitmap on);
 * L1 never stores to the MSR-bitmap page of a vmcs12 another vCPU's L2 runs
 * with (SDM 25.11.4). Nothing else is avoided: in particular L1 is only as
 * careful as the TLFS asks (it does not clear MSR_BITMAP when it changes a
 * control the merge depends on, and may point an eVMCS's MSR bitmap outside
 * guest memory). Paths known to diverge on such inputs are left out of the
 * profiles a campaign checks (fuzz.ts, defaultFuzzProfiles), never out of
 * the inputs.
 */
import {
  CPU_BASED,
  EVMCS,
  HV_ENLIGHTENMENTS_CONTROL,
  HV_VMX_ENLIGHTENED_CLEAN_FIELD,
  INVALID_GPA,
  KVM_CTLS_MUST_BE_1,
  MUST_BE_1_CONTROLS,
  KVM_EVMCS_VERSION,
  MSR,
  MSR_PLATFORM_INFO_CPUID_FAULT,
  PIN_BASED,
  SECONDARY_EXEC,
  VMCS,
  VMCS12_REVISION,
  VMCS_FIELDS,
  VMCS_HDR_SHADOW_VMCS,
  VM_EXIT,
  VMX_CAP_MSR,
  VM_EXIT_ALWAYSON_WITHOUT_TRUE_MSR,
  VmcsField,
  msrBitmapPosition,
  vmcsFieldByEncoding,
} from '@nvx/arch';
import {
  KVM_NESTED_STATE_HEADER_SIZE,
  KVM_STATE_NESTED_GUEST_MODE,
  KVM_STATE_NESTED_MTF_PENDING,
  KVM_STATE_NESTED_RUN_PENDING,
  KVM_STATE_NESTED_SMM_GUEST_MODE,
  KVM_STATE_NESTED_SMM_VMXON,
  KVM_STATE_NESTED_VMX_VMCS_SIZE,
  Profile,
  Replayer,
  World,
  gfnToHva,
  gpaToGfn,
  parseProfile,
  readGuest,
  vmcs12Get,
  vmcs12Get32,
  vmxCapMsrGuest,
} from '@nvx/emulator';
import { MemslotConfig, MsrAccess, TraceEvent, TraceHeader, WorldConfig, makeHeader } from '@nvx/trace';
import fc from 'fast-check';
import { Choice, Digits, GROUP_FIELDS, INTERESTING_U64, acceptedFieldValue, arbChoices } from './arbitraries';

export interface WorldTraceOptions {
  /** upper bound on the events of a trace (default 90) */
  maxEvents?: number;
  /** vCPUs: drawn from 1-3 when left out */
  vcpus?: 1 | 2 | 3;
  /** now and then enter with a stale clean bit, or store to a bitmap another vCPU's L2 runs with */
  allowViolations?: boolean;
}

export interface WorldBuildOptions {
  vcpus: number;
  maxEvents: number;
  allowViolations: boolean;
  config: Pick<WorldConfig, 'evmcs' | 'shadowVmcs' | 'vmwriteAnyField' | 'apicv' | 'pml' | 'preemptionTimer' | 'cpuidFaultHw' | 'l2CpuidFaultArchitectural' | 'unmanagedMemory'>;
}

export interface WorldTrace {
  header: TraceHeader;
  events: TraceEvent[];
  /** events at which the builder broke a contract on purpose */
  violations: number[];
}

// ---------------------------------------------------------------- the guest-physical layout

const PAGE = 0x1000n;
const U64_MAX = (1n << 64n) - 1n;
const pg = (gfn: number) => BigInt(gfn) * PAGE;

/** slot 0: the fixed pages (guest page 0 stays all zero) */
export const WORLD_SLOT0_PAGES = 0x60;
/** slot 1: pages the host moves, deletes, re-adds and resizes under L1 */
export const WORLD_SLOT1 = 1;
export const WORLD_SLOT1_PAGES = 0x10;
/** where slot 1 can sit (its first base is its home) */
export const WORLD_SLOT1_BASES: readonly number[] = [0x60, 0x80, 0xa0];
const SLOT1_SIZES = [0x8, 0x10, 0x20];
/** slot 2: a small slot the host creates and deletes */
const SLOT2 = 2;
const SLOT2_BASE = 0x100;
/** an aligned address no memslot ever covers */
const UNBACKED = pg(0x200);

const VMCS12_SLOT0 = 8;
const VMCS12_SLOT1 = 2;
const EVMCS_SLOT0 = 3;

const vmxonRegion = (v: number) => pg(0x01 + v);
const vmcs12Slot0 = (v: number, j: number) => pg(0x04 + v * VMCS12_SLOT0 + j);
const evmcsSlot0 = (v: number, j: number) => pg(0x1c + v * EVMCS_SLOT0 + j);
const shadowSlot0 = (v: number) => pg(0x25 + v);
const vmreadBitmap = (v: number) => pg(0x28 + 2 * v);
const vmwriteBitmap = (v: number) => pg(0x29 + 2 * v);
const BITMAP_SLOT0: readonly bigint[] = [pg(0x2e), pg(0x2f), pg(0x30)];
const vapicPage = (v: number) => pg(0x31 + v);
const apicAccessPage = (v: number) => pg(0x34 + v);
const piDesc = (v: number) => pg(0x37 + v);
// slot 1, as offsets from its base
const S1_BITMAP = 0;
const s1Evmcs = (v: number) => 1 + v;
const s1Vmcs12 = (v: number, j: number) => 4 + v * VMCS12_SLOT1 + j;
const s1Shadow = (v: number) => 0xa + v;

// ---------------------------------------------------------------- what the builder draws from

const M = MSR;
const L2_MSRS = [
  M.MSR_FS_BASE,
  M.MSR_GS_BASE,
  M.MSR_KERNEL_GS_BASE,
  M.MSR_IA32_SPEC_CTRL,
  M.MSR_IA32_PRED_CMD,
  M.MSR_IA32_FLUSH_CMD,
  M.MSR_X2APIC_TPR,
  M.MSR_X2APIC_EOI,
  M.MSR_X2APIC_SELF_IPI,
  M.MSR_X2APIC_ID,
  M.MSR_X2APIC_ICR,
  M.MSR_IA32_SYSENTER_CS,
  M.MSR_LSTAR,
  M.MSR_IA32_TSC,
  M.MSR_MISC_FEATURES_ENABLES,
  M.HV_X64_MSR_GUEST_OS_ID,
];
const BITMAP_MSRS = L2_MSRS.slice(0, 13);

const U = CPU_BASED.USE_MSR_BITMAPS;
const A = CPU_BASED.ACTIVATE_SECONDARY_CONTROLS;
const T = CPU_BASED.TPR_SHADOW;
const S = SECONDARY_EXEC;
/**
 * Each with the must-be-1 bits of TRUE_PROCBASED_CTLS (vmx_control_verify);
 * those that activate secondary controls with the TPR shadow, which the
 * APICv controls need (nested_vmx_check_apicv_controls).
 */
const CPU_BASED_VALUES = [U | A | T, U | A | T | CPU_BASED.RDTSC_EXITING, U, A | T, U | T, 0, U | A | T | CPU_BASED.HLT_EXITING].map((x) => BigInt((x | KVM_CTLS_MUST_BE_1.cpu) >>> 0));
const SECONDARY_VALUES = [
  S.VIRTUALIZE_X2APIC_MODE | S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY,
  S.SHADOW_VMCS,
  S.VIRTUALIZE_X2APIC_MODE,
  S.SHADOW_VMCS | S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY,
  S.SHADOW_VMCS | S.VIRTUALIZE_X2APIC_MODE | S.APIC_REGISTER_VIRT,
  0,
  S.VIRTUALIZE_APIC_ACCESSES | S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY,
  S.VIRTUALIZE_APIC_ACCESSES,
  S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY,
  S.VIRTUALIZE_APIC_ACCESSES | S.ENABLE_EPT,
].map((x) => BigInt(x >>> 0));
/**
 * Pin-based values: the must-be-1 bits and external-interrupt exiting
 * (virtual-interrupt delivery needs it: nested_vmx_check_apicv_controls),
 * with or without posted interrupts.
 */
const PIN_VALUES = [KVM_CTLS_MUST_BE_1.pin | PIN_BASED.EXT_INTR_MASK, KVM_CTLS_MUST_BE_1.pin | PIN_BASED.EXT_INTR_MASK | PIN_BASED.POSTED_INTR].map((x) => BigInt(x >>> 0));
const AR_VALUES = [0xa09bn, 0xc093n, 0xfffffn, 0x10093n];
/** fields L2 reads and writes through L1's shadow VMCS (RW- and RO-shadowed, unshadowed, unknown) */
const L2_VMCS_FIELDS = [
  VMCS.GUEST_RIP,
  VMCS.GUEST_RSP,
  VMCS.GUEST_RFLAGS,
  VMCS.GUEST_CR0,
  VMCS.HOST_GS_BASE,
  VMCS.GUEST_INTR_STATUS,
  VMCS.GUEST_PML_INDEX,
  VMCS.VMX_PREEMPTION_TIMER_VALUE,
  VMCS.VM_EXIT_REASON,
  VMCS.EXIT_QUALIFICATION,
  VMCS.GUEST_PHYSICAL_ADDRESS,
  VMCS.GUEST_PHYSICAL_ADDRESS_HIGH,
  VMCS.GUEST_CS_AR_BYTES,
  VMCS.VM_INSTRUCTION_ERROR,
  VMCS.TSC_OFFSET,
  VMCS.SECONDARY_VM_EXEC_CONTROL,
  0x7ffe,
  0x10000 | VMCS.GUEST_RIP,
];
/** encodings vmcs12 does not have (in the read-only, 64-bit and natural ranges, and with bits above 14 set): VMfailValid 12 */
const UNKNOWN_FIELDS = [0x4420, 0x7ffe, 0x2034, 0x6420, 0x8000, 0x10000 | VMCS.GUEST_RIP];
const L1_READ_FIELDS = [VMCS.VM_EXIT_REASON, VMCS.VM_INSTRUCTION_ERROR, VMCS.EXIT_QUALIFICATION, VMCS.CPU_BASED_VM_EXEC_CONTROL, VMCS.MSR_BITMAP, VMCS.GUEST_CS_AR_BYTES, VMCS.VMCS_LINK_POINTER, VMCS.GUEST_RIP];
const CPUID_LEAVES = [0, 1, 7, 0xb, 0x40000000, 0x40000001, 0x40000004, 0x4000000a];
const APIC_OFFSETS = [0x20, 0x80, 0xb0, 0x300, 0x310, 0x3f0, 0x380];

/**
 * Controls only VM-entry checks (entry-checks.ts after KVM's
 * nested_check_vm_execution_controls and nested_check_vm_exit_controls in
 * arch/x86/kvm/vmx/nested.c), in values that pass and values that fail on
 * purpose: "enable VPID" with VPID 0 (f0d736547815), a CR3-target count
 * above what IA32_VMX_MISC offers (KVM offers none: nested_cpu_vmx_misc_cr3_count
 * is 0, c7c2c709b60e), "save VMX-preemption timer value" without "activate
 * VMX-preemption timer" (14aa61d0a9eb).
 */
const VPID_VALUES = [0n, 0n, 1n, 0xffffn];
const CR3_TARGET_COUNTS = [0n, 1n, 4n, 0x100n];
/** the VM-exit controls' reserved-1 bits (the TRUE allowed-0 setting: bit 2 may be 0): kept so only the bit drawn decides */
const EXIT_RESERVED1 = VM_EXIT_ALWAYSON_WITHOUT_TRUE_MSR & ~BigInt(VM_EXIT.SAVE_DEBUG_CONTROLS);
const EXIT_SAVE_TIMER = BigInt(VM_EXIT.SAVE_VMX_PREEMPTION_TIMER);
/** an EPTP KVM accepts: write-back (6), page-walk length 4 (3 << 3), no A/D bits; the page is never walked */
const EPTP_WB_4LEVEL = 0x1en;
const EPTP_PAGE = 0x7000n;
const PIN_TIMER = BigInt(PIN_BASED.VMX_PREEMPTION_TIMER);

/** What the VMM sets of vcpu's nested state after KVM_GET_NESTED_STATE: as saved, or changed on purpose. */
const SMM_FLAGS = [KVM_STATE_NESTED_SMM_VMXON, KVM_STATE_NESTED_SMM_GUEST_MODE | KVM_STATE_NESTED_SMM_VMXON, KVM_STATE_NESTED_SMM_GUEST_MODE];

const CLEAN_ALL = HV_VMX_ENLIGHTENED_CLEAN_FIELD.ALL;
const MSR_BITMAP_GROUP_BIT = 1 << vmcsFieldByEncoding(VMCS.MSR_BITMAP)!.cleanGroup!;
const MSR_BITMAP_EVMCS_OFFSET = BigInt(vmcsFieldByEncoding(VMCS.MSR_BITMAP)!.evmcsOffset!);
const groupBit = (field: number): number => {
  const g = vmcsFieldByEncoding(field)?.cleanGroup;
  return g === null || g === undefined || g < 0 ? 0 : 1 << g;
};
const GROUPS: readonly (readonly VmcsField[])[] = (() => {
  const by = new Map<number, VmcsField[]>();
  for (const f of GROUP_FIELDS) by.set(f.cleanGroup!, [...(by.get(f.cleanGroup!) ?? []), f]);
  return [...by.keys()].sort((a, b) => a - b).map((g) => by.get(g)!);
})();
const WIDTH_MASK: Record<string, bigint> = { 16: 0xffffn, 32: 0xffffffffn, 64: U64_MAX, natural: U64_MAX };
/** the fields a restore onto an eVMCS writes back into it (copy_vmcs12_to_enlightened: guest state, VM-exit information) */
const SYNC_OUT_FIELDS: readonly VmcsField[] = VMCS_FIELDS.filter((f) => f.evmcsSyncOut && !f.isHigh);

// ---------------------------------------------------------------- the builder

class WorldBuilder {
  readonly events: TraceEvent[] = [];
  readonly violations: number[] = [];
  private readonly ref: Replayer;
  /** per eVMCS address: the clean-field groups L1 changed since L0 last consumed it (as contracts.ts counts them) */
  private readonly dirty = new Map<bigint, number>();
  /** slot 1 as the host has it */
  private slot1 = { base: WORLD_SLOT1_BASES[0], npages: WORLD_SLOT1_PAGES, present: true };
  private slot2 = false;
  /** every eVMCS address L1 named */
  private readonly evmcsSeen = new Set<bigint>();
  private openInvalidations = 0;
  /** MSRs whose intercepts L1 or L0 changed lately: L2 goes for them more often */
  private hot: number[] = [];

  constructor(
    readonly header: TraceHeader,
    readonly o: WorldBuildOptions,
    reference: Profile,
  ) {
    this.ref = Replayer.fromHeader(header, reference);
  }

  get full(): boolean {
    return this.events.length >= this.o.maxEvents;
  }

  private get w(): World {
    return this.ref.peek();
  }

  private emit(e: TraceEvent): void {
    if (this.full) return;
    this.events.push(e);
    this.ref.apply(e);
  }

  // ---- addresses

  /** A slot-1 page as L1 names it: mostly where the slot is now, sometimes where it was first. */
  private s1(off: number, p: Digits): bigint {
    const base = p.take(4) === 0 ? WORLD_SLOT1_BASES[0] : this.slot1.base;
    return pg(base + off);
  }

  /** Addresses each vCPU used lately, the last first: L1 often goes back to one it left. */
  private readonly recent = new Map<string, bigint[]>();

  private remember(key: string, gpa: bigint): bigint {
    this.recent.set(key, [gpa, ...(this.recent.get(key) ?? []).filter((g) => g !== gpa)].slice(0, 3));
    return gpa;
  }

  private fromRecent(key: string, p: Digits): bigint | undefined {
    const r = this.recent.get(key);
    return r && r.length > 1 && p.take(3) === 0 ? r[1 + p.take(r.length - 1)] : undefined;
  }

  private vmcs12Addr(v: number, p: Digits): bigint {
    const back = this.fromRecent(`vmcs12 ${v}`, p);
    if (back !== undefined) return this.remember(`vmcs12 ${v}`, back);
    const j = p.take(VMCS12_SLOT0 + VMCS12_SLOT1);
    return this.remember(`vmcs12 ${v}`, j < VMCS12_SLOT0 ? vmcs12Slot0(v, j) : this.s1(s1Vmcs12(v, j - VMCS12_SLOT0), p));
  }

  private evmcsAddr(v: number, p: Digits): bigint {
    const back = this.fromRecent(`evmcs ${v}`, p);
    if (back !== undefined) return this.remember(`evmcs ${v}`, back);
    const j = p.take(EVMCS_SLOT0 + 1);
    return this.remember(`evmcs ${v}`, j < EVMCS_SLOT0 ? evmcsSlot0(v, j) : this.s1(s1Evmcs(v), p));
  }

  private bitmapPage(p: Digits): bigint {
    const j = p.take(BITMAP_SLOT0.length + 1);
    return j < BITMAP_SLOT0.length ? BITMAP_SLOT0[j] : this.s1(S1_BITMAP, p);
  }

  private shadowAddr(v: number, p: Digits): bigint {
    return p.take(3) ? shadowSlot0(v) : this.s1(s1Shadow(v), p);
  }

  /** The value of an address field L0 dereferences: mostly a page meant for it, sometimes one that fails or is not backed. */
  private addressValue(v: number, field: number, p: Digits): bigint {
    switch (field) {
      case VMCS.MSR_BITMAP:
        switch (p.weighted([12, 1, 2, 1])) {
          case 0:
            return this.bitmapPage(p);
          case 1:
            return BITMAP_SLOT0[0] + 0x800n;
          case 2:
            return UNBACKED;
          default:
            return 0n;
        }
      case VMCS.VMCS_LINK_POINTER:
        return p.weighted([4, 6, 1]) === 0 ? INVALID_GPA : p.take(8) ? this.shadowAddr(v, p) : this.vmcs12Addr(v, p);
      case VMCS.VMREAD_BITMAP:
        return vmreadBitmap(v);
      case VMCS.VMWRITE_BITMAP:
        return vmwriteBitmap(v);
      case VMCS.VIRTUAL_APIC_PAGE_ADDR:
        return p.take(6) ? vapicPage(v) : UNBACKED;
      case VMCS.APIC_ACCESS_ADDR:
        return p.take(5) ? apicAccessPage(v) : UNBACKED;
      case VMCS.POSTED_INTR_DESC_ADDR:
        return piDesc(v) + BigInt(0x40 * p.take(2));
      default:
        return 0n;
    }
  }

  // ---- facts from the reference world

  private nested(v: number) {
    return this.w.vcpus[v].nested;
  }

  private backed(gpa: bigint): boolean {
    return gfnToHva(this.w.mem, gpaToGfn(gpa)) >= 0;
  }

  /** gfn of the MSR-bitmap page an eVMCS names with the enlightened bitmap on, or -1 (what the monitor reads). */
  private enlightenedBitmapGfn(evmcs: bigint): number {
    const ctl = readGuest(this.w, evmcs + BigInt(EVMCS.HV_ENLIGHTENMENTS_CONTROL_OFFSET), 4) ?? 0n;
    if (!(ctl & BigInt(HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP))) return -1;
    const bm = readGuest(this.w, evmcs + MSR_BITMAP_EVMCS_OFFSET, 8);
    return bm === null ? -1 : gpaToGfn(bm);
  }

  /** Would a store by vCPU v to [gpa, gpa+size) change the MSR bitmap of a vmcs12 another vCPU's L2 runs with? */
  private busy(v: number, gpa: bigint, size: number): boolean {
    const first = gpaToGfn(gpa);
    const last = gpaToGfn(gpa + BigInt(size - 1));
    for (const o of this.w.vcpus) {
      if (o.id === v || !o.nested.guestMode) continue;
      if (!(vmcs12Get32(o.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.USE_MSR_BITMAPS)) continue;
      const g = gpaToGfn(vmcs12Get(o.nested, VMCS.MSR_BITMAP));
      if (g >= first && g <= last) return true;
    }
    return false;
  }

  /**
   * Before a host event that may change what backs [first, last] (a zap
   * faults back in zeroed; a slot moved, deleted or resized takes its
   * content away or brings other pages): L1's clean bits say the fields are
   * unchanged since the last entry, which the host has just made untrue, so
   * the eVMCSs L1 named there, and those whose enlightened MSR bitmap is
   * there, count as changed as they would after an L1 store.
   */
  private hostChanges(first: number, last: number): void {
    for (const ev of this.evmcsSeen) {
      const g = gpaToGfn(ev);
      if (g >= first && g <= last) this.markDirty(ev, CLEAN_ALL);
      const bm = this.enlightenedBitmapGfn(ev);
      if (bm >= first && bm <= last) this.markDirty(ev, MSR_BITMAP_GROUP_BIT);
    }
  }

  /**
   * Does an MSR bitmap some L2 runs with now lie in [first, last]? The host
   * never changes what backs it (a zap or a memslot change; a migration
   * keeps the bytes): vmcs02's bitmap, merged at entry, and the reference's
   * lookup at each L2 access would part ways. That is the SDM's rule for
   * the bitmap of a VMCS in use (25.11.4), applied to the host, as the
   * guest-pages generator does.
   */
  private busyBitmap(first: number, last: number): boolean {
    for (const o of this.w.vcpus) {
      if (!o.nested.guestMode || !(vmcs12Get32(o.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.USE_MSR_BITMAPS)) continue;
      const g = gpaToGfn(vmcs12Get(o.nested, VMCS.MSR_BITMAP));
      if (g >= first && g <= last) return true;
    }
    return false;
  }

  private markDirty(evmcs: bigint, groups: number): void {
    if (groups) this.dirty.set(evmcs, (this.dirty.get(evmcs) ?? 0) | groups);
  }

  /**
   * Before L1 stores to [gpa, gpa+size): which eVMCS groups it changes
   * (contracts.ts ContractMonitor.store: every eVMCS a vCPU uses or names;
   * a raw store into its page changes every group it covers, counted here
   * as all of them; a store into its enlightened MSR-bitmap page changes
   * MSR_BITMAP). Returns false when the store must not be made (SDM
   * 25.11.4) and violations are not wanted now.
   */
  private beforeStore(v: number, gpa: bigint, size: number, viaEvmcsEvent: boolean, p: Digits): boolean {
    if (this.busy(v, gpa, size)) {
      if (!this.o.allowViolations || p.take(3) !== 0) return false;
      this.violations.push(this.events.length);
    }
    const first = gpaToGfn(gpa);
    const last = gpaToGfn(gpa + BigInt(size - 1));
    for (const o of this.w.vcpus) {
      for (const ev of [o.nested.hvEvmcsVmptr, o.nested.vpAssistEvmcs]) {
        if (ev === INVALID_GPA) continue;
        const bm = this.enlightenedBitmapGfn(ev);
        if (bm >= first && bm <= last) this.markDirty(ev, MSR_BITMAP_GROUP_BIT);
        const g = gpaToGfn(ev);
        if (!viaEvmcsEvent && g >= first && g <= last) this.markDirty(ev, CLEAN_ALL);
      }
    }
    return true;
  }

  // ---- one step

  step(c: Choice): void {
    const [vc, ac, pc, value] = c;
    const vi = this.o.vcpus === 1 ? 0 : new Digits(vc).weighted([6, 3, 2].slice(0, this.o.vcpus));
    const n = this.nested(vi);
    const p = new Digits(pc);
    const actions: [number, () => void][] = [];
    const add = (weight: number, f: () => void) => actions.push([weight, f]);
    if (this.w.vcpus[vi].cpu < 0) {
      // the vCPU's thread is outside KVM_RUN: the host schedules it back in (its events would be ignored)
      add(1, () => this.host(vi, p, value));
      add(6, () => this.emit({ kind: 'host.vcpu-load', vcpu: vi, cpu: p.take(this.header.config.pcpus) }));
    } else add(6, () => this.host(vi, p, value));
    if (this.w.vcpus[vi].cpu < 0) {
      // nothing else
    } else if (n.guestMode) {
      add(8, () => this.l2Msr(vi, p, value));
      add(3, () => this.emit({ kind: 'l2.vmcall', vcpu: vi }));
      add(2, () => this.emit({ kind: 'l2.cpuid', vcpu: vi, leaf: p.pick(CPUID_LEAVES), subleaf: 0, cpl: p.pick([0, 3]) }));
      add(3, () => this.l2Vmcs(vi, p, value));
      add(2, () => this.l2Apic(vi, p, value));
    } else if (this.w.vcpus[vi].cpuidFault.smm) {
      add(6, () => this.emit({ kind: 'l1.rsm', vcpu: vi }));
      add(2, () => this.emit({ kind: 'l1.cpuid', vcpu: vi, leaf: p.pick(CPUID_LEAVES), subleaf: 0, cpl: 0 }));
    } else if (!n.vmxon) {
      add(20, () => this.vmxon(vi, p));
      // VMX instructions outside VMX operation (#UD), e.g. after a VMXON that failed
      add(1, () => (p.take(2) ? this.emit({ kind: 'l1.vmptrld', vcpu: vi, gpa: this.vmcs12Addr(vi, p) }) : this.emit({ kind: 'l1.vmread', vcpu: vi, field: p.pick(L1_READ_FIELDS) })));
      add(2, () => this.cpuidFault(vi, p));
      add(2, () => this.emit({ kind: 'l1.cpuid', vcpu: vi, leaf: p.pick(CPUID_LEAVES), subleaf: 0, cpl: p.pick([0, 3]) }));
    } else {
      const evmcsOn = this.o.config.evmcs && n.vpAssistEvmcs !== INVALID_GPA;
      const current = n.currentVmptr !== INVALID_GPA;
      // VMPTRLD while an eVMCS is named: see evmcsPtr
      if (!evmcsOn) add(current ? 4 : 12, () => this.vmptrld(vi, p));
      if (this.o.config.evmcs) add(evmcsOn ? 2 : 8, () => this.evmcsPtr(vi, p));
      add(current || evmcsOn ? 14 : 1, () => this.fieldWrite(vi, p, value));
      add(current || evmcsOn ? 9 : 2, () => this.enter(vi, p));
      if (current || evmcsOn) add(5, () => this.setupForL2(vi, p, value));
      if (evmcsOn) {
        add(2, () => this.evmcsControl(vi, p));
        add(2, () => this.evmcsClean(vi, p));
      }
      add(3, () => this.bitmapEdit(vi, p));
      add(1, () => this.bitmapFill(vi, p));
      add(2, () => this.shadowSetup(vi, p, value));
      add(2, () => this.emit({ kind: 'l1.vmread', vcpu: vi, field: p.pick(L1_READ_FIELDS) }));
      add(1, () => this.emit({ kind: 'l1.vmclear', vcpu: vi, gpa: this.vmcs12Addr(vi, p) }));
      add(1, () => this.emit({ kind: 'l1.vmptrst', vcpu: vi }));
      add(1, () => this.emit({ kind: 'l1.vmxoff', vcpu: vi }));
      add(2, () => this.cpuidFault(vi, p));
      add(1, () => this.postedIntr(vi, p));
      if (current || evmcsOn) add(2, () => this.entryControls(vi, p, value));
      add(1, () => this.emit({ kind: 'l1.rdmsr', vcpu: vi, msr: p.pick([M.MSR_IA32_VMX_MISC, M.MSR_MISC_FEATURES_ENABLES, M.MSR_PLATFORM_INFO]) }));
    }
    actions[new Digits(ac).weighted(actions.map((a) => a[0]))][1]();
  }

  // ---- VMX instructions

  private vmxon(v: number, p: Digits): void {
    const gpa = vmxonRegion(v);
    if (readGuest(this.w, gpa, 4) !== BigInt(VMCS12_REVISION) && p.take(8) !== 0) this.store(v, gpa, 4, BigInt(VMCS12_REVISION), p);
    this.emit({ kind: 'l1.vmxon', vcpu: v, gpa });
  }

  private vmptrld(v: number, p: Digits): void {
    const gpa = this.vmcs12Addr(v, p);
    if (readGuest(this.w, gpa, 4) !== BigInt(VMCS12_REVISION) && p.take(8) !== 0) this.store(v, gpa, 4, BigInt(VMCS12_REVISION), p);
    this.emit({ kind: 'l1.vmptrld', vcpu: v, gpa });
  }

  /** L1 names an eVMCS in its VP assist page (writing its revision first), another one, or none. */
  private evmcsPtr(v: number, p: Digits): void {
    if (p.take(6) === 0) return this.emit({ kind: 'l1.evmcs-ptr', vcpu: v, gpa: U64_MAX });
    // now and then not page aligned (nested_vmx_handle_enlightened_vmptrld fails it)
    const gpa = this.evmcsAddr(v, p) + (p.take(12) === 0 ? 4n : 0n);
    if (readGuest(this.w, gpa + BigInt(EVMCS.REVISION_ID_OFFSET), 4) !== BigInt(KVM_EVMCS_VERSION) && p.take(8) !== 0) {
      this.store(v, gpa + BigInt(EVMCS.REVISION_ID_OFFSET), 4, BigInt(KVM_EVMCS_VERSION), p);
      // a fresh eVMCS: the enlightened MSR bitmap on, as most Hyper-V builds do
      if (p.take(4) !== 0) this.emit({ kind: 'l1.evmcs-control', vcpu: v, gpa, value: HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP });
    }
    // L1 leaves its vmcs12 with VMCLEAR before it names an eVMCS: the eVMCS's first entry drops the
    // current VMCS pointer without syncing the shadow VMCS into vmcs12 or writing vmcs12 back
    // (nested_vmx_handle_enlightened_vmptrld in arch/x86/kvm/vmx/nested.c sets current_vmptr to
    // INVALID_GPA), so L1's VMWRITEs through the shadow VMCS would be lost; no Hyper-V L1 mixes the
    // two forms within one VMCS's use.
    const cur = this.nested(v).currentVmptr;
    if (cur !== INVALID_GPA) this.emit({ kind: 'l1.vmclear', vcpu: v, gpa: cur });
    this.evmcsSeen.add(gpa);
    this.emit({ kind: 'l1.evmcs-ptr', vcpu: v, gpa });
  }

  /** A field value for a VMWRITE or an eVMCS store. */
  private fieldAndValue(v: number, p: Digits, value: bigint): [number, bigint] {
    switch (p.weighted([5, 3, 2, 2, 1, 6, 2])) {
      case 0:
        return [VMCS.CPU_BASED_VM_EXEC_CONTROL, p.pick(CPU_BASED_VALUES)];
      case 1:
        return [VMCS.SECONDARY_VM_EXEC_CONTROL, p.pick(SECONDARY_VALUES)];
      case 2:
        return [VMCS.MSR_BITMAP, this.addressValue(v, VMCS.MSR_BITMAP, p)];
      case 3: {
        const f = p.pick([VMCS.VMCS_LINK_POINTER, VMCS.VMREAD_BITMAP, VMCS.VMWRITE_BITMAP, VMCS.VIRTUAL_APIC_PAGE_ADDR, VMCS.APIC_ACCESS_ADDR, VMCS.POSTED_INTR_DESC_ADDR]);
        return [f, this.addressValue(v, f, p)];
      }
      case 4:
        return p.take(2) ? [VMCS.PIN_BASED_VM_EXEC_CONTROL, p.pick(PIN_VALUES)] : [p.pick([VMCS.GUEST_CS_AR_BYTES, VMCS.GUEST_SS_AR_BYTES]), p.pick(AR_VALUES)];
      case 5: {
        // any read-write field of any clean-field group, each group as often as any other
        const f = p.pick(p.pick(GROUPS));
        const raw = (p.take(3) ? p.pick(INTERESTING_U64) : value) & WIDTH_MASK[String(f.width)];
        // mostly an event injection KVM accepts, now and then one it refuses
        return [f.encoding, f.encoding === VMCS.VM_ENTRY_INTR_INFO_FIELD && p.take(8) ? acceptedFieldValue(f.encoding, raw) : raw];
      }
      default:
        // a read-only field (VMWRITE fails unless VMWRITE-any-field), one vmcs12 does not have, or the posted-interrupt vector
        switch (p.take(3)) {
          case 0:
            return [p.pick([VMCS.VM_EXIT_REASON, VMCS.EXIT_QUALIFICATION, VMCS.GUEST_PHYSICAL_ADDRESS]), value];
          case 1:
            return [p.pick(UNKNOWN_FIELDS), p.pick(INTERESTING_U64)];
          default:
            return [VMCS.POSTED_INTR_NV, 0xf2n];
        }
    }
  }

  /**
   * L1 sets up what the next entry uses, in one go: the controls, the MSR
   * bitmap and, with VMCS shadowing, the link pointer and VMREAD/VMWRITE
   * bitmaps, or the APIC pages with APIC virtualization.
   */
  private setupForL2(v: number, p: Digits, value: bigint): void {
    const secondary = p.pick(SECONDARY_VALUES);
    // secondary controls mostly with ACTIVATE_SECONDARY_CONTROLS, so they are in effect
    const cpu = p.pick(CPU_BASED_VALUES) | (secondary && p.take(4) ? BigInt(A) : 0n);
    const writes: [number, bigint][] = [
      [VMCS.CPU_BASED_VM_EXEC_CONTROL, cpu],
      [VMCS.SECONDARY_VM_EXEC_CONTROL, secondary],
    ];
    if (cpu & BigInt(U)) writes.push([VMCS.MSR_BITMAP, this.addressValue(v, VMCS.MSR_BITMAP, p)]);
    if (secondary & BigInt(S.SHADOW_VMCS)) {
      writes.push([VMCS.VMCS_LINK_POINTER, this.addressValue(v, VMCS.VMCS_LINK_POINTER, p)], [VMCS.VMREAD_BITMAP, vmreadBitmap(v)], [VMCS.VMWRITE_BITMAP, vmwriteBitmap(v)]);
    }
    if (cpu & BigInt(T)) writes.push([VMCS.VIRTUAL_APIC_PAGE_ADDR, this.addressValue(v, VMCS.VIRTUAL_APIC_PAGE_ADDR, p)]);
    if (secondary & BigInt(S.VIRTUALIZE_APIC_ACCESSES)) writes.push([VMCS.APIC_ACCESS_ADDR, this.addressValue(v, VMCS.APIC_ACCESS_ADDR, p)]);
    // with their prerequisites (nested_vmx_check_apicv_controls): virtual-interrupt delivery with
    // external-interrupt exiting, posted interrupts also with acknowledge-interrupt-on-exit; entries
    // that break these rules on purpose come from single field writes (fieldAndValue)
    if (secondary & BigInt(S.VIRTUAL_INTR_DELIVERY)) {
      if (p.take(2)) {
        const exit = this.currentField(v, VMCS.VM_EXIT_CONTROLS) | EXIT_RESERVED1 | BigInt(VM_EXIT.ACK_INTR_ON_EXIT);
        writes.push([VMCS.PIN_BASED_VM_EXEC_CONTROL, PIN_VALUES[1]], [VMCS.VM_EXIT_CONTROLS, exit], [VMCS.POSTED_INTR_NV, 0xf2n], [VMCS.POSTED_INTR_DESC_ADDR, this.addressValue(v, VMCS.POSTED_INTR_DESC_ADDR, p)]);
      } else {
        writes.push([VMCS.PIN_BASED_VM_EXEC_CONTROL, PIN_VALUES[0]]);
      }
    }
    for (const [field, val] of writes) this.writeField(v, field, val, p);
    if (value & 1n) this.enter(v, p);
  }

  /** A field of the VMCS L1 uses now, as L1 would read it back: its eVMCS member, or vmcs12's. */
  private currentField(v: number, field: number): bigint {
    const n = this.nested(v);
    if (this.o.config.evmcs && n.vpAssistEvmcs !== INVALID_GPA) {
      const f = vmcsFieldByEncoding(field);
      if (!f || f.evmcsOffset === null || f.evmcsSize === null) return 0n;
      return readGuest(this.w, n.vpAssistEvmcs + BigInt(f.evmcsOffset), f.evmcsSize) ?? 0n;
    }
    return vmcs12Get(n, field);
  }

  /**
   * L1 sets one of the controls only VM-entry checks (VPID_VALUES above),
   * keeping the other bits of the control word it changes, so the drawn
   * value alone decides whether the entry passes; then enters now and then.
   */
  private entryControls(v: number, p: Digits, value: bigint): void {
    switch (p.take(3)) {
      case 0: {
        const cpu = this.currentField(v, VMCS.CPU_BASED_VM_EXEC_CONTROL);
        if (!(cpu & BigInt(A))) this.writeField(v, VMCS.CPU_BASED_VM_EXEC_CONTROL, cpu | BigInt(A), p);
        const secondary = this.currentField(v, VMCS.SECONDARY_VM_EXEC_CONTROL);
        this.writeField(v, VMCS.SECONDARY_VM_EXEC_CONTROL, p.take(4) ? secondary | BigInt(S.ENABLE_VPID) : secondary & ~BigInt(S.ENABLE_VPID), p);
        // a fresh vmcs12's VPID is 0 already
        if (p.take(2)) this.writeField(v, VMCS.VIRTUAL_PROCESSOR_ID, p.pick(VPID_VALUES), p);
        break;
      }
      case 1:
        this.writeField(v, VMCS.CR3_TARGET_COUNT, p.pick(CR3_TARGET_COUNTS), p);
        break;
      default: {
        const exit = this.currentField(v, VMCS.VM_EXIT_CONTROLS) | EXIT_RESERVED1;
        this.writeField(v, VMCS.VM_EXIT_CONTROLS, p.take(4) ? exit | EXIT_SAVE_TIMER : exit & ~EXIT_SAVE_TIMER, p);
        if (p.take(2)) {
          const pin = this.currentField(v, VMCS.PIN_BASED_VM_EXEC_CONTROL);
          this.writeField(v, VMCS.PIN_BASED_VM_EXEC_CONTROL, p.take(3) ? pin & ~PIN_TIMER : pin | PIN_TIMER, p);
        }
      }
    }
    if (value & 1n) this.enter(v, p);
  }

  /** VMWRITE to the current vmcs12, or a store into an eVMCS (mostly the one in use). */
  private fieldWrite(v: number, p: Digits, value: bigint): void {
    const [field, val] = this.fieldAndValue(v, p, value);
    this.writeField(v, field, val, p);
  }

  private writeField(v: number, field: number, val: bigint, p: Digits): void {
    if (field === VMCS.MSR_BITMAP) this.bitmapMoved(this.currentField(v, VMCS.MSR_BITMAP), val);
    const n = this.nested(v);
    const evmcs = this.o.config.evmcs && n.vpAssistEvmcs !== INVALID_GPA ? n.vpAssistEvmcs : INVALID_GPA;
    if (evmcs !== INVALID_GPA && p.take(5) !== 0) {
      const gpa = p.take(6) ? evmcs : this.evmcsAddr(v, p);
      const f = vmcsFieldByEncoding(field);
      if (!f || f.evmcsOffset === null) return this.emit({ kind: 'l1.vmwrite', vcpu: v, field, value: val });
      if (!this.beforeStore(v, gpa + BigInt(f.evmcsOffset), f.evmcsSize ?? 1, true, p)) return this.emit({ kind: 'l1.read', vcpu: v, gpa, size: 4 });
      this.markDirty(gpa, groupBit(field));
      return this.emit({ kind: 'l1.evmcs-write', vcpu: v, gpa, field, value: val });
    }
    this.emit({ kind: 'l1.vmwrite', vcpu: v, field, value: val });
  }

  /**
   * L1 points MSR_BITMAP at another page: the MSRs whose intercepts differ
   * between the two pages are the ones L2 tells apart (a merge kept for the
   * old address, as broken-tracked-ignores-address does), so L2 goes for
   * them next.
   */
  private bitmapMoved(from: bigint, to: bigint): void {
    if ((from & ~0xfffn) === (to & ~0xfffn)) return;
    const bit = (page: bigint, msr: number, access: MsrAccess) => {
      const pos = msrBitmapPosition(msr, access)!;
      return ((readGuest(this.w, (page & ~0xfffn) + BigInt(pos.byte), 1) ?? 0n) >> BigInt(pos.bit)) & 1n;
    };
    for (const msr of BITMAP_MSRS) if (bit(from, msr, 'read') !== bit(to, msr, 'read') || bit(from, msr, 'write') !== bit(to, msr, 'write')) this.touch(msr);
  }

  private evmcsControl(v: number, p: Digits): void {
    const gpa = this.nested(v).vpAssistEvmcs;
    const values = [HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP, 0, HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP | HV_ENLIGHTENMENTS_CONTROL.NESTED_FLUSH_HYPERCALL];
    this.emit({ kind: 'l1.evmcs-control', vcpu: v, gpa, value: p.pick(values) });
  }

  /** L1 rewrites hv_clean_fields: clears what it changed, or everything, or sets what it did not change. */
  private evmcsClean(v: number, p: Digits): void {
    const gpa = this.nested(v).vpAssistEvmcs;
    const dirty = this.dirty.get(gpa) ?? 0;
    const value = p.pick([CLEAN_ALL & ~dirty, 0, (CLEAN_ALL & ~dirty) & ~(1 << p.take(16))]);
    this.emit({ kind: 'l1.evmcs-clean', vcpu: v, gpa, value });
  }

  private enter(v: number, p: Digits): void {
    this.allowedControls(v, p);
    this.prerequisites(v, p);
    const n = this.nested(v);
    const launch = p.take(4) === 0 || (n.vpAssistEvmcs === INVALID_GPA && n.currentVmptr !== INVALID_GPA && !this.launched(v));
    if (this.o.config.evmcs && n.vpAssistEvmcs !== INVALID_GPA) {
      const gpa = n.vpAssistEvmcs;
      const dirty = this.dirty.get(gpa) ?? 0;
      const clean = Number(readGuest(this.w, gpa + BigInt(EVMCS.HV_CLEAN_FIELDS_OFFSET), 4) ?? 0n);
      if (!launch && dirty & clean) {
        if (this.o.allowViolations && p.take(3) === 0) this.violations.push(this.events.length);
        else this.emit({ kind: 'l1.evmcs-clean', vcpu: v, gpa, value: clean & ~dirty & CLEAN_ALL });
      }
      // L0 consumes everything at this entry attempt
      this.dirty.delete(gpa);
    }
    this.emit({ kind: launch ? 'l1.vmlaunch' : 'l1.vmresume', vcpu: v });
  }

  /**
   * Before every entry L1 keeps its controls within what its VMX capability
   * MSRs allow, as a hypervisor that reads them does: the must-be-1 bits
   * (allowed-0) set, no bit outside allowed-1 (the APICv controls without
   * enable_apicv, EPT or VPID without them; with eVMCS enabled, nothing
   * eVMCS v1 cannot express: L1 reads the filtered MSRs), so vmx_control_verify
   * (nested_check_vm_execution_controls, nested_check_vm_exit_controls,
   * nested_check_vm_entry_controls) refuses no entry. Only control words that
   * need it are rewritten; a fresh VMCS gets its four controls here.
   */
  private allowedControls(v: number, p: Digits): void {
    const n = this.nested(v);
    const evmcs = this.o.config.evmcs && n.vpAssistEvmcs !== INVALID_GPA ? n.vpAssistEvmcs : INVALID_GPA;
    if (n.currentVmptr === INVALID_GPA && evmcs === INVALID_GPA) return;
    const vcpu = this.w.vcpus[v];
    const keepAllowed = (field: number, msr: number) => {
      const cap = vmxCapMsrGuest(this.w, vcpu, msr);
      const cur = this.currentField(v, field);
      const want = (cur | (cap & 0xffffffffn)) & ((cap >> 32n) | ~0xffffffffn);
      if (want === cur) return;
      // into the eVMCS in use itself (writeField now and then stores elsewhere, on purpose)
      if (evmcs !== INVALID_GPA) {
        const f = vmcsFieldByEncoding(field)!;
        if (f.evmcsOffset === null || !this.beforeStore(v, evmcs + BigInt(f.evmcsOffset), f.evmcsSize ?? 4, true, p)) return;
        this.markDirty(evmcs, groupBit(field));
        return this.emit({ kind: 'l1.evmcs-write', vcpu: v, gpa: evmcs, field, value: want });
      }
      this.emit({ kind: 'l1.vmwrite', vcpu: v, field, value: want });
    };
    // Half the time a VMCS or an eVMCS gets its must-be-1 bits in one go, as kvm-unit-tests'
    // init_vmcs_ctrl does, when two or more control words lack them.
    if (p.take(2) === 0) {
      let lacking = 0;
      for (const [field, msr] of MUST_BE_1_CONTROLS) {
        const must = vmxCapMsrGuest(this.w, vcpu, msr) & 0xffffffffn;
        if ((this.currentField(v, field) & must) !== must) lacking++;
      }
      if (lacking >= 2 && evmcs === INVALID_GPA) this.emit({ kind: 'l1.vmcs-ctls-must-be-1', vcpu: v });
      else if (lacking >= 2) {
        const members = MUST_BE_1_CONTROLS.map(([field]) => vmcsFieldByEncoding(field)!);
        // all four stores or none (beforeStore refuses none of a page no vCPU is busy with)
        if (!members.some((f) => this.busy(v, evmcs + BigInt(f.evmcsOffset!), f.evmcsSize!))) {
          for (const f of members) this.beforeStore(v, evmcs + BigInt(f.evmcsOffset!), f.evmcsSize!, true, p);
          for (const [field] of MUST_BE_1_CONTROLS) this.markDirty(evmcs, groupBit(field));
          this.emit({ kind: 'l1.evmcs-ctls-must-be-1', vcpu: v, gpa: evmcs });
        }
      }
    }
    keepAllowed(VMCS.PIN_BASED_VM_EXEC_CONTROL, VMX_CAP_MSR.TRUE_PINBASED_CTLS);
    keepAllowed(VMCS.CPU_BASED_VM_EXEC_CONTROL, VMX_CAP_MSR.TRUE_PROCBASED_CTLS);
    // with eVMCS enabled KVM looks at the secondary controls even when they are not activated (nested_evmcs_check_controls)
    if (this.currentField(v, VMCS.CPU_BASED_VM_EXEC_CONTROL) & BigInt(A) || this.o.config.evmcs) keepAllowed(VMCS.SECONDARY_VM_EXEC_CONTROL, VMX_CAP_MSR.PROCBASED_CTLS2);
    keepAllowed(VMCS.VM_EXIT_CONTROLS, VMX_CAP_MSR.TRUE_EXIT_CTLS);
    keepAllowed(VMCS.VM_ENTRY_CONTROLS, VMX_CAP_MSR.TRUE_ENTRY_CTLS);
  }

  /**
   * Before most entries L1 completes what the controls it chose need, as a
   * hypervisor would: external-interrupt exiting under virtual-interrupt
   * delivery, acknowledge-interrupt-on-exit and virtual-interrupt delivery
   * under posted interrupts, the TPR shadow under the APIC
   * virtualization controls (nested_vmx_check_apicv_controls), a valid EPTP
   * under EPT (nested_vmx_check_eptp: write-back, 4-level walk). The other
   * quarter enters as drawn, so the entry checks still see these controls
   * break their rules.
   */
  private prerequisites(v: number, p: Digits): void {
    if (p.take(4) === 0) return;
    const cpu = this.currentField(v, VMCS.CPU_BASED_VM_EXEC_CONTROL);
    const secondary = cpu & BigInt(A) ? this.currentField(v, VMCS.SECONDARY_VM_EXEC_CONTROL) : 0n;
    // virtualize-x2APIC mode, APIC-register virtualization and virtual-interrupt delivery need the TPR shadow
    if (secondary & BigInt(S.VIRTUALIZE_X2APIC_MODE | S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY) && !(cpu & BigInt(T))) {
      this.writeField(v, VMCS.CPU_BASED_VM_EXEC_CONTROL, cpu | BigInt(T), p);
      this.writeField(v, VMCS.VIRTUAL_APIC_PAGE_ADDR, this.addressValue(v, VMCS.VIRTUAL_APIC_PAGE_ADDR, p), p);
    }
    const pin = this.currentField(v, VMCS.PIN_BASED_VM_EXEC_CONTROL);
    const vid = (secondary & BigInt(S.VIRTUAL_INTR_DELIVERY)) !== 0n;
    let want = pin;
    if (vid) want |= BigInt(PIN_BASED.EXT_INTR_MASK);
    if (!vid) want &= ~BigInt(PIN_BASED.POSTED_INTR);
    if (want !== pin) this.writeField(v, VMCS.PIN_BASED_VM_EXEC_CONTROL, want, p);
    if (want & BigInt(PIN_BASED.POSTED_INTR)) {
      const exit = this.currentField(v, VMCS.VM_EXIT_CONTROLS);
      if (!(exit & BigInt(VM_EXIT.ACK_INTR_ON_EXIT))) this.writeField(v, VMCS.VM_EXIT_CONTROLS, exit | EXIT_RESERVED1 | BigInt(VM_EXIT.ACK_INTR_ON_EXIT), p);
    }
    if (secondary & BigInt(S.ENABLE_EPT) && (this.currentField(v, VMCS.EPT_POINTER) & 0x7fn) !== EPTP_WB_4LEVEL) {
      this.writeField(v, VMCS.EPT_POINTER, EPTP_PAGE | EPTP_WB_4LEVEL, p);
    }
  }

  private launched(v: number): boolean {
    return this.nested(v).launched;
  }

  // ---- L1 memory: bitmaps, shadow VMCS

  /** One L1 store (l1.write), unless it would break a contract not to be broken now. */
  private store(v: number, gpa: bigint, size: 1 | 2 | 4 | 8, value: bigint, p: Digits): boolean {
    if (!this.beforeStore(v, gpa, size, false, p)) return false;
    this.emit({ kind: 'l1.write', vcpu: v, gpa, size, value });
    return true;
  }

  /** The MSR-bitmap page L1's VMCS in use names (its vmcs12, or the eVMCS it names), or null. */
  private ownBitmap(v: number): bigint | null {
    const n = this.nested(v);
    const bm = this.o.config.evmcs && n.vpAssistEvmcs !== INVALID_GPA ? readGuest(this.w, n.vpAssistEvmcs + MSR_BITMAP_EVMCS_OFFSET, 8) : n.currentVmptr !== INVALID_GPA ? vmcs12Get(n, VMCS.MSR_BITMAP) : null;
    return bm === null || bm === 0n ? null : bm & ~0xfffn;
  }

  private bitmapEdit(v: number, p: Digits): void {
    const own = this.ownBitmap(v);
    const gpa = own !== null && p.take(3) ? own : this.bitmapPage(p);
    const msr = p.pick(BITMAP_MSRS);
    const access: MsrAccess = p.take(2) ? 'write' : 'read';
    const pos = msrBitmapPosition(msr, access);
    const size = 1;
    if (pos && !this.beforeStore(v, gpa + BigInt(pos.byte), size, false, p)) return this.emit({ kind: 'l1.read', vcpu: v, gpa, size: 8 });
    this.emit({ kind: 'l1.msr-bitmap', vcpu: v, gpa, msr, access, intercept: p.take(3) !== 0 });
    this.touch(msr);
  }

  /** L1 makes a bitmap page intercept a whole range (8-byte stores of all ones or zeros). */
  private bitmapFill(v: number, p: Digits): void {
    const gpa = this.bitmapPage(p);
    const value = p.take(3) ? U64_MAX : 0n;
    for (const msr of [M.MSR_FS_BASE, M.MSR_X2APIC_TPR, M.MSR_IA32_SPEC_CTRL]) {
      const pos = msrBitmapPosition(msr, p.take(2) ? 'write' : 'read')!;
      if (!this.store(v, gpa + BigInt(pos.byte & ~7), 8, value, p)) return;
      this.touch(msr);
    }
  }

  /** L1 writes the revision of a shadow VMCS, or a field in it, or a VMREAD/VMWRITE bitmap quadword. */
  private shadowSetup(v: number, p: Digits, value: bigint): void {
    switch (p.take(3)) {
      case 0: {
        const gpa = this.shadowAddr(v, p);
        const rev = BigInt((VMCS12_REVISION | (p.take(5) ? VMCS_HDR_SHADOW_VMCS : 0)) >>> 0);
        this.store(v, gpa, 4, rev, p);
        return;
      }
      case 1: {
        const gpa = (p.take(2) ? vmreadBitmap(v) : vmwriteBitmap(v)) + BigInt(8 * p.take(512));
        this.store(v, gpa, 8, p.take(2) ? U64_MAX : value, p);
        return;
      }
      default: {
        // the quadword of a field L2 uses, in both bitmaps
        const f = p.pick(L2_VMCS_FIELDS) & 0x7fff;
        const page = p.take(2) ? vmreadBitmap(v) : vmwriteBitmap(v);
        this.store(v, page + BigInt((f >> 6) * 8), 8, p.take(2) ? 0n : U64_MAX, p);
      }
    }
  }

  private postedIntr(v: number, p: Digits): void {
    const targets = this.w.vcpus.filter((o) => o.nested.guestMode);
    if (!targets.length) return this.emit({ kind: 'l1.cpuid', vcpu: v, leaf: 0x40000001, subleaf: 0, cpl: 0 });
    const t = p.pick(targets).id;
    if (!this.beforeStore(v, piDesc(t), 8, false, p)) return;
    this.emit({ kind: 'l1.posted-intr', vcpu: v, target: t, gpa: piDesc(t), vector: 0x20 + p.take(0xe0) });
  }

  // ---- CPUID faulting

  private cpuidFault(v: number, p: Digits): void {
    switch (p.take(6)) {
      case 0:
        return this.emit({ kind: 'l1.wrmsr', vcpu: v, msr: M.MSR_MISC_FEATURES_ENABLES, value: BigInt(p.take(2)) });
      case 1:
        return this.emit({ kind: 'l1.cpuid', vcpu: v, leaf: p.pick(CPUID_LEAVES), subleaf: 0, cpl: 3 });
      case 2:
        return this.emit({ kind: 'host.smi', vcpu: v });
      default:
        return this.emit({ kind: 'l1.cpuid', vcpu: v, leaf: p.pick(CPUID_LEAVES), subleaf: 0, cpl: p.pick([0, 3]) });
    }
  }

  // ---- L2

  private touch(msr: number): void {
    this.hot = [msr, ...this.hot.filter((m) => m !== msr)].slice(0, 4);
  }

  private l2Msr(v: number, p: Digits, value: bigint): void {
    const msr = this.hot.length && p.take(2) ? p.pick(this.hot) : p.pick(L2_MSRS);
    if (p.take(2)) this.emit({ kind: 'l2.rdmsr', vcpu: v, msr });
    else this.emit({ kind: 'l2.wrmsr', vcpu: v, msr, value: msr === M.MSR_MISC_FEATURES_ENABLES ? BigInt(p.take(2)) : p.take(3) ? p.pick(INTERESTING_U64) : value });
  }

  private l2Vmcs(v: number, p: Digits, value: bigint): void {
    const field = p.take(4) ? p.pick(L2_VMCS_FIELDS) : p.pick(UNKNOWN_FIELDS);
    if (p.take(2)) this.emit({ kind: 'l2.vmread', vcpu: v, field });
    else this.emit({ kind: 'l2.vmwrite', vcpu: v, field, value: p.take(2) ? p.pick(INTERESTING_U64) : value });
  }

  private l2Apic(v: number, p: Digits, value: bigint): void {
    const offset = p.pick(APIC_OFFSETS);
    if (p.take(2)) this.emit({ kind: 'l2.apic-read', vcpu: v, offset });
    else this.emit({ kind: 'l2.apic-write', vcpu: v, offset, value: Number(value & 0xffffffffn) });
  }

  // ---- the host

  /** A page the host moves or drops: one L1 set up, mostly. */
  private interestingGfn(v: number, p: Digits): bigint {
    const n = this.nested(v);
    const evmcsBitmap = n.vpAssistEvmcs === INVALID_GPA ? null : readGuest(this.w, n.vpAssistEvmcs + MSR_BITMAP_EVMCS_OFFSET, 8);
    const candidates: bigint[] = [n.hvEvmcsVmptr, n.vpAssistEvmcs, evmcsBitmap ?? 0n, evmcsBitmap ?? 0n, n.currentVmptr, vmcs12Get(n, VMCS.MSR_BITMAP), vmcs12Get(n, VMCS.VMCS_LINK_POINTER), vapicPage(v), piDesc(v), vmreadBitmap(v)].filter(
      (g) => g !== INVALID_GPA && g !== 0n && this.backed(g),
    );
    const own = this.ownBitmap(v);
    const gpa = own !== null && this.backed(own) && p.take(3) === 0 ? own : candidates.length && p.take(4) ? p.pick(candidates) : p.take(2) ? this.bitmapPage(p) : this.evmcsAddr(v, p);
    return gpaToGfn(gpa) === 0 ? 1n : BigInt(gpaToGfn(gpa));
  }

  private host(v: number, p: Digits, value: bigint): void {
    // save/restore (14, 15) once L1 is in VMX operation: before it, a restore has nothing nested to carry
    const vmxon = this.nested(v).vmxon;
    let kind = p.weighted([3, 1, 1, 1, 1, 3, 2, this.openInvalidations ? 4 : 3, 1, 2, 2, 1, 1, 1, vmxon ? 2 : 0, vmxon ? 3 : 0]);
    // slot 1 anywhere it can be (its largest size from its last base)
    const slot1First = WORLD_SLOT1_BASES[0];
    const slot1Last = WORLD_SLOT1_BASES[WORLD_SLOT1_BASES.length - 1] + SLOT1_SIZES[SLOT1_SIZES.length - 1] - 1;
    // what backs an MSR bitmap L2 runs with stays (a migration instead)
    if ((kind <= 2 && this.busyBitmap(slot1First, slot1Last)) || (kind === 4 && this.busyBitmap(SLOT2_BASE, SLOT2_BASE + 3))) kind = 5;
    if (kind <= 2) this.hostChanges(slot1First, slot1Last);
    if (kind === 4) this.hostChanges(SLOT2_BASE, SLOT2_BASE + 3);
    switch (kind) {
      case 0: {
        // slot 1 moves to another base, or back home
        if (!this.slot1.present) return this.emit({ kind: 'host.memslot-readd', slot: WORLD_SLOT1 });
        const bases = WORLD_SLOT1_BASES.filter((b) => b !== this.slot1.base);
        const base = p.pick(bases);
        this.slot1.base = base;
        return this.emit({ kind: 'host.memslot-move', slot: WORLD_SLOT1, gfn: BigInt(base) });
      }
      case 1:
        if (!this.slot1.present) return this.emit({ kind: 'host.memslot-readd', slot: WORLD_SLOT1 });
        this.slot1.present = false;
        return this.emit({ kind: 'host.memslot-delete', slot: WORLD_SLOT1 });
      case 2: {
        if (!this.slot1.present) return this.emit({ kind: 'host.memslot-readd', slot: WORLD_SLOT1 });
        const npages = p.pick(SLOT1_SIZES);
        this.slot1.npages = npages;
        return this.emit({ kind: 'host.memslot-resize', slot: WORLD_SLOT1, npages });
      }
      case 3:
        return this.emit({ kind: 'host.memslot-flags', slot: p.take(3) ? WORLD_SLOT1 : 0, flags: p.pick([1, 0, 2]) });
      case 4:
        if (this.slot2) {
          this.slot2 = false;
          return this.emit({ kind: 'host.memslot-delete', slot: SLOT2 });
        }
        this.slot2 = true;
        return this.emit({ kind: 'host.memslot-create', slot: SLOT2, gfn: BigInt(SLOT2_BASE), npages: 4, flags: 0 });
      case 5:
        return this.emit({ kind: 'host.page-migrate', gfn: this.interestingGfn(v, p) });
      case 6: {
        const gfn = this.interestingGfn(v, p);
        if (this.busyBitmap(Number(gfn), Number(gfn))) return this.emit({ kind: 'host.page-migrate', gfn });
        this.hostChanges(Number(gfn), Number(gfn));
        return this.emit({ kind: 'host.page-zap', gfn });
      }
      case 7:
        if (this.openInvalidations > 0 && p.take(4)) {
          this.openInvalidations--;
          return this.emit({ kind: 'host.mmu-invalidate-end' });
        }
        this.openInvalidations++;
        return this.emit({ kind: 'host.mmu-invalidate-start', gfn: this.interestingGfn(v, p), npages: 1 + p.take(3) });
      case 8:
        return this.emit({ kind: 'host.vcpu-put', vcpu: v });
      case 9:
        return this.emit({ kind: 'host.vcpu-load', vcpu: v, cpu: p.take(this.header.config.pcpus) });
      case 10:
        switch (p.take(3)) {
          case 0:
            return this.emit({ kind: 'host.vcpu-thread-cpuid-fault', vcpu: v, enable: p.take(2) === 0 });
          case 1:
            return this.emit({ kind: 'host.task-cpuid-fault', task: p.take(2), enable: p.take(2) === 0 });
          default:
            return this.emit({ kind: 'host.task-cpuid', task: p.take(2), cpu: p.take(this.header.config.pcpus), cpl: p.pick([3, 0]) });
        }
      case 11:
        return this.emit({ kind: 'host.platform-info', vcpu: v, value: p.take(4) ? BigInt(MSR_PLATFORM_INFO_CPUID_FAULT) : 0n });
      case 12:
      {
        const msr = p.pick(BITMAP_MSRS);
        this.touch(msr);
        return this.emit({ kind: 'host.msr-intercept', vcpu: v, msr, access: p.take(2) ? 'write' : 'read', intercept: p.take(3) !== 0 });
      }
      case 13:
        return this.emit({ kind: 'host.set-msr', vcpu: v, msr: M.MSR_MISC_FEATURES_ENABLES, value: value & 1n });
      case 14:
        return this.emit({ kind: 'host.migrate', vcpu: v });
      default:
        return this.saveRestore(v, p, value);
    }
  }

  private syncOutField(p: Digits, value: bigint): [number, bigint] {
    const f = p.pick(SYNC_OUT_FIELDS);
    return [f.encoding, (p.take(3) ? p.pick(INTERESTING_U64) : value) & WIDTH_MASK[String(f.width)]];
  }

  /**
   * The VMM saves and restores nested state by hand, as the selftests do
   * (vmx_set_nested_state_test.c, state_test.c): KVM_GET_NESTED_STATE into
   * its buffer, a few fields of the saved vmcs12 changed, KVM_SET_NESTED_STATE
   * onto the same vCPU with the header as saved or changed on purpose
   * (MTF_PENDING, SMM flags, GUEST_MODE, RUN_PENDING, a short size: the
   * checks of kvm_arch_vcpu_ioctl in arch/x86/kvm/x86.c and
   * vmx_set_nested_state in nested.c); or a blob saved earlier restored
   * (a checkpoint rolled back); or a state the VMM wrote itself (a vmcs12
   * revision and a header). host.migrate is the other way, whole.
   */
  private saveRestore(v: number, p: Digits, value: bigint): void {
    const saved = this.w.vcpus[v].userNestedState;
    // A vCPU whose VP assist page names an eVMCS gets back only what KVM_GET_NESTED_STATE saved just now:
    // the saved vmcs12 is that eVMCS copied whole (clean fields ignored) and the restore writes back into
    // it only the fields copy_vmcs12_to_enlightened writes. A vmcs12 field from an older or a hand-made
    // buffer would differ from L1's eVMCS while L1's clean bits say it did not change (the VMM changed it
    // under L1), and a vmcs12_pa would make current a VMCS L1 never loaded (hyperv-evmcs-no-vmptrld).
    const onEvmcs = this.o.config.evmcs && this.nested(v).vpAssistEvmcs !== INVALID_GPA;
    const how = onEvmcs ? 0 : p.weighted([6, saved ? 1 : 0, 1]);
    if (how === 2) {
      this.emit({ kind: 'host.nested-state-revision', vcpu: v, shadow: false, value: VMCS12_REVISION });
      const flags = p.pick([0, KVM_STATE_NESTED_GUEST_MODE, KVM_STATE_NESTED_GUEST_MODE | KVM_STATE_NESTED_MTF_PENDING]);
      const smm = p.take(3) ? 0 : p.pick(SMM_FLAGS);
      return this.emit({ kind: 'host.set-nested-state', vcpu: v, format: 0, flags, vmxon: vmxonRegion(v), vmcs12: this.vmcs12Addr(v, p), smm, size: KVM_NESTED_STATE_HEADER_SIZE + KVM_STATE_NESTED_VMX_VMCS_SIZE });
    }
    if (how === 0) this.emit({ kind: 'host.get-nested-state', vcpu: v });
    const h = this.w.vcpus[v].userNestedState?.header;
    if (!h) return;
    for (let edits = p.weighted([3, 3, 1]); edits > 0; edits--) {
      const [field, val] = onEvmcs ? this.syncOutField(p, value) : this.fieldAndValue(v, p, value);
      const shadow = h.size > KVM_NESTED_STATE_HEADER_SIZE + KVM_STATE_NESTED_VMX_VMCS_SIZE && p.take(3) === 0;
      this.emit({ kind: 'host.nested-state-field', vcpu: v, shadow, field, value: val });
    }
    let { flags, smm, size } = h;
    switch (p.weighted([6, 2, 2, 1, 1, 1])) {
      case 1:
        flags |= KVM_STATE_NESTED_MTF_PENDING;
        break;
      case 2:
        smm = p.pick(SMM_FLAGS);
        break;
      case 3:
        flags ^= KVM_STATE_NESTED_GUEST_MODE;
        break;
      case 4:
        flags |= KVM_STATE_NESTED_RUN_PENDING;
        break;
      case 5:
        size = KVM_NESTED_STATE_HEADER_SIZE;
        break;
    }
    this.emit({ kind: 'host.set-nested-state', vcpu: v, format: h.format, flags, vmxon: h.vmxon, vmcs12: h.vmcs12, smm, size });
  }
}

// ---------------------------------------------------------------- building and the arbitrary

export function worldHeader(o: WorldBuildOptions): TraceHeader {
  const memslots: MemslotConfig[] = [
    { slot: 0, gfn: 0n, npages: WORLD_SLOT0_PAGES, flags: 0 },
    { slot: WORLD_SLOT1, gfn: BigInt(WORLD_SLOT1_BASES[0]), npages: WORLD_SLOT1_PAGES, flags: 0 },
  ];
  return makeHeader({ ...o.config, vcpus: o.vcpus, pcpus: 2, memslots }, { generator: 'nvx check arbWorldTrace', violations: o.allowViolations ? 'allowed' : 'none' });
}

/** Turn choices into a trace (deterministic). */
export function buildWorldTrace(choices: readonly Choice[], o: WorldBuildOptions, reference: Profile = parseProfile('reference')): WorldTrace {
  const header = worldHeader(o);
  const b = new WorldBuilder(header, o, reference);
  for (const c of choices) {
    if (b.full) break;
    b.step(c);
  }
  while (b.events.length < 5) b.step([0, 1, 0, 0n]);
  return { header, events: b.events, violations: b.violations };
}

export function arbWorldBuildOptions(opts: WorldTraceOptions = {}): fc.Arbitrary<WorldBuildOptions> {
  const maxEvents = Math.max(5, Math.min(opts.maxEvents ?? 90, 200));
  const vcpus = opts.vcpus !== undefined ? fc.constant(opts.vcpus) : fc.constantFrom(1, 1, 2, 2, 3);
  const config = fc.record({
    evmcs: fc.constantFrom(true, true, true, false),
    shadowVmcs: fc.constantFrom(true, true, false),
    vmwriteAnyField: fc.boolean(),
    apicv: fc.constantFrom(true, true, false),
    pml: fc.boolean(),
    preemptionTimer: fc.boolean(),
    cpuidFaultHw: fc.constantFrom(true, true, false),
    l2CpuidFaultArchitectural: fc.boolean(),
    unmanagedMemory: fc.constantFrom(false, false, true),
  });
  return fc.record({ vcpus, config }).map(({ vcpus: n, config: c }) => ({ vcpus: n, maxEvents, allowViolations: !!opts.allowViolations, config: c }));
}

/** Whole-world traces with the violations the builder committed on purpose. */
export function arbWorldTraceWithViolations(opts: WorldTraceOptions = {}): fc.Arbitrary<WorldTrace> {
  const ref = parseProfile('reference');
  const maxEvents = Math.max(5, Math.min(opts.maxEvents ?? 90, 200));
  return fc.tuple(arbWorldBuildOptions(opts), arbChoices(maxEvents)).map(([o, c]) => buildWorldTrace(c, o, ref));
}

/** Whole-world traces: valid, contract-keeping unless `allowViolations`. */
export function arbWorldTrace(opts: WorldTraceOptions = {}): fc.Arbitrary<{ header: TraceHeader; events: TraceEvent[] }> {
  return arbWorldTraceWithViolations(opts).map((t) => ({ header: t.header, events: t.events }));
}
