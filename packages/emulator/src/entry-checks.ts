/**
 * More of nested_vmx_check_controls (arch/x86/kvm/vmx/nested.c, Linux v6.13):
 * the checks of nested_check_vm_execution_controls,
 * nested_check_vm_exit_controls and nested_check_vm_entry_controls that the
 * areas do not already make in nested.ts (MSR bitmap, TPR shadow, APIC
 * pages, nested_vmx_check_apicv_controls) or vmcs-link.ts (shadow VMCS). A
 * failure is VMfailValid ENTRY_INVALID_CONTROL_FIELD, like the others, so
 * their order decides nothing an observer sees; it is KVM's anyway.
 *
 * vmx_control_verify (vmxControlVerify) is applied as KVM does: the
 * pin-based, primary and (when activated) secondary controls first in
 * nested_check_vm_execution_controls (nestedCheckControlsVerify, called
 * first by nestedVmxCheckControls in nested.ts), the VM-exit controls at
 * the top of nested_check_vm_exit_controls and the VM-entry controls at the
 * top of nested_check_vm_entry_controls (both below). The allowed-0 and
 * allowed-1 halves are the vCPU's TRUE control MSRs and
 * IA32_VMX_PROCBASED_CTLS2: what vmx->nested.msrs holds.
 *
 * nested_evmcs_check_controls comes last (nestedEvmcsCheckControls).
 *
 * Not made yet: nested_vmx_check_mode_based_ept_exec_controls, and the
 * host- and guest-state checks.
 * nestedVmxLoadMsr walks the VM-entry MSR-load list.
 */
import { CPU_BASED, EPT_VPID_CAP, EVMCS1_SUPPORTED, EXCEPTION_HAS_ERROR_CODE, INTR_INFO, INTR_TYPE, MSR, PIN_BASED, SECONDARY_EXEC, VMCS, VMX_CAP_MSR, VMX_MISC } from '@nvx/arch';
import { PHYS_LIMIT, pageAddressValid } from './nested';
import { readGuest } from './memory';
import type { Vcpu, World } from './state';
import { vmxCapMsr } from './vmx-msrs';
import { vmcs12Get, vmcs12Get32 } from './vmcs12';

/** VM-exit control "save VMX-preemption timer value" (bit 22). */
const VM_EXIT_SAVE_VMX_PREEMPTION_TIMER = 1 << 22;
/** VM-function control 0: EPTP switching. */
const VMX_VMFUNC_EPTP_SWITCHING = 1n;

/**
 * vmx_control_verify: every must-be-1 bit (the capability MSR's low half,
 * allowed-0) set and no bit outside its high half (allowed-1). Bits 63:32
 * of the field are not part of the 32-bit control.
 */
export function vmxControlVerify(control: number, cap: bigint): boolean {
  const low = Number(cap & 0xffffffffn);
  const high = Number(cap >> 32n);
  const c = control >>> 0;
  return ((c & low) >>> 0) === low >>> 0 && ((c & ~high) >>> 0) === 0;
}

/**
 * The vmx_control_verify calls at the top of
 * nested_check_vm_execution_controls: pin-based and primary controls
 * against vmx->nested.msrs.{pinbased,procbased}_ctls_{low,high} (what L1
 * reads in the TRUE MSRs), the secondary ones only while "activate
 * secondary controls" is set. Returns a short reason, else null.
 */
export function nestedCheckControlsVerify(w: World, v: Vcpu): string | null {
  const n = v.nested;
  const cpu = vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL);
  if (!vmxControlVerify(vmcs12Get32(n, VMCS.PIN_BASED_VM_EXEC_CONTROL), vmxCapMsr(w, v, VMX_CAP_MSR.TRUE_PINBASED_CTLS))) return 'pin-based controls outside IA32_VMX_TRUE_PINBASED_CTLS';
  if (!vmxControlVerify(cpu, vmxCapMsr(w, v, VMX_CAP_MSR.TRUE_PROCBASED_CTLS))) return 'primary controls outside IA32_VMX_TRUE_PROCBASED_CTLS';
  if (cpu & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS && !vmxControlVerify(vmcs12Get32(n, VMCS.SECONDARY_VM_EXEC_CONTROL), vmxCapMsr(w, v, VMX_CAP_MSR.PROCBASED_CTLS2)))
    return 'secondary controls outside IA32_VMX_PROCBASED_CTLS2';
  return null;
}

