/**
 * The two contracts the VMM keeps around KVM_SET_NESTED_STATE:
 * kvm-evmcs-restore-matches (the vmcs12 restored onto an eVMCS is that
 * eVMCS's) and kvm-no-run-after-restore-error (no KVM_RUN after the restored
 * state failed to load). Each is flagged at the right event, stays quiet on
 * the legal sequence next to it, and is what makes the divergence of the
 * optimized paths there permitted rather than a bug.
 */
import { ContractMonitor, diffEvents } from '../src';
import { Replayer, initialState, parseProfile } from '@nvx/emulator';
import { parseTextTrace } from '@nvx/trace';

function violations(text: string) {
  const t = parseTextTrace(text);
  const profile = parseProfile('reference');
  const r = new Replayer(initialState(t.header, profile), profile);
  const m = new ContractMonitor();
  const outs = t.events.map((e, i) => {
    m.observe(r.peek(), e, i);
    return r.apply(e);
  });
  return { found: m.violations.map((v) => `${v.contract}@${v.index}`), outs };
}

function verdict(text: string, profile: string) {
  const t = parseTextTrace(text);
  const d = diffEvents(t.header, t.events, parseProfile('reference'), parseProfile(profile)).divergence;
  return d ? `${d.verdict}${d.contract ? `:${d.contract.contract}` : ''}@${d.index}` : 'same';
}

const HEAD = `nvx-trace 1
config vcpus=1
config evmcs=true
memslot 0 gfn=0x0 npages=0x60 flags=0
events
l1.write 0x1000 4 0x11e57ed0
l1.vmxon 0x1000
`;

// L1 runs L2 from eVMCS 0x1c000 with every control group set up, then names eVMCS 0x1e000 (controls zero).
const SWITCHED = HEAD + `l1.write 0x1c000 4 0x1
l1.evmcs-ptr 0x1c000
l1.evmcs-write 0x1c000 PIN_BASED_VM_EXEC_CONTROL 0x16
l1.evmcs-write 0x1c000 CPU_BASED_VM_EXEC_CONTROL 0x4006172
l1.evmcs-write 0x1c000 VM_EXIT_CONTROLS 0x36dfb
l1.evmcs-write 0x1c000 VM_ENTRY_CONTROLS 0x11fb
l1.vmlaunch
l2.vmcall
l1.write 0x1e000 4 0x1
l1.evmcs-ptr 0x1e000
`;

describe('contract kvm-evmcs-restore-matches', () => {
  it('a migration right after L1 named another eVMCS: KVM saved the old one, and a clean bit L1 sets keeps its controls', () => {
    const text = SWITCHED + 'host.migrate\nl1.evmcs-clean 0x1e000 0x8\nl1.vmresume\n';
    expect(violations(text).found).toEqual(['kvm-evmcs-restore-matches@14']);
    // KVM (the clean-field path) enters L2 with the controls of 0x1c000; the reference fails on 0x1e000's zeros
    const v = violations(text).outs;
    expect(v[14]).toEqual({ k: 'vmfail-valid', error: 7 });
    expect(verdict(text, 'evmcs=clean-fields')).toBe('permitted:kvm-evmcs-restore-matches@14');
  });
  it('quiet when L1 enters through the new eVMCS before the migration, or clears the clean bits after it', () => {
    expect(violations(SWITCHED + 'l1.vmlaunch\nhost.migrate\nl1.evmcs-clean 0x1e000 0x8\nl1.vmresume\n').found).toEqual([]);
    expect(violations(SWITCHED + 'host.migrate\nl1.evmcs-clean 0x1e000 0x0\nl1.vmresume\n').found).toEqual([]);
    expect(verdict(SWITCHED + 'host.migrate\nl1.evmcs-clean 0x1e000 0x0\nl1.vmresume\n', 'evmcs=clean-fields')).toBe('same');
  });
  it('quiet when the first KVM_RUN after the restore is the entry itself (KVM clears the clean bits as it maps the eVMCS)', () => {
    expect(violations(SWITCHED + 'host.migrate\nl1.vmresume\n').found).toEqual([]);
  });
  it('a VMM-made vmcs12 restored onto an eVMCS L1 had written', () => {
    const text = `nvx-trace 1
config vcpus=1
config evmcs=true
memslot 0 gfn=0x0 npages=0x60 flags=0
events
l1.write 0x1e000 4 0x11e57ed0
l1.evmcs-ptr 0x1e000
l1.evmcs-write 0x1e000 MSR_BITMAP 0x1
host.set-nested-state 0 4 0x1000 0xffffffffffffffff 0 0x1080
l1.evmcs-clean 0x1e000 0x2
l1.vmresume
`;
    expect(violations(text).found).toEqual(['kvm-evmcs-restore-matches@5']);
    expect(verdict(text, 'evmcs=clean-fields')).toBe('permitted:kvm-evmcs-restore-matches@5');
    // the same restore after L1 wrote nothing the vmcs12 lacks
    expect(violations(text.replace('l1.evmcs-write 0x1e000 MSR_BITMAP 0x1\n', '')).found).toEqual([]);
  });
});

describe('contract kvm-no-run-after-restore-error', () => {
  // L2 runs with an APIC-access page in memslot 1; the VMM deletes the memslot and migrates the vCPU
  const LOST = `nvx-trace 1
config vcpus=1
memslot 0 gfn=0x0 npages=0x40 flags=0
memslot 1 gfn=0x100 npages=0x1 flags=0
events
l1.write 0x1000 4 0x11e57ed0
l1.vmxon 0x1000
l1.write 0x2000 4 0x11e57ed0
l1.vmptrld 0x2000
l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x80000000
l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x1
l1.vmwrite APIC_ACCESS_ADDR 0x100000
l1.vmcs-ctls-must-be-1
l1.vmlaunch
host.memslot-delete 1
host.migrate
`;
  it('the KVM_RUN that cannot get the restored pages exits with KVM_EXIT_INTERNAL_ERROR, and the next one breaks the contract', () => {
    const text = LOST + 'l2.vmcall\nhost.memslot-readd 1\nl2.apic-read 0xb0\n';
    const v = violations(text);
    expect(v.outs[11]).toEqual({ k: 'userspace', exit: 'internal-error' });
    expect(v.found).toEqual(['kvm-no-run-after-restore-error@13']);
    // kvm-map runs L2 without the APIC-access page in vmcs02: a plain read where reference exits
    expect(verdict(text, 'guest-pages=kvm-map')).toBe('permitted:kvm-no-run-after-restore-error@13');
  });
  it('quiet when the VMM sets the state again first', () => {
    const again = LOST + 'l2.vmcall\nhost.memslot-readd 1\nhost.set-nested-state 0 0 0x1000 0xffffffffffffffff 0 0x80\nl1.vmxoff\n';
    expect(violations(again).found).toEqual([]);
  });
});
