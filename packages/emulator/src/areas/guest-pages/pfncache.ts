/**
 * Seed 003: the nested pages in gfn_to_pfn caches.
 *
 * `pfncache` (patches 1-7): one cache per page and vCPU: L1's MSR bitmap
 * (patch 1), the APIC-access page, the virtual-APIC page and the
 * posted-interrupt descriptor (patch 4, bound to the vCPU: guest-uses-pfn,
 * patch 2), the eVMCS (patch 7). L0 goes through nested_gpc_lock (check,
 * else refresh) at every access; the notifier invalidates a cache whose page
 * it unmaps, and a memslot change is caught by the generation. Invalidating
 * a vCPU-bound cache kicks its vCPU out of guest mode, and before L2 runs
 * again the APIC pages are re-resolved and vmcs02 rewritten
 * (vmx_is_nested_state_invalid -> KVM_REQ_GET_NESTED_STATE_PAGES, patch 3).
 * Caches are kept across nested VM-exits and deactivated by free_nested.
 *
 * `pfncache-ctx` (patches 8-9): the caches live in per-L2 nested contexts,
 * keyed by the vmcs12 (or eVMCS) address, in a per-VM table of at most
 * 8 x online vCPUs (KVM_NESTED_OVERSUB_RATIO); VMPTRLD loads a context
 * (reuse, allocation, or recycling the least recently freed one), VMCLEAR
 * and switching away put it back on the LRU list, still findable; a context
 * picked up by another vCPU re-assigns its vCPU-bound caches to it.
 *
 * `makePfncachePath` builds both; its options exist so that a plugin (or a
 * test fixture) can change one step and see whether the checker notices.
 */
import { VMCS } from '@nvx/arch';
import type { Ctx } from '../../ctx';
import type { Vcpu, World } from '../../state';
import { vmcs12Get } from '../../vmcs12';
import type { GuestPagesPath, HostInvalidation } from '../../paths';
import { NESTED_PAGE, PAGE_ACCESS } from '../../nested-pages';
import { APIC_PAGES, PAGE_NAMES, apicPagesInUse, nestedPageGpa, pfnBytes } from '../../nested-pages';
import { Gpc, gpcInit } from '../../gpc';

/** KVM_NESTED_OVERSUB_RATIO: contexts per online vCPU */
export const NESTED_CONTEXTS_PER_VCPU = 8;

/** Per-vCPU state of both paths. */
export interface PfncacheVcpu {
  /** the vCPU's own caches (index NESTED_PAGE.x); with contexts, used only while none is loaded */
  caches: Gpc[];
  /** vmcs02's host addresses for the APIC pages, as pfns (-1: none) */
  hpa: number[];
  /** pfncache-ctx: index of the loaded context in the table, -1 when none */
  context: number;
}

/** struct kvm_nested_context */
export interface NestedContext {
  /** the vmcs12 or eVMCS address it is keyed by */
  gpa: bigint;
  /** the vCPU using it, -1 when it is on the LRU list */
  owner: number;
  /** when it went on the LRU list (the smallest is recycled first) */
  freedAt: number;
  caches: Gpc[];
}

/** kvm->arch.nested_context_table */
export interface NestedContextTable {
  contexts: NestedContext[];
  clock: number;
}

export interface PfncacheOptions {
  name: string;
  summary: string;
  /** per-L2 nested contexts (patches 8-9) */
  contexts: boolean;
  /** kvm_gpc_check (default: the real one) */
  check?: (w: World, c: Gpc) => boolean;
  /** gfn_to_pfn_cache_invalidate_start for one cache (default: the real one) */
  invalidate?: (ctx: Ctx, c: Gpc, start: number, end: number) => boolean;
  /** invalidating a vCPU-bound cache kicks its vCPU out of guest mode (patch 2; default true) */
  kick?: boolean;
  /** a kicked vCPU re-resolves its APIC pages and rewrites vmcs02 before L2 runs again (patch 3; default true) */
  reResolve?: boolean;
  /** a context picked up by a vCPU re-assigns its vCPU-bound caches to it (v4 fix of patch 9; default true) */
  reassignVcpu?: boolean;
  /** a recycled context's caches are deactivated (reset_context; default true) */
  resetOnRecycle?: boolean;
}

