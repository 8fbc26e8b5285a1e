/**
 * Guest memory over memslots and host pages, and the vmcs12 traffic between
 * KVM's cached copy and L1's memory (VMPTRLD, VMCLEAR, write-back).
 */
import { VMCS12_REVISION, vmcsFieldByName } from '@nvx/arch';
import { Replayer, VMCS12_DATA_OFFSET, VMCS12_LAUNCH_STATE_OFFSET, World, gfnToHva, initialState, parseProfile, readGuest, step } from '@nvx/emulator';
import { Outcome, TraceHeader, makeHeader, parseEventLine } from '@nvx/trace';

/** Slot 0: gfn 0..0x3ff; slot 1: gfn 0x1000..0x100f (16 pages). */
const HEADER: TraceHeader = makeHeader({
  memslots: [
    { slot: 0, gfn: 0n, npages: 0x400, flags: 0 },
    { slot: 1, gfn: 0x1000n, npages: 0x10, flags: 0 },
  ],
});

function replayer(header = HEADER): Replayer {
  return Replayer.fromHeader(header, parseProfile('reference'));
}

function run(r: Replayer, ...lines: string[]): Outcome[] {
  return lines.map((l) => r.apply(parseEventLine(l, r.peek().config)));
}

const value = (v: bigint): Outcome => ({ k: 'value', value: v });
const notInSlot = (gpa: number): Outcome => ({ k: 'ignored', why: `gpa 0x${gpa.toString(16)} is not in a memslot` });
const pfnOf = (w: World, gfn: number) => w.mem.hvaToPfn[gfnToHva(w.mem, gfn)];

describe('memslots and host pages', () => {
  test('content follows a memslot move; the old addresses are gone', () => {
    const r = replayer();
    run(r, 'l1.write 0x1000010 8 0x1122334455667788', 'l1.write 0x100f000 4 0xabcd');
    expect(run(r, 'host.memslot-move 1 0x2000')).toEqual([{ k: 'ok' }]);
    expect(run(r, 'l1.read 0x2000010 8', 'l1.read 0x200f000 4')).toEqual([value(0x1122334455667788n), value(0xabcdn)]);
    expect(run(r, 'l1.read 0x1000010 8', 'l1.write 0x1000010 8 0x1')).toEqual([notInSlot(0x1000010), notInSlot(0x1000010)]);
    // moving it back restores the old view
    run(r, 'host.memslot-move 1 0x1000');
    expect(run(r, 'l1.read 0x1000010 8')).toEqual([value(0x1122334455667788n)]);
  });

  test('a move onto another slot, or of a slot that does not exist, is refused and changes nothing', () => {
    const r = replayer();
    run(r, 'l1.write 0x1000010 8 0x5');
    expect(run(r, 'host.memslot-move 1 0x3f8')).toEqual([{ k: 'ignored', why: 'memslot 1 would overlap another' }]);
    expect(run(r, 'host.memslot-move 7 0x5000')).toEqual([{ k: 'ignored', why: 'no memslot 7' }]);
    expect(run(r, 'l1.read 0x1000010 8')).toEqual([value(5n)]);
  });

  test('delete: the addresses are gone; a new slot at the same place starts zeroed', () => {
    const r = replayer();
    run(r, 'l1.write 0x1000010 8 0x77');
    const gen = r.peek().mem.generation;
    expect(run(r, 'host.memslot-delete 1')).toEqual([{ k: 'ok' }]);
    expect(r.peek().mem.generation).toBeGreaterThan(gen);
    expect(run(r, 'l1.read 0x1000010 8')).toEqual([notInSlot(0x1000010)]);
    expect(run(r, 'host.memslot-delete 1')).toEqual([{ k: 'ignored', why: 'no memslot 1' }]);
    expect(run(r, 'host.memslot-create 1 0x1000 0x10 0', 'l1.read 0x1000010 8')).toEqual([{ k: 'ok' }, value(0n)]);
  });

  test('migrate: the content moves to a new host page, the guest sees the same bytes', () => {
    const r = replayer();
    run(r, 'l1.write 0x1000010 8 0x1122334455667788', 'l1.write 0x1001000 8 0x99');
    const before = pfnOf(r.peek(), 0x1000);
    const seq = r.peek().mem.mmuInvalidateSeq;
    expect(run(r, 'host.page-migrate 0x1000')).toEqual([{ k: 'ok' }]);
    expect(pfnOf(r.peek(), 0x1000)).not.toBe(before);
    expect(r.peek().mem.mmuInvalidateSeq).toBe(seq + 1);
    expect(run(r, 'l1.read 0x1000010 8', 'l1.read 0x1001000 8')).toEqual([value(0x1122334455667788n), value(0x99n)]);
    // writes after the migration land in the new page
    run(r, 'l1.write 0x1000010 8 0x1');
    expect(run(r, 'l1.read 0x1000010 8')).toEqual([value(1n)]);
  });

  test('zap: the page faults back in zeroed; its neighbours keep their content', () => {
    const r = replayer();
    run(r, 'l1.write 0x1000010 8 0x1122334455667788', 'l1.write 0x1001000 8 0x99');
    expect(run(r, 'host.page-zap 0x1000')).toEqual([{ k: 'ok' }]);
    expect(run(r, 'l1.read 0x1000010 8', 'l1.read 0x1001000 8')).toEqual([value(0n), value(0x99n)]);
    expect(run(r, 'host.page-zap 0x5000', 'host.page-migrate 0x5000')).toEqual([
      { k: 'ignored', why: 'gfn 0x5000 is not in a memslot' },
      { k: 'ignored', why: 'gfn 0x5000 is not in a memslot' },
    ]);
  });

  test('a store or load straddling two slots works only where both bytes are backed', () => {
    const h = makeHeader({
      memslots: [
        { slot: 0, gfn: 0n, npages: 0x10, flags: 0 },
        { slot: 1, gfn: 0x10n, npages: 0x10, flags: 0 },
      ],
    });
    const r = replayer(h);
    expect(run(r, 'l1.write 0xfffc 8 0x1122334455667788', 'l1.read 0xfffc 8', 'l1.read 0x10000 4')).toEqual([{ k: 'ok' }, value(0x1122334455667788n), value(0x11223344n)]);
    expect(run(r, 'l1.write 0x1fffc 8 0x1', 'l1.read 0x1fffc 4')).toEqual([notInSlot(0x1fffc), value(0n)]);
  });

  test('the same under step (immer): outcomes match the Replayer', () => {
    const lines = ['l1.write 0x1000010 8 0x42', 'host.memslot-move 1 0x2000', 'l1.read 0x2000010 8', 'host.page-migrate 0x2000', 'l1.read 0x2000010 8', 'host.page-zap 0x2000', 'l1.read 0x2000010 8', 'host.memslot-delete 1', 'l1.read 0x2000010 8'];
    const p = parseProfile('reference');
    let s = initialState(HEADER, p);
    const viaStep = lines.map((l) => {
      const res = step(s, parseEventLine(l), p);
      s = res.state;
      return res.outcome;
    });
    expect(viaStep).toEqual(run(replayer(), ...lines));
    expect(viaStep.filter((o) => o.k !== 'ok')).toEqual([value(0x42n), value(0x42n), value(0n), notInSlot(0x2000010)]);
  });
});

