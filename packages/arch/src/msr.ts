/**
 * MSR indices under the kernel's msr-index.h spelling (x2APIC registers,
 * which the kernel addresses as APIC_BASE_MSR + (APIC register offset >> 4),
 * are named MSR_X2APIC_<register>), and the MSR list KVM merges into the
 * vmcs02 MSR bitmap in nested_vmx_prepare_msr_bitmap (arch/x86/kvm/vmx/nested.c).
 */

export interface MsrInfo {
  name: string;
  index: number;
}

const MSR_TABLE = [
  ['MSR_IA32_TSC', 0x10],
  ['MSR_IA32_APICBASE', 0x1b],
  ['MSR_IA32_FEAT_CTL', 0x3a],
  ['MSR_IA32_TSC_ADJUST', 0x3b],
  ['MSR_IA32_SPEC_CTRL', 0x48],
  ['MSR_IA32_PRED_CMD', 0x49],
  ['MSR_IA32_UCODE_REV', 0x8b],
  ['MSR_PLATFORM_INFO', 0xce],
  ['MSR_IA32_MPERF', 0xe7],
  ['MSR_IA32_APERF', 0xe8],
  ['MSR_IA32_ARCH_CAPABILITIES', 0x10a],
  ['MSR_IA32_FLUSH_CMD', 0x10b],
  ['MSR_MISC_FEATURES_ENABLES', 0x140],
  ['MSR_IA32_SYSENTER_CS', 0x174],
  ['MSR_IA32_SYSENTER_ESP', 0x175],
  ['MSR_IA32_SYSENTER_EIP', 0x176],
  ['MSR_IA32_MISC_ENABLE', 0x1a0],
  ['MSR_IA32_DEBUGCTLMSR', 0x1d9],
  ['MSR_IA32_CR_PAT', 0x277],
  ['MSR_IA32_PERF_CAPABILITIES', 0x345],
  ['MSR_CORE_PERF_GLOBAL_CTRL', 0x38f],
  ['MSR_IA32_VMX_BASIC', 0x480],
  ['MSR_IA32_VMX_PINBASED_CTLS', 0x481],
  ['MSR_IA32_VMX_PROCBASED_CTLS', 0x482],
  ['MSR_IA32_VMX_EXIT_CTLS', 0x483],
  ['MSR_IA32_VMX_ENTRY_CTLS', 0x484],
  ['MSR_IA32_VMX_MISC', 0x485],
  ['MSR_IA32_VMX_CR0_FIXED0', 0x486],
  ['MSR_IA32_VMX_CR0_FIXED1', 0x487],
  ['MSR_IA32_VMX_CR4_FIXED0', 0x488],
  ['MSR_IA32_VMX_CR4_FIXED1', 0x489],
  ['MSR_IA32_VMX_VMCS_ENUM', 0x48a],
  ['MSR_IA32_VMX_PROCBASED_CTLS2', 0x48b],
  ['MSR_IA32_VMX_EPT_VPID_CAP', 0x48c],
  ['MSR_IA32_VMX_TRUE_PINBASED_CTLS', 0x48d],
  ['MSR_IA32_VMX_TRUE_PROCBASED_CTLS', 0x48e],
  ['MSR_IA32_VMX_TRUE_EXIT_CTLS', 0x48f],
  ['MSR_IA32_VMX_TRUE_ENTRY_CTLS', 0x490],
  ['MSR_IA32_VMX_VMFUNC', 0x491],
  ['MSR_IA32_VMX_PROCBASED_CTLS3', 0x492],
  ['MSR_IA32_U_CET', 0x6a0],
  ['MSR_IA32_S_CET', 0x6a2],
  ['MSR_IA32_PL0_SSP', 0x6a4],
  ['MSR_IA32_PL1_SSP', 0x6a5],
  ['MSR_IA32_PL2_SSP', 0x6a6],
  ['MSR_IA32_PL3_SSP', 0x6a7],
  ['MSR_IA32_INT_SSP_TAB', 0x6a8],
  ['MSR_IA32_TSC_DEADLINE', 0x6e0],
  // x2APIC registers (0x800 + xAPIC MMIO offset / 16)
  ['MSR_X2APIC_ID', 0x802],
  ['MSR_X2APIC_VERSION', 0x803],
  ['MSR_X2APIC_TPR', 0x808],
  ['MSR_X2APIC_PPR', 0x80a],
  ['MSR_X2APIC_EOI', 0x80b],
  ['MSR_X2APIC_LDR', 0x80d],
  ['MSR_X2APIC_SVR', 0x80f],
  ['MSR_X2APIC_ISR0', 0x810],
  ['MSR_X2APIC_ISR1', 0x811],
  ['MSR_X2APIC_ISR2', 0x812],
  ['MSR_X2APIC_ISR3', 0x813],
  ['MSR_X2APIC_ISR4', 0x814],
  ['MSR_X2APIC_ISR5', 0x815],
  ['MSR_X2APIC_ISR6', 0x816],
  ['MSR_X2APIC_ISR7', 0x817],
  ['MSR_X2APIC_TMR0', 0x818],
  ['MSR_X2APIC_TMR1', 0x819],
  ['MSR_X2APIC_TMR2', 0x81a],
  ['MSR_X2APIC_TMR3', 0x81b],
  ['MSR_X2APIC_TMR4', 0x81c],
  ['MSR_X2APIC_TMR5', 0x81d],
  ['MSR_X2APIC_TMR6', 0x81e],
  ['MSR_X2APIC_TMR7', 0x81f],
  ['MSR_X2APIC_IRR0', 0x820],
  ['MSR_X2APIC_IRR1', 0x821],
  ['MSR_X2APIC_IRR2', 0x822],
  ['MSR_X2APIC_IRR3', 0x823],
  ['MSR_X2APIC_IRR4', 0x824],
  ['MSR_X2APIC_IRR5', 0x825],
  ['MSR_X2APIC_IRR6', 0x826],
  ['MSR_X2APIC_IRR7', 0x827],
  ['MSR_X2APIC_ESR', 0x828],
  ['MSR_X2APIC_LVT_CMCI', 0x82f],
  ['MSR_X2APIC_ICR', 0x830],
  ['MSR_X2APIC_LVT_TIMER', 0x832],
  ['MSR_X2APIC_LVT_THERMAL', 0x833],
  ['MSR_X2APIC_LVT_PMI', 0x834],
  ['MSR_X2APIC_LVT_LINT0', 0x835],
  ['MSR_X2APIC_LVT_LINT1', 0x836],
  ['MSR_X2APIC_LVT_ERROR', 0x837],
  ['MSR_X2APIC_TMICT', 0x838],
  ['MSR_X2APIC_TMCCT', 0x839],
  ['MSR_X2APIC_TDCR', 0x83e],
  ['MSR_X2APIC_SELF_IPI', 0x83f],
  ['MSR_IA32_BNDCFGS', 0xd90],
  ['MSR_IA32_XSS', 0xda0],
  // Hyper-V synthetic MSRs
  ['HV_X64_MSR_GUEST_OS_ID', 0x40000000],
  ['HV_X64_MSR_HYPERCALL', 0x40000001],
  ['HV_X64_MSR_VP_INDEX', 0x40000002],
  ['HV_X64_MSR_VP_ASSIST_PAGE', 0x40000073],
  // AMD64 / "high" MSRs
  ['MSR_EFER', 0xc0000080],
  ['MSR_STAR', 0xc0000081],
  ['MSR_LSTAR', 0xc0000082],
  ['MSR_CSTAR', 0xc0000083],
  ['MSR_SYSCALL_MASK', 0xc0000084],
  ['MSR_FS_BASE', 0xc0000100],
  ['MSR_GS_BASE', 0xc0000101],
  ['MSR_KERNEL_GS_BASE', 0xc0000102],
  ['MSR_TSC_AUX', 0xc0000103],
  ['MSR_K7_HWCR', 0xc0010015],
] as const;

