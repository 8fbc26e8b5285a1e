import {
  VMCS,
  VMCS12_SLOT_COUNT,
  VMCS_FIELDS,
  VMCS_NOT_IN_VMCS12,
  VMCS_SHADOW_RO_FIELDS,
  VMCS_SHADOW_RW_FIELDS,
  VMX_AR_BYTES_MASK,
  decodeVmcsEncoding,
  isArBytesField,
  isReadOnlyEncoding,
  vmcsBitmapPosition,
  vmcsFieldByEncoding,
  vmcsFieldByName,
  vmcsFieldName,
} from '../src';

const TYPES = ['control', 'exit-info', 'guest', 'host'];
const WIDTHS = [16, 64, 32, 'natural'];

describe('spot values', () => {
  test('VM_EXIT_REASON is read-only and shadowed RO', () => {
    const f = vmcsFieldByEncoding(0x4402)!;
    expect(f.name).toBe('VM_EXIT_REASON');
    expect(f.readOnly).toBe(true);
    expect(f.type).toBe('exit-info');
    expect(f.width).toBe(32);
    expect(f.shadow).toBe('ro');
    expect(isReadOnlyEncoding(0x4402)).toBe(true);
  });

  test('GUEST_RIP is 0x681e, natural-width guest state, shadowed RW', () => {
    expect(VMCS.GUEST_RIP).toBe(0x681e);
    const f = vmcsFieldByEncoding(0x681e)!;
    expect(f.name).toBe('GUEST_RIP');
    expect(f.shadow).toBe('rw');
    expect(f.width).toBe('natural');
    expect(f.type).toBe('guest');
    expect(f.readOnly).toBe(false);
  });

  test('GUEST_PHYSICAL_ADDRESS_HIGH', () => {
    const f = vmcsFieldByName('GUEST_PHYSICAL_ADDRESS_HIGH')!;
    expect(f.encoding).toBe(0x2401);
    expect(f.isHigh).toBe(true);
    expect(f.width).toBe(32);
    expect(f.full).toBe(0x2400);
    expect(f.high).toBeNull();
    expect(f.readOnly).toBe(true);
    expect(f.shadow).toBe('ro');
    const full = vmcsFieldByEncoding(0x2400)!;
    expect(full.high).toBe(0x2401);
    expect(full.width).toBe(64);
    expect(f.slot).toBe(full.slot);
  });

  test('MSR_BITMAP 0x2004 is gated by clean group 1 (MSR_BITMAP)', () => {
    const f = vmcsFieldByName('MSR_BITMAP')!;
    expect(f.encoding).toBe(0x2004);
    expect(f.high).toBe(0x2005);
    expect(f.cleanGroup).toBe(1);
    expect(f.evmcsSize).toBe(8);
    expect(vmcsFieldByEncoding(0x2005)!.cleanGroup).toBe(1);
  });

  test('encodings from the reference constants table (§7.1)', () => {
    const expected: Record<string, number> = {
      VIRTUAL_PROCESSOR_ID: 0x0000, POSTED_INTR_NV: 0x0002, GUEST_ES_SELECTOR: 0x0800, GUEST_TR_SELECTOR: 0x080e,
      GUEST_INTR_STATUS: 0x0810, GUEST_PML_INDEX: 0x0812, HOST_ES_SELECTOR: 0x0c00, HOST_CS_SELECTOR: 0x0c02,
      HOST_SS_SELECTOR: 0x0c04, HOST_DS_SELECTOR: 0x0c06, HOST_FS_SELECTOR: 0x0c08, HOST_GS_SELECTOR: 0x0c0a,
      HOST_TR_SELECTOR: 0x0c0c, IO_BITMAP_A: 0x2000, IO_BITMAP_B: 0x2002, MSR_BITMAP: 0x2004, MSR_BITMAP_HIGH: 0x2005,
      VM_EXIT_MSR_STORE_ADDR: 0x2006, VM_EXIT_MSR_LOAD_ADDR: 0x2008, VM_ENTRY_MSR_LOAD_ADDR: 0x200a, PML_ADDRESS: 0x200e,
      TSC_OFFSET: 0x2010, VIRTUAL_APIC_PAGE_ADDR: 0x2012, APIC_ACCESS_ADDR: 0x2014, POSTED_INTR_DESC_ADDR: 0x2016,
      VM_FUNCTION_CONTROL: 0x2018, EPT_POINTER: 0x201a, EOI_EXIT_BITMAP0: 0x201c, EOI_EXIT_BITMAP1: 0x201e,
      EOI_EXIT_BITMAP2: 0x2020, EOI_EXIT_BITMAP3: 0x2022, EPTP_LIST_ADDRESS: 0x2024, VMREAD_BITMAP: 0x2026,
      VMWRITE_BITMAP: 0x2028, XSS_EXIT_BITMAP: 0x202c, ENCLS_EXITING_BITMAP: 0x202e, TSC_MULTIPLIER: 0x2032,
      GUEST_PHYSICAL_ADDRESS: 0x2400, VMCS_LINK_POINTER: 0x2800, GUEST_IA32_DEBUGCTL: 0x2802, GUEST_IA32_PAT: 0x2804,
      GUEST_IA32_EFER: 0x2806, GUEST_PDPTR0: 0x280a, GUEST_PDPTR1: 0x280c, GUEST_PDPTR2: 0x280e, GUEST_PDPTR3: 0x2810,
      GUEST_BNDCFGS: 0x2812, HOST_IA32_PAT: 0x2c00, HOST_IA32_EFER: 0x2c02, PIN_BASED_VM_EXEC_CONTROL: 0x4000,
      CPU_BASED_VM_EXEC_CONTROL: 0x4002, EXCEPTION_BITMAP: 0x4004, PAGE_FAULT_ERROR_CODE_MASK: 0x4006,
      PAGE_FAULT_ERROR_CODE_MATCH: 0x4008, CR3_TARGET_COUNT: 0x400a, VM_EXIT_CONTROLS: 0x400c, VM_ENTRY_CONTROLS: 0x4012,
      VM_ENTRY_INTR_INFO_FIELD: 0x4016, TPR_THRESHOLD: 0x401c, SECONDARY_VM_EXEC_CONTROL: 0x401e,
      VM_INSTRUCTION_ERROR: 0x4400, VM_EXIT_REASON: 0x4402, VMX_INSTRUCTION_INFO: 0x440e, GUEST_ES_LIMIT: 0x4800,
      GUEST_IDTR_LIMIT: 0x4812, GUEST_ES_AR_BYTES: 0x4814, GUEST_TR_AR_BYTES: 0x4822, GUEST_ACTIVITY_STATE: 0x4826,
      GUEST_SYSENTER_CS: 0x482a, CR4_GUEST_HOST_MASK: 0x6002, EXIT_QUALIFICATION: 0x6400, GUEST_ES_BASE: 0x6806,
      GUEST_IDTR_BASE: 0x6818, GUEST_DR7: 0x681a, GUEST_PENDING_DBG_EXCEPTIONS: 0x6822, HOST_CR0: 0x6c00,
      HOST_CR3: 0x6c02, HOST_CR4: 0x6c04, HOST_TR_BASE: 0x6c0a, HOST_GDTR_BASE: 0x6c0c, HOST_IDTR_BASE: 0x6c0e,
      HOST_RSP: 0x6c14, HOST_RIP: 0x6c16, VMX_PREEMPTION_TIMER_VALUE: 0x482e, GUEST_INTERRUPTIBILITY_INFO: 0x4824,
      HOST_IA32_SYSENTER_CS: 0x4c00, GUEST_LINEAR_ADDRESS: 0x640a,
    };
    for (const [name, enc] of Object.entries(expected)) {
      expect([name, VMCS[name as keyof typeof VMCS]]).toEqual([name, enc]);
      expect(vmcsFieldByEncoding(enc)?.name).toBe(name);
    }
  });

  test('fields KVM does not keep in vmcs12 are absent', () => {
    for (const enc of Object.values(VMCS_NOT_IN_VMCS12)) expect(vmcsFieldByEncoding(enc)).toBeUndefined();
    expect(vmcsFieldByEncoding(0x6008)).toBeUndefined(); // CR3_TARGET_VALUE0
    expect(vmcsFieldByEncoding(0x4020)).toBeUndefined(); // PLE_GAP
    expect(vmcsFieldName(0x6008)).toBe('CR3_TARGET_VALUE0');
  });
});

