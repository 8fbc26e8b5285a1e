/**
 * The VMX capability MSRs (IA32_VMX_BASIC 0x480 ... IA32_VMX_VMFUNC 0x491) as
 * KVM reports them to L1, and KVM's rules for userspace restoring them.
 *
 * Sources (Linux v6.13, arch/x86/kvm/vmx/nested.c):
 * - nested_vmx_setup_ctls_msrs and its helpers nested_vmx_setup_{pinbased,
 *   exit,entry,cpubased,secondary}_ctls, nested_vmx_setup_misc_data,
 *   nested_vmx_setup_basic, nested_vmx_setup_cr_fixed,
 *   nested_vmx_calc_vmcs_enum_msr: the values;
 * - vmx_get_vmx_msr: how the non-TRUE control MSRs are derived (the TRUE
 *   value with the default-1 bits forced on);
 * - vmx_set_vmx_msr, vmx_restore_vmx_basic, vmx_restore_control_msr,
 *   vmx_restore_vmx_misc, vmx_restore_fixed0_msr,
 *   vmx_restore_vmx_ept_vpid_cap: which host-initiated writes are accepted;
 * - vmx.c vmx_set_msr / vmx_get_msr (KVM_FIRST_EMULATED_VMX_MSR ..
 *   KVM_LAST_EMULATED_VMX_MSR): guest writes are refused (#GP), the range
 *   ends at IA32_VMX_VMFUNC.
 * Bit positions: Intel SDM Vol. 3 appendix A and KVM's asm/vmx.h.
 *
 * KVM intersects most "allowed-1" bits with what the host CPU supports
 * (vmcs_config). The model's host supports every control KVM is willing to
 * pass through, so each such bit is present; the features a trace's config
 * can switch (EPT, VPID, APICv, PML/A-D bits, VMWRITE to any field) decide
 * the rest, as KVM's module parameters (enable_ept, enable_vpid, ...) do.
 */
import { VMCS, VMCS_FIELDS } from './vmcs';

const bit = (n: number): bigint => 1n << BigInt(n);
const ctl = (low: bigint, high: bigint): bigint => low | (high << 32n);

/** The VMX capability MSRs, 0x480-0x491 (KVM_FIRST_EMULATED_VMX_MSR .. KVM_LAST_EMULATED_VMX_MSR). */
export const VMX_CAP_MSR = Object.freeze({
  BASIC: 0x480,
  PINBASED_CTLS: 0x481,
  PROCBASED_CTLS: 0x482,
  EXIT_CTLS: 0x483,
  ENTRY_CTLS: 0x484,
  MISC: 0x485,
  CR0_FIXED0: 0x486,
  CR0_FIXED1: 0x487,
  CR4_FIXED0: 0x488,
  CR4_FIXED1: 0x489,
  VMCS_ENUM: 0x48a,
  PROCBASED_CTLS2: 0x48b,
  EPT_VPID_CAP: 0x48c,
  TRUE_PINBASED_CTLS: 0x48d,
  TRUE_PROCBASED_CTLS: 0x48e,
  TRUE_EXIT_CTLS: 0x48f,
  TRUE_ENTRY_CTLS: 0x490,
  VMFUNC: 0x491,
});
export const KVM_FIRST_EMULATED_VMX_MSR = 0x480;
export const KVM_LAST_EMULATED_VMX_MSR = 0x491;

export function isVmxCapMsr(msr: number): boolean {
  return msr >= KVM_FIRST_EMULATED_VMX_MSR && msr <= KVM_LAST_EMULATED_VMX_MSR;
}

/** The default-1 ("always on without TRUE MSR") control bits, SDM A.2. */
export const PIN_BASED_ALWAYSON_WITHOUT_TRUE_MSR = 0x16n;
export const CPU_BASED_ALWAYSON_WITHOUT_TRUE_MSR = 0x0401e172n;
export const VM_EXIT_ALWAYSON_WITHOUT_TRUE_MSR = 0x00036dffn;
export const VM_ENTRY_ALWAYSON_WITHOUT_TRUE_MSR = 0x000011ffn;

/**
 * The must-be-1 bits of the TRUE control MSRs KVM reports (their allowed-0
 * halves, nested_vmx_setup_*_ctls): the default-1 bits without those KVM
 * lets L1 clear (CR3-load/store exiting, save/load debug controls). Every
 * vmcs12 that enters has at least these set (vmx_control_verify).
 */