/** Returns a short reason when KVM's checks refuse vmcs12's controls, else null. */
export function nestedCheckMoreExecControls(w: World, v: Vcpu): string | null {
  const n = v.nested;
  const pin = vmcs12Get32(n, VMCS.PIN_BASED_VM_EXEC_CONTROL);
  const cpu = vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL);
  const sec = cpu & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS ? vmcs12Get32(n, VMCS.SECONDARY_VM_EXEC_CONTROL) : 0;
  const has2 = (bit: number) => (sec & bit) !== 0;


  // nested_cpu_vmx_misc_cr3_count: bits 24:16 of the vCPU's IA32_VMX_MISC (0 in KVM's)
  const cr3Count = Number((vmxCapMsr(w, v, VMX_CAP_MSR.MISC) >> 16n) & 0x1ffn);
  if (vmcs12Get32(n, VMCS.CR3_TARGET_COUNT) > cr3Count) return 'CR3-target count above IA32_VMX_MISC';
  // nested_vmx_check_io_bitmap_controls
  if (cpu & CPU_BASED.USE_IO_BITMAPS && (!pageAddressValid(vmcs12Get(n, VMCS.IO_BITMAP_A)) || !pageAddressValid(vmcs12Get(n, VMCS.IO_BITMAP_B)))) return 'I/O-bitmap address';
  // nested_vmx_check_nmi_controls
  if (!(pin & PIN_BASED.NMI_EXITING) && pin & PIN_BASED.VIRTUAL_NMIS) return 'virtual NMIs without NMI exiting';
  if (!(pin & PIN_BASED.VIRTUAL_NMIS) && cpu & CPU_BASED.NMI_WINDOW_EXITING) return 'NMI-window exiting without virtual NMIs';
  // nested_vmx_check_pml_controls
  if (has2(SECONDARY_EXEC.ENABLE_PML) && (!has2(SECONDARY_EXEC.ENABLE_EPT) || !pageAddressValid(vmcs12Get(n, VMCS.PML_ADDRESS)))) return 'PML without EPT or with a bad PML address';
  // nested_vmx_check_unrestricted_guest_controls
  if (has2(SECONDARY_EXEC.UNRESTRICTED_GUEST) && !has2(SECONDARY_EXEC.ENABLE_EPT)) return 'unrestricted guest without EPT';
  // nested_cpu_has_vpid && !virtual_processor_id
  if (has2(SECONDARY_EXEC.ENABLE_VPID) && vmcs12Get(n, VMCS.VIRTUAL_PROCESSOR_ID) === 0n) return 'VPID 0';
  // saving the preemption timer needs the timer
  if (!(pin & PIN_BASED.VMX_PREEMPTION_TIMER) && vmcs12Get32(n, VMCS.VM_EXIT_CONTROLS) & VM_EXIT_SAVE_VMX_PREEMPTION_TIMER) return 'save-preemption-timer without the timer';
  // nested_cpu_has_ept && !nested_vmx_check_eptp
  if (has2(SECONDARY_EXEC.ENABLE_EPT) && !nestedVmxCheckEptp(w, v, vmcs12Get(n, VMCS.EPT_POINTER))) return 'EPT pointer';
  // VM functions
  if (has2(SECONDARY_EXEC.ENABLE_VMFUNC)) {
    const fns = vmcs12Get(n, VMCS.VM_FUNCTION_CONTROL);
    if (fns & ~vmxCapMsr(w, v, VMX_CAP_MSR.VMFUNC)) return 'a VM function KVM does not offer';
    if (fns & VMX_VMFUNC_EPTP_SWITCHING && (!has2(SECONDARY_EXEC.ENABLE_EPT) || !pageAddressValid(vmcs12Get(n, VMCS.EPTP_LIST_ADDRESS)))) return 'EPTP switching';
  }
  // nested_check_vm_exit_controls: vmx_control_verify against exit_ctls_{low,high}, then nested_vmx_check_exit_msr_switch_controls
  if (!vmxControlVerify(vmcs12Get32(n, VMCS.VM_EXIT_CONTROLS), vmxCapMsr(w, v, VMX_CAP_MSR.TRUE_EXIT_CTLS))) return 'VM-exit controls outside IA32_VMX_TRUE_EXIT_CTLS';
  if (!nestedVmxCheckMsrSwitch(vmcs12Get32(n, VMCS.VM_EXIT_MSR_LOAD_COUNT), vmcs12Get(n, VMCS.VM_EXIT_MSR_LOAD_ADDR))) return 'VM-exit MSR-load list address';
  if (!nestedVmxCheckMsrSwitch(vmcs12Get32(n, VMCS.VM_EXIT_MSR_STORE_COUNT), vmcs12Get(n, VMCS.VM_EXIT_MSR_STORE_ADDR))) return 'VM-exit MSR-store list address';
  // nested_check_vm_entry_controls: vmx_control_verify against entry_ctls_{low,high}, the event to inject, then nested_vmx_check_entry_msr_switch_controls
  if (!vmxControlVerify(vmcs12Get32(n, VMCS.VM_ENTRY_CONTROLS), vmxCapMsr(w, v, VMX_CAP_MSR.TRUE_ENTRY_CTLS))) return 'VM-entry controls outside IA32_VMX_TRUE_ENTRY_CTLS';
  const injection = nestedCheckEventInjection(w, v, has2(SECONDARY_EXEC.UNRESTRICTED_GUEST));
  if (injection !== null) return injection;
  if (!nestedVmxCheckMsrSwitch(vmcs12Get32(n, VMCS.VM_ENTRY_MSR_LOAD_COUNT), vmcs12Get(n, VMCS.VM_ENTRY_MSR_LOAD_ADDR))) return 'VM-entry MSR-load list address';
  return null;
}

