/**
 * Rules where the model follows upstream KVM (Linux v6.13) to the letter:
 * shadow-VMCS VMPTRLD and VMLAUNCH, the VMX capability MSRs and their
 * restore rules, MSR_PLATFORM_INFO, the APIC-access page without a memslot,
 * VM_EXIT_INSTRUCTION_LEN, 64-bit VMCS operands, INVEPT/INVVPID, and the
 * host's own writes into guest memory. Each rule runs under every built-in
 * profile: none of them is an optimization's business.
 */
import { EPT_VPID_CAP, MSR, VMX_CAP_MSR, VMXERR, kvmVmxCapMsrs, vmxRestoreMsr } from '@nvx/arch';
import { BUILTIN_PROFILES, Replayer, parseProfile } from '@nvx/emulator';
import { Outcome, WorldConfig, makeHeader, parseEventLine } from '@nvx/trace';

const PROFILES = Object.keys(BUILTIN_PROFILES);

function replayer(config: Partial<WorldConfig>, profile: string): Replayer {
  return Replayer.fromHeader(makeHeader({ memslots: [{ slot: 0, gfn: 0n, npages: 0x100, flags: 0 }, { slot: 1, gfn: 0x200n, npages: 1, flags: 0 }], ...config }), parseProfile(profile));
}

function run(r: Replayer, ...lines: string[]): Outcome[] {
  const cfg = makeHeader().config;
  return lines.map((l) => r.apply(parseEventLine(l, cfg)));
}