export const KVM_CTLS_MUST_BE_1 = Object.freeze({
  pin: Number(PIN_BASED_ALWAYSON_WITHOUT_TRUE_MSR),
  cpu: Number(CPU_BASED_ALWAYSON_WITHOUT_TRUE_MSR & ~(bit(15) | bit(16))),
  exit: Number(VM_EXIT_ALWAYSON_WITHOUT_TRUE_MSR & ~bit(2)),
  entry: Number(VM_ENTRY_ALWAYSON_WITHOUT_TRUE_MSR & ~bit(2)),
});

/** The control words whose must-be-1 bits the TRUE capability MSRs give, each with its MSR. */
export const MUST_BE_1_CONTROLS: readonly (readonly [field: number, msr: number])[] = Object.freeze([
  [VMCS.PIN_BASED_VM_EXEC_CONTROL, VMX_CAP_MSR.TRUE_PINBASED_CTLS],
  [VMCS.CPU_BASED_VM_EXEC_CONTROL, VMX_CAP_MSR.TRUE_PROCBASED_CTLS],
  [VMCS.VM_EXIT_CONTROLS, VMX_CAP_MSR.TRUE_EXIT_CTLS],
  [VMCS.VM_ENTRY_CONTROLS, VMX_CAP_MSR.TRUE_ENTRY_CTLS],
] as const);

/** IA32_VMX_BASIC fields and flags (SDM A.1). */
export const VMX_BASIC = Object.freeze({
  VMCS_SIZE_SHIFT: 32n,
  MEM_TYPE_SHIFT: 50n,
  MEM_TYPE_WB: 6n,
  DUAL_MONITOR_TREATMENT: bit(49),
  PHYS_ADDR_32BIT_ONLY: bit(48),
  INOUT: bit(54),
  TRUE_CTLS: bit(55),
  /** GENMASK(63,56) | GENMASK(47,45) | BIT(31) */
  RESERVED: (0xffn << 56n) | (7n << 45n) | bit(31),
});

/** IA32_VMX_EPT_VPID_CAP bits (SDM A.10; KVM's VMX_EPT_* and VMX_VPID_* << 32). */
export const EPT_VPID_CAP = Object.freeze({
  EXECUTE_ONLY: bit(0),
  PAGE_WALK_4: bit(6),
  PAGE_WALK_5: bit(7),
  EPTP_UC: bit(8),
  EPTP_WB: bit(14),
  PAGE_2MB: bit(16),
  PAGE_1GB: bit(17),
  INVEPT: bit(20),
  AD: bit(21),
  /** INVEPT types: bit 25 single-context (type 1), bit 26 global (type 2); KVM's VMX_EPT_EXTENT_SHIFT is 24 */
  EXTENT_CONTEXT: bit(25),
  EXTENT_GLOBAL: bit(26),
  INVVPID: bit(32),
  /** INVVPID types 0..3 are bits 40..43 */
  VPID_INDIVIDUAL_ADDR: bit(40),
  VPID_SINGLE_CONTEXT: bit(41),
  VPID_ALL_CONTEXT: bit(42),
  VPID_SINGLE_NON_GLOBAL: bit(43),
});

/** The configurable features that decide KVM's nested VMX MSRs (KVM module parameters and the config). */
export interface VmxCapFeatures {
  /** enable_ept */
  ept: boolean;
  /** enable_vpid */
  vpid: boolean;
  /** enable_apicv */
  apicv: boolean;
  /** enable_ept_ad_bits (and PML) */
  pml: boolean;
  /** VMX_MISC bit 29 left as KVM sets it (a VMM may restore MISC without it) */
  vmwriteAnyField: boolean;
}

/**
 * nested_vmx_calc_vmcs_enum_msr: the highest field index (encoding bits 9:1)
 * of any field in vmcs12, in bits 9:1 of IA32_VMX_VMCS_ENUM.
 */
export function vmcsEnumMsr(): bigint {
  return VMCS_ENUM;
}
const VMCS_ENUM: bigint = (() => {
  let max = 0;
  for (const f of VMCS_FIELDS) max = Math.max(max, (f.encoding >>> 1) & 0x1ff);
  return BigInt(max) << 1n;
})();

/** CR4 bits a guest with the model's CPUID may set (nested_vmx_cr_fixed1_bits_update): VME..PCE, OSFXSR, OSXMMEXCPT, UMIP, LA57, VMXE, FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP, PKE. */
export const KVM_CR4_FIXED1 = 0x773fffn;

