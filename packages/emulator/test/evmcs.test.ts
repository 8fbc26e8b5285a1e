/**
 * The enlightened VMCS: the clean-field handshake KVM performs in L1's
 * memory, and what each evmcs path copies into vmcs12.
 */
import { EVMCS, EVMCS_CLEAN_GROUPS, HV_VMX_ENLIGHTENED_CLEAN_FIELD, VMCS } from '@nvx/arch';
import { Costs, EVMCS_COPY_IN, Replayer, diffCosts, parseProfile, readGuest, vmcs12Read } from '@nvx/emulator';
import { Outcome, makeHeader, parseEventLine } from '@nvx/trace';

const EVMCS_GPA = 0x5000n;
const CLEAN = EVMCS_GPA + BigInt(EVMCS.HV_CLEAN_FIELDS_OFFSET);

function replayer(spec: string): Replayer {
  return Replayer.fromHeader(makeHeader({ evmcs: true }), parseProfile(spec));
}

/** Apply lines; the outcome and costs of the last one. */
function run(r: Replayer, ...lines: string[]): { outcome: Outcome; cost: Costs } {
  let outcome: Outcome = { k: 'ok' };
  let before = { ...r.cost };
  for (const l of lines) {
    before = { ...r.cost };
    outcome = r.apply(parseEventLine(l, r.peek().config));
  }
  return { outcome, cost: diffCosts(r.cost, before) };
}

const cleanBits = (r: Replayer) => readGuest(r.peek(), CLEAN, 4);

