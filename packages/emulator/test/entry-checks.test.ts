/**
 * The VM-entry checks of nested_vmx_check_controls (arch/x86/kvm/vmx/nested.c)
 * the model makes, each with the value KVM refuses and the edge it still
 * accepts: the controls against the capability MSRs (vmx_control_verify),
 * the TPR threshold (nested_vmx_check_tpr_shadow_controls), the
 * EPT pointer rule (nested_vmx_check_eptp), the MSR-switch list addresses
 * (nested_vmx_check_msr_switch) and the VM-entry MSR-load list itself
 * (nested_vmx_load_msr), under every built-in profile: none of them is an
 * optimization's business.
 */
import { EXIT_REASON, VMXERR } from '@nvx/arch';
import { BUILTIN_PROFILES, Replayer, initialState, parseProfile } from '@nvx/emulator';
import { nestedVmxCheckEptp, vmxControlVerify } from '../src/entry-checks';
import { Outcome, makeHeader, parseEventLine } from '@nvx/trace';

const PROFILES = Object.keys(BUILTIN_PROFILES);
const cfg = makeHeader().config;

const ENTERED: Outcome = { k: 'entered' };
const INVALID_CONTROL: Outcome = { k: 'vmfail-valid', error: VMXERR.ENTRY_INVALID_CONTROL_FIELD };
const msrLoadFail = (index: number): Outcome => ({ k: 'exit', reason: (EXIT_REASON.MSR_LOAD_FAIL | 0x80000000) >>> 0, qual: BigInt(index) });

