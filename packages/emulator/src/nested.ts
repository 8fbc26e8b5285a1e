/**
 * VMX instruction emulation and nested VM-entry/exit, after
 * arch/x86/kvm/vmx/nested.c. Function names follow KVM's where the model does
 * what that KVM function does. Everything an optimization changes is behind
 * a path (ctx.profile.paths[area]); the rest is common to every profile.
 *
 * These are the built-in operations (ops.ts, KVM_OPS in kvm-ops.ts): one KVM
 * function calls another through the profile's table
 * (`ctx.profile.ops.<kvm_name>`), never directly, so a patch that wraps an
 * operation sees every call of it.
 */
import {
  CPU_BASED,
  EVMCS,
  EXIT_REASON,
  HV_VMX_ENLIGHTENED_CLEAN_FIELD,
  INTR_INFO,
  INVALID_GPA,
  PIN_BASED,
  SECONDARY_EXEC,
  VMCS,
  VMCS12_REVISION,
  VMXERR,
  VMX_AR_BYTES_MASK,
  VM_EXIT,
  isArBytesField,
  vmcsFieldByEncoding,
} from '@nvx/arch';
import type { Outcome } from '@nvx/trace';
import { EVMPTRLD, evmcsL0ReadU32, evmcsL0WriteU32, evmcsReadField, evmptrValid } from './evmcs';
import { NESTED_PAGE } from './nested-pages';
import { ENTRY_FAIL_VMCS_LINK_PTR, freeNestedCaches } from './vmcs-link';
import { Ctx, writable } from './ctx';
import { readGuestU32, writeGuest } from './memory';
import { NestedVmx, Vcpu, World, setBitmapBit } from './state';
import { nestedCpuHasVmwriteAnyField, nestedCpuHasVmxShadowVmcs } from './vmx-msrs';
import { nestedCheckControlsVerify, nestedCheckMoreExecControls, nestedEvmcsCheckControls, nestedVmxLoadMsr } from './entry-checks';
import { vmcs12Get, vmcs12LoadFromGuest, vmcs12ReadField, vmcs12Set, vmcs12StoreToGuest, vmcs12WriteField } from './vmcs12';

/** The guest's MAXPHYADDR as CPUID reports it to L1. */
export const MAXPHYADDR = 46;
export const PHYS_LIMIT = 1n << BigInt(MAXPHYADDR);

export const OK: Outcome = Object.freeze({ k: 'ok' });
export const UD: Outcome = Object.freeze({ k: 'ud' });
export const GP: Outcome = Object.freeze({ k: 'gp' });
export const ENTERED: Outcome = Object.freeze({ k: 'entered' });
export const VMFAIL_INVALID: Outcome = Object.freeze({ k: 'vmfail-invalid' });

export function ignored(why: string): Outcome {
  return { k: 'ignored', why };
}

/** page_address_valid: page aligned and below MAXPHYADDR */
export function pageAddressValid(gpa: bigint): boolean {
  return (gpa & 0xfffn) === 0n && gpa < PHYS_LIMIT;
}

/**
 * nested_vmx_fail: VMfailValid with the error in vmcs12, or VMfailInvalid
 * when there is no current VMCS.
 */
export function nestedVmxFail(ctx: Ctx, v: Vcpu, error: number): Outcome {
  const n = v.nested;
  if (n.currentVmptr === INVALID_GPA && !evmptrValid(n)) return VMFAIL_INVALID;
  vmcs12Set(ctx, n, VMCS.VM_INSTRUCTION_ERROR, BigInt(error));
  // VM_INSTRUCTION_ERROR is not shadowed, but an eVMCS mirrors every field.
  if (evmptrValid(n)) n.needVmcs12ToShadowSync = true;
  return { k: 'vmfail-valid', error };
}

