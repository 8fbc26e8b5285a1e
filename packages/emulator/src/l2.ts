/**
 * What L2's instructions do: run natively under vmcs02, or exit to L0, which
 * either reflects a nested VM-exit to L1 (nested_vmx_reflect_vmexit,
 * nested_vmx_l1_wants_exit) or handles the exit itself.
 *
 * The architectural meaning of an MSR access L1 lets through is defined once
 * (l2MsrRead / l2MsrWrite): that is what L2 must see whoever executes it.
 * A native access reaches the real hardware register, which holds L2's value
 * only where neither L0 (vmcs01) nor APIC virtualization says otherwise:
 * `nativeMsrRead` / `nativeMsrWrite` model that, so a vmcs02 bitmap that lets
 * through more than vmcs01 or vmcs12 allow shows up as a different value.
 */
import { CPU_BASED, EXIT_REASON, MSR, SECONDARY_EXEC, VMCS } from '@nvx/arch';
import type { Outcome } from '@nvx/trace';
import { nestedCpuHasSecondary, nestedUsesMsrBitmaps } from './vmcs12';
import { NESTED_PAGE, apicAccessTarget, l0PeekPage, vapicHwRead, vapicHwWrite, vapicL0Read, vapicL0Write } from './nested-pages';
import { guestRdmsr, guestWrmsr, isCpuidFaultMsr } from './cpuid-fault';
import type { Ctx } from './ctx';
import { pfnPage, readLE, writablePfn, writeLE } from './memory';
import { OK } from './nested';
import { Vcpu, World, testBitmapBit } from './state';
import { vmcs12Get, vmcs12Get32 } from './vmcs12';

/** What a host-owned register holds: L0's value, never L2's. Deterministic so traces replay alike. */
export function hostMsrValue(msr: number): bigint {
  return 0x4c30000000000000n | BigInt(msr);
}

const isX2apic = (msr: number) => msr >= 0x800 && msr <= 0x8ff;

/** vAPIC page offset of an x2APIC MSR: (msr & 0xff) << 4 */
const x2apicOffset = (msr: number) => (msr & 0xff) << 4;

/** Does vmcs12's APIC virtualization handle this x2APIC access in hardware (SDM 29.5)? */
function x2apicVirtualized(v: Vcpu, msr: number, write: boolean): boolean {
  if (!nestedCpuHasSecondary(v, SECONDARY_EXEC.VIRTUALIZE_X2APIC_MODE)) return false;
  if (msr === MSR.MSR_X2APIC_TPR) return true;
  if (!write) return nestedCpuHasSecondary(v, SECONDARY_EXEC.APIC_REGISTER_VIRT);
  return (msr === MSR.MSR_X2APIC_EOI || msr === MSR.MSR_X2APIC_SELF_IPI) && nestedCpuHasSecondary(v, SECONDARY_EXEC.VIRTUAL_INTR_DELIVERY);
}

// The virtual-APIC page is reached through the guest-pages path: by the CPU at the host address
// vmcs02 holds (vapicHw*), by L0 through its own mapping when it emulates an access (vapicL0*).

/** The value an RDMSR in L2 must return when L1 does not intercept it (L0 emulates it). */
export function l2MsrRead(ctx: Ctx, w: World, v: Vcpu, msr: number): bigint {
  if (isX2apic(msr) && x2apicVirtualized(v, msr, false)) return vapicL0Read(ctx, w, v, x2apicOffset(msr));
  return v.l2Msrs[msr] ?? 0n;
}

export function l2MsrWrite(ctx: Ctx, w: World, v: Vcpu, msr: number, value: bigint): void {
  if (isX2apic(msr) && x2apicVirtualized(v, msr, true)) vapicL0Write(ctx, w, v, x2apicOffset(msr), value);
  else v.l2Msrs[msr] = value;
}

/** A RDMSR that vmcs02 lets L2 execute without an exit. */
function nativeMsrRead(ctx: Ctx, w: World, v: Vcpu, msr: number): bigint {
  if (isX2apic(msr)) return x2apicVirtualized(v, msr, false) ? vapicHwRead(ctx, w, v, x2apicOffset(msr)) : hostMsrValue(msr);
  if (testBitmapBit(v.vmcs01MsrBitmap, msr, false)) return hostMsrValue(msr);
  return v.l2Msrs[msr] ?? 0n;
}

function nativeMsrWrite(ctx: Ctx, w: World, v: Vcpu, msr: number, value: bigint): void {
  if (isX2apic(msr)) {
    if (x2apicVirtualized(v, msr, true)) vapicHwWrite(ctx, w, v, x2apicOffset(msr), value);
    // else: the write hit L0's own APIC; L2's architectural state does not change
    return;
  }
  if (testBitmapBit(v.vmcs01MsrBitmap, msr, true)) return; // L0 owns the register: the value is lost for L2
  v.l2Msrs[msr] = value;
}

/**
 * nested_vmx_exit_handled_msr: does L1 want this MSR exit? Reads L1's
 * bitmap from guest memory now, at vmcs12->msr_bitmap.
 */
