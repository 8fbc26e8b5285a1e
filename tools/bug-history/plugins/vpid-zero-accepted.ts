/**
 * f0d736547815 "nVMX x86: Check VPID value on vmentry of L2 guests",
 * nested_check_vm_execution_controls (then in vmx.c, check_vmentry_prereqs).
 *
 * The SDM's checks on VMX controls: with "enable VPID" set, the VPID field
 * must not be 0000H, else the VM-entry fails with VMfailValid 7 (invalid
 * control field). KVM did not check it and entered L2 with VPID 0, the VPID
 * that names the host (L1) itself. Since this commit KVM fails the entry:
 *   if (nested_cpu_has_vpid(vmcs12) && !vmcs12->virtual_processor_id) return -EINVAL;
 *
 * The patch runs nested_vmx_check_controls as if the VPID were non-zero, so
 * every other control check stays as it is.
 */
import { CPU_BASED, SECONDARY_EXEC, VMCS } from '@nvx/arch';
import { vmcs12Get, vmcs12Set } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-f0d736547815',
  summary: 'nested VM-entry does not check for VPID 0 with "enable VPID" set (before 2018)',
  ops: {
    nested_vmx_check_controls: (orig) => (ctx: Ctx, w: World, v: Vcpu) => {
      const n = v.nested;
      const cpu = vmcs12Get(n, VMCS.CPU_BASED_VM_EXEC_CONTROL);
      const sec = cpu & BigInt(CPU_BASED.ACTIVATE_SECONDARY_CONTROLS) ? vmcs12Get(n, VMCS.SECONDARY_VM_EXEC_CONTROL) : 0n;
      if (!(sec & BigInt(SECONDARY_EXEC.ENABLE_VPID)) || vmcs12Get(n, VMCS.VIRTUAL_PROCESSOR_ID) !== 0n) return orig(ctx, w, v);
      // the old checks never looked at the VPID: check the rest with a VPID that passes, then put L1's 0 back
      vmcs12Set(ctx, n, VMCS.VIRTUAL_PROCESSOR_ID, 1n);
      const ok = orig(ctx, w, v);
      vmcs12Set(ctx, n, VMCS.VIRTUAL_PROCESSOR_ID, 0n);
      return ok;
    },
  },
};

export default patch;
