/**
 * VMCS field encodings and KVM's vmcs12 field table.
 *
 * The table lists exactly the fields KVM keeps in its software vmcs12
 * (the field-to-offset table of arch/x86/kvm/vmx/vmcs12.c in a tree that has
 * TSC_MULTIPLIER and ENCLS_EXITING_BITMAP but not yet the CET fields). KVM
 * groups that table by width: 16-bit, 64-bit (each with a `_HIGH` half),
 * 32-bit, natural width; the four arrays below keep that order, and the
 * dense storage slot of a field is its position in that order.
 *
 * Encoding layout (Intel SDM, "VMREAD, VMWRITE and encodings of VMCS fields"):
 *   bit 0      access type (1 = high 32 bits of a 64-bit field)
 *   bits 9:1   index
 *   bits 11:10 type: 0 control, 1 VM-exit information (read-only), 2 guest state, 3 host state
 *   bits 14:13 width: 0 16-bit, 1 64-bit, 2 32-bit, 3 natural width
 *   bits 31:15 must be zero for a field to exist
 */
import { EVMCS_FIELD_INFO, EVMCS_MEMBER_BY_NAME } from './evmcs';

export type VmcsWidth = 16 | 32 | 64 | 'natural';
/** Encoding bits 11:10 = 0, 1, 2, 3. */
export type VmcsFieldType = 'control' | 'exit-info' | 'guest' | 'host';

export interface VmcsField {
  /** KVM's name, e.g. 'GUEST_RIP', 'MSR_BITMAP', 'GUEST_PHYSICAL_ADDRESS_HIGH' */
  name: string;
  encoding: number;
  /** a _HIGH half has width 32 (as in KVM's vmcs_field_width) */
  width: VmcsWidth;
  type: VmcsFieldType;
  /** read-only by encoding: ((enc >> 10) & 3) === 1 */
  readOnly: boolean;
  /** the _HIGH half (access-type bit 0 set) of a 64-bit field */
  isHigh: boolean;
  /** encoding of the 64-bit field it belongs to (itself when not a _HIGH half) */
  full: number;
  /** for a 64-bit field, the encoding of its _HIGH half; otherwise null */
  high: number | null;
  /** dense storage slot 0..VMCS12_SLOT_COUNT-1; a _HIGH half shares its full field's slot */
  slot: number;
  /** membership in KVM's vmcs_shadow_fields.h lists */
  shadow: 'ro' | 'rw' | null;
  /** RW shadow fields KVM leaves intercepted when the host lacks this feature */
  shadowNeeds: 'apicv' | 'pml' | 'preemption-timer' | null;
  /**
   * Which hv_clean_fields bit gates copying this field from the eVMCS into
   * vmcs12 in copy_enlightened_to_vmcs12: a bit index 0..15, -1 when the
   * field is copied on every entry (TPR_THRESHOLD, GUEST_RIP: clean field
   * NONE), null when that function never copies it. Never copied are: fields
   * without an eVMCS member; the read-only (VM-exit information) fields, which
   * only flow vmcs12 -> eVMCS although KVM's mapping table tags them NONE; and
   * the MSR-list addresses/counts, page-fault mask/match and CR3-target count,
   * which the mapping table tags ALL and the copy skips. A _HIGH half carries
   * its full field's value (the copy moves the whole 64-bit slot).
   * The raw tag from KVM's mapping table is in `evmcsCleanMask`.
   */
  cleanGroup: number | null;
  /** byte offset of the field in struct hv_enlightened_vmcs (null if none; null for every _HIGH half, which KVM's eVMCS mapping does not list) */
  evmcsOffset: number | null;
  /** byte size of that eVMCS member */
  evmcsSize: 2 | 4 | 8 | null;
  /**
   * copy_vmcs12_to_enlightened writes this field back into the eVMCS when
   * vmcs12 is synced to L1 (a _HIGH half carries its full field's value).
   */
  evmcsSyncOut: boolean;
  /**
   * The clean-field mask KVM's vmcs_field_to_evmcs_1 table gives this field:
   * 0 (NONE), a single bit, or 0xffff (ALL); null when there is no entry.
   */
  evmcsCleanMask: number | null;
}

