/**
 * More of nested_check_vm_execution_controls and
 * nested_check_vm_exit_controls (arch/x86/kvm/vmx/nested.c, Linux v6.13):
 * the VM-entry checks on vmcs12's controls that the areas do not already
 * make in nested.ts (MSR bitmap, APIC pages, posted-interrupt descriptor)
 * or vmcs-link.ts (shadow VMCS). A failure is VMfailValid
 * ENTRY_INVALID_CONTROL_FIELD, like the others.
 *
 * Not modelled yet: nested_vmx_check_eptp of vmcs12's EPT pointer (the
 * model keeps no EPT, and traces enable EPT without one), vmx_control_verify
 * of every control against the capability MSRs' allowed settings, nested_vmx_check_apicv_controls and
 * nested_vmx_check_posted_intr_controls beyond the descriptor address, the
 * TPR threshold, the VM-exit/VM-entry MSR-switch lists and event injection.
 */
import { CPU_BASED, PIN_BASED, SECONDARY_EXEC, VMCS, VMX_CAP_MSR } from '@nvx/arch';
import { pageAddressValid } from './nested';
import type { Vcpu, World } from './state';
import { vmxCapMsr } from './vmx-msrs';
import { vmcs12Get, vmcs12Get32 } from './vmcs12';

/** VM-exit control "save VMX-preemption timer value" (bit 22). */
const VM_EXIT_SAVE_VMX_PREEMPTION_TIMER = 1 << 22;
/** VM-function control 0: EPTP switching. */
const VMX_VMFUNC_EPTP_SWITCHING = 1n;

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
  // VM functions
  if (has2(SECONDARY_EXEC.ENABLE_VMFUNC)) {
    const fns = vmcs12Get(n, VMCS.VM_FUNCTION_CONTROL);
    if (fns & ~vmxCapMsr(w, v, VMX_CAP_MSR.VMFUNC)) return 'a VM function KVM does not offer';
    if (fns & VMX_VMFUNC_EPTP_SWITCHING && (!has2(SECONDARY_EXEC.ENABLE_EPT) || !pageAddressValid(vmcs12Get(n, VMCS.EPTP_LIST_ADDRESS)))) return 'EPTP switching';
  }
  return null;
}
