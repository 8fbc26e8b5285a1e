import { SHADOW_FIELDS_BEFORE_2019, shadowingPath } from './common';

/**
 * KVM before seed 002 (until 5.2): with VMWRITE-any-field exposed, the
 * VMWRITE bitmap is the VMREAD bitmap, so L1 writes the read-only-shadowed
 * fields without exit and copy_shadow_to_vmcs12 copies both lists on every
 * nested VM-entry; with it hidden, the stricter VMWRITE bitmap is used only so
 * that such writes fail. GUEST_CS_AR_BYTES and GUEST_SS_AR_BYTES are
 * read/write shadowed.
 */
export const shadowCopyAll = shadowingPath({
  name: 'copy-all',
  summary: 'shadow VMCS; RO fields writable without exit (VMWRITE-any-field), both lists copied to vmcs12 on every entry; AR_BYTES RW (before seed 002)',
  lists: SHADOW_FIELDS_BEFORE_2019,
  vmwriteBitmapIsReadBitmap: true,
  copyRoToVmcs12: true,
  mirrorRo: false,
});