/**
 * The capability MSRs KVM reports to L1 (vmx_get_vmx_msr of
 * vmcs_config.nested), by MSR index. The non-TRUE control MSRs are the TRUE
 * ones with the default-1 bits set in their allowed-0 half.
 */
export function kvmVmxCapMsrs(f: VmxCapFeatures): Map<number, bigint> {
  // nested_vmx_setup_pinbased_ctls
  const pinLow = BigInt(KVM_CTLS_MUST_BE_1.pin);
  const pinHigh = bit(0) | bit(3) | bit(5) | (f.apicv ? bit(7) : 0n) | PIN_BASED_ALWAYSON_WITHOUT_TRUE_MSR | bit(6);
  // nested_vmx_setup_exit_ctls: HOST_ADDR_SPACE_SIZE, LOAD/SAVE_PAT, CLEAR_BNDCFGS from the host; the rest emulated
  const exitLow = BigInt(KVM_CTLS_MUST_BE_1.exit);
  const exitHigh = bit(9) | bit(19) | bit(18) | bit(23) | VM_EXIT_ALWAYSON_WITHOUT_TRUE_MSR | bit(21) | bit(20) | bit(22) | bit(15) | bit(12);
  // nested_vmx_setup_entry_ctls: IA32E_MODE, LOAD_PAT, LOAD_BNDCFGS from the host; LOAD_EFER, LOAD_PERF_GLOBAL_CTRL emulated
  const entryLow = BigInt(KVM_CTLS_MUST_BE_1.entry);
  const entryHigh = bit(9) | bit(14) | bit(16) | VM_ENTRY_ALWAYSON_WITHOUT_TRUE_MSR | bit(15) | bit(13);
  // nested_vmx_setup_cpubased_ctls: free control of CR3 load/store exiting; MSR bitmaps always
  const procLow = BigInt(KVM_CTLS_MUST_BE_1.cpu);
  const procHigh =
    [2, 22, 3, 7, 9, 10, 15, 16, 19, 20, 23, 24, 25, 27, 29, 11, 12, 30, 21, 31].reduce((m, b) => m | bit(b), 0n) | CPU_BASED_ALWAYSON_WITHOUT_TRUE_MSR | bit(28);
  // nested_vmx_setup_secondary_ctls: DESC, RDTSCP, X2APIC mode, WBINVD, (APIC register virt, VID: APICv),
  // RDRAND, INVPCID, VMFUNC, RDSEED, XSAVES, TSC scaling, user wait/pause; shadow VMCS always (emulated)
  let sec = [2, 3, 4, 6, 11, 12, 13, 16, 20, 25, 26].reduce((m, b) => m | bit(b), 0n) | (f.apicv ? bit(8) | bit(9) : 0n) | bit(14);
  let ept = 0n;
  let vmfunc = 0n;
  if (f.ept) {
    sec |= bit(1);
    ept = EPT_VPID_CAP.PAGE_WALK_4 | EPT_VPID_CAP.PAGE_WALK_5 | EPT_VPID_CAP.EPTP_WB | EPT_VPID_CAP.INVEPT | EPT_VPID_CAP.EXECUTE_ONLY;
    ept |= EPT_VPID_CAP.EXTENT_GLOBAL | EPT_VPID_CAP.EXTENT_CONTEXT | EPT_VPID_CAP.PAGE_2MB | EPT_VPID_CAP.PAGE_1GB;
    if (f.pml) {
      sec |= bit(17);
      ept |= EPT_VPID_CAP.AD;
    }
    vmfunc = 1n; // VMX_VMFUNC_EPTP_SWITCHING, emulated
    sec |= bit(7); // enable_unrestricted_guest needs EPT
  }
  if (f.vpid) {
    sec |= bit(5);
    ept |= EPT_VPID_CAP.INVVPID | EPT_VPID_CAP.VPID_INDIVIDUAL_ADDR | EPT_VPID_CAP.VPID_SINGLE_CONTEXT | EPT_VPID_CAP.VPID_ALL_CONTEXT | EPT_VPID_CAP.VPID_SINGLE_NON_GLOBAL;
  }
  sec |= bit(0); // flexpriority: virtualize APIC accesses
  // nested_vmx_setup_misc_data: SAVE_EFER_LMA (host), VMWRITE any field, preemption-timer rate 5, HLT, WAIT-SIPI
  const misc = bit(5) | (f.vmwriteAnyField ? bit(29) : 0n) | 5n | bit(6) | bit(8);
  // nested_vmx_setup_basic: VMCS12_REVISION, VMCS12_SIZE, WB, TRUE controls, INS/OUTS info (host)
  const basic = 0x11e57ed0n | (0x1000n << VMX_BASIC.VMCS_SIZE_SHIFT) | (VMX_BASIC.MEM_TYPE_WB << VMX_BASIC.MEM_TYPE_SHIFT) | VMX_BASIC.TRUE_CTLS | VMX_BASIC.INOUT;
  const M = VMX_CAP_MSR;
  return new Map<number, bigint>([
    [M.BASIC, basic],
    [M.PINBASED_CTLS, ctl(pinLow | PIN_BASED_ALWAYSON_WITHOUT_TRUE_MSR, pinHigh)],
    [M.PROCBASED_CTLS, ctl(procLow | CPU_BASED_ALWAYSON_WITHOUT_TRUE_MSR, procHigh)],
    [M.EXIT_CTLS, ctl(exitLow | VM_EXIT_ALWAYSON_WITHOUT_TRUE_MSR, exitHigh)],
    [M.ENTRY_CTLS, ctl(entryLow | VM_ENTRY_ALWAYSON_WITHOUT_TRUE_MSR, entryHigh)],
    [M.MISC, misc],
    // nested_vmx_setup_cr_fixed: PE, NE, PG and VMXE must be 1; FIXED1 from the host and the guest's CPUID
    [M.CR0_FIXED0, 0x80000021n],
    [M.CR0_FIXED1, 0xffffffffn],
    [M.CR4_FIXED0, 0x2000n],
    [M.CR4_FIXED1, KVM_CR4_FIXED1],
    [M.VMCS_ENUM, vmcsEnumMsr()],
    [M.PROCBASED_CTLS2, ctl(0n, sec)],
    [M.EPT_VPID_CAP, ept],
    [M.TRUE_PINBASED_CTLS, ctl(pinLow, pinHigh)],
    [M.TRUE_PROCBASED_CTLS, ctl(procLow, procHigh)],
    [M.TRUE_EXIT_CTLS, ctl(exitLow, exitHigh)],
    [M.TRUE_ENTRY_CTLS, ctl(entryLow, entryHigh)],
    [M.VMFUNC, vmfunc],
  ]);
}

