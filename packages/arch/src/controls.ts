/**
 * VM-execution, VM-exit and VM-entry control bits, and IA32_VMX_MISC bits,
 * under KVM's names (arch/x86/include/asm/vmx.h, bit positions from
 * arch/x86/include/asm/vmxfeatures.h) without the common prefix.
 * All masks are non-negative numbers (bit 31 is 0x80000000, not 1 << 31).
 */

const bit = (n: number): number => 2 ** n;

/** Primary processor-based controls (CPU_BASED_VM_EXEC_CONTROL), KVM prefix CPU_BASED_. */
export const CPU_BASED = Object.freeze({
  INTR_WINDOW_EXITING: bit(2),
  USE_TSC_OFFSETTING: bit(3),
  HLT_EXITING: bit(7),
  INVLPG_EXITING: bit(9),
  MWAIT_EXITING: bit(10),
  RDPMC_EXITING: bit(11),
  RDTSC_EXITING: bit(12),
  CR3_LOAD_EXITING: bit(15),
  CR3_STORE_EXITING: bit(16),
  ACTIVATE_TERTIARY_CONTROLS: bit(17),
  CR8_LOAD_EXITING: bit(19),
  CR8_STORE_EXITING: bit(20),
  TPR_SHADOW: bit(21),
  NMI_WINDOW_EXITING: bit(22),
  MOV_DR_EXITING: bit(23),
  UNCOND_IO_EXITING: bit(24),
  USE_IO_BITMAPS: bit(25),
  MONITOR_TRAP_FLAG: bit(27),
  USE_MSR_BITMAPS: bit(28),
  MONITOR_EXITING: bit(29),
  PAUSE_EXITING: bit(30),
  ACTIVATE_SECONDARY_CONTROLS: bit(31),
});

/** Secondary processor-based controls (SECONDARY_VM_EXEC_CONTROL), KVM prefix SECONDARY_EXEC_. */
export const SECONDARY_EXEC = Object.freeze({
  VIRTUALIZE_APIC_ACCESSES: bit(0),
  ENABLE_EPT: bit(1),
  DESC: bit(2),
  ENABLE_RDTSCP: bit(3),
  VIRTUALIZE_X2APIC_MODE: bit(4),
  ENABLE_VPID: bit(5),
  WBINVD_EXITING: bit(6),
  UNRESTRICTED_GUEST: bit(7),
  APIC_REGISTER_VIRT: bit(8),
  VIRTUAL_INTR_DELIVERY: bit(9),
  PAUSE_LOOP_EXITING: bit(10),
  RDRAND_EXITING: bit(11),
  ENABLE_INVPCID: bit(12),
  ENABLE_VMFUNC: bit(13),
  SHADOW_VMCS: bit(14),
  ENCLS_EXITING: bit(15),
  RDSEED_EXITING: bit(16),
  ENABLE_PML: bit(17),
  EPT_VIOLATION_VE: bit(18),
  PT_CONCEAL_VMX: bit(19),
  ENABLE_XSAVES: bit(20),
  MODE_BASED_EPT_EXEC: bit(22),
  PT_USE_GPA: bit(24),
  TSC_SCALING: bit(25),
  ENABLE_USR_WAIT_PAUSE: bit(26),
  BUS_LOCK_DETECTION: bit(30),
  NOTIFY_VM_EXITING: bit(31),
});

/** Pin-based controls (PIN_BASED_VM_EXEC_CONTROL), KVM prefix PIN_BASED_. */
export const PIN_BASED = Object.freeze({
  EXT_INTR_MASK: bit(0),
  NMI_EXITING: bit(3),
  VIRTUAL_NMIS: bit(5),
  VMX_PREEMPTION_TIMER: bit(6),
  POSTED_INTR: bit(7),
});

/** VM-exit controls (VM_EXIT_CONTROLS), KVM prefix VM_EXIT_. */
export const VM_EXIT = Object.freeze({
  SAVE_DEBUG_CONTROLS: bit(2),
  HOST_ADDR_SPACE_SIZE: bit(9),
  LOAD_IA32_PERF_GLOBAL_CTRL: bit(12),
  ACK_INTR_ON_EXIT: bit(15),
  SAVE_IA32_PAT: bit(18),
  LOAD_IA32_PAT: bit(19),
  SAVE_IA32_EFER: bit(20),
  LOAD_IA32_EFER: bit(21),
  SAVE_VMX_PREEMPTION_TIMER: bit(22),
  CLEAR_BNDCFGS: bit(23),
  PT_CONCEAL_PIP: bit(24),
  CLEAR_IA32_RTIT_CTL: bit(25),
});