/** nested_sync_vmcs12_to_shadow, done by vmx_prepare_switch_to_guest before L1 runs again. */
export function syncVmcs12ToShadow(ctx: Ctx, w: World, v: Vcpu): void {
  const n = v.nested;
  if (!n.needVmcs12ToShadowSync) return;
  if (evmptrValid(n)) ctx.profile.ops.copy_vmcs12_to_enlightened(ctx, w, v);
  else if (w.config.shadowVmcs) ctx.profile.paths['shadow-vmcs'].copyVmcs12ToShadow(ctx, w, v);
  n.needVmcs12ToShadowSync = false;
}

// ---- VMXON / VMXOFF ----

export function handleVmxon(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): Outcome {
  const n = v.nested;
  if (n.vmxon) return ctx.profile.ops.nested_vmx_fail(ctx, w, v, VMXERR.VMXON_IN_VMX_ROOT_OPERATION);
  if (!pageAddressValid(gpa)) return VMFAIL_INVALID;
  if (readGuestU32(w, gpa) !== VMCS12_REVISION) return VMFAIL_INVALID;
  n.vmxon = true;
  n.vmxonPtr = gpa;
  n.currentVmptr = INVALID_GPA;
  // enter_vmx_operation allocates vmcs02 and its MSR bitmap all-ones.
  n.vmcs02MsrBitmap = new Uint8Array(n.vmcs02MsrBitmap.length).fill(0xff);
  ctx.fresh?.add(n.vmcs02MsrBitmap);
  n.vmcs02UseMsrBitmaps = false;
  return OK;
}

/** handle_vmxoff: free_nested, no write-back of vmcs12 */
export function handleVmxoff(ctx: Ctx, w: World, v: Vcpu): Outcome {
  if (!v.nested.vmxon) return UD;
  ctx.profile.ops.free_nested(ctx, w, v);
  return OK;
}

/** free_nested */
export function freeNested(ctx: Ctx, w: World, v: Vcpu): void {
  const n = v.nested;
  n.vmxon = false;
  n.vmxonPtr = INVALID_GPA;
  n.currentVmptr = INVALID_GPA;
  ctx.profile.ops.nested_release_evmcs(ctx, w, v);
  ctx.profile.paths['guest-pages'].freeNested?.(ctx, w, v);
  // vmx_disable_shadow_vmcs and the shadow VMCS freed; cached_vmcs12 and cached_shadow_vmcs12 freed
  ctx.profile.paths['shadow-vmcs'].free(ctx, w, v);
  freeNestedCaches(ctx, n);
  n.dirtyVmcs12 = false;
  n.needVmcs12ToShadowSync = false;
}

// ---- current VMCS ----

/** nested_release_vmcs12: pull L1's shadow VMCS writes in, turn shadowing off, write the cached vmcs12 back to L1 memory. */
export function nestedReleaseVmcs12(ctx: Ctx, w: World, v: Vcpu): void {
  const n = v.nested;
  if (n.currentVmptr === INVALID_GPA) return;
  ctx.profile.paths['shadow-vmcs'].release(ctx, w, v);
  vmcs12StoreToGuest(ctx, w, n, n.currentVmptr);
  n.currentVmptr = INVALID_GPA;
}

