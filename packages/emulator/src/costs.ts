/**
 * Cost counters: what each path does that a real host pays for. They are
 * never observations (two profiles may differ in every counter). A cost
 * table (data/cost-table.json, with the source of every figure) turns them
 * into estimated cycles.
 */

export const COST_COUNTERS = [
  'l0Exits', // exits from L2 to L0 (whatever happens next)
  'nestedExits', // nested VM-exits synthesized into L1
  'nestedEntries', // successful VMLAUNCH/VMRESUME
  'msrBitmapMerges', // full nested_vmx_prepare_msr_bitmap rebuilds
  'msrBitmapMergeSkips', // rebuilds skipped (enlightened or tracked)
  'msrBitmapBytesRead', // bytes of L1's MSR bitmap read by L0 (merges and exit-time lookups)
  'msrBitmapWriteTraps', // writes to a write-tracked L1 bitmap page (merge-tracked)
  'evmcsFieldsCopied', // eVMCS fields copied into vmcs12 (copy_enlightened_to_vmcs12)
  'evmcsGroupsCopied', // clean-field groups copied
  'evmcsFieldsSynced', // vmcs12 fields written back to the eVMCS (copy_vmcs12_to_enlightened)
  'vmreadExits', // L1 VMREADs emulated by L0
  'vmwriteExits', // L1 VMWRITEs emulated by L0
  'shadowFieldsCopiedIn', // copy_shadow_to_vmcs12
  'shadowFieldsCopiedOut', // copy_vmcs12_to_shadow
  'shadowVmcsLoads',
  'maps', // kvm_vcpu_map
  'unmaps',
  'memremaps',
  'memunmaps',
  'gpcRefreshes',
  'gpcInvalidations',
  'kicks',
  'nestedContextReuse',
  'nestedContextRecycle',
  'cpuidExits', // CPUID VM-exits, L1's and L2's
  'wrmsrs', // WRMSRs L0 does for itself (MSR 0x140 switching)
  'rdmsrs',
  'gpWithoutExit',
  'l1CpuidExits', // CPUID VM-exits from L1 (L2's are in l0Exits)
  'hostWrmsrs', // MSR 0x140 WRMSRs of the host kernel itself (context switches, arch_prctl): the same in every path
] as const;

export type CostCounter = (typeof COST_COUNTERS)[number];
export type Costs = Record<CostCounter, number>;

const ZERO_COSTS = Object.fromEntries(COST_COUNTERS.map((k) => [k, 0])) as Costs;

export function newCosts(): Costs {
  // A copy of one object made once, both with fast properties: adding the 30 counters one by one
  // leaves V8 with a dictionary, and every count on the hot path a hash lookup.
  return { ...ZERO_COSTS };
}

export function addCosts(into: Costs, from: Costs): Costs {
  for (const k of COST_COUNTERS) into[k] += from[k];
  return into;
}

export function diffCosts(after: Costs, before: Costs): Costs {
  const c = newCosts();
  for (const k of COST_COUNTERS) c[k] = after[k] - before[k];
  return c;
}

export interface CostTableEntry {
  counter: CostCounter;
  cycles: number;
  /** low and high end of the published figure, when it is a range */
  range?: [number, number];
  source: string;
  note?: string;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const COST_TABLE: readonly CostTableEntry[] = require('../data/cost-table.json').entries;

/** Estimated cycles: sum of count x cycles over the counters the table prices. */
export function estimateCycles(c: Costs, table: readonly CostTableEntry[] = COST_TABLE): { total: number; by: Partial<Record<CostCounter, number>> } {
  let total = 0;
  const by: Partial<Record<CostCounter, number>> = {};
  for (const e of table) {
    const v = c[e.counter] * e.cycles;
    if (v) by[e.counter] = v;
    total += v;
  }
  return { total, by };
}