/**
 * The event-injection part of nested_check_vm_entry_controls (Linux v6.13;
 * SDM 26.2.1.3): with the valid bit of the VM-entry interruption-information
 * field set, the type may not be reserved, nor "other event" unless L1 may
 * use the monitor trap flag; an NMI has vector 2, a hardware exception a
 * vector below 32, "other event" vector 0; deliver-error-code is set exactly
 * for a hardware exception that pushes one, in protected mode (guest CR0.PE,
 * or always without unrestricted guest); a delivered error code fits in 16
 * bits; bits 30:12 are clear; and a software interrupt or exception has an
 * instruction length of 1-15 (0 only with IA32_VMX_MISC bit 30, which KVM
 * does not offer). kvm-unit-tests: vmx_tests.c test_invalid_event_injection.
 * Later KVMs skip the vector/error-code match when IA32_VMX_BASIC bit 56 is
 * enumerated; the model's IA32_VMX_BASIC, as v6.13's, does not have it.
 */
export function nestedCheckEventInjection(w: World, v: Vcpu, unrestrictedGuest: boolean): string | null {
  const n = v.nested;
  const info = vmcs12Get32(n, VMCS.VM_ENTRY_INTR_INFO_FIELD);
  if (!(info & INTR_INFO.VALID_MASK)) return null;
  const vector = info & INTR_INFO.VECTOR_MASK;
  const type = info & INTR_INFO.INTR_TYPE_MASK;
  const hasErrorCode = (info & INTR_INFO.DELIVER_CODE_MASK) !== 0;
  const protMode = !unrestrictedGuest || (vmcs12Get(n, VMCS.GUEST_CR0) & 1n) !== 0n;
  // nested_cpu_supports_monitor_trap_flag: the allowed-1 half of the vCPU's procbased controls
  const mtf = (vmxCapMsr(w, v, VMX_CAP_MSR.TRUE_PROCBASED_CTLS) >> 32n) & BigInt(CPU_BASED.MONITOR_TRAP_FLAG);
  if (type === INTR_TYPE.RESERVED || (type === INTR_TYPE.OTHER_EVENT && !mtf)) return 'event injection: reserved interruption type';
  if ((type === INTR_TYPE.NMI_INTR && vector !== 2) || (type === INTR_TYPE.HARD_EXCEPTION && vector > 31) || (type === INTR_TYPE.OTHER_EVENT && vector !== 0))
    return 'event injection: vector';
  const shouldHaveErrorCode = type === INTR_TYPE.HARD_EXCEPTION && protMode && ((1 << vector) & EXCEPTION_HAS_ERROR_CODE) !== 0;
  if (hasErrorCode !== shouldHaveErrorCode) return 'event injection: deliver-error-code';
  if (hasErrorCode && vmcs12Get32(n, VMCS.VM_ENTRY_EXCEPTION_ERROR_CODE) & 0xffff0000) return 'event injection: error code above 16 bits';
  if (info & INTR_INFO.RESVD_BITS_MASK) return 'event injection: reserved bits';
  if (type === INTR_TYPE.SOFT_EXCEPTION || type === INTR_TYPE.SOFT_INTR || type === INTR_TYPE.PRIV_SW_EXCEPTION) {
    const len = vmcs12Get32(n, VMCS.VM_ENTRY_INSTRUCTION_LEN);
    const zeroLen = (vmxCapMsr(w, v, VMX_CAP_MSR.MISC) & BigInt(VMX_MISC.ZERO_LEN_INS)) !== 0n;
    if (len > 15 || (len === 0 && !zeroLen)) return 'event injection: instruction length';
  }
  return null;
}