export function handleVmptrld(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): Outcome {
  const n = v.nested;
  if (!n.vmxon) return UD;
  const ops = ctx.profile.ops;
  if (!pageAddressValid(gpa)) return ops.nested_vmx_fail(ctx, w, v, VMXERR.VMPTRLD_INVALID_ADDRESS);
  if (gpa === n.vmxonPtr) return ops.nested_vmx_fail(ctx, w, v, VMXERR.VMPTRLD_VMXON_POINTER);
  // KVM ignores a normal VMPTRLD while an enlightened VMCS is in use (and does not skip the instruction).
  if (evmptrValid(n)) return ignored('VMPTRLD while an enlightened VMCS is in use');
  if (n.currentVmptr === gpa) return OK;
  // handle_vmptrld: reads from an unbacked page return all ones, which is not VMCS12_REVISION, so
  // KVM reports a bad revision id; a region whose bit 31 says "shadow VMCS" is refused only when
  // L1 lacks VMCS shadowing (nested_cpu_has_vmx_shadow_vmcs).
  const rev = readGuestU32(w, gpa);
  if (rev === null) return ops.nested_vmx_fail(ctx, w, v, VMXERR.VMPTRLD_INCORRECT_VMCS_REVISION_ID);
  if ((rev & 0x7fffffff) !== VMCS12_REVISION || (rev & 0x80000000 && !nestedCpuHasVmxShadowVmcs(w, v))) return ops.nested_vmx_fail(ctx, w, v, VMXERR.VMPTRLD_INCORRECT_VMCS_REVISION_ID);
  ops.nested_release_vmcs12(ctx, w, v);
  if (!vmcs12LoadFromGuest(ctx, w, n, gpa)) return ops.nested_vmx_fail(ctx, w, v, VMXERR.VMPTRLD_INCORRECT_VMCS_REVISION_ID);
  // set_current_vmptr; the cached vmcs12 keeps the header (hdr.shadow_vmcs)
  if (rev & 0x80000000) n.hdrShadowVmcs = true;
  else delete n.hdrShadowVmcs;
  n.currentVmptr = gpa;
  n.dirtyVmcs12 = true;
  if (w.config.shadowVmcs) n.needVmcs12ToShadowSync = true;
  ctx.profile.paths['shadow-vmcs'].setCurrentVmptr(ctx, w, v);
  n.forceMsrBitmapRecalc = true;
  ctx.profile.paths['guest-pages'].vmptrld?.(ctx, w, v, gpa);
  return OK;
}

export function handleVmclear(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): Outcome {
  const n = v.nested;
  if (!n.vmxon) return UD;
  const ops = ctx.profile.ops;
  if (!pageAddressValid(gpa)) return ops.nested_vmx_fail(ctx, w, v, VMXERR.VMCLEAR_INVALID_ADDRESS);
  if (gpa === n.vmxonPtr) return ops.nested_vmx_fail(ctx, w, v, VMXERR.VMCLEAR_VMXON_POINTER);
  // nested_evmcs_handle_vmclear: while the VP assist page names an eVMCS, the region is taken to be
  // an eVMCS, which has no launch state to clear: VMCLEAR writes nothing and only releases the eVMCS
  // in use if that is the one named.
  if (w.config.evmcs && n.vpAssistEvmcs !== INVALID_GPA) {
    if (gpa === n.hvEvmcsVmptr) ops.nested_release_evmcs(ctx, w, v);
    return OK;
  }
  if (gpa === n.currentVmptr) ops.nested_release_vmcs12(ctx, w, v);
  // VMCLEAR clears the launch state in the region itself (a write to L1 memory).
  writeLaunchState(ctx, w, gpa);
  ctx.profile.paths['guest-pages'].vmclear?.(ctx, w, v, gpa);
  return OK;
}

function writeLaunchState(ctx: Ctx, w: World, gpa: bigint): void {
  // Failure to write is ignored, as KVM does.
  void writeGuestU32(ctx, w, gpa + 8n, 0);
}

export function handleVmptrst(_ctx: Ctx, _w: World, v: Vcpu): Outcome {
  const n = v.nested;
  if (!n.vmxon) return UD;
  if (evmptrValid(n)) return ignored('VMPTRST while an enlightened VMCS is in use');
  return { k: 'value', value: n.currentVmptr };
}

// ---- VMREAD / VMWRITE from L1 ----

