/**
 * 58cd407ca4c6 "KVM: Fix multiple races in gfn=>pfn cache refresh",
 * hva_to_pfn_retry / kvm_gpc_refresh (virt/kvm/pfncache.c).
 *
 * A refresh resolves the pfn with gpc->lock dropped. Before the fix nothing
 * checked whether an mmu-notifier invalidation of that page was in progress
 * (mmu_invalidate_in_progress / mmu_notifier_retry_cache): a refresh running
 * inside the window installed the pfn as valid, the invalidation's start had
 * already been and gone for this cache, and when the primary MMU moved the
 * page the cache kept the old one. The fix retries until no invalidation of
 * the cached address is in progress.
 *
 * The patch wraps kvm_gpc_refresh and marks the refreshed cache valid even
 * inside an invalidation window.
 */
import type { Ctx, Gpc, Patch, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-58cd407ca4c6',
  summary: 'kvm_gpc_refresh caches the pfn as valid inside an mmu-notifier invalidation window (before 2022)',
  ops: {
    kvm_gpc_refresh: (orig) => (ctx: Ctx, w: World, gpc: Gpc, gpa: bigint) => {
      const ok = orig(ctx, w, gpc, gpa);
      // no mmu_notifier_retry_cache: whatever hva_to_pfn returned is taken as valid
      if (ok && gpc.active && gpc.pfn >= 0) gpc.valid = true;
      return ok;
    },
  },
};

export default patch;
