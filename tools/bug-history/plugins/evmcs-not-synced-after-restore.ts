/**
 * 8629b625e015 "KVM: nVMX: Request to sync eVMCS from VMCS12 after
 * migration", nested_get_evmcs_page.
 *
 * After KVM_SET_NESTED_STATE the restored vmcs12 is the authoritative state.
 * With a VMCS pointer, set_current_vmptr requests the vmcs12 -> shadow VMCS
 * sync (need_vmcs12_to_shadow_sync); the eVMCS, mapped at the next KVM_RUN
 * by nested_get_evmcs_page, had no such request, so vmcs12 state that was
 * not yet in the eVMCS (a save between an L2 -> L1 exit and L1's next run,
 * when the sync was still pending) never reached it and L1 read stale
 * fields. The fix sets need_vmcs12_to_shadow_sync after the mapping.
 *
 * The patch replaces vmx_get_nested_state_pages with the model's one
 * without that request.
 */
import { Ctx, EVMPTR_MAP_PENDING, Patch, Vcpu, World } from '@nvx/emulator';

/** EVMPTRLD_VMFAIL, EVMPTRLD_ERROR (nested.c's enum nested_evmptrld_status) */
const EVMPTRLD_VMFAIL = 2;
const EVMPTRLD_ERROR = 3;

const patch: Patch = {
  kind: 'patch',
  name: 'bug-8629b625e015',
  summary: 'nested_get_evmcs_page maps the eVMCS after KVM_SET_NESTED_STATE without requesting the vmcs12 -> eVMCS sync (before 2021)',
  ops: {
    vmx_get_nested_state_pages: () => (ctx: Ctx, w: World, v: Vcpu) => {
      const n = v.nested;
      const ops = ctx.profile.ops;
      n.getNestedStatePages = false;
      if (n.hvEvmcsVmptr === EVMPTR_MAP_PENDING) {
        const st = ops.nested_vmx_handle_enlightened_vmptrld(ctx, w, v, false);
        if (st === EVMPTRLD_VMFAIL || st === EVMPTRLD_ERROR) return 'KVM_EXIT_INTERNAL_ERROR: the eVMCS cannot be mapped after KVM_SET_NESTED_STATE';
        // no need_vmcs12_to_shadow_sync here
      }
      if (n.guestMode) {
        const unbacked = ops.nested_get_vmcs12_pages(ctx, w, v);
        if (unbacked !== null) return `KVM_EXIT_INTERNAL_ERROR: ${unbacked.why}`;
      } else if (n.needVmcs12ToShadowSync) {
        ops.nested_sync_vmcs12_to_shadow(ctx, w, v);
      }
      return null;
    },
  },
};

export default patch;