describe('table structure', () => {
  test('size: 141 slots, 37 of them 64-bit, 178 entries', () => {
    expect(VMCS12_SLOT_COUNT).toBe(141);
    expect(VMCS_FIELDS.filter((f) => f.width === 64).length).toBe(37);
    expect(VMCS_FIELDS.length).toBe(178);
  });

  test('names and encodings are unique', () => {
    expect(new Set(VMCS_FIELDS.map((f) => f.name)).size).toBe(VMCS_FIELDS.length);
    expect(new Set(VMCS_FIELDS.map((f) => f.encoding)).size).toBe(VMCS_FIELDS.length);
  });

  test("every field's type, width and readOnly agree with its encoding bits", () => {
    for (const f of VMCS_FIELDS) {
      expect(f.encoding).toBeLessThan(0x8000);
      expect(f.type).toBe(TYPES[(f.encoding >> 10) & 3]);
      expect(f.readOnly).toBe(((f.encoding >> 10) & 3) === 1);
      expect(f.isHigh).toBe((f.encoding & 1) === 1);
      expect(f.width).toBe(f.isHigh ? 32 : WIDTHS[(f.encoding >> 13) & 3]);
      // only 64-bit fields have an odd (high) encoding
      if (f.isHigh) expect((f.encoding >> 13) & 3).toBe(1);
    }
  });

  test('every 64-bit field has its _HIGH half, and every _HIGH half has its full field', () => {
    for (const f of VMCS_FIELDS) {
      if (f.width === 64) {
        expect(f.high).toBe(f.encoding + 1);
        const h = vmcsFieldByEncoding(f.high!)!;
        expect(h.name).toBe(`${f.name}_HIGH`);
        expect(h.isHigh).toBe(true);
        expect(h.full).toBe(f.encoding);
        expect(h.slot).toBe(f.slot);
      } else {
        expect(f.high).toBeNull();
      }
      if (f.isHigh) {
        const full = vmcsFieldByEncoding(f.full)!;
        expect(full.width).toBe(64);
        expect(f.name).toBe(`${full.name}_HIGH`);
      } else {
        expect(f.full).toBe(f.encoding);
      }
    }
  });

  test('slots are dense 0..N-1 and shared only by a field and its _HIGH half', () => {
    const bySlot = new Map<number, string[]>();
    for (const f of VMCS_FIELDS) {
      expect(Number.isInteger(f.slot)).toBe(true);
      expect(f.slot).toBeGreaterThanOrEqual(0);
      expect(f.slot).toBeLessThan(VMCS12_SLOT_COUNT);
      bySlot.set(f.slot, [...(bySlot.get(f.slot) ?? []), f.name]);
    }
    expect(bySlot.size).toBe(VMCS12_SLOT_COUNT);
    for (const names of bySlot.values()) {
      if (names.length === 1) continue;
      expect(names.length).toBe(2);
      const [a, b] = names.sort((x, y) => x.length - y.length);
      expect(b).toBe(`${a}_HIGH`);
    }
  });

  test('lookups by name and by number round-trip for every entry', () => {
    for (const f of VMCS_FIELDS) {
      expect(vmcsFieldByName(f.name)).toBe(f);
      expect(vmcsFieldByEncoding(f.encoding)).toBe(f);
      expect(vmcsFieldName(f.encoding)).toBe(f.name);
      expect(VMCS[f.name as keyof typeof VMCS]).toBe(f.encoding);
    }
    expect(Object.keys(VMCS).length).toBe(VMCS_FIELDS.length);
  });

  test('unknown encodings and names', () => {
    expect(vmcsFieldByEncoding(0x8000)).toBeUndefined();
    expect(vmcsFieldByEncoding(0x12681e)).toBeUndefined();
    expect(vmcsFieldByEncoding(-1)).toBeUndefined();
    expect(vmcsFieldByEncoding(0x681e + 0.5)).toBeUndefined();
    expect(vmcsFieldByEncoding(0x6c18)).toBeUndefined();
    expect(vmcsFieldByName('GUEST_RIP_HIGH')).toBeUndefined();
    expect(vmcsFieldName(0x7ffe)).toBe('0x7ffe');
    expect(vmcsFieldName(0x12)).toBe('0x0012');
  });

  test('the table is frozen', () => {
    expect(Object.isFrozen(VMCS_FIELDS)).toBe(true);
    expect(Object.isFrozen(VMCS_FIELDS[0])).toBe(true);
    expect(Object.isFrozen(VMCS)).toBe(true);
  });
});

