/**
 * The enlightened-VMCS machinery every path shares (arch/x86/kvm/vmx/hyperv.c
 * and nested.c): the enlightened VMPTRLD done at VMLAUNCH/VMRESUME, the copies
 * between the eVMCS in L1 memory and vmcs12, and the clean-field handshake.
 */
import {
  EVMCS,
  HV_VMX_ENLIGHTENED_CLEAN_FIELD,
  INVALID_GPA,
  KVM_EVMCS_VERSION,
  VMCS12_REVISION,
  VMCS_FIELDS,
  VmcsField,
} from '@nvx/arch';
import type { Ctx } from '../../ctx';
import { gpaOffset, gpaToGfn, gfnToPfn, guestPage, readLE, writablePfn, writeLE } from '../../memory';
import type { NestedVmx, Vcpu, World } from '../../state';
import { vmcs12Clear, vmcs12WriteField } from '../../vmcs12';

interface EvmcsSlot {
  field: VmcsField;
  group: number; // -1: always copied
  offset: number;
  size: number;
}

/** The fields copy_enlightened_to_vmcs12 may copy, with their eVMCS member. */
export const EVMCS_COPY_IN: readonly EvmcsSlot[] = VMCS_FIELDS.filter((f) => !f.isHigh && f.cleanGroup !== null && f.evmcsOffset !== null).map((f) => ({
  field: f,
  group: f.cleanGroup!,
  offset: f.evmcsOffset!,
  size: f.evmcsSize!,
}));

/** The fields copy_vmcs12_to_enlightened writes back after a nested VM-exit (exit information, guest state, a few controls). */
export const EVMCS_COPY_OUT: readonly EvmcsSlot[] = VMCS_FIELDS.filter((f) => !f.isHigh && f.evmcsOffset !== null && f.evmcsSyncOut).map((f) => ({
  field: f,
  group: f.cleanGroup ?? -1,
  offset: f.evmcsOffset!,
  size: f.evmcsSize!,
}));

export const EVMPTRLD = { DISABLED: 0, SUCCEEDED: 1, VMFAIL: 2, ERROR: 3 } as const;

/** nested_vmx_is_evmptr_valid */
export function evmptrValid(n: NestedVmx): boolean {
  return n.hvEvmcsVmptr !== INVALID_GPA;
}

export function evmcsReadU32(w: World, gpa: bigint, off: number): number | null {
  const page = guestPage(w.mem, gpaToGfn(gpa));
  return page ? Number(readLE(page, gpaOffset(gpa) + off, 4)) : null;
}

export function evmcsWriteU32(ctx: Ctx, w: World, gpa: bigint, off: number, v: number): void {
  const pfn = gfnToPfn(w.mem, gpaToGfn(gpa));
  if (pfn >= 0) writeLE(writablePfn(ctx, w.mem, pfn), gpaOffset(gpa) + off, 4, BigInt(v >>> 0));
}

/** nested_release_evmcs */
export function releaseEvmcs(n: NestedVmx): void {
  n.hvEvmcsVmptr = INVALID_GPA;
}

/**
 * nested_vmx_handle_enlightened_vmptrld: pick up the eVMCS the VP assist page
 * names. On a new eVMCS or VMLAUNCH, every clean bit is cleared in L1's copy
 * (KVM keeps one vmcs12 per vCPU, so nothing may be assumed clean) and the MSR
 * bitmap must be rebuilt.
 */
export function handleEnlightenedVmptrld(ctx: Ctx, w: World, v: Vcpu, fromLaunch: boolean): number {
  const n = v.nested;
  if (!w.config.evmcs) return EVMPTRLD.DISABLED;
  const gpa = n.vpAssistEvmcs;
  if (gpa === INVALID_GPA) return EVMPTRLD.DISABLED;
  let changed = false;
  if (gpa !== n.hvEvmcsVmptr) {
    n.currentVmptr = INVALID_GPA;
    releaseEvmcs(n);
    const page = guestPage(w.mem, gpaToGfn(gpa));
    if (!page || (gpa & 0xfffn) !== 0n) return EVMPTRLD.ERROR;
    ctx.cost.maps++;
    const rev = Number(readLE(page, EVMCS.REVISION_ID_OFFSET, 4));
    if (rev !== KVM_EVMCS_VERSION && rev !== VMCS12_REVISION) return EVMPTRLD.VMFAIL;
    n.hvEvmcsVmptr = gpa;
    changed = true;
    // An eVMCS is not reloaded whole (read-only fields, fields it lacks): start from zero.
    if (fromLaunch) vmcs12Clear(ctx, n);
  }
  if (fromLaunch || changed) {
    evmcsWriteU32(ctx, w, gpa, EVMCS.HV_CLEAN_FIELDS_OFFSET, 0);
    n.forceMsrBitmapRecalc = true;
  }
  return EVMPTRLD.SUCCEEDED;
}

/** copy_enlightened_to_vmcs12 for the groups in `groups` (fields tagged NONE always). */
export function copyEnlightenedToVmcs12(ctx: Ctx, w: World, n: NestedVmx, groups: number): void {
  const page = guestPage(w.mem, gpaToGfn(n.hvEvmcsVmptr));
  if (!page) return;
  let copied = 0;
  for (const s of EVMCS_COPY_IN) {
    if (s.group >= 0 && !(groups & (1 << s.group))) continue;
    vmcs12WriteField(ctx, n, s.field, readLE(page, s.offset, s.size));
    copied++;
  }
  ctx.cost.evmcsFieldsCopied += copied;
  let g = groups & HV_VMX_ENLIGHTENED_CLEAN_FIELD.ALL;
  while (g) {
    ctx.cost.evmcsGroupsCopied++;
    g &= g - 1;
  }
}

/** copy_vmcs12_to_enlightened: the exit information and guest state L1 reads after a nested VM-exit. */
export function copyVmcs12ToEnlightened(ctx: Ctx, w: World, n: NestedVmx): void {
  const pfn = gfnToPfn(w.mem, gpaToGfn(n.hvEvmcsVmptr));
  if (pfn < 0) return;
  const page = writablePfn(ctx, w.mem, pfn);
  for (const s of EVMCS_COPY_OUT) writeLE(page, s.offset, s.size, n.vmcs12[s.field.slot]);
  ctx.cost.evmcsFieldsSynced += EVMCS_COPY_OUT.length;
}

/** Read one VMCS field's member straight from the eVMCS (the VMREAD-from-eVMCS workaround). */
export function evmcsReadField(w: World, gpa: bigint, f: VmcsField): bigint | null {
  if (f.evmcsOffset === null) return null;
  const page = guestPage(w.mem, gpaToGfn(gpa));
  return page ? readLE(page, f.evmcsOffset, f.evmcsSize!) : null;
}
