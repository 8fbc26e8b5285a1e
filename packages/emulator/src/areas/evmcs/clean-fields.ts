import { HV_VMX_ENLIGHTENED_CLEAN_FIELD } from '@nvx/arch';
import type { EvmcsPath } from '../../paths';

/** KVM today (seeds 000, 003): copy only the groups whose clean bit L1 left clear. */
export const cleanFields: EvmcsPath = {
  area: 'evmcs',
  name: 'clean-fields',
  summary: 'copy only the eVMCS groups whose hv_clean_fields bit is clear (copy_enlightened_to_vmcs12)',
  groupsToCopy: (clean) => ~clean & HV_VMX_ENLIGHTENED_CLEAN_FIELD.ALL,
};
