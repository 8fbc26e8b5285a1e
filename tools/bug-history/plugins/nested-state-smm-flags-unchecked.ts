/**
 * 5bea5123cbf0 "KVM: VMX: check nested state and CR4.VMXE against SMM",
 * vmx_set_nested_state.
 *
 * SMM temporarily disables VMX: the SMM part of the nested state
 * (smm.flags: SMM_VMXON, SMM_GUEST_MODE) describes a vCPU inside SMM and
 * must be zero outside it. KVM_SET_NESTED_STATE did not check that: a state
 * with SMM_VMXON for a vCPU outside SMM was accepted and left the vCPU with
 * nested.vmxon cleared and smm.vmxon set, waiting for an RSM that never
 * comes, so L1's next VMX instruction was #UD (syzkaller found WARNs around
 * it). Since this commit vmx_set_nested_state refuses it:
 *   if (is_smm(vcpu) ? kvm_state->flags : kvm_state->vmx.smm.flags) return -EINVAL;
 *   if (SMM_GUEST_MODE && !SMM_VMXON) return -EINVAL;
 *
 * The patch puts back the half for a vCPU outside SMM: the state is
 * restored without its SMM flags, then SMM_VMXON takes VMX operation away
 * as the old code did (the model keeps no smm.vmxon to restore at RSM).
 */
import { INVALID_GPA } from '@nvx/arch';
import { KVM_STATE_NESTED_GUEST_MODE, KVM_STATE_NESTED_SMM_GUEST_MODE, KVM_STATE_NESTED_SMM_VMXON } from '@nvx/emulator';
import type { Ctx, NestedStateHeader, Patch, UserNestedState, Vcpu, World } from '@nvx/emulator';

const SMM_FLAGS = KVM_STATE_NESTED_SMM_GUEST_MODE | KVM_STATE_NESTED_SMM_VMXON;

const patch: Patch = {
  kind: 'patch',
  name: 'bug-5bea5123cbf0',
  summary: 'KVM_SET_NESTED_STATE accepts SMM flags for a vCPU outside SMM (before 2018)',
  ops: {
    vmx_set_nested_state: (orig) => (ctx: Ctx, w: World, v: Vcpu, header: NestedStateHeader, data: UserNestedState) => {
      const h = header;
      // the checks that were there before (vmxon_pa -1 with SMM flags, unknown SMM flags,
      // SMM_GUEST_MODE with GUEST_MODE) and a vCPU in SMM go to the current code unchanged
      const oldChecksPass = h.vmxon !== INVALID_GPA && !(h.smm & ~SMM_FLAGS) && !(h.smm & KVM_STATE_NESTED_SMM_GUEST_MODE && h.flags & KVM_STATE_NESTED_GUEST_MODE);
      if (!h.smm || v.cpuidFault.smm || !oldChecksPass) return orig(ctx, w, v, h, data);
      const out = orig(ctx, w, v, { ...h, smm: 0 }, data);
      // the old restore: "if (smm.flags & SMM_VMXON) { nested.smm.vmxon = true; nested.vmxon = false; }"
      if (out.k === 'ok' && h.smm & KVM_STATE_NESTED_SMM_VMXON) v.nested.vmxon = false;
      return out;
    },
  },
};

export default patch;
