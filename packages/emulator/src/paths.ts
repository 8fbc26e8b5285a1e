/**
 * The path interfaces, one per area. A path is a small module that plugs into
 * the points where KVM's code for that optimization runs; everything else
 * (instruction emulation, reflection, memory) is common. Each path keeps its
 * private state in `vcpu.areas[area]`; the state is plain data (or typed
 * arrays replaced whole) so it can live in an immer draft.
 */
import type { VmcsField } from '@nvx/arch';
import type { Outcome } from '@nvx/trace';
import type { Ctx } from './ctx';
import type { Vcpu, World } from './state';

export type AreaId = 'msr-bitmap' | 'evmcs' | 'shadow-vmcs' | 'guest-pages' | 'cpuid-fault';
export const AREA_IDS: readonly AreaId[] = ['msr-bitmap', 'evmcs', 'shadow-vmcs', 'guest-pages', 'cpuid-fault'];

export interface PathBase {
  readonly area: AreaId;
  readonly name: string;
  /** one line: what the path does and where it comes from */
  readonly summary: string;
  /** private per-vCPU state at vCPU creation (omit for none) */
  init?(w: World, vcpu: number): unknown;
  /** facts about the path's private state that explain a divergence on this vCPU */
  explain?(w: World, v: Vcpu, hint: { msr?: number; write?: boolean }): Record<string, string>;
  /**
   * The vCPU was migrated (host.migrate, nested-state.ts): destroyed and
   * created afresh before KVM_SET_NESTED_STATE. The private state of the new
   * vCPU, given the old vCPU's (`saved`) and the one `init` gives (`fresh`).
   * Default (no hook): `fresh`, i.e. everything the path kept is dropped and
   * rebuilt as at vCPU creation, as KVM's destination has nothing but what
   * struct kvm_nested_state and the MSRs carry.
   */
  restore?(ctx: Ctx, w: World, v: Vcpu, saved: unknown, fresh: unknown): unknown;
}

export interface MsrBitmapPath extends PathBase {
  readonly area: 'msr-bitmap';
  /**
   * nested_vmx_prepare_msr_bitmap, called from nested_get_vmcs12_pages at
   * every nested VM-entry: bring vmcs02's bitmap up to date (or not) and say
   * whether vmcs02 runs with CPU_BASED_USE_MSR_BITMAPS.
   */
  prepare(ctx: Ctx, w: World, v: Vcpu): boolean;
  /** an L1 store (from any vCPU) hit guest frame gfn */
  onGuestWrite?(ctx: Ctx, w: World, gfn: number): void;
  /** the host changed what backs guest memory (memslot change, migration, zap) */
  onHostMemory?(ctx: Ctx, w: World, inv?: HostInvalidation | null): void;
}

export interface EvmcsPath extends PathBase {
  readonly area: 'evmcs';
  /**
   * copy_enlightened_to_vmcs12: given the hv_clean_fields L1 left in the
   * eVMCS, the mask of clean-field groups to copy into vmcs12 (bit n = group
   * n). Fields tagged NONE are always copied.
   */
  groupsToCopy(cleanFields: number): number;
  /**
   * vmx_get_nested_state while L1 runs on an eVMCS: bring vmcs12 up to date
   * from the eVMCS before it is saved. Default: copy_enlightened_to_vmcs12
   * of every group, clean fields ignored (L1 need not keep them up to date
   * outside VM-entry).
   */
  getNestedState?(ctx: Ctx, w: World, v: Vcpu): void;
}

export interface ShadowVmcsPath extends PathBase {
  readonly area: 'shadow-vmcs';
  /**
   * The CPU, before any exit: L1 executes VMREAD of `field`. The outcome when
   * vmcs01's shadowing and KVM's VMREAD bitmap let it complete on the shadow
   * VMCS without a VM-exit; null when it exits to L0 (handle_vmread).
   */
  vmread(ctx: Ctx, w: World, v: Vcpu, field: number): Outcome | null;
  /** The same for VMWRITE (KVM's VMWRITE bitmap); null when it exits (handle_vmwrite). */
  vmwrite(ctx: Ctx, w: World, v: Vcpu, field: number, value: bigint): Outcome | null;
  /** set_current_vmptr: a vmcs12 became current (turn shadowing on in vmcs01) */
  setCurrentVmptr(ctx: Ctx, w: World, v: Vcpu): void;
  /** copy_shadow_to_vmcs12, at nested VM-entry before the checks */
  copyShadowToVmcs12(ctx: Ctx, w: World, v: Vcpu): void;
  /** copy_vmcs12_to_shadow, when need_vmcs12_to_shadow_sync is set before L1 runs again */
  copyVmcs12ToShadow(ctx: Ctx, w: World, v: Vcpu): void;
  /** handle_vmwrite after an emulated L1 VMWRITE wrote `value` to vmcs12 (mirroring into the shadow VMCS) */
  emulatedVmwrite(ctx: Ctx, w: World, v: Vcpu, f: VmcsField, value: bigint): void;
  /** nested_release_vmcs12 (VMPTRLD of another vmcs12, VMCLEAR of the current one), before the write-back: copy_shadow_to_vmcs12 and vmx_disable_shadow_vmcs */
  release(ctx: Ctx, w: World, v: Vcpu): void;
  /** free_nested (VMXOFF): shadowing off, the shadow VMCS freed, nothing copied */
  free(ctx: Ctx, w: World, v: Vcpu): void;
  /**
   * vmx_get_nested_state while L1 runs with a current vmcs12: bring vmcs12
   * up to date from the shadow VMCS before it is saved. Default:
   * copy_shadow_to_vmcs12 (the shadow VMCS is authoritative while L1 runs).
   */
  getNestedState?(ctx: Ctx, w: World, v: Vcpu): void;
}