/**
 * nested_evmcs_check_controls, which nested_vmx_check_controls calls last
 * whenever eVMCS is enabled for the vCPU (guest_cpu_cap_has_evmcs: Hyper-V
 * CPUID and KVM_CAP_HYPERV_ENLIGHTENED_VMCS; the model's config.evmcs), for
 * a plain VMCS as much as for an eVMCS: no pin-based, secondary (as written,
 * activated or not), VM-exit or VM-entry control, nor VM function, that
 * eVMCS v1 cannot express (EVMCS1_SUPPORTED).
 */
export function nestedEvmcsCheckControls(w: World, v: Vcpu): string | null {
  if (!w.config.evmcs) return null;
  const n = v.nested;
  if (vmcs12Get32(n, VMCS.PIN_BASED_VM_EXEC_CONTROL) & ~EVMCS1_SUPPORTED.pin) return 'eVMCS: unsupported pin-based controls';
  if (vmcs12Get32(n, VMCS.SECONDARY_VM_EXEC_CONTROL) & ~EVMCS1_SUPPORTED.secondary) return 'eVMCS: unsupported secondary controls';
  if (vmcs12Get32(n, VMCS.VM_EXIT_CONTROLS) & ~EVMCS1_SUPPORTED.exit) return 'eVMCS: unsupported VM-exit controls';
  if (vmcs12Get32(n, VMCS.VM_ENTRY_CONTROLS) & ~EVMCS1_SUPPORTED.entry) return 'eVMCS: unsupported VM-entry controls';
  if (vmcs12Get(n, VMCS.VM_FUNCTION_CONTROL) & ~BigInt(EVMCS1_SUPPORTED.vmfunc)) return 'eVMCS: unsupported VM functions';
  return null;
}

/** EPTP memory types (bits 2:0) and page-walk lengths minus one (bits 5:3). */
const VMX_EPTP_MT_MASK = 0x7n;
const VMX_EPTP_MT_UC = 0x0n;
const VMX_EPTP_MT_WB = 0x6n;
const VMX_EPTP_PWL_MASK = 0x38n;
const VMX_EPTP_PWL_4 = 0x18n;
const VMX_EPTP_PWL_5 = 0x20n;
const VMX_EPTP_AD_ENABLE_BIT = 1n << 6n;

/**
 * nested_vmx_check_eptp: a memory type and a walk length the vCPU's
 * IA32_VMX_EPT_VPID_CAP offers (UC or WB; 4 or 5 levels), no reserved bit
 * (11:7, or an address bit at or above MAXPHYADDR), and A/D bits only if offered.
 */
export function nestedVmxCheckEptp(w: World, v: Vcpu, eptp: bigint): boolean {
  const caps = vmxCapMsr(w, v, VMX_CAP_MSR.EPT_VPID_CAP);
  const offers = (bit: bigint) => (caps & bit) !== 0n;
  const mt = eptp & VMX_EPTP_MT_MASK;
  if (mt === VMX_EPTP_MT_UC ? !offers(EPT_VPID_CAP.EPTP_UC) : mt === VMX_EPTP_MT_WB ? !offers(EPT_VPID_CAP.EPTP_WB) : true) return false;
  const pwl = eptp & VMX_EPTP_PWL_MASK;
  if (pwl === VMX_EPTP_PWL_5 ? !offers(EPT_VPID_CAP.PAGE_WALK_5) : pwl === VMX_EPTP_PWL_4 ? !offers(EPT_VPID_CAP.PAGE_WALK_4) : true) return false;
  if (eptp >= PHYS_LIMIT || (eptp >> 7n) & 0x1fn) return false;
  return !(eptp & VMX_EPTP_AD_ENABLE_BIT) || offers(EPT_VPID_CAP.AD);
}