export function handleVmread(ctx: Ctx, w: World, v: Vcpu, field: number): Outcome {
  // VMCS shadowing: the CPU reads vmcs01's shadow VMCS without an exit where KVM's VMREAD bitmap lets it.
  const shadowed = ctx.profile.paths['shadow-vmcs'].vmread(ctx, w, v, field);
  if (shadowed) return shadowed;
  const n = v.nested;
  if (!n.vmxon) return UD;
  ctx.cost.vmreadExits++;
  if (evmptrValid(n)) {
    // Allowed for some Windows builds although the TLFS forbids it: read the eVMCS itself.
    const f = vmcsFieldByEncoding(field);
    const val = f ? evmcsReadField(ctx, w, v, f) : null;
    return val === null ? ctx.profile.ops.nested_vmx_fail(ctx, w, v, VMXERR.UNSUPPORTED_VMCS_COMPONENT) : { k: 'value', value: val };
  }
  if (n.currentVmptr === INVALID_GPA) return VMFAIL_INVALID;
  const f = vmcsFieldByEncoding(field);
  if (!f) return ctx.profile.ops.nested_vmx_fail(ctx, w, v, VMXERR.UNSUPPORTED_VMCS_COMPONENT);
  return { k: 'value', value: vmcs12ReadField(n, f) };
}

export function handleVmwrite(ctx: Ctx, w: World, v: Vcpu, field: number, value: bigint): Outcome {
  // VMCS shadowing: the CPU writes vmcs01's shadow VMCS without an exit where KVM's VMWRITE bitmap lets it.
  const shadowed = ctx.profile.paths['shadow-vmcs'].vmwrite(ctx, w, v, field, value);
  if (shadowed) return shadowed;
  const n = v.nested;
  if (!n.vmxon) return UD;
  ctx.cost.vmwriteExits++;
  if (n.currentVmptr === INVALID_GPA) return VMFAIL_INVALID;
  const ops = ctx.profile.ops;
  const f = vmcsFieldByEncoding(field);
  if (!f) return ops.nested_vmx_fail(ctx, w, v, VMXERR.UNSUPPORTED_VMCS_COMPONENT);
  if (f.readOnly && !nestedCpuHasVmwriteAnyField(w, v)) return ops.nested_vmx_fail(ctx, w, v, VMXERR.VMWRITE_READ_ONLY_VMCS_COMPONENT);
  const val = ops.handle_vmwrite_mask_ar_bytes(ctx, w, v, field, value);
  vmcs12WriteField(ctx, n, f, val);
  if (f.shadow !== 'rw' || !w.config.shadowVmcs) n.dirtyVmcs12 = true;
  // a read-only-shadowed field L1 reads without exit: the shadow VMCS must see the write too (seed 002)
  ctx.profile.paths['shadow-vmcs'].emulatedVmwrite(ctx, w, v, f, val);
  return OK;
}

// ---- nested VM-entry ----

/** handle_vmwrite: some CPUs drop the reserved AR-byte bits on VMWRITE; KVM does so for everyone (GUEST_ES_AR_BYTES .. GUEST_TR_AR_BYTES). */
export function handleVmwriteMaskArBytes(_ctx: Ctx, _w: World, _v: Vcpu, field: number, value: bigint): bigint {
  return isArBytesField(field) ? value & BigInt(VMX_AR_BYTES_MASK) : value;
}

/** nested_vmx_check_controls: the checks of vmcs12's controls the model has (each a KVM function of its own). */
export function nestedVmxCheckControls(ctx: Ctx, w: World, v: Vcpu): boolean {
  const ops = ctx.profile.ops;
  return (
    // the vmx_control_verify calls at the top of nested_check_vm_execution_controls (entry-checks.ts)
    nestedCheckControlsVerify(w, v) === null &&
    ops.nested_vmx_check_msr_bitmap_controls(ctx, w, v) &&
    ops.nested_vmx_check_tpr_shadow_controls(ctx, w, v) &&
    ops.nested_vmx_check_apic_access_controls(ctx, w, v) &&
    ops.nested_vmx_check_apicv_controls(ctx, w, v) &&
    ops.nested_vmx_check_shadow_vmcs_controls(ctx, w, v) &&
    // the other execution-control checks of nested_check_vm_execution_controls (entry-checks.ts)
    nestedCheckMoreExecControls(w, v) === null &&
    // with eVMCS enabled for the vCPU, only the controls eVMCS v1 can express (entry-checks.ts)
    nestedEvmcsCheckControls(w, v) === null
  );
}