// ---------------------------------------------------------------------------
// The vmcs12 field table, in KVM's order, grouped by width.
// ---------------------------------------------------------------------------

const FIELDS_16 = [
  ['VIRTUAL_PROCESSOR_ID', 0x0000],
  ['POSTED_INTR_NV', 0x0002],
  ['GUEST_ES_SELECTOR', 0x0800],
  ['GUEST_CS_SELECTOR', 0x0802],
  ['GUEST_SS_SELECTOR', 0x0804],
  ['GUEST_DS_SELECTOR', 0x0806],
  ['GUEST_FS_SELECTOR', 0x0808],
  ['GUEST_GS_SELECTOR', 0x080a],
  ['GUEST_LDTR_SELECTOR', 0x080c],
  ['GUEST_TR_SELECTOR', 0x080e],
  ['GUEST_INTR_STATUS', 0x0810],
  ['GUEST_PML_INDEX', 0x0812],
  ['HOST_ES_SELECTOR', 0x0c00],
  ['HOST_CS_SELECTOR', 0x0c02],
  ['HOST_SS_SELECTOR', 0x0c04],
  ['HOST_DS_SELECTOR', 0x0c06],
  ['HOST_FS_SELECTOR', 0x0c08],
  ['HOST_GS_SELECTOR', 0x0c0a],
  ['HOST_TR_SELECTOR', 0x0c0c],
] as const;

/** 64-bit fields; each also gets a `<name>_HIGH` entry at encoding + 1. */
const FIELDS_64 = [
  ['IO_BITMAP_A', 0x2000],
  ['IO_BITMAP_B', 0x2002],
  ['MSR_BITMAP', 0x2004],
  ['VM_EXIT_MSR_STORE_ADDR', 0x2006],
  ['VM_EXIT_MSR_LOAD_ADDR', 0x2008],
  ['VM_ENTRY_MSR_LOAD_ADDR', 0x200a],
  ['PML_ADDRESS', 0x200e],
  ['TSC_OFFSET', 0x2010],
  ['TSC_MULTIPLIER', 0x2032],
  ['VIRTUAL_APIC_PAGE_ADDR', 0x2012],
  ['APIC_ACCESS_ADDR', 0x2014],
  ['POSTED_INTR_DESC_ADDR', 0x2016],
  ['VM_FUNCTION_CONTROL', 0x2018],
  ['EPT_POINTER', 0x201a],
  ['EOI_EXIT_BITMAP0', 0x201c],
  ['EOI_EXIT_BITMAP1', 0x201e],
  ['EOI_EXIT_BITMAP2', 0x2020],
  ['EOI_EXIT_BITMAP3', 0x2022],
  ['EPTP_LIST_ADDRESS', 0x2024],
  ['VMREAD_BITMAP', 0x2026],
  ['VMWRITE_BITMAP', 0x2028],
  ['XSS_EXIT_BITMAP', 0x202c],
  ['ENCLS_EXITING_BITMAP', 0x202e],
  ['GUEST_PHYSICAL_ADDRESS', 0x2400],
  ['VMCS_LINK_POINTER', 0x2800],
  ['GUEST_IA32_DEBUGCTL', 0x2802],
  ['GUEST_IA32_PAT', 0x2804],
  ['GUEST_IA32_EFER', 0x2806],
  ['GUEST_IA32_PERF_GLOBAL_CTRL', 0x2808],
  ['GUEST_PDPTR0', 0x280a],
  ['GUEST_PDPTR1', 0x280c],
  ['GUEST_PDPTR2', 0x280e],
  ['GUEST_PDPTR3', 0x2810],
  ['GUEST_BNDCFGS', 0x2812],
  ['HOST_IA32_PAT', 0x2c00],
  ['HOST_IA32_EFER', 0x2c02],
  ['HOST_IA32_PERF_GLOBAL_CTRL', 0x2c04],
] as const;

