/**
 * The eVMCS copies and field tables against independent oracles: the
 * Hyper-V TLFS's own struct hv_enlightened_vmcs (written out below, member
 * by member, with its C types; offsets computed here from the packed
 * layout) and each VMCS field's width from its encoding (SDM: bits 14:13).
 *
 * Every differential test compares profiles that share the eVMCS copies, so
 * a mistake there (say, copy_enlightened_to_vmcs12 keeping only the low 32
 * bits of a natural-width field) is the same on both sides and invisible to
 * them. These tests fail on such a mistake under every profile.
 */
import { EVMCS, VMCS_FIELDS, VmcsField } from '@nvx/arch';
import { Replayer, parseProfile, readGuest, vmcs12ReadField } from '@nvx/emulator';
import { makeHeader, parseEventLine } from '@nvx/trace';

/** struct hv_enlightened_vmcs (TLFS "Enlightened VMCS"; __packed), in declaration order. */
const TLFS_EVMCS = `
u32 revision_id; u32 abort;
u16 host_es_selector; u16 host_cs_selector; u16 host_ss_selector; u16 host_ds_selector;
u16 host_fs_selector; u16 host_gs_selector; u16 host_tr_selector; u16 padding16_1;
u64 host_ia32_pat; u64 host_ia32_efer; u64 host_cr0; u64 host_cr3; u64 host_cr4;
u64 host_ia32_sysenter_esp; u64 host_ia32_sysenter_eip; u64 host_rip; u32 host_ia32_sysenter_cs;
u32 pin_based_vm_exec_control; u32 vm_exit_controls; u32 secondary_vm_exec_control;
u64 io_bitmap_a; u64 io_bitmap_b; u64 msr_bitmap;
u16 guest_es_selector; u16 guest_cs_selector; u16 guest_ss_selector; u16 guest_ds_selector;
u16 guest_fs_selector; u16 guest_gs_selector; u16 guest_ldtr_selector; u16 guest_tr_selector;
u32 guest_es_limit; u32 guest_cs_limit; u32 guest_ss_limit; u32 guest_ds_limit; u32 guest_fs_limit;
u32 guest_gs_limit; u32 guest_ldtr_limit; u32 guest_tr_limit; u32 guest_gdtr_limit; u32 guest_idtr_limit;
u32 guest_es_ar_bytes; u32 guest_cs_ar_bytes; u32 guest_ss_ar_bytes; u32 guest_ds_ar_bytes;
u32 guest_fs_ar_bytes; u32 guest_gs_ar_bytes; u32 guest_ldtr_ar_bytes; u32 guest_tr_ar_bytes;
u64 guest_es_base; u64 guest_cs_base; u64 guest_ss_base; u64 guest_ds_base; u64 guest_fs_base;
u64 guest_gs_base; u64 guest_ldtr_base; u64 guest_tr_base; u64 guest_gdtr_base; u64 guest_idtr_base;
u64 padding64_1[3];
u64 vm_exit_msr_store_addr; u64 vm_exit_msr_load_addr; u64 vm_entry_msr_load_addr;
u64 cr3_target_value0; u64 cr3_target_value1; u64 cr3_target_value2; u64 cr3_target_value3;
u32 page_fault_error_code_mask; u32 page_fault_error_code_match;
u32 cr3_target_count; u32 vm_exit_msr_store_count; u32 vm_exit_msr_load_count; u32 vm_entry_msr_load_count;
u64 tsc_offset; u64 virtual_apic_page_addr; u64 vmcs_link_pointer;
u64 guest_ia32_debugctl; u64 guest_ia32_pat; u64 guest_ia32_efer;
u64 guest_pdptr0; u64 guest_pdptr1; u64 guest_pdptr2; u64 guest_pdptr3;
u64 guest_pending_dbg_exceptions; u64 guest_sysenter_esp; u64 guest_sysenter_eip;
u32 guest_activity_state; u32 guest_sysenter_cs;
u64 cr0_guest_host_mask; u64 cr4_guest_host_mask; u64 cr0_read_shadow; u64 cr4_read_shadow;
u64 guest_cr0; u64 guest_cr3; u64 guest_cr4; u64 guest_dr7;
u64 host_fs_base; u64 host_gs_base; u64 host_tr_base; u64 host_gdtr_base; u64 host_idtr_base; u64 host_rsp;
u64 ept_pointer; u16 virtual_processor_id; u16 padding16_2[3];
u64 padding64_2[5]; u64 guest_physical_address;
u32 vm_instruction_error; u32 vm_exit_reason; u32 vm_exit_intr_info; u32 vm_exit_intr_error_code;
u32 idt_vectoring_info_field; u32 idt_vectoring_error_code; u32 vm_exit_instruction_len; u32 vmx_instruction_info;
u64 exit_qualification; u64 exit_io_instruction_ecx; u64 exit_io_instruction_esi; u64 exit_io_instruction_edi;
u64 exit_io_instruction_eip; u64 guest_linear_address; u64 guest_rsp; u64 guest_rflags;
u32 guest_interruptibility_info; u32 cpu_based_vm_exec_control; u32 exception_bitmap; u32 vm_entry_controls;
u32 vm_entry_intr_info_field; u32 vm_entry_exception_error_code; u32 vm_entry_instruction_len; u32 tpr_threshold;
u64 guest_rip;
u32 hv_clean_fields; u32 padding32_1; u32 hv_synthetic_controls; u32 hv_enlightenments_control;
u32 hv_vp_id; u32 padding32_2; u64 hv_vm_id; u64 partition_assist_page; u64 padding64_4[4];
u64 guest_bndcfgs; u64 guest_ia32_perf_global_ctrl; u64 guest_ia32_s_cet; u64 guest_ssp;
u64 guest_ia32_int_ssp_table_addr; u64 guest_ia32_lbr_ctl; u64 padding64_5[2];
u64 xss_exit_bitmap; u64 encls_exiting_bitmap; u64 host_ia32_perf_global_ctrl; u64 tsc_multiplier;
u64 host_ia32_s_cet; u64 host_ssp; u64 host_ia32_int_ssp_table_addr; u64 padding64_6;
`;

