import type { MsrBitmapPath } from '../../paths';
import { explainBits, mergeMsrBitmap, nestedUsesMsrBitmaps } from './merge-common';

/** KVM's merge on every nested VM-entry (nested_vmx_prepare_msr_bitmap without the eVMCS shortcut). */
export const merge: MsrBitmapPath = {
  area: 'msr-bitmap',
  name: 'merge',
  summary: 'merge vmcs01 and L1\'s bitmap into vmcs02 on every nested entry (allow-list, x2APIC rules)',
  prepare(ctx, w, v) {
    if (!nestedUsesMsrBitmaps(v)) return false;
    if (!mergeMsrBitmap(ctx, w, v)) return false;
    v.nested.forceMsrBitmapRecalc = false;
    return true;
  },
  explain: (w, v, h) => explainBits(w, v, h.msr, h.write),
};