const ok: Outcome = { k: 'ok' };
const value = (v: bigint): Outcome => ({ k: 'value', value: v });
const vmfailValid = (error: number): Outcome => ({ k: 'vmfail-valid', error });
const VMXON = ['l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000'];
/** VMWRITEs of the must-be-1 bits of the four controls KVM verifies at VM-entry (vmx_control_verify) */
const MUST_BE_1 = ['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16', 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x4006172', 'l1.vmwrite VM_EXIT_CONTROLS 0x36dfb', 'l1.vmwrite VM_ENTRY_CONTROLS 0x11fb'];

describe.each(PROFILES)('under %s', (profile) => {
  test('VMPTRLD of a shadow VMCS (revision bit 31) is accepted when L1 has VMCS shadowing; VMLAUNCH/VMRESUME of it is VMfailInvalid', () => {
    const r = replayer({ shadowVmcs: true }, profile);
    run(r, ...VMXON);
    expect(run(r, 'l1.write 0x3000 4 0x91e57ed0', 'l1.vmptrld 0x3000', 'l1.vmwrite GUEST_RIP 0x401000', 'l1.vmread GUEST_RIP', 'l1.vmlaunch', 'l1.vmresume')).toEqual([
      ok,
      ok,
      ok,
      value(0x401000n),
      { k: 'vmfail-invalid' },
      { k: 'vmfail-invalid' },
    ]);
    // an ordinary VMCS made current again launches
    expect(run(r, 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', 'l1.vmwrite VMCS_LINK_POINTER 0xffffffffffffffff', ...MUST_BE_1, 'l1.vmlaunch')).toEqual([ok, ok, ok, ok, ok, ok, ok, { k: 'entered' }]);
  });

  test('VMPTRLD of a shadow VMCS is refused (bad revision) once the VMM took VMCS shadowing away from L1', () => {
    const r = replayer({}, profile);
    const ctls2 = kvmVmxCapMsrs({ ept: true, vpid: true, apicv: true, pml: true, vmwriteAnyField: true }).get(VMX_CAP_MSR.PROCBASED_CTLS2)!;
    const without = ctls2 & ~(BigInt(1 << 14) << 32n);
    expect(run(r, `host.set-msr MSR_IA32_VMX_PROCBASED_CTLS2 0x${without.toString(16)}`, ...VMXON, 'l1.write 0x3000 4 0x91e57ed0', 'l1.vmptrld 0x3000')).toEqual([
      ok,
      ok,
      ok,
      ok,
      { k: 'vmfail-invalid' }, // no current VMCS: nested_vmx_fail gives VMfailInvalid
    ]);
  });

  test('VMPTRLD of a page without a memslot is VMfailValid INCORRECT_VMCS_REVISION_ID (unbacked reads are all ones)', () => {
    const r = replayer({}, profile);
    expect(run(r, ...VMXON, 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', 'l1.vmptrld 0x300000')).toEqual([ok, ok, ok, ok, vmfailValid(VMXERR.VMPTRLD_INCORRECT_VMCS_REVISION_ID)]);
  });

  test('the VMX capability MSRs read as KVM reports them; L1 cannot write them; the VMM may only narrow them, and not in VMX operation', () => {
    const r = replayer({ vmwriteAnyField: true }, profile);
    const kvm = kvmVmxCapMsrs({ ept: true, vpid: true, apicv: true, pml: true, vmwriteAnyField: true });
    expect(run(r, 'l1.rdmsr MSR_IA32_VMX_BASIC', 'l1.rdmsr MSR_IA32_VMX_TRUE_PROCBASED_CTLS', 'l1.rdmsr MSR_IA32_VMX_MISC')).toEqual([
      value(kvm.get(VMX_CAP_MSR.BASIC)!),
      value(kvm.get(VMX_CAP_MSR.TRUE_PROCBASED_CTLS)!),
      value(0x20000165n),
    ]);
    expect(run(r, 'l1.wrmsr MSR_IA32_VMX_MISC 0x165')).toEqual([{ k: 'gp' }]);
    // widening: bit 31 (reserved) of MISC is refused; narrowing: bit 29 cleared is accepted
    expect(run(r, 'host.set-msr MSR_IA32_VMX_MISC 0xa0000165')[0].k).toBe('ignored');
    expect(run(r, 'host.set-msr MSR_IA32_VMX_MISC 0x165', 'l1.rdmsr MSR_IA32_VMX_MISC')).toEqual([ok, value(0x165n)]);
    // ... and the VMWRITE rule follows the vCPU's MISC: read-only fields are refused now
    expect(run(r, ...VMXON, 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', 'l1.vmwrite VM_EXIT_REASON 0x1')).toEqual([ok, ok, ok, ok, vmfailValid(VMXERR.VMWRITE_READ_ONLY_VMCS_COMPONENT)]);
    // in VMX operation the VMM cannot change them (-EBUSY)
    expect(run(r, 'host.set-msr MSR_IA32_VMX_MISC 0x20000165')[0].k).toBe('ignored');
  });

  test('MSR_PLATFORM_INFO: the VMM may clear bit 31 while faulting is on; without KVM_CAP_MSR_PLATFORM_INFO the guest read is #GP', () => {
    const r = replayer({}, profile);
    expect(run(r, 'l1.wrmsr MSR_MISC_FEATURES_ENABLES 0x1', 'host.platform-info 0x0', 'l1.rdmsr MSR_PLATFORM_INFO', 'host.set-msr MSR_PLATFORM_INFO 0x80000000', 'l1.rdmsr MSR_PLATFORM_INFO')).toEqual([
      ok,
      ok,
      value(0n),
      ok,
      value(0x80000000n),
    ]);
    const off = replayer({ msrPlatformInfo: false }, profile);
    expect(run(off, 'l1.rdmsr MSR_PLATFORM_INFO', 'l1.rdmsr MSR_MISC_FEATURES_ENABLES', 'l1.wrmsr MSR_MISC_FEATURES_ENABLES 0x1')).toEqual([{ k: 'gp' }, value(0n), ok]);
    expect(MSR.MSR_PLATFORM_INFO).toBe(0xce);
  });

  test('an L2 access to the APIC-access page after its memslot went away exits to userspace (MMIO), not to L1; the next entry is an internal error', () => {
    const r = replayer({}, profile);
    run(r, ...VMXON, 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', 'l1.vmwrite VMCS_LINK_POINTER 0xffffffffffffffff', ...MUST_BE_1);
    run(r, 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x84006172', 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x1', 'l1.vmwrite APIC_ACCESS_ADDR 0x200000');
    expect(run(r, 'l1.vmlaunch', 'l2.apic-read 0x30')).toEqual([{ k: 'entered' }, { k: 'exit', reason: 44, qual: 0x30n }]);
    expect(run(r, 'l1.vmresume', 'host.memslot-delete 1', 'l2.apic-write 0x80 0x10', 'l2.vmcall')).toEqual([
      { k: 'entered' },
      ok,
      { k: 'userspace', exit: 'mmio', gpa: 0x200080n },
      { k: 'exit', reason: 18, qual: 0n },
    ]);
    expect(run(r, 'l1.vmresume')).toEqual([{ k: 'userspace', exit: 'internal-error' }]);
    expect(r.peek().vcpus[0].nested.guestMode).toBe(false);
    // the VMM adds the slot back with the same memory: L2 runs again
    expect(run(r, 'host.memslot-readd 1', 'l1.vmresume')).toEqual([ok, { k: 'entered' }]);
  });

  test('VM_EXIT_INSTRUCTION_LEN after each exit the model delivers', () => {
    const r = replayer({}, profile);
    run(r, ...VMXON, 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', 'l1.vmwrite VMCS_LINK_POINTER 0xffffffffffffffff', ...MUST_BE_1);
    const len = (l2: string) => run(r, 'l1.vmresume', l2, 'l1.vmread VM_EXIT_INSTRUCTION_LEN')[2];
    expect(run(r, 'l1.vmlaunch', 'l2.cpuid 0x0 0x0 0', 'l1.vmread VM_EXIT_INSTRUCTION_LEN')[2]).toEqual(value(2n));
    expect(len('l2.rdmsr MSR_FS_BASE')).toEqual(value(2n));
    expect(len('l2.wrmsr MSR_FS_BASE 0x1')).toEqual(value(2n));
    expect(len('l2.vmcall')).toEqual(value(3n));
    // L1 intercepts #GP and turns faulting on: L0 injects the #GP of L2's CPUID, vmcs02 holds the CPUID's length
    const f = replayer({ l2CpuidFaultArchitectural: true }, profile);
    run(f, ...VMXON, 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', 'l1.vmwrite VMCS_LINK_POINTER 0xffffffffffffffff', ...MUST_BE_1, 'l1.vmwrite EXCEPTION_BITMAP 0x2000', 'l1.wrmsr MSR_MISC_FEATURES_ENABLES 0x1');
    const out = run(f, 'l1.vmlaunch', 'l2.cpuid 0x0 0x0 3', 'l1.vmread VM_EXIT_INSTRUCTION_LEN');
    expect(out[1]).toEqual({ k: 'exit', reason: 0, qual: 0n }); // EXCEPTION_NMI
    expect(out[2]).toEqual(value(2n));
  });

  test('VMREAD/VMWRITE with bits 63:32 of the encoding set: VMfailValid UNSUPPORTED_VMCS_COMPONENT; VMfailInvalid without a current VMCS; #UD outside VMX operation', () => {
    const r = replayer({ shadowVmcs: true }, profile);
    expect(run(r, 'l1.vmread 0x100004402')).toEqual([{ k: 'ud' }]);
    run(r, ...VMXON);
    expect(run(r, 'l1.vmread 0x100004402', 'l1.vmwrite 0x100004402 0x1')).toEqual([{ k: 'vmfail-invalid' }, { k: 'vmfail-invalid' }]);
    run(r, 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000');
    expect(run(r, 'l1.vmread 0x100004402', 'l1.vmwrite 0xffffffff0000681e 0x1', 'l1.vmread-wide 0x681e')).toEqual([
      vmfailValid(VMXERR.UNSUPPORTED_VMCS_COMPONENT),
      vmfailValid(VMXERR.UNSUPPORTED_VMCS_COMPONENT),
      value(0n),
    ]);
    expect(run(r, 'l1.vmread VM_INSTRUCTION_ERROR')).toEqual([value(BigInt(VMXERR.UNSUPPORTED_VMCS_COMPONENT))]);
  });

  test('INVEPT and INVVPID: #UD without the capability or outside VMX operation, VMfailValid 28 for bad operands, ok otherwise', () => {
    const none = replayer({ ept: false, vpid: false }, profile);
    expect(run(none, ...VMXON, 'l1.invept 0x2 0x0', 'l1.invvpid 0x2 0x0 0x0')).toEqual([ok, ok, { k: 'ud' }, { k: 'ud' }]);
    const r = replayer({}, profile);
    expect(run(r, 'l1.invept 0x2 0x0', 'l1.invvpid 0x2 0x0 0x0')).toEqual([{ k: 'ud' }, { k: 'ud' }]);
    run(r, ...VMXON, 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000');
    const bad = vmfailValid(VMXERR.INVALID_OPERAND_TO_INVEPT_INVVPID);
    expect(
      run(
        r,
        'l1.invept 0x1 0x5e', // WB, 4-level, A/D
        'l1.invept 0x2 0xffff',
        'l1.invept 0x0 0x5e', // type 0 is not an INVEPT type
        'l1.invept 0x1 0x5', // memory type 5
        'l1.invept 0x1 0x16', // page-walk length 3
        'l1.invept 0x1 0xf9e', // reserved bits 11:7
        'l1.invept 0x1 0x40000000005e', // beyond MAXPHYADDR
        'l1.invept 0x100000001 0x5e',
      ),
    ).toEqual([ok, ok, bad, bad, bad, bad, bad, bad]);
    expect(
      run(
        r,
        'l1.invvpid 0x0 0x1 0x7fffffff0000',
        'l1.invvpid 0x0 0x1 0x800000000000', // non-canonical
        'l1.invvpid 0x0 0x0 0x1000', // VPID 0
        'l1.invvpid 0x1 0x0 0x0',
        'l1.invvpid 0x3 0x5 0x0',
        'l1.invvpid 0x2 0x0 0x0',
        'l1.invvpid 0x2 0x10000 0x0', // bits 63:16
        'l1.invvpid 0x4 0x1 0x0',
      ),
    ).toEqual([ok, bad, bad, bad, ok, ok, bad, bad]);
  });

  test('VM-entry control checks (nested_check_vm_execution_controls): each refusal is VMfailValid 7, the fixed VMCS enters', () => {
    const bad = vmfailValid(VMXERR.ENTRY_INVALID_CONTROL_FIELD);
    const cases: [string[], string[]][] = [
      [['l1.vmwrite CR3_TARGET_COUNT 0x1'], ['l1.vmwrite CR3_TARGET_COUNT 0x0']],
      [['l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x6006172', 'l1.vmwrite IO_BITMAP_A 0x3001'], ['l1.vmwrite IO_BITMAP_A 0x3000']],
      [['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x36'], ['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x3e']],
      [['l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x84006172', 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x20'], ['l1.vmwrite VIRTUAL_PROCESSOR_ID 0x1']],
      [['l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x84006172', 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x20000'], ['l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x20002', 'l1.vmwrite EPT_POINTER 0x5e', 'l1.vmwrite PML_ADDRESS 0x4000']],
      [['l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x84006172', 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x80'], ['l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x82', 'l1.vmwrite EPT_POINTER 0x5e']],
      [['l1.vmwrite VM_EXIT_CONTROLS 0x436dfb'], ['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x56']],
    ];
    for (const [breakIt, fixIt] of cases) {
      const r = replayer({}, profile);
      run(r, ...VMXON, 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', 'l1.vmwrite VMCS_LINK_POINTER 0xffffffffffffffff', ...MUST_BE_1);
      run(r, ...breakIt);
      expect([breakIt, run(r, 'l1.vmlaunch')[0]]).toEqual([breakIt, bad]);
      run(r, ...fixIt);
      expect([fixIt, run(r, 'l1.vmlaunch')[0]]).toEqual([fixIt, { k: 'entered' }]);
    }
  });

  test('host.guest-write and host.guest-copy change guest bytes without an L1 store; memslot-readd brings back the same pages', () => {
    const r = replayer({}, profile);
    // a store that would cross into a frame without a memslot writes nothing
    expect(run(r, 'host.guest-write 0x200ffc 8 0x1122334455667788', 'l1.read 0x200ffc 4')).toEqual([{ k: 'ignored', why: 'gpa 0x200ffc is not in a memslot' }, value(0n)]);
    expect(
      run(r, 'host.guest-write 0x200ff8 8 0x1122334455667788', 'host.guest-copy 0x5002 0x200ff8 6', 'l1.read 0x5000 8', 'host.guest-copy 0x5000 0x5002 6', 'l1.read 0x5000 8'),
    ).toEqual([ok, ok, value(0x3344556677880000n), ok, value(0x3344334455667788n)]);
    expect(run(r, 'host.memslot-delete 1', 'l1.read 0x200ff8 8', 'host.memslot-readd 1', 'l1.read 0x200ff8 8', 'host.memslot-readd 1')).toEqual([
      ok,
      { k: 'ignored', why: 'gpa 0x200ff8 is not in a memslot' },
      ok,
      value(0x1122334455667788n),
      { k: 'ignored', why: 'memslot 1 was never deleted' },
    ]);
  });
});

describe('VMX capability MSR data (nested_vmx_setup_ctls_msrs, vmx_set_vmx_msr)', () => {
  const all = { ept: true, vpid: true, apicv: true, pml: true, vmwriteAnyField: true };
  const kvm = kvmVmxCapMsrs(all);

  test('every control MSR: the allowed-0 half is a subset of the allowed-1 half; non-TRUE = TRUE plus the default-1 bits', () => {
    for (const msr of [0x481, 0x482, 0x483, 0x484, 0x48b, 0x48d, 0x48e, 0x48f, 0x490]) {
      const v = kvm.get(msr)!;
      const low = v & 0xffffffffn;
      const high = v >> 32n;
      expect({ msr, sub: (low & ~high) === 0n }).toEqual({ msr, sub: true });
    }
    expect(kvm.get(0x482)! & ~kvm.get(0x48e)!).toBe(0x0401e172n & ~kvm.get(0x48e)!);
    // USE_MSR_BITMAPS and ACTIVATE_SECONDARY_CONTROLS are offered; CR3 load/store exiting may be 0
    expect((kvm.get(0x48e)! >> 32n) & (1n << 28n)).not.toBe(0n);
    expect(kvm.get(0x48e)! & (3n << 15n)).toBe(0n);
  });

  test('BASIC: revision 0x11e57ed0, 4 KiB, write-back, TRUE controls; VMCS_ENUM: highest vmcs12 field index 0x19 (TSC_MULTIPLIER)', () => {
    const basic = kvm.get(0x480)!;
    expect(basic & 0x7fffffffn).toBe(0x11e57ed0n);
    expect((basic >> 32n) & 0x1fffn).toBe(0x1000n);
    expect((basic >> 50n) & 0xfn).toBe(6n);
    expect(basic & (1n << 55n)).not.toBe(0n);
    expect(kvm.get(0x48a)).toBe(0x19n << 1n);
  });

  test('features: EPT and VPID capabilities follow the configuration', () => {
    const no = kvmVmxCapMsrs({ ...all, ept: false, vpid: false });
    expect(no.get(0x48c)).toBe(0n);
    expect((no.get(0x48b)! >> 32n) & 0x22n).toBe(0n);
    expect(kvm.get(0x48c)! & EPT_VPID_CAP.INVEPT).not.toBe(0n);
    expect((kvm.get(0x48c)! >> 40n) & 0xfn).toBe(0xfn);
  });

  test('restore: narrowing accepted, widening refused, the non-TRUE control MSRs and FIXED1 never', () => {
    const cur = new Map<number, bigint>();
    const proc = kvm.get(0x48e)!;
    const narrowed = proc & ~(1n << (28n + 32n));
    const r = vmxRestoreMsr(kvm, cur, 0x48e, narrowed);
    expect(r).toEqual(new Map([[0x48e, narrowed], [0x482, narrowed | 0x0401e172n]]));
    expect(typeof vmxRestoreMsr(kvm, cur, 0x48e, proc | (1n << (17n + 32n)))).toBe('string'); // tertiary controls: not offered
    expect(typeof vmxRestoreMsr(kvm, cur, 0x48e, proc & ~0x2n)).toBe('string'); // clears a must-be-1 bit
    expect(typeof vmxRestoreMsr(kvm, cur, 0x482, kvm.get(0x482)!)).toBe('string');
    expect(typeof vmxRestoreMsr(kvm, cur, 0x487, kvm.get(0x487)!)).toBe('string');
    expect(typeof vmxRestoreMsr(kvm, cur, 0x480, kvm.get(0x480)! | (1n << 48n))).toBe('string');
    expect(typeof vmxRestoreMsr(kvm, cur, 0x480, kvm.get(0x480)! + 1n)).toBe('string'); // another revision
    expect(vmxRestoreMsr(kvm, cur, 0x480, kvm.get(0x480)! & ~(1n << 54n))).toBeInstanceOf(Map);
    expect(typeof vmxRestoreMsr(kvm, cur, 0x486, 0x80000001n)).toBe('string'); // CR0_FIXED0 without NE and PG
    expect(vmxRestoreMsr(kvm, cur, 0x486, 0x80000023n)).toBeInstanceOf(Map);
    expect(typeof vmxRestoreMsr(kvm, cur, 0x491, 2n)).toBe('string');
    expect(typeof vmxRestoreMsr(kvm, cur, 0x48c, kvm.get(0x48c)! | EPT_VPID_CAP.EPTP_UC)).toBe('string');
  });
});
