/**
 * The operations table: the KVM functions of the nested flow the model
 * implements, by KVM's names, in the manner of kvm_x86_ops and
 * kvm_x86_nested_ops (arch/x86/include/asm/kvm_host.h). The core calls every
 * one of them through the table of the profile it runs
 * (`ctx.profile.ops.nested_vmx_run(ctx, w, v, launch)`), never directly, so
 * a patch (a plugin, see docs/plugins.md) can replace or wrap any of them:
 * also where one KVM function calls another.
 *
 * Two ways into the emulator:
 * - the five area interfaces (paths.ts): narrow and stable, the points where
 *   an optimization of one area plugs in;
 * - this table: wide, every common function, for patches to common code
 *   (a fix, a regression, an optimization across areas).
 *
 * Every operation takes (ctx, w, v, ...) as its TypeScript implementation
 * does, except the gfn-to-pfn cache's, which take the cache (pfncache.c
 * works on a struct gfn_to_pfn_cache, not a vCPU). `OP_PARAMS` lists the
 * parameters by name (the arity a patch is checked against); the default
 * table is `KVM_OPS` (kvm-ops.ts).
 */
import type { Outcome } from '@nvx/trace';
import type { Ctx } from './ctx';
import type { Gpc } from './gpc';
import type { NestedPage } from './nested-pages';
import type { NestedStateHeader, UserNestedState } from './nested-state';
import type { PathOf } from './paths';
import type { Vcpu, World } from './state';

export interface NestedOps {
  // ---- VMX instructions from L1 (nested.c) ----
  /** handle_vmxon */
  handle_vmxon(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): Outcome;
  /** handle_vmxoff: free_nested, no write-back of vmcs12 */
  handle_vmxoff(ctx: Ctx, w: World, v: Vcpu): Outcome;
  /** free_nested: leave VMX operation (eVMCS released, shadow VMCS and caches freed) */
  free_nested(ctx: Ctx, w: World, v: Vcpu): void;

  // ---- save/restore of nested state (KVM_GET/SET_NESTED_STATE, nested-state.ts) ----
  /** vmx_get_nested_state: what KVM_GET_NESTED_STATE gives the VMM (vmcs12 brought up to date first) */
  vmx_get_nested_state(ctx: Ctx, w: World, v: Vcpu): UserNestedState;
  /** vmx_set_nested_state: KVM_SET_NESTED_STATE, ok or einval */
  vmx_set_nested_state(ctx: Ctx, w: World, v: Vcpu, header: NestedStateHeader, data: UserNestedState): Outcome;
  /** vmx_get_nested_state_pages (KVM_REQ_GET_NESTED_STATE_PAGES at the next KVM_RUN): an error (KVM_EXIT_INTERNAL_ERROR) or null */
  vmx_get_nested_state_pages(ctx: Ctx, w: World, v: Vcpu): string | null;
  /** handle_vmptrld */
  handle_vmptrld(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): Outcome;
  /** handle_vmptrst */
  handle_vmptrst(ctx: Ctx, w: World, v: Vcpu): Outcome;
  /** handle_vmclear */
  handle_vmclear(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): Outcome;
  /** nested_release_vmcs12: copy_shadow_to_vmcs12, shadowing off, cached vmcs12 written back to L1 memory */
  nested_release_vmcs12(ctx: Ctx, w: World, v: Vcpu): void;
  /** handle_vmread, from L1 (an L2 VMREAD is l2_vmread) */
  handle_vmread(ctx: Ctx, w: World, v: Vcpu, field: number): Outcome;
  /** handle_vmwrite, from L1 (an L2 VMWRITE is l2_vmwrite) */
  handle_vmwrite(ctx: Ctx, w: World, v: Vcpu, field: number, value: bigint): Outcome;
  /** handle_vmwrite's value as stored: the AR_BYTES fields masked to 0x1f0ff (for L1's and L2's VMWRITE alike) */
  handle_vmwrite_mask_ar_bytes(ctx: Ctx, w: World, v: Vcpu, field: number, value: bigint): bigint;
  /** nested_vmx_fail: VMfailValid with the error in vmcs12 (and, with an eVMCS, a sync into it), or VMfailInvalid */
  nested_vmx_fail(ctx: Ctx, w: World, v: Vcpu, error: number): Outcome;

