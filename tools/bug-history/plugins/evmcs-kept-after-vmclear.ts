/**
 * 3b19b81acf30 "KVM: nVMX: Release enlightened VMCS on VMCLEAR",
 * nested_evmcs_handle_vmclear.
 *
 * VMCLEAR of the eVMCS in use left it mapped and current. The next
 * enlightened VMRESUME then did not see a new eVMCS, kept the clean fields
 * L1 had left, and copied nothing L1 changed after the VMCLEAR. Since the fix
 * VMCLEAR releases it, and the next entry maps it afresh with every clean
 * bit cleared.
 *
 * The patch makes VMCLEAR of the current eVMCS a no-op.
 */
import { INVALID_GPA } from '@nvx/arch';
import { OK } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-3b19b81acf30',
  summary: 'VMCLEAR of the eVMCS in use does not release it (before 2021): the next VMRESUME honours stale clean fields',
  ops: {
    handle_vmclear: (orig) => (ctx: Ctx, w: World, v: Vcpu, gpa: bigint) => {
      const n = v.nested;
      if (n.vmxon && w.config.evmcs && n.vpAssistEvmcs !== INVALID_GPA && gpa === n.hvEvmcsVmptr) return OK;
      return orig(ctx, w, v, gpa);
    },
  },
};

export default patch;