/** is_bitwise_subset: within mask, every bit of subset is in superset. */
export function isBitwiseSubset(superset: bigint, subset: bigint, mask: bigint): boolean {
  return ((superset & mask) | (subset & mask)) === (superset & mask);
}

const LOW32 = 0xffffffffn;
const HIGH32 = LOW32 << 32n;
const ALL64 = 0xffffffffffffffffn;

/** The non-TRUE control MSR each TRUE one feeds, and its default-1 bits. */
const NON_TRUE: ReadonlyMap<number, [number, bigint]> = new Map<number, [number, bigint]>([
  [VMX_CAP_MSR.TRUE_PINBASED_CTLS, [VMX_CAP_MSR.PINBASED_CTLS, PIN_BASED_ALWAYSON_WITHOUT_TRUE_MSR]],
  [VMX_CAP_MSR.TRUE_PROCBASED_CTLS, [VMX_CAP_MSR.PROCBASED_CTLS, CPU_BASED_ALWAYSON_WITHOUT_TRUE_MSR]],
  [VMX_CAP_MSR.TRUE_EXIT_CTLS, [VMX_CAP_MSR.EXIT_CTLS, VM_EXIT_ALWAYSON_WITHOUT_TRUE_MSR]],
  [VMX_CAP_MSR.TRUE_ENTRY_CTLS, [VMX_CAP_MSR.ENTRY_CTLS, VM_ENTRY_ALWAYSON_WITHOUT_TRUE_MSR]],
]);

/**
 * vmx_set_vmx_msr: may userspace restore `msr` to `data`, given KVM's own
 * values (`kvm`, vmcs_config.nested) and the vCPU's current ones (`cur`)?
 * Returns the MSRs to update (a TRUE control MSR also changes its non-TRUE
 * view), or a string saying why KVM refuses. The caller refuses any restore
 * while the vCPU is in VMX operation (-EBUSY).
 */
