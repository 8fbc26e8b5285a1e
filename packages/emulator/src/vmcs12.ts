/**
 * vmcs12 as KVM caches it (cached_vmcs12), one 64-bit slot per field, and
 * vmcs12_read_any / vmcs12_write_any with the field widths: a 16- or 32-bit
 * field keeps only its low bits, a _HIGH access touches the upper half of its
 * 64-bit field.
 *
 * In L1 memory the model lays a vmcs12 out as: revision id (u32) at 0,
 * abort indicator (u32) at 4, launch state (u32) at 8, then slot i at
 * 0x10 + 8 * i. (The real layout is KVM's own business; L1 must not rely on it.)
 */
import { CPU_BASED, PAGE_SIZE, VMCS, VMCS12_SLOT_COUNT, VmcsField, vmcsFieldByEncoding } from '@nvx/arch';
import { Ctx, writable } from './ctx';
import { gfnToPfn, gpaOffset, gpaToGfn, guestPage, readGuest, writablePfn, writeGuest } from './memory';
import type { NestedVmx, Vcpu, World } from './state';

export const VMCS12_LAUNCH_STATE_OFFSET = 8n;
export const VMCS12_DATA_OFFSET = 0x10n;

const MASK = { 16: 0xffffn, 32: 0xffffffffn, 64: 0xffffffffffffffffn, natural: 0xffffffffffffffffn } as const;

export function fieldMask(f: VmcsField): bigint {
  return MASK[f.width];
}

export function vmcs12ReadField(n: NestedVmx, f: VmcsField): bigint {
  const v = n.vmcs12[f.slot];
  return f.isHigh ? v >> 32n : v;
}

/** Read by encoding; undefined for a field KVM's vmcs12 does not have. */
export function vmcs12Read(n: NestedVmx, enc: number): bigint | undefined {
  const f = vmcsFieldByEncoding(enc);
  return f ? vmcs12ReadField(n, f) : undefined;
}

/** Fast read of a known field encoding (caller guarantees it exists). */
export function vmcs12Get(n: NestedVmx, enc: number): bigint {
  return vmcs12ReadField(n, vmcsFieldByEncoding(enc)!);
}

export function vmcs12Get32(n: NestedVmx, enc: number): number {
  return Number(vmcs12Get(n, enc) & 0xffffffffn);
}

export function vmcs12WriteField(ctx: Ctx, n: NestedVmx, f: VmcsField, value: bigint): void {
  const arr = writable(ctx, n, 'vmcs12');
  if (f.isHigh) arr[f.slot] = (arr[f.slot] & 0xffffffffn) | ((value & 0xffffffffn) << 32n);
  else arr[f.slot] = value & MASK[f.width];
}

export function vmcs12Set(ctx: Ctx, n: NestedVmx, enc: number, value: bigint): void {
  vmcs12WriteField(ctx, n, vmcsFieldByEncoding(enc)!, value);
}

export function vmcs12Clear(ctx: Ctx, n: NestedVmx): void {
  if (ctx.inPlace) n.vmcs12.fill(0n);
  else n.vmcs12 = new BigUint64Array(VMCS12_SLOT_COUNT);
}

/** Typed arrays are little-endian on every platform Node runs on in practice; the slot-by-slot loops below are the others'. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const SLOT_BYTES = 8 * VMCS12_SLOT_COUNT;

/** Byte offset of the slots in their page when they all lie in one page (as they do for a page-aligned vmcs12), else -1. */
function slotsInOnePage(gpa: bigint): number {
  const off = gpaOffset(gpa) + Number(VMCS12_DATA_OFFSET);
  return LITTLE_ENDIAN && off + SLOT_BYTES <= PAGE_SIZE ? off : -1;
}

const bytesOf = (a: BigUint64Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Load a vmcs12 from L1 memory (VMPTRLD); false if the region is not backed by a memslot. */
export function vmcs12LoadFromGuest(ctx: Ctx, w: World, n: NestedVmx, gpa: bigint): boolean {
  const arr = ctx.inPlace ? n.vmcs12 : new BigUint64Array(VMCS12_SLOT_COUNT);
  const off = slotsInOnePage(gpa);
  if (off >= 0) {
    // every slot from one page: the same 8-byte little-endian loads as the loop below, as one copy
    const page = guestPage(w.mem, gpaToGfn(gpa));
    if (page === null) return false;
    bytesOf(arr).set(page.subarray(off, off + SLOT_BYTES));
  } else for (let i = 0; i < VMCS12_SLOT_COUNT; i++) {
    const v = readGuest(w, gpa + VMCS12_DATA_OFFSET + BigInt(8 * i), 8);
    if (v === null) return false;
    arr[i] = v;
  }
  if (!ctx.inPlace) {
    ctx.fresh?.add(arr);
    n.vmcs12 = arr;
  }
  n.launched = readGuest(w, gpa + VMCS12_LAUNCH_STATE_OFFSET, 4) === 1n;
  return true;
}

/** Write the cached vmcs12 back to L1 memory (nested_release_vmcs12). */
export function vmcs12StoreToGuest(ctx: Ctx, w: World, n: NestedVmx, gpa: bigint): void {
  const off = slotsInOnePage(gpa);
  if (off >= 0) {
    // every slot into one page: the same 8-byte little-endian stores as the loop below, as one copy
    const pfn = gfnToPfn(w.mem, gpaToGfn(gpa));
    if (pfn >= 0) writablePfn(ctx, w.mem, pfn).set(bytesOf(n.vmcs12), off);
  } else for (let i = 0; i < VMCS12_SLOT_COUNT; i++) writeGuest(ctx, w, gpa + VMCS12_DATA_OFFSET + BigInt(8 * i), 8, n.vmcs12[i]);
  writeGuest(ctx, w, gpa + VMCS12_LAUNCH_STATE_OFFSET, 4, n.launched ? 1n : 0n);
}

// ---- a VMCS held as slots (cached_shadow_vmcs12, the shadow VMCS) ----

const FIELD_MASK = { 16: 0xffffn, 32: 0xffffffffn, 64: 0xffffffffffffffffn, natural: 0xffffffffffffffffn } as const;

/** The CPU's VMREAD of a field of a VMCS held as slots (a _HIGH encoding reads the upper half). */
export function slotRead(arr: BigUint64Array, f: VmcsField): bigint {
  const x = arr[f.slot];
  return f.isHigh ? x >> 32n : x;
}

/** The CPU's VMWRITE (a _HIGH encoding writes the upper half; narrower fields keep their low bits). */
export function slotWrite(arr: BigUint64Array, f: VmcsField, value: bigint): void {
  if (f.isHigh) arr[f.slot] = (arr[f.slot] & 0xffffffffn) | ((value & 0xffffffffn) << 32n);
  else arr[f.slot] = value & FIELD_MASK[f.width];
}

// ---- nested_cpu_has* (vmx/nested.h) ----

/** nested_cpu_has2: vmcs12 activates secondary controls and sets `bit` in them. */
export function nestedCpuHasSecondary(v: Vcpu, bit: number): boolean {
  const n = v.nested;
  return (vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS) !== 0 && (vmcs12Get32(n, VMCS.SECONDARY_VM_EXEC_CONTROL) & bit) !== 0;
}

/** nested_cpu_has(vmcs12, CPU_BASED_USE_MSR_BITMAPS) */
export function nestedUsesMsrBitmaps(v: Vcpu): boolean {
  return (vmcs12Get32(v.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.USE_MSR_BITMAPS) !== 0;
}
