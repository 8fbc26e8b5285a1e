/**
 * The world L0 runs: guest memory over host pages, and per vCPU the nested
 * VMX state KVM keeps in `struct nested_vmx` and `struct vcpu_vmx`.
 *
 * Everything here is plain data (objects with integer keys iterate in
 * ascending order, so hashing is stable), plus typed arrays for the hot
 * fixed layouts: vmcs12 (one 64-bit slot per field), MSR bitmaps and page
 * contents. Typed arrays are never written in place inside an immer draft:
 * see `ctx.ts` (`writable`).
 */
import { INVALID_GPA, MSR, MSR_BITMAP_SIZE, VMCS12_SLOT_COUNT } from '@nvx/arch';
import type { MemslotConfig, WorldConfig } from '@nvx/trace';
import { newGuestCpuidFault, newHost } from './cpuid-fault-init';

export interface Memslot {
  slot: number;
  /** base guest frame number */
  gfn: number;
  npages: number;
  flags: number;
  /** base host virtual page (the userspace_addr of the slot, in pages) */
  hva: number;
}

export interface Memory {
  /** kvm_memslots generation: bumped on every memslot change */
  generation: number;
  /** sorted by base gfn */
  slots: Memslot[];
  /** the host's page tables for the VMM's address space: host virtual page -> host pfn (absent: not faulted in yet) */
  hvaToPfn: Record<number, number>;
  /** host page contents by pfn (absent: a zero page) */
  pages: Record<number, Uint8Array>;
  nextHva: number;
  nextPfn: number;
  /** mmu_invalidate_seq: bumped by every mmu-notifier invalidation */
  mmuInvalidateSeq: number;
  /** deleted memslots by slot id, as they were (the VMM keeps its mapping: host.memslot-readd); absent: none */
  removed?: Record<number, Memslot>;
  /**
   * The mmu-notifier invalidations started and not yet ended, oldest first,
   * as host virtual page ranges [start, end): mmu_invalidate_in_progress is
   * their number. Absent when none is open.
   */
  mmuInvalidations?: { start: number; end: number }[];
}

/** What KVM keeps in `struct nested_vmx` (the subset the modelled areas touch). */
export interface NestedVmx {
  vmxon: boolean;
  vmxonPtr: bigint;
  /** current_vmptr: INVALID_GPA when no vmcs12 is current (also while an eVMCS is used) */
  currentVmptr: bigint;
  /** cached_vmcs12: one 64-bit slot per field (VMCS12_SLOT_COUNT) */
  vmcs12: BigUint64Array;
  /** vmcs12->launch_state */
  launched: boolean;
  /** vmcs12->hdr.shadow_vmcs of the current VMCS (bit 31 of its revision dword at VMPTRLD); absent: clear */
  hdrShadowVmcs?: boolean;
  /** hv_evmcs_vmptr: the eVMCS in use, EVMPTR_INVALID when none */
  hvEvmcsVmptr: bigint;
  /** the VP assist page's current_nested_vmcs with enlighten_vmentry set; INVALID_GPA when L1 does not use one */
  vpAssistEvmcs: bigint;
  /** is_guest_mode(): L2 runs */
  guestMode: boolean;
  dirtyVmcs12: boolean;
  needVmcs12ToShadowSync: boolean;
  forceMsrBitmapRecalc: boolean;
  /** vmcs02's MSR bitmap (vmx->nested.vmcs02.msr_bitmap): allocated all-ones, kept across entries */
  vmcs02MsrBitmap: Uint8Array;
  /** vmcs02 CPU_BASED_USE_MSR_BITMAPS, as decided by the last nested_vmx_prepare_msr_bitmap */
  vmcs02UseMsrBitmaps: boolean;
  /** cached_shadow_vmcs12: L1's shadow VMCS for L2 (at vmcs12's link pointer), read at entry, written back at exit */
  cachedShadowVmcs12: BigUint64Array;
  /** L1 received the notification of a posted interrupt for L2 while L2 did not run: L0 completes it at the next nested VM-entry */
  piNotificationPending: boolean;
  /**
   * KVM_REQ_GET_NESTED_STATE_PAGES after KVM_SET_NESTED_STATE: at the next
   * KVM_RUN, map the eVMCS again and get vmcs12's pages (nested-state.ts)
   */
  getNestedStatePages?: boolean;
  /**
   * That KVM_RUN failed (KVM_EXIT_INTERNAL_ERROR): KVM consumed the request,
   * so vmcs02 never gets the pages and the eVMCS stays unmapped. Until the
   * VMM sets the nested state again, what the vCPU runs is not defined by
   * KVM (contract kvm-no-run-after-restore-error).
   */
  nestedStatePagesFailed?: boolean;
}

