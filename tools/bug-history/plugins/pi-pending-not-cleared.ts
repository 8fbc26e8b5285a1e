/**
 * "KVM: nVMX: Unconditionally clear nested.pi_pending on nested VM-Enter"
 * (2021), prepare_vmcs02_early / vmx_complete_nested_posted_interrupt.
 *
 * nested.pi_pending (a posted-interrupt notification L1 received while L2
 * was not running, to be completed for L2 at the next entry) was cleared at
 * a nested VM-entry only when the new vmcs12 used posted interrupts. Left
 * set by an entry into an L2 without them, it was picked up at a later entry
 * into an L2 with them, whose descriptor was then processed without any
 * notification for it. The fix clears the flag at every nested VM-entry.
 *
 * The patch wraps the completion: an entry into an L2 without posted
 * interrupts leaves the flag alone.
 */
import { NESTED_PAGE, apicPagesInUse } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-pi-pending-not-cleared',
  summary: 'a nested VM-entry without posted interrupts leaves nested.pi_pending set (before 2021)',
  ops: {
    vmx_complete_nested_posted_interrupt: (orig) => (ctx: Ctx, w: World, v: Vcpu) => {
      if (!(apicPagesInUse(v) & (1 << NESTED_PAGE.PI_DESC))) return; // the old code cleared it only with posted interrupts
      orig(ctx, w, v);
    },
  },
};

export default patch;
