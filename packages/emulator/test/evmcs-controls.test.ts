/**
 * nested_evmcs_check_controls and nested_evmcs_filter_control_msr
 * (arch/x86/kvm/vmx/hyperv.c): with eVMCS enabled for the vCPU (config
 * evmcs), KVM refuses an entry with a pin-based, secondary, VM-exit or
 * VM-entry control eVMCS v1 cannot express, whether the VMCS is enlightened
 * or not, and L1's RDMSR of the control MSRs does not offer them; without
 * eVMCS the same controls enter. Under every built-in profile.
 */
import { EVMCS1_SUPPORTED, VMX_CAP_MSR, VMXERR } from '@nvx/arch';
import { BUILTIN_PROFILES, Replayer, parseProfile, vmxCapMsr } from '@nvx/emulator';
import { Outcome, makeHeader, parseEventLine } from '@nvx/trace';

const PROFILES = Object.keys(BUILTIN_PROFILES);
const ENTERED: Outcome = { k: 'entered' };
const INVALID_CONTROL: Outcome = { k: 'vmfail-valid', error: VMXERR.ENTRY_INVALID_CONTROL_FIELD };

function replayer(profile: string, evmcs: boolean): Replayer {
  return Replayer.fromHeader(makeHeader({ evmcs, memslots: [{ slot: 0, gfn: 0n, npages: 0x100, flags: 0 }] }), parseProfile(profile));
}

function launch(profile: string, evmcs: boolean, ...lines: string[]): Outcome {
  const r = replayer(profile, evmcs);
  const cfg = makeHeader().config;
  for (const l of ['l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', ...lines, 'l1.vmcs-ctls-must-be-1']) r.apply(parseEventLine(l, cfg));
  return r.apply(parseEventLine('l1.vmlaunch', cfg));
}

/** Controls KVM offers L1 without eVMCS, each with what it needs to enter. */
const UNSUPPORTED: [string, string[]][] = [
  ['posted interrupts', ['l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x80200000', 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x200', 'l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x81', 'l1.vmwrite VM_EXIT_CONTROLS 0x8000', 'l1.vmwrite POSTED_INTR_DESC_ADDR 0x3000', 'l1.vmwrite VIRTUAL_APIC_PAGE_ADDR 0x4000']],
  ['virtualize APIC accesses', ['l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x80000000', 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x1', 'l1.vmwrite APIC_ACCESS_ADDR 0x5000']],
  ['the VMX-preemption timer', ['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x40']],
  ['saving the preemption timer at VM-exit', ['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x40', 'l1.vmwrite VM_EXIT_CONTROLS 0x400000']],
];

describe.each(PROFILES)('under %s', (profile) => {
  test.each(UNSUPPORTED)('%s: enters without eVMCS, VMfailValid 7 with it', (_name, lines) => {
    expect(launch(profile, false, ...lines)).toEqual(ENTERED);
    expect(launch(profile, true, ...lines)).toEqual(INVALID_CONTROL);
  });

  test('the secondary controls count even when they are not activated; what eVMCS v1 has enters', () => {
    expect(launch(profile, true, 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x1')).toEqual(INVALID_CONTROL);
    expect(launch(profile, false, 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x1')).toEqual(ENTERED);
    // virtualize x2APIC mode with the TPR shadow, external-interrupt and NMI exiting: eVMCS v1 has them
    expect(launch(profile, true, 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x80200000', 'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x10', 'l1.vmwrite VIRTUAL_APIC_PAGE_ADDR 0x4000', 'l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x9')).toEqual(ENTERED);
  });
});

test("L1's RDMSR of the control MSRs hides what eVMCS v1 lacks; the VMM's view and the must-be-1 bits stay", () => {
  const cfg = makeHeader().config;
  const read = (evmcs: boolean, msr: number) => {
    const r = replayer('reference', evmcs);
    const o = r.apply(parseEventLine(`l1.rdmsr 0x${msr.toString(16)}`, cfg));
    return { value: o.k === 'value' ? o.value : -1n, kvm: vmxCapMsr(r.peek(), r.peek().vcpus[0], msr) };
  };
  for (const [msr, supported] of [
    [VMX_CAP_MSR.TRUE_PINBASED_CTLS, EVMCS1_SUPPORTED.pin],
    [VMX_CAP_MSR.PROCBASED_CTLS2, EVMCS1_SUPPORTED.secondary],
    [VMX_CAP_MSR.TRUE_EXIT_CTLS, EVMCS1_SUPPORTED.exit],
    [VMX_CAP_MSR.TRUE_ENTRY_CTLS, EVMCS1_SUPPORTED.entry],
  ] as const) {
    const plain = read(false, msr);
    const ev = read(true, msr);
    expect(plain.value).toBe(plain.kvm);
    expect(ev.value & 0xffffffffn).toBe(plain.value & 0xffffffffn);
    expect((ev.value >> 32n) & ~BigInt(supported)).toBe(0n);
    // something was hidden: KVM offers L1 more than eVMCS v1 has
    expect(ev.value).not.toBe(plain.value);
  }
});