  // ---- nested VM-entry ----
  /** nested_vmx_run: VMLAUNCH (launch) or VMRESUME */
  nested_vmx_run(ctx: Ctx, w: World, v: Vcpu, launch: boolean): Outcome;
  /** nested_vmx_check_controls (the checks the model has): false fails the entry with VMfailValid 7 */
  nested_vmx_check_controls(ctx: Ctx, w: World, v: Vcpu): boolean;
  nested_vmx_check_msr_bitmap_controls(ctx: Ctx, w: World, v: Vcpu): boolean;
  nested_vmx_check_tpr_shadow_controls(ctx: Ctx, w: World, v: Vcpu): boolean;
  nested_vmx_check_apic_access_controls(ctx: Ctx, w: World, v: Vcpu): boolean;
  /** nested_vmx_check_apicv_controls: the APICv and posted-interrupt control rules */
  nested_vmx_check_apicv_controls(ctx: Ctx, w: World, v: Vcpu): boolean;
  nested_vmx_check_shadow_vmcs_controls(ctx: Ctx, w: World, v: Vcpu): boolean;
  /** nested_vmx_check_vmcs_link_ptr (part of nested_vmx_check_guest_state): false is a failed entry */
  nested_vmx_check_vmcs_link_ptr(ctx: Ctx, w: World, v: Vcpu): boolean;
  /** nested_vmx_enter_non_root_mode after the checks: pages, guest state, prepare_vmcs02, into guest mode */
  nested_vmx_enter_non_root_mode(ctx: Ctx, w: World, v: Vcpu): Outcome;
  /** nested_get_vmcs12_pages: the MSR bitmap (nested_vmx_prepare_msr_bitmap) and the APIC pages; the first APIC page no memslot backs, or null */
  nested_get_vmcs12_pages(ctx: Ctx, w: World, v: Vcpu): { page: NestedPage; why: string } | null;
  /** nested_vmx_prepare_msr_bitmap: the msr-bitmap path's prepare; true when vmcs02 uses its bitmap */
  nested_vmx_prepare_msr_bitmap(ctx: Ctx, w: World, v: Vcpu): boolean;
  /** prepare_vmcs02 (what the model does of it): the rare fields consumed (dirty_vmcs12), every eVMCS clean bit set */
  prepare_vmcs02(ctx: Ctx, w: World, v: Vcpu): void;
  /** the vmentry_fail_vmexit exit of nested_vmx_enter_non_root_mode: a VM-exit with the failed-entry flag */
  vmentry_fail_vmexit(ctx: Ctx, w: World, v: Vcpu, reason: number, qual: bigint): Outcome;
  /** nested_cache_shadow_vmcs12: read L1's shadow vmcs12 (at vmcs12's link pointer) after a successful entry */
  nested_cache_shadow_vmcs12(ctx: Ctx, w: World, v: Vcpu): void;
  /** vmx_complete_nested_posted_interrupt: a notification L1 got while L2 did not run, completed at entry */
  vmx_complete_nested_posted_interrupt(ctx: Ctx, w: World, v: Vcpu): void;

  // ---- nested VM-exit ----
  /** nested_vmx_vmexit */
  nested_vmx_vmexit(ctx: Ctx, w: World, v: Vcpu, reason: number, qual: bigint): Outcome;
  /** the exit information recorded in vmcs12 (prepare_vmcs12 and sync_vmcs02_to_vmcs12) */
  sync_vmcs02_to_vmcs12(ctx: Ctx, w: World, v: Vcpu, reason: number, qual: bigint): void;
  /** nested_flush_cached_shadow_vmcs12: write the cached shadow vmcs12 back at the exit */
  nested_flush_cached_shadow_vmcs12(ctx: Ctx, w: World, v: Vcpu): void;
  /** nested_sync_vmcs12_to_shadow: before L1 runs again, vmcs12 into the eVMCS or the shadow VMCS */
  nested_sync_vmcs12_to_shadow(ctx: Ctx, w: World, v: Vcpu): void;
  /** vmx_set_intercept_for_msr on vmcs01 (and vmx_msr_bitmap_l01_changed) */
  vmx_set_intercept_for_msr(ctx: Ctx, w: World, v: Vcpu, msr: number, write: boolean, intercept: boolean): void;