const N_PAGES = 5;

function newCaches(vcpu: number): Gpc[] {
  const c: Gpc[] = [];
  for (let p = 0; p < N_PAGES; p++) c.push(gpcInit(isVcpuBound(p) ? vcpu : -1));
  return c;
}

function isVcpuBound(p: number): boolean {
  return p === NESTED_PAGE.APIC_ACCESS || p === NESTED_PAGE.VAPIC || p === NESTED_PAGE.PI_DESC;
}

function st(v: Vcpu): PfncacheVcpu {
  return v.areas['guest-pages'] as PfncacheVcpu;
}

function table(w: World): NestedContextTable {
  return w.areas['guest-pages'] as NestedContextTable;
}

export function makePfncachePath(o: PfncacheOptions): GuestPagesPath {
  // kvm_gpc_check and gfn_to_pfn_cache_invalidate_start through the operations table, unless the options replace them
  const oCheck = o.check;
  const oInvalidate = o.invalidate;
  const check = oCheck ? (_ctx: Ctx, w: World, c: Gpc) => oCheck(w, c) : (ctx: Ctx, w: World, c: Gpc) => ctx.profile.ops.kvm_gpc_check(ctx, w, c);
  const invalidate = oInvalidate
    ? (ctx: Ctx, _w: World, c: Gpc, start: number, end: number) => oInvalidate(ctx, c, start, end)
    : (ctx: Ctx, w: World, c: Gpc, start: number, end: number) => ctx.profile.ops.gfn_to_pfn_cache_invalidate_start(ctx, w, c, start, end);
  const kick = o.kick ?? true;
  const reResolve = o.reResolve ?? true;
  const reassign = o.reassignVcpu ?? true;
  const resetOnRecycle = o.resetOnRecycle ?? true;

  /** nested_gpc_lock with this path's check */
  function lock(ctx: Ctx, w: World, c: Gpc, gpa: bigint): number {
    if (c.gpa === gpa && check(ctx, w, c)) return c.pfn;
    return ctx.profile.ops.kvm_gpc_activate(ctx, w, c, gpa) ? c.pfn : -1;
  }

  function cachesOf(w: World, v: Vcpu): Gpc[] {
    const s = st(v);
    return o.contexts && s.context >= 0 ? table(w).contexts[s.context].caches : s.caches;
  }

  /** (Re-)resolve the APIC pages in use and write their pfns into vmcs02. */
  function resolveApicPages(ctx: Ctx, w: World, v: Vcpu, inUse: number): void {
    const s = st(v);
    const caches = cachesOf(w, v);
    for (const p of APIC_PAGES) s.hpa[p] = inUse & (1 << p) ? lock(ctx, w, caches[p], cacheGpa(v, p, nestedPageGpa(v, p))) : -1;
  }

  /** The gpa a cache is refreshed to: the page's, with the descriptor's in-page offset (KVM activates pi_desc_cache at posted_intr_desc_addr). */
  function cacheGpa(v: Vcpu, p: number, pageGpa: bigint): bigint {
    return p === NESTED_PAGE.PI_DESC ? pageGpa | (vmcs12Get(v.nested, VMCS.POSTED_INTR_DESC_ADDR) & 0xfc0n) : pageGpa;
  }

  // ---- nested contexts (kvm_nested_context_load / kvm_nested_context_clear)

  function detach(w: World, v: Vcpu): void {
    const s = st(v);
    if (s.context < 0) return;
    const t = table(w);
    const c = t.contexts[s.context];
    c.owner = -1;
    c.freedAt = ++t.clock;
    s.context = -1;
  }

  function pickUp(w: World, v: Vcpu, i: number): void {
    const c = table(w).contexts[i];
    c.owner = v.id;
    st(v).context = i;
    if (reassign) for (const p of APIC_PAGES) c.caches[p].vcpu = v.id;
  }

  function load(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): void {
    const s = st(v);
    const t = table(w);
    if (s.context >= 0 && t.contexts[s.context].gpa === gpa) return;
    detach(w, v);
    const cs = t.contexts;
    for (let i = 0; i < cs.length; i++) {
      if (cs[i].gpa !== gpa) continue;
      // Owned by another vCPU (L1 made one VMCS current on two vCPUs): KVM warns and hands it over.
      if (cs[i].owner >= 0 && cs[i].owner !== v.id) st(w.vcpus[cs[i].owner]).context = -1;
      ctx.cost.nestedContextReuse++;
      pickUp(w, v, i);
      return;
    }
    if (cs.length < NESTED_CONTEXTS_PER_VCPU * w.config.vcpus) {
      cs.push({ gpa, owner: -1, freedAt: 0, caches: newCaches(v.id) });
      pickUp(w, v, cs.length - 1);
      return;
    }
    // Recycle the head of the LRU list. There is always a free one: each vCPU holds at most one context.
    let lru = -1;
    for (let i = 0; i < cs.length; i++) if (cs[i].owner < 0 && (lru < 0 || cs[i].freedAt < cs[lru].freedAt)) lru = i;
    ctx.cost.nestedContextRecycle++;
    const c = cs[lru];
    if (resetOnRecycle) for (const g of c.caches) ctx.profile.ops.kvm_gpc_deactivate(ctx, w, g);
    c.gpa = gpa;
    pickUp(w, v, lru);
  }

  function clear(w: World, v: Vcpu, gpa: bigint): void {
    const s = st(v);
    if (s.context >= 0 && table(w).contexts[s.context].gpa === gpa) detach(w, v);
  }

  // ---- the notifier and memslot changes

  function allCaches(w: World): Gpc[] {
    const out: Gpc[] = [];
    for (const v of w.vcpus) for (const c of st(v).caches) out.push(c);
    if (o.contexts) for (const x of table(w).contexts) for (const c of x.caches) out.push(c);
    return out;
  }

  function onHostMemory(ctx: Ctx, w: World, inv: HostInvalidation | null): void {
    let kicked = 0; // bit per vCPU
    if (inv?.ended) {
      // The window closed and the pages moved: a vCPU-bound cache refreshed inside it is invalid (the
      // retry check), and its vCPU, had it waited in hva_to_pfn_retry as KVM's does, resolves the moved
      // page before L2 runs again: kick it now.
      for (const c of allCaches(w)) {
        if (c.vcpu < 0 || !c.active || c.uhva < inv.start || c.uhva >= inv.end || check(ctx, w, c)) continue;
        const t = w.vcpus[c.vcpu];
        if (t && t.nested.guestMode) kicked |= 1 << t.id;
      }
    } else if (inv) {
      for (const c of allCaches(w)) {
        if (invalidate(ctx, w, c, inv.start, inv.end) && c.vcpu >= 0 && kick) {
          const t = w.vcpus[c.vcpu];
          if (t && t.nested.guestMode) kicked |= 1 << t.id;
        }
      }
    } else {
      // A memslot change: vCPUs in guest mode leave it (the slot's mappings are zapped and
      // flushed), and vmx_is_nested_state_invalid finds the stale generation before L2 runs again.
      for (const v of w.vcpus) {
        if (!v.nested.guestMode) continue;
        const inUse = apicPagesInUse(v);
        const caches = cachesOf(w, v);
        for (const p of APIC_PAGES) if (inUse & (1 << p) && !check(ctx, w, caches[p])) kicked |= 1 << v.id;
      }
    }
    for (const v of w.vcpus) {
      if (!(kicked & (1 << v.id))) continue;
      ctx.cost.kicks++;
      if (reResolve) resolveApicPages(ctx, w, v, apicPagesInUse(v));
    }
  }

  return {
    area: 'guest-pages',
    name: o.name,
    summary: o.summary,
    init: (_w, vcpu): PfncacheVcpu => ({ caches: newCaches(vcpu), hpa: [-1, -1, -1, -1, -1], context: -1 }),
    initVm: o.contexts ? (): NestedContextTable => ({ contexts: [], clock: 0 }) : undefined,
    l0Page(ctx, w, v, p, gpa, access) {
      return pfnBytes(ctx, w, lock(ctx, w, cachesOf(w, v)[p], cacheGpa(v, p, gpa)), access);
    },
    // the khva of the cache: the page plus offset_in_page of the gpa it was refreshed to
    pageOffset: (_ctx, w, v, p) => cachesOf(w, v)[p].offset,
    hwPfn: (_ctx, _w, v, p) => st(v).hpa[p],
    getVmcs12Pages(ctx, w, v, inUse) {
      resolveApicPages(ctx, w, v, inUse);
    },
    nestedVmexit() {
      // the caches stay active and mapped (only marked dirty)
    },
    mapEvmcs(ctx, w, v, gpa) {
      if (o.contexts) load(ctx, w, v, gpa);
      return pfnBytes(ctx, w, lock(ctx, w, cachesOf(w, v)[NESTED_PAGE.EVMCS], gpa), PAGE_ACCESS.READ);
    },
    releaseEvmcs(ctx, w, v) {
      if (o.contexts) clear(w, v, v.nested.hvEvmcsVmptr);
      else ctx.profile.ops.kvm_gpc_deactivate(ctx, w, st(v).caches[NESTED_PAGE.EVMCS]);
    },
    vmptrld(ctx, w, v, gpa) {
      if (o.contexts) load(ctx, w, v, gpa);
    },
    vmclear(_ctx, w, v, gpa) {
      if (o.contexts) clear(w, v, gpa);
    },
    freeNested(ctx, w, v) {
      if (o.contexts) detach(w, v);
      else for (const c of st(v).caches) ctx.profile.ops.kvm_gpc_deactivate(ctx, w, c);
    },
    onHostMemory,
    explain(w, v) {
      const s = st(v);
      const out: Record<string, string> = {};
      if (o.contexts) out['nested context'] = s.context < 0 ? 'none' : `#${s.context} (gpa 0x${table(w).contexts[s.context].gpa.toString(16)})`;
      const caches = cachesOf(w, v);
      for (let p = 0; p < N_PAGES; p++) {
        const c = caches[p];
        if (!c.active) continue;
        out[`${PAGE_NAMES[p]} cache`] = `valid ${c.valid} gpa 0x${c.gpa.toString(16)} pfn ${c.pfn < 0 ? 'none' : `0x${c.pfn.toString(16)}`} generation ${c.generation} (now ${w.mem.generation}) vcpu ${c.vcpu}`;
        if (isVcpuBound(p)) out[`${PAGE_NAMES[p]} in vmcs02`] = s.hpa[p] < 0 ? 'none' : `pfn 0x${s.hpa[p].toString(16)}`;
      }
      return out;
    },
  };
}

export const pfncache = makePfncachePath({
  name: 'pfncache',
  contexts: false,
  summary: 'seed 003 patches 1-7: a gfn_to_pfn_cache per page and vCPU, invalidated by the mmu notifier and the memslot generation; vCPU-bound caches kick the vCPU and vmcs02 is rewritten',
});

export const pfncacheCtx = makePfncachePath({
  name: 'pfncache-ctx',
  contexts: true,
  summary: 'seed 003 patches 1-9: the caches live in per-L2 nested contexts keyed by the vmcs12/eVMCS address (8 per vCPU, LRU recycling), kept across VMPTRLD, VMCLEAR and L1 vCPUs',
});

/** For tests and reports: the nested-context table of a world under pfncache-ctx (undefined otherwise). */
export function nestedContexts(w: World): NestedContextTable | undefined {
  return w.areas?.['guest-pages'] as NestedContextTable | undefined;
}

