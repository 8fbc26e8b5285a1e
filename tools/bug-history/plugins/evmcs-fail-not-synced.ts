/**
 * b7685cfd5e96 "KVM: nVMX: Force enlightened VMCS sync from
 * nested_vmx_failValid()", nested_vmx_fail.
 *
 * A VMfailValid writes the error number to VM_INSTRUCTION_ERROR in vmcs12.
 * With an enlightened VMCS, L1 reads that field from the eVMCS, which KVM
 * only updated from vmcs12 after a nested VM-exit: after a failed
 * VMLAUNCH/VMRESUME L1 read a stale error. The fix requests the vmcs12 ->
 * eVMCS sync from nested_vmx_fail.
 *
 * The patch wraps nested_vmx_fail and takes the sync request back.
 */
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-b7685cfd5e96',
  summary: 'nested_vmx_fail does not request the vmcs12 -> eVMCS sync (before 2021): L1 reads a stale VM-instruction error',
  ops: {
    nested_vmx_fail: (orig) => (ctx: Ctx, w: World, v: Vcpu, error: number) => {
      const requested = v.nested.needVmcs12ToShadowSync;
      const out = orig(ctx, w, v, error);
      v.nested.needVmcs12ToShadowSync = requested;
      return out;
    },
  },
};

export default patch;