interface Member {
  offset: number;
  size: number;
}

/** name -> offset and size in the packed struct. */
const TLFS = new Map<string, Member>();
let TLFS_SIZE = 0;
for (const decl of TLFS_EVMCS.split(';').map((s) => s.trim()).filter(Boolean)) {
  const m = /^u(8|16|32|64) ([a-z0-9_]+)(?:\[(\d+)\])?$/.exec(decl);
  if (!m) throw new Error(`bad declaration '${decl}'`);
  const size = (Number(m[1]) / 8) * (m[3] ? Number(m[3]) : 1);
  TLFS.set(m[2], { offset: TLFS_SIZE, size });
  TLFS_SIZE += size;
}

/** SDM: encoding bits 14:13 give the width (0 16-bit, 1 64-bit, 2 32-bit, 3 natural = 64 bits on x86-64). */
function bitsByEncoding(enc: number): number {
  return [16, 64, 32, 64][(enc >>> 13) & 3];
}

const mask = (bits: number) => (1n << BigInt(bits)) - 1n;

/** The vmcs12 fields that have an eVMCS member, with the TLFS member of the same name. */
const MAPPED: { f: VmcsField; m: Member }[] = VMCS_FIELDS.filter((f) => !f.isHigh && f.evmcsOffset !== null).map((f) => {
  const m = TLFS.get(f.name.toLowerCase());
  if (!m) throw new Error(`${f.name} has an eVMCS member in the table but no TLFS member of that name`);
  return { f, m };
});

describe('eVMCS layout against the TLFS struct', () => {
  test('the struct is 1 KiB and the control members sit where the TLFS puts them', () => {
    expect(TLFS_SIZE).toBe(EVMCS.SIZE);
    expect(TLFS.get('hv_clean_fields')!.offset).toBe(EVMCS.HV_CLEAN_FIELDS_OFFSET);
    expect(TLFS.get('hv_enlightenments_control')!.offset).toBe(EVMCS.HV_ENLIGHTENMENTS_CONTROL_OFFSET);
    expect(TLFS.get('partition_assist_page')!.offset).toBe(EVMCS.PARTITION_ASSIST_PAGE_OFFSET);
  });

  test("every vmcs12 field's eVMCS offset and size are the TLFS member's; the size is the encoding's width", () => {
    const got = MAPPED.map(({ f }) => [f.name, f.evmcsOffset, f.evmcsSize]);
    const want = MAPPED.map(({ f, m }) => [f.name, m.offset, m.size]);
    expect(got).toEqual(want);
    for (const { f, m } of MAPPED) expect([f.name, m.size * 8]).toEqual([f.name, bitsByEncoding(f.encoding)]);
  });

  test('every TLFS member named after a vmcs12 field is mapped', () => {
    const vmcs12 = new Set(VMCS_FIELDS.filter((f) => !f.isHigh).map((f) => f.name.toLowerCase()));
    const named = [...TLFS.keys()].filter((n) => vmcs12.has(n));
    expect(named.sort()).toEqual(MAPPED.map(({ f }) => f.name.toLowerCase()).sort());
  });
});

