/**
 * 690dc03859e7 "KVM: x86: Ignore cpuid faulting in SMM", kvm_emulate_cpuid.
 *
 * CPUID faulting does not apply in SMM, but KVM injected #GP for a CPUID the
 * guest's SMM handler executed at CPL > 0 whenever the guest had faulting
 * enabled in MSR_MISC_FEATURES_ENABLES. The fix adds !is_smm(vcpu) to the
 * check.
 *
 * The plugin is the reference path (emulate: every CPUID exits, L0 decides)
 * with the check as it was.
 */
import { AREAS, CpuidFaultPath } from '@nvx/emulator';

const emulate = AREAS['cpuid-fault'].paths.get('emulate') as CpuidFaultPath;

const path: CpuidFaultPath = {
  ...emulate,
  name: 'bug-690dc03859e7',
  summary: "emulate whose kvm_emulate_cpuid faults a CPUID at CPL > 0 in SMM too (before 2026)",
  // cpuid_fault_enabled(vcpu) && !kvm_require_cpl(vcpu, 0), without the SMM exception
  cpuidExitFaults: (_w, v, cpl) => (v.cpuidFault.miscFeaturesEnables & 1n) !== 0n && cpl > 0,
};

export default path;
