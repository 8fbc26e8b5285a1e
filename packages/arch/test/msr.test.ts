import {
  MSR,
  MSRS,
  MSR_BITMAP_SIZE,
  MSR_MISC_FEATURES_ENABLES_CPUID_FAULT,
  MSR_PLATFORM_INFO_CPUID_FAULT,
  NESTED_MERGED_MSRS,
  NESTED_MERGED_MSRS_KVM_NEXT,
  PAGE_SIZE,
  X2APIC_MSR_BASE,
  X2APIC_MSR_END,
  msrBitmapPosition,
  msrByName,
  msrName,
} from '../src';

describe('MSR bitmap addressing', () => {
  test('spot values', () => {
    expect(msrBitmapPosition(0xc0000100, 'read')).toEqual({ byte: 0x420, bit: 0 });
    expect(msrBitmapPosition(0x48, 'write')).toEqual({ byte: 0x809, bit: 0 });
    expect(msrBitmapPosition(0x48, 'read')).toEqual({ byte: 0x009, bit: 0 });
    expect(msrBitmapPosition(0xc0000102, 'write')).toEqual({ byte: 0xc20, bit: 2 });
    expect(msrBitmapPosition(0x808, 'read')).toEqual({ byte: 0x101, bit: 0 });
    expect(msrBitmapPosition(0x83f, 'write')).toEqual({ byte: 0x800 + 0x107, bit: 7 });
  });

  test('range edges', () => {
    expect(msrBitmapPosition(0, 'read')).toEqual({ byte: 0, bit: 0 });
    expect(msrBitmapPosition(0x1fff, 'read')).toEqual({ byte: 0x3ff, bit: 7 });
    expect(msrBitmapPosition(0x1fff, 'write')).toEqual({ byte: 0xbff, bit: 7 });
    expect(msrBitmapPosition(0xc0000000, 'read')).toEqual({ byte: 0x400, bit: 0 });
    expect(msrBitmapPosition(0xc0001fff, 'write')).toEqual({ byte: 0xfff, bit: 7 });
  });

  test('outside both ranges: null (always exits)', () => {
    for (const msr of [0x2000, 0x40000000, 0x40000073, 0xbfffffff, 0xc0002000, 0xc0010015, 0xffffffff, -1, 0.5]) {
      expect(msrBitmapPosition(msr, 'read')).toBeNull();
      expect(msrBitmapPosition(msr, 'write')).toBeNull();
    }
  });

  test('every in-range MSR maps to a distinct bit inside the page', () => {
    const seen = new Set<number>();
    for (const base of [0, 0xc0000000]) {
      for (let n = 0; n < 0x2000; n++) {
        for (const access of ['read', 'write'] as const) {
          const p = msrBitmapPosition(base + n, access)!;
          expect(p.byte).toBeGreaterThanOrEqual(0);
          expect(p.byte).toBeLessThan(MSR_BITMAP_SIZE);
          seen.add(p.byte * 8 + p.bit);
        }
      }
    }
    expect(seen.size).toBe(MSR_BITMAP_SIZE * 8);
    expect(MSR_BITMAP_SIZE).toBe(PAGE_SIZE);
  });
});

