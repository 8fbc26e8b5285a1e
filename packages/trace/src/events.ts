/**
 * The event model: every input L1, L2 and the host can give L0.
 *
 * One table, EVENT_SCHEMA, is the single source of truth. The TypeScript
 * types, the validator, the binary tuple codec and the text form are all
 * derived from it, so adding an event kind is one line here (plus its
 * handler in the emulator). Codes are part of the binary format: never
 * reuse or renumber one; add new kinds with new codes.
 */
import type { Outcome } from './outcome';

/**
 * Field types. Numbers are plain JS numbers (all < 2^32); `u64` is a bigint
 * end to end so a value like 0xffffffff81000000 stays exact.
 */
export type FieldType =
  | 'vcpu' // vCPU index, < config.vcpus
  | 'cpu' // physical CPU index, < config.pcpus
  | 'u8'
  | 'u16'
  | 'u32'
  | 'u64'
  | 'bool'
  | 'cpl' // 0..3
  | 'field' // VMCS field encoding (32-bit); text form uses the symbolic name
  | 'msr' // MSR index (32-bit); text form uses the symbolic name
  | 'access' // 'read' | 'write'
  | 'size'; // 1, 2, 4 or 8 (bytes)

export type FieldDef = readonly [name: string, type: FieldType];

export interface KindDef {
  readonly code: number;
  readonly fields: readonly FieldDef[];
  readonly doc: string;
}

