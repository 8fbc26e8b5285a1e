/**
 * e3fd8bda412e "KVM: nVMX: properly handle errors in
 * nested_vmx_handle_enlightened_vmptrld()", nested_vmx_run.
 *
 * The enlightened VMPTRLD done at VMLAUNCH/VMRESUME fails when the eVMCS the
 * VP assist page names cannot be mapped, or has a wrong revision. KVM then
 * returned to L1 without completing the instruction or reporting anything,
 * so L1 retried the same VMLAUNCH forever. Since the fix KVM does what
 * genuine Hyper-V does: #UD when the eVMCS cannot be mapped, VMfailInvalid
 * for a wrong revision.
 *
 * The patch wraps nested_vmx_run: when the enlightened VMPTRLD fails, the
 * instruction is left uncompleted (reported as not carried out).
 */
import { INVALID_GPA } from '@nvx/arch';
import { ignored } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-e3fd8bda412e',
  summary: 'a failed enlightened VMPTRLD leaves VMLAUNCH/VMRESUME uncompleted, without #UD or VMfailInvalid (before 2020)',
  ops: {
    nested_vmx_run: (orig) => (ctx: Ctx, w: World, v: Vcpu, launch: boolean) => {
      const out = orig(ctx, w, v, launch);
      const n = v.nested;
      const evmptrldFailed = w.config.evmcs && n.vpAssistEvmcs !== INVALID_GPA && n.hvEvmcsVmptr !== n.vpAssistEvmcs;
      if (evmptrldFailed && (out.k === 'ud' || out.k === 'vmfail-invalid')) return ignored('the enlightened VMPTRLD failed: the instruction is retried');
      return out;
    },
  },
};

export default patch;