describe('MSR names', () => {
  test('indices', () => {
    const expected: Record<string, number> = {
      MSR_IA32_TSC: 0x10, MSR_IA32_APICBASE: 0x1b, MSR_IA32_SPEC_CTRL: 0x48, MSR_IA32_PRED_CMD: 0x49,
      MSR_IA32_FLUSH_CMD: 0x10b, MSR_PLATFORM_INFO: 0xce, MSR_MISC_FEATURES_ENABLES: 0x140, MSR_IA32_VMX_MISC: 0x485,
      MSR_IA32_MPERF: 0xe7, MSR_IA32_APERF: 0xe8, MSR_IA32_U_CET: 0x6a0, MSR_IA32_S_CET: 0x6a2,
      MSR_IA32_PL0_SSP: 0x6a4, MSR_IA32_PL3_SSP: 0x6a7, MSR_IA32_INT_SSP_TAB: 0x6a8, MSR_IA32_SYSENTER_CS: 0x174,
      MSR_IA32_SYSENTER_ESP: 0x175, MSR_IA32_SYSENTER_EIP: 0x176, MSR_IA32_DEBUGCTLMSR: 0x1d9, MSR_IA32_CR_PAT: 0x277,
      MSR_EFER: 0xc0000080, MSR_STAR: 0xc0000081, MSR_LSTAR: 0xc0000082, MSR_CSTAR: 0xc0000083,
      MSR_SYSCALL_MASK: 0xc0000084, MSR_FS_BASE: 0xc0000100, MSR_GS_BASE: 0xc0000101, MSR_KERNEL_GS_BASE: 0xc0000102,
      MSR_TSC_AUX: 0xc0000103, MSR_K7_HWCR: 0xc0010015, HV_X64_MSR_VP_ASSIST_PAGE: 0x40000073,
      MSR_X2APIC_ID: 0x802, MSR_X2APIC_VERSION: 0x803, MSR_X2APIC_TPR: 0x808, MSR_X2APIC_PPR: 0x80a,
      MSR_X2APIC_EOI: 0x80b, MSR_X2APIC_ISR0: 0x810, MSR_X2APIC_IRR7: 0x827, MSR_X2APIC_ICR: 0x830,
      MSR_X2APIC_SELF_IPI: 0x83f,
    };
    for (const [name, index] of Object.entries(expected)) {
      expect([name, MSR[name as keyof typeof MSR]]).toEqual([name, index]);
      expect(msrName(index)).toBe(name);
    }
  });

  test('names and indices are unique and round-trip', () => {
    expect(new Set(MSRS.map((m) => m.name)).size).toBe(MSRS.length);
    expect(new Set(MSRS.map((m) => m.index)).size).toBe(MSRS.length);
    for (const m of MSRS) {
      expect(msrByName(m.name)).toBe(m.index);
      expect(msrName(m.index)).toBe(m.name);
      expect(MSR[m.name as keyof typeof MSR]).toBe(m.index);
      expect(m.index).toBeGreaterThanOrEqual(0);
      expect(m.index).toBeLessThanOrEqual(0xffffffff);
    }
    expect(Object.keys(MSR).length).toBe(MSRS.length);
  });

  test('unknown', () => {
    expect(msrByName('MSR_NOPE')).toBeUndefined();
    expect(msrByName('EFER')).toBe(0xc0000080);
    expect(msrName(0x1234)).toBe('0x1234');
    expect(msrName(0xc0001234)).toBe('0xc0001234');
  });

  test('x2APIC registers lie in the x2APIC range', () => {
    expect(X2APIC_MSR_BASE).toBe(0x800);
    expect(X2APIC_MSR_END).toBe(0x8ff);
    for (const m of MSRS) {
      if (m.name.startsWith('MSR_X2APIC_')) {
        expect(m.index).toBeGreaterThanOrEqual(X2APIC_MSR_BASE);
        expect(m.index).toBeLessThanOrEqual(X2APIC_MSR_END);
      }
    }
  });

  test('CPUID-faulting bits', () => {
    expect(MSR_PLATFORM_INFO_CPUID_FAULT).toBe(0x80000000);
    expect(MSR_PLATFORM_INFO_CPUID_FAULT).toBeGreaterThan(0);
    expect(MSR_MISC_FEATURES_ENABLES_CPUID_FAULT).toBe(1);
  });
});

describe('nested merged MSR list', () => {
  test('<= 6.12 list, in order', () => {
    expect(NESTED_MERGED_MSRS).toEqual([
      { msr: 0xc0000100, read: true, write: true },
      { msr: 0xc0000101, read: true, write: true },
      { msr: 0xc0000102, read: true, write: true },
      { msr: 0x48, read: true, write: true },
      { msr: 0x49, read: false, write: true },
      { msr: 0x10b, read: false, write: true },
    ]);
  });

  test('kvm/next list extends it with APERF/MPERF and CET', () => {
    expect(NESTED_MERGED_MSRS_KVM_NEXT.slice(0, NESTED_MERGED_MSRS.length)).toEqual(NESTED_MERGED_MSRS);
    expect(NESTED_MERGED_MSRS_KVM_NEXT.slice(NESTED_MERGED_MSRS.length)).toEqual([
      { msr: 0xe8, read: true, write: false },
      { msr: 0xe7, read: true, write: false },
      { msr: 0x6a0, read: true, write: true },
      { msr: 0x6a2, read: true, write: true },
      { msr: 0x6a4, read: true, write: true },
      { msr: 0x6a5, read: true, write: true },
      { msr: 0x6a6, read: true, write: true },
      { msr: 0x6a7, read: true, write: true },
    ]);
    expect(NESTED_MERGED_MSRS_KVM_NEXT.some((m) => m.msr === 0x6a8)).toBe(false);
  });

  test('every merged MSR is bitmap-addressable and not in the x2APIC range', () => {
    for (const m of NESTED_MERGED_MSRS_KVM_NEXT) {
      expect(msrBitmapPosition(m.msr, 'read')).not.toBeNull();
      expect(m.msr >= X2APIC_MSR_BASE && m.msr <= X2APIC_MSR_END).toBe(false);
      expect(m.read || m.write).toBe(true);
    }
  });
});
