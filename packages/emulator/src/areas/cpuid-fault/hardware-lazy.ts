import { MSR_MISC_FEATURES_ENABLES_CPUID_FAULT as FAULT } from '@nvx/arch';
import { guestHardwareBit } from '../../cpuid-fault';
import { msrSwitchingPath } from './switching';

/**
 * Seed 004's policy (Sean Christopherson's review, 2019-03-19): WRMSR only
 * when it is needed. The guest's value is installed only when the host's is
 * non-zero and differs; with a zero host value the MSR is left alone and
 * the always-on CPUID intercept emulates the guest's faulting.
 */
export const hardwareLazy = msrSwitchingPath(
  'hardware-lazy',
  "install the guest's faulting bit only when the host's MSR 0x140 is non-zero and differs (seed 004); with a zero host value the CPUID exit emulates it",
  (w, v, host) => (host === 0 ? 0 : (host & ~FAULT) | guestHardwareBit(w, v)),
);