// ---------------------------------------------------------------------------
// vmcs12 and L1 memory
// ---------------------------------------------------------------------------

const REV = `0x${VMCS12_REVISION.toString(16)}`;
const GUEST_RIP = vmcsFieldByName('GUEST_RIP')!;
/** Where the model keeps a vmcs12 field in L1 memory (KVM's layout is its own business; this is the model's). */
const fieldGpa = (vmcs: bigint, slot: number) => vmcs + VMCS12_DATA_OFFSET + BigInt(8 * slot);

/** VMWRITEs of the must-be-1 bits of the four controls KVM verifies at VM-entry (vmx_control_verify) */
const MUST_BE_1 = ['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16', 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x4006172', 'l1.vmwrite VM_EXIT_CONTROLS 0x36dfb', 'l1.vmwrite VM_ENTRY_CONTROLS 0x11fb'];

function vmxOn(r: Replayer): void {
  expect(run(r, 'l1.write 0x1000 4 ' + REV, 'l1.vmxon 0x1000', 'l1.write 0x2000 4 ' + REV, 'l1.write 0x4000 4 ' + REV)).toEqual([{ k: 'ok' }, { k: 'ok' }, { k: 'ok' }, { k: 'ok' }]);
}

describe('VMCLEAR and the launch state in L1 memory', () => {
  test('VMCLEAR of a launched VMCS that is not current writes launch state 0 into L1 memory', () => {
    const r = replayer();
    vmxOn(r);
    run(r, 'l1.vmptrld 0x2000', ...MUST_BE_1);
    expect(run(r, 'l1.vmlaunch', 'l2.vmcall')).toEqual([{ k: 'entered' }, { k: 'exit', reason: 18, qual: 0n }]);
    // VMPTRLD of another VMCS writes the launched one back, launch state included
    run(r, 'l1.vmptrld 0x4000');
    expect(readGuest(r.peek(), 0x2000n + VMCS12_LAUNCH_STATE_OFFSET, 4)).toBe(1n);
    expect(run(r, 'l1.vmclear 0x2000')).toEqual([{ k: 'ok' }]);
    expect(readGuest(r.peek(), 0x2000n + VMCS12_LAUNCH_STATE_OFFSET, 4)).toBe(0n);
    expect(run(r, 'l1.vmptrst')).toEqual([value(0x4000n)]); // the current VMCS is untouched
    // loaded again, it needs a VMLAUNCH
    expect(run(r, 'l1.vmptrld 0x2000', 'l1.vmresume', 'l1.vmlaunch')).toEqual([{ k: 'ok' }, { k: 'vmfail-valid', error: 5 }, { k: 'entered' }]);
  });

  test('VMCLEAR of the current VMCS writes it back, then clears its launch state; no VMCS is current', () => {
    const r = replayer();
    vmxOn(r);
    run(r, 'l1.vmptrld 0x2000', ...MUST_BE_1, 'l1.vmwrite GUEST_RIP 0xffffffff81000000', 'l1.vmlaunch', 'l2.vmcall');
    expect(readGuest(r.peek(), fieldGpa(0x2000n, GUEST_RIP.slot), 8)).toBe(0n); // cached, not yet in memory
    run(r, 'l1.vmclear 0x2000');
    expect(readGuest(r.peek(), fieldGpa(0x2000n, GUEST_RIP.slot), 8)).toBe(0xffffffff81000000n);
    expect(readGuest(r.peek(), 0x2000n + VMCS12_LAUNCH_STATE_OFFSET, 4)).toBe(0n);
    expect(run(r, 'l1.vmptrst', 'l1.vmresume')).toEqual([value(0xffffffffffffffffn), { k: 'vmfail-invalid' }]);
  });

  test('VMCLEAR of a region never loaded just zeroes its launch-state dword', () => {
    const r = replayer();
    vmxOn(r);
    run(r, 'l1.write 0x7000 4 ' + REV, 'l1.write 0x7008 4 0xdeadbeef', 'l1.write 0x700c 4 0x12345678');
    expect(run(r, 'l1.vmclear 0x7000')).toEqual([{ k: 'ok' }]);
    expect(run(r, 'l1.read 0x7008 4', 'l1.read 0x700c 4', 'l1.read 0x7000 4')).toEqual([value(0n), value(0x12345678n), value(BigInt(VMCS12_REVISION))]);
  });
});

describe('vmcs12 write-back on VMPTRLD of another VMCS', () => {
  test('values written to one VMCS survive a round trip through another', () => {
    const r = replayer();
    vmxOn(r);
    run(r, 'l1.vmptrld 0x2000', 'l1.vmwrite GUEST_RIP 0xffffffff81000000', 'l1.vmwrite MSR_BITMAP 0x3000');
    expect(readGuest(r.peek(), fieldGpa(0x2000n, GUEST_RIP.slot), 8)).toBe(0n);
    run(r, 'l1.vmptrld 0x4000');
    // A was written back when B became current
    expect(readGuest(r.peek(), fieldGpa(0x2000n, GUEST_RIP.slot), 8)).toBe(0xffffffff81000000n);
    expect(run(r, 'l1.vmread GUEST_RIP')).toEqual([value(0n)]); // B's own value
    run(r, 'l1.vmwrite GUEST_RIP 0x401000');
    expect(run(r, 'l1.vmptrld 0x2000', 'l1.vmread GUEST_RIP', 'l1.vmread MSR_BITMAP')).toEqual([{ k: 'ok' }, value(0xffffffff81000000n), value(0x3000n)]);
    expect(run(r, 'l1.vmptrld 0x4000', 'l1.vmread GUEST_RIP')).toEqual([{ k: 'ok' }, value(0x401000n)]);
  });

  test('VMPTRLD of the current VMCS is a no-op (no reload from memory)', () => {
    const r = replayer();
    vmxOn(r);
    run(r, 'l1.vmptrld 0x2000', 'l1.vmwrite GUEST_RIP 0x1234');
    run(r, 'l1.write 0x2000 4 0x0'); // even a clobbered revision does not matter: nothing is read
    expect(run(r, 'l1.vmptrld 0x2000', 'l1.vmread GUEST_RIP')).toEqual([{ k: 'ok' }, value(0x1234n)]);
  });

  test('L1 edits of a VMCS in memory are picked up by the next VMPTRLD', () => {
    const r = replayer();
    vmxOn(r);
    run(r, `l1.write 0x${fieldGpa(0x7000n, GUEST_RIP.slot).toString(16)} 8 0xabc`, 'l1.write 0x7000 4 ' + REV);
    expect(run(r, 'l1.vmptrld 0x7000', 'l1.vmread GUEST_RIP')).toEqual([{ k: 'ok' }, value(0xabcn)]);
  });

  test('VMXOFF does not write the current VMCS back', () => {
    const r = replayer();
    vmxOn(r);
    run(r, 'l1.vmptrld 0x2000', 'l1.vmwrite GUEST_RIP 0x1234', 'l1.vmxoff');
    expect(readGuest(r.peek(), fieldGpa(0x2000n, GUEST_RIP.slot), 8)).toBe(0n);
    expect(run(r, 'l1.vmxon 0x1000', 'l1.vmptrld 0x2000', 'l1.vmread GUEST_RIP')).toEqual([{ k: 'ok' }, { k: 'ok' }, value(0n)]);
  });
});