export const EVENT_SCHEMA = {
  // ---- L1 (the nested hypervisor), executing in VMX root operation ----
  'l1.vmxon': { code: 1, fields: [['vcpu', 'vcpu'], ['gpa', 'u64']], doc: 'VMXON with the VMXON region at gpa' },
  'l1.vmxoff': { code: 2, fields: [['vcpu', 'vcpu']], doc: 'VMXOFF' },
  'l1.vmptrld': { code: 3, fields: [['vcpu', 'vcpu'], ['gpa', 'u64']], doc: 'VMPTRLD: make the vmcs12 at gpa current' },
  'l1.vmclear': { code: 4, fields: [['vcpu', 'vcpu'], ['gpa', 'u64']], doc: 'VMCLEAR the vmcs12 at gpa' },
  'l1.vmptrst': { code: 5, fields: [['vcpu', 'vcpu']], doc: 'VMPTRST: read the current-VMCS pointer' },
  'l1.vmread': { code: 6, fields: [['vcpu', 'vcpu'], ['field', 'field']], doc: 'VMREAD of a VMCS field' },
  'l1.vmwrite': { code: 7, fields: [['vcpu', 'vcpu'], ['field', 'field'], ['value', 'u64']], doc: 'VMWRITE of a VMCS field' },
  'l1.vmcs-ctls-must-be-1': {
    code: 122,
    fields: [['vcpu', 'vcpu']],
    doc: "L1 sets the bits the capability MSRs require (IA32_VMX_TRUE_{PINBASED,PROCBASED,EXIT,ENTRY}_CTLS, allowed-0 half) in the pin-based, primary processor-based, VM-exit and VM-entry controls of the current VMCS, keeping the bits set: VMREAD, OR, VMWRITE of each, as kvm-unit-tests' init_vmcs_ctrl; outcome that of the first VMREAD or VMWRITE that fails, else ok",
  },
  'l1.vmlaunch': { code: 8, fields: [['vcpu', 'vcpu']], doc: 'VMLAUNCH' },
  'l1.vmresume': { code: 9, fields: [['vcpu', 'vcpu']], doc: 'VMRESUME' },
  'l1.rdmsr': { code: 10, fields: [['vcpu', 'vcpu'], ['msr', 'msr']], doc: 'RDMSR in L1' },
  'l1.wrmsr': { code: 11, fields: [['vcpu', 'vcpu'], ['msr', 'msr'], ['value', 'u64']], doc: 'WRMSR in L1' },
  'l1.cpuid': { code: 12, fields: [['vcpu', 'vcpu'], ['leaf', 'u32'], ['subleaf', 'u32'], ['cpl', 'cpl']], doc: 'CPUID in L1 at the given CPL' },
  'l1.write': { code: 13, fields: [['vcpu', 'vcpu'], ['gpa', 'u64'], ['size', 'size'], ['value', 'u64']], doc: 'L1 stores to its own memory (little-endian)' },
  'l1.read': { code: 14, fields: [['vcpu', 'vcpu'], ['gpa', 'u64'], ['size', 'size']], doc: 'L1 loads from its own memory' },
  'l1.msr-bitmap': {
    code: 15,
    fields: [['vcpu', 'vcpu'], ['gpa', 'u64'], ['msr', 'msr'], ['access', 'access'], ['intercept', 'bool']],
    doc: "L1 sets or clears one MSR's intercept bit in the MSR-bitmap page at gpa (a read-modify-write of that byte)",
  },
  'l1.evmcs-ptr': {
    code: 16,
    fields: [['vcpu', 'vcpu'], ['gpa', 'u64']],
    doc: "L1 names its enlightened VMCS in its VP assist page (current_nested_vmcs, enlighten_vmentry); all-ones stops using one",
  },
  'l1.evmcs-write': {
    code: 17,
    fields: [['vcpu', 'vcpu'], ['gpa', 'u64'], ['field', 'field'], ['value', 'u64']],
    doc: "L1 stores a VMCS field's eVMCS member in the eVMCS page at gpa",
  },
  'l1.evmcs-ctls-must-be-1': {
    code: 123,
    fields: [['vcpu', 'vcpu'], ['gpa', 'u64']],
    doc: "l1.vmcs-ctls-must-be-1 for an L1 that uses an enlightened VMCS: the must-be-1 bits (as its RDMSR of IA32_VMX_TRUE_{PINBASED,PROCBASED,EXIT,ENTRY}_CTLS shows them) ORed into the four control members of the eVMCS page at gpa, a load and a store of each; clean fields untouched; outcome ignored when no memslot backs the page",
  },
  'l1.evmcs-clean': { code: 18, fields: [['vcpu', 'vcpu'], ['gpa', 'u64'], ['value', 'u32']], doc: 'L1 stores hv_clean_fields of the eVMCS at gpa' },
  'l1.evmcs-control': {
    code: 19,
    fields: [['vcpu', 'vcpu'], ['gpa', 'u64'], ['value', 'u32']],
    doc: 'L1 stores hv_enlightenments_control of the eVMCS at gpa',
  },

  // ---- L2 (the nested guest), running on vmcs02 ----
  'l2.rdmsr': { code: 20, fields: [['vcpu', 'vcpu'], ['msr', 'msr']], doc: 'RDMSR in L2' },
  'l2.wrmsr': { code: 21, fields: [['vcpu', 'vcpu'], ['msr', 'msr'], ['value', 'u64']], doc: 'WRMSR in L2' },
  'l2.cpuid': { code: 22, fields: [['vcpu', 'vcpu'], ['leaf', 'u32'], ['subleaf', 'u32'], ['cpl', 'cpl']], doc: 'CPUID in L2 at the given CPL' },
  'l2.vmcall': { code: 23, fields: [['vcpu', 'vcpu']], doc: 'VMCALL in L2' },
  'l2.vmread': { code: 24, fields: [['vcpu', 'vcpu'], ['field', 'field']], doc: 'VMREAD in L2 (shadowed for L2 by L1)' },
  'l2.vmwrite': { code: 25, fields: [['vcpu', 'vcpu'], ['field', 'field'], ['value', 'u64']], doc: 'VMWRITE in L2 (shadowed for L2 by L1)' },
  'l2.apic-read': { code: 26, fields: [['vcpu', 'vcpu'], ['offset', 'u16']], doc: 'L2 reads its APIC page at offset' },
  'l2.apic-write': { code: 27, fields: [['vcpu', 'vcpu'], ['offset', 'u16'], ['value', 'u32']], doc: 'L2 writes its APIC page at offset' },

  // ---- the host (L0's world) ----
  'host.memslot-create': {
    code: 40,
    fields: [['slot', 'u16'], ['gfn', 'u64'], ['npages', 'u32'], ['flags', 'u8']],
    doc: 'create a memslot of npages at gfn, backed by fresh host pages',
  },
  'host.memslot-move': { code: 41, fields: [['slot', 'u16'], ['gfn', 'u64']], doc: 'move a memslot to a new base gfn (same host pages)' },
  'host.memslot-delete': { code: 42, fields: [['slot', 'u16']], doc: 'delete a memslot' },
  'host.memslot-flags': { code: 43, fields: [['slot', 'u16'], ['flags', 'u8']], doc: 'change a memslot\'s flags (KVM_MEM_LOG_DIRTY_PAGES 1, KVM_MEM_READONLY 2)' },
  'host.page-migrate': { code: 44, fields: [['gfn', 'u64']], doc: 'the host migrates the page backing gfn (mmu-notifier invalidation; content moves to a new host page)' },
  'host.page-zap': { code: 45, fields: [['gfn', 'u64']], doc: 'the host drops the page backing gfn (it faults back in zeroed)' },
  'host.vcpu-load': { code: 46, fields: [['vcpu', 'vcpu'], ['cpu', 'cpu']], doc: "the vCPU's thread is scheduled in on a physical CPU" },
  'host.vcpu-put': { code: 47, fields: [['vcpu', 'vcpu']], doc: "the vCPU's thread is scheduled out" },
  'host.task-cpuid-fault': { code: 48, fields: [['task', 'u16'], ['enable', 'bool']], doc: 'a host task turns its own CPUID faulting on or off (arch_prctl ARCH_SET_CPUID)' },
  'host.task-cpuid': { code: 49, fields: [['task', 'u16'], ['cpu', 'cpu'], ['cpl', 'cpl']], doc: 'a host task runs on a physical CPU and executes CPUID' },
  'host.msr-intercept': {
    code: 50,
    fields: [['vcpu', 'vcpu'], ['msr', 'msr'], ['access', 'access'], ['intercept', 'bool']],
    doc: "L0 changes its own vmcs01 intercept of an MSR (vmx_enable/disable_intercept_for_msr)",
  },

  // ---- guest pages: memslot resize, posted interrupts (codes 70-79) ----
  'host.memslot-resize': {
    code: 70,
    fields: [['slot', 'u16'], ['npages', 'u32']],
    doc: 'the VMM re-creates a memslot with another size at the same base gfn and host address (delete and create): frames past a shrunk end are gone, a grown slot maps the host pages that follow',
  },
  'l1.posted-intr': {
    code: 71,
    fields: [['vcpu', 'vcpu'], ['target', 'vcpu'], ['gpa', 'u64'], ['vector', 'u8']],
    doc: "L1 posts an interrupt to the L2 running on vCPU target: sets the vector's PIR bit and ON in the posted-interrupt descriptor at gpa, then sends the notification",
  },

  // ---- the mmu-notifier invalidation window (codes 120-129) ----
  'host.mmu-invalidate-start': {
    code: 120,
    fields: [['gfn', 'u64'], ['npages', 'u32']],
    doc: 'the host starts an mmu-notifier invalidation of the pages backing gfn..gfn+npages-1 (invalidate_range_start: caches over them are invalidated); the pages move at the matching end',
  },
  'host.mmu-invalidate-end': {
    code: 121,
    fields: [],
    doc: 'the oldest open mmu-notifier invalidation ends: its pages have moved to new host pages (content kept; pinned pages stay), mmu_invalidate_seq is bumped',
  },

  // ---- CPUID faulting: SMM, the vCPU thread's own faulting, the VMM's MSR_PLATFORM_INFO (codes 80-89) ----
  'host.smi': { code: 80, fields: [['vcpu', 'vcpu']], doc: 'an SMI reaches the vCPU: L1 enters SMM (KVM emulates it; not modelled while L2 runs)' },
  'l1.rsm': { code: 81, fields: [['vcpu', 'vcpu']], doc: 'RSM in L1: leave SMM (#UD outside SMM)' },
  'host.vcpu-thread-cpuid-fault': {
    code: 82,
    fields: [['vcpu', 'vcpu'], ['enable', 'bool']],
    doc: "the vCPU's thread, outside KVM_RUN, turns its own CPUID faulting on or off (arch_prctl ARCH_SET_CPUID; e.g. the VMM runs under a record-and-replay debugger)",
  },
  'host.platform-info': {
    code: 83,
    fields: [['vcpu', 'vcpu'], ['value', 'u64']],
    doc: "the VMM sets the vCPU's MSR_PLATFORM_INFO (KVM_SET_MSRS, host-initiated; bit 31: CPUID faulting supported)",
  },

  // ---- what KVM's own tests do (selftests, kvm-unit-tests) (codes 100-119) ----
  'l1.vmread-wide': {
    code: 100,
    fields: [['vcpu', 'vcpu'], ['field', 'u64']],
    doc: 'VMREAD with the whole 64-bit register operand (text: `l1.vmread <encoding above 32 bits>` too); bits 63:15 set: VMfailValid UNSUPPORTED_VMCS_COMPONENT',
  },
  'l1.vmwrite-wide': {
    code: 101,
    fields: [['vcpu', 'vcpu'], ['field', 'u64'], ['value', 'u64']],
    doc: 'VMWRITE with the whole 64-bit register operand (text: `l1.vmwrite <encoding above 32 bits> <value>` too)',
  },
  'l1.invept': {
    code: 102,
    fields: [['vcpu', 'vcpu'], ['type', 'u64'], ['eptp', 'u64']],
    doc: 'INVEPT of the given type (1 single-context, 2 global) with the descriptor\'s EPTP (handle_invept)',
  },
  'l1.invvpid': {
    code: 103,
    fields: [['vcpu', 'vcpu'], ['type', 'u64'], ['vpid', 'u64'], ['gla', 'u64']],
    doc: 'INVVPID of the given type (0 individual-address, 1 single-context, 2 all-context, 3 single-context-retaining-globals) with the descriptor\'s first quadword (VPID in bits 15:0, 63:16 reserved) and linear address (handle_invvpid)',
  },
  'host.guest-write': {
    code: 104,
    fields: [['gpa', 'u64'], ['size', 'size'], ['value', 'u64']],
    doc: 'userspace stores to guest memory through its own mapping of the memslot (a selftest writing through addr_gpa2hva): the bytes change, no L1 store and no exit',
  },
  'host.guest-copy': {
    code: 105,
    fields: [['dst', 'u64'], ['src', 'u64'], ['bytes', 'u32']],
    doc: 'userspace copies bytes of guest memory from src to dst through its mapping (memmove; at most 1 MiB)',
  },
  'host.memslot-readd': {
    code: 106,
    fields: [['slot', 'u16']],
    doc: 'the VMM creates again a memslot it deleted, at its previous gfn, size, flags and userspace address: the same host pages, contents kept',
  },
  'host.set-msr': {
    code: 107,
    fields: [['vcpu', 'vcpu'], ['msr', 'msr'], ['value', 'u64']],
    doc: 'the VMM sets one of the vCPU\'s MSRs (KVM_SET_MSRS, host-initiated): the VMX capability MSRs 0x480-0x491 (vmx_set_vmx_msr), MSR_PLATFORM_INFO, MSR_MISC_FEATURES_ENABLES; a write KVM refuses is ignored',
  },

  // ---- save/restore of nested state: KVM_GET/SET_NESTED_STATE (codes 90-99) ----
  'host.migrate': {
    code: 90,
    fields: [['vcpu', 'vcpu']],
    doc: "the VMM migrates the vCPU here, as state_test.c does: KVM_GET_NESTED_STATE (and the vCPU's MSRs, SMM and VP assist page), the vCPU destroyed and created afresh on the same thread and memory, then KVM_SET_MSRS and KVM_SET_NESTED_STATE; outcome that of the restore",
  },
  'host.get-nested-state': {
    code: 91,
    fields: [['vcpu', 'vcpu']],
    doc: "KVM_GET_NESTED_STATE into the VMM's buffer for this vCPU (header and vmcs12 / shadow vmcs12 data); outcome nested-state with the header",
  },
  'host.set-nested-state': {
    code: 92,
    fields: [['vcpu', 'vcpu'], ['format', 'u16'], ['flags', 'u16'], ['vmxon', 'u64'], ['vmcs12', 'u64'], ['smm', 'u16'], ['size', 'u32']],
    doc: "KVM_SET_NESTED_STATE with this header (format 0 VMX; flags GUEST_MODE 1, RUN_PENDING 2, EVMCS 4; vmxon_pa, vmcs12_pa; smm.flags GUEST_MODE 1, VMXON 2; size in bytes) and the vmcs12 data of the VMM's buffer; outcome ok or einval",
  },
  'host.nested-state-field': {
    code: 93,
    fields: [['vcpu', 'vcpu'], ['shadow', 'bool'], ['field', 'field'], ['value', 'u64']],
    doc: "the VMM edits a field of the vmcs12 (shadow false) or shadow vmcs12 (shadow true) data in its nested-state buffer",
  },
  'host.nested-state-revision': {
    code: 94,
    fields: [['vcpu', 'vcpu'], ['shadow', 'bool'], ['value', 'u32']],
    doc: "the VMM writes the header dword of the vmcs12 or shadow vmcs12 data in its buffer (bits 30:0 revision id, bit 31 shadow-VMCS indicator)",
  },
} as const satisfies Record<string, KindDef>;

