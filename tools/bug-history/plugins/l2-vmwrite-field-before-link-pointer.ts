/**
 * dd2d6042b7f4 "kvm: nVMX: VMWRITE checks VMCS-link pointer before VMCS
 * field", handle_vmwrite.
 *
 * In VMX non-root operation, a VMWRITE with an invalid VMCS-link pointer
 * fails VMfailInvalid before the field is looked at (SDM, VMWRITE). KVM
 * checked the field first, so L2's VMWRITE of an unsupported field with the
 * link pointer at -1 gave VMfailValid 12.
 *
 * The patch wraps L2's VMWRITE: an unknown field fails VMfailValid 12 when L0
 * emulates the access, whatever the link pointer.
 */
import { VMCS, VMXERR, vmcsFieldByEncoding } from '@nvx/arch';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-dd2d6042b7f4',
  summary: "L2's emulated VMWRITE checks the field before the VMCS-link pointer (before 2019)",
  ops: {
    l2_vmwrite: (orig) => (ctx: Ctx, w: World, v: Vcpu, field: number, value: bigint) => {
      const ops = ctx.profile.ops;
      if (!vmcsFieldByEncoding(field) && !ops.nested_vmx_exit_handled_vmcs_access(ctx, w, v, field, VMCS.VMWRITE_BITMAP)) {
        ctx.cost.l0Exits++;
        return ops.nested_vmx_fail(ctx, w, v, VMXERR.UNSUPPORTED_VMCS_COMPONENT);
      }
      return orig(ctx, w, v, field, value);
    },
  },
};

export default patch;
