import {
  EVMCS,
  EVMCS_CLEAN_GROUPS,
  EVMCS_FIELD_INFO,
  EVMCS_MEMBERS,
  HV_ENLIGHTENMENTS_CONTROL,
  HV_VMX_ENLIGHTENED_CLEAN_FIELD,
  HV_X64_NESTED_MSR_BITMAP,
  HYPERV_CPUID_NESTED_FEATURES,
  INVALID_GPA,
  KVM_EVMCS_VERSION,
  KVM_NESTED_FEATURES_EVMCS_VERSIONS,
  VMCS12_REVISION,
  VMCS12_SIZE,
  VMCS_FIELDS,
  evmcsMemberOffset,
  vmcsFieldByName,
} from '../src';

describe('struct hv_enlightened_vmcs layout', () => {
  test('members are contiguous, non-overlapping and naturally aligned', () => {
    let end = 0;
    for (const m of EVMCS_MEMBERS) {
      expect([m.name, m.offset]).toEqual([m.name, end]);
      expect(m.offset % m.elemSize).toBe(0);
      end = m.offset + m.size;
    }
    expect(end).toBe(EVMCS.SIZE);
    expect(new Set(EVMCS_MEMBERS.map((m) => m.name)).size).toBe(EVMCS_MEMBERS.length);
  });

  test('total size and offsets of the non-VMCS members', () => {
    expect(EVMCS.SIZE).toBe(1024);
    expect(EVMCS.REVISION_ID_OFFSET).toBe(0);
    expect(EVMCS.ABORT_OFFSET).toBe(4);
    expect(EVMCS.HV_CLEAN_FIELDS_OFFSET).toBe(0x338);
    expect(EVMCS.HV_SYNTHETIC_CONTROLS_OFFSET).toBe(0x340);
    expect(EVMCS.HV_ENLIGHTENMENTS_CONTROL_OFFSET).toBe(0x344);
    expect(EVMCS.HV_VP_ID_OFFSET).toBe(0x348);
    expect(EVMCS.HV_VM_ID_OFFSET).toBe(0x350);
    expect(EVMCS.PARTITION_ASSIST_PAGE_OFFSET).toBe(0x358);
  });

  test('spot offsets of VMCS members', () => {
    expect(evmcsMemberOffset('host_es_selector')).toBe(8);
    expect(evmcsMemberOffset('host_ia32_pat')).toBe(24);
    expect(evmcsMemberOffset('msr_bitmap')).toBe(120);
    expect(evmcsMemberOffset('guest_es_base')).toBe(216);
    expect(evmcsMemberOffset('tsc_offset')).toBe(400);
    expect(evmcsMemberOffset('ept_pointer')).toBe(624);
    expect(evmcsMemberOffset('guest_physical_address')).toBe(680);
    expect(evmcsMemberOffset('vm_exit_reason')).toBe(692);
    expect(evmcsMemberOffset('exit_qualification')).toBe(720);
    expect(evmcsMemberOffset('guest_rip')).toBe(816);
    expect(evmcsMemberOffset('tsc_multiplier')).toBe(984);
    expect(() => evmcsMemberOffset('nope')).toThrow();
    expect(vmcsFieldByName('MSR_BITMAP')!.evmcsOffset).toBe(120);
    expect(vmcsFieldByName('GUEST_RIP')!.evmcsOffset).toBe(816);
    expect(vmcsFieldByName('VM_EXIT_REASON')!.evmcsOffset).toBe(692);
    expect(vmcsFieldByName('VIRTUAL_PROCESSOR_ID')!.evmcsSize).toBe(2);
  });

  test('no two VMCS fields map to overlapping eVMCS bytes; sizes match widths', () => {
    const mapped = VMCS_FIELDS.filter((f) => f.evmcsOffset !== null).sort((a, b) => a.evmcsOffset! - b.evmcsOffset!);
    for (let i = 1; i < mapped.length; i++) {
      expect(mapped[i - 1].evmcsOffset! + mapped[i - 1].evmcsSize!).toBeLessThanOrEqual(mapped[i].evmcsOffset!);
    }
    for (const f of mapped) {
      expect(f.isHigh).toBe(false);
      const expected = f.width === 16 ? 2 : f.width === 32 ? 4 : 8;
      expect([f.name, f.evmcsSize]).toEqual([f.name, expected]);
      expect(f.evmcsOffset! + f.evmcsSize!).toBeLessThanOrEqual(EVMCS.SIZE);
    }
    // and none of them overlaps the enlightenment-only members
    const special = [EVMCS.REVISION_ID_OFFSET, EVMCS.ABORT_OFFSET, EVMCS.HV_CLEAN_FIELDS_OFFSET, EVMCS.HV_ENLIGHTENMENTS_CONTROL_OFFSET, EVMCS.HV_VP_ID_OFFSET];
    for (const f of mapped) for (const s of special) expect(s >= f.evmcsOffset! && s < f.evmcsOffset! + f.evmcsSize!).toBe(false);
  });

  test('KVM maps 126 vmcs12 fields; the unmapped ones are the expected set', () => {
    const mapped = VMCS_FIELDS.filter((f) => f.evmcsOffset !== null);
    expect(mapped.length).toBe(126);
    expect(EVMCS_FIELD_INFO.size).toBe(126);
    const unmapped = VMCS_FIELDS.filter((f) => f.evmcsOffset === null && !f.isHigh).map((f) => f.name).sort();
    expect(unmapped).toEqual(
      [
        'APIC_ACCESS_ADDR', 'EOI_EXIT_BITMAP0', 'EOI_EXIT_BITMAP1', 'EOI_EXIT_BITMAP2', 'EOI_EXIT_BITMAP3',
        'EPTP_LIST_ADDRESS', 'GUEST_INTR_STATUS', 'GUEST_PML_INDEX', 'PML_ADDRESS', 'POSTED_INTR_DESC_ADDR',
        'POSTED_INTR_NV', 'VMREAD_BITMAP', 'VMWRITE_BITMAP', 'VMX_PREEMPTION_TIMER_VALUE', 'VM_FUNCTION_CONTROL',
      ].sort(),
    );
    for (const f of VMCS_FIELDS) if (f.evmcsOffset === null && !f.isHigh) expect(f.cleanGroup).toBeNull();
  });
});

