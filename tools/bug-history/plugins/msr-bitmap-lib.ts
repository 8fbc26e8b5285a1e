/**
 * Helpers the msr-bitmap bug plugins share: the vmcs02 bitmap around KVM's
 * merge (mergeMsrBitmap, the body of nested_vmx_prepare_msr_bitmap), so a
 * plugin can put back one old behaviour of the merge and keep the rest.
 */
import { CPU_BASED, VMCS } from '@nvx/arch';
import { Ctx, NESTED_PAGE, PAGE_ACCESS, Vcpu, World, mergeMsrBitmap, nestedPageGpa, vmcs12Get32, writable } from '@nvx/emulator';

/** x2APIC MSRs 0x800-0x8ff: read bits at bytes 0x100-0x11f of the bitmap, write bits 0x800 further. */
export const X2APIC_READ_BYTE = 0x100;
export const X2APIC_BYTES = 0x20;
export const WRITE_OFFSET = 0x800;

/** nested_cpu_has(vmcs12, CPU_BASED_USE_MSR_BITMAPS) */
export function nestedUsesMsrBitmaps(v: Vcpu): boolean {
  return (vmcs12Get32(v.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.USE_MSR_BITMAPS) !== 0;
}

/** nested_cpu_has2(vmcs12, bit): the secondary control, only while the primary controls activate them */
export function nestedCpuHas2(v: Vcpu, bit: number): boolean {
  const n = v.nested;
  return (vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS) !== 0 && (vmcs12Get32(n, VMCS.SECONDARY_VM_EXEC_CONTROL) & bit) !== 0;
}

/** L1's MSR-bitmap page as L0 maps it for the merge (through the selected guest-pages path). */
export function l1BitmapPage(ctx: Ctx, w: World, v: Vcpu): Uint8Array | null {
  return ctx.profile.paths['guest-pages'].l0Page(ctx, w, v, NESTED_PAGE.MSR_BITMAP, nestedPageGpa(v, NESTED_PAGE.MSR_BITMAP), PAGE_ACCESS.READ);
}

/** Byte ranges [start, end) of the bitmap. */
export type ByteRanges = readonly (readonly [number, number])[];

/** The x2APIC read and write bytes. */
export const X2APIC_RANGES: ByteRanges = [
  [X2APIC_READ_BYTE, X2APIC_READ_BYTE + X2APIC_BYTES],
  [WRITE_OFFSET + X2APIC_READ_BYTE, WRITE_OFFSET + X2APIC_READ_BYTE + X2APIC_BYTES],
];

/**
 * KVM's merge, except that in `ranges` it only ever clears intercept bits:
 * a bit the merge would set again stays as an earlier merge left it (vmcs02's
 * bitmap starts all-ones at VMXON). This is how the merge worked before KVM
 * rebuilt every bit it owns at every entry.
 */
export function mergeOnlyClearing(ctx: Ctx, w: World, v: Vcpu, ranges: ByteRanges): boolean {
  const before = v.nested.vmcs02MsrBitmap.slice();
  if (!mergeMsrBitmap(ctx, w, v)) return false;
  const bm = writable(ctx, v.nested, 'vmcs02MsrBitmap');
  for (const [start, end] of ranges) for (let i = start; i < end; i++) bm[i] &= before[i];
  return true;
}
