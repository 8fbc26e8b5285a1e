/**
 * Hyper-V enlightened VMCS (eVMCS, TLFS "Enlightened VMCS") as KVM uses it
 * when it hosts a Hyper-V L1.
 *
 * Layout: struct hv_enlightened_vmcs (include/hyperv/hvgdk.h; older trees
 * arch/x86/include/asm/hyperv-tlfs.h). The struct is packed, so a member's
 * offset is the sum of the sizes of the members before it, explicit padding
 * members included. The whole structure is 1024 bytes.
 *
 * Field mapping: KVM's vmcs_field_to_evmcs_1 (arch/x86/kvm/vmx/hyperv_evmcs.c)
 * pairs each supported VMCS encoding with an eVMCS member and a clean-field
 * tag; copy_enlightened_to_vmcs12 (arch/x86/kvm/vmx/nested.c) decides which
 * members it pulls into vmcs12 under which hv_clean_fields bit.
 */

// ---------------------------------------------------------------------------
// Clean fields
// ---------------------------------------------------------------------------

/** hv_clean_fields bits, by bit index (HV_VMX_ENLIGHTENED_CLEAN_FIELD_<name> = 1 << bit). */
export const EVMCS_CLEAN_GROUPS: readonly { bit: number; name: string }[] = Object.freeze(
  [
    'IO_BITMAP',
    'MSR_BITMAP',
    'CONTROL_GRP2',
    'CONTROL_GRP1',
    'CONTROL_PROC',
    'CONTROL_EVENT',
    'CONTROL_ENTRY',
    'CONTROL_EXCPN',
    'CRDR',
    'CONTROL_XLAT',
    'GUEST_BASIC',
    'GUEST_GRP1',
    'GUEST_GRP2',
    'HOST_POINTER',
    'HOST_GRP1',
    'ENLIGHTENMENTSCONTROL',
  ].map((name, bit) => Object.freeze({ bit, name })),
);

/** HV_VMX_ENLIGHTENED_CLEAN_FIELD_* as masks: NONE 0, single bits, ALL 0xffff. */
export const HV_VMX_ENLIGHTENED_CLEAN_FIELD = Object.freeze({
  NONE: 0,
  IO_BITMAP: 1 << 0,
  MSR_BITMAP: 1 << 1,
  CONTROL_GRP2: 1 << 2,
  CONTROL_GRP1: 1 << 3,
  CONTROL_PROC: 1 << 4,
  CONTROL_EVENT: 1 << 5,
  CONTROL_ENTRY: 1 << 6,
  CONTROL_EXCPN: 1 << 7,
  CRDR: 1 << 8,
  CONTROL_XLAT: 1 << 9,
  GUEST_BASIC: 1 << 10,
  GUEST_GRP1: 1 << 11,
  GUEST_GRP2: 1 << 12,
  HOST_POINTER: 1 << 13,
  HOST_GRP1: 1 << 14,
  ENLIGHTENMENTSCONTROL: 1 << 15,
  ALL: 0xffff,
} as const);

export type CleanFieldName = keyof typeof HV_VMX_ENLIGHTENED_CLEAN_FIELD;

/** Bits of the eVMCS hv_enlightenments_control dword. */
export const HV_ENLIGHTENMENTS_CONTROL = Object.freeze({ NESTED_FLUSH_HYPERCALL: 1, MSR_BITMAP: 2 } as const);

// ---------------------------------------------------------------------------
// struct hv_enlightened_vmcs layout: [member, element size, element count]
// ---------------------------------------------------------------------------