export type MsrName = (typeof MSR_TABLE)[number][0];

/** Known MSRs in the order above (ascending index within each group). */
export const MSRS: readonly MsrInfo[] = Object.freeze(MSR_TABLE.map(([name, index]) => Object.freeze({ name, index })));

/** name -> index. `MSR.MSR_EFER === 0xc0000080`. */
export const MSR: { readonly [K in MsrName]: number } = Object.freeze(
  Object.fromEntries(MSR_TABLE.map(([n, i]) => [n, i])) as { [K in MsrName]: number },
);

const BY_NAME = new Map<string, number>(MSR_TABLE.map(([n, i]) => [n, i]));
const BY_INDEX = new Map<number, string>(MSR_TABLE.map(([n, i]) => [i, n]));

/** Index for a name as in msr-index.h; 'EFER' is also accepted for 'MSR_EFER'. */
export function msrByName(name: string): number | undefined {
  return BY_NAME.get(name) ?? BY_NAME.get(`MSR_${name}`);
}

/** Name, or '0x' + lower-case hex when unknown. */
export function msrName(index: number): string {
  const n = BY_INDEX.get(index);
  if (n !== undefined) return n;
  return Number.isInteger(index) && index >= 0 ? `0x${index.toString(16)}` : String(index);
}

/** MSR_PLATFORM_INFO bit 31: CPUID faulting supported. */
export const MSR_PLATFORM_INFO_CPUID_FAULT = 0x80000000;
/** MSR_MISC_FEATURES_ENABLES bit 0: CPUID faulting enabled. */
export const MSR_MISC_FEATURES_ENABLES_CPUID_FAULT = 0x1;
/** MSR_K7_HWCR bit 35 (AMD CpuidUserDis), as a 64-bit value. */
export const MSR_K7_HWCR_CPUID_USER_DIS: bigint = 1n << 35n;