export interface Vcpu {
  id: number;
  /** physical CPU the vCPU is loaded on, -1 when put (config.pcpus + id: its own CPU, until it is loaded explicitly) */
  cpu: number;
  nested: NestedVmx;
  /** vmx->vmcs01.msr_bitmap: L0's own intercepts for L1 */
  vmcs01MsrBitmap: Uint8Array;
  /** vmcs01 intercept changes requested while L2 runs; applied at the next nested VM-exit */
  pendingL01: { msr: number; write: boolean; intercept: boolean }[];
  /** architectural MSR values as L1 and L2 see them (absent: 0) */
  l1Msrs: Record<number, bigint>;
  l2Msrs: Record<number, bigint>;
  /** per-area private state of the selected path, keyed by area id */
  areas: Record<string, unknown>;
  /** CPUID faulting as the guest sees it (MSR_PLATFORM_INFO, MISC_FEATURES_ENABLES, SMM); shared by L1 and L2 */
  cpuidFault: GuestCpuidFault;
  /** VMX capability MSRs the VMM restored (vmx->nested.msrs where it differs from KVM's); absent: KVM's values (vmx-msrs.ts) */
  vmxMsrs?: Record<number, bigint>;
  /** the VMM's struct kvm_nested_state buffer for this vCPU (host.get-nested-state, host.nested-state-*): userspace memory, not KVM's */
  userNestedState?: import('./nested-state').UserNestedState;
}

/** The guest's CPUID-faulting state (per vCPU). */
export interface GuestCpuidFault {
  /** MSR_PLATFORM_INFO (0xCE): bit 31, CPUID faulting supported (KVM sets it at vCPU creation) */
  platformInfo: bigint;
  /** MSR_MISC_FEATURES_ENABLES (0x140): bit 0, CPUID faulting on */
  miscFeaturesEnables: bigint;
  /** in SMM (HF_SMM_MASK) */
  smm: boolean;
}

/** A physical CPU, as far as CPUID faulting goes. */
export interface Pcpu {
  /** MSR_MISC_FEATURES_ENABLES (0x140) as the hardware holds it (bit 0: CPUID faulting) */
  miscFeaturesEnables: number;
  /** what runs on it: a host task's id (>= 0), vCPU i's thread (-2 - i), or -1 (idle) */
  current: number;
}

/** A host task (a vCPU's thread is one too): its own CPUID faulting and where it runs. */
export interface HostTask {
  /** TIF_NOCPUID: the task turned CPUID faulting on for itself (arch_prctl(ARCH_SET_CPUID, 0)) */
  nocpuid: boolean;
  /** the CPU it runs on now, -1 when it does not run */
  cpu: number;
  /** the CPU it ran on last (its next system call runs there), -1 before it first ran */
  lastCpu: number;
}

/** The host around the VM: physical CPUs and tasks. */
export interface Host {
  /** config.pcpus physical CPUs, then one CPU of its own per vCPU (where a vCPU never loaded explicitly runs) */
  pcpus: Pcpu[];
  /** host tasks by id, created by their first event */
  tasks: Record<number, HostTask>;
  /** the vCPUs' threads, one per vCPU */
  vcpuThreads: HostTask[];
}

export interface World {
  config: WorldConfig;
  mem: Memory;
  vcpus: Vcpu[];
  /** physical CPUs and host tasks (CPUID faulting) */
  host: Host;
  /** VM-wide private state of the selected paths, keyed by area id (e.g. guest-pages' nested-context table) */
  areas: Record<string, unknown>;
}

/** The MSRs KVM passes through in vmcs01 for a 64-bit guest at vCPU creation (vmx_vcpu_create). */
const VMCS01_PASSTHROUGH: readonly [number, boolean, boolean][] = [
  [MSR.MSR_FS_BASE, true, true],
  [MSR.MSR_GS_BASE, true, true],
  [MSR.MSR_KERNEL_GS_BASE, true, true],
  [MSR.MSR_IA32_SYSENTER_CS, true, true],
  [MSR.MSR_IA32_SYSENTER_ESP, true, true],
  [MSR.MSR_IA32_SYSENTER_EIP, true, true],
  [MSR.MSR_IA32_PRED_CMD, false, true],
  [MSR.MSR_IA32_FLUSH_CMD, false, true],
];

/**
 * Bit number of an access in a 4 KiB MSR bitmap (the same addressing as
 * arch's msrBitmapPosition, without allocating: this runs on every L2 MSR
 * access), or -1 outside both ranges.
 */
export function msrBitmapBit(msr: number, write: boolean): number {
  let bit: number;
  if (msr <= 0x1fff) bit = msr;
  else if (msr >= 0xc0000000 && msr <= 0xc0001fff) bit = 0x2000 + (msr - 0xc0000000);
  else return -1;
  return write ? bit + 0x4000 : bit;
}