const LAYOUT: readonly (readonly [string, 2 | 4 | 8, number])[] = [
  ['revision_id', 4, 1],
  ['abort', 4, 1],
  ['host_es_selector', 2, 1],
  ['host_cs_selector', 2, 1],
  ['host_ss_selector', 2, 1],
  ['host_ds_selector', 2, 1],
  ['host_fs_selector', 2, 1],
  ['host_gs_selector', 2, 1],
  ['host_tr_selector', 2, 1],
  ['padding16_1', 2, 1],
  ['host_ia32_pat', 8, 1],
  ['host_ia32_efer', 8, 1],
  ['host_cr0', 8, 1],
  ['host_cr3', 8, 1],
  ['host_cr4', 8, 1],
  ['host_ia32_sysenter_esp', 8, 1],
  ['host_ia32_sysenter_eip', 8, 1],
  ['host_rip', 8, 1],
  ['host_ia32_sysenter_cs', 4, 1],
  ['pin_based_vm_exec_control', 4, 1],
  ['vm_exit_controls', 4, 1],
  ['secondary_vm_exec_control', 4, 1],
  ['io_bitmap_a', 8, 1],
  ['io_bitmap_b', 8, 1],
  ['msr_bitmap', 8, 1],
  ['guest_es_selector', 2, 1],
  ['guest_cs_selector', 2, 1],
  ['guest_ss_selector', 2, 1],
  ['guest_ds_selector', 2, 1],
  ['guest_fs_selector', 2, 1],
  ['guest_gs_selector', 2, 1],
  ['guest_ldtr_selector', 2, 1],
  ['guest_tr_selector', 2, 1],
  ['guest_es_limit', 4, 1],
  ['guest_cs_limit', 4, 1],
  ['guest_ss_limit', 4, 1],
  ['guest_ds_limit', 4, 1],
  ['guest_fs_limit', 4, 1],
  ['guest_gs_limit', 4, 1],
  ['guest_ldtr_limit', 4, 1],
  ['guest_tr_limit', 4, 1],
  ['guest_gdtr_limit', 4, 1],
  ['guest_idtr_limit', 4, 1],
  ['guest_es_ar_bytes', 4, 1],
  ['guest_cs_ar_bytes', 4, 1],
  ['guest_ss_ar_bytes', 4, 1],
  ['guest_ds_ar_bytes', 4, 1],
  ['guest_fs_ar_bytes', 4, 1],
  ['guest_gs_ar_bytes', 4, 1],
  ['guest_ldtr_ar_bytes', 4, 1],
  ['guest_tr_ar_bytes', 4, 1],
  ['guest_es_base', 8, 1],
  ['guest_cs_base', 8, 1],
  ['guest_ss_base', 8, 1],
  ['guest_ds_base', 8, 1],
  ['guest_fs_base', 8, 1],
  ['guest_gs_base', 8, 1],
  ['guest_ldtr_base', 8, 1],
  ['guest_tr_base', 8, 1],
  ['guest_gdtr_base', 8, 1],
  ['guest_idtr_base', 8, 1],
  ['padding64_1', 8, 3],
  ['vm_exit_msr_store_addr', 8, 1],
  ['vm_exit_msr_load_addr', 8, 1],
  ['vm_entry_msr_load_addr', 8, 1],
  ['cr3_target_value0', 8, 1],
  ['cr3_target_value1', 8, 1],
  ['cr3_target_value2', 8, 1],
  ['cr3_target_value3', 8, 1],
  ['page_fault_error_code_mask', 4, 1],
  ['page_fault_error_code_match', 4, 1],
  ['cr3_target_count', 4, 1],
  ['vm_exit_msr_store_count', 4, 1],
  ['vm_exit_msr_load_count', 4, 1],
  ['vm_entry_msr_load_count', 4, 1],
  ['tsc_offset', 8, 1],
  ['virtual_apic_page_addr', 8, 1],
  ['vmcs_link_pointer', 8, 1],
  ['guest_ia32_debugctl', 8, 1],
  ['guest_ia32_pat', 8, 1],
  ['guest_ia32_efer', 8, 1],
  ['guest_pdptr0', 8, 1],
  ['guest_pdptr1', 8, 1],
  ['guest_pdptr2', 8, 1],
  ['guest_pdptr3', 8, 1],
  ['guest_pending_dbg_exceptions', 8, 1],
  ['guest_sysenter_esp', 8, 1],
  ['guest_sysenter_eip', 8, 1],
  ['guest_activity_state', 4, 1],
  ['guest_sysenter_cs', 4, 1],
  ['cr0_guest_host_mask', 8, 1],
  ['cr4_guest_host_mask', 8, 1],
  ['cr0_read_shadow', 8, 1],
  ['cr4_read_shadow', 8, 1],
  ['guest_cr0', 8, 1],
  ['guest_cr3', 8, 1],
  ['guest_cr4', 8, 1],
  ['guest_dr7', 8, 1],
  ['host_fs_base', 8, 1],
  ['host_gs_base', 8, 1],
  ['host_tr_base', 8, 1],
  ['host_gdtr_base', 8, 1],
  ['host_idtr_base', 8, 1],
  ['host_rsp', 8, 1],
  ['ept_pointer', 8, 1],
  ['virtual_processor_id', 2, 1],
  ['padding16_2', 2, 3],
  ['padding64_2', 8, 5],
  ['guest_physical_address', 8, 1],
  ['vm_instruction_error', 4, 1],
  ['vm_exit_reason', 4, 1],
  ['vm_exit_intr_info', 4, 1],
  ['vm_exit_intr_error_code', 4, 1],
  ['idt_vectoring_info_field', 4, 1],
  ['idt_vectoring_error_code', 4, 1],
  ['vm_exit_instruction_len', 4, 1],
  ['vmx_instruction_info', 4, 1],
  ['exit_qualification', 8, 1],
  ['exit_io_instruction_ecx', 8, 1],
  ['exit_io_instruction_esi', 8, 1],
  ['exit_io_instruction_edi', 8, 1],
  ['exit_io_instruction_eip', 8, 1],
  ['guest_linear_address', 8, 1],
  ['guest_rsp', 8, 1],
  ['guest_rflags', 8, 1],
  ['guest_interruptibility_info', 4, 1],
  ['cpu_based_vm_exec_control', 4, 1],
  ['exception_bitmap', 4, 1],
  ['vm_entry_controls', 4, 1],
  ['vm_entry_intr_info_field', 4, 1],
  ['vm_entry_exception_error_code', 4, 1],
  ['vm_entry_instruction_len', 4, 1],
  ['tpr_threshold', 4, 1],
  ['guest_rip', 8, 1],
  ['hv_clean_fields', 4, 1],
  ['padding32_1', 4, 1],
  ['hv_synthetic_controls', 4, 1],
  ['hv_enlightenments_control', 4, 1], // 32-bit bitfield: bit 0 nested_flush_hypercall, bit 1 msr_bitmap
  ['hv_vp_id', 4, 1],
  ['padding32_2', 4, 1],
  ['hv_vm_id', 8, 1],
  ['partition_assist_page', 8, 1],
  ['padding64_4', 8, 4],
  ['guest_bndcfgs', 8, 1],
  ['guest_ia32_perf_global_ctrl', 8, 1],
  ['guest_ia32_s_cet', 8, 1],
  ['guest_ssp', 8, 1],
  ['guest_ia32_int_ssp_table_addr', 8, 1],
  ['guest_ia32_lbr_ctl', 8, 1],
  ['padding64_5', 8, 2],
  ['xss_exit_bitmap', 8, 1],
  ['encls_exiting_bitmap', 8, 1],
  ['host_ia32_perf_global_ctrl', 8, 1],
  ['tsc_multiplier', 8, 1],
  ['host_ia32_s_cet', 8, 1],
  ['host_ssp', 8, 1],
  ['host_ia32_int_ssp_table_addr', 8, 1],
  ['padding64_6', 8, 1],
];