/** sizeof(struct vmx_msr_entry): index, reserved, value */
export const VMX_MSR_ENTRY_SIZE = 16n;

/**
 * nested_vmx_check_msr_switch: a non-empty MSR list starts 16-byte aligned
 * below MAXPHYADDR and ends below it too (kvm_vcpu_is_legal_aligned_gpa,
 * kvm_vcpu_is_legal_gpa).
 */
export function nestedVmxCheckMsrSwitch(count: number, addr: bigint): boolean {
  if (count === 0) return true;
  return (addr & 0xfn) === 0n && addr < PHYS_LIMIT && addr + BigInt(count >>> 0) * VMX_MSR_ENTRY_SIZE - 1n < PHYS_LIMIT;
}

/** MSRs nested_vmx_load_msr_check refuses that the MSR table does not name. */
const MSR_IA32_UCODE_WRITE = 0x79;
const MSR_IA32_SMM_MONITOR_CTL = 0x9b;
/** VMX_MISC_MSR_LIST_MULTIPLIER and IA32_VMX_MISC bits 27:25 (VMX_MISC_MSR_LIST_MASK) */
const VMX_MISC_MSR_LIST_MULTIPLIER = 512;

/** nested_vmx_max_atomic_switch_msrs: 512 * (IA32_VMX_MISC bits 27:25 + 1), as the vCPU has the MSR. */
export function nestedVmxMaxAtomicSwitchMsrs(w: World, v: Vcpu): number {
  return VMX_MISC_MSR_LIST_MULTIPLIER * (Number((vmxCapMsr(w, v, VMX_CAP_MSR.MISC) >> 25n) & 0x7n) + 1);
}

/**
 * nested_vmx_load_msr_check with nested_vmx_msr_check_common: FS_BASE,
 * GS_BASE, SMM_MONITOR_CTL and the microcode MSRs may not be loaded, and
 * the entry's reserved half must be 0. (The x2APIC-range rule needs L1's
 * APIC in x2APIC mode, which the model does not keep.)
 */
function nestedVmxLoadMsrCheck(index: number, reserved: number): boolean {
  if (index === MSR.MSR_FS_BASE || index === MSR.MSR_GS_BASE || index === MSR_IA32_SMM_MONITOR_CTL) return false;
  if (index === MSR_IA32_UCODE_WRITE || index === MSR.MSR_IA32_UCODE_REV) return false;
  return reserved === 0;
}

/**
 * nested_vmx_load_msr: walks vmcs12's VM-entry MSR-load list and returns 0,
 * or the 1-based index of the first entry that fails (past the list size
 * IA32_VMX_MISC allows, unreadable guest memory, or refused by
 * nested_vmx_load_msr_check); nested_vmx_enter_non_root_mode then fails the
 * entry with EXIT_REASON_MSR_LOAD_FAIL and that index as the exit
 * qualification. The loads themselves (kvm_set_msr_with_filter) are not
 * modelled: an accepted entry changes nothing the model keeps.
 */
export function nestedVmxLoadMsr(w: World, v: Vcpu, gpa: bigint, count: number): number {
  const max = nestedVmxMaxAtomicSwitchMsrs(w, v);
  for (let i = 0; i < count; i++) {
    if (i >= max) return i + 1;
    const at = gpa + BigInt(i) * VMX_MSR_ENTRY_SIZE;
    const index = readGuest(w, at, 4);
    const reserved = readGuest(w, at + 4n, 4);
    const value = readGuest(w, at + 8n, 8);
    if (index === null || reserved === null || value === null) return i + 1;
    if (!nestedVmxLoadMsrCheck(Number(index), Number(reserved))) return i + 1;
  }
  return 0;
}
