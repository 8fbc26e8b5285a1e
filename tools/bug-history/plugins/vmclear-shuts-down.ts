/**
 * 587d7e72aedc "kvm: nVMX: VMCLEAR should not cause the vCPU to shut down",
 * handle_vmclear.
 *
 * VMCLEAR clears the launch state in the VMCS region in memory. When no
 * memslot backed the operand's page (nested_get_page failed), KVM made a
 * KVM_REQ_TRIPLE_FAULT request "before doing any more damage": the vCPU
 * shut down (KVM_EXIT_SHUTDOWN). The SDM's VMCLEAR writes the launch state
 * only if the VMCS is in memory; since the fix a failed write is ignored and
 * VMCLEAR succeeds.
 *
 * The patch wraps handle_vmclear: after the operand checks, an operand no
 * memslot backs releases vmcs12 if it is the current one and shuts the vCPU
 * down, as the old code did.
 */
import { INVALID_GPA } from '@nvx/arch';
import { gfnToHva, gpaToGfn, pageAddressValid } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-587d7e72aedc',
  summary: 'handle_vmclear shuts the vCPU down (triple fault) when the VMCLEAR operand is not in guest memory (before 2018)',
  ops: {
    handle_vmclear: (orig) => (ctx: Ctx, w: World, v: Vcpu, gpa: bigint) => {
      const n = v.nested;
      // the checks before the write (VMX operation, alignment and MAXPHYADDR, the VMXON pointer) and an
      // eVMCS operand (nested_evmcs_handle_vmclear, which came later and writes nothing) are left as they are
      if (!n.vmxon || !pageAddressValid(gpa) || gpa === n.vmxonPtr || (w.config.evmcs && n.vpAssistEvmcs !== INVALID_GPA)) return orig(ctx, w, v, gpa);
      if (gfnToHva(w.mem, gpaToGfn(gpa)) >= 0) return orig(ctx, w, v, gpa);
      if (gpa === n.currentVmptr) ctx.profile.ops.nested_release_vmcs12(ctx, w, v);
      // page = nested_get_page(vcpu, vmptr); if (page == NULL) kvm_make_request(KVM_REQ_TRIPLE_FAULT, vcpu);
      return { k: 'userspace', exit: 'shutdown' };
    },
  },
};

export default patch;