// The L1 pages L0 uses for a nested guest, and how it touches them (guest-pages area).
import type { NestedPage, PageAccess } from './nested-pages';

/** An mmu-notifier invalidation: host virtual pages [start, end) (a migration or a zap). */
export interface HostInvalidation {
  start: number;
  end: number;
  /**
   * Set at host.mmu-invalidate-end, after the pages moved (the start of the
   * window was told before): a cache refreshed inside the window is still
   * invalid, and what KVM's hva_to_pfn_retry would have waited for is due now.
   */
  ended?: boolean;
}

/**
 * The shadow-vmcs area's private state as the core reads it: the
 * architectural view (hash.ts) shows L1 the fields it reads from the shadow
 * VMCS without an exit.
 */
export interface ShadowVmcsState {
  /** vmcs01 has SECONDARY_EXEC_SHADOW_VMCS set and VMCS_LINK_POINTER at the shadow VMCS (set_current_vmptr .. vmx_disable_shadow_vmcs) */
  active: boolean;
  /** the shadow VMCS contents, one 64-bit slot per vmcs12 field (only the shadowed ones are ever used) */
  shadow: BigUint64Array;
  /** vmcs12 slots L1 reads from the shadow VMCS without exit (for the architectural view) */
  readSlots: number[];
}

export function shadowState(v: Vcpu): ShadowVmcsState | undefined {
  return v.areas['shadow-vmcs'] as ShadowVmcsState | undefined;
}

export interface GuestPagesPath extends PathBase {
  readonly area: 'guest-pages';
  /** VM-wide private state (`world.areas['guest-pages']`) at VM creation (omit for none) */
  initVm?(w: World): unknown;
  /**
   * The host page L0 reads (READ, PEEK) or writes (WRITE: the bytes returned
   * are writable) for nested page `page` of vCPU v, which vmcs12 or the
   * eVMCS pointer names at the page-aligned `gpa`; null when L0 cannot map it.
   */
  l0Page(ctx: Ctx, w: World, v: Vcpu, page: NestedPage, gpa: bigint, access: PageAccess): Uint8Array | null;
  /** The host pfn vmcs02 holds for APIC page `page` (what the CPU uses while L2 runs), -1 when none. */
  hwPfn(ctx: Ctx, w: World, v: Vcpu, page: NestedPage): number;
  /**
   * nested_get_vmcs12_pages at a nested VM-entry: make the APIC pages in
   * `inUse` (bits 1 << NESTED_PAGE.x) usable and put their host addresses in vmcs02.
   */
  getVmcs12Pages(ctx: Ctx, w: World, v: Vcpu, inUse: number): void;
  /** nested_vmx_vmexit, after leaving guest mode */
  nestedVmexit(ctx: Ctx, w: World, v: Vcpu): void;
  /** the enlightened VMPTRLD maps a new eVMCS at gpa: its page, or null when it cannot be mapped */
  mapEvmcs(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): Uint8Array | null;
  /** nested_release_evmcs */
  releaseEvmcs(ctx: Ctx, w: World, v: Vcpu): void;
  /** VMPTRLD made the vmcs12 at gpa current */
  vmptrld?(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): void;
  /** VMCLEAR of the VMCS at gpa */
  vmclear?(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): void;
  /** free_nested (VMXOFF) */
  freeNested?(ctx: Ctx, w: World, v: Vcpu): void;
  /** the host changed what backs guest memory: the notifier range of a migration or zap, null for a memslot change */
  onHostMemory?(ctx: Ctx, w: World, inv: HostInvalidation | null): void;
  /** does the path hold a long-term pin on host virtual page hva (kvm_vcpu_map of memory with struct page)? */
  pins?(w: World, hva: number): boolean;
  /**
   * Where nested page p's structure sits in the page the path maps (the
   * posted-interrupt descriptor's offset; 0 for page-aligned pages), when the
   * path keeps its own record of it (a gfn-to-pfn cache's offset_in_page of
   * its gpa). Omit to take vmcs12's.
   */
  pageOffset?(ctx: Ctx, w: World, v: Vcpu, p: NestedPage): number;
}