/** VM-entry controls (VM_ENTRY_CONTROLS), KVM prefix VM_ENTRY_. */
export const VM_ENTRY = Object.freeze({
  LOAD_DEBUG_CONTROLS: bit(2),
  IA32E_MODE: bit(9),
  SMM: bit(10),
  DEACT_DUAL_MONITOR: bit(11),
  LOAD_IA32_PERF_GLOBAL_CTRL: bit(13),
  LOAD_IA32_PAT: bit(14),
  LOAD_IA32_EFER: bit(15),
  LOAD_BNDCFGS: bit(16),
  PT_CONCEAL_PIP: bit(17),
  LOAD_IA32_RTIT_CTL: bit(18),
});

/** IA32_VMX_MISC (MSR 0x485) bits, KVM prefix VMX_MISC_. Bits 4:0 are the preemption-timer rate. */
export const VMX_MISC = Object.freeze({
  PREEMPTION_TIMER_RATE_MASK: 0x1f,
  SAVE_EFER_LMA: bit(5),
  ACTIVITY_HLT: bit(6),
  ACTIVITY_SHUTDOWN: bit(7),
  ACTIVITY_WAIT_SIPI: bit(8),
  INTEL_PT: bit(14),
  RDMSR_IN_SMM: bit(15),
  VMXOFF_BLOCK_SMI: bit(28),
  VMWRITE_SHADOW_RO_FIELDS: bit(29),
  ZERO_LEN_INS: bit(30),
});

/**
 * The VM-entry interruption-information field (SDM 24.8.3; KVM's
 * INTR_INFO_* and INTR_TYPE_* in arch/x86/include/asm/vmx.h): bits 7:0 the
 * vector, 10:8 the type, 11 deliver-error-code, 30:12 reserved, 31 valid.
 */
export const INTR_INFO = Object.freeze({
  VECTOR_MASK: 0xff,
  INTR_TYPE_MASK: 0x700,
  DELIVER_CODE_MASK: 0x800,
  RESVD_BITS_MASK: 0x7ffff000,
  VALID_MASK: 0x80000000,
});

export const INTR_TYPE = Object.freeze({
  EXT_INTR: 0 << 8,
  RESERVED: 1 << 8,
  NMI_INTR: 2 << 8,
  HARD_EXCEPTION: 3 << 8,
  SOFT_INTR: 4 << 8,
  PRIV_SW_EXCEPTION: 5 << 8,
  SOFT_EXCEPTION: 6 << 8,
  OTHER_EVENT: 7 << 8,
});

/**
 * Exceptions that push an error code (KVM's x86_exception_has_error_code,
 * arch/x86/kvm/x86.h): #DF, #TS, #NP, #SS, #GP, #PF, #AC. #CP has one only
 * when the guest has CET, which the model's guests do not.
 */
export const EXCEPTION_HAS_ERROR_CODE = (1 << 8) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 17);

/** IA32_VMX_MISC bit 29: "VMWRITE to any supported field" (incl. the read-only exit-information fields). */
export const VMX_MISC_VMWRITE_SHADOW_RO_FIELDS: number = VMX_MISC.VMWRITE_SHADOW_RO_FIELDS;

/** Bit name tables per control field encoding, used by controlBitNames. */
const BY_FIELD: ReadonlyMap<number, readonly (string | undefined)[]> = (() => {
  const table = (o: Readonly<Record<string, number>>): (string | undefined)[] => {
    const names: (string | undefined)[] = new Array(32).fill(undefined);
    for (const [n, m] of Object.entries(o)) if (m !== 0 && (m & (m - 1)) === 0) names[Math.log2(m)] = n;
    return names;
  };
  return new Map([
    [0x4000, table(PIN_BASED)], // PIN_BASED_VM_EXEC_CONTROL
    [0x4002, table(CPU_BASED)], // CPU_BASED_VM_EXEC_CONTROL
    [0x400c, table(VM_EXIT)], // VM_EXIT_CONTROLS
    [0x4012, table(VM_ENTRY)], // VM_ENTRY_CONTROLS
    [0x401e, table(SECONDARY_EXEC)], // SECONDARY_VM_EXEC_CONTROL
  ]);
})();

/**
 * Names of the bits set in `value` for a control field (given by its VMCS
 * encoding), low bit first; bits without a name (or any bit, for a field
 * that is not a control field) appear as 'bit N'.
 */
export function controlBitNames(field: number, value: number): string[] {
  const names = BY_FIELD.get(field);
  const v = value >>> 0;
  const out: string[] = [];
  for (let b = 0; b < 32; b++) {
    if ((v >>> b) & 1) out.push(names?.[b] ?? `bit ${b}`);
  }
  return out;
}