const cpuBased = (n: NestedVmx): number => Number(vmcs12Get(n, VMCS.CPU_BASED_VM_EXEC_CONTROL) & 0xffffffffn);

/** nested_vmx_check_msr_bitmap_controls: with MSR bitmaps on, a legal page address */
export function nestedVmxCheckMsrBitmapControls(_ctx: Ctx, _w: World, v: Vcpu): boolean {
  const n = v.nested;
  return !(cpuBased(n) & CPU_BASED.USE_MSR_BITMAPS) || pageAddressValid(vmcs12Get(n, VMCS.MSR_BITMAP));
}

/** nested_cpu_has2: a secondary control counts only while "activate secondary controls" is set */
const secondary = (n: NestedVmx): number =>
  cpuBased(n) & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS ? Number(vmcs12Get(n, VMCS.SECONDARY_VM_EXEC_CONTROL) & 0xffffffffn) : 0;

/**
 * nested_vmx_check_tpr_shadow_controls: the virtual-APIC page address, and
 * without virtual-interrupt delivery TPR_THRESHOLD bits 31:4 must be 0 (the
 * check KVM added with "KVM: nVMX: Add consistency check for
 * TPR_THRESHOLD[31:4]!=0 without VID"; kvm-unit-tests test_tpr_threshold).
 */
export function nestedVmxCheckTprShadowControls(_ctx: Ctx, _w: World, v: Vcpu): boolean {
  const n = v.nested;
  if (!(cpuBased(n) & CPU_BASED.TPR_SHADOW)) return true;
  if (!pageAddressValid(vmcs12Get(n, VMCS.VIRTUAL_APIC_PAGE_ADDR))) return false;
  return (secondary(n) & SECONDARY_EXEC.VIRTUAL_INTR_DELIVERY) !== 0 || (vmcs12Get(n, VMCS.TPR_THRESHOLD) & 0xfffffff0n) === 0n;
}

/** nested_vmx_check_apic_access_controls: the APIC-access page address */
export function nestedVmxCheckApicAccessControls(_ctx: Ctx, _w: World, v: Vcpu): boolean {
  const n = v.nested;
  return (
    !(cpuBased(n) & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS) ||
    !(Number(vmcs12Get(n, VMCS.SECONDARY_VM_EXEC_CONTROL) & 0xffffffffn) & SECONDARY_EXEC.VIRTUALIZE_APIC_ACCESSES) ||
    pageAddressValid(vmcs12Get(n, VMCS.APIC_ACCESS_ADDR))
  );
}

/**
 * nested_vmx_check_apicv_controls: with virtualize x2APIC mode, APIC-register
 * virtualization, virtual-interrupt delivery or posted interrupts on,
 * virtualize x2APIC mode excludes APIC-access virtualization,
 * virtual-interrupt delivery needs external-interrupt exiting
 * (nested_exit_on_intr), posted interrupts need virtual-interrupt delivery,
 * acknowledge-interrupt-on-exit (nested_exit_intr_ack_set), notification
 * vector bits 15:8 clear and a descriptor 64-byte aligned below MAXPHYADDR
 * (kvm_vcpu_is_legal_aligned_gpa), and all of them need the TPR shadow.
 * kvm-unit-tests: test_apic_virtual_ctls, test_virtual_intr_ctls,
 * test_posted_intr (vmx_tests.c).
 */
