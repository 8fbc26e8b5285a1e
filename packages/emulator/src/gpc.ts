/**
 * `struct gfn_to_pfn_cache` and its operations, after virt/kvm/pfncache.c:
 * kvm_gpc_init, kvm_gpc_activate, kvm_gpc_check, kvm_gpc_refresh (with
 * hva_to_pfn_retry's check against an invalidation in progress,
 * mmu_notifier_retry_cache), gfn_to_pfn_cache_invalidate_start and
 * kvm_gpc_deactivate. The core reaches them through the operations table
 * (kvm_gpc_*), so a patch can change any of them.
 *
 * A cache is plain data (it lives in an immer draft or in the mutable
 * working copy). Host virtual addresses and pfns are page numbers; the
 * in-page offset KVM keeps in `uhva` (offset_in_page of the gpa) is kept
 * beside them in `offset`: a cache maps one page, and the structure it
 * caches (a posted-interrupt descriptor) sits at that offset in it.
 *
 * Mapping costs: a refresh that resolves a new pfn maps it (kmap, or a
 * memremap for memory without struct page) and unmaps the old mapping; a
 * refresh that finds the same pfn, or only a new generation with the same
 * uhva, maps nothing.
 */
import type { Ctx } from './ctx';
import { gfnToHva, gpaToGfn, hvaToPfnFault, mmuInvalidateInProgress } from './memory';
import type { World } from './state';
import { countMap, countUnmap } from './map-costs';

export interface Gpc {
  active: boolean;
  valid: boolean;
  /** the guest physical address the cache was refreshed to (with its in-page offset), -1n when none yet */
  gpa: bigint;
  /** offset_in_page(gpa), as KVM adds it to uhva and khva */
  offset: number;
  /** host virtual page of the cached gfn, -1 when bad */
  uhva: number;
  /** host pfn of the current mapping (kept after an invalidation until a refresh), -1 when none */
  pfn: number;
  /** the memslot generation at the last refresh */
  generation: number;
  /** kvm_gpc_init_for_vcpu: the vCPU whose VMCS holds this pfn (guest-uses-pfn), -1 for L0-only caches */
  vcpu: number;
}

/** kvm_gpc_init / kvm_gpc_init_for_vcpu */
export function gpcInit(vcpu = -1): Gpc {
  return { active: false, valid: false, gpa: -1n, offset: 0, uhva: -1, pfn: -1, generation: -1, vcpu };
}

/** kvm_gpc_check: may the cached pfn be used without a refresh? */
export function gpcCheck(w: World, c: Gpc): boolean {
  return c.active && c.valid && c.uhva >= 0 && c.generation === w.mem.generation;
}

/**
 * kvm_gpc_refresh (to `gpa`, or to the cached gpa): re-resolve what changed.
 * Returns false (the cache is then invalid, with no mapping) when the gpa is
 * not backed by a memslot.
 */
export function gpcRefresh(ctx: Ctx, w: World, c: Gpc, gpa: bigint = c.gpa): boolean {
  if (!c.active) return false;
  ctx.cost.gpcRefreshes++;
  const mem = w.mem;
  const oldUhva = c.uhva;
  if (gpa !== c.gpa || c.generation !== mem.generation || c.uhva < 0) {
    c.gpa = gpa;
    c.offset = Number(gpa & 0xfffn);
    c.generation = mem.generation;
    c.uhva = gfnToHva(mem, gpaToGfn(gpa));
    if (c.uhva < 0) {
      gpcDropMapping(ctx, w, c);
      return false;
    }
  }
  if (!c.valid || c.uhva !== oldUhva) {
    // hva_to_pfn_retry: the page is faulted in if it is not present
    const pfn = hvaToPfnFault(mem, c.uhva);
    if (pfn !== c.pfn) {
      countMap(ctx, w);
      if (c.pfn >= 0) countUnmap(ctx, w);
      c.pfn = pfn;
    }
    // ... and retried while mmu_notifier_retry_cache says an invalidation of uhva is in progress: KVM
    // spins until it ends, then resolves the page as it is by then. The end is a later event here, so
    // the pfn serves this access (the page has not moved yet) but is not cached as valid: the next
    // kvm_gpc_check fails and the refresh after the end resolves the moved page.
    c.valid = !mmuInvalidateInProgress(mem, c.uhva);
  }
  return true;
}

function gpcDropMapping(ctx: Ctx, w: World, c: Gpc): void {
  if (c.pfn >= 0) countUnmap(ctx, w);
  c.pfn = -1;
  c.valid = false;
}

/** kvm_gpc_activate: put the cache on the list (active), then refresh it to gpa. */
export function gpcActivate(ctx: Ctx, w: World, c: Gpc, gpa: bigint): boolean {
  c.active = true;
  return ctx.profile.ops.kvm_gpc_refresh(ctx, w, c, gpa);
}

/** kvm_gpc_deactivate: off the list, mapping dropped (gpa, uhva and generation kept). */
export function gpcDeactivate(ctx: Ctx, w: World, c: Gpc): void {
  if (!c.active) return;
  gpcDropMapping(ctx, w, c);
  c.active = false;
}

/**
 * nested_gpc_lock (seed 003, patch 1): the pfn to use for gpa now, checking
 * and refreshing (activating) as needed; -1 when it cannot be mapped.
 */
export function gpcLock(ctx: Ctx, w: World, c: Gpc, gpa: bigint): number {
  const ops = ctx.profile.ops;
  if (c.gpa === gpa && ops.kvm_gpc_check(ctx, w, c)) return c.pfn;
  return ops.kvm_gpc_activate(ctx, w, c, gpa) ? c.pfn : -1;
}

/**
 * gfn_to_pfn_cache_invalidate_start for one cache and the host virtual
 * range [start, end): true when it invalidated the cache.
 */
export function gpcInvalidateRange(ctx: Ctx, c: Gpc, start: number, end: number): boolean {
  if (c.valid && c.pfn >= 0 && start <= c.uhva && c.uhva < end) {
    c.valid = false;
    ctx.cost.gpcInvalidations++;
    return true;
  }
  return false;
}