describe('decodeVmcsEncoding / isReadOnlyEncoding', () => {
  test('decodes the parts', () => {
    expect(decodeVmcsEncoding(0x681e)).toEqual({ high: false, index: 0x0f, type: 'guest', width: 'natural' });
    expect(decodeVmcsEncoding(0x2401)).toEqual({ high: true, index: 0, type: 'exit-info', width: 32 });
    expect(decodeVmcsEncoding(0x2004)).toEqual({ high: false, index: 2, type: 'control', width: 64 });
    expect(decodeVmcsEncoding(0x0c0a)).toEqual({ high: false, index: 5, type: 'host', width: 16 });
    expect(decodeVmcsEncoding(0x4402)).toEqual({ high: false, index: 1, type: 'exit-info', width: 32 });
  });

  test('read-only class is bits 11:10 == 1 in every width', () => {
    for (const enc of [0x0400, 0x2400, 0x2401, 0x4400, 0x440e, 0x6400, 0x640a]) expect(isReadOnlyEncoding(enc)).toBe(true);
    for (const enc of [0x0000, 0x0800, 0x0c00, 0x2004, 0x4002, 0x4824, 0x681e, 0x6c16]) expect(isReadOnlyEncoding(enc)).toBe(false);
  });
});

describe('shadow VMCS lists', () => {
  test('header order and contents', () => {
    expect(VMCS_SHADOW_RO_FIELDS).toEqual([0x4402, 0x4404, 0x440c, 0x4408, 0x440a, 0x4406, 0x4816, 0x4818, 0x6400, 0x640a, 0x2400, 0x2401]);
    expect(VMCS_SHADOW_RW_FIELDS).toEqual([
      0x0810, 0x0812, 0x0c08, 0x0c0a, 0x4002, 0x4000, 0x4004, 0x4018, 0x4016, 0x401a, 0x401c, 0x4824, 0x482e, 0x681e,
      0x681c, 0x6800, 0x6802, 0x6804, 0x6820, 0x6000, 0x6004, 0x6006, 0x6c06, 0x6c08,
    ]);
  });

  test('every shadow field exists in the table and carries the matching tag', () => {
    for (const enc of VMCS_SHADOW_RO_FIELDS) expect(vmcsFieldByEncoding(enc)?.shadow).toBe('ro');
    for (const enc of VMCS_SHADOW_RW_FIELDS) expect(vmcsFieldByEncoding(enc)?.shadow).toBe('rw');
    const tagged = VMCS_FIELDS.filter((f) => f.shadow !== null).length;
    expect(tagged).toBe(VMCS_SHADOW_RO_FIELDS.length + VMCS_SHADOW_RW_FIELDS.length);
  });

  test('a shadowed 64-bit field lists its _HIGH right after it', () => {
    for (const list of [VMCS_SHADOW_RO_FIELDS, VMCS_SHADOW_RW_FIELDS]) {
      list.forEach((enc, i) => {
        if (vmcsFieldByEncoding(enc)!.width === 64) expect(list[i + 1]).toBe(enc + 1);
      });
    }
  });

  test('no RW shadow field is read-only by encoding, and no AR_BYTES field is RW', () => {
    for (const enc of VMCS_SHADOW_RW_FIELDS) expect(isReadOnlyEncoding(enc)).toBe(false);
    for (const f of VMCS_FIELDS) if (f.name.endsWith('_AR_BYTES')) expect(f.shadow).not.toBe('rw');
    expect(vmcsFieldByName('GUEST_CS_AR_BYTES')!.shadow).toBe('ro');
    expect(vmcsFieldByName('GUEST_SS_AR_BYTES')!.shadow).toBe('ro');
    expect(vmcsFieldByName('GUEST_DS_AR_BYTES')!.shadow).toBeNull();
  });

  test('VM_INSTRUCTION_ERROR is not shadowed', () => {
    expect(vmcsFieldByName('VM_INSTRUCTION_ERROR')!.shadow).toBeNull();
  });

  test('shadowNeeds marks exactly the three hardware-dependent RW fields', () => {
    const needs = VMCS_FIELDS.filter((f) => f.shadowNeeds !== null).map((f) => [f.name, f.shadowNeeds]);
    expect(needs.sort()).toEqual(
      [
        ['GUEST_INTR_STATUS', 'apicv'],
        ['GUEST_PML_INDEX', 'pml'],
        ['VMX_PREEMPTION_TIMER_VALUE', 'preemption-timer'],
      ].sort(),
    );
    for (const f of VMCS_FIELDS) if (f.shadowNeeds) expect(f.shadow).toBe('rw');
  });
});

