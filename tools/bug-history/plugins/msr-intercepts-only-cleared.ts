/**
 * 67f4b9969c30 "KVM: nVMX: Handle dynamic MSR intercept toggling",
 * nested_vmx_prepare_msr_bitmap.
 *
 * Before the fix the merge of the pass-through MSRs (FS/GS/KERNEL_GS base,
 * SPEC_CTRL, PRED_CMD, ...) only disabled intercepts in vmcs02, on the
 * assumption that neither L0 nor L1 ever starts intercepting an MSR again.
 * Both can: once an MSR had been passed through for one entry, a later
 * intercept by L1 (or by L0 in vmcs01) was never merged in, and L2 accessed
 * the register directly. The fix computes every merged bit from vmcs01 and
 * L1 at each merge.
 *
 * The plugin is KVM's merge whose pass-through part only clears bits (the
 * x2APIC part, fixed in 2016, stays as it is).
 */
import { NESTED_MERGED_MSRS, msrBitmapPosition } from '@nvx/arch';
import { AREAS, MsrBitmapPath, explainBits } from '@nvx/emulator';
import { ByteRanges, mergeOnlyClearing, nestedUsesMsrBitmaps } from './msr-bitmap-lib';

const merge = AREAS['msr-bitmap'].paths.get('merge') as MsrBitmapPath;

/** The bytes holding the merged MSRs' read and write bits. */
const MERGED_BYTES: ByteRanges = NESTED_MERGED_MSRS.flatMap((m) =>
  (['read', 'write'] as const)
    .filter((acc) => m[acc])
    .map((acc) => msrBitmapPosition(m.msr, acc))
    .filter((p): p is NonNullable<typeof p> => p !== null)
    .map((p) => [p.byte, p.byte + 1] as const),
);

const path: MsrBitmapPath = {
  ...merge,
  name: 'bug-67f4b9969c30',
  summary: 'merge whose pass-through MSR part only clears intercepts (before Nov 2021): a later intercept by L1 or L0 is never merged in',
  prepare(ctx, w, v) {
    if (!nestedUsesMsrBitmaps(v)) return false;
    if (!mergeOnlyClearing(ctx, w, v, MERGED_BYTES)) return false;
    v.nested.forceMsrBitmapRecalc = false;
    return true;
  },
  explain: (w, v, h) => explainBits(w, v, h.msr, h.write),
};

export default path;
