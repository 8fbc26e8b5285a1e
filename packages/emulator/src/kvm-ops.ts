/**
 * KVM_OPS: the built-in operations table (ops.ts), each entry the model of
 * the KVM function it is named after. Where a function's work belongs to an
 * area, the entry calls that area's path (`ctx.profile.paths[area]`).
 *
 * A profile's table is this one with its patches bound over it
 * (`applyPatches`, when profile.ts resolves the profile).
 */
import { copyEnlightenedToVmcs12Clean, copyVmcs12ToEnlightened, handleEnlightenedVmptrld, nestedReleaseEvmcs } from './evmcs';
import { vmxVcpuPut } from './cpuid-fault-host';
import { doSetMsr, l2Cpuid } from './cpuid-fault';
import { gpcActivate, gpcCheck, gpcDeactivate, gpcInvalidateRange, gpcRefresh } from './gpc';
import { l2AlwaysReflected, l2ApicAccess, l2Rdmsr, l2Wrmsr, nestedVmxExitHandledMsr } from './l2';
import { l2Vmread, l2Vmwrite, nestedVmxExitHandledVmcsAccess } from './l2-vmcs';
import {
  changeVmcs01Intercept,
  freeNested,
  handleVmclear,
  handleVmptrld,
  handleVmptrst,
  handleVmread,
  handleVmwrite,
  handleVmwriteMaskArBytes,
  handleVmxoff,
  handleVmxon,
  nestedReleaseVmcs12,
  nestedVmxCheckApicAccessControls,
  nestedVmxCheckApicvControls,
  nestedVmxCheckControls,
  nestedVmxCheckMsrBitmapControls,
  nestedVmxCheckTprShadowControls,
  nestedVmxEnterNonRootMode,
  nestedVmxFail,
  nestedVmxRun,
  nestedVmxVmexit,
  prepareVmcs02,
  syncVmcs02ToVmcs12,
  syncVmcs12ToShadow,
} from './nested';
import { completePendingPostedInterrupt, nestedGetVmcs12Pages, notifyPostedInterrupt } from './nested-pages';
import type { NestedOps } from './ops';
import { vmxGetNestedState, vmxGetNestedStatePages, vmxSetNestedState } from './nested-state';
import { nestedCacheShadowVmcs12, nestedFlushCachedShadowVmcs12, nestedVmxCheckShadowVmcsControls, nestedVmxCheckVmcsLinkPtr, nestedVmxEntryFailVmexit } from './vmcs-link';

export const KVM_OPS: Readonly<NestedOps> = Object.freeze<NestedOps>({
  handle_vmxon: handleVmxon,
  handle_vmxoff: handleVmxoff,
  free_nested: freeNested,
  vmx_get_nested_state: vmxGetNestedState,
  vmx_set_nested_state: vmxSetNestedState,
  vmx_get_nested_state_pages: vmxGetNestedStatePages,
  handle_vmptrld: handleVmptrld,
  handle_vmptrst: handleVmptrst,
  handle_vmclear: handleVmclear,
  nested_release_vmcs12: nestedReleaseVmcs12,
  handle_vmread: handleVmread,
  handle_vmwrite: handleVmwrite,
  handle_vmwrite_mask_ar_bytes: handleVmwriteMaskArBytes,
  nested_vmx_fail: (ctx, _w, v, error) => nestedVmxFail(ctx, v, error),

  nested_vmx_run: nestedVmxRun,
  nested_vmx_check_controls: nestedVmxCheckControls,
  nested_vmx_check_msr_bitmap_controls: nestedVmxCheckMsrBitmapControls,
  nested_vmx_check_tpr_shadow_controls: nestedVmxCheckTprShadowControls,
  nested_vmx_check_apic_access_controls: nestedVmxCheckApicAccessControls,
  nested_vmx_check_apicv_controls: nestedVmxCheckApicvControls,
  nested_vmx_check_shadow_vmcs_controls: nestedVmxCheckShadowVmcsControls,
  nested_vmx_check_vmcs_link_ptr: nestedVmxCheckVmcsLinkPtr,
  nested_vmx_enter_non_root_mode: nestedVmxEnterNonRootMode,
  nested_get_vmcs12_pages: nestedGetVmcs12Pages,
  // the msr-bitmap area's optimization point
  nested_vmx_prepare_msr_bitmap: (ctx, w, v) => ctx.profile.paths['msr-bitmap'].prepare(ctx, w, v),
  prepare_vmcs02: prepareVmcs02,
  vmentry_fail_vmexit: nestedVmxEntryFailVmexit,
  nested_cache_shadow_vmcs12: nestedCacheShadowVmcs12,
  vmx_complete_nested_posted_interrupt: completePendingPostedInterrupt,

  nested_vmx_vmexit: nestedVmxVmexit,
  sync_vmcs02_to_vmcs12: syncVmcs02ToVmcs12,
  nested_flush_cached_shadow_vmcs12: nestedFlushCachedShadowVmcs12,
  nested_sync_vmcs12_to_shadow: syncVmcs12ToShadow,
  vmx_set_intercept_for_msr: (ctx, _w, v, msr, write, intercept) => changeVmcs01Intercept(ctx, v, msr, write, intercept),

  nested_vmx_handle_enlightened_vmptrld: handleEnlightenedVmptrld,
  nested_release_evmcs: nestedReleaseEvmcs,
  copy_enlightened_to_vmcs12: copyEnlightenedToVmcs12Clean,
  copy_vmcs12_to_enlightened: copyVmcs12ToEnlightened,

  nested_vmx_reflect_vmexit: l2AlwaysReflected,
  nested_vmx_exit_handled_msr: nestedVmxExitHandledMsr,
  nested_vmx_exit_handled_vmcs_access: nestedVmxExitHandledVmcsAccess,
  l2_rdmsr: l2Rdmsr,
  l2_wrmsr: l2Wrmsr,
  l2_cpuid: l2Cpuid,
  l2_vmread: l2Vmread,
  l2_vmwrite: l2Vmwrite,
  l2_apic_access: l2ApicAccess,
  vmx_deliver_nested_posted_interrupt: notifyPostedInterrupt,

  // the cpuid-fault area's load and put
  vcpu_load: (ctx, w, v) => ctx.profile.paths['cpuid-fault'].load(ctx, w, v),
  vcpu_put: vmxVcpuPut,

  do_set_msr: doSetMsr,

  kvm_gpc_check: (_ctx, w, gpc) => gpcCheck(w, gpc),
  kvm_gpc_refresh: gpcRefresh,
  kvm_gpc_activate: gpcActivate,
  kvm_gpc_deactivate: gpcDeactivate,
  gfn_to_pfn_cache_invalidate_start: (ctx, _w, gpc, start, end) => gpcInvalidateRange(ctx, gpc, start, end),
});