/** The x2APIC MSR range KVM force-intercepts before applying L1's x2APIC choices. */
export const X2APIC_MSR_BASE = 0x800 as const;
export const X2APIC_MSR_END = 0x8ff as const;

// ---------------------------------------------------------------------------
// Merged allow-list of nested_vmx_prepare_msr_bitmap (reference §3.2 step 3)
// ---------------------------------------------------------------------------

export interface MergedMsr {
  msr: number;
  /** the read intercept bit is merged (vmcs02 := vmcs01 | vmcs12) */
  read: boolean;
  /** the write intercept bit is merged */
  write: boolean;
}

const rw = (msr: number): MergedMsr => Object.freeze({ msr, read: true, write: true });
const r = (msr: number): MergedMsr => Object.freeze({ msr, read: true, write: false });
const w = (msr: number): MergedMsr => Object.freeze({ msr, read: false, write: true });

/**
 * The list as of the ~6.12 tree the reference follows: FS/GS/KERNEL_GS base
 * (64-bit hosts only, which the model assumes), SPEC_CTRL, PRED_CMD (write),
 * FLUSH_CMD (write). Everything else stays intercepted in vmcs02, apart from
 * the separate x2APIC handling.
 */
export const NESTED_MERGED_MSRS: readonly MergedMsr[] = Object.freeze([
  rw(MSR.MSR_FS_BASE),
  rw(MSR.MSR_GS_BASE),
  rw(MSR.MSR_KERNEL_GS_BASE),
  rw(MSR.MSR_IA32_SPEC_CTRL),
  w(MSR.MSR_IA32_PRED_CMD),
  w(MSR.MSR_IA32_FLUSH_CMD),
]);

/**
 * The newer (kvm/next, late 2025) list: the above, then APERF and MPERF
 * (read), then U_CET, S_CET and PL0..PL3_SSP (read and write). INT_SSP_TAB
 * is not merged.
 */
export const NESTED_MERGED_MSRS_KVM_NEXT: readonly MergedMsr[] = Object.freeze([
  ...NESTED_MERGED_MSRS,
  r(MSR.MSR_IA32_APERF),
  r(MSR.MSR_IA32_MPERF),
  rw(MSR.MSR_IA32_U_CET),
  rw(MSR.MSR_IA32_S_CET),
  rw(MSR.MSR_IA32_PL0_SSP),
  rw(MSR.MSR_IA32_PL1_SSP),
  rw(MSR.MSR_IA32_PL2_SSP),
  rw(MSR.MSR_IA32_PL3_SSP),
]);