export function nestedVmxExitHandledMsr(ctx: Ctx, w: World, v: Vcpu, msr: number, write: boolean): boolean {
  if (!nestedUsesMsrBitmaps(v)) return true;
  // kvm_vcpu_read_guest of one byte of L1's bitmap (through the guest-pages path)
  const page = l0PeekPage(ctx, w, v, NESTED_PAGE.MSR_BITMAP);
  ctx.cost.msrBitmapBytesRead++;
  if (!page) return true;
  return testBitmapBit(page, msr, write);
}

function vmcs02Intercepts(v: Vcpu, msr: number, write: boolean): boolean {
  return !v.nested.vmcs02UseMsrBitmaps || testBitmapBit(v.nested.vmcs02MsrBitmap, msr, write);
}

export function l2Rdmsr(ctx: Ctx, w: World, v: Vcpu, msr: number): Outcome {
  if (!vmcs02Intercepts(v, msr, false)) return { k: 'value', value: nativeMsrRead(ctx, w, v, msr) };
  ctx.cost.l0Exits++;
  const ops = ctx.profile.ops;
  if (ops.nested_vmx_exit_handled_msr(ctx, w, v, msr, false)) return ops.nested_vmx_vmexit(ctx, w, v, EXIT_REASON.MSR_READ, 0n);
  // MSR_PLATFORM_INFO and MISC_FEATURES_ENABLES are the vCPU's, shared with L1 (cpuid-fault)
  if (isCpuidFaultMsr(msr)) return guestRdmsr(w, v, msr);
  return { k: 'value', value: l2MsrRead(ctx, w, v, msr) };
}

export function l2Wrmsr(ctx: Ctx, w: World, v: Vcpu, msr: number, value: bigint): Outcome {
  if (!vmcs02Intercepts(v, msr, true)) {
    nativeMsrWrite(ctx, w, v, msr, value);
    return OK;
  }
  ctx.cost.l0Exits++;
  const ops = ctx.profile.ops;
  if (ops.nested_vmx_exit_handled_msr(ctx, w, v, msr, true)) return ops.nested_vmx_vmexit(ctx, w, v, EXIT_REASON.MSR_WRITE, 0n);
  if (isCpuidFaultMsr(msr)) return guestWrmsr(ctx, w, v, msr, value);
  l2MsrWrite(ctx, w, v, msr, value);
  return OK;
}

/** nested_vmx_reflect_vmexit for exits L1 always wants (CPUID, VMCALL; VMREAD/VMWRITE see l2-vmcs.ts). */
export function l2AlwaysReflected(ctx: Ctx, w: World, v: Vcpu, reason: number, qual = 0n): Outcome {
  ctx.cost.l0Exits++;
  if (reason === EXIT_REASON.CPUID) ctx.cost.cpuidExits++;
  return ctx.profile.ops.nested_vmx_vmexit(ctx, w, v, reason, qual);
}

const APIC_TASKPRI = 0x80;

/**
 * An L2 access to its APIC page. With APIC-access virtualization and a TPR
 * shadow, TPR accesses (and reads, with APIC-register virtualization) go to
 * the virtual-APIC page; everything else is an APIC-access exit to L1
 * (qualification: offset, access type 1 for a write).
 *
 * The CPU recognizes an APIC access by host address: the access reaches the
 * host page backing the APIC-access gfn now, and only if that is the page
 * vmcs02's APIC_ACCESS_ADDR names is it virtualized; otherwise it is a plain
 * memory access (a write lands in that page, a read returns its bytes).
 * When no memslot backs the gfn any more, the access takes an EPT violation
 * to L0, which finds nothing to map and emulates it as MMIO: KVM_RUN returns
 * KVM_EXIT_MMIO to userspace and L1 sees nothing (kvm_mmu_page_fault ->
 * emulation; vmx_apic_access_test.c covers the entry-time side).
 */
export function l2ApicAccess(ctx: Ctx, w: World, v: Vcpu, offset: number, write: boolean, value: bigint): Outcome {
  const n = v.nested;
  const apicAccess = nestedCpuHasSecondary(v, SECONDARY_EXEC.VIRTUALIZE_APIC_ACCESSES);
  const virt = apicAccess && (vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.TPR_SHADOW) !== 0;
  if (apicAccess) {
    const target = apicAccessTarget(ctx, w, v);
    if (target === null) {
      ctx.cost.l0Exits++;
      return { k: 'userspace', exit: 'mmio', gpa: vmcs12Get(n, VMCS.APIC_ACCESS_ADDR) + BigInt(offset & 0xfff) };
    }
    if (target !== 'virtualized') {
      const at = (offset & 0xffc);
      if (!write) return { k: 'value', value: readLE(pfnPage(w.mem, target), at, 4) };
      writeLE(writablePfn(ctx, w.mem, target), at, 4, value & 0xffffffffn);
      return OK;
    }
  }
  const off = offset & 0xff0;
  if (virt && (off === APIC_TASKPRI || (!write && nestedCpuHasSecondary(v, SECONDARY_EXEC.APIC_REGISTER_VIRT))) && (offset & 0xf) === 0) {
    if (write) {
      vapicHwWrite(ctx, w, v, off, value);
      return OK;
    }
    return { k: 'value', value: vapicHwRead(ctx, w, v, off) };
  }
  ctx.cost.l0Exits++;
  return ctx.profile.ops.nested_vmx_vmexit(ctx, w, v, EXIT_REASON.APIC_ACCESS, BigInt(offset & 0xfff) | (write ? 0x1000n : 0n));
}
