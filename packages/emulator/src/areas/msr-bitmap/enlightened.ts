import { EVMCS, HV_ENLIGHTENMENTS_CONTROL, HV_VMX_ENLIGHTENED_CLEAN_FIELD } from '@nvx/arch';
import { evmcsReadU32, evmptrValid } from '../../evmcs';
import type { MsrBitmapPath } from '../../paths';
import { explainBits, mergeMsrBitmap, nestedUsesMsrBitmaps } from './merge-common';

/**
 * Seed 000 (KVM since 5.17): skip the rebuild when L1 uses an eVMCS with the
 * enlightened MSR bitmap and tells, through the MSR_BITMAP clean bit, that
 * neither its bitmap nor the pointer changed, and nothing on L0's side forced
 * a rebuild. The eVMCS fields are read from L1 memory at entry time.
 */
export const enlightened: MsrBitmapPath = {
  area: 'msr-bitmap',
  name: 'enlightened',
  summary: 'merge, but skip it when the eVMCS msr_bitmap enlightenment and MSR_BITMAP clean bit say nothing changed and force_msr_bitmap_recalc is clear',
  prepare(ctx, w, v) {
    const n = v.nested;
    if (!nestedUsesMsrBitmaps(v)) return false;
    if (!n.forceMsrBitmapRecalc && evmptrValid(n)) {
      const ctl = evmcsReadU32(w, n.hvEvmcsVmptr, EVMCS.HV_ENLIGHTENMENTS_CONTROL_OFFSET) ?? 0;
      const clean = evmcsReadU32(w, n.hvEvmcsVmptr, EVMCS.HV_CLEAN_FIELDS_OFFSET) ?? 0;
      if (ctl & HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP && clean & HV_VMX_ENLIGHTENED_CLEAN_FIELD.MSR_BITMAP) {
        ctx.cost.msrBitmapMergeSkips++;
        return true;
      }
    }
    if (!mergeMsrBitmap(ctx, w, v)) return false;
    n.forceMsrBitmapRecalc = false;
    return true;
  },
  explain: (w, v, h) => explainBits(w, v, h.msr, h.write),
};
