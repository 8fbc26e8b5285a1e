/**
 * d048c098218e "KVM: nVMX: fix msr bitmaps to prevent L2 from accessing L0
 * x2APIC" (2016), nested_vmx_merge_msr_bitmap.
 *
 * Before the fix the merge only ever disabled x2APIC intercepts in the
 * nested bitmap. L1 could enable the APIC virtualization controls for one
 * entry (opening TPR, EOI, SELF_IPI and the APIC-register reads), then turn
 * them off: the intercepts were never put back, and L2 reached L0's x2APIC
 * MSRs directly. Since then the merge first intercepts the whole x2APIC range
 * and opens only what vmcs12's controls make safe.
 *
 * The plugin is KVM's merge whose x2APIC part only clears bits.
 */
import { AREAS, MsrBitmapPath, explainBits } from '@nvx/emulator';
import { X2APIC_RANGES, mergeOnlyClearing, nestedUsesMsrBitmaps } from './msr-bitmap-lib';

const merge = AREAS['msr-bitmap'].paths.get('merge') as MsrBitmapPath;

const path: MsrBitmapPath = {
  ...merge,
  name: 'bug-d048c098218e',
  summary: 'merge whose x2APIC part only clears intercepts (before 2016): openings from an earlier entry with APIC virtualization stay',
  prepare(ctx, w, v) {
    if (!nestedUsesMsrBitmaps(v)) return false;
    if (!mergeOnlyClearing(ctx, w, v, X2APIC_RANGES)) return false;
    v.nested.forceMsrBitmapRecalc = false;
    return true;
  },
  explain: (w, v, h) => explainBits(w, v, h.msr, h.write),
};

export default path;
