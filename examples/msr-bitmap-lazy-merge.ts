/**
 * An example plugin path: a lazier vmcs02 MSR-bitmap merge, written the way
 * a developer would try an optimization against nvx before writing it in
 * nested.c.
 *
 * KVM's `merge` rebuilds vmcs02's bitmap from vmcs01's and L1's at every
 * nested VM-entry. `merge-tracked` (seed 001) avoids that by write-tracking
 * L1's bitmap page. This path needs no write tracking: it keeps a copy of
 * L1's bitmap page as the last merge read it and, at the next entry,
 * compares the page with the copy (a 4 KiB compare instead of a merge). It
 * merges again when the page differs, when vmcs12's MSR_BITMAP address or
 * its APIC-virtualization controls changed, or when L0 set
 * force_msr_bitmap_recalc (its own vmcs01 intercepts changed, or a new
 * vmcs12 or eVMCS became current). That is everything the merge reads, so
 * the merged bitmap is always the one KVM's merge would build: nvx finds no
 * divergence (see examples/README.md).
 *
 *   npx nvx diff traces/scenarios/l0-intercept-change-in-l2.nvx \
 *     --path-module examples/msr-bitmap-lazy-merge.ts --profile msr-bitmap=lazy-merge
 */
import { CPU_BASED, VMCS } from '@nvx/arch';
import { MsrBitmapPath, NESTED_PAGE, PAGE_ACCESS, Vcpu, explainBits, mergeMsrBitmap, nestedPageGpa, vmcs12Get, vmcs12Get32 } from '@nvx/emulator';

/** The path's private state on each vCPU (plain data; the copy is replaced whole, never written in place). */
interface LazyState {
  /** L1's bitmap page as the last successful merge read it; null: merge at the next entry */
  copy: Uint8Array | null;
  /** vmcs12's MSR_BITMAP address and secondary controls (as in effect) at that merge */
  gpa: bigint;
  secondary: bigint;
}

const state = (v: Vcpu) => v.areas['msr-bitmap'] as LazyState;

/** The merge reads the secondary controls only while the primary controls activate them. */
function secondaryInEffect(v: Vcpu): bigint {
  return vmcs12Get32(v.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS ? vmcs12Get(v.nested, VMCS.SECONDARY_VM_EXEC_CONTROL) : 0n;
}

function samePage(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

const lazyMerge: MsrBitmapPath = {
  area: 'msr-bitmap',
  name: 'lazy-merge',
  summary: "merge only when L1's bitmap page differs from a copy kept at the last merge, its address or APIC controls changed, or L0 forced a rebuild",
  init: (): LazyState => ({ copy: null, gpa: -1n, secondary: 0n }),

  prepare(ctx, w, v) {
    const n = v.nested;
    // vmcs12 without CPU_BASED_USE_MSR_BITMAPS: vmcs02 runs without a bitmap (every access exits)
    if (!(vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.USE_MSR_BITMAPS)) return false;
    const s = state(v);
    const gpa = vmcs12Get(n, VMCS.MSR_BITMAP);
    const secondary = secondaryInEffect(v);
    // L1's page as L0 maps it (through the selected guest-pages path)
    const page = ctx.profile.paths['guest-pages'].l0Page(ctx, w, v, NESTED_PAGE.MSR_BITMAP, nestedPageGpa(v, NESTED_PAGE.MSR_BITMAP), PAGE_ACCESS.READ);
    if (page && s.copy && !n.forceMsrBitmapRecalc && gpa === s.gpa && secondary === s.secondary && samePage(page, s.copy)) {
      ctx.cost.msrBitmapMergeSkips++;
      return true;
    }
    if (!mergeMsrBitmap(ctx, w, v)) {
      s.copy = null;
      return false;
    }
    n.forceMsrBitmapRecalc = false;
    s.copy = page ? page.slice() : null;
    s.gpa = gpa;
    s.secondary = secondary;
    return true;
  },

  explain: (w, v, hint) => ({ ...explainBits(w, v, hint.msr, hint.write), 'lazy-merge copy kept': String(state(v).copy !== null) }),
};

export default lazyMerge;
