/**
 * Basic VM-exit reasons (arch/x86/include/uapi/asm/vmx.h, KVM's names without
 * the EXIT_REASON_ prefix) and VM-instruction error numbers (KVM's VMXERR_
 * names without the prefix; descriptions follow the SDM's table of
 * VM-instruction error numbers).
 */

export interface NamedNumber {
  name: string;
  value: number;
  description?: string;
}

const REASONS = [
  ['EXCEPTION_NMI', 0, 'Exception or NMI'],
  ['EXTERNAL_INTERRUPT', 1, 'External interrupt'],
  ['TRIPLE_FAULT', 2, 'Triple fault'],
  ['INIT_SIGNAL', 3, 'INIT signal'],
  ['SIPI_SIGNAL', 4, 'Start-up IPI'],
  ['OTHER_SMI', 6, 'Other SMI'],
  ['INTERRUPT_WINDOW', 7, 'Interrupt window'],
  ['NMI_WINDOW', 8, 'NMI window'],
  ['TASK_SWITCH', 9, 'Task switch'],
  ['CPUID', 10, 'CPUID'],
  ['HLT', 12, 'HLT'],
  ['INVD', 13, 'INVD'],
  ['INVLPG', 14, 'INVLPG'],
  ['RDPMC', 15, 'RDPMC'],
  ['RDTSC', 16, 'RDTSC'],
  ['VMCALL', 18, 'VMCALL'],
  ['VMCLEAR', 19, 'VMCLEAR'],
  ['VMLAUNCH', 20, 'VMLAUNCH'],
  ['VMPTRLD', 21, 'VMPTRLD'],
  ['VMPTRST', 22, 'VMPTRST'],
  ['VMREAD', 23, 'VMREAD'],
  ['VMRESUME', 24, 'VMRESUME'],
  ['VMWRITE', 25, 'VMWRITE'],
  ['VMOFF', 26, 'VMXOFF'],
  ['VMON', 27, 'VMXON'],
  ['CR_ACCESS', 28, 'Control-register access'],
  ['DR_ACCESS', 29, 'MOV DR'],
  ['IO_INSTRUCTION', 30, 'I/O instruction'],
  ['MSR_READ', 31, 'RDMSR'],
  ['MSR_WRITE', 32, 'WRMSR'],
  ['INVALID_STATE', 33, 'VM-entry failure due to invalid guest state'],
  ['MSR_LOAD_FAIL', 34, 'VM-entry failure due to MSR loading'],
  ['MWAIT_INSTRUCTION', 36, 'MWAIT'],
  ['MONITOR_TRAP_FLAG', 37, 'Monitor trap flag'],
  ['MONITOR_INSTRUCTION', 39, 'MONITOR'],
  ['PAUSE_INSTRUCTION', 40, 'PAUSE'],
  ['MCE_DURING_VMENTRY', 41, 'VM-entry failure due to machine-check event'],
  ['TPR_BELOW_THRESHOLD', 43, 'TPR below threshold'],
  ['APIC_ACCESS', 44, 'APIC access'],
  ['EOI_INDUCED', 45, 'Virtualized EOI'],
  ['GDTR_IDTR', 46, 'Access to GDTR or IDTR'],
  ['LDTR_TR', 47, 'Access to LDTR or TR'],
  ['EPT_VIOLATION', 48, 'EPT violation'],
  ['EPT_MISCONFIG', 49, 'EPT misconfiguration'],
  ['INVEPT', 50, 'INVEPT'],
  ['RDTSCP', 51, 'RDTSCP'],
  ['PREEMPTION_TIMER', 52, 'VMX-preemption timer expired'],
  ['INVVPID', 53, 'INVVPID'],
  ['WBINVD', 54, 'WBINVD or WBNOINVD'],
  ['XSETBV', 55, 'XSETBV'],
  ['APIC_WRITE', 56, 'APIC write'],
  ['RDRAND', 57, 'RDRAND'],
  ['INVPCID', 58, 'INVPCID'],
  ['VMFUNC', 59, 'VMFUNC'],
  ['ENCLS', 60, 'ENCLS'],
  ['RDSEED', 61, 'RDSEED'],
  ['PML_FULL', 62, 'Page-modification log full'],
  ['XSAVES', 63, 'XSAVES'],
  ['XRSTORS', 64, 'XRSTORS'],
  ['UMWAIT', 67, 'UMWAIT'],
  ['TPAUSE', 68, 'TPAUSE'],
  ['BUS_LOCK', 74, 'Bus lock'],
  ['NOTIFY', 75, 'Notify window'],
  ['TDCALL', 77, 'TDCALL'],
] as const;

