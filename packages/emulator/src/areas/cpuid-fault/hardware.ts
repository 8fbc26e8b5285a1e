import { MSR_MISC_FEATURES_ENABLES_CPUID_FAULT as FAULT } from '@nvx/arch';
import { guestHardwareBit } from '../../cpuid-fault';
import { msrSwitchingPath } from './switching';

/**
 * The 2019 series (v2, patch 2): while the guest runs, MSR 0x140 holds the
 * guest's faulting bit, written at vcpu_load when it differs from the
 * host's (and again when the guest changes it), the host's value restored
 * at vcpu_put. A faulting CPUID at CPL > 0 then raises #GP in the guest
 * without a VM-exit. The bit stays clear in SMM (KVM emulates the guest's
 * SMM, so the CPU would fault) and, in KVM's order, while L2 runs (KVM
 * reflects L2's CPUID to L1): the series as posted did neither.
 */
export const hardware = msrSwitchingPath(
  'hardware',
  "the guest's faulting bit in MSR 0x140 while it runs (WRMSR at load when host and guest differ, host's value back at put): faulting CPUIDs #GP without an exit",
  (w, v, host) => (host & ~FAULT) | guestHardwareBit(w, v),
);