export type EventKind = keyof typeof EVENT_SCHEMA;
export const EVENT_KINDS = Object.keys(EVENT_SCHEMA) as EventKind[];

type FieldTs<T extends FieldType> = T extends 'u64' ? bigint : T extends 'bool' ? boolean : T extends 'access' ? MsrAccess : number;
type FieldsOf<F extends readonly FieldDef[]> = { [D in F[number] as D[0]]: FieldTs<D[1]> };

export type MsrAccess = 'read' | 'write';

/** The event of one kind, for example `EventOf<'l2.rdmsr'>` is `{ kind: 'l2.rdmsr', vcpu: number, msr: number }`. */
export type EventOf<K extends EventKind> = { kind: K; expect?: Outcome } & FieldsOf<(typeof EVENT_SCHEMA)[K]['fields']>;
export type TraceEvent = { [K in EventKind]: EventOf<K> }[EventKind];

export function kindDef(kind: EventKind): KindDef {
  return EVENT_SCHEMA[kind];
}

const byCode: (EventKind | undefined)[] = [];
for (const k of EVENT_KINDS) byCode[EVENT_SCHEMA[k].code] = k;

export function kindByCode(code: number): EventKind | undefined {
  return byCode[code];
}

export function isEventKind(s: string): s is EventKind {
  return Object.prototype.hasOwnProperty.call(EVENT_SCHEMA, s);
}

/** Which side issues the event: the prefix of its kind. */
export function eventActor(kind: EventKind): 'l1' | 'l2' | 'host' {
  return kind.slice(0, kind.indexOf('.')) as 'l1' | 'l2' | 'host';
}

/** The vCPU an event concerns, if any. */
export function eventVcpu(e: TraceEvent): number | undefined {
  return (e as { vcpu?: number }).vcpu;
}
