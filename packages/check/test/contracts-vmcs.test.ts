/**
 * The contracts sdm-vmcs-active-once and hyperv-evmcs-no-vmptrld: the
 * monitor flags the illegal sequence at the right event and stays quiet on
 * the legal one next to it (VMCLEAR first).
 */
import { ContractMonitor } from '../src/contracts';
import { Replayer, initialState, parseProfile } from '@nvx/emulator';
import { parseTextTrace } from '@nvx/trace';

function violations(text: string) {
  const t = parseTextTrace(text);
  const profile = parseProfile('reference');
  const r = new Replayer(initialState(t.header, profile), profile);
  const m = new ContractMonitor();
  t.events.forEach((e, i) => {
    m.observe(r.peek(), e, i);
    r.apply(e);
  });
  return m.violations.map((v) => `${v.contract}@${v.index}`);
}

const TWO = `nvx-trace 1
config vcpus=2
memslot 0 gfn=0x0 npages=0x40 flags=0
events
l1.write 0x1000 4 0x11e57ed0
l1.vmxon 0x1000
@1 l1.write 0x5000 4 0x11e57ed0
@1 l1.vmxon 0x5000
l1.write 0x2000 4 0x11e57ed0
l1.vmptrld 0x2000
`;

const EVMCS = `nvx-trace 1
config vcpus=1
config evmcs=true shadowVmcs=true
memslot 0 gfn=0x0 npages=0x60 flags=0
events
l1.write 0x1000 4 0x11e57ed0
l1.vmxon 0x1000
l1.write 0x4000 4 0x11e57ed0
l1.vmptrld 0x4000
l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x1
l1.evmcs-ptr 0x1e000
`;

describe('contract sdm-vmcs-active-once', () => {
  it('flags a VMPTRLD of a region current on another vCPU', () => {
    expect(violations(TWO + '@1 l1.vmptrld 0x2000\n')).toEqual(['sdm-vmcs-active-once@6']);
  });
  it('allows it after VMCLEAR on the first vCPU, and a VMPTRLD of another region', () => {
    expect(violations(TWO + 'l1.vmclear 0x2000\n@1 l1.vmptrld 0x2000\n')).toEqual([]);
    expect(violations(TWO + '@1 l1.write 0x3000 4 0x11e57ed0\n@1 l1.vmptrld 0x3000\n')).toEqual([]);
  });
  it('allows the same vCPU to load it again', () => {
    expect(violations(TWO + 'l1.vmptrld 0x2000\n')).toEqual([]);
  });
});

describe('contract hyperv-evmcs-no-vmptrld', () => {
  it('flags an entry through a new eVMCS while a VMPTRLD one is current', () => {
    expect(violations(EVMCS + 'l1.vmlaunch\n')).toEqual(['hyperv-evmcs-no-vmptrld@6']);
  });
  it('allows it after VMCLEAR of the VMCS, and an entry with no eVMCS named', () => {
    const cleared = EVMCS.replace('l1.evmcs-ptr 0x1e000\n', 'l1.vmclear 0x4000\nl1.evmcs-ptr 0x1e000\n');
    expect(violations(cleared + 'l1.vmlaunch\n')).toEqual([]);
    expect(violations(EVMCS.replace('l1.evmcs-ptr 0x1e000\n', '') + 'l1.vmlaunch\n')).toEqual([]);
  });
});