export interface EvmcsMember {
  /** member name in struct hv_enlightened_vmcs */
  name: string;
  /** byte offset */
  offset: number;
  /** total byte size (element size x count for the padding arrays) */
  size: number;
  /** size of one element */
  elemSize: 2 | 4 | 8;
  /** element count (1 except for padding arrays) */
  count: number;
}

function buildLayout(): EvmcsMember[] {
  let offset = 0;
  return LAYOUT.map(([name, elemSize, count]) => {
    const m = Object.freeze({ name, offset, size: elemSize * count, elemSize, count });
    offset += m.size;
    return m;
  });
}

/** Every member of struct hv_enlightened_vmcs in declaration order, with byte offsets. */
export const EVMCS_MEMBERS: readonly EvmcsMember[] = Object.freeze(buildLayout());
export const EVMCS_MEMBER_BY_NAME: ReadonlyMap<string, EvmcsMember> = new Map(EVMCS_MEMBERS.map((m) => [m.name, m]));

function off(name: string): number {
  const m = EVMCS_MEMBER_BY_NAME.get(name);
  if (!m) throw new Error(`no eVMCS member ${name}`);
  return m.offset;
}

const last = EVMCS_MEMBERS[EVMCS_MEMBERS.length - 1];

/** Byte offsets of the eVMCS members that are not VMCS fields, and the structure size. */
export const EVMCS = Object.freeze({
  REVISION_ID_OFFSET: off('revision_id'),
  ABORT_OFFSET: off('abort'),
  HV_CLEAN_FIELDS_OFFSET: off('hv_clean_fields'),
  HV_SYNTHETIC_CONTROLS_OFFSET: off('hv_synthetic_controls'),
  HV_ENLIGHTENMENTS_CONTROL_OFFSET: off('hv_enlightenments_control'),
  HV_VP_ID_OFFSET: off('hv_vp_id'),
  HV_VM_ID_OFFSET: off('hv_vm_id'),
  PARTITION_ASSIST_PAGE_OFFSET: off('partition_assist_page'),
  SIZE: last.offset + last.size,
});

