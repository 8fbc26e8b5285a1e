import { SHADOW_FIELDS_UPSTREAM, shadowingPath } from './common';

/**
 * Seed 002 (KVM since 5.3, "Intercept VMWRITEs to read-only shadow VMCS
 * fields"): VMWRITEs to RO-shadowed fields always exit; KVM writes them to
 * vmcs12 and mirrors them into the shadow VMCS so L1's next VMREAD, which
 * does not exit, sees them; copy_shadow_to_vmcs12 copies the RW fields only.
 * GUEST_CS_AR_BYTES and GUEST_SS_AR_BYTES are RO-shadowed.
 */
export const shadowInterceptRo = shadowingPath({
  name: 'intercept-ro',
  summary: 'shadow VMCS; VMWRITEs to RO fields exit and are mirrored into the shadow VMCS; only RW fields copied to vmcs12 on entry (seed 002)',
  lists: SHADOW_FIELDS_UPSTREAM,
  vmwriteBitmapIsReadBitmap: false,
  copyRoToVmcs12: false,
  mirrorRo: true,
});
