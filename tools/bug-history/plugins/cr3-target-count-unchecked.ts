/**
 * c7c2c709b60e "kvm: nVMX: Validate CR3 target count on nested VM-entry",
 * nested_check_vm_execution_controls (then in vmx.c, check_vmentry_prereqs).
 *
 * The SDM's checks on VMX controls: the CR3-target count must not exceed
 * the number of CR3-target values the processor supports (bits 24:16 of
 * IA32_VMX_MISC), else VMfailValid 7. KVM did not check the count and
 * entered L2 with it; since this commit the entry fails:
 *   if (vmcs12->cr3_target_count > nested_cpu_vmx_misc_cr3_count(vcpu)) return -EINVAL;
 *
 * The patch runs nested_vmx_check_controls with a count of 0 (always
 * valid), so the other checks are unchanged, and puts L1's count back.
 */
import { VMCS } from '@nvx/arch';
import { vmcs12Get, vmcs12Set } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-c7c2c709b60e',
  summary: 'nested VM-entry does not check the CR3-target count against IA32_VMX_MISC (before 2017)',
  ops: {
    nested_vmx_check_controls: (orig) => (ctx: Ctx, w: World, v: Vcpu) => {
      const n = v.nested;
      const count = vmcs12Get(n, VMCS.CR3_TARGET_COUNT);
      if (count === 0n) return orig(ctx, w, v);
      vmcs12Set(ctx, n, VMCS.CR3_TARGET_COUNT, 0n);
      const ok = orig(ctx, w, v);
      vmcs12Set(ctx, n, VMCS.CR3_TARGET_COUNT, count);
      return ok;
    },
  },
};

export default patch;