/** Byte offset of an eVMCS member by name (throws on an unknown name). */
export function evmcsMemberOffset(name: string): number {
  return off(name);
}

// ---------------------------------------------------------------------------
// VMCS field -> (eVMCS member, clean tag), and the copy_enlightened_to_vmcs12 gating
// ---------------------------------------------------------------------------

/**
 * KVM's eVMCS mapping table: vmcs12 field name -> clean-field tag. The eVMCS
 * member is the field name in lower case for every entry. Grouped as in KVM
 * (64-bit RW, 64-bit RO, 32-bit RW, 32-bit RO, 16-bit RW).
 */
const EVMCS_MAP: readonly (readonly [string, CleanFieldName])[] = [
  ['GUEST_RIP', 'NONE'],
  ['GUEST_RSP', 'GUEST_BASIC'],
  ['GUEST_RFLAGS', 'GUEST_BASIC'],
  ['HOST_IA32_PAT', 'HOST_GRP1'],
  ['HOST_IA32_EFER', 'HOST_GRP1'],
  ['HOST_IA32_PERF_GLOBAL_CTRL', 'HOST_GRP1'],
  ['HOST_CR0', 'HOST_GRP1'],
  ['HOST_CR3', 'HOST_GRP1'],
  ['HOST_CR4', 'HOST_GRP1'],
  ['HOST_IA32_SYSENTER_ESP', 'HOST_GRP1'],
  ['HOST_IA32_SYSENTER_EIP', 'HOST_GRP1'],
  ['HOST_RIP', 'HOST_GRP1'],
  ['IO_BITMAP_A', 'IO_BITMAP'],
  ['IO_BITMAP_B', 'IO_BITMAP'],
  ['MSR_BITMAP', 'MSR_BITMAP'],
  ['GUEST_ES_BASE', 'GUEST_GRP2'],
  ['GUEST_CS_BASE', 'GUEST_GRP2'],
  ['GUEST_SS_BASE', 'GUEST_GRP2'],
  ['GUEST_DS_BASE', 'GUEST_GRP2'],
  ['GUEST_FS_BASE', 'GUEST_GRP2'],
  ['GUEST_GS_BASE', 'GUEST_GRP2'],
  ['GUEST_LDTR_BASE', 'GUEST_GRP2'],
  ['GUEST_TR_BASE', 'GUEST_GRP2'],
  ['GUEST_GDTR_BASE', 'GUEST_GRP2'],
  ['GUEST_IDTR_BASE', 'GUEST_GRP2'],
  ['TSC_OFFSET', 'CONTROL_GRP2'],
  ['VIRTUAL_APIC_PAGE_ADDR', 'CONTROL_GRP2'],
  ['VMCS_LINK_POINTER', 'GUEST_GRP1'],
  ['GUEST_IA32_DEBUGCTL', 'GUEST_GRP1'],
  ['GUEST_IA32_PAT', 'GUEST_GRP1'],
  ['GUEST_IA32_EFER', 'GUEST_GRP1'],
  ['GUEST_IA32_PERF_GLOBAL_CTRL', 'GUEST_GRP1'],
  ['GUEST_PDPTR0', 'GUEST_GRP1'],
  ['GUEST_PDPTR1', 'GUEST_GRP1'],
  ['GUEST_PDPTR2', 'GUEST_GRP1'],
  ['GUEST_PDPTR3', 'GUEST_GRP1'],
  ['GUEST_PENDING_DBG_EXCEPTIONS', 'GUEST_GRP1'],
  ['GUEST_SYSENTER_ESP', 'GUEST_GRP1'],
  ['GUEST_SYSENTER_EIP', 'GUEST_GRP1'],
  ['CR0_GUEST_HOST_MASK', 'CRDR'],
  ['CR4_GUEST_HOST_MASK', 'CRDR'],
  ['CR0_READ_SHADOW', 'CRDR'],
  ['CR4_READ_SHADOW', 'CRDR'],
  ['GUEST_CR0', 'CRDR'],
  ['GUEST_CR3', 'CRDR'],
  ['GUEST_CR4', 'CRDR'],
  ['GUEST_DR7', 'CRDR'],
  ['HOST_FS_BASE', 'HOST_POINTER'],
  ['HOST_GS_BASE', 'HOST_POINTER'],
  ['HOST_TR_BASE', 'HOST_POINTER'],
  ['HOST_GDTR_BASE', 'HOST_POINTER'],
  ['HOST_IDTR_BASE', 'HOST_POINTER'],
  ['HOST_RSP', 'HOST_POINTER'],
  ['EPT_POINTER', 'CONTROL_XLAT'],
  ['GUEST_BNDCFGS', 'GUEST_GRP1'],
  ['XSS_EXIT_BITMAP', 'CONTROL_GRP2'],
  ['ENCLS_EXITING_BITMAP', 'CONTROL_GRP2'],
  ['TSC_MULTIPLIER', 'CONTROL_GRP2'],
  // 64-bit read-only
  ['GUEST_PHYSICAL_ADDRESS', 'NONE'],
  ['EXIT_QUALIFICATION', 'NONE'],
  ['GUEST_LINEAR_ADDRESS', 'NONE'],
  // no clean group defined by the TLFS: KVM tags them ALL
  ['VM_EXIT_MSR_STORE_ADDR', 'ALL'],
  ['VM_EXIT_MSR_LOAD_ADDR', 'ALL'],
  ['VM_ENTRY_MSR_LOAD_ADDR', 'ALL'],
  // 32-bit RW
  ['TPR_THRESHOLD', 'NONE'],
  ['GUEST_INTERRUPTIBILITY_INFO', 'GUEST_BASIC'],
  ['CPU_BASED_VM_EXEC_CONTROL', 'CONTROL_PROC'],
  ['EXCEPTION_BITMAP', 'CONTROL_EXCPN'],
  ['VM_ENTRY_CONTROLS', 'CONTROL_ENTRY'],
  ['VM_ENTRY_INTR_INFO_FIELD', 'CONTROL_EVENT'],
  ['VM_ENTRY_EXCEPTION_ERROR_CODE', 'CONTROL_EVENT'],
  ['VM_ENTRY_INSTRUCTION_LEN', 'CONTROL_EVENT'],
  ['HOST_IA32_SYSENTER_CS', 'HOST_GRP1'],
  ['PIN_BASED_VM_EXEC_CONTROL', 'CONTROL_GRP1'],
  ['VM_EXIT_CONTROLS', 'CONTROL_GRP1'],
  ['SECONDARY_VM_EXEC_CONTROL', 'CONTROL_GRP1'],
  ['GUEST_ES_LIMIT', 'GUEST_GRP2'],
  ['GUEST_CS_LIMIT', 'GUEST_GRP2'],
  ['GUEST_SS_LIMIT', 'GUEST_GRP2'],
  ['GUEST_DS_LIMIT', 'GUEST_GRP2'],
  ['GUEST_FS_LIMIT', 'GUEST_GRP2'],
  ['GUEST_GS_LIMIT', 'GUEST_GRP2'],
  ['GUEST_LDTR_LIMIT', 'GUEST_GRP2'],
  ['GUEST_TR_LIMIT', 'GUEST_GRP2'],
  ['GUEST_GDTR_LIMIT', 'GUEST_GRP2'],
  ['GUEST_IDTR_LIMIT', 'GUEST_GRP2'],
  ['GUEST_ES_AR_BYTES', 'GUEST_GRP2'],
  ['GUEST_CS_AR_BYTES', 'GUEST_GRP2'],
  ['GUEST_SS_AR_BYTES', 'GUEST_GRP2'],
  ['GUEST_DS_AR_BYTES', 'GUEST_GRP2'],
  ['GUEST_FS_AR_BYTES', 'GUEST_GRP2'],
  ['GUEST_GS_AR_BYTES', 'GUEST_GRP2'],
  ['GUEST_LDTR_AR_BYTES', 'GUEST_GRP2'],
  ['GUEST_TR_AR_BYTES', 'GUEST_GRP2'],
  ['GUEST_ACTIVITY_STATE', 'GUEST_GRP1'],
  ['GUEST_SYSENTER_CS', 'GUEST_GRP1'],
  // 32-bit read-only
  ['VM_INSTRUCTION_ERROR', 'NONE'],
  ['VM_EXIT_REASON', 'NONE'],
  ['VM_EXIT_INTR_INFO', 'NONE'],
  ['VM_EXIT_INTR_ERROR_CODE', 'NONE'],
  ['IDT_VECTORING_INFO_FIELD', 'NONE'],
  ['IDT_VECTORING_ERROR_CODE', 'NONE'],
  ['VM_EXIT_INSTRUCTION_LEN', 'NONE'],
  ['VMX_INSTRUCTION_INFO', 'NONE'],
  // 32-bit, no clean group defined (not used by Hyper-V)
  ['PAGE_FAULT_ERROR_CODE_MASK', 'ALL'],
  ['PAGE_FAULT_ERROR_CODE_MATCH', 'ALL'],
  ['CR3_TARGET_COUNT', 'ALL'],
  ['VM_EXIT_MSR_STORE_COUNT', 'ALL'],
  ['VM_EXIT_MSR_LOAD_COUNT', 'ALL'],
  ['VM_ENTRY_MSR_LOAD_COUNT', 'ALL'],
  // 16-bit RW
  ['HOST_ES_SELECTOR', 'HOST_GRP1'],
  ['HOST_CS_SELECTOR', 'HOST_GRP1'],
  ['HOST_SS_SELECTOR', 'HOST_GRP1'],
  ['HOST_DS_SELECTOR', 'HOST_GRP1'],
  ['HOST_FS_SELECTOR', 'HOST_GRP1'],
  ['HOST_GS_SELECTOR', 'HOST_GRP1'],
  ['HOST_TR_SELECTOR', 'HOST_GRP1'],
  ['GUEST_ES_SELECTOR', 'GUEST_GRP2'],
  ['GUEST_CS_SELECTOR', 'GUEST_GRP2'],
  ['GUEST_SS_SELECTOR', 'GUEST_GRP2'],
  ['GUEST_DS_SELECTOR', 'GUEST_GRP2'],
  ['GUEST_FS_SELECTOR', 'GUEST_GRP2'],
  ['GUEST_GS_SELECTOR', 'GUEST_GRP2'],
  ['GUEST_LDTR_SELECTOR', 'GUEST_GRP2'],
  ['GUEST_TR_SELECTOR', 'GUEST_GRP2'],
  ['VIRTUAL_PROCESSOR_ID', 'CONTROL_XLAT'],
];

