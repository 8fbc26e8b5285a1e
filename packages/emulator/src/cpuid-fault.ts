/**
 * CPUID faulting as the guest sees it: the rules every path shares.
 *
 * - MSR_PLATFORM_INFO (0xCE), bit 31: faulting supported. KVM sets it at vCPU
 *   creation; the guest may read it but never write it (#GP); the VMM may
 *   (host-initiated), except to clear bit 31 while the guest's faulting is on.
 * - MSR_MISC_FEATURES_ENABLES (0x140), bit 0: faulting on. A bit other than
 *   bit 0, or bit 0 without the support bit, is #GP.
 * - CPUID at CPL > 0 with faulting on and outside SMM raises #GP(0) and does
 *   not advance RIP; otherwise it returns the CPUID result.
 *
 * Both MSRs are per vCPU, shared by L1 and L2 (an L2 access L1 does not
 * intercept reaches the same value, as in KVM).
 *
 * Who applies the CPUID rule depends on the path: the hardware, when the
 * path left bit 0 set in the physical MSR while the guest runs (the #GP has
 * priority over the CPUID VM-exit, SDM 25.1.1; the CPU itself is never in
 * SMM here, KVM emulates the guest's SMM), or L0 at the CPUID VM-exit
 * (kvm_emulate_cpuid), which every CPUID takes otherwise.
 *
 * In L2, KVM reflects every CPUID VM-exit to L1 (exit reason 10) without
 * looking at the faulting bit. On hardware, with L1's faulting on, L2's CPUID
 * at CPL > 0 faults in L2 first. config.l2CpuidFaultArchitectural selects the
 * hardware's order; the default is KVM's.
 */
import { EXIT_REASON, MSR, MSR_MISC_FEATURES_ENABLES_CPUID_FAULT, MSR_PLATFORM_INFO_CPUID_FAULT, VMCS, isVmxCapMsr } from '@nvx/arch';
import type { Outcome } from '@nvx/trace';
import type { Ctx } from './ctx';
import { GP, OK, UD, ignored } from './nested';
import type { Vcpu, World } from './state';
import { vmcs12Get32, vmcs12Set } from './vmcs12';
import { hostSetVmxMsr } from './vmx-msrs';

export const PLATFORM_INFO_CPUID_FAULT = BigInt(MSR_PLATFORM_INFO_CPUID_FAULT);
export const MISC_FEATURES_CPUID_FAULT = BigInt(MSR_MISC_FEATURES_ENABLES_CPUID_FAULT);

export function isCpuidFaultMsr(msr: number): boolean {
  return msr === MSR.MSR_PLATFORM_INFO || msr === MSR.MSR_MISC_FEATURES_ENABLES;
}

/** cpuid_fault_enabled */
export function cpuidFaultEnabled(v: Vcpu): boolean {
  return (v.cpuidFault.miscFeaturesEnables & MISC_FEATURES_CPUID_FAULT) !== 0n;
}

/** The guest's rule: does a CPUID at this CPL raise #GP(0)? (kvm_emulate_cpuid since "Ignore cpuid faulting in SMM") */
export function cpuidFaultApplies(v: Vcpu, cpl: number): boolean {
  return cpuidFaultEnabled(v) && cpl > 0 && !v.cpuidFault.smm;
}

/**
 * Bit 0 of MSR 0x140 as a path using hardware faulting must have it while
 * this vCPU runs: the guest's faulting, but not in SMM (the CPU is not in
 * SMM when KVM emulates the guest's, so the hardware would fault) and, in
 * KVM's order, not while L2 runs (KVM reflects L2's CPUID to L1).
 */
export function guestHardwareBit(w: World, v: Vcpu): number {
  if (!cpuidFaultEnabled(v) || v.cpuidFault.smm) return 0;
  if (v.nested.guestMode && !w.config.l2CpuidFaultArchitectural) return 0;
  return MSR_MISC_FEATURES_ENABLES_CPUID_FAULT;
}

/** Tell the path that what decides the vCPU's faulting changed (WRMSR, SMM, nested entry or exit). */
export function cpuidFaultChanged(ctx: Ctx, w: World, v: Vcpu): void {
  if (v.cpu >= 0) ctx.profile.paths['cpuid-fault'].update(ctx, w, v);
}

/**
 * RDMSR of MSR_PLATFORM_INFO or MSR_MISC_FEATURES_ENABLES (L1's, or L2's that L0 handles).
 * kvm_get_msr_common: with KVM_CAP_MSR_PLATFORM_INFO disabled the guest's read of
 * MSR_PLATFORM_INFO is #GP (platform_info_test.c).
 */
