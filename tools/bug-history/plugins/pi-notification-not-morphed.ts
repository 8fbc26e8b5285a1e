/**
 * 25bb2cf97139 "KVM: nVMX: Morph notification vector IRQ on nested VM-Enter
 * to pending PI", nested_vmx_enter_non_root_mode /
 * vmx_complete_nested_posted_interrupt.
 *
 * A posted-interrupt notification that reaches the vCPU while L1, not L2,
 * runs is an ordinary interrupt for L1: its vector (vmcs12's
 * POSTED_INTR_NV) becomes pending in L1's IRR, and the descriptor is not
 * processed. On hardware L1 enters L2 with that interrupt pending and the
 * CPU processes the descriptor as soon as L2 runs. KVM did not: L2 ran with
 * the posted vector still in the PIR and ON set, until some later
 * notification. Since this commit a successful nested VM-entry turns a
 * pending interrupt that matches L2's notification vector into a pending
 * posted interrupt (nested.pi_pending), completed before L2 runs.
 *
 * The patch drops that conversion: the notification L1 got is forgotten at
 * the entry.
 */
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-25bb2cf97139',
  summary: "a notification L1 took before a nested VM-entry is not processed for L2 at the entry (before 2020)",
  ops: {
    vmx_complete_nested_posted_interrupt: () => (_ctx: Ctx, _w: World, v: Vcpu) => {
      v.nested.piNotificationPending = false;
    },
  },
};

export default patch;