export function nestedVmxCheckApicvControls(_ctx: Ctx, _w: World, v: Vcpu): boolean {
  const n = v.nested;
  const pin = Number(vmcs12Get(n, VMCS.PIN_BASED_VM_EXEC_CONTROL) & 0xffffffffn);
  const sec = secondary(n);
  const x2apic = (sec & SECONDARY_EXEC.VIRTUALIZE_X2APIC_MODE) !== 0;
  const vid = (sec & SECONDARY_EXEC.VIRTUAL_INTR_DELIVERY) !== 0;
  const posted = (pin & PIN_BASED.POSTED_INTR) !== 0;
  if (!x2apic && !(sec & SECONDARY_EXEC.APIC_REGISTER_VIRT) && !vid && !posted) return true;
  if (x2apic && sec & SECONDARY_EXEC.VIRTUALIZE_APIC_ACCESSES) return false;
  if (vid && !(pin & PIN_BASED.EXT_INTR_MASK)) return false;
  if (posted) {
    if (!vid || !(Number(vmcs12Get(n, VMCS.VM_EXIT_CONTROLS) & 0xffffffffn) & VM_EXIT.ACK_INTR_ON_EXIT)) return false;
    if (vmcs12Get(n, VMCS.POSTED_INTR_NV) & 0xff00n) return false;
    const desc = vmcs12Get(n, VMCS.POSTED_INTR_DESC_ADDR);
    if ((desc & 0x3fn) !== 0n || desc >= PHYS_LIMIT) return false;
  }
  // the TPR shadow is needed by all APICv features
  return (cpuBased(n) & CPU_BASED.TPR_SHADOW) !== 0;
}

/**
 * nested_get_vmcs12_pages could not map a page vmcs12 names. The APIC-access
 * page: KVM_RUN returns KVM_EXIT_INTERNAL_ERROR, L1's instruction is not
 * completed. The virtual-APIC page: vmcs02 gets an illegal address, the
 * hardware entry fails and nested_vmx_vmexit turns that into VMfailValid
 * ENTRY_INVALID_CONTROL_FIELD for L1 (unless CR8 loads and stores exit
 * without APIC-access virtualization: KVM then drops the TPR shadow, which
 * the model does not follow). The descriptor: not modelled.
 */
function unbackedVmcs12Page(ctx: Ctx, w: World, v: Vcpu, page: number, why: string): Outcome {
  if (page === NESTED_PAGE.APIC_ACCESS) return USERSPACE_INTERNAL_ERROR;
  const cpu = Number(vmcs12Get(v.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL) & 0xffffffffn);
  const cr8Exits = (cpu & CPU_BASED.CR8_LOAD_EXITING) !== 0 && (cpu & CPU_BASED.CR8_STORE_EXITING) !== 0;
  if (page === NESTED_PAGE.VAPIC && !cr8Exits) return ctx.profile.ops.nested_vmx_fail(ctx, w, v, VMXERR.ENTRY_INVALID_CONTROL_FIELD);
  return ignored(`not modelled: ${why}`);
}

export const USERSPACE_INTERNAL_ERROR: Outcome = Object.freeze({ k: 'userspace', exit: 'internal-error' });

/** nested_vmx_run: VMLAUNCH (launch) or VMRESUME from L1. */
export function nestedVmxRun(ctx: Ctx, w: World, v: Vcpu, launch: boolean): Outcome {
  const n = v.nested;
  if (!n.vmxon) return UD;
  const ops = ctx.profile.ops;
  const evmptrld = ops.nested_vmx_handle_enlightened_vmptrld(ctx, w, v, launch);
  if (evmptrld === EVMPTRLD.ERROR) return UD;
  if (evmptrld === EVMPTRLD.VMFAIL) return VMFAIL_INVALID;
  if (!evmptrValid(n) && n.currentVmptr === INVALID_GPA) return VMFAIL_INVALID;
  // nested_vmx_run: a shadow VMCS cannot be launched or resumed; VMfailInvalid although there is a current VMCS
  if (n.hdrShadowVmcs && !evmptrValid(n)) return VMFAIL_INVALID;

  if (evmptrValid(n)) {
    ops.copy_enlightened_to_vmcs12(ctx, w, v, evmcsL0ReadU32(ctx, w, v, EVMCS.HV_CLEAN_FIELDS_OFFSET) ?? 0);
    // An eVMCS has no launch state.
    n.launched = !launch;
  } else if (w.config.shadowVmcs) {
    ctx.profile.paths['shadow-vmcs'].copyShadowToVmcs12(ctx, w, v);
  }

  if (launch && n.launched) return ops.nested_vmx_fail(ctx, w, v, VMXERR.VMLAUNCH_NONCLEAR_VMCS);
  if (!launch && !n.launched) return ops.nested_vmx_fail(ctx, w, v, VMXERR.VMRESUME_NONLAUNCHED_VMCS);
  if (!ops.nested_vmx_check_controls(ctx, w, v)) return ops.nested_vmx_fail(ctx, w, v, VMXERR.ENTRY_INVALID_CONTROL_FIELD);
  return ops.nested_vmx_enter_non_root_mode(ctx, w, v);
}