export function guestRdmsr(w: World, v: Vcpu, msr: number): Outcome {
  if (msr === MSR.MSR_PLATFORM_INFO && !w.config.msrPlatformInfo) return GP;
  const f = v.cpuidFault;
  return { k: 'value', value: msr === MSR.MSR_PLATFORM_INFO ? f.platformInfo : f.miscFeaturesEnables };
}

/** WRMSR of MSR_PLATFORM_INFO (never from the guest) or MSR_MISC_FEATURES_ENABLES (kvm_set_msr_common). */
export function guestWrmsr(ctx: Ctx, w: World, v: Vcpu, msr: number, value: bigint): Outcome {
  if (msr === MSR.MSR_PLATFORM_INFO) return GP;
  const f = v.cpuidFault;
  if (value & ~MISC_FEATURES_CPUID_FAULT) return GP;
  if (value & MISC_FEATURES_CPUID_FAULT && !(f.platformInfo & PLATFORM_INFO_CPUID_FAULT)) return GP;
  if (f.miscFeaturesEnables === value) return OK;
  f.miscFeaturesEnables = value;
  cpuidFaultChanged(ctx, w, v);
  return OK;
}

/**
 * host.platform-info: the VMM writes MSR_PLATFORM_INFO (KVM_SET_MSRS,
 * host-initiated). Accepted whatever the guest's faulting state: KVM used to
 * refuse clearing bit 31 while MISC_FEATURES_ENABLES bit 0 was set, and
 * dropped that ordering rule in v6.13 ("KVM: x86: Remove ordering check b/w
 * MSR_PLATFORM_INFO and MISC_FEATURES_ENABLES", 9d2dcfb82db1 in kvm-x86).
 * The same series makes the MSR immutable once the vCPU has run
 * (kvm_is_immutable_feature_msr); the model does not track KVM_RUN and lets
 * the VMM change it at any point, which the cpuid-fault paths rely on.
 */
export function hostPlatformInfo(w: World, vcpu: number, value: bigint): Outcome {
  const v = w.vcpus[vcpu];
  if (!v) return ignored('no such vCPU');
  v.cpuidFault.platformInfo = value;
  return OK;
}

/**
 * KVM_SET_MSRS of MSR_MISC_FEATURES_ENABLES (host-initiated): the same rules
 * as the guest's write in kvm_set_msr_common (bit 0 only, and only with
 * MSR_PLATFORM_INFO bit 31); a refused write is reported as ignored.
 */
export function hostMiscFeaturesEnables(ctx: Ctx, w: World, v: Vcpu, value: bigint): Outcome {
  const out = guestWrmsr(ctx, w, v, MSR.MSR_MISC_FEATURES_ENABLES, value);
  return out.k === 'gp' ? ignored(`KVM refuses MSR_MISC_FEATURES_ENABLES = 0x${value.toString(16)}: bit 0 only, and only with MSR_PLATFORM_INFO bit 31`) : out;
}

/**
 * do_set_msr (x86.c): one MSR of KVM_SET_MSRS, host-initiated, for the MSRs
 * the model has: the VMX capability MSRs (vmx_set_vmx_msr), then
 * MSR_PLATFORM_INFO and MSR_MISC_FEATURES_ENABLES (kvm_set_msr_common's
 * cases). A write KVM refuses is reported as ignored. The operation
 * do_set_msr of the table (host.set-msr and host.platform-info call it).
 */
export function doSetMsr(ctx: Ctx, w: World, v: Vcpu, msr: number, value: bigint): Outcome {
  if (isVmxCapMsr(msr)) return hostSetVmxMsr(w, v, msr, value);
  if (msr === MSR.MSR_PLATFORM_INFO) return hostPlatformInfo(w, v.id, value);
  if (msr === MSR.MSR_MISC_FEATURES_ENABLES) return hostMiscFeaturesEnables(ctx, w, v, value);
  return ignored(`KVM_SET_MSRS of MSR 0x${msr.toString(16)} is not modelled`);
}

/** host.smi: the vCPU takes an SMI and L1 enters SMM (KVM's enter_smm). */
export function hostSmi(ctx: Ctx, w: World, vcpu: number): Outcome {
  const v = w.vcpus[vcpu];
  if (!v) return ignored('no such vCPU');
  if (v.nested.guestMode) return ignored('an SMI while L2 runs is not modelled');
  if (v.cpuidFault.smm) return ignored(`vCPU ${vcpu} is in SMM already (the SMI stays pending)`);
  v.cpuidFault.smm = true;
  cpuidFaultChanged(ctx, w, v);
  return OK;
}