const FIELDS_32 = [
  ['PIN_BASED_VM_EXEC_CONTROL', 0x4000],
  ['CPU_BASED_VM_EXEC_CONTROL', 0x4002],
  ['EXCEPTION_BITMAP', 0x4004],
  ['PAGE_FAULT_ERROR_CODE_MASK', 0x4006],
  ['PAGE_FAULT_ERROR_CODE_MATCH', 0x4008],
  ['CR3_TARGET_COUNT', 0x400a],
  ['VM_EXIT_CONTROLS', 0x400c],
  ['VM_EXIT_MSR_STORE_COUNT', 0x400e],
  ['VM_EXIT_MSR_LOAD_COUNT', 0x4010],
  ['VM_ENTRY_CONTROLS', 0x4012],
  ['VM_ENTRY_MSR_LOAD_COUNT', 0x4014],
  ['VM_ENTRY_INTR_INFO_FIELD', 0x4016],
  ['VM_ENTRY_EXCEPTION_ERROR_CODE', 0x4018],
  ['VM_ENTRY_INSTRUCTION_LEN', 0x401a],
  ['TPR_THRESHOLD', 0x401c],
  ['SECONDARY_VM_EXEC_CONTROL', 0x401e],
  ['VM_INSTRUCTION_ERROR', 0x4400],
  ['VM_EXIT_REASON', 0x4402],
  ['VM_EXIT_INTR_INFO', 0x4404],
  ['VM_EXIT_INTR_ERROR_CODE', 0x4406],
  ['IDT_VECTORING_INFO_FIELD', 0x4408],
  ['IDT_VECTORING_ERROR_CODE', 0x440a],
  ['VM_EXIT_INSTRUCTION_LEN', 0x440c],
  ['VMX_INSTRUCTION_INFO', 0x440e],
  ['GUEST_ES_LIMIT', 0x4800],
  ['GUEST_CS_LIMIT', 0x4802],
  ['GUEST_SS_LIMIT', 0x4804],
  ['GUEST_DS_LIMIT', 0x4806],
  ['GUEST_FS_LIMIT', 0x4808],
  ['GUEST_GS_LIMIT', 0x480a],
  ['GUEST_LDTR_LIMIT', 0x480c],
  ['GUEST_TR_LIMIT', 0x480e],
  ['GUEST_GDTR_LIMIT', 0x4810],
  ['GUEST_IDTR_LIMIT', 0x4812],
  ['GUEST_ES_AR_BYTES', 0x4814],
  ['GUEST_CS_AR_BYTES', 0x4816],
  ['GUEST_SS_AR_BYTES', 0x4818],
  ['GUEST_DS_AR_BYTES', 0x481a],
  ['GUEST_FS_AR_BYTES', 0x481c],
  ['GUEST_GS_AR_BYTES', 0x481e],
  ['GUEST_LDTR_AR_BYTES', 0x4820],
  ['GUEST_TR_AR_BYTES', 0x4822],
  ['GUEST_INTERRUPTIBILITY_INFO', 0x4824],
  ['GUEST_ACTIVITY_STATE', 0x4826],
  ['GUEST_SYSENTER_CS', 0x482a],
  ['HOST_IA32_SYSENTER_CS', 0x4c00],
  ['VMX_PREEMPTION_TIMER_VALUE', 0x482e],
] as const;

