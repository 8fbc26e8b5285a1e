/**
 * 14aa61d0a9eb "nVMX x86: Check VMX-preemption timer controls on vmentry
 * of L2 guests", nested_check_vm_exit_controls (then check_vmentry_prereqs).
 *
 * The SDM's checks on VM-exit controls: if "activate VMX-preemption timer"
 * is 0, "save VMX-preemption timer value" must be 0 too, else VMfailValid 7.
 * KVM entered L2 with that combination. (The check was dropped again by the
 * reorganisation 461b4ba4c7ad and put back by "KVM: nVMX: Restore a
 * preemption timer consistency check" before v5.0.)
 *
 * The patch runs nested_vmx_check_controls with the save control clear, so
 * the other checks are unchanged, and puts L1's controls back.
 */
import { PIN_BASED, VMCS, VM_EXIT } from '@nvx/arch';
import { vmcs12Get, vmcs12Set } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const SAVE = BigInt(VM_EXIT.SAVE_VMX_PREEMPTION_TIMER);

const patch: Patch = {
  kind: 'patch',
  name: 'bug-14aa61d0a9eb',
  summary: 'nested VM-entry accepts "save VMX-preemption timer value" without "activate VMX-preemption timer" (before 2019)',
  ops: {
    nested_vmx_check_controls: (orig) => (ctx: Ctx, w: World, v: Vcpu) => {
      const n = v.nested;
      const exit = vmcs12Get(n, VMCS.VM_EXIT_CONTROLS);
      if (!(exit & SAVE) || vmcs12Get(n, VMCS.PIN_BASED_VM_EXEC_CONTROL) & BigInt(PIN_BASED.VMX_PREEMPTION_TIMER)) return orig(ctx, w, v);
      vmcs12Set(ctx, n, VMCS.VM_EXIT_CONTROLS, exit & ~SAVE);
      const ok = orig(ctx, w, v);
      vmcs12Set(ctx, n, VMCS.VM_EXIT_CONTROLS, exit);
      return ok;
    },
  },
};

export default patch;
