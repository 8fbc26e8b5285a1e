/**
 * The msr-bitmap area: bitmap addressing, the vmcs01+vmcs12 merge
 * (nested_vmx_prepare_msr_bitmap) and when each path may skip it.
 */
import { CPU_BASED, MSR, MSR_BITMAP_SIZE, NESTED_MERGED_MSRS, SECONDARY_EXEC, VMCS, msrBitmapPosition } from '@nvx/arch';
import {
  Costs,
  Ctx,
  Replayer,
  World,
  cloneWorld,
  diffCosts,
  initialState,
  mergeMsrBitmap,
  msrBitmapBit,
  newCosts,
  parseProfile,
  setBitmapBit,
  step,
  testBitmapBit,
  vmcs12Set,
  writeGuest,
} from '@nvx/emulator';
import { Outcome, TraceEvent, WorldConfig, makeHeader, parseEventLine } from '@nvx/trace';

const OUTSIDE = [0x2000, 0x2001, 0x1fffffff, 0x40000000, 0x40000073, 0xbfffffff, 0xc0002000, 0xc0010015, 0xffffffff];

describe('msrBitmapBit (the hot-path addressing) agrees with arch msrBitmapPosition', () => {
  test('for every MSR of both ranges, read and write', () => {
    const bad: string[] = [];
    for (const base of [0, 0xc0000000]) {
      for (let msr = base; msr < base + 0x2000; msr++) {
        for (const access of ['read', 'write'] as const) {
          const pos = msrBitmapPosition(msr, access)!;
          const bit = msrBitmapBit(msr, access === 'write');
          if (!pos || bit < 0 || bit >> 3 !== pos.byte || (bit & 7) !== pos.bit) bad.push(`0x${msr.toString(16)} ${access}: bit ${bit}, position ${JSON.stringify(pos)}`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  test('outside both ranges: no bit, no position, always intercepted', () => {
    const zero = new Uint8Array(MSR_BITMAP_SIZE);
    for (const msr of OUTSIDE) {
      for (const write of [false, true]) {
        expect(msrBitmapBit(msr, write)).toBe(-1);
        expect(msrBitmapPosition(msr, write ? 'write' : 'read')).toBeNull();
        expect(testBitmapBit(zero, msr, write)).toBe(true);
      }
    }
  });

  test('setBitmapBit sets exactly the bit msrBitmapPosition names (sampled), and testBitmapBit reads it back', () => {
    for (const msr of [0, 1, 7, 8, 0x48, 0x10b, 0x808, 0x1fff, 0xc0000000, 0xc0000080, 0xc0000100, 0xc0000102, 0xc0001fff]) {
      for (const access of ['read', 'write'] as const) {
        const bm = new Uint8Array(MSR_BITMAP_SIZE);
        setBitmapBit(bm, msr, access === 'write', true);
        const pos = msrBitmapPosition(msr, access)!;
        const set = [...bm.keys()].filter((i) => bm[i] !== 0);
        expect(set).toEqual([pos.byte]);
        expect(bm[pos.byte]).toBe(1 << pos.bit);
        expect(testBitmapBit(bm, msr, access === 'write')).toBe(true);
        expect(testBitmapBit(bm, msr, access !== 'write')).toBe(false);
        setBitmapBit(bm, msr, access === 'write', false);
        expect(bm.every((b) => b === 0)).toBe(true);
      }
    }
    // outside the ranges setBitmapBit writes nothing
    const bm = new Uint8Array(MSR_BITMAP_SIZE);
    for (const msr of OUTSIDE) setBitmapBit(bm, msr, false, true);
    expect(bm.every((b) => b === 0)).toBe(true);
  });
});

// ---------------------------------------------------------------------------
// mergeMsrBitmap on a mutable world
// ---------------------------------------------------------------------------

const L1_BITMAP = 0x3000n;

interface Bench {
  w: World;
  ctx: Ctx;
  /** set L1's intercept bit in its bitmap page in guest memory */
  l1(msr: number, write: boolean, intercept: boolean): void;
  /** set vmcs01's intercept bit */
  l01(msr: number, write: boolean, intercept: boolean): void;
  /** vmcs02's bit after a merge */
  l02(msr: number, write: boolean): boolean;
  controls(primary: number, secondary: number): void;
  merge(): boolean;
}

function bench(): Bench {
  const profile = parseProfile('msr-bitmap=merge');
  const w = cloneWorld(initialState(makeHeader(), profile));
  const ctx: Ctx = { inPlace: true, fresh: null, profile, cost: newCosts() };
  const v = w.vcpus[0];
  const page = new Uint8Array(MSR_BITMAP_SIZE);
  const b: Bench = {
    w,
    ctx,
    l1(msr, write, intercept) {
      setBitmapBit(page, msr, write, intercept);
      const bit = msrBitmapBit(msr, write);
      writeGuest(ctx, w, L1_BITMAP + BigInt(bit >> 3), 1, BigInt(page[bit >> 3]));
    },
    l01(msr, write, intercept) {
      setBitmapBit(v.vmcs01MsrBitmap, msr, write, intercept);
    },
    l02: (msr, write) => testBitmapBit(v.nested.vmcs02MsrBitmap, msr, write),
    controls(primary, secondary) {
      vmcs12Set(ctx, v.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL, BigInt(primary));
      vmcs12Set(ctx, v.nested, VMCS.SECONDARY_VM_EXEC_CONTROL, BigInt(secondary));
    },
    merge: () => mergeMsrBitmap(ctx, w, v),
  };
  vmcs12Set(ctx, v.nested, VMCS.MSR_BITMAP, L1_BITMAP);
  b.controls(CPU_BASED.USE_MSR_BITMAPS, 0);
  return b;
}

/** Every (msr, write) the allow-list merges. */
const MERGED: { msr: number; write: boolean }[] = NESTED_MERGED_MSRS.flatMap((m) => [
  ...(m.read ? [{ msr: m.msr, write: false }] : []),
  ...(m.write ? [{ msr: m.msr, write: true }] : []),
]);

const X2APIC = Array.from({ length: 0x100 }, (_, i) => 0x800 + i);
const PRIMARY_X2 = CPU_BASED.USE_MSR_BITMAPS | CPU_BASED.TPR_SHADOW | CPU_BASED.ACTIVATE_SECONDARY_CONTROLS;
const { VIRTUALIZE_X2APIC_MODE: X2, APIC_REGISTER_VIRT: ARV, VIRTUAL_INTR_DELIVERY: VID } = SECONDARY_EXEC;

/** vmcs02 intercepts of all x2APIC MSRs for one access type, as a list of the MSRs that pass. */
function x2apicPassing(b: Bench, write: boolean): number[] {
  return X2APIC.filter((m) => !b.l02(m, write));
}

describe('mergeMsrBitmap: vmcs02 = vmcs01 | L1 for the merged MSRs', () => {
  test('each merged (MSR, access): all four combinations, with transitions 1 -> 0 and 0 -> 1', () => {
    const b = bench();
    // the order makes each bit go 1 -> 0 -> 1 -> 0 -> 1 -> 0 -> 1
    const combos: [boolean, boolean][] = [
      [true, true],
      [false, false],
      [true, false],
      [false, false],
      [false, true],
      [false, false],
      [true, true],
    ];
    const bad: string[] = [];
    for (const [l01, l1] of combos) {
      for (const m of MERGED) {
        b.l01(m.msr, m.write, l01);
        b.l1(m.msr, m.write, l1);
      }
      expect(b.merge()).toBe(true);
      for (const m of MERGED) {
        if (b.l02(m.msr, m.write) !== (l01 || l1)) bad.push(`0x${m.msr.toString(16)} ${m.write ? 'write' : 'read'} vmcs01=${l01} L1=${l1}: vmcs02=${b.l02(m.msr, m.write)}`);
      }
    }
    expect(bad).toEqual([]);
  });

  test('merged MSRs are independent: one MSR intercepted by vmcs01, another by L1, the rest by nobody', () => {
    const b = bench();
    for (let i = 0; i < MERGED.length; i++) {
      for (const m of MERGED) {
        b.l01(m.msr, m.write, false);
        b.l1(m.msr, m.write, false);
      }
      const a = MERGED[i];
      const c = MERGED[(i + 1) % MERGED.length];
      b.l01(a.msr, a.write, true);
      b.l1(c.msr, c.write, true);
      b.merge();
      const intercepted = MERGED.filter((m) => b.l02(m.msr, m.write));
      expect(intercepted).toEqual(MERGED.filter((m) => m === a || m === c));
    }
  });

  test('everything that is neither merged nor virtualized x2APIC stays intercepted, even when vmcs01 and L1 pass it', () => {
    const b = bench();
    b.w.vcpus[0].vmcs01MsrBitmap.fill(0);
    // L1's page is all zero: L1 intercepts nothing
    expect(b.merge()).toBe(true);
    const bm = b.w.vcpus[0].nested.vmcs02MsrBitmap;
    const passing: string[] = [];
    for (let bit = 0; bit < MSR_BITMAP_SIZE * 8; bit++) {
      if (!(bm[bit >> 3] & (1 << (bit & 7)))) passing.push(`bit 0x${bit.toString(16)}`);
    }
    const expected = MERGED.map((m) => `bit 0x${msrBitmapBit(m.msr, m.write).toString(16)}`).sort();
    expect(passing.sort()).toEqual(expected);
  });

  test('an access the allow-list does not merge stays intercepted (PRED_CMD and FLUSH_CMD reads)', () => {
    const b = bench();
    for (const msr of [MSR.MSR_IA32_PRED_CMD, MSR.MSR_IA32_FLUSH_CMD]) {
      b.l01(msr, false, false);
      b.l1(msr, false, false);
      b.l01(msr, true, false);
      b.l1(msr, true, false);
    }
    b.merge();
    expect(b.l02(MSR.MSR_IA32_PRED_CMD, false)).toBe(true);
    expect(b.l02(MSR.MSR_IA32_FLUSH_CMD, false)).toBe(true);
    expect(b.l02(MSR.MSR_IA32_PRED_CMD, true)).toBe(false);
    expect(b.l02(MSR.MSR_IA32_FLUSH_CMD, true)).toBe(false);
  });

  test('returns false when L1\'s bitmap page is not in a memslot', () => {
    const b = bench();
    vmcs12Set(b.ctx, b.w.vcpus[0].nested, VMCS.MSR_BITMAP, 0x40000000n); // beyond the 4 MiB memslot
    expect(b.merge()).toBe(false);
  });
});

describe('mergeMsrBitmap: the x2APIC range', () => {
  test('force-intercepted without x2APIC virtualization, whatever vmcs01 and L1 say', () => {
    const b = bench();
    for (const m of X2APIC) {
      b.l01(m, false, false);
      b.l01(m, true, false);
    }
    // L1's page is zero: it passes every x2APIC MSR
    for (const [primary, secondary] of [
      [CPU_BASED.USE_MSR_BITMAPS, 0],
      [PRIMARY_X2, 0],
      [PRIMARY_X2, ARV | VID], // no x2APIC mode
      [CPU_BASED.USE_MSR_BITMAPS | CPU_BASED.TPR_SHADOW, X2 | ARV | VID], // secondary controls not activated
    ]) {
      b.controls(primary, secondary);
      b.merge();
      expect({ primary, secondary, read: x2apicPassing(b, false), write: x2apicPassing(b, true) }).toEqual({ primary, secondary, read: [], write: [] });
    }
  });

  test('x2APIC mode alone: only TPR read and write pass (if L1 passes them)', () => {
    const b = bench();
    b.controls(PRIMARY_X2, X2);
    b.merge();
    expect(x2apicPassing(b, false)).toEqual([MSR.MSR_X2APIC_TPR]);
    expect(x2apicPassing(b, true)).toEqual([MSR.MSR_X2APIC_TPR]);
    b.l1(MSR.MSR_X2APIC_TPR, true, true);
    b.merge();
    expect(x2apicPassing(b, false)).toEqual([MSR.MSR_X2APIC_TPR]);
    expect(x2apicPassing(b, true)).toEqual([]);
  });

  test('APIC-register virtualization: the read bits are L1\'s, verbatim; vmcs01 is ignored', () => {
    const b = bench();
    const l1Reads = [MSR.MSR_X2APIC_ID, MSR.MSR_X2APIC_ICR, 0x8ff];
    for (const m of l1Reads) b.l1(m, false, true);
    // vmcs01 intercepts every x2APIC access: it must not matter
    for (const m of X2APIC) {
      b.l01(m, false, true);
      b.l01(m, true, true);
    }
    b.controls(PRIMARY_X2, X2 | ARV);
    b.merge();
    expect(x2apicPassing(b, false)).toEqual(X2APIC.filter((m) => !l1Reads.includes(m)));
    expect(x2apicPassing(b, true)).toEqual([MSR.MSR_X2APIC_TPR]);
  });

  test('virtual-interrupt delivery: EOI and SELF_IPI writes pass unless L1 intercepts them', () => {
    const b = bench();
    b.controls(PRIMARY_X2, X2 | ARV | VID);
    b.merge();
    expect(x2apicPassing(b, true)).toEqual([MSR.MSR_X2APIC_TPR, MSR.MSR_X2APIC_EOI, MSR.MSR_X2APIC_SELF_IPI]);
    b.l1(MSR.MSR_X2APIC_SELF_IPI, true, true);
    b.merge();
    expect(x2apicPassing(b, true)).toEqual([MSR.MSR_X2APIC_TPR, MSR.MSR_X2APIC_EOI]);
    // without VID, EOI and SELF_IPI are intercepted again
    b.controls(PRIMARY_X2, X2 | ARV);
    b.merge();
    expect(x2apicPassing(b, true)).toEqual([MSR.MSR_X2APIC_TPR]);
  });

  test('turning virtualization off re-intercepts everything a previous merge opened', () => {
    const b = bench();
    b.controls(PRIMARY_X2, X2 | ARV | VID);
    b.merge();
    expect(x2apicPassing(b, false).length).toBe(0x100);
    b.controls(PRIMARY_X2, 0);
    b.merge();
    expect(x2apicPassing(b, false)).toEqual([]);
    expect(x2apicPassing(b, true)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// When the paths merge and when they skip (trace level)
// ---------------------------------------------------------------------------

function ev(line: string, cfg?: WorldConfig): TraceEvent {
  return parseEventLine(line, cfg);
}

/** Run lines on a Replayer; returns the outcome and the costs of the last line. */
function runLines(r: Replayer, lines: string[]): { outcome: Outcome; cost: Costs } {
  let outcome: Outcome = { k: 'ok' };
  let before = { ...r.cost };
  for (const l of lines) {
    before = { ...r.cost };
    outcome = r.apply(ev(l));
  }
  return { outcome, cost: diffCosts(r.cost, before) };
}

/** VMWRITEs of the must-be-1 bits of the four controls KVM verifies at VM-entry (vmx_control_verify) */
const MUST_BE_1 = ['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16', 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x4006172', 'l1.vmwrite VM_EXIT_CONTROLS 0x36dfb', 'l1.vmwrite VM_ENTRY_CONTROLS 0x11fb'];

const EVMCS_SETUP = [
  'l1.write 0x1000 4 0x11e57ed0',
  'l1.vmxon 0x1000',
  'l1.write 0x5000 4 0x1',
  'l1.evmcs-ptr 0x5000',
  'l1.evmcs-control 0x5000 0x2',
  'l1.evmcs-write 0x5000 CPU_BASED_VM_EXEC_CONTROL 0x14006172',
  'l1.evmcs-write 0x5000 MSR_BITMAP 0x3000',
  'l1.evmcs-write 0x5000 PIN_BASED_VM_EXEC_CONTROL 0x16',
  'l1.evmcs-write 0x5000 VM_EXIT_CONTROLS 0x36dfb',
  'l1.evmcs-write 0x5000 VM_ENTRY_CONTROLS 0x11fb',
  'l1.vmlaunch',
  'l2.vmcall',
];

describe('enlightened: the merge is skipped only with the control bit, the clean bit and no forced recalc', () => {
  const cases: { control: boolean; clean: boolean; force: boolean }[] = [];
  for (const control of [false, true]) for (const clean of [false, true]) for (const force of [false, true]) cases.push({ control, clean, force });

  test.each(cases)('control=$control clean=$clean force_msr_bitmap_recalc=$force', ({ control, clean, force }) => {
    const p = parseProfile('msr-bitmap=enlightened');
    const r = Replayer.fromHeader(makeHeader({ evmcs: true }), p);
    const launch = runLines(r, EVMCS_SETUP.slice(0, -1));
    expect(launch.outcome).toEqual({ k: 'entered' });
    expect(launch.cost.msrBitmapMerges).toBe(1); // VMLAUNCH always rebuilds
    runLines(r, ['l2.vmcall']);
    expect(r.peek().vcpus[0].nested.forceMsrBitmapRecalc).toBe(false);
    runLines(r, [`l1.evmcs-control 0x5000 ${control ? '0x2' : '0x0'}`, `l1.evmcs-clean 0x5000 ${clean ? '0xffff' : '0xfffd'}`]);
    if (force) runLines(r, ['host.msr-intercept MSR_GS_BASE read true']); // vmx_msr_bitmap_l01_changed
    expect(r.peek().vcpus[0].nested.forceMsrBitmapRecalc).toBe(force);
    const { outcome, cost } = runLines(r, ['l1.vmresume']);
    expect(outcome).toEqual({ k: 'entered' });
    const skip = control && clean && !force;
    expect({ merges: cost.msrBitmapMerges, skips: cost.msrBitmapMergeSkips }).toEqual({ merges: skip ? 0 : 1, skips: skip ? 1 : 0 });
    expect(r.peek().vcpus[0].nested.forceMsrBitmapRecalc).toBe(false);
    expect(r.peek().vcpus[0].nested.vmcs02UseMsrBitmaps).toBe(true);
  });

  test('without an eVMCS it merges on every entry', () => {
    const p = parseProfile('msr-bitmap=enlightened');
    const r = Replayer.fromHeader(makeHeader(), p);
    runLines(r, ['l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', ...MUST_BE_1, 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x14006172', 'l1.vmwrite MSR_BITMAP 0x3000']);
    for (const l of ['l1.vmlaunch', 'l1.vmresume', 'l1.vmresume']) {
      const { cost } = runLines(r, [l]);
      expect({ merges: cost.msrBitmapMerges, skips: cost.msrBitmapMergeSkips }).toEqual({ merges: 1, skips: 0 });
      runLines(r, ['l2.vmcall']);
    }
  });
});

describe('every path: no MSR bitmaps in vmcs12 means no bitmap in vmcs02', () => {
  test.each(['msr-bitmap=no-bitmap', 'msr-bitmap=merge', 'msr-bitmap=merge-tracked', 'msr-bitmap=enlightened'])('%s', (spec) => {
    const r = Replayer.fromHeader(makeHeader({ evmcs: true }), parseProfile(spec));
    const setup = EVMCS_SETUP.map((l) => l.replace('CPU_BASED_VM_EXEC_CONTROL 0x14006172', 'CPU_BASED_VM_EXEC_CONTROL 0x4006172'));
    const launch = runLines(r, setup.slice(0, -1));
    expect(launch.outcome).toEqual({ k: 'entered' });
    expect(r.peek().vcpus[0].nested.vmcs02UseMsrBitmaps).toBe(false);
    expect(launch.cost.msrBitmapMerges + launch.cost.msrBitmapMergeSkips).toBe(0);
    expect(runLines(r, ['l2.rdmsr MSR_FS_BASE']).outcome).toEqual({ k: 'exit', reason: 31, qual: 0n });
  });
});

describe('merge-tracked merges again exactly when the merged bitmap may be stale', () => {
  const SETUP = [
    'l1.write 0x1000 4 0x11e57ed0',
    'l1.vmxon 0x1000',
    'l1.write 0x2000 4 0x11e57ed0',
    'l1.vmptrld 0x2000', ...MUST_BE_1,
    'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x94206172',
    'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x310',
    'l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x17', // virtual-interrupt delivery needs external-interrupt exiting
    'l1.vmwrite MSR_BITMAP 0x3000',
    'l1.vmlaunch',
    'l2.vmcall',
  ];
  const cases: [string, string[], boolean][] = [
    ['nothing changed', [], false],
    ['an unrelated page written', ['l1.write 0x8000 8 0x1'], false],
    ['L1 wrote its bitmap page', ['l1.msr-bitmap 0x3000 MSR_FS_BASE read true'], true],
    ['an 8-byte store into the bitmap page', ['l1.write 0x3ff8 8 0x0'], true],
    ['MSR_BITMAP pointer changed', ['l1.vmwrite MSR_BITMAP 0x7000'], true],
    ['secondary controls changed', ['l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x110'], true],
    ['secondary controls deactivated in the primary controls', ['l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x14206172'], true],
    ['other primary controls changed', ['l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x942061f2'], false],
    ['L0 changed a vmcs01 intercept', ['host.msr-intercept MSR_FS_BASE write true'], true],
    ['host memory changed', ['host.page-migrate 0x3'], true],
    ['VMPTRLD of the same VMCS again', ['l1.vmptrld 0x2000'], false],
  ];
  test.each(cases)('%s', (_name, change, merges) => {
    const r = Replayer.fromHeader(makeHeader(), parseProfile('msr-bitmap=merge-tracked'));
    expect(runLines(r, SETUP.slice(0, -1)).cost.msrBitmapMerges).toBe(1);
    runLines(r, ['l2.vmcall', ...change]);
    const { outcome, cost } = runLines(r, ['l1.vmresume']);
    expect(outcome).toEqual({ k: 'entered' });
    expect({ merges: cost.msrBitmapMerges, skips: cost.msrBitmapMergeSkips }).toEqual({ merges: merges ? 1 : 0, skips: merges ? 0 : 1 });
  });
});

describe('costs are not observations', () => {
  test('L2 FS_BASE accesses L1 passes: an exit to L0 under reference, none under optimized, same outcomes', () => {
    const h = makeHeader();
    const lines = [
      'l1.write 0x1000 4 0x11e57ed0',
      'l1.vmxon 0x1000',
      'l1.write 0x2000 4 0x11e57ed0',
      'l1.vmptrld 0x2000', ...MUST_BE_1,
      'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x14006172',
      'l1.vmwrite MSR_BITMAP 0x3000',
      'l1.vmlaunch',
      'l2.wrmsr MSR_FS_BASE 0x7f0000001000',
      'l2.rdmsr MSR_FS_BASE',
    ].map((l) => ev(l, h.config));
    const per = (spec: string) => {
      const p = parseProfile(spec);
      let s = initialState(h, p);
      return lines.map((e) => {
        const r = step(s, e, p);
        s = r.state;
        return { outcome: r.outcome, l0Exits: r.cost.l0Exits, nestedExits: r.cost.nestedExits };
      });
    };
    const ref = per('reference');
    const opt = per('optimized');
    expect(opt.map((x) => x.outcome)).toEqual(ref.map((x) => x.outcome));
    expect(ref.slice(-2)).toEqual([
      { outcome: { k: 'ok' }, l0Exits: 1, nestedExits: 0 },
      { outcome: { k: 'value', value: 0x7f0000001000n }, l0Exits: 1, nestedExits: 0 },
    ]);
    expect(opt.slice(-2)).toEqual([
      { outcome: { k: 'ok' }, l0Exits: 0, nestedExits: 0 },
      { outcome: { k: 'value', value: 0x7f0000001000n }, l0Exits: 0, nestedExits: 0 },
    ]);
  });

  test('a vmcs02 that passes an MSR vmcs01 intercepts shows: L2 reads L0\'s value', () => {
    // Build a too-permissive vmcs02 by hand: the native read returns the host-owned value.
    const p = parseProfile('msr-bitmap=merge');
    const h = makeHeader();
    const r = Replayer.fromHeader(h, p);
    runLines(r, ['l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', ...MUST_BE_1, 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x14006172', 'l1.vmwrite MSR_BITMAP 0x3000', 'l1.vmlaunch']);
    const v = r.peek().vcpus[0];
    setBitmapBit(v.nested.vmcs02MsrBitmap, MSR.MSR_STAR, false, false); // vmcs01 intercepts STAR
    expect(runLines(r, ['l2.rdmsr MSR_STAR']).outcome).toEqual({ k: 'value', value: 0x4c30000000000000n | BigInt(MSR.MSR_STAR) });
  });
});