const FIELDS_NATURAL = [
  ['CR0_GUEST_HOST_MASK', 0x6000],
  ['CR4_GUEST_HOST_MASK', 0x6002],
  ['CR0_READ_SHADOW', 0x6004],
  ['CR4_READ_SHADOW', 0x6006],
  ['EXIT_QUALIFICATION', 0x6400],
  ['GUEST_LINEAR_ADDRESS', 0x640a],
  ['GUEST_CR0', 0x6800],
  ['GUEST_CR3', 0x6802],
  ['GUEST_CR4', 0x6804],
  ['GUEST_ES_BASE', 0x6806],
  ['GUEST_CS_BASE', 0x6808],
  ['GUEST_SS_BASE', 0x680a],
  ['GUEST_DS_BASE', 0x680c],
  ['GUEST_FS_BASE', 0x680e],
  ['GUEST_GS_BASE', 0x6810],
  ['GUEST_LDTR_BASE', 0x6812],
  ['GUEST_TR_BASE', 0x6814],
  ['GUEST_GDTR_BASE', 0x6816],
  ['GUEST_IDTR_BASE', 0x6818],
  ['GUEST_DR7', 0x681a],
  ['GUEST_RSP', 0x681c],
  ['GUEST_RIP', 0x681e],
  ['GUEST_RFLAGS', 0x6820],
  ['GUEST_PENDING_DBG_EXCEPTIONS', 0x6822],
  ['GUEST_SYSENTER_ESP', 0x6824],
  ['GUEST_SYSENTER_EIP', 0x6826],
  ['HOST_CR0', 0x6c00],
  ['HOST_CR3', 0x6c02],
  ['HOST_CR4', 0x6c04],
  ['HOST_FS_BASE', 0x6c06],
  ['HOST_GS_BASE', 0x6c08],
  ['HOST_TR_BASE', 0x6c0a],
  ['HOST_GDTR_BASE', 0x6c0c],
  ['HOST_IDTR_BASE', 0x6c0e],
  ['HOST_IA32_SYSENTER_ESP', 0x6c10],
  ['HOST_IA32_SYSENTER_EIP', 0x6c12],
  ['HOST_RSP', 0x6c14],
  ['HOST_RIP', 0x6c16],
] as const;

type Name64 = (typeof FIELDS_64)[number][0];
/** Every name in KVM's vmcs12 field table, _HIGH halves included. */
export type VmcsFieldName =
  | (typeof FIELDS_16)[number][0]
  | Name64
  | `${Name64}_HIGH`
  | (typeof FIELDS_32)[number][0]
  | (typeof FIELDS_NATURAL)[number][0];

/**
 * Architectural encodings KVM knows (arch/x86/include/asm/vmx.h) but does not
 * keep in vmcs12: VMREAD/VMWRITE of these fails with
 * VMXERR_UNSUPPORTED_VMCS_COMPONENT in KVM. Used only for names in
 * `vmcsFieldName`; they are not part of VMCS_FIELDS.
 */
export const VMCS_NOT_IN_VMCS12: Readonly<Record<string, number>> = Object.freeze({
  LAST_PID_POINTER_INDEX: 0x0008,
  VE_INFORMATION_ADDRESS: 0x202a,
  VE_INFORMATION_ADDRESS_HIGH: 0x202b,
  TERTIARY_VM_EXEC_CONTROL: 0x2034,
  TERTIARY_VM_EXEC_CONTROL_HIGH: 0x2035,
  SHARED_EPT_POINTER: 0x203c,
  PID_POINTER_TABLE: 0x2042,
  PID_POINTER_TABLE_HIGH: 0x2043,
  GUEST_IA32_RTIT_CTL: 0x2814,
  GUEST_IA32_RTIT_CTL_HIGH: 0x2815,
  PLE_GAP: 0x4020,
  PLE_WINDOW: 0x4022,
  NOTIFY_WINDOW: 0x4024,
  CR3_TARGET_VALUE0: 0x6008,
  CR3_TARGET_VALUE1: 0x600a,
  CR3_TARGET_VALUE2: 0x600c,
  CR3_TARGET_VALUE3: 0x600e,
  // CET state fields (SDM); KVM adds them to vmcs12 only together with nested CET support.
  GUEST_S_CET: 0x6828,
  GUEST_SSP: 0x682a,
  GUEST_INTR_SSP_TABLE: 0x682c,
  HOST_S_CET: 0x6c18,
  HOST_SSP: 0x6c1a,
  HOST_INTR_SSP_TABLE: 0x6c1c,
});

// ---------------------------------------------------------------------------
// Shadow VMCS field lists (vmcs_shadow_fields.h, current upstream two-argument
// form, header order; matches the reference's §4.6 table).
// ---------------------------------------------------------------------------

const SHADOW_RO_NAMES: readonly VmcsFieldName[] = [
  'VM_EXIT_REASON',
  'VM_EXIT_INTR_INFO',
  'VM_EXIT_INSTRUCTION_LEN',
  'IDT_VECTORING_INFO_FIELD',
  'IDT_VECTORING_ERROR_CODE',
  'VM_EXIT_INTR_ERROR_CODE',
  'GUEST_CS_AR_BYTES',
  'GUEST_SS_AR_BYTES',
  'EXIT_QUALIFICATION',
  'GUEST_LINEAR_ADDRESS',
  'GUEST_PHYSICAL_ADDRESS',
  'GUEST_PHYSICAL_ADDRESS_HIGH',
];

