/**
 * What mapping a guest page costs: kvm_vcpu_map / kvm_vcpu_unmap (and the
 * pfncache's own mappings) are a kmap/kunmap for memory with struct page,
 * and a memremap/memunmap for memory without (config.unmanagedMemory).
 */
import type { Ctx } from './ctx';
import type { World } from './state';

export function countMap(ctx: Ctx, w: World): void {
  ctx.cost.maps++;
  if (w.config.unmanagedMemory) ctx.cost.memremaps++;
}

export function countUnmap(ctx: Ctx, w: World): void {
  ctx.cost.unmaps++;
  if (w.config.unmanagedMemory) ctx.cost.memunmaps++;
}
