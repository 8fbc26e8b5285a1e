/**
 * d6bf71a18c74 "KVM: nVMX: Ignore 'hv_clean_fields' data when eVMCS data is
 * copied in vmx_get_nested_state()", vmx_get_nested_state.
 *
 * Before KVM_GET_NESTED_STATE copies vmcs12 out while L1 runs, KVM makes
 * vmcs12 authoritative by copying the eVMCS into it
 * (copy_enlightened_to_vmcs12). Before the fix that copy honoured
 * hv_clean_fields as a VM-entry does, but L1 keeps the clean bits up to date
 * only for VM-entry: a field L1 changed since the last entry, with its
 * group's bit still set, was not saved. After the restore KVM copies the
 * stale vmcs12 back over the eVMCS ("post migration VMCS12 always provides
 * the most actual information"), so L1's change is lost. The fix passes
 * hv_clean_fields = 0 from vmx_get_nested_state.
 *
 * The plugin is the clean-fields path (KVM's eVMCS handling) whose part of
 * vmx_get_nested_state (`getNestedState`) copies with L1's hv_clean_fields,
 * as before the fix.
 */
import { EVMCS } from '@nvx/arch';
import { AREAS, Ctx, EvmcsPath, Vcpu, World, evmcsL0ReadU32, evmptrValid } from '@nvx/emulator';

const cleanFields = AREAS.evmcs.paths.get('clean-fields') as EvmcsPath;

const path: EvmcsPath = {
  ...cleanFields,
  name: 'bug-d6bf71a18c74',
  summary: "clean-fields whose vmx_get_nested_state copies the eVMCS into vmcs12 honouring L1's hv_clean_fields (before 2021)",
  getNestedState(ctx: Ctx, w: World, v: Vcpu): void {
    if (!evmptrValid(v.nested)) return;
    // copy_enlightened_to_vmcs12(vmx) took evmcs->hv_clean_fields itself
    const clean = evmcsL0ReadU32(ctx, w, v, EVMCS.HV_CLEAN_FIELDS_OFFSET) ?? 0;
    ctx.profile.ops.copy_enlightened_to_vmcs12(ctx, w, v, clean);
  },
};

export default path;
