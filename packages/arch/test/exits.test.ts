import {
  EXIT_REASON,
  EXIT_REASONS,
  VMXERR,
  VMX_EXIT_REASONS_FAILED_VMENTRY,
  VMX_EXIT_REASONS_SGX_ENCLAVE_MODE,
  VMX_INSTRUCTION_ERRORS,
  exitReasonByName,
  exitReasonName,
  vmxErrorByName,
  vmxErrorName,
} from '../src';

describe('exit reasons', () => {
  test('reference §7.3 values', () => {
    const ref: [string, number][] = [
      ['EXCEPTION_NMI', 0], ['EXTERNAL_INTERRUPT', 1], ['TRIPLE_FAULT', 2], ['INIT', 3], ['SIPI', 4],
      ['INTERRUPT_WINDOW', 7], ['NMI_WINDOW', 8], ['TASK_SWITCH', 9], ['CPUID', 10], ['HLT', 12], ['INVD', 13],
      ['INVLPG', 14], ['RDPMC', 15], ['RDTSC', 16], ['VMCALL', 18], ['VMCLEAR', 19], ['VMLAUNCH', 20],
      ['VMPTRLD', 21], ['VMPTRST', 22], ['VMREAD', 23], ['VMRESUME', 24], ['VMWRITE', 25], ['VMXOFF', 26],
      ['VMXON', 27], ['CR_ACCESS', 28], ['DR_ACCESS', 29], ['IO_INSTRUCTION', 30], ['MSR_READ', 31],
      ['MSR_WRITE', 32], ['INVALID_STATE', 33], ['MSR_LOAD_FAIL', 34], ['MWAIT', 36], ['MONITOR_TRAP_FLAG', 37],
      ['MONITOR', 39], ['PAUSE', 40], ['MCE_DURING_VMENTRY', 41], ['TPR_BELOW_THRESHOLD', 43], ['APIC_ACCESS', 44],
      ['EOI_INDUCED', 45], ['GDTR_IDTR', 46], ['LDTR_TR', 47], ['EPT_VIOLATION', 48], ['EPT_MISCONFIG', 49],
      ['INVEPT', 50], ['RDTSCP', 51], ['PREEMPTION_TIMER', 52], ['INVVPID', 53], ['WBINVD', 54], ['XSETBV', 55],
      ['APIC_WRITE', 56], ['RDRAND', 57], ['INVPCID', 58], ['VMFUNC', 59], ['ENCLS', 60], ['RDSEED', 61],
      ['PML_FULL', 62], ['XSAVES', 63], ['XRSTORS', 64], ['UMWAIT', 67], ['TPAUSE', 68], ['BUS_LOCK', 74],
      ['NOTIFY', 75], ['TDCALL', 77],
    ];
    for (const [name, value] of ref) {
      expect([name, exitReasonByName(name)]).toEqual([name, value]);
      expect([name, EXIT_REASON[name as keyof typeof EXIT_REASON]]).toEqual([name, value]);
      expect(EXIT_REASONS.some((r) => r.value === value)).toBe(true);
    }
    expect(EXIT_REASON.CPUID).toBe(10);
    expect(EXIT_REASON.MSR_READ).toBe(31);
    expect(EXIT_REASON.MSR_WRITE).toBe(32);
    expect(EXIT_REASON.VMCALL).toBe(18);
    expect(EXIT_REASON.INVALID_STATE).toBe(33);
  });

  test('one entry per value, ascending, KVM names; round-trip', () => {
    for (let i = 1; i < EXIT_REASONS.length; i++) expect(EXIT_REASONS[i].value).toBeGreaterThan(EXIT_REASONS[i - 1].value);
    expect(new Set(EXIT_REASONS.map((r) => r.name)).size).toBe(EXIT_REASONS.length);
    for (const r of EXIT_REASONS) {
      expect(exitReasonName(r.value)).toBe(r.name);
      expect(exitReasonByName(r.name)).toBe(r.value);
      expect(exitReasonByName(`EXIT_REASON_${r.name}`)).toBe(r.value);
      expect(typeof r.description).toBe('string');
    }
    expect(exitReasonName(26)).toBe('VMOFF');
    expect(exitReasonName(36)).toBe('MWAIT_INSTRUCTION');
  });

  test('flags', () => {
    expect(VMX_EXIT_REASONS_FAILED_VMENTRY).toBe(0x80000000);
    expect(VMX_EXIT_REASONS_SGX_ENCLAVE_MODE).toBe(0x08000000);
    expect(exitReasonName(33 | 0x80000000)).toBe('INVALID_STATE|FAILED_VMENTRY');
    expect(exitReasonName((34 | 0x80000000) >>> 0)).toBe('MSR_LOAD_FAIL|FAILED_VMENTRY');
    expect(exitReasonName(0x08000000 | 48)).toBe('EPT_VIOLATION|SGX_ENCLAVE_MODE');
    expect(exitReasonByName('INVALID_STATE|FAILED_VMENTRY')).toBe(0x80000021);
    expect(exitReasonByName('exit_reason_invalid_state|failed_vmentry')).toBe(0x80000021);
    expect(exitReasonByName('CPUID|NOPE')).toBeUndefined();
    for (const v of [0x80000021, 0x80000022, 0x08000030, 10]) expect(exitReasonByName(exitReasonName(v))).toBe(v);
  });

  test('unknown reasons are decimal', () => {
    expect(exitReasonName(35)).toBe('35');
    expect(exitReasonName(35 | 0x80000000)).toBe('35|FAILED_VMENTRY');
    expect(exitReasonName(0x10000031)).toBe(String(0x10000031));
    expect(exitReasonByName('35')).toBeUndefined();
    expect(exitReasonByName('NOPE')).toBeUndefined();
  });
});