describe('clean fields', () => {
  test('masks and groups', () => {
    expect(HV_VMX_ENLIGHTENED_CLEAN_FIELD.NONE).toBe(0);
    expect(HV_VMX_ENLIGHTENED_CLEAN_FIELD.IO_BITMAP).toBe(1);
    expect(HV_VMX_ENLIGHTENED_CLEAN_FIELD.MSR_BITMAP).toBe(2);
    expect(HV_VMX_ENLIGHTENED_CLEAN_FIELD.CRDR).toBe(0x100);
    expect(HV_VMX_ENLIGHTENED_CLEAN_FIELD.ENLIGHTENMENTSCONTROL).toBe(0x8000);
    expect(HV_VMX_ENLIGHTENED_CLEAN_FIELD.ALL).toBe(0xffff);
    expect(EVMCS_CLEAN_GROUPS.length).toBe(16);
    let all = 0;
    for (const g of EVMCS_CLEAN_GROUPS) {
      const mask = HV_VMX_ENLIGHTENED_CLEAN_FIELD[g.name as keyof typeof HV_VMX_ENLIGHTENED_CLEAN_FIELD];
      expect(mask).toBe(1 << g.bit);
      all |= mask;
    }
    expect(all).toBe(HV_VMX_ENLIGHTENED_CLEAN_FIELD.ALL);
  });

  test('copy gating follows copy_enlightened_to_vmcs12', () => {
    const group = (name: string) => vmcsFieldByName(name)!.cleanGroup;
    expect(group('TPR_THRESHOLD')).toBe(-1);
    expect(group('GUEST_RIP')).toBe(-1);
    expect(group('IO_BITMAP_A')).toBe(0);
    expect(group('MSR_BITMAP')).toBe(1);
    expect(group('TSC_MULTIPLIER')).toBe(2);
    expect(group('SECONDARY_VM_EXEC_CONTROL')).toBe(3);
    expect(group('CPU_BASED_VM_EXEC_CONTROL')).toBe(4);
    expect(group('VM_ENTRY_INSTRUCTION_LEN')).toBe(5);
    expect(group('VM_ENTRY_CONTROLS')).toBe(6);
    expect(group('EXCEPTION_BITMAP')).toBe(7);
    expect(group('GUEST_DR7')).toBe(8);
    expect(group('VIRTUAL_PROCESSOR_ID')).toBe(9);
    expect(group('GUEST_INTERRUPTIBILITY_INFO')).toBe(10);
    expect(group('GUEST_ACTIVITY_STATE')).toBe(11);
    expect(group('GUEST_TR_SELECTOR')).toBe(12);
    expect(group('HOST_RSP')).toBe(13);
    expect(group('HOST_TR_SELECTOR')).toBe(14);
    // never copied into vmcs12: exit information and the fields tagged ALL
    for (const n of ['VM_EXIT_REASON', 'EXIT_QUALIFICATION', 'GUEST_PHYSICAL_ADDRESS', 'VM_INSTRUCTION_ERROR', 'VM_EXIT_MSR_STORE_ADDR', 'CR3_TARGET_COUNT', 'PAGE_FAULT_ERROR_CODE_MASK']) {
      expect([n, group(n)]).toEqual([n, null]);
      expect(vmcsFieldByName(n)!.evmcsOffset).not.toBeNull();
    }
    expect(vmcsFieldByName('VM_EXIT_REASON')!.evmcsCleanMask).toBe(0);
    expect(vmcsFieldByName('CR3_TARGET_COUNT')!.evmcsCleanMask).toBe(0xffff);
  });

  test('no read-only field is copied in, and group 15 gates no VMCS field', () => {
    for (const f of VMCS_FIELDS) {
      if (f.readOnly) expect(f.cleanGroup).toBeNull();
      expect(f.cleanGroup).not.toBe(15);
      if (f.cleanGroup !== null && f.cleanGroup >= 0 && !f.isHigh) expect(f.evmcsCleanMask).toBe(1 << f.cleanGroup);
      if (f.isHigh) expect(f.cleanGroup).toBe(vmcsFieldByName(f.name.replace(/_HIGH$/, ''))!.cleanGroup);
    }
    expect(VMCS_FIELDS.filter((f) => f.cleanGroup === -1).map((f) => f.name).sort()).toEqual(['GUEST_RIP', 'TPR_THRESHOLD']);
  });

  test('sync-out set follows copy_vmcs12_to_enlightened', () => {
    const out = VMCS_FIELDS.filter((f) => f.evmcsSyncOut && !f.isHigh);
    expect(out.length).toBe(72);
    for (const f of out) expect(f.evmcsOffset).not.toBeNull();
    // every exit-information field with an eVMCS member is written back
    for (const f of VMCS_FIELDS) if (f.readOnly && !f.isHigh) expect([f.name, f.evmcsSyncOut]).toEqual([f.name, true]);
    for (const n of ['GUEST_RIP', 'GUEST_RSP', 'GUEST_CS_AR_BYTES', 'CPU_BASED_VM_EXEC_CONTROL', 'VM_ENTRY_CONTROLS', 'VM_ENTRY_INTR_INFO_FIELD', 'GUEST_BNDCFGS']) {
      expect([n, vmcsFieldByName(n)!.evmcsSyncOut]).toEqual([n, true]);
    }
    // not written back: host state, most controls, and three guest fields
    for (const n of ['HOST_RIP', 'MSR_BITMAP', 'TPR_THRESHOLD', 'PIN_BASED_VM_EXEC_CONTROL', 'GUEST_IA32_DEBUGCTL', 'VMCS_LINK_POINTER', 'GUEST_IA32_PERF_GLOBAL_CTRL', 'GUEST_INTR_STATUS']) {
      expect([n, vmcsFieldByName(n)!.evmcsSyncOut]).toEqual([n, false]);
    }
  });

  test('MSR_BITMAP gates exactly the MSR_BITMAP field', () => {
    expect(VMCS_FIELDS.filter((f) => f.cleanGroup === 1 && !f.isHigh).map((f) => f.name)).toEqual(['MSR_BITMAP']);
  });
});

describe('constants', () => {
  test('Hyper-V and KVM constants', () => {
    expect(HV_ENLIGHTENMENTS_CONTROL).toEqual({ NESTED_FLUSH_HYPERCALL: 1, MSR_BITMAP: 2 });
    expect(KVM_EVMCS_VERSION).toBe(1);
    expect(KVM_NESTED_FEATURES_EVMCS_VERSIONS).toBe(0x0101);
    expect(VMCS12_REVISION).toBe(0x11e57ed0);
    expect(VMCS12_SIZE).toBe(0x1000);
    expect(HYPERV_CPUID_NESTED_FEATURES).toBe(0x4000000a);
    expect(HV_X64_NESTED_MSR_BITMAP).toBe(0x80000);
    expect(INVALID_GPA).toBe(0xffffffffffffffffn);
  });
});