describe('VMREAD/VMWRITE bitmap addressing', () => {
  test('index is encoding bits 14:0', () => {
    expect(vmcsBitmapPosition(0x4402)).toEqual({ byte: 0x4402 >> 3, bit: 0x4402 & 7 });
    expect(vmcsBitmapPosition(0x681e)).toEqual({ byte: 0xd03, bit: 6 });
    expect(vmcsBitmapPosition(0)).toEqual({ byte: 0, bit: 0 });
    expect(vmcsBitmapPosition(0x7fff)).toEqual({ byte: 0xfff, bit: 7 });
    expect(vmcsBitmapPosition(0x2401n)).toEqual({ byte: 0x480, bit: 1 });
  });

  test('any bit >= 15 set: always exits (null)', () => {
    expect(vmcsBitmapPosition(0x8000)).toBeNull();
    expect(vmcsBitmapPosition(0x1681e)).toBeNull();
    expect(vmcsBitmapPosition(0x100000000)).toBeNull();
    expect(vmcsBitmapPosition(1n << 63n)).toBeNull();
    expect(vmcsBitmapPosition((1n << 32n) | 0x681en)).toBeNull();
    expect(vmcsBitmapPosition(-1)).toBeNull();
  });

  test('every field fits the 4 KiB bitmap', () => {
    for (const f of VMCS_FIELDS) {
      const p = vmcsBitmapPosition(f.encoding)!;
      expect(p.byte).toBeLessThan(4096);
      expect(p.byte * 8 + p.bit).toBe(f.encoding);
    }
  });
});

describe('AR bytes', () => {
  test('mask and field range', () => {
    expect(VMX_AR_BYTES_MASK).toBe(0x1f0ff);
    const ar = VMCS_FIELDS.filter((f) => isArBytesField(f.encoding)).map((f) => f.name);
    expect(ar).toEqual([
      'GUEST_ES_AR_BYTES', 'GUEST_CS_AR_BYTES', 'GUEST_SS_AR_BYTES', 'GUEST_DS_AR_BYTES',
      'GUEST_FS_AR_BYTES', 'GUEST_GS_AR_BYTES', 'GUEST_LDTR_AR_BYTES', 'GUEST_TR_AR_BYTES',
    ]);
  });
});