  // ---- enlightened VMCS (hyperv.c, nested.c) ----
  /** nested_vmx_handle_enlightened_vmptrld: an EVMPTRLD status (DISABLED, SUCCEEDED, VMFAIL, ERROR); clears the clean fields on launch or a new eVMCS */
  nested_vmx_handle_enlightened_vmptrld(ctx: Ctx, w: World, v: Vcpu, fromLaunch: boolean): number;
  /** nested_release_evmcs */
  nested_release_evmcs(ctx: Ctx, w: World, v: Vcpu): void;
  /** copy_enlightened_to_vmcs12, given hv_clean_fields (the evmcs path picks the groups) */
  copy_enlightened_to_vmcs12(ctx: Ctx, w: World, v: Vcpu, hvCleanFields: number): void;
  /** copy_vmcs12_to_enlightened */
  copy_vmcs12_to_enlightened(ctx: Ctx, w: World, v: Vcpu): void;

  // ---- L2's exits (nested_vmx_reflect_vmexit and L0's handlers) ----
  /** nested_vmx_reflect_vmexit for an exit L1 always wants (CPUID, VMCALL ...): counted as an L0 exit, then nested_vmx_vmexit */
  nested_vmx_reflect_vmexit(ctx: Ctx, w: World, v: Vcpu, reason: number, qual: bigint): Outcome;
  /** nested_vmx_exit_handled_msr: does L1 want this MSR exit? */
  nested_vmx_exit_handled_msr(ctx: Ctx, w: World, v: Vcpu, msr: number, write: boolean): boolean;
  /** nested_vmx_exit_handled_vmcs_access: does L1 want this VMREAD/VMWRITE exit? (bitmapField: VMREAD_BITMAP or VMWRITE_BITMAP) */
  nested_vmx_exit_handled_vmcs_access(ctx: Ctx, w: World, v: Vcpu, field: number, bitmapField: number): boolean;
  /** L2 RDMSR: native under vmcs02's bitmap, or an exit L1 or L0 handles */
  l2_rdmsr(ctx: Ctx, w: World, v: Vcpu, msr: number): Outcome;
  /** L2 WRMSR */
  l2_wrmsr(ctx: Ctx, w: World, v: Vcpu, msr: number, value: bigint): Outcome;
  /** L2 CPUID (hardware CPUID faulting, then the exit reflected to L1) */
  l2_cpuid(ctx: Ctx, w: World, v: Vcpu, cpl: number): Outcome;
  /** L2 VMREAD: reflected, or handle_vmread in guest mode against cached_shadow_vmcs12 */
  l2_vmread(ctx: Ctx, w: World, v: Vcpu, field: number): Outcome;
  /** L2 VMWRITE: reflected, or handle_vmwrite in guest mode */
  l2_vmwrite(ctx: Ctx, w: World, v: Vcpu, field: number, value: bigint): Outcome;
  /** L2 access to its APIC page: virtualized, a plain memory access, or an APIC-access exit */
  l2_apic_access(ctx: Ctx, w: World, v: Vcpu, offset: number, write: boolean, value: bigint): Outcome;
  /** vmx_deliver_nested_posted_interrupt: the notification of a posted interrupt reaches vCPU v */
  vmx_deliver_nested_posted_interrupt(ctx: Ctx, w: World, v: Vcpu): void;

  // ---- CPUID faulting ----
  /** vcpu_load (vmx_prepare_switch_to_guest): the cpuid-fault path's load on v.cpu */
  vcpu_load(ctx: Ctx, w: World, v: Vcpu): void;
  /** vcpu_put (vmx_prepare_switch_to_host): the cpuid-fault path's put; the vCPU is then not loaded */
  vcpu_put(ctx: Ctx, w: World, v: Vcpu): void;

  // ---- the VMM's MSR writes (x86.c) ----
  /** do_set_msr: one MSR of KVM_SET_MSRS (host-initiated: kvm_set_msr_common, vmx_set_vmx_msr); a refused write is ignored */
  do_set_msr(ctx: Ctx, w: World, v: Vcpu, msr: number, value: bigint): Outcome;