const EVMCS_GPA = 0x5000n;

/** A distinct value per field with every byte non-zero and the top bit set. */
function pattern(i: number): bigint {
  return (0xf1e2d3c4b5a69788n ^ (BigInt(i + 1) * 0x0101010101010101n)) | 0x8080808080808080n;
}

describe.each(['reference', 'optimized', 'kvm'])('eVMCS copies under %s', (profile) => {
  const copiedIn = MAPPED.filter(({ f }) => f.cleanGroup !== null);
  const syncedOut = MAPPED.filter(({ f }) => f.evmcsSyncOut);

  function entered(): Replayer {
    const r = Replayer.fromHeader(makeHeader({ evmcs: true }), parseProfile(profile));
    const cfg = r.peek().config;
    const apply = (l: string) => r.apply(parseEventLine(l, cfg));
    apply('l1.write 0x1000 4 0x11e57ed0');
    apply('l1.vmxon 0x1000');
    apply('l1.write 0x5000 4 0x1');
    // every copied member holds its own full-width pattern, written at the TLFS offset
    copiedIn.forEach(({ m }, i) => apply(`host.guest-write 0x${(EVMCS_GPA + BigInt(m.offset)).toString(16)} ${m.size} 0x${(pattern(i) & mask(8 * m.size)).toString(16)}`));
    apply('l1.evmcs-ptr 0x5000');
    // copy_enlightened_to_vmcs12 runs first; the controls are nonsense, so the entry then fails
    const out = apply('l1.vmlaunch');
    expect(out.k === 'vmfail-valid' || out.k === 'entered' || out.k === 'exit').toBe(true);
    return r;
  }

  test('copy_enlightened_to_vmcs12 keeps every bit of every field (natural width: 64 bits)', () => {
    const r = entered();
    const n = r.peek().vcpus[0].nested;
    const got = copiedIn.map(({ f }) => [f.name, vmcs12ReadField(n, f)]);
    const want = copiedIn.map(({ f }, i) => [f.name, pattern(i) & mask(bitsByEncoding(f.encoding))]);
    expect(got).toEqual(want);
    expect(copiedIn.find(({ f }) => f.name === 'GUEST_RIP')).toBeDefined();
  });

  test('copy_vmcs12_to_enlightened writes every synced field whole at its TLFS offset', () => {
    const r = entered();
    const cfg = r.peek().config;
    // clear the members in L1 memory behind KVM's back, then make KVM sync vmcs12 out again
    for (const { m } of syncedOut) r.apply(parseEventLine(`host.guest-write 0x${(EVMCS_GPA + BigInt(m.offset)).toString(16)} ${m.size} 0x0`, cfg));
    expect(r.apply(parseEventLine('l1.vmread 0x100000000', cfg))).toEqual({ k: 'vmfail-valid', error: 12 });
    const w = r.peek();
    const n = w.vcpus[0].nested;
    const got = syncedOut.map(({ f, m }) => [f.name, readGuest(w, EVMCS_GPA + BigInt(m.offset), m.size)]);
    const want = syncedOut.map(({ f, m }) => [f.name, vmcs12ReadField(n, f) & mask(8 * m.size)]);
    expect(got).toEqual(want);
    // a natural-width field copied in whole comes back out whole
    const rip = syncedOut.find(({ f }) => f.name === 'GUEST_RIP')!;
    expect(readGuest(w, EVMCS_GPA + BigInt(rip.m.offset), 8)! >> 32n).not.toBe(0n);
  });
});
