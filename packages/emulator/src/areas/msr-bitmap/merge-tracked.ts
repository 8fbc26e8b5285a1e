import { CPU_BASED, INVALID_GPA, VMCS } from '@nvx/arch';
import { gpaToGfn } from '../../memory';
import type { Vcpu } from '../../state';
import { vmcs12Get, vmcs12Get32 } from '../../vmcs12';
import type { MsrBitmapPath } from '../../paths';
import { explainBits, mergeMsrBitmap, nestedUsesMsrBitmaps } from './merge-common';

/**
 * Seed 001 (steps 1-7): keep the merged bitmap and merge again only when it
 * may be stale: L1's bitmap page was written (the page is write-tracked), its
 * address changed, vmcs12's APIC-virtualization controls changed, the memory
 * behind it changed, or L0 forced a rebuild (vmcs01 changed, new vmcs12).
 */
export interface TrackedState {
  /** gfn of the write-tracked L1 bitmap page, -1 when none */
  trackedGfn: number;
  /** the tracked page was written since the last merge */
  dirty: boolean;
  /** vmcs12 MSR_BITMAP and secondary controls (as in effect: 0 without ACTIVATE_SECONDARY_CONTROLS) at the last merge */
  lastGpa: bigint;
  lastSecondary: bigint;
}

function st(v: Vcpu): TrackedState {
  return v.areas['msr-bitmap'] as TrackedState;
}

export const mergeTracked: MsrBitmapPath = {
  area: 'msr-bitmap',
  name: 'merge-tracked',
  summary: 'merge only when L1\'s bitmap page was written, its address or vmcs12\'s APIC controls changed, or L0 forced a rebuild',
  init: (): TrackedState => ({ trackedGfn: -1, dirty: true, lastGpa: INVALID_GPA, lastSecondary: 0n }),
  prepare(ctx, w, v) {
    const n = v.nested;
    if (!nestedUsesMsrBitmaps(v)) return false;
    const s = st(v);
    const gpa = vmcs12Get(n, VMCS.MSR_BITMAP);
    // The merge reads the secondary controls only through nested_cpu_has2, i.e. only while the
    // primary controls activate them: compare what is in effect, not the raw field.
    const secondary = vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS ? vmcs12Get(n, VMCS.SECONDARY_VM_EXEC_CONTROL) : 0n;
    if (!s.dirty && !n.forceMsrBitmapRecalc && gpa === s.lastGpa && secondary === s.lastSecondary) {
      ctx.cost.msrBitmapMergeSkips++;
      return true;
    }
    if (!mergeMsrBitmap(ctx, w, v)) {
      s.dirty = true;
      return false;
    }
    n.forceMsrBitmapRecalc = false;
    s.trackedGfn = gpaToGfn(gpa);
    s.dirty = false;
    s.lastGpa = gpa;
    s.lastSecondary = secondary;
    return true;
  },
  onGuestWrite(ctx, w, gfn) {
    for (const v of w.vcpus) {
      const s = st(v);
      if (s.trackedGfn === gfn) {
        if (!s.dirty) ctx.cost.msrBitmapWriteTraps++;
        s.dirty = true;
      }
    }
  },
  onHostMemory(_ctx, w) {
    for (const v of w.vcpus) st(v).dirty = true;
  },
  explain: (w, v, h) => ({ ...explainBits(w, v, h.msr, h.write), 'tracked page dirty': String(st(v).dirty) }),
};