  // ---- gfn-to-pfn caches (virt/kvm/pfncache.c) ----
  /** kvm_gpc_check: may the cached pfn be used without a refresh? */
  kvm_gpc_check(ctx: Ctx, w: World, gpc: Gpc): boolean;
  /** kvm_gpc_refresh (to gpa): false when gpa is not backed by a memslot */
  kvm_gpc_refresh(ctx: Ctx, w: World, gpc: Gpc, gpa: bigint): boolean;
  /** kvm_gpc_activate */
  kvm_gpc_activate(ctx: Ctx, w: World, gpc: Gpc, gpa: bigint): boolean;
  /** kvm_gpc_deactivate */
  kvm_gpc_deactivate(ctx: Ctx, w: World, gpc: Gpc): void;
  /** gfn_to_pfn_cache_invalidate_start for one cache and host virtual pages [start, end): true when it invalidated it */
  gfn_to_pfn_cache_invalidate_start(ctx: Ctx, w: World, gpc: Gpc, start: number, end: number): boolean;
}

export type OpName = keyof NestedOps & string;

/**
 * Each operation's parameters, by name: what `nvx paths` shows and the
 * arity a patch's function is checked against. Kept complete by the
 * compiler (`satisfies` below, and the check after it).
 */
export const OP_PARAMS = {
  handle_vmxon: ['ctx', 'w', 'v', 'gpa'],
  handle_vmxoff: ['ctx', 'w', 'v'],
  free_nested: ['ctx', 'w', 'v'],
  vmx_get_nested_state: ['ctx', 'w', 'v'],
  vmx_set_nested_state: ['ctx', 'w', 'v', 'header', 'data'],
  vmx_get_nested_state_pages: ['ctx', 'w', 'v'],
  handle_vmptrld: ['ctx', 'w', 'v', 'gpa'],
  handle_vmptrst: ['ctx', 'w', 'v'],
  handle_vmclear: ['ctx', 'w', 'v', 'gpa'],
  nested_release_vmcs12: ['ctx', 'w', 'v'],
  handle_vmread: ['ctx', 'w', 'v', 'field'],
  handle_vmwrite: ['ctx', 'w', 'v', 'field', 'value'],
  handle_vmwrite_mask_ar_bytes: ['ctx', 'w', 'v', 'field', 'value'],
  nested_vmx_fail: ['ctx', 'w', 'v', 'error'],
  nested_vmx_run: ['ctx', 'w', 'v', 'launch'],
  nested_vmx_check_controls: ['ctx', 'w', 'v'],
  nested_vmx_check_msr_bitmap_controls: ['ctx', 'w', 'v'],
  nested_vmx_check_tpr_shadow_controls: ['ctx', 'w', 'v'],
  nested_vmx_check_apic_access_controls: ['ctx', 'w', 'v'],
  nested_vmx_check_apicv_controls: ['ctx', 'w', 'v'],
  nested_vmx_check_shadow_vmcs_controls: ['ctx', 'w', 'v'],
  nested_vmx_check_vmcs_link_ptr: ['ctx', 'w', 'v'],
  nested_vmx_enter_non_root_mode: ['ctx', 'w', 'v'],
  nested_get_vmcs12_pages: ['ctx', 'w', 'v'],
  nested_vmx_prepare_msr_bitmap: ['ctx', 'w', 'v'],
  prepare_vmcs02: ['ctx', 'w', 'v'],
  vmentry_fail_vmexit: ['ctx', 'w', 'v', 'reason', 'qual'],
  nested_cache_shadow_vmcs12: ['ctx', 'w', 'v'],
  vmx_complete_nested_posted_interrupt: ['ctx', 'w', 'v'],
  nested_vmx_vmexit: ['ctx', 'w', 'v', 'reason', 'qual'],
  sync_vmcs02_to_vmcs12: ['ctx', 'w', 'v', 'reason', 'qual'],
  nested_flush_cached_shadow_vmcs12: ['ctx', 'w', 'v'],
  nested_sync_vmcs12_to_shadow: ['ctx', 'w', 'v'],
  vmx_set_intercept_for_msr: ['ctx', 'w', 'v', 'msr', 'write', 'intercept'],
  nested_vmx_handle_enlightened_vmptrld: ['ctx', 'w', 'v', 'fromLaunch'],
  nested_release_evmcs: ['ctx', 'w', 'v'],
  copy_enlightened_to_vmcs12: ['ctx', 'w', 'v', 'hvCleanFields'],
  copy_vmcs12_to_enlightened: ['ctx', 'w', 'v'],
  nested_vmx_reflect_vmexit: ['ctx', 'w', 'v', 'reason', 'qual'],
  nested_vmx_exit_handled_msr: ['ctx', 'w', 'v', 'msr', 'write'],
  nested_vmx_exit_handled_vmcs_access: ['ctx', 'w', 'v', 'field', 'bitmapField'],
  l2_rdmsr: ['ctx', 'w', 'v', 'msr'],
  l2_wrmsr: ['ctx', 'w', 'v', 'msr', 'value'],
  l2_cpuid: ['ctx', 'w', 'v', 'cpl'],
  l2_vmread: ['ctx', 'w', 'v', 'field'],
  l2_vmwrite: ['ctx', 'w', 'v', 'field', 'value'],
  l2_apic_access: ['ctx', 'w', 'v', 'offset', 'write', 'value'],
  vmx_deliver_nested_posted_interrupt: ['ctx', 'w', 'v'],
  vcpu_load: ['ctx', 'w', 'v'],
  vcpu_put: ['ctx', 'w', 'v'],
  do_set_msr: ['ctx', 'w', 'v', 'msr', 'value'],
  kvm_gpc_check: ['ctx', 'w', 'gpc'],
  kvm_gpc_refresh: ['ctx', 'w', 'gpc', 'gpa'],
  kvm_gpc_activate: ['ctx', 'w', 'gpc', 'gpa'],
  kvm_gpc_deactivate: ['ctx', 'w', 'gpc'],
  gfn_to_pfn_cache_invalidate_start: ['ctx', 'w', 'gpc', 'start', 'end'],
} as const satisfies { readonly [K in OpName]: readonly string[] & { length: Parameters<NestedOps[K]>['length'] } };

