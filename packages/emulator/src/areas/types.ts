/**
 * The path interfaces, one per area. A path is a small module that plugs into
 * the points where KVM's code for that optimization runs; everything else
 * (instruction emulation, reflection, memory) is common. Each path keeps its
 * private state in `vcpu.areas[area]`; the state is plain data (or typed
 * arrays replaced whole) so it can live in an immer draft.
 */
import type { Ctx } from '../ctx';
import type { Vcpu, World } from '../state';

export type AreaId = 'msr-bitmap' | 'evmcs';
export const AREA_IDS: readonly AreaId[] = ['msr-bitmap', 'evmcs'];

export interface PathBase {
  readonly area: AreaId;
  readonly name: string;
  /** one line: what the path does and where it comes from */
  readonly summary: string;
  /** private per-vCPU state at vCPU creation (omit for none) */
  init?(w: World, vcpu: number): unknown;
  /** facts about the path's private state that explain a divergence on this vCPU */
  explain?(w: World, v: Vcpu, hint: { msr?: number; write?: boolean }): Record<string, string>;
}

export interface MsrBitmapPath extends PathBase {
  readonly area: 'msr-bitmap';
  /**
   * nested_vmx_prepare_msr_bitmap, called from nested_get_vmcs12_pages at
   * every nested VM-entry: bring vmcs02's bitmap up to date (or not) and say
   * whether vmcs02 runs with CPU_BASED_USE_MSR_BITMAPS.
   */
  prepare(ctx: Ctx, w: World, v: Vcpu): boolean;
  /** an L1 store (from any vCPU) hit guest frame gfn */
  onGuestWrite?(ctx: Ctx, w: World, gfn: number): void;
  /** the host changed what backs guest memory (memslot change, migration, zap) */
  onHostMemory?(ctx: Ctx, w: World): void;
}

export interface EvmcsPath extends PathBase {
  readonly area: 'evmcs';
  /**
   * copy_enlightened_to_vmcs12: given the hv_clean_fields L1 left in the
   * eVMCS, the mask of clean-field groups to copy into vmcs12 (bit n = group
   * n). Fields tagged NONE are always copied.
   */
  groupsToCopy(cleanFields: number): number;
}

export type AreaPath = MsrBitmapPath | EvmcsPath;
export interface PathOf {
  'msr-bitmap': MsrBitmapPath;
  evmcs: EvmcsPath;
}
