/**
 * VMCS shadowing for L2, the part every path shares: L1 turns on
 * SECONDARY_EXEC_SHADOW_VMCS in vmcs12 and names its shadow VMCS with
 * VMCS_LINK_POINTER. vmcs02 never enables hardware shadowing ("VMCS
 * shadowing for L2 is emulated for now"): KVM checks the controls at entry,
 * caches the shadow vmcs12 from L1 memory after a successful entry
 * (nested_cache_shadow_vmcs12), emulates L2's VMREAD/VMWRITE against that
 * copy (l2-vmcs.ts) and writes it back at the nested VM-exit
 * (nested_flush_cached_shadow_vmcs12).
 *
 * The shadow vmcs12 has the layout of any vmcs12 in L1 memory (vmcs12.ts):
 * revision id with the shadow-VMCS indicator (bit 31) at 0, field slot i at
 * 0x10 + 8i.
 */
import { INVALID_GPA, SECONDARY_EXEC, VMCS, VMCS12_REVISION, VMCS12_SLOT_COUNT, VMCS_HDR_SHADOW_VMCS, VMX_EXIT_REASONS_FAILED_VMENTRY } from '@nvx/arch';
import type { Outcome } from '@nvx/trace';
import { Ctx, writable } from './ctx';
import { readGuest, readGuestU32, writeGuest } from './memory';
import type { NestedVmx, Vcpu, World } from './state';
import { VMCS12_DATA_OFFSET, vmcs12Get, vmcs12Set } from './vmcs12';
import { evmptrValid } from './evmcs';
import { nestedCpuHasSecondary } from './vmcs12';

/** enum vm_entry_failure_code: ENTRY_FAIL_VMCS_LINK_PTR, the exit qualification of a failed entry due to the link pointer. */
export const ENTRY_FAIL_VMCS_LINK_PTR = 4n;

const PHYS_LIMIT = 1n << 46n; // the guest MAXPHYADDR (nested.ts)

/** nested_cpu_has_shadow_vmcs: vmcs12 turns VMCS shadowing on for L2. */
export function nestedCpuHasShadowVmcs(v: Vcpu): boolean {
  return nestedCpuHasSecondary(v, SECONDARY_EXEC.SHADOW_VMCS);
}

const pageAddressValid = (gpa: bigint) => (gpa & 0xfffn) === 0n && gpa < PHYS_LIMIT;

/** nested_vmx_check_shadow_vmcs_controls: with shadowing on, both bitmaps must be legal page addresses (else VMfailValid 7). */
export function nestedVmxCheckShadowVmcsControls(_ctx: Ctx, _w: World, v: Vcpu): boolean {
  if (!nestedCpuHasShadowVmcs(v)) return true;
  const n = v.nested;
  return pageAddressValid(vmcs12Get(n, VMCS.VMREAD_BITMAP)) && pageAddressValid(vmcs12Get(n, VMCS.VMWRITE_BITMAP));
}

/**
 * nested_vmx_check_vmcs_link_ptr, as far as the model checks it: with VMCS
 * shadowing on for L2, a link pointer other than -1 must be a legal page
 * address whose region carries VMCS12_REVISION with the shadow-VMCS
 * indicator set. (KVM also requires the indicator clear when shadowing is
 * off; the model leaves that case unchecked, so vmcs12s that never set the
 * link pointer keep entering.)
 */
export function nestedVmxCheckVmcsLinkPtr(_ctx: Ctx, w: World, v: Vcpu): boolean {
  if (!nestedCpuHasShadowVmcs(v)) return true;
  const link = vmcs12Get(v.nested, VMCS.VMCS_LINK_POINTER);
  if (link === INVALID_GPA) return true;
  if (!pageAddressValid(link)) return false;
  const hdr = readGuestU32(w, link);
  if (hdr === null) return false;
  return (hdr & 0x7fffffff) === VMCS12_REVISION && (hdr & VMCS_HDR_SHADOW_VMCS) !== 0;
}

/**
 * The guest-state check failed: a VM-exit to L1 with the failed-entry flag
 * (vmentry_fail_vmexit). L2 never ran; the launch state is unchanged.
 */
export function nestedVmxEntryFailVmexit(ctx: Ctx, w: World, v: Vcpu, reason: number, qual: bigint): Outcome {
  const n = v.nested;
  const full = (reason | VMX_EXIT_REASONS_FAILED_VMENTRY) >>> 0;
  vmcs12Set(ctx, n, VMCS.EXIT_QUALIFICATION, qual);
  vmcs12Set(ctx, n, VMCS.VM_EXIT_REASON, BigInt(full));
  if (w.config.shadowVmcs || evmptrValid(n)) n.needVmcs12ToShadowSync = true;
  ctx.cost.nestedExits++;
  return { k: 'exit', reason: full, qual };
}

function linkPointerInUse(v: Vcpu): bigint | null {
  if (!nestedCpuHasShadowVmcs(v)) return null;
  const link = vmcs12Get(v.nested, VMCS.VMCS_LINK_POINTER);
  return link === INVALID_GPA ? null : link;
}

/** nested_cache_shadow_vmcs12: after a successful entry, read L1's shadow vmcs12 into cached_shadow_vmcs12. */
export function nestedCacheShadowVmcs12(ctx: Ctx, w: World, v: Vcpu): void {
  const link = linkPointerInUse(v);
  if (link === null) return;
  const n = v.nested;
  // KVM reads the whole region in one go; one that cannot be read leaves the cache as it was.
  const vals: bigint[] = [];
  for (let i = 0; i < VMCS12_SLOT_COUNT; i++) {
    const x = readGuest(w, link + VMCS12_DATA_OFFSET + BigInt(8 * i), 8);
    if (x === null) return;
    vals.push(x);
  }
  const arr = writable(ctx, n, 'cachedShadowVmcs12');
  for (let i = 0; i < VMCS12_SLOT_COUNT; i++) arr[i] = vals[i];
}

/** nested_flush_cached_shadow_vmcs12: at the nested VM-exit, write the cache back to L1 memory. */
export function nestedFlushCachedShadowVmcs12(ctx: Ctx, w: World, v: Vcpu): void {
  const link = linkPointerInUse(v);
  if (link === null) return;
  const arr = v.nested.cachedShadowVmcs12;
  for (let i = 0; i < VMCS12_SLOT_COUNT; i++) writeGuest(ctx, w, link + VMCS12_DATA_OFFSET + BigInt(8 * i), 8, arr[i]);
}

/** free_nested: cached_vmcs12 and cached_shadow_vmcs12 are freed (VMXON allocates them zeroed). */
export function freeNestedCaches(ctx: Ctx, n: NestedVmx): void {
  if (ctx.inPlace) {
    n.vmcs12.fill(0n);
    n.cachedShadowVmcs12.fill(0n);
    return;
  }
  n.vmcs12 = new BigUint64Array(VMCS12_SLOT_COUNT);
  n.cachedShadowVmcs12 = new BigUint64Array(VMCS12_SLOT_COUNT);
  ctx.fresh?.add(n.vmcs12);
  ctx.fresh?.add(n.cachedShadowVmcs12);
}