describe('VM-instruction errors', () => {
  test('reference §7.4 numbers', () => {
    expect(VMXERR.VMCALL_IN_VMX_ROOT_OPERATION).toBe(1);
    expect(VMXERR.VMLAUNCH_NONCLEAR_VMCS).toBe(4);
    expect(VMXERR.VMRESUME_NONLAUNCHED_VMCS).toBe(5);
    expect(VMXERR.ENTRY_INVALID_CONTROL_FIELD).toBe(7);
    expect(VMXERR.ENTRY_INVALID_HOST_STATE_FIELD).toBe(8);
    expect(VMXERR.VMPTRLD_INCORRECT_VMCS_REVISION_ID).toBe(11);
    expect(VMXERR.UNSUPPORTED_VMCS_COMPONENT).toBe(12);
    expect(VMXERR.VMWRITE_READ_ONLY_VMCS_COMPONENT).toBe(13);
    expect(VMXERR.VMXON_IN_VMX_ROOT_OPERATION).toBe(15);
    expect(VMXERR.ENTRY_EVENTS_BLOCKED_BY_MOV_SS).toBe(26);
    expect(VMXERR.INVALID_OPERAND_TO_INVEPT_INVVPID).toBe(28);
    const values = VMX_INSTRUCTION_ERRORS.map((e) => e.value);
    expect(values).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 28]);
  });

  test('round-trip, prefixes, SDM descriptions', () => {
    for (const e of VMX_INSTRUCTION_ERRORS) {
      expect(vmxErrorByName(e.name)).toBe(e.value);
      expect(vmxErrorByName(`VMXERR_${e.name}`)).toBe(e.value);
      expect(vmxErrorName(e.value)).toBe(e.name);
      expect(e.description && e.description.length > 0).toBe(true);
    }
    expect(VMX_INSTRUCTION_ERRORS.find((e) => e.value === 13)!.description).toMatch(/read-only/);
    expect(vmxErrorByName('vmxerr_unsupported_vmcs_component')).toBe(12);
    expect(vmxErrorByName('NOPE')).toBeUndefined();
    expect(vmxErrorName(14)).toBe('14');
    expect(vmxErrorName(0)).toBe('0');
  });
});
