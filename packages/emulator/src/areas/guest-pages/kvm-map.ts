import type { Ctx } from '../../ctx';
import { gfnToHva, gpaToGfn } from '../../memory';
import type { Vcpu, World } from '../../state';
import type { GuestPagesPath } from '../../paths';
import { NESTED_PAGE, PAGE_ACCESS } from '../../nested-pages';
import { APIC_PAGES, PAGE_NAMES, currentPage, currentPfn, describeBacking, nestedPageGpa, pfnBytes } from '../../nested-pages';
import { countMap, countUnmap } from '../../map-costs';

/**
 * Today's KVM (seed 003's "before"): kvm_vcpu_map at nested VM-entry for the
 * APIC-access page, the virtual-APIC page and the posted-interrupt
 * descriptor, kvm_vcpu_unmap at nested VM-exit; the eVMCS mapped by the
 * enlightened VMPTRLD until nested_release_evmcs; L1's MSR bitmap mapped and
 * unmapped inside nested_vmx_prepare_msr_bitmap, and read with
 * kvm_vcpu_read_guest by the exit-time lookup.
 *
 * Nothing invalidates a map: after a memslot change or a migration, L0 and
 * the CPU keep using the pfn captured when the page was mapped. A map of
 * memory with struct page pins it, so the host cannot migrate it while it is
 * mapped (a zap still drops it from the host page tables); memory without
 * struct page (config.unmanagedMemory) is neither pinned nor tracked, and
 * every map is a memremap.
 */
export interface KvmMapState {
  /** the pfn of each page's kvm_host_map (index NESTED_PAGE.x), -1 when unmapped */
  pfn: number[];
  /** the host virtual page it was mapped from */
  hva: number[];
}

function st(v: Vcpu): KvmMapState {
  return v.areas['guest-pages'] as KvmMapState;
}

/** kvm_vcpu_map: resolve gfn -> pfn now (faulting in); false when no memslot covers it. */
function map(ctx: Ctx, w: World, s: KvmMapState, p: number, gpa: bigint): boolean {
  const pfn = currentPfn(w, gpa);
  if (pfn < 0) return false;
  countMap(ctx, w);
  s.pfn[p] = pfn;
  s.hva[p] = gfnToHva(w.mem, gpaToGfn(gpa));
  return true;
}

function unmap(ctx: Ctx, w: World, s: KvmMapState, p: number): void {
  if (s.pfn[p] < 0) return;
  countUnmap(ctx, w);
  s.pfn[p] = -1;
  s.hva[p] = -1;
}

export const kvmMap: GuestPagesPath = {
  area: 'guest-pages',
  name: 'kvm-map',
  summary: 'kvm_vcpu_map at nested entry and kvm_vcpu_unmap at exit, the eVMCS mapped from enlightened VMPTRLD to release; no invalidation',
  init: (): KvmMapState => ({ pfn: [-1, -1, -1, -1, -1], hva: [-1, -1, -1, -1, -1] }),
  l0Page(ctx, w, v, p, gpa, access) {
    if (p === NESTED_PAGE.MSR_BITMAP) {
      // The merge maps and unmaps around its reads; the exit-time lookup is a kvm_vcpu_read_guest.
      if (access !== PAGE_ACCESS.PEEK) {
        countMap(ctx, w);
        countUnmap(ctx, w);
      }
      return currentPage(ctx, w, gpa, access);
    }
    const pfn = st(v).pfn[p];
    // Outside a map's lifetime KVM reads guest memory directly (kvm_vcpu_read_guest).
    return pfn >= 0 ? pfnBytes(ctx, w, pfn, access) : currentPage(ctx, w, gpa, access);
  },
  hwPfn: (_ctx, _w, v, p) => st(v).pfn[p],
  getVmcs12Pages(ctx, w, v, inUse) {
    const s = st(v);
    for (const p of APIC_PAGES) {
      unmap(ctx, w, s, p);
      if (inUse & (1 << p)) map(ctx, w, s, p, nestedPageGpa(v, p));
    }
  },
  nestedVmexit(ctx, w, v) {
    const s = st(v);
    for (const p of APIC_PAGES) unmap(ctx, w, s, p);
  },
  mapEvmcs(ctx, w, v, gpa) {
    const s = st(v);
    unmap(ctx, w, s, NESTED_PAGE.EVMCS);
    return map(ctx, w, s, NESTED_PAGE.EVMCS, gpa) ? pfnBytes(ctx, w, s.pfn[NESTED_PAGE.EVMCS], PAGE_ACCESS.READ) : null;
  },
  releaseEvmcs(ctx, w, v) {
    unmap(ctx, w, st(v), NESTED_PAGE.EVMCS);
  },
  pins(w, hva) {
    if (w.config.unmanagedMemory) return false;
    for (const v of w.vcpus) {
      const s = st(v);
      for (let p = 0; p < s.pfn.length; p++) if (s.pfn[p] >= 0 && s.hva[p] === hva) return true;
    }
    return false;
  },
  explain(w, v) {
    const s = st(v);
    const out: Record<string, string> = {};
    for (let p = 1; p < s.pfn.length; p++) {
      if (s.pfn[p] < 0) continue;
      const gpa = nestedPageGpa(v, p as 1);
      const cur = describeBacking(w, gpa);
      out[`${PAGE_NAMES[p]} map`] = `pfn 0x${s.pfn[p].toString(16)} (gpa 0x${gpa.toString(16)}: ${cur} now)`;
    }
    return out;
  },
};
