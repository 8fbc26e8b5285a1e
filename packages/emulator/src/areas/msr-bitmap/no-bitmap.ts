import type { MsrBitmapPath } from '../../paths';
import { explainBits } from './merge-common';

/**
 * Reference (KVM before 2015, and KVM's fallback whenever the merge fails):
 * L2 runs without an MSR bitmap; every RDMSR/WRMSR exits to L0, which reads
 * L1's bitmap in guest memory at that moment to decide who handles it.
 */
export const noBitmap: MsrBitmapPath = {
  area: 'msr-bitmap',
  name: 'no-bitmap',
  summary: 'vmcs02 without MSR bitmaps: every L2 MSR access exits to L0, which consults L1\'s bitmap at exit time',
  prepare: () => false,
  explain: (w, v, h) => explainBits(w, v, h.msr, h.write),
};