const SHADOW_RW_NAMES: readonly VmcsFieldName[] = [
  'GUEST_INTR_STATUS',
  'GUEST_PML_INDEX',
  'HOST_FS_SELECTOR',
  'HOST_GS_SELECTOR',
  'CPU_BASED_VM_EXEC_CONTROL',
  'PIN_BASED_VM_EXEC_CONTROL',
  'EXCEPTION_BITMAP',
  'VM_ENTRY_EXCEPTION_ERROR_CODE',
  'VM_ENTRY_INTR_INFO_FIELD',
  'VM_ENTRY_INSTRUCTION_LEN',
  'TPR_THRESHOLD',
  'GUEST_INTERRUPTIBILITY_INFO',
  'VMX_PREEMPTION_TIMER_VALUE',
  'GUEST_RIP',
  'GUEST_RSP',
  'GUEST_CR0',
  'GUEST_CR3',
  'GUEST_CR4',
  'GUEST_RFLAGS',
  'CR0_GUEST_HOST_MASK',
  'CR0_READ_SHADOW',
  'CR4_READ_SHADOW',
  'HOST_FS_BASE',
  'HOST_GS_BASE',
];

/** RW shadow fields that init_vmcs_shadow_fields skips without the host feature. */
const SHADOW_NEEDS: Readonly<Partial<Record<VmcsFieldName, 'apicv' | 'pml' | 'preemption-timer'>>> = {
  GUEST_INTR_STATUS: 'apicv',
  GUEST_PML_INDEX: 'pml',
  VMX_PREEMPTION_TIMER_VALUE: 'preemption-timer',
};

// ---------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------

const TYPES: readonly VmcsFieldType[] = ['control', 'exit-info', 'guest', 'host'];
const WIDTHS: readonly VmcsWidth[] = [16, 64, 32, 'natural'];

/** Split an encoding into its parts. A _HIGH encoding reports width 32, as KVM does. */
export function decodeVmcsEncoding(encoding: number): { high: boolean; index: number; type: VmcsFieldType; width: VmcsWidth } {
  const high = (encoding & 1) === 1;
  return {
    high,
    index: (encoding >>> 1) & 0x1ff,
    type: TYPES[(encoding >>> 10) & 3],
    width: high ? 32 : WIDTHS[(encoding >>> 13) & 3],
  };
}

/** The VM-exit information class (bits 11:10 == 1), which KVM treats as read-only. */
export function isReadOnlyEncoding(encoding: number): boolean {
  return ((encoding >>> 10) & 3) === 1;
}

// ---------------------------------------------------------------------------
// Build the table once.
// ---------------------------------------------------------------------------

function buildFields(): VmcsField[] {
  const shadowOf = new Map<string, 'ro' | 'rw'>();
  for (const n of SHADOW_RO_NAMES) shadowOf.set(n, 'ro');
  for (const n of SHADOW_RW_NAMES) shadowOf.set(n, 'rw');

  const nameOfFull = (highName: string) => highName.slice(0, -'_HIGH'.length);
  const out: VmcsField[] = [];
  let slot = 0;
  const push = (name: string, encoding: number, full: number, high: number | null, s: number) => {
    const d = decodeVmcsEncoding(encoding);
    const ev = EVMCS_FIELD_INFO.get(d.high ? nameOfFull(name) : name);
    const member = ev && !d.high ? EVMCS_MEMBER_BY_NAME.get(ev.member) : undefined;
    if (ev && !d.high && !member) throw new Error(`eVMCS member ${ev.member} missing`);
    out.push({
      name,
      encoding,
      width: d.width,
      type: d.type,
      readOnly: isReadOnlyEncoding(encoding),
      isHigh: d.high,
      full,
      high,
      slot: s,
      shadow: shadowOf.get(name) ?? null,
      shadowNeeds: SHADOW_NEEDS[name as VmcsFieldName] ?? null,
      cleanGroup: ev ? ev.copyGroup : null,
      evmcsOffset: member ? member.offset : null,
      evmcsSize: member ? (member.size as 2 | 4 | 8) : null,
      evmcsSyncOut: ev ? ev.syncOut : false,
      evmcsCleanMask: ev && !d.high ? ev.cleanMask : null,
    });
  };

  for (const [name, enc] of FIELDS_16) push(name, enc, enc, null, slot++);
  for (const [name, enc] of FIELDS_64) {
    const s = slot++;
    push(name, enc, enc, enc + 1, s);
    push(`${name}_HIGH`, enc + 1, enc, null, s);
  }
  for (const [name, enc] of FIELDS_32) push(name, enc, enc, null, slot++);
  for (const [name, enc] of FIELDS_NATURAL) push(name, enc, enc, null, slot++);
  return out;
}