/**
 * The only NONE-tagged fields copy_enlightened_to_vmcs12 reads on every
 * entry; the other NONE-tagged fields are VM-exit information, which KVM
 * only writes to the eVMCS.
 */
const ALWAYS_COPIED: ReadonlySet<string> = new Set(['TPR_THRESHOLD', 'GUEST_RIP']);

/**
 * The fields copy_vmcs12_to_enlightened writes from vmcs12 into the eVMCS
 * when vmcs12 is synced back to L1 (after a nested VM-exit or a VMfail):
 * guest state except DEBUGCTL, PERF_GLOBAL_CTRL and the VMCS-link pointer,
 * all VM-exit information, and the controls KVM may change on a VM-exit
 * (primary controls, VM-entry controls and event-injection fields).
 */
const SYNC_OUT: ReadonlySet<string> = new Set([
  'GUEST_ES_SELECTOR', 'GUEST_CS_SELECTOR', 'GUEST_SS_SELECTOR', 'GUEST_DS_SELECTOR',
  'GUEST_FS_SELECTOR', 'GUEST_GS_SELECTOR', 'GUEST_LDTR_SELECTOR', 'GUEST_TR_SELECTOR',
  'GUEST_ES_LIMIT', 'GUEST_CS_LIMIT', 'GUEST_SS_LIMIT', 'GUEST_DS_LIMIT', 'GUEST_FS_LIMIT',
  'GUEST_GS_LIMIT', 'GUEST_LDTR_LIMIT', 'GUEST_TR_LIMIT', 'GUEST_GDTR_LIMIT', 'GUEST_IDTR_LIMIT',
  'GUEST_ES_AR_BYTES', 'GUEST_CS_AR_BYTES', 'GUEST_SS_AR_BYTES', 'GUEST_DS_AR_BYTES',
  'GUEST_FS_AR_BYTES', 'GUEST_GS_AR_BYTES', 'GUEST_LDTR_AR_BYTES', 'GUEST_TR_AR_BYTES',
  'GUEST_ES_BASE', 'GUEST_CS_BASE', 'GUEST_SS_BASE', 'GUEST_DS_BASE', 'GUEST_FS_BASE',
  'GUEST_GS_BASE', 'GUEST_LDTR_BASE', 'GUEST_TR_BASE', 'GUEST_GDTR_BASE', 'GUEST_IDTR_BASE',
  'GUEST_IA32_PAT', 'GUEST_IA32_EFER',
  'GUEST_PDPTR0', 'GUEST_PDPTR1', 'GUEST_PDPTR2', 'GUEST_PDPTR3',
  'GUEST_PENDING_DBG_EXCEPTIONS', 'GUEST_SYSENTER_ESP', 'GUEST_SYSENTER_EIP',
  'GUEST_ACTIVITY_STATE', 'GUEST_SYSENTER_CS',
  'GUEST_CR0', 'GUEST_CR3', 'GUEST_CR4', 'GUEST_DR7',
  'GUEST_PHYSICAL_ADDRESS',
  'VM_INSTRUCTION_ERROR', 'VM_EXIT_REASON', 'VM_EXIT_INTR_INFO', 'VM_EXIT_INTR_ERROR_CODE',
  'IDT_VECTORING_INFO_FIELD', 'IDT_VECTORING_ERROR_CODE', 'VM_EXIT_INSTRUCTION_LEN', 'VMX_INSTRUCTION_INFO',
  'EXIT_QUALIFICATION', 'GUEST_LINEAR_ADDRESS',
  'GUEST_RSP', 'GUEST_RFLAGS', 'GUEST_INTERRUPTIBILITY_INFO',
  'CPU_BASED_VM_EXEC_CONTROL', 'VM_ENTRY_CONTROLS',
  'VM_ENTRY_INTR_INFO_FIELD', 'VM_ENTRY_EXCEPTION_ERROR_CODE', 'VM_ENTRY_INSTRUCTION_LEN',
  'GUEST_RIP', 'GUEST_BNDCFGS',
]);