/**
 * The controls an enlightened VMCS v1 can express (arch/x86/kvm/vmx/hyperv_evmcs.h,
 * EVMCS1_SUPPORTED_*): with eVMCS enabled for the vCPU, KVM refuses any entry
 * that sets another pin-based, secondary, VM-exit or VM-entry control
 * (nested_evmcs_check_controls) and hides the others from L1's reads of the
 * capability MSRs (nested_evmcs_filter_control_msr). Hyper-V's eVMCS v1 has
 * no field for the posted-interrupt descriptor, the APIC-access page, the
 * EOI-exit bitmaps, PML, VM functions or the preemption-timer value.
 */
export const EVMCS1_SUPPORTED = Object.freeze({
  pin: (0x16 | PIN_BASED.EXT_INTR_MASK | PIN_BASED.NMI_EXITING | PIN_BASED.VIRTUAL_NMIS) >>> 0,
  exec: (0x0401e172 |
    CPU_BASED.HLT_EXITING | CPU_BASED.CR3_LOAD_EXITING | CPU_BASED.CR3_STORE_EXITING | CPU_BASED.UNCOND_IO_EXITING |
    CPU_BASED.MOV_DR_EXITING | CPU_BASED.USE_TSC_OFFSETTING | CPU_BASED.MWAIT_EXITING | CPU_BASED.MONITOR_EXITING |
    CPU_BASED.INVLPG_EXITING | CPU_BASED.RDPMC_EXITING | CPU_BASED.INTR_WINDOW_EXITING | CPU_BASED.CR8_LOAD_EXITING |
    CPU_BASED.CR8_STORE_EXITING | CPU_BASED.RDTSC_EXITING | CPU_BASED.TPR_SHADOW | CPU_BASED.USE_IO_BITMAPS |
    CPU_BASED.MONITOR_TRAP_FLAG | CPU_BASED.USE_MSR_BITMAPS | CPU_BASED.NMI_WINDOW_EXITING | CPU_BASED.PAUSE_EXITING |
    CPU_BASED.ACTIVATE_SECONDARY_CONTROLS) >>> 0,
  secondary: (SECONDARY_EXEC.VIRTUALIZE_X2APIC_MODE | SECONDARY_EXEC.WBINVD_EXITING | SECONDARY_EXEC.ENABLE_VPID |
    SECONDARY_EXEC.ENABLE_EPT | SECONDARY_EXEC.UNRESTRICTED_GUEST | SECONDARY_EXEC.DESC | SECONDARY_EXEC.ENABLE_RDTSCP |
    SECONDARY_EXEC.ENABLE_INVPCID | SECONDARY_EXEC.ENABLE_XSAVES | SECONDARY_EXEC.RDSEED_EXITING | SECONDARY_EXEC.RDRAND_EXITING |
    SECONDARY_EXEC.TSC_SCALING | SECONDARY_EXEC.ENABLE_USR_WAIT_PAUSE | SECONDARY_EXEC.PT_USE_GPA | SECONDARY_EXEC.PT_CONCEAL_VMX |
    SECONDARY_EXEC.BUS_LOCK_DETECTION | SECONDARY_EXEC.NOTIFY_VM_EXITING | SECONDARY_EXEC.ENCLS_EXITING) >>> 0,
  exit: (0x36dff | VM_EXIT.SAVE_DEBUG_CONTROLS | VM_EXIT.ACK_INTR_ON_EXIT | VM_EXIT.HOST_ADDR_SPACE_SIZE |
    VM_EXIT.LOAD_IA32_PERF_GLOBAL_CTRL | VM_EXIT.SAVE_IA32_PAT | VM_EXIT.LOAD_IA32_PAT | VM_EXIT.SAVE_IA32_EFER |
    VM_EXIT.LOAD_IA32_EFER | VM_EXIT.CLEAR_BNDCFGS | VM_EXIT.PT_CONCEAL_PIP | VM_EXIT.CLEAR_IA32_RTIT_CTL) >>> 0,
  entry: (0x11ff | VM_ENTRY.LOAD_DEBUG_CONTROLS | VM_ENTRY.IA32E_MODE | VM_ENTRY.LOAD_IA32_PERF_GLOBAL_CTRL |
    VM_ENTRY.LOAD_IA32_PAT | VM_ENTRY.LOAD_IA32_EFER | VM_ENTRY.LOAD_BNDCFGS | VM_ENTRY.PT_CONCEAL_PIP |
    VM_ENTRY.LOAD_IA32_RTIT_CTL) >>> 0,
  vmfunc: 0,
});