export function vmxRestoreMsr(kvm: ReadonlyMap<number, bigint>, cur: ReadonlyMap<number, bigint>, msr: number, data: bigint): Map<number, bigint> | string {
  const M = VMX_CAP_MSR;
  const k = (i: number) => kvm.get(i)!;
  switch (msr) {
    case M.BASIC: {
      // vmx_restore_vmx_basic
      const features = VMX_BASIC.DUAL_MONITOR_TREATMENT | VMX_BASIC.INOUT | VMX_BASIC.TRUE_CTLS;
      if (!isBitwiseSubset(k(msr), data, features | VMX_BASIC.RESERVED)) return 'a feature or reserved bit KVM does not support';
      if (data & VMX_BASIC.PHYS_ADDR_32BIT_ONLY) return '32-bit physical addresses only (bit 48) is not emulated';
      if ((k(msr) & 0x7fffffffn) !== (data & 0x7fffffffn)) return 'another VMCS revision';
      if (((k(msr) >> 32n) & 0x1fffn) > ((data >> 32n) & 0x1fffn)) return 'a smaller VMCS size';
      return new Map<number, bigint>([[msr, data]]);
    }
    case M.PINBASED_CTLS:
    case M.PROCBASED_CTLS:
    case M.EXIT_CTLS:
    case M.ENTRY_CTLS:
      return 'the non-TRUE control MSRs are generated from the TRUE ones';
    case M.TRUE_PINBASED_CTLS:
    case M.TRUE_PROCBASED_CTLS:
    case M.TRUE_EXIT_CTLS:
    case M.TRUE_ENTRY_CTLS:
    case M.PROCBASED_CTLS2: {
      // vmx_restore_control_msr: must-be-1 bits stay 1, must-be-0 bits stay 0
      const supported = k(msr);
      if (!isBitwiseSubset(data, supported, LOW32)) return 'clears a must-be-1 bit';
      if (!isBitwiseSubset(supported, data, HIGH32)) return 'allows a control KVM does not support';
      const out = new Map<number, bigint>([[msr, data]]);
      const nt = NON_TRUE.get(msr);
      if (nt) out.set(nt[0], data | nt[1]);
      return out;
    }
    case M.MISC: {
      // vmx_restore_vmx_misc
      const features = bit(5) | bit(6) | bit(7) | bit(8) | bit(14) | bit(15) | bit(29) | bit(28) | bit(30);
      const reserved = bit(31) | (0x1fn << 9n);
      const kvmMisc = k(msr);
      if (!isBitwiseSubset(kvmMisc, data, features | reserved)) return 'a feature or reserved bit KVM does not support';
      const pin = cur.get(M.TRUE_PINBASED_CTLS) ?? k(M.TRUE_PINBASED_CTLS);
      if (pin & (bit(6) << 32n) && (data & 0x1fn) !== (kvmMisc & 0x1fn)) return 'another preemption-timer rate';
      if (((data >> 16n) & 0x1ffn) > ((kvmMisc >> 16n) & 0x1ffn)) return 'more CR3 targets';
      if (((data >> 25n) & 7n) > ((kvmMisc >> 25n) & 7n)) return 'a larger MSR-list size';
      if (((data >> 32n) & LOW32) !== ((kvmMisc >> 32n) & LOW32)) return 'another MSEG revision';
      return new Map<number, bigint>([[msr, data]]);
    }
    case M.CR0_FIXED0:
    case M.CR4_FIXED0:
      // vmx_restore_fixed0_msr: bits that must be 1 stay 1
      if (!isBitwiseSubset(data, k(msr), ALL64)) return 'clears a must-be-1 bit';
      return new Map<number, bigint>([[msr, data]]);
    case M.CR0_FIXED1:
    case M.CR4_FIXED1:
      return "generated from the vCPU's CPUID";
    case M.EPT_VPID_CAP:
      // vmx_restore_vmx_ept_vpid_cap: every bit is a feature or reserved
      if (!isBitwiseSubset(k(msr), data, ALL64)) return 'a capability KVM does not support';
      return new Map<number, bigint>([[msr, data]]);
    case M.VMCS_ENUM:
      return new Map<number, bigint>([[msr, data]]);
    case M.VMFUNC:
      if (data & ~k(msr)) return 'a VM function KVM does not support';
      return new Map<number, bigint>([[msr, data]]);
    default:
      return 'not a VMX capability MSR KVM restores';
  }
}