type AssertNever<T extends never> = T;
/** Compile-time check: every operation of NestedOps is in OP_PARAMS. */
export type OpParamsListed = AssertNever<Exclude<OpName, keyof typeof OP_PARAMS>>;

/** The operation names, in the order of the table. */
export const OP_NAMES: readonly OpName[] = Object.keys(OP_PARAMS) as OpName[];

/** A patch's function for operation K: given the operation as it was (the built-in one, or an earlier patch's), the one to use. */
export type OpWrapper<K extends OpName> = (orig: NestedOps[K]) => NestedOps[K];

/**
 * A named patch: wrappers or replacements of operations (a wrapper calls
 * `orig`; a replacement ignores it). A profile names it like a path
 * (`patch=<name>`, several `patch=a+b`, applied in order).
 */
export interface Patch {
  readonly kind: 'patch';
  readonly name: string;
  /** one line: what the patch changes and where it comes from (a KVM commit, a bug) */
  readonly summary: string;
  readonly ops: { readonly [K in OpName]?: OpWrapper<K> };
}

/** A resolved profile: one path per area, the patches applied, and the operations table they give. */
export interface Profile {
  /** the name it was given by, or its canonical spelling */
  name: string;
  paths: PathOf;
  /** the patches applied, in order (names) */
  patches: readonly string[];
  /** the operations table: KVM_OPS with the patches bound, once, when the profile was resolved */
  ops: NestedOps;
}

/**
 * The table for a list of patches: each wrapper bound once, in order, over
 * `base` (a new object; `base` is not changed).
 */
export function applyPatches(base: NestedOps, patches: readonly Patch[]): NestedOps {
  const ops = { ...base };
  const slots = ops as unknown as Record<string, unknown>;
  for (const p of patches) {
    for (const name of Object.keys(p.ops)) {
      const wrap = (p.ops as Record<string, ((orig: unknown) => unknown) | undefined>)[name];
      if (wrap) slots[name] = wrap(slots[name]);
    }
  }
  return ops;
}