/** nested_vmx_enter_non_root_mode, after the control checks: the pages, the guest-state check, prepare_vmcs02, into guest mode. */
export function nestedVmxEnterNonRootMode(ctx: Ctx, w: World, v: Vcpu): Outcome {
  const n = v.nested;
  const ops = ctx.profile.ops;
  // nested_get_vmcs12_pages: the MSR bitmap, the APIC-access page, the virtual-APIC page and the posted-interrupt descriptor
  const unbacked = ops.nested_get_vmcs12_pages(ctx, w, v);
  if (unbacked !== null) return unbackedVmcs12Page(ctx, w, v, unbacked.page, unbacked.why);
  // nested_vmx_check_guest_state: the VMCS-link pointer (checked when L1 shadows VMCS for L2)
  if (!ops.nested_vmx_check_vmcs_link_ptr(ctx, w, v)) return ops.vmentry_fail_vmexit(ctx, w, v, EXIT_REASON.INVALID_STATE, ENTRY_FAIL_VMCS_LINK_PTR);
  ops.prepare_vmcs02(ctx, w, v);
  // nested_vmx_load_msr of the VM-entry MSR-load list: a bad entry fails the entry, its 1-based index the qualification
  const failedIndex = nestedVmxLoadMsr(w, v, vmcs12Get(n, VMCS.VM_ENTRY_MSR_LOAD_ADDR), Number(vmcs12Get(n, VMCS.VM_ENTRY_MSR_LOAD_COUNT) & 0xffffffffn));
  if (failedIndex !== 0) return ops.vmentry_fail_vmexit(ctx, w, v, EXIT_REASON.MSR_LOAD_FAIL, BigInt(failedIndex));
  n.guestMode = true;
  n.launched = true;
  ops.nested_cache_shadow_vmcs12(ctx, w, v);
  ops.vmx_complete_nested_posted_interrupt(ctx, w, v);
  ctx.cost.nestedEntries++;
  return ENTERED;
}

/**
 * prepare_vmcs02, what the model does of it: the rare fields are consumed
 * (dirty_vmcs12), and an eVMCS is then all clean: genuine Hyper-V only ever
 * clears clean bits when it changes a field, so KVM sets them all here.
 */
export function prepareVmcs02(ctx: Ctx, w: World, v: Vcpu): void {
  const n = v.nested;
  n.dirtyVmcs12 = false;
  if (evmptrValid(n)) {
    const clean = evmcsL0ReadU32(ctx, w, v, EVMCS.HV_CLEAN_FIELDS_OFFSET) ?? 0;
    evmcsL0WriteU32(ctx, w, v, EVMCS.HV_CLEAN_FIELDS_OFFSET, clean | HV_VMX_ENLIGHTENED_CLEAN_FIELD.ALL);
  }
}

// ---- nested VM-exit ----

/**
 * Instruction lengths in VM_EXIT_INSTRUCTION_LEN for the exits the model
 * delivers (prepare_vmcs12 copies vmcs02's field, which the CPU filled at the
 * hardware VM-exit): CPUID 0F A2, RDMSR 0F 32, WRMSR 0F 30, VMCALL 0F 01 C1,
 * VMREAD 0F 78 /r and VMWRITE 0F 79 /r with register operands. The SDM
 * leaves the field undefined for APIC-access and hardware-exception exits;
 * the model gives 0 there.
 */