/** l1.rsm: leave SMM; #UD outside it. */
export function l1Rsm(ctx: Ctx, w: World, v: Vcpu): Outcome {
  if (!v.cpuidFault.smm) return UD;
  v.cpuidFault.smm = false;
  cpuidFaultChanged(ctx, w, v);
  return OK;
}

/** The hardware's part: bit 0 of MSR 0x140 on the CPU the vCPU runs on faults a CPUID at CPL > 0 before any VM-exit. */
function hardwareFaults(w: World, v: Vcpu, cpl: number): boolean {
  const p = w.host.pcpus[v.cpu];
  return p !== undefined && (p.miscFeaturesEnables & MSR_MISC_FEATURES_ENABLES_CPUID_FAULT) !== 0 && cpl > 0;
}

/** CPUID in L1: a #GP from the hardware, or a VM-exit that L0 handles (kvm_emulate_cpuid). */
export function l1Cpuid(ctx: Ctx, w: World, v: Vcpu, cpl: number, result: () => Outcome): Outcome {
  if (hardwareFaults(w, v, cpl)) {
    ctx.cost.gpWithoutExit++;
    return GP;
  }
  ctx.cost.l1CpuidExits++;
  ctx.cost.cpuidExits++;
  if (ctx.profile.paths['cpuid-fault'].cpuidExitFaults(w, v, cpl)) return GP;
  return result();
}

const GP_VECTOR = 13;
/** VM-exit interruption information of a #GP: vector 13, hardware exception (type 3), error code valid, valid. */
const GP_EXIT_INTR_INFO = BigInt((GP_VECTOR | (3 << 8) | (1 << 11) | (1 << 31)) >>> 0);

/**
 * #GP(0) in L2: when vmcs12's exception bitmap intercepts #GP it becomes a
 * nested VM-exit (EXCEPTION_NMI) to L1, else L2's own handler takes it.
 */
function l2Gp(ctx: Ctx, w: World, v: Vcpu, fromHardware: boolean): Outcome {
  if (vmcs12Get32(v.nested, VMCS.EXCEPTION_BITMAP) & (1 << GP_VECTOR)) {
    // vmcs02's exception bitmap has vmcs12's bits: the hardware #GP exits to L0 first.
    if (fromHardware) ctx.cost.l0Exits++;
    const out = ctx.profile.ops.nested_vmx_vmexit(ctx, w, v, EXIT_REASON.EXCEPTION_NMI, 0n);
    // A #GP L0 injected while emulating L2's CPUID (nested_vmx_inject_exception_vmexit) reports
    // vmcs02's instruction length, which the CPUID VM-exit set (2). After a #GP the hardware
    // raised, KVM reflects whatever the CPU left in vmcs02's field, which the SDM leaves
    // undefined for exception exits (28.2.4); L1 cannot rely on it, so it must not tell the two
    // paths apart: the model gives it the one value KVM's emulation produces.
    vmcs12Set(ctx, v.nested, VMCS.VM_EXIT_INSTRUCTION_LEN, 2n);
    vmcs12Set(ctx, v.nested, VMCS.VM_EXIT_INTR_INFO, GP_EXIT_INTR_INFO);
    vmcs12Set(ctx, v.nested, VMCS.VM_EXIT_INTR_ERROR_CODE, 0n);
    return out;
  }
  if (fromHardware) ctx.cost.gpWithoutExit++;
  return GP;
}

/**
 * CPUID in L2: a #GP from the hardware (only when a path left bit 0 set
 * while L2 runs), else a VM-exit to L0, which reflects it to L1 (KVM's
 * order) or, in the architectural order, first raises the #GP L1's
 * faulting calls for.
 */
export function l2Cpuid(ctx: Ctx, w: World, v: Vcpu, cpl: number): Outcome {
  if (hardwareFaults(w, v, cpl)) return l2Gp(ctx, w, v, true);
  ctx.cost.l0Exits++;
  ctx.cost.cpuidExits++;
  if (w.config.l2CpuidFaultArchitectural && ctx.profile.paths['cpuid-fault'].cpuidExitFaults(w, v, cpl)) return l2Gp(ctx, w, v, false);
  return ctx.profile.ops.nested_vmx_vmexit(ctx, w, v, EXIT_REASON.CPUID, 0n);
}
