/**
 * 9d2dcfb82db1 "KVM: x86: Remove ordering check b/w MSR_PLATFORM_INFO and
 * MISC_FEATURES_ENABLES", kvm_set_msr_common.
 *
 * A host-initiated write of MSR_PLATFORM_INFO that cleared the
 * CPUID-faulting support bit (bit 31) was refused while the guest had
 * CPUID faulting enabled in MSR_MISC_FEATURES_ENABLES:
 *   if (!msr_info->host_initiated ||
 *       (!(data & MSR_PLATFORM_INFO_CPUID_FAULT) && cpuid_fault_enabled(vcpu)))
 *           return 1;
 * so a VMM restoring MSRs in an order of its own could fail KVM_SET_MSRS.
 * KVM enforces no such ordering between other MSRs; the fix keeps only the
 * host_initiated check.
 *
 * The patch wraps do_set_msr (KVM_SET_MSRS of one MSR) and puts the check
 * back.
 */
import { MSR, MSR_PLATFORM_INFO_CPUID_FAULT } from '@nvx/arch';
import { Ctx, Patch, Vcpu, World, ignored } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-9d2dcfb82db1',
  summary: 'kvm_set_msr_common refuses a host write clearing MSR_PLATFORM_INFO bit 31 while CPUID faulting is enabled (before v6.13)',
  ops: {
    do_set_msr: (orig) => (ctx: Ctx, w: World, v: Vcpu, msr: number, value: bigint) => {
      // cpuid_fault_enabled(vcpu): msr_misc_features_enables & MSR_MISC_FEATURES_ENABLES_CPUID_FAULT
      const faulting = (v.cpuidFault.miscFeaturesEnables & 1n) !== 0n;
      if (msr === MSR.MSR_PLATFORM_INFO && (value & BigInt(MSR_PLATFORM_INFO_CPUID_FAULT)) === 0n && faulting)
        return ignored(`KVM refuses MSR_PLATFORM_INFO = 0x${value.toString(16)}: clearing CPUID-faulting support while the guest has faulting enabled`);
      return orig(ctx, w, v, msr, value);
    },
  },
};

export default patch;
