import { MSR_MISC_FEATURES_ENABLES_CPUID_FAULT as FAULT } from '@nvx/arch';
import { msrSwitchingPath } from './switching';

/**
 * Reference (KVM today, with the leak fix of the 2019 series, patch 1):
 * the guest never runs with bit 0 set. A host value with the bit is cleared
 * at vcpu_load and restored at vcpu_put; every CPUID exits and L0 injects
 * the #GP when the guest's faulting applies.
 */
export const emulate = msrSwitchingPath(
  'emulate',
  'bit 0 clear while the guest runs (a host value with it is cleared at load and restored at put); every CPUID exits and L0 emulates the faulting',
  (_w, _v, host) => host & ~FAULT,
);