/**
 * Shorter names the SDM and the project's reference notes use for a few
 * reasons (INIT, SIPI, VMXOFF, VMXON, MWAIT, MONITOR, PAUSE) plus RDMSR/WRMSR.
 * They are accepted by exitReasonByName and present in EXIT_REASON, but the
 * list and exitReasonName use KVM's names.
 */
const REASON_ALIASES = [
  ['INIT', 3],
  ['SIPI', 4],
  ['VMXOFF', 26],
  ['VMXON', 27],
  ['MWAIT', 36],
  ['MONITOR', 39],
  ['PAUSE', 40],
  ['RDMSR', 31],
  ['WRMSR', 32],
] as const;

export type ExitReasonName = (typeof REASONS)[number][0] | (typeof REASON_ALIASES)[number][0];

/** Every basic exit reason KVM defines, ascending, KVM's names. */
export const EXIT_REASONS: readonly NamedNumber[] = Object.freeze(
  REASONS.map(([name, value, description]) => Object.freeze({ name, value, description })),
);

/** name -> basic exit reason (KVM names, plus the aliases above). `EXIT_REASON.CPUID === 10`. */
export const EXIT_REASON: { readonly [K in ExitReasonName]: number } = Object.freeze(
  Object.fromEntries([...REASONS.map(([n, v]) => [n, v] as const), ...REASON_ALIASES]) as { [K in ExitReasonName]: number },
);

/** Exit-reason bit 31: VM-entry failure. */
export const VMX_EXIT_REASONS_FAILED_VMENTRY = 0x80000000;
/** Exit-reason bit 27: exit from SGX enclave mode. */
export const VMX_EXIT_REASONS_SGX_ENCLAVE_MODE = 0x08000000;
/** Mask of the basic exit reason (bits 15:0). */
export const VMX_EXIT_REASON_BASIC_MASK = 0xffff;

const REASON_FLAGS: readonly (readonly [string, number])[] = [
  ['FAILED_VMENTRY', VMX_EXIT_REASONS_FAILED_VMENTRY],
  ['SGX_ENCLAVE_MODE', VMX_EXIT_REASONS_SGX_ENCLAVE_MODE],
];
const KNOWN_BITS = (VMX_EXIT_REASON_BASIC_MASK | VMX_EXIT_REASONS_FAILED_VMENTRY | VMX_EXIT_REASONS_SGX_ENCLAVE_MODE) >>> 0;

const REASON_NAME_BY_VALUE: (string | undefined)[] = [];
for (const [n, v] of REASONS) REASON_NAME_BY_VALUE[v] = n;
const REASON_BY_NAME = new Map<string, number>(Object.entries(EXIT_REASON));
const FLAG_BY_NAME = new Map<string, number>(REASON_FLAGS);

/**
 * Exit reason for a name: 'CPUID', 'EXIT_REASON_CPUID' (any case), and also
 * the form exitReasonName produces with flags, 'INVALID_STATE|FAILED_VMENTRY'.
 */
export function exitReasonByName(name: string): number | undefined {
  const parts = name.trim().toUpperCase().split('|');
  const base = parts[0].startsWith('EXIT_REASON_') ? parts[0].slice('EXIT_REASON_'.length) : parts[0];
  let v = REASON_BY_NAME.get(base);
  if (v === undefined) return undefined;
  for (let i = 1; i < parts.length; i++) {
    const f = FLAG_BY_NAME.get(parts[i].startsWith('VMX_EXIT_REASONS_') ? parts[i].slice('VMX_EXIT_REASONS_'.length) : parts[i]);
    if (f === undefined) return undefined;
    v = (v | f) >>> 0;
  }
  return v;
}

/**
 * Display name of a (32-bit) exit reason: 'CPUID', 'INVALID_STATE|FAILED_VMENTRY';
 * an unknown basic reason is its decimal number ('35|FAILED_VMENTRY'); a value
 * with other bits set is the decimal of the whole value.
 */
export function exitReasonName(reason: number): string {
  if (!Number.isInteger(reason)) return String(reason);
  const r = reason >>> 0;
  if (((r & ~KNOWN_BITS) >>> 0) !== 0) return String(r);
  const basic = r & VMX_EXIT_REASON_BASIC_MASK;
  let s = REASON_NAME_BY_VALUE[basic] ?? String(basic);
  for (const [fname, fbit] of REASON_FLAGS) if ((r & fbit) !== 0) s += `|${fname}`;
  return s;
}

// ---------------------------------------------------------------------------
// VM-instruction errors
// ---------------------------------------------------------------------------