const INSTRUCTION_LEN: Record<number, bigint> = {
  [EXIT_REASON.CPUID]: 2n,
  [EXIT_REASON.MSR_READ]: 2n,
  [EXIT_REASON.MSR_WRITE]: 2n,
  [EXIT_REASON.VMCALL]: 3n,
  [EXIT_REASON.VMREAD]: 3n,
  [EXIT_REASON.VMWRITE]: 3n,
};

/** Apply one vmcs01 intercept change (vmx_set_intercept_for_msr + vmx_msr_bitmap_l01_changed). */
export function changeVmcs01Intercept(ctx: Ctx, v: Vcpu, msr: number, write: boolean, intercept: boolean): void {
  setBitmapBit(writable(ctx, v, 'vmcs01MsrBitmap'), msr, write, intercept);
  // No check whether a bit really flipped: false positives are accepted.
  v.nested.forceMsrBitmapRecalc = true;
}

/**
 * nested_vmx_vmexit: leave L2, record the exit in vmcs12, back to vmcs01.
 * The sync to the shadow VMCS or eVMCS happens before L1 runs
 * (syncVmcs12ToShadow, called by the reducer after the event).
 */
export function nestedVmxVmexit(ctx: Ctx, w: World, v: Vcpu, reason: number, qual: bigint): Outcome {
  const n = v.nested;
  const ops = ctx.profile.ops;
  n.guestMode = false;
  // the APIC pages: unmapped (kvm-map) or kept (the caches)
  ctx.profile.paths['guest-pages'].nestedVmexit(ctx, w, v);
  ops.sync_vmcs02_to_vmcs12(ctx, w, v, reason, qual);
  // vmcs01 changes L0 made while L2 ran take effect now that vmcs01 is loaded again.
  if (v.pendingL01.length) {
    for (const p of v.pendingL01) ops.vmx_set_intercept_for_msr(ctx, w, v, p.msr, p.write, p.intercept);
    v.pendingL01 = [];
  }
  ops.nested_flush_cached_shadow_vmcs12(ctx, w, v);
  if (w.config.shadowVmcs || evmptrValid(n)) n.needVmcs12ToShadowSync = true;
  ctx.cost.nestedExits++;
  return { k: 'exit', reason, qual };
}

/**
 * The exit information in vmcs12 (KVM: prepare_vmcs12, with
 * sync_vmcs02_to_vmcs12 for the guest state). The event L1 injected at the
 * entry was delivered as part of it, so nothing is left to report in the
 * IDT-vectoring information (vmcs12_save_pending_event finds nothing), and
 * the valid bit of the VM-entry interruption information is cleared, as
 * the SDM says a VM-exit does (27.2.1: "cleared on every VM exit").
 */
export function syncVmcs02ToVmcs12(ctx: Ctx, _w: World, v: Vcpu, reason: number, qual: bigint): void {
  const n = v.nested;
  vmcs12Set(ctx, n, VMCS.VM_EXIT_REASON, BigInt(reason));
  vmcs12Set(ctx, n, VMCS.EXIT_QUALIFICATION, qual);
  vmcs12Set(ctx, n, VMCS.VM_EXIT_INTR_INFO, 0n);
  vmcs12Set(ctx, n, VMCS.IDT_VECTORING_INFO_FIELD, 0n);
  vmcs12Set(ctx, n, VMCS.VM_EXIT_INSTRUCTION_LEN, INSTRUCTION_LEN[reason] ?? 0n);
  const entryInfo = vmcs12Get(n, VMCS.VM_ENTRY_INTR_INFO_FIELD);
  if (entryInfo & BigInt(INTR_INFO.VALID_MASK)) vmcs12Set(ctx, n, VMCS.VM_ENTRY_INTR_INFO_FIELD, entryInfo & ~BigInt(INTR_INFO.VALID_MASK));
}

function writeGuestU32(ctx: Ctx, w: World, gpa: bigint, v: number): boolean {
  return writeGuest(ctx, w, gpa, 4, BigInt(v >>> 0));
}

