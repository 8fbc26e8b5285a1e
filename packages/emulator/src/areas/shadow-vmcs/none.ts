import type { ShadowVmcsPath } from '../../paths';

/**
 * Reference: no VMCS shadowing (KVM with enable_shadow_vmcs=0). Every L1
 * VMREAD and VMWRITE exits to L0 and is emulated against vmcs12; there is
 * no shadow VMCS to keep in sync.
 */
export const noShadow: ShadowVmcsPath = {
  area: 'shadow-vmcs',
  name: 'none',
  summary: 'no shadow VMCS: every L1 VMREAD and VMWRITE exits and is emulated against vmcs12',
  vmread: () => null,
  vmwrite: () => null,
  setCurrentVmptr: () => {},
  copyShadowToVmcs12: () => {},
  copyVmcs12ToShadow: () => {},
  emulatedVmwrite: () => {},
  release: () => {},
  free: () => {},
};
