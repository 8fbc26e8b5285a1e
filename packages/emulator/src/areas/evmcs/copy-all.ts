import { HV_VMX_ENLIGHTENED_CLEAN_FIELD } from '@nvx/arch';
import type { EvmcsPath } from '../../paths';

/** Reference: copy every group from the eVMCS on every nested VM-entry, whatever the clean bits say. */
export const copyAll: EvmcsPath = {
  area: 'evmcs',
  name: 'copy-all',
  summary: 'copy every eVMCS field group into vmcs12 on every entry (clean bits ignored)',
  groupsToCopy: () => HV_VMX_ENLIGHTENED_CLEAN_FIELD.ALL,
};