const ERRORS = [
  ['VMCALL_IN_VMX_ROOT_OPERATION', 1, 'VMCALL executed in VMX root operation'],
  ['VMCLEAR_INVALID_ADDRESS', 2, 'VMCLEAR with invalid physical address'],
  ['VMCLEAR_VMXON_POINTER', 3, 'VMCLEAR with VMXON pointer'],
  ['VMLAUNCH_NONCLEAR_VMCS', 4, 'VMLAUNCH with non-clear VMCS'],
  ['VMRESUME_NONLAUNCHED_VMCS', 5, 'VMRESUME with non-launched VMCS'],
  ['VMRESUME_AFTER_VMXOFF', 6, 'VMRESUME after VMXOFF'],
  ['ENTRY_INVALID_CONTROL_FIELD', 7, 'VM entry with invalid control field(s)'],
  ['ENTRY_INVALID_HOST_STATE_FIELD', 8, 'VM entry with invalid host-state field(s)'],
  ['VMPTRLD_INVALID_ADDRESS', 9, 'VMPTRLD with invalid physical address'],
  ['VMPTRLD_VMXON_POINTER', 10, 'VMPTRLD with VMXON pointer'],
  ['VMPTRLD_INCORRECT_VMCS_REVISION_ID', 11, 'VMPTRLD with incorrect VMCS revision identifier'],
  ['UNSUPPORTED_VMCS_COMPONENT', 12, 'VMREAD/VMWRITE from/to unsupported VMCS component'],
  ['VMWRITE_READ_ONLY_VMCS_COMPONENT', 13, 'VMWRITE to read-only VMCS component'],
  ['VMXON_IN_VMX_ROOT_OPERATION', 15, 'VMXON executed in VMX root operation'],
  ['ENTRY_INVALID_EXECUTIVE_VMCS_POINTER', 16, 'VM entry with invalid executive-VMCS pointer'],
  ['ENTRY_NONLAUNCHED_EXECUTIVE_VMCS', 17, 'VM entry with non-launched executive VMCS'],
  ['ENTRY_EXECUTIVE_VMCS_POINTER_NOT_VMXON_POINTER', 18, 'VM entry with executive-VMCS pointer not VMXON pointer'],
  ['VMCALL_NONCLEAR_VMCS', 19, 'VMCALL with non-clear VMCS'],
  ['VMCALL_INVALID_VM_EXIT_CONTROL_FIELDS', 20, 'VMCALL with invalid VM-exit control fields'],
  ['VMCALL_INCORRECT_MSEG_REVISION_ID', 22, 'VMCALL with incorrect MSEG revision identifier'],
  ['VMXOFF_UNDER_DUAL_MONITOR_TREATMENT_OF_SMIS_AND_SMM', 23, 'VMXOFF under dual-monitor treatment of SMIs and SMM'],
  ['VMCALL_INVALID_SMM_MONITOR_FEATURES', 24, 'VMCALL with invalid SMM-monitor features'],
  ['ENTRY_INVALID_VM_EXECUTION_CONTROL_FIELDS_IN_EXECUTIVE_VMCS', 25, 'VM entry with invalid VM-execution control fields in executive VMCS'],
  ['ENTRY_EVENTS_BLOCKED_BY_MOV_SS', 26, 'VM entry with events blocked by MOV SS'],
  ['INVALID_OPERAND_TO_INVEPT_INVVPID', 28, 'Invalid operand to INVEPT/INVVPID'],
] as const;

export type VmxErrorName = (typeof ERRORS)[number][0];

/** KVM's VM-instruction error numbers (VMXERR_ names without the prefix), ascending. */
export const VMX_INSTRUCTION_ERRORS: readonly NamedNumber[] = Object.freeze(
  ERRORS.map(([name, value, description]) => Object.freeze({ name, value, description })),
);

/** `VMXERR.UNSUPPORTED_VMCS_COMPONENT === 12`. */
export const VMXERR: { readonly [K in VmxErrorName]: number } = Object.freeze(
  Object.fromEntries(ERRORS.map(([n, v]) => [n, v])) as { [K in VmxErrorName]: number },
);

const ERROR_BY_NAME = new Map<string, number>(ERRORS.map(([n, v]) => [n, v]));
const ERROR_NAME_BY_VALUE: (string | undefined)[] = [];
for (const [n, v] of ERRORS) ERROR_NAME_BY_VALUE[v] = n;

/** Accepts 'UNSUPPORTED_VMCS_COMPONENT' or 'VMXERR_UNSUPPORTED_VMCS_COMPONENT' (any case). */
export function vmxErrorByName(name: string): number | undefined {
  const n = name.trim().toUpperCase();
  return ERROR_BY_NAME.get(n.startsWith('VMXERR_') ? n.slice('VMXERR_'.length) : n);
}

/** Name without prefix, or the decimal number when unknown. */
export function vmxErrorName(n: number): string {
  return (Number.isInteger(n) && n >= 0 ? ERROR_NAME_BY_VALUE[n] : undefined) ?? String(n);
}
