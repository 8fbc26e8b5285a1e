import type { GuestPagesPath } from '../../paths';
import { APIC_PAGES, PAGE_NAMES, apicPagesInUse, currentPage, currentPfn, describeBacking, nestedPageGpa } from '../../nested-pages';
import { NESTED_PAGE } from '../../nested-pages';

/**
 * Reference: translate gfn -> memslot -> hva -> pfn at every access, by L0
 * and by the CPU alike, so nothing can be stale. No mappings are kept, so
 * none are counted: this is the ideal the other paths are measured against,
 * not a design with a cost of its own.
 */
export const fresh: GuestPagesPath = {
  area: 'guest-pages',
  name: 'fresh',
  summary: 'translate gfn -> memslot -> host page at every access; the CPU always sees the page backing the gfn now',
  l0Page: (ctx, w, _v, _p, gpa, access) => currentPage(ctx, w, gpa, access),
  hwPfn: (_ctx, w, v, p) => currentPfn(w, nestedPageGpa(v, p)),
  getVmcs12Pages() {},
  nestedVmexit() {},
  mapEvmcs: (ctx, w, _v, gpa) => currentPage(ctx, w, gpa, 0),
  releaseEvmcs() {},
  explain(w, v) {
    const out: Record<string, string> = {};
    const inUse = apicPagesInUse(v);
    for (const p of APIC_PAGES) if (inUse & (1 << p)) out[PAGE_NAMES[p]] = `gpa 0x${nestedPageGpa(v, p).toString(16)}: ${describeBacking(w, nestedPageGpa(v, p))}`;
    if (v.nested.hvEvmcsVmptr !== 0xffffffffffffffffn) out[PAGE_NAMES[NESTED_PAGE.EVMCS]] = `gpa 0x${v.nested.hvEvmcsVmptr.toString(16)}: ${describeBacking(w, v.nested.hvEvmcsVmptr)}`;
    return out;
  },
};
