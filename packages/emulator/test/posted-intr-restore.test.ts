/**
 * A posted interrupt for a vCPU restored into L2 that has not run since
 * (KVM_REQ_GET_NESTED_STATE_PAGES pending): no CPU runs L2 and vmcs02 has
 * no descriptor yet, so KVM only notes it (vmx_deliver_nested_posted_interrupt:
 * pi_pending) and L0 moves the PIR into the virtual-APIC page at that vCPU's
 * next KVM_RUN, after the pages are in (vmx_complete_nested_posted_interrupt).
 * Every guest-pages path does the same (the 10-minute soak found the cache
 * paths and reference apart here).
 */
import { AREAS, Replayer, archHash, parseProfile, readGuest } from '@nvx/emulator';
import { makeHeader, parseEventLine } from '@nvx/trace';

const EVENTS = [
  'l1.write 0x1000 4 0x11e57ed0',
  'l1.vmxon 0x1000',
  'l1.write 0x2000 4 0x11e57ed0',
  'l1.vmptrld 0x2000',
  'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x84206172', // TPR shadow, secondary controls
  'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x200', // virtual-interrupt delivery
  'l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x97', // external-interrupt exiting, posted interrupts
  'l1.vmwrite VM_EXIT_CONTROLS 0x3edfb', // acknowledge interrupt on exit
  'l1.vmwrite VM_ENTRY_CONTROLS 0x11fb',
  'l1.vmwrite POSTED_INTR_NV 0xf2',
  'l1.vmwrite POSTED_INTR_DESC_ADDR 0x3040',
  'l1.vmwrite VIRTUAL_APIC_PAGE_ADDR 0x4000',
  'l1.vmlaunch',
  'host.migrate',
  '@1 l1.posted-intr 0 0x3040 0x31',
];

function replay(profile: string, events: string[]) {
  const h = makeHeader({ vcpus: 2, memslots: [{ slot: 0, gfn: 0n, npages: 0x40, flags: 0 }] });
  const r = Replayer.fromHeader(h, parseProfile(profile));
  const outs = events.map((l) => r.apply(parseEventLine(l, h.config)));
  return { r, outs };
}

const PATHS = [...AREAS['guest-pages'].paths.keys()].filter((p) => !p.startsWith('broken-')).map((p) => `guest-pages=${p}`);

describe.each(['reference', ...PATHS])('under %s', (profile) => {
  it('waits in the descriptor until the vCPU runs again, then lands in the virtual-APIC IRR', () => {
    const { r, outs } = replay(profile, EVENTS);
    expect(outs[12]).toEqual({ k: 'entered' });
    expect(outs[13]).toEqual({ k: 'ok' });
    const w = r.peek();
    // PIR bit 0x31 (word 1, bit 17) and ON (bit 256) set; the IRR untouched
    expect(readGuest(w, 0x3044n, 4)).toBe(1n << 17n);
    expect(readGuest(w, 0x3060n, 1)! & 1n).toBe(1n);
    expect(readGuest(w, 0x4210n, 4)).toBe(0n);
    // vCPU 0's next KVM_RUN: pages in, then the notification completed
    expect(r.apply(parseEventLine('l2.vmcall', makeHeader().config))).toEqual({ k: 'exit', reason: 18, qual: 0n });
    const after = r.peek();
    expect(readGuest(after, 0x3060n, 1)! & 1n).toBe(0n);
    expect(readGuest(after, 0x3044n, 4)).toBe(0n);
    expect(readGuest(after, 0x4210n, 4)).toBe(1n << 17n);
  });
});

it('every guest-pages path leaves the same architectural state as reference', () => {
  const ref = archHash(replay('reference', EVENTS).r.peek());
  for (const p of PATHS) expect([p, archHash(replay(p, EVENTS).r.peek())]).toEqual([p, ref]);
});
