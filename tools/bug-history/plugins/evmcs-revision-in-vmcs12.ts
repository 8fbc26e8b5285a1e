/**
 * 52ad7eb3d668 "KVM: nVMX: vmcs12 revision_id is always VMCS12_REVISION even
 * when copied from eVMCS", copy_enlightened_to_vmcs12.
 *
 * copy_enlightened_to_vmcs12 copied the eVMCS's revision_id (the eVMCS
 * version, KVM_EVMCS_VERSION) into vmcs12's header. vmx_get_nested_state
 * hands vmcs12 to the VMM as it is, and vmx_set_nested_state refuses a
 * vmcs12 whose revision is not VMCS12_REVISION: a vCPU that ran L2 on an
 * eVMCS could not be restored (KVM_SET_NESTED_STATE failed with EINVAL).
 * The fix drops the copy; vmcs12's revision is always VMCS12_REVISION.
 *
 * The model's vmcs12 keeps no header: vmx_get_nested_state writes the saved
 * header. The patch wraps vmx_get_nested_state and puts the eVMCS's
 * revision_id into the saved vmcs12 header while an eVMCS is mapped (every
 * enlightened VM-entry and every save copies the eVMCS into vmcs12).
 */
import { EVMCS } from '@nvx/arch';
import { Ctx, Patch, Vcpu, World, evmcsL0ReadU32, evmptrValid } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-52ad7eb3d668',
  summary: "copy_enlightened_to_vmcs12 copies the eVMCS revision_id into vmcs12 (before 2018): KVM_SET_NESTED_STATE refuses the saved vmcs12",
  ops: {
    vmx_get_nested_state: (orig) => (ctx: Ctx, w: World, v: Vcpu) => {
      const out = orig(ctx, w, v);
      if (!evmptrValid(v.nested)) return out;
      // vmcs12->hdr.revision_id = evmcs->revision_id
      const rev = evmcsL0ReadU32(ctx, w, v, EVMCS.REVISION_ID_OFFSET);
      if (rev !== null) out.vmcs12 = { ...out.vmcs12, hdr: (out.vmcs12.hdr & 0x80000000) | (rev & 0x7fffffff) };
      return out;
    },
  },
};

export default patch;