export function setBitmapBit(bm: Uint8Array, msr: number, write: boolean, intercept: boolean): void {
  const b = msrBitmapBit(msr, write);
  if (b < 0) return;
  if (intercept) bm[b >> 3] |= 1 << (b & 7);
  else bm[b >> 3] &= ~(1 << (b & 7));
}

/** 1 = intercepted. MSRs outside both ranges are always intercepted. */
export function testBitmapBit(bm: Uint8Array, msr: number, write: boolean): boolean {
  const b = msrBitmapBit(msr, write);
  return b < 0 || (bm[b >> 3] & (1 << (b & 7))) !== 0;
}

const VMCS01_BITMAP_AT_CREATION = ((): Uint8Array => {
  const bm = new Uint8Array(MSR_BITMAP_SIZE).fill(0xff);
  for (const [msr, r, w] of VMCS01_PASSTHROUGH) {
    if (r) setBitmapBit(bm, msr, false, false);
    if (w) setBitmapBit(bm, msr, true, false);
  }
  return bm;
})();

/** vmcs01's MSR bitmap at vCPU creation (a copy of one made once: every fuzz run builds worlds). */
export function initialVmcs01Bitmap(): Uint8Array {
  return VMCS01_BITMAP_AT_CREATION.slice();
}

export function newNested(): NestedVmx {
  return {
    vmxon: false,
    vmxonPtr: INVALID_GPA,
    currentVmptr: INVALID_GPA,
    vmcs12: new BigUint64Array(VMCS12_SLOT_COUNT),
    launched: false,
    hvEvmcsVmptr: INVALID_GPA,
    vpAssistEvmcs: INVALID_GPA,
    guestMode: false,
    dirtyVmcs12: false,
    needVmcs12ToShadowSync: false,
    // Creating the vCPU disables intercepts, which already marks vmcs01 as changed.
    forceMsrBitmapRecalc: true,
    vmcs02MsrBitmap: new Uint8Array(MSR_BITMAP_SIZE).fill(0xff),
    vmcs02UseMsrBitmaps: false,
    cachedShadowVmcs12: new BigUint64Array(VMCS12_SLOT_COUNT),
    piNotificationPending: false,
  };
}

export function newMemory(slots: readonly MemslotConfig[]): Memory {
  const mem: Memory = { generation: 0, slots: [], hvaToPfn: {}, pages: {}, nextHva: 0x100000, nextPfn: 0x1000, mmuInvalidateSeq: 0 };
  for (const s of slots) {
    mem.slots.push({ slot: s.slot, gfn: Number(s.gfn), npages: s.npages, flags: s.flags, hva: mem.nextHva });
    mem.nextHva += s.npages + 16; // a guard gap between slots' userspace ranges
  }
  mem.slots.sort((a, b) => a.gfn - b.gfn);
  return mem;
}

/** The world before the first event; `areas(vcpu)` gives each selected path's initial private state. */
export function initialWorld(config: WorldConfig, areas: (vcpu: number) => Record<string, unknown>): World {
  const vcpus: Vcpu[] = [];
  for (let i = 0; i < config.vcpus; i++) {
    // Until it is loaded explicitly, a vCPU runs on a CPU of its own (index config.pcpus + i), whose MSR 0x140 is 0.
    vcpus.push({ id: i, cpu: config.pcpus + i, nested: newNested(), vmcs01MsrBitmap: initialVmcs01Bitmap(), pendingL01: [], l1Msrs: {}, l2Msrs: {}, areas: areas(i), cpuidFault: newGuestCpuidFault() });
  }
  return { config, mem: newMemory(config.memslots), vcpus, host: newHost(config.pcpus, config.vcpus), areas: {} };
}

/**
 * A deep copy for checkpoints and for starting a private mutable working
 * copy from an (immer-frozen) state. Typed arrays are copied, so in-place
 * writes to the copy never reach the original.
 */
export function cloneWorld(w: World): World {
  // The configuration never changes after the first event: share it.
  return { config: w.config, mem: deepClone(w.mem) as Memory, vcpus: deepClone(w.vcpus) as Vcpu[], host: deepClone(w.host) as Host, areas: deepClone(w.areas) as Record<string, unknown> };
}

/** A deep copy of paths' private state (a vCPU's or the VM's `areas`), as `cloneWorld` copies it. */
export function cloneAreas(a: Record<string, unknown>): Record<string, unknown> {
  return deepClone(a) as Record<string, unknown>;
}

function deepClone(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v;
  if (ArrayBuffer.isView(v)) return (v as Uint8Array).slice();
  if (Array.isArray(v)) return v.map(deepClone);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = deepClone((v as Record<string, unknown>)[k]);
  return out;
}