export interface EvmcsFieldInfo {
  /** eVMCS member name */
  member: string;
  /** the mask from KVM's table: 0 NONE, one bit, or 0xffff ALL */
  cleanMask: number;
  /** hv_clean_fields bit gating the copy into vmcs12, -1 always copied, null never copied */
  copyGroup: number | null;
  /** copy_vmcs12_to_enlightened writes it back to the eVMCS */
  syncOut: boolean;
}

function buildFieldInfo(): Map<string, EvmcsFieldInfo> {
  const m = new Map<string, EvmcsFieldInfo>();
  for (const [field, tag] of EVMCS_MAP) {
    const cleanMask: number = HV_VMX_ENLIGHTENED_CLEAN_FIELD[tag];
    let copyGroup: number | null;
    if (tag === 'NONE') copyGroup = ALWAYS_COPIED.has(field) ? -1 : null;
    else if (tag === 'ALL') copyGroup = null;
    else copyGroup = 31 - Math.clz32(cleanMask);
    m.set(field, Object.freeze({ member: field.toLowerCase(), cleanMask, copyGroup, syncOut: SYNC_OUT.has(field) }));
  }
  for (const f of SYNC_OUT) if (!m.has(f)) throw new Error(`sync-out field ${f} has no eVMCS member`);
  return m;
}