/** VMWRITEs of the must-be-1 bits of the four controls KVM verifies at VM-entry (vmx_control_verify) */
const MUST_BE_1 = ['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16', 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x4006172', 'l1.vmwrite VM_EXIT_CONTROLS 0x36dfb', 'l1.vmwrite VM_ENTRY_CONTROLS 0x11fb'];

/** VMXON and an eVMCS at 0x5000 with USE_MSR_BITMAPS and the given MSR_BITMAP, named in the VP assist page. */
function setup(r: Replayer, msrBitmap = '0x3000'): void {
  run(
    r,
    'l1.write 0x1000 4 0x11e57ed0',
    'l1.vmxon 0x1000',
    'l1.write 0x5000 4 0x1',
    'l1.evmcs-ptr 0x5000',
    'l1.evmcs-control 0x5000 0x2',
    'l1.evmcs-write 0x5000 CPU_BASED_VM_EXEC_CONTROL 0x14006172', 'l1.evmcs-write 0x5000 PIN_BASED_VM_EXEC_CONTROL 0x16', 'l1.evmcs-write 0x5000 VM_EXIT_CONTROLS 0x36dfb', 'l1.evmcs-write 0x5000 VM_ENTRY_CONTROLS 0x11fb',
    `l1.evmcs-write 0x5000 MSR_BITMAP ${msrBitmap}`,
  );
}

describe('clean-field handshake (visible to L1 in hv_clean_fields)', () => {
  test.each(['reference', 'optimized'])('VMLAUNCH clears all 16 bits; a successful entry sets all 16 (%s)', (spec) => {
    const r = replayer(spec);
    setup(r, '0x3008'); // unaligned: VMLAUNCH fails after the enlightened VMPTRLD
    run(r, 'l1.evmcs-clean 0x5000 0xffff');
    expect(cleanBits(r)).toBe(0xffffn);
    expect(run(r, 'l1.vmlaunch').outcome).toEqual({ k: 'vmfail-valid', error: 7 });
    expect(cleanBits(r)).toBe(0n);
    expect(r.peek().vcpus[0].nested.forceMsrBitmapRecalc).toBe(true);
    expect(r.peek().vcpus[0].nested.hvEvmcsVmptr).toBe(EVMCS_GPA);
    // the error number reaches the eVMCS (vmcs12 is synced to it before L1 runs)
    expect(readGuest(r.peek(), EVMCS_GPA + 0x2b0n, 4)).toBe(7n);

    run(r, 'l1.evmcs-write 0x5000 MSR_BITMAP 0x3000');
    expect(run(r, 'l1.vmlaunch').outcome).toEqual({ k: 'entered' });
    expect(r.peek().vcpus[0].nested.guestMode).toBe(true);
    run(r, 'l2.vmcall');
    expect(cleanBits(r)).toBe(0xffffn);

    // L1 marks a few groups dirty; after the entry KVM has consumed them: all clean again
    run(r, 'l1.evmcs-clean 0x5000 0x1234');
    expect(run(r, 'l1.vmresume').outcome).toEqual({ k: 'entered' });
    run(r, 'l2.vmcall');
    expect(cleanBits(r)).toBe(0xffffn);

    // VMRESUME with clean bits set does not clear them; a VMLAUNCH does (and sets them again)
    expect(run(r, 'l1.vmresume').outcome).toEqual({ k: 'entered' });
    run(r, 'l2.vmcall');
    expect(cleanBits(r)).toBe(0xffffn);
  });

  test('a new eVMCS on VMRESUME: its clean bits are cleared and a rebuild is forced', () => {
    const r = replayer('reference');
    setup(r);
    run(r, 'l1.vmlaunch', 'l2.vmcall');
    // a second eVMCS whose MSR bitmap address is bad, so the entry fails after the enlightened VMPTRLD
    run(r, 'l1.write 0x9000 4 0x1', 'l1.evmcs-write 0x9000 CPU_BASED_VM_EXEC_CONTROL 0x14006172', 'l1.evmcs-write 0x9000 PIN_BASED_VM_EXEC_CONTROL 0x16', 'l1.evmcs-write 0x9000 VM_EXIT_CONTROLS 0x36dfb', 'l1.evmcs-write 0x9000 VM_ENTRY_CONTROLS 0x11fb', 'l1.evmcs-write 0x9000 MSR_BITMAP 0x3001', 'l1.evmcs-clean 0x9000 0xffff', 'l1.evmcs-ptr 0x9000');
    expect(run(r, 'l1.vmresume').outcome).toEqual({ k: 'vmfail-valid', error: 7 });
    expect(r.peek().vcpus[0].nested.hvEvmcsVmptr).toBe(0x9000n);
    expect(readGuest(r.peek(), 0x9000n + BigInt(EVMCS.HV_CLEAN_FIELDS_OFFSET), 4)).toBe(0n);
    // the old eVMCS is left as it was
    expect(cleanBits(r)).toBe(0xffffn);
  });

  test('the forced rebuild after a new eVMCS happens under enlightened even with every clean bit set', () => {
    const r = replayer('msr-bitmap=enlightened');
    setup(r);
    run(r, 'l1.vmlaunch', 'l2.vmcall');
    expect(r.peek().vcpus[0].nested.forceMsrBitmapRecalc).toBe(false);
    run(r, 'l1.write 0x9000 4 0x1', 'l1.evmcs-control 0x9000 0x2', 'l1.evmcs-write 0x9000 CPU_BASED_VM_EXEC_CONTROL 0x14006172', 'l1.evmcs-write 0x9000 PIN_BASED_VM_EXEC_CONTROL 0x16', 'l1.evmcs-write 0x9000 VM_EXIT_CONTROLS 0x36dfb', 'l1.evmcs-write 0x9000 VM_ENTRY_CONTROLS 0x11fb', 'l1.evmcs-write 0x9000 MSR_BITMAP 0x3000', 'l1.evmcs-clean 0x9000 0xffff', 'l1.evmcs-ptr 0x9000');
    const { outcome, cost } = run(r, 'l1.vmresume');
    expect(outcome).toEqual({ k: 'entered' });
    expect({ merges: cost.msrBitmapMerges, skips: cost.msrBitmapMergeSkips }).toEqual({ merges: 1, skips: 0 });
  });

  test('the eVMCS revision must be KVM_EVMCS_VERSION or VMCS12_REVISION; the page must be aligned', () => {
    const bad = replayer('reference');
    run(bad, 'l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.write 0x5000 4 0x2', 'l1.evmcs-ptr 0x5000');
    expect(run(bad, 'l1.vmlaunch').outcome).toEqual({ k: 'vmfail-invalid' });
    run(bad, 'l1.write 0x5000 4 0x11e57ed0', ...MUST_BE_1.map((l) => l.replace('l1.vmwrite', 'l1.evmcs-write 0x5000')));
    expect(run(bad, 'l1.vmlaunch').outcome).toEqual({ k: 'entered' });
    const unaligned = replayer('reference');
    run(unaligned, 'l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.write 0x5000 4 0x1', 'l1.evmcs-ptr 0x5010');
    expect(run(unaligned, 'l1.vmlaunch').outcome).toEqual({ k: 'ud' });
  });

  test('L1 stops naming an eVMCS: the next VMLAUNCH/VMRESUME releases it (nested_release_evmcs)', () => {
    const r = replayer('reference');
    setup(r);
    run(r, 'l1.vmlaunch', 'l2.vmcall');
    run(r, 'l1.evmcs-ptr 0xffffffffffffffff');
    // until the next entry attempt KVM still holds the eVMCS: a normal VMPTRLD is ignored
    run(r, 'l1.write 0x2000 4 0x11e57ed0');
    expect(run(r, 'l1.vmptrld 0x2000').outcome.k).toBe('ignored');
    // the entry attempt drops it; with no current VMCS that is VMfailInvalid
    expect(run(r, 'l1.vmresume').outcome).toEqual({ k: 'vmfail-invalid' });
    expect(r.peek().vcpus[0].nested.hvEvmcsVmptr).toBe(0xffffffffffffffffn);
    // from now on L1 uses ordinary VMCSs
    expect(run(r, 'l1.vmptrld 0x2000', ...MUST_BE_1, 'l1.vmlaunch').outcome).toEqual({ k: 'entered' });
  });

  test('VMCLEAR while the VP assist page names an eVMCS writes no launch state; it releases the eVMCS in use', () => {
    const r = replayer('reference');
    setup(r);
    run(r, 'l1.write 0x5008 4 0xabcd', 'l1.write 0x2008 4 0x1');
    // before any entry: nothing is mapped, nothing is written (the region is taken to be an eVMCS)
    expect(run(r, 'l1.vmclear 0x5000', 'l1.vmclear 0x2000').outcome).toEqual({ k: 'ok' });
    expect([readGuest(r.peek(), 0x5008n, 4), readGuest(r.peek(), 0x2008n, 4)]).toEqual([0xabcdn, 1n]);
    run(r, 'l1.vmlaunch', 'l2.vmcall');
    expect(r.peek().vcpus[0].nested.hvEvmcsVmptr).toBe(EVMCS_GPA);
    expect(run(r, 'l1.vmclear 0x5000').outcome).toEqual({ k: 'ok' });
    expect(r.peek().vcpus[0].nested.hvEvmcsVmptr).toBe(0xffffffffffffffffn);
    expect(readGuest(r.peek(), 0x5008n, 4)).toBe(0xabcdn);
    // the next entry maps it again as a new eVMCS: all clean bits cleared and consumed, then set
    run(r, 'l1.evmcs-clean 0x5000 0xffff');
    expect(run(r, 'l1.vmresume').outcome).toEqual({ k: 'entered' });
    expect(r.peek().vcpus[0].nested.hvEvmcsVmptr).toBe(EVMCS_GPA);
  });

  test('without config evmcs the VP assist page pointer is ignored', () => {
    const r = Replayer.fromHeader(makeHeader({ evmcs: false }), parseProfile('reference'));
    run(r, 'l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.write 0x5000 4 0x1');
    expect(run(r, 'l1.evmcs-ptr 0x5000').outcome.k).toBe('ignored');
    expect(run(r, 'l1.vmlaunch').outcome).toEqual({ k: 'vmfail-invalid' });
  });
});

describe('copy_enlightened_to_vmcs12: copy-all vs clean-fields', () => {
  const ALWAYS = EVMCS_COPY_IN.filter((s) => s.group < 0).length;
  const inGroup = (bit: number) => EVMCS_COPY_IN.filter((s) => s.group === bit).length;

  test('the field table: two fields are always copied, every field belongs to one group', () => {
    expect(ALWAYS).toBe(2);
    expect(EVMCS_COPY_IN.filter((s) => s.group < 0).map((s) => s.field.name).sort()).toEqual(['GUEST_RIP', 'TPR_THRESHOLD']);
    expect(EVMCS_CLEAN_GROUPS.reduce((n, g) => n + inGroup(g.bit), 0) + ALWAYS).toBe(EVMCS_COPY_IN.length);
    expect(inGroup(1)).toBe(1); // MSR_BITMAP alone
  });

  const entries: [string, number][] = [
    ['all clean', 0xffff],
    ['MSR_BITMAP dirty', 0xfffd],
    ['CONTROL_PROC and GUEST_GRP2 dirty', 0xffff & ~(HV_VMX_ENLIGHTENED_CLEAN_FIELD.CONTROL_PROC | HV_VMX_ENLIGHTENED_CLEAN_FIELD.GUEST_GRP2)],
    ['all dirty', 0x0],
  ];

  test.each(entries)('VMRESUME with %s', (_name, clean) => {
    const counts: Record<string, { fields: number; groups: number }> = {};
    for (const spec of ['evmcs=copy-all', 'evmcs=clean-fields']) {
      const r = replayer(spec);
      setup(r);
      const launch = run(r, 'l1.vmlaunch');
      // VMLAUNCH clears every clean bit first: both copy everything
      expect({ fields: launch.cost.evmcsFieldsCopied, groups: launch.cost.evmcsGroupsCopied }).toEqual({ fields: EVMCS_COPY_IN.length, groups: 16 });
      run(r, 'l2.vmcall', `l1.evmcs-clean 0x5000 0x${clean.toString(16)}`);
      const { cost } = run(r, 'l1.vmresume');
      counts[spec] = { fields: cost.evmcsFieldsCopied, groups: cost.evmcsGroupsCopied };
    }
    const dirty = EVMCS_CLEAN_GROUPS.filter((g) => !(clean & (1 << g.bit)));
    expect(counts['evmcs=copy-all']).toEqual({ fields: EVMCS_COPY_IN.length, groups: 16 });
    expect(counts['evmcs=clean-fields']).toEqual({ fields: ALWAYS + dirty.reduce((n, g) => n + inGroup(g.bit), 0), groups: dirty.length });
  });

  test('clean-fields keeps vmcs12 stale for a group L1 left clean; copy-all does not', () => {
    const values: Record<string, bigint | undefined> = {};
    for (const spec of ['evmcs=copy-all', 'evmcs=clean-fields']) {
      const r = replayer(spec);
      setup(r);
      run(r, 'l1.evmcs-write 0x5000 EXCEPTION_BITMAP 0x1', 'l1.vmlaunch', 'l2.vmcall');
      // L1 changes a CONTROL_EXCPN field but leaves its clean bit set (breaking the contract)
      run(r, 'l1.evmcs-write 0x5000 EXCEPTION_BITMAP 0x4000', 'l1.evmcs-write 0x5000 GUEST_RIP 0x401000', 'l1.vmresume');
      values[spec] = vmcs12Read(r.peek().vcpus[0].nested, VMCS.EXCEPTION_BITMAP);
      // GUEST_RIP has no clean group: always copied
      expect(vmcs12Read(r.peek().vcpus[0].nested, VMCS.GUEST_RIP)).toBe(0x401000n);
    }
    expect(values).toEqual({ 'evmcs=copy-all': 0x4000n, 'evmcs=clean-fields': 0x1n });
  });
});
