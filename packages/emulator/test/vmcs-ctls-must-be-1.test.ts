/**
 * l1.vmcs-ctls-must-be-1: L1 sets the must-be-1 bits of the four control
 * words the TRUE capability MSRs govern, keeping what is set, as the VMREADs
 * and VMWRITEs it is made of. Under every built-in profile it leaves the
 * same vmcs12 as those instructions written out, fails as the first of them
 * fails, and follows the capability MSRs the VMM restored.
 */
import { VMCS, VMX_CAP_MSR, kvmVmxCapMsrs } from '@nvx/arch';
import { BUILTIN_PROFILES, Replayer, archHash, parseProfile, vmcs12Get } from '@nvx/emulator';
import { Outcome, WorldConfig, makeHeader, parseEventLine } from '@nvx/trace';

const PROFILES = Object.keys(BUILTIN_PROFILES);

function replayer(profile: string, config: Partial<WorldConfig> = {}): Replayer {
  return Replayer.fromHeader(makeHeader({ memslots: [{ slot: 0, gfn: 0n, npages: 0x40, flags: 0 }], ...config }), parseProfile(profile));
}

function run(r: Replayer, ...lines: string[]): Outcome[] {
  const cfg = makeHeader().config;
  return lines.map((l) => r.apply(parseEventLine(l, cfg)));
}

const SETUP = ['l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000'];
const ok: Outcome = { k: 'ok' };

describe.each(PROFILES)('under %s', (profile) => {
  for (const shadowVmcs of [false, true]) {
    test(`sets the must-be-1 bits, keeps the others, and equals the VMREAD/VMWRITE sequence (shadowVmcs=${shadowVmcs})`, () => {
      const a = replayer(profile, { shadowVmcs });
      const b = replayer(profile, { shadowVmcs });
      const mine = ['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x8', 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x80'];
      run(a, ...SETUP, ...mine);
      run(b, ...SETUP, ...mine);
      expect(run(a, 'l1.vmcs-ctls-must-be-1')).toEqual([ok]);
      // what kvm-unit-tests' init_vmcs_ctrl amounts to, instruction by instruction
      const spelt = [
        ['PIN_BASED_VM_EXEC_CONTROL', 0x8n | 0x16n],
        ['CPU_BASED_VM_EXEC_CONTROL', 0x80n | 0x4006172n],
        ['VM_EXIT_CONTROLS', 0x36dfbn],
        ['VM_ENTRY_CONTROLS', 0x11fbn],
      ] as const;
      for (const [f, v] of spelt) run(b, `l1.vmread ${f}`, `l1.vmwrite ${f} 0x${v.toString(16)}`);
      expect(archHash(a.peek())).toBe(archHash(b.peek()));
      expect(a.cost).toEqual(b.cost);
      // L1's view (with shadow VMCS, the shadowed controls live in the shadow VMCS until the entry)
      expect(run(a, ...spelt.map(([f]) => `l1.vmread ${f}`))).toEqual(spelt.map(([, v]) => ({ k: 'value', value: v })));
      // the vmcs12 it leaves enters
      expect(run(a, 'l1.vmlaunch')).toEqual([{ k: 'entered' }]);
    });
  }

  test('fails as its first VMREAD fails: #UD outside VMX operation, VMfailInvalid without a current VMCS', () => {
    const r = replayer(profile);
    expect(run(r, 'l1.vmcs-ctls-must-be-1')).toEqual([{ k: 'ud' }]);
    expect(run(r, 'l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.vmcs-ctls-must-be-1')).toEqual([ok, ok, { k: 'vmfail-invalid' }]);
  });
});

test('follows the capability MSRs the VMM restored (a TRUE MSR with more must-be-1 bits)', () => {
  const r = replayer('reference');
  // vmx_restore_control_msr: the VMM may add must-be-1 bits; here external-interrupt exiting (bit 0)
  const kvm = kvmVmxCapMsrs({ ept: false, vpid: false, apicv: false, pml: false, vmwriteAnyField: false }).get(VMX_CAP_MSR.TRUE_PINBASED_CTLS)!;
  expect(run(r, `host.set-msr MSR_IA32_VMX_TRUE_PINBASED_CTLS 0x${(kvm | 1n).toString(16)}`)).toEqual([ok]);
  run(r, ...SETUP, 'l1.vmcs-ctls-must-be-1');
  expect(vmcs12Get(r.peek().vcpus[0].nested, VMCS.PIN_BASED_VM_EXEC_CONTROL)).toBe(0x17n);
});

/**
 * l1.evmcs-ctls-must-be-1: the same set-up by an L1 that stores eVMCS
 * members (it may not VMWRITE while an eVMCS is current).
 */
describe.each(PROFILES)('the eVMCS form under %s', (profile) => {
  // VMXON, the eVMCS at 0x3000 with KVM_EVMCS_VERSION, named in the VP assist page
  const EVMCS_SETUP = ['l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.write 0x3000 4 0x1', 'l1.evmcs-ptr 0x3000'];
  const spelt = [
    ['PIN_BASED_VM_EXEC_CONTROL', 0x8n | 0x16n],
    ['CPU_BASED_VM_EXEC_CONTROL', 0x80n | 0x4006172n],
    ['VM_EXIT_CONTROLS', 0x36dfbn],
    ['VM_ENTRY_CONTROLS', 0x11fbn],
  ] as const;

  test('ORs the must-be-1 bits into the members, equals the member stores spelt out, and the eVMCS enters', () => {
    const a = replayer(profile, { evmcs: true });
    const b = replayer(profile, { evmcs: true });
    const mine = ['l1.evmcs-write 0x3000 PIN_BASED_VM_EXEC_CONTROL 0x8', 'l1.evmcs-write 0x3000 CPU_BASED_VM_EXEC_CONTROL 0x80'];
    run(a, ...EVMCS_SETUP, ...mine);
    run(b, ...EVMCS_SETUP, ...mine);
    expect(run(a, 'l1.evmcs-ctls-must-be-1 0x3000')).toEqual([ok]);
    expect(run(b, ...spelt.map(([f, v]) => `l1.evmcs-write 0x3000 ${f} 0x${v.toString(16)}`))).toEqual(spelt.map(() => ok));
    expect(archHash(a.peek())).toBe(archHash(b.peek()));
    // the eVMCS has no launch state: a first VMRESUME enters, and copies the members into vmcs12
    expect(run(a, 'l1.vmresume')).toEqual([{ k: 'entered' }]);
    for (const [f, v] of spelt) expect(vmcs12Get(a.peek().vcpus[0].nested, VMCS[f])).toBe(v);
  });

  test('ignored when no memslot backs the page', () => {
    const r = replayer(profile, { evmcs: true });
    run(r, ...EVMCS_SETUP);
    expect(run(r, 'l1.evmcs-ctls-must-be-1 0x80000')[0].k).toBe('ignored');
  });
});