/** vmcs12 field name -> eVMCS mapping (only fields KVM maps). */
export const EVMCS_FIELD_INFO: ReadonlyMap<string, EvmcsFieldInfo> = buildFieldInfo();

// ---------------------------------------------------------------------------
// Versions, CPUID, misc constants
// ---------------------------------------------------------------------------

/** eVMCS version KVM implements; the eVMCS revision_id must be this or VMCS12_REVISION. */
export const KVM_EVMCS_VERSION = 1 as const;
/** KVM's vmcs12 revision identifier (also accepted as an eVMCS revision_id, a Hyper-V quirk). */
export const VMCS12_REVISION = 0x11e57ed0 as const;
/** Size of KVM's vmcs12 region. */
export const VMCS12_SIZE = 0x1000 as const;

export const HYPERV_CPUID_ENLIGHTMENT_INFO = 0x40000004 as const;
/** HYPERV_CPUID_ENLIGHTMENT_INFO.EAX bit 14 */
export const HV_X64_ENLIGHTENED_VMCS_RECOMMENDED = 1 << 14;
export const HYPERV_CPUID_NESTED_FEATURES = 0x4000000a as const;
/** HYPERV_CPUID_NESTED_FEATURES.EAX bits */
export const HV_X64_NESTED_DIRECT_FLUSH = 1 << 17;
export const HV_X64_NESTED_GUEST_MAPPING_FLUSH = 1 << 18;
export const HV_X64_NESTED_MSR_BITMAP = 1 << 19;
export const HV_X64_NESTED_ENLIGHTENED_TLB = 1 << 22;
/** HYPERV_CPUID_NESTED_FEATURES.EAX[15:0] KVM reports: (KVM_EVMCS_VERSION << 8) | 1 */
export const KVM_NESTED_FEATURES_EVMCS_VERSIONS = (KVM_EVMCS_VERSION << 8) | 1;

/** Hyper-V's synthetic exit reason for "trap after flush" (bit 28 abused, see TLFS). */
export const HV_VMX_SYNTHETIC_EXIT_REASON_TRAP_AFTER_FLUSH = 0x10000031 as const;

/** All-ones GPA: "no VMCS", invalid VMCS-link pointer. */
export const INVALID_GPA: bigint = 0xffffffffffffffffn;
/** KVM's hv_evmcs_vmptr sentinels. */
export const EVMPTR_INVALID: bigint = 0xffffffffffffffffn;
export const EVMPTR_MAP_PENDING: bigint = 0xfffffffffffffffen;
