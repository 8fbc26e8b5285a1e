/**
 * The merge itself (nested_vmx_prepare_msr_bitmap after its early-outs),
 * shared by every path that builds a real vmcs02 bitmap.
 */
import { MSR, NESTED_MERGED_MSRS, SECONDARY_EXEC, VMCS, msrBitmapPosition } from '@nvx/arch';
import { Ctx, writable } from '../../ctx';
import { gpaToGfn, guestPage } from '../../memory';
import { NESTED_PAGE, l0ReadPage } from '../../nested-pages';
import { Vcpu, World, setBitmapBit, testBitmapBit } from '../../state';
import { nestedCpuHasSecondary, nestedUsesMsrBitmaps, vmcs12Get } from '../../vmcs12';

/** x2APIC MSRs 0x800-0x8ff: their read bits are bytes 0x100-0x11f of the bitmap, write bits 0x900-0x91f. */
const X2APIC_READ_BYTE = 0x800 >> 3;
const X2APIC_BYTES = 0x100 >> 3;
const WRITE_OFFSET = 0x800;

export { nestedCpuHasSecondary, nestedUsesMsrBitmaps };

/** L1's bitmap page as it is in guest memory now, or null if it cannot be mapped. */
export function l1BitmapPage(w: World, v: Vcpu): Uint8Array | null {
  return guestPage(w.mem, gpaToGfn(vmcs12Get(v.nested, VMCS.MSR_BITMAP)));
}

export interface MergeOptions {
  /** the allow-list (KVM's, unless a variant says otherwise) */
  merged?: readonly { msr: number; read: boolean; write: boolean }[];
}

/**
 * Rebuild vmcs02's bitmap from vmcs01 and L1's bitmap page. Returns false
 * when L1's page cannot be mapped (vmcs02 then runs without MSR bitmaps, so
 * every access exits: the safe default).
 */
export function mergeMsrBitmap(ctx: Ctx, w: World, v: Vcpu, opts: MergeOptions = {}): boolean {
  // L1's page as the guest-pages path maps it (kvm_vcpu_map for the merge, or the bitmap's cache)
  const l1 = l0ReadPage(ctx, w, v, NESTED_PAGE.MSR_BITMAP);
  if (!l1) return false;
  ctx.cost.msrBitmapMerges++;
  const l0 = writable(ctx, v.nested, 'vmcs02MsrBitmap');
  const l01 = v.vmcs01MsrBitmap;
  let bytes = 0;

  // x2APIC: intercept the whole range, then open what vmcs12's APIC
  // virtualization makes safe. vmcs01 is ignored here on purpose: L1 may run
  // with xAPIC itself.
  l0.fill(0xff, X2APIC_READ_BYTE, X2APIC_READ_BYTE + X2APIC_BYTES);
  l0.fill(0xff, WRITE_OFFSET + X2APIC_READ_BYTE, WRITE_OFFSET + X2APIC_READ_BYTE + X2APIC_BYTES);
  if (nestedCpuHasSecondary(v, SECONDARY_EXEC.VIRTUALIZE_X2APIC_MODE)) {
    if (nestedCpuHasSecondary(v, SECONDARY_EXEC.APIC_REGISTER_VIRT)) {
      l0.set(l1.subarray(X2APIC_READ_BYTE, X2APIC_READ_BYTE + X2APIC_BYTES), X2APIC_READ_BYTE);
      bytes += X2APIC_BYTES;
    }
    bytes += disableX2apicIntercept(l1, l0, MSR.MSR_X2APIC_TPR, true, true);
    if (nestedCpuHasSecondary(v, SECONDARY_EXEC.VIRTUAL_INTR_DELIVERY)) {
      bytes += disableX2apicIntercept(l1, l0, MSR.MSR_X2APIC_EOI, false, true);
      bytes += disableX2apicIntercept(l1, l0, MSR.MSR_X2APIC_SELF_IPI, false, true);
    }
  }

  // The allow-list: intercept in vmcs02 iff vmcs01 or L1 intercepts, both ways.
  for (const m of opts.merged ?? NESTED_MERGED_MSRS) {
    if (m.read) {
      setBitmapBit(l0, m.msr, false, testBitmapBit(l01, m.msr, false) || testBitmapBit(l1, m.msr, false));
      bytes++;
    }
    if (m.write) {
      setBitmapBit(l0, m.msr, true, testBitmapBit(l01, m.msr, true) || testBitmapBit(l1, m.msr, true));
      bytes++;
    }
  }
  ctx.cost.msrBitmapBytesRead += bytes;
  return true;
}

/** nested_vmx_disable_intercept_for_x2apic_msr: open an x2APIC access only if L1 does not intercept it. */
function disableX2apicIntercept(l1: Uint8Array, l0: Uint8Array, msr: number, read: boolean, write: boolean): number {
  let bytes = 0;
  if (read) {
    if (!testBitmapBit(l1, msr, false)) setBitmapBit(l0, msr, false, false);
    bytes++;
  }
  if (write) {
    if (!testBitmapBit(l1, msr, true)) setBitmapBit(l0, msr, true, false);
    bytes++;
  }
  return bytes;
}

/** For divergence reports: the three bitmaps' bits for one access. */
export function explainBits(w: World, v: Vcpu, msr?: number, write?: boolean): Record<string, string> {
  if (msr === undefined) return {};
  const acc = write ? 'write' : 'read';
  const pos = msrBitmapPosition(msr, acc);
  if (!pos) return { bitmap: `MSR 0x${msr.toString(16)} is outside both bitmap ranges: always intercepted` };
  const l1 = l1BitmapPage(w, v);
  const bit = (bm: Uint8Array | null) => (bm ? String(testBitmapBit(bm, msr, !!write) ? 1 : 0) : 'unmapped');
  return {
    [`vmcs02 ${acc} bit (byte 0x${pos.byte.toString(16)} bit ${pos.bit})`]: v.nested.vmcs02UseMsrBitmaps ? bit(v.nested.vmcs02MsrBitmap) : 'no MSR bitmap (every access exits)',
    [`vmcs01 ${acc} bit`]: bit(v.vmcs01MsrBitmap),
    [`L1 bitmap ${acc} bit`]: nestedUsesMsrBitmaps(v) ? bit(l1) : 'vmcs12 does not use MSR bitmaps',
    force_msr_bitmap_recalc: String(v.nested.forceMsrBitmapRecalc),
  };
}
