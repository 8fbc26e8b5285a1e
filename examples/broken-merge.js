'use strict';
/**
 * An example plugin path with a bug nvx catches: the lazy merge of
 * examples/msr-bitmap-lazy-merge.ts, written in plain JavaScript, with one
 * thing forgotten. It skips the merge whenever L1's bitmap page and
 * vmcs12's MSR_BITMAP address are unchanged, but ignores
 * force_msr_bitmap_recalc: when L0 starts intercepting an MSR in vmcs01
 * (which L1 cannot know about), vmcs02 keeps passing it through, and L2
 * reads L0's register instead of its own value.
 *
 *   npx nvx diff traces/scenarios/l0-intercept-change-in-l2.nvx \
 *     --path-module examples/broken-merge.js --profile msr-bitmap=broken-merge
 *
 * reports a bug divergence at the L2 RDMSR after the change (exit 1), and
 * `nvx bisect` on the same arguments names that event and the bitmaps'
 * bits behind it.
 */
const { CPU_BASED, VMCS } = require('@nvx/arch');
const { NESTED_PAGE, PAGE_ACCESS, explainBits, mergeMsrBitmap, nestedPageGpa, vmcs12Get, vmcs12Get32 } = require('@nvx/emulator');

function samePage(a, b) {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** @type {import('@nvx/emulator').MsrBitmapPath} */
module.exports = {
  area: 'msr-bitmap',
  name: 'broken-merge',
  summary: "lazy merge that skips when L1's bitmap page and address are unchanged, forgetting force_msr_bitmap_recalc (misses L0's own vmcs01 changes)",
  init: () => ({ copy: null, gpa: -1n }),

  prepare(ctx, w, v) {
    if (!(vmcs12Get32(v.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.USE_MSR_BITMAPS)) return false;
    const s = v.areas['msr-bitmap'];
    const gpa = vmcs12Get(v.nested, VMCS.MSR_BITMAP);
    const page = ctx.profile.paths['guest-pages'].l0Page(ctx, w, v, NESTED_PAGE.MSR_BITMAP, nestedPageGpa(v, NESTED_PAGE.MSR_BITMAP), PAGE_ACCESS.READ);
    // the bug: no look at v.nested.forceMsrBitmapRecalc (nor at vmcs12's APIC controls)
    if (page && s.copy && gpa === s.gpa && samePage(page, s.copy)) {
      ctx.cost.msrBitmapMergeSkips++;
      return true;
    }
    if (!mergeMsrBitmap(ctx, w, v)) {
      s.copy = null;
      return false;
    }
    v.nested.forceMsrBitmapRecalc = false;
    s.copy = page ? page.slice() : null;
    s.gpa = gpa;
    return true;
  },

  explain: (w, v, hint) => explainBits(w, v, hint.msr, hint.write),
};