export interface CpuidFaultPath extends PathBase {
  readonly area: 'cpuid-fault';
  /**
   * vcpu_load (vmx_prepare_switch_to_guest): the vCPU's thread was just
   * scheduled in on v.cpu, whose MSR 0x140 holds the host's value.
   */
  load(ctx: Ctx, w: World, v: Vcpu): void;
  /** vcpu_put (vmx_prepare_switch_to_host): leave MSR 0x140 as the host had it. */
  put(ctx: Ctx, w: World, v: Vcpu): void;
  /**
   * While the vCPU is loaded, something that decides its faulting changed:
   * the guest's MISC_FEATURES_ENABLES, SMM entry or exit, a nested VM-entry
   * or VM-exit.
   */
  update(ctx: Ctx, w: World, v: Vcpu): void;
  /** kvm_emulate_cpuid at a CPUID VM-exit L0 handles: inject #GP(0) (RIP unchanged) instead of the result? */
  cpuidExitFaults(w: World, v: Vcpu, cpl: number): boolean;
  /**
   * For paths built on the shared MSR switching (areas/cpuid-fault/switching.ts):
   * the value MSR 0x140 should hold while this vCPU runs, given the host's.
   * A plugin may replace just this.
   */
  wanted?(w: World, v: Vcpu, host: number): number;
}


export type AreaPath = MsrBitmapPath | EvmcsPath | ShadowVmcsPath | GuestPagesPath | CpuidFaultPath;
export interface PathOf {
  'msr-bitmap': MsrBitmapPath;
  evmcs: EvmcsPath;
  'shadow-vmcs': ShadowVmcsPath;
  'guest-pages': GuestPagesPath;
  'cpuid-fault': CpuidFaultPath;
}

// ---- The interfaces as data, for checking a plugin path at load time ----

type FunctionKeys<T> = { [K in keyof T]-?: NonNullable<T[K]> extends (...args: never[]) => unknown ? K : never }[keyof T];
type OptionalKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? K : never }[keyof T];
/** The methods a path of area A must have (derived from its interface). */
export type RequiredMethodOf<A extends AreaId> = Exclude<FunctionKeys<PathOf[A]>, OptionalKeys<PathOf[A]>> & string;
/** The methods a path of area A may have. */
export type OptionalMethodOf<A extends AreaId> = Extract<FunctionKeys<PathOf[A]>, OptionalKeys<PathOf[A]>> & string;

/** Members every path has, whatever its area (PathBase). */
export const REQUIRED_MEMBERS = ['area', 'name', 'summary'] as const;

/**
 * Per area, the methods its interface above requires: what a plugin must
 * implement (`nvx --path-module` names the missing one). Kept complete by
 * the compiler: a method added to an interface and left out here fails the
 * type check below.
 */
export const REQUIRED_METHODS = {
  'msr-bitmap': ['prepare'],
  evmcs: ['groupsToCopy'],
  'shadow-vmcs': ['vmread', 'vmwrite', 'setCurrentVmptr', 'copyShadowToVmcs12', 'copyVmcs12ToShadow', 'emulatedVmwrite', 'release', 'free'],
  'guest-pages': ['l0Page', 'hwPfn', 'getVmcs12Pages', 'nestedVmexit', 'mapEvmcs', 'releaseEvmcs'],
  'cpuid-fault': ['load', 'put', 'update', 'cpuidExitFaults'],
} as const satisfies { readonly [A in AreaId]: readonly RequiredMethodOf<A>[] };

/** Per area, the optional methods (hooks) its interface declares; present ones must be functions. */
export const OPTIONAL_METHODS = {
  'msr-bitmap': ['init', 'explain', 'restore', 'onGuestWrite', 'onHostMemory'],
  evmcs: ['init', 'explain', 'restore', 'getNestedState'],
  'shadow-vmcs': ['init', 'explain', 'restore', 'getNestedState'],
  'guest-pages': ['init', 'explain', 'restore', 'initVm', 'vmptrld', 'vmclear', 'freeNested', 'onHostMemory', 'pins', 'pageOffset'],
  'cpuid-fault': ['init', 'explain', 'restore', 'wanted'],
} as const satisfies { readonly [A in AreaId]: readonly OptionalMethodOf<A>[] };

type AssertNever<T extends never> = T;
/** Compile-time check: every required method of every interface is in REQUIRED_METHODS (an error here names the one missing). */
export type RequiredMethodsListed = AssertNever<{ [A in AreaId]: Exclude<RequiredMethodOf<A>, (typeof REQUIRED_METHODS)[A][number]> }[AreaId]>;
/** Compile-time check: every optional method of every interface is in OPTIONAL_METHODS. */
export type OptionalMethodsListed = AssertNever<{ [A in AreaId]: Exclude<OptionalMethodOf<A>, (typeof OPTIONAL_METHODS)[A][number]> }[AreaId]>;
