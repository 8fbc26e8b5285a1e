/**
 * df2a69af85be "KVM: x86: allow KVM_STATE_NESTED_MTF_PENDING in kvm_state
 * flags", kvm_arch_vcpu_ioctl (KVM_SET_NESTED_STATE).
 *
 * 5ef8acbdd687 ("KVM: nVMX: Emulate MTF when performing instruction
 * emulation") made KVM_GET_NESTED_STATE report a pending monitor-trap-flag
 * exit with KVM_STATE_NESTED_MTF_PENDING, but the flag check of
 * KVM_SET_NESTED_STATE in x86.c still allowed only RUN_PENDING,
 * GUEST_MODE and EVMCS: the destination of a migration refused the state
 * the source had produced (-EINVAL). The fix adds the flag to the mask.
 *
 * The patch puts the old mask in front of vmx_set_nested_state (the model's
 * operation starts with x86.c's checks).
 */
import type { Ctx, NestedStateHeader, Patch, UserNestedState, Vcpu, World } from '@nvx/emulator';
import { KVM_NESTED_STATE_HEADER_SIZE, KVM_STATE_NESTED_EVMCS, KVM_STATE_NESTED_GUEST_MODE, KVM_STATE_NESTED_RUN_PENDING } from '@nvx/emulator';

/** the flags x86.c accepted before the fix */
const OLD_FLAGS = KVM_STATE_NESTED_RUN_PENDING | KVM_STATE_NESTED_GUEST_MODE | KVM_STATE_NESTED_EVMCS;

const patch: Patch = {
  kind: 'patch',
  name: 'bug-df2a69af85be',
  summary: 'KVM_SET_NESTED_STATE refuses KVM_STATE_NESTED_MTF_PENDING, which KVM_GET_NESTED_STATE reports (2020)',
  ops: {
    vmx_set_nested_state: (orig) => (ctx: Ctx, w: World, v: Vcpu, header: NestedStateHeader, data: UserNestedState) => {
      // x86.c, after the size check: "if (kvm_state.flags & ~(RUN_PENDING | GUEST_MODE | EVMCS)) break;" with r = -EINVAL
      if (header.size >= KVM_NESTED_STATE_HEADER_SIZE && header.flags & ~OLD_FLAGS) return { k: 'einval' };
      return orig(ctx, w, v, header, data);
    },
  },
};

export default patch;
