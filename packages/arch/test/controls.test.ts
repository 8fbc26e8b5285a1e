import { CPU_BASED, PIN_BASED, SECONDARY_EXEC, VMCS, VM_ENTRY, VM_EXIT, VMX_MISC, VMX_MISC_VMWRITE_SHADOW_RO_FIELDS, controlBitNames } from '../src';

describe('control bits (reference §7.2)', () => {
  test('primary', () => {
    expect(CPU_BASED.USE_MSR_BITMAPS).toBe(0x10000000);
    expect(CPU_BASED.USE_IO_BITMAPS).toBe(1 << 25);
    expect(CPU_BASED.UNCOND_IO_EXITING).toBe(1 << 24);
    expect(CPU_BASED.TPR_SHADOW).toBe(1 << 21);
    expect(CPU_BASED.CR8_LOAD_EXITING).toBe(1 << 19);
    expect(CPU_BASED.CR8_STORE_EXITING).toBe(1 << 20);
    expect(CPU_BASED.MONITOR_TRAP_FLAG).toBe(1 << 27);
    expect(CPU_BASED.ACTIVATE_SECONDARY_CONTROLS).toBe(0x80000000);
  });

  test('secondary', () => {
    expect(SECONDARY_EXEC.VIRTUALIZE_APIC_ACCESSES).toBe(1);
    expect(SECONDARY_EXEC.ENABLE_EPT).toBe(2);
    expect(SECONDARY_EXEC.DESC).toBe(4);
    expect(SECONDARY_EXEC.ENABLE_RDTSCP).toBe(8);
    expect(SECONDARY_EXEC.VIRTUALIZE_X2APIC_MODE).toBe(0x10);
    expect(SECONDARY_EXEC.ENABLE_VPID).toBe(0x20);
    expect(SECONDARY_EXEC.UNRESTRICTED_GUEST).toBe(0x80);
    expect(SECONDARY_EXEC.APIC_REGISTER_VIRT).toBe(0x100);
    expect(SECONDARY_EXEC.VIRTUAL_INTR_DELIVERY).toBe(0x200);
    expect(SECONDARY_EXEC.ENABLE_VMFUNC).toBe(0x2000);
    expect(SECONDARY_EXEC.SHADOW_VMCS).toBe(0x4000);
    expect(SECONDARY_EXEC.ENABLE_PML).toBe(1 << 17);
    expect(SECONDARY_EXEC.TSC_SCALING).toBe(1 << 25);
  });

  test('pin-based and VMX_MISC', () => {
    expect(PIN_BASED.POSTED_INTR).toBe(0x80);
    expect(PIN_BASED.VMX_PREEMPTION_TIMER).toBe(0x40);
    expect(VMX_MISC_VMWRITE_SHADOW_RO_FIELDS).toBe(1 << 29);
    expect(VMX_MISC.ACTIVITY_HLT).toBe(0x40);
    expect(VMX_MISC.ACTIVITY_WAIT_SIPI).toBe(0x100);
    expect(VMX_MISC.SAVE_EFER_LMA).toBe(0x20);
  });

  test('every mask is a single non-negative bit, unique within its field', () => {
    for (const group of [CPU_BASED, SECONDARY_EXEC, PIN_BASED, VM_EXIT, VM_ENTRY]) {
      const seen = new Set<number>();
      for (const m of Object.values(group)) {
        expect(m).toBeGreaterThan(0);
        expect(m).toBeLessThanOrEqual(0x80000000);
        expect(Number.isInteger(Math.log2(m))).toBe(true);
        expect(seen.has(m)).toBe(false);
        seen.add(m);
      }
    }
  });
});

describe('controlBitNames', () => {
  test('names set bits of each control field, low bit first', () => {
    const v = CPU_BASED.USE_MSR_BITMAPS | CPU_BASED.ACTIVATE_SECONDARY_CONTROLS | CPU_BASED.HLT_EXITING;
    expect(controlBitNames(VMCS.CPU_BASED_VM_EXEC_CONTROL, v)).toEqual(['HLT_EXITING', 'USE_MSR_BITMAPS', 'ACTIVATE_SECONDARY_CONTROLS']);
    expect(controlBitNames(VMCS.SECONDARY_VM_EXEC_CONTROL, SECONDARY_EXEC.SHADOW_VMCS | SECONDARY_EXEC.ENABLE_EPT)).toEqual(['ENABLE_EPT', 'SHADOW_VMCS']);
    expect(controlBitNames(VMCS.PIN_BASED_VM_EXEC_CONTROL, 0xc1)).toEqual(['EXT_INTR_MASK', 'VMX_PREEMPTION_TIMER', 'POSTED_INTR']);
    expect(controlBitNames(VMCS.VM_EXIT_CONTROLS, VM_EXIT.HOST_ADDR_SPACE_SIZE)).toEqual(['HOST_ADDR_SPACE_SIZE']);
    expect(controlBitNames(VMCS.VM_ENTRY_CONTROLS, VM_ENTRY.IA32E_MODE)).toEqual(['IA32E_MODE']);
  });

  test('unnamed bits and non-control fields', () => {
    expect(controlBitNames(VMCS.CPU_BASED_VM_EXEC_CONTROL, 0x3)).toEqual(['bit 0', 'bit 1']);
    expect(controlBitNames(VMCS.GUEST_RIP, 0x80000001)).toEqual(['bit 0', 'bit 31']);
    expect(controlBitNames(VMCS.CPU_BASED_VM_EXEC_CONTROL, 0)).toEqual([]);
    expect(controlBitNames(VMCS.CPU_BASED_VM_EXEC_CONTROL, -0x80000000)).toEqual(['ACTIVATE_SECONDARY_CONTROLS']);
  });
});