const FIELDS: readonly VmcsField[] = Object.freeze(buildFields().map((f) => Object.freeze(f)));

/** Every field of KVM's vmcs12 field table, _HIGH halves as their own entries, in table order. */
export const VMCS_FIELDS: readonly VmcsField[] = FIELDS;

/** Number of storage slots (fields that are not _HIGH halves). */
export const VMCS12_SLOT_COUNT: number = FIELDS.filter((f) => !f.isHigh).length;

/** name -> encoding for every vmcs12 field. `VMCS.GUEST_RIP === 0x681e`. */
export const VMCS: { readonly [K in VmcsFieldName]: number } = Object.freeze(
  Object.fromEntries(FIELDS.map((f) => [f.name, f.encoding])) as { [K in VmcsFieldName]: number },
);

/** Lookup by encoding: dense array over the 15-bit encoding space. */
const BY_ENCODING: (VmcsField | undefined)[] = new Array(0x8000).fill(undefined);
for (const f of FIELDS) BY_ENCODING[f.encoding] = f;
const BY_NAME = new Map<string, VmcsField>(FIELDS.map((f) => [f.name, f]));
const OTHER_NAME = new Map<number, string>(Object.entries(VMCS_NOT_IN_VMCS12).map(([n, e]) => [e, n]));

export function vmcsFieldByName(name: string): VmcsField | undefined {
  return BY_NAME.get(name);
}

/** O(1). Undefined for encodings KVM's vmcs12 does not have (including any with bits >= 15 set). */
export function vmcsFieldByEncoding(encoding: number): VmcsField | undefined {
  // the bounds check also rejects negatives, non-integers and NaN (they index nothing)
  return encoding >= 0 && encoding < 0x8000 ? BY_ENCODING[encoding] : undefined;
}

/** KVM's name for an encoding (also for known encodings outside vmcs12), else '0x' + 4+ hex digits. */
export function vmcsFieldName(encoding: number): string {
  const f = vmcsFieldByEncoding(encoding);
  if (f) return f.name;
  const other = OTHER_NAME.get(encoding);
  if (other) return other;
  return Number.isInteger(encoding) && encoding >= 0 ? `0x${encoding.toString(16).padStart(4, '0')}` : String(encoding);
}

/** Shadow RO list in header order (encodings; the _HIGH entry included as in the header). */
export const VMCS_SHADOW_RO_FIELDS: readonly number[] = Object.freeze(SHADOW_RO_NAMES.map((n) => VMCS[n]));
/** Shadow RW list in header order (encodings). */
export const VMCS_SHADOW_RW_FIELDS: readonly number[] = Object.freeze(SHADOW_RW_NAMES.map((n) => VMCS[n]));

/** AR_BYTES fields (0x4814..0x4822): VMWRITE values are masked with VMX_AR_BYTES_MASK. */
export function isArBytesField(encoding: number): boolean {
  return encoding >= 0x4814 && encoding <= 0x4822 && (encoding & 1) === 0;
}

/** Bit 31 of a VMCS region's first dword: the shadow-VMCS indicator (KVM's vmcs_hdr.shadow_vmcs). */
export const VMCS_HDR_SHADOW_VMCS = 0x80000000;

/** KVM masks VMWRITE values of the AR_BYTES fields with this (reserved bits dropped). */
export const VMX_AR_BYTES_MASK = 0x1f0ff as const;