/** VMWRITEs of the must-be-1 bits of the four controls KVM verifies (the TRUE control MSRs' low halves) */
const MUST_BE_1 = ['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16', 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x4006172', 'l1.vmwrite VM_EXIT_CONTROLS 0x36dfb', 'l1.vmwrite VM_ENTRY_CONTROLS 0x11fb'];

/** A clear VMCS with a valid link pointer and the must-be-1 control bits, the given VMWRITEs and memory writes, then VMLAUNCH: its outcome. */
function launch(profile: string, ...lines: string[]): Outcome {
  const r = Replayer.fromHeader(makeHeader({ memslots: [{ slot: 0, gfn: 0n, npages: 0x100, flags: 0 }] }), parseProfile(profile));
  const setup = ['l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', 'l1.vmwrite VMCS_LINK_POINTER 0xffffffffffffffff', ...MUST_BE_1];
  for (const l of [...setup, ...lines]) {
    const o = r.apply(parseEventLine(l, cfg));
    expect({ l, o: o.k }).not.toEqual({ l, o: 'ignored' });
  }
  return r.apply(parseEventLine('l1.vmlaunch', cfg));
}

/** TPR shadow (bit 21) and secondary controls (bit 31), a virtual-APIC page at 0x5000. */
const TPR_SHADOW = ['l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x84206172', 'l1.vmwrite VIRTUAL_APIC_PAGE_ADDR 0x5000'];
/** A VM-entry MSR-load list at 0x8000 of the given (index, reserved) entries. */
function msrList(entries: [number, number][]): string[] {
  const lines = entries.flatMap(([index, reserved], i) => [`l1.write 0x${(0x8000 + 16 * i).toString(16)} 4 0x${index.toString(16)}`, `l1.write 0x${(0x8004 + 16 * i).toString(16)} 4 0x${reserved.toString(16)}`]);
  return [...lines, 'l1.vmwrite VM_ENTRY_MSR_LOAD_ADDR 0x8000', `l1.vmwrite VM_ENTRY_MSR_LOAD_COUNT 0x${entries.length.toString(16)}`];
}

describe.each(PROFILES)('under %s', (profile) => {
  test('TPR_THRESHOLD: bits 31:4 must be 0 with the TPR shadow and without virtual-interrupt delivery', () => {
    expect(launch(profile, ...TPR_SHADOW, 'l1.vmwrite TPR_THRESHOLD 0xf')).toEqual(ENTERED);
    expect(launch(profile, ...TPR_SHADOW, 'l1.vmwrite TPR_THRESHOLD 0x10')).toEqual(INVALID_CONTROL);
    expect(launch(profile, 'l1.vmwrite TPR_THRESHOLD 0xffffffff')).toEqual(ENTERED); // no TPR shadow
    expect(launch(profile, ...TPR_SHADOW, 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x200', 'l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x17', 'l1.vmwrite TPR_THRESHOLD 0xffffffff')).toEqual(ENTERED);
  });

  test('vmx_control_verify at entry: every control word keeps its must-be-1 bits and sets only bits KVM offers', () => {
    // pin-based: bit 2 is must-be-1, bit 8 is not offered; external-interrupt exiting (bit 0) is
    expect(launch(profile, 'l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x17')).toEqual(ENTERED);
    expect(launch(profile, 'l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x12')).toEqual(INVALID_CONTROL);
    expect(launch(profile, 'l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x116')).toEqual(INVALID_CONTROL);
    // primary: bit 1 is must-be-1, bit 0 is never offered
    expect(launch(profile, 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x4006170')).toEqual(INVALID_CONTROL);
    expect(launch(profile, 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x4006173')).toEqual(INVALID_CONTROL);
    // secondary: bit 10 (PAUSE-loop exiting) is not offered, which counts only while secondary controls are activated
    expect(launch(profile, 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x400')).toEqual(ENTERED);
    expect(launch(profile, 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x400', 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x84006172')).toEqual(INVALID_CONTROL);
    // VM-exit: bit 1 is must-be-1, bit 2 (save debug controls) may be either, bit 24 is not offered
    expect(launch(profile, 'l1.vmwrite VM_EXIT_CONTROLS 0x36dff')).toEqual(ENTERED);
    expect(launch(profile, 'l1.vmwrite VM_EXIT_CONTROLS 0x36df9')).toEqual(INVALID_CONTROL);
    expect(launch(profile, 'l1.vmwrite VM_EXIT_CONTROLS 0x1036dfb')).toEqual(INVALID_CONTROL);
    // VM-entry: bit 1 is must-be-1, bit 17 is not offered
    expect(launch(profile, 'l1.vmwrite VM_ENTRY_CONTROLS 0x11f9')).toEqual(INVALID_CONTROL);
    expect(launch(profile, 'l1.vmwrite VM_ENTRY_CONTROLS 0x211fb')).toEqual(INVALID_CONTROL);
  });

  test('MSR-switch lists: 16-byte aligned, starting and ending below MAXPHYADDR', () => {
    expect(launch(profile, 'l1.vmwrite VM_EXIT_MSR_STORE_ADDR 0x3ffffffffff0', 'l1.vmwrite VM_EXIT_MSR_STORE_COUNT 0x1')).toEqual(ENTERED);
    expect(launch(profile, 'l1.vmwrite VM_EXIT_MSR_STORE_ADDR 0x3ffffffffff0', 'l1.vmwrite VM_EXIT_MSR_STORE_COUNT 0x2')).toEqual(INVALID_CONTROL);
    expect(launch(profile, 'l1.vmwrite VM_EXIT_MSR_LOAD_ADDR 0x8008', 'l1.vmwrite VM_EXIT_MSR_LOAD_COUNT 0x1')).toEqual(INVALID_CONTROL);
    expect(launch(profile, 'l1.vmwrite VM_EXIT_MSR_LOAD_ADDR 0x8008', 'l1.vmwrite VM_EXIT_MSR_LOAD_COUNT 0x0')).toEqual(ENTERED);
    expect(launch(profile, 'l1.vmwrite VM_ENTRY_MSR_LOAD_ADDR 0x8004', 'l1.vmwrite VM_ENTRY_MSR_LOAD_COUNT 0x1')).toEqual(INVALID_CONTROL);
  });

  test('VM-entry MSR-load list: the first bad entry fails the entry with MSR_LOAD_FAIL and its 1-based index', () => {
    expect(launch(profile, ...msrList([[0x10, 0], [0x174, 0]]))).toEqual(ENTERED);
    expect(launch(profile, ...msrList([[0x10, 0], [0xc0000100, 0]]))).toEqual(msrLoadFail(2)); // MSR_FS_BASE
    expect(launch(profile, ...msrList([[0xc0000101, 0]]))).toEqual(msrLoadFail(1)); // MSR_GS_BASE
    expect(launch(profile, ...msrList([[0x10, 0], [0x10, 0], [0x8b, 0]]))).toEqual(msrLoadFail(3)); // microcode revision
    expect(launch(profile, ...msrList([[0x10, 1]]))).toEqual(msrLoadFail(1)); // reserved half not 0
    // outside every memslot: the read fails
    expect(launch(profile, 'l1.vmwrite VM_ENTRY_MSR_LOAD_ADDR 0x13370000', 'l1.vmwrite VM_ENTRY_MSR_LOAD_COUNT 0x1')).toEqual(msrLoadFail(1));
  });
});

test('vmxControlVerify against a capability MSR (allowed-0 in bits 31:0, allowed-1 in bits 63:32)', () => {
  const cap = (0xffn << 32n) | 0x16n;
  expect(vmxControlVerify(0x16, cap)).toBe(true);
  expect(vmxControlVerify(0xff, cap)).toBe(true);
  expect(vmxControlVerify(0x12, cap)).toBe(false);
  expect(vmxControlVerify(0x116, cap)).toBe(false);
  expect(vmxControlVerify(0x80000016, cap)).toBe(false);
});

test('nested_vmx_check_eptp: write-back and a 4-level walk, no reserved bit, below MAXPHYADDR', () => {
  const w = initialState(makeHeader({ memslots: [{ slot: 0, gfn: 0n, npages: 0x10, flags: 0 }] }), parseProfile('kvm'));
  const ok = (eptp: bigint) => nestedVmxCheckEptp(w, w.vcpus[0], eptp);
  expect(ok(0x701en)).toBe(true);
  expect(ok(0x0n)).toBe(false); // UC and a 1-level walk
  expect(ok(0x7018n)).toBe(false); // UC: KVM does not offer it
  expect(ok(0x701fn)).toBe(false); // memory type 7
  expect(ok(0x7016n)).toBe(false); // a 3-level walk
  expect(ok(0x709en)).toBe(false); // reserved bit 7
  expect(ok(0x40000000001en)).toBe(false); // bit 46: MAXPHYADDR
  expect(ok(0x3ffffffff01en)).toBe(true); // the last page below it
});
