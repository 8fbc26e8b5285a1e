/**
 * The guest-pages area: memory features (memslot resize, pinned pages), the
 * gfn_to_pfn_cache model, what each path hands to the CPU and to L0, posted
 * interrupts, APIC-page accesses through a stale host address, and the
 * nested-context table.
 */
import {
  Costs,
  Gpc,
  NESTED_CONTEXTS_PER_VCPU,
  Profile,
  Replayer,
  World,
  gfnToHva,
  gpcCheck,
  gpcInvalidateRange,
  initialState,
  nestedContexts,
  newCosts,
  parseProfile,
  stateHash,
  step,
} from '@nvx/emulator';
import { Outcome, TraceEvent, TraceHeader, makeHeader, parseEventLine } from '@nvx/trace';
import { gpcActivate, gpcDeactivate, gpcInit, gpcLock, gpcRefresh } from '../src/gpc';

const PATHS = ['fresh', 'kvm-map', 'pfncache', 'pfncache-ctx'] as const;
const profileOf = (path: string): Profile => parseProfile(path === 'fresh' ? 'reference' : `guest-pages=${path}`);

/** Slot 0: gfn 0..0x3f; slot 1: gfn 0x100..0x103 (the APIC pages); slot 2 (spare): gfn 0x300..0x303. */
function header(over: Partial<Parameters<typeof makeHeader>[0]> = {}): TraceHeader {
  return makeHeader({
    vcpus: 2,
    memslots: [
      { slot: 0, gfn: 0n, npages: 0x40, flags: 0 },
      { slot: 1, gfn: 0x100n, npages: 4, flags: 0 },
      { slot: 2, gfn: 0x300n, npages: 4, flags: 0 },
    ],
    ...over,
  });
}

/** VMWRITEs of the must-be-1 bits of the four controls KVM verifies at VM-entry (vmx_control_verify) */
const MUST_BE_1 = ['l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16', 'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x4006172', 'l1.vmwrite VM_EXIT_CONTROLS 0x36dfb', 'l1.vmwrite VM_ENTRY_CONTROLS 0x11fb'];

function run(r: Replayer, ...lines: string[]): Outcome[] {
  return lines.map((l) => r.apply(parseEventLine(l, r.peek().config)));
}

/** L1 on vCPU 0 with one vmcs12 giving L2 APIC-access virtualization, a TPR shadow and posted interrupts. */
const SETUP = [
  'l1.write 0x1000 4 0x11e57ed0',
  'l1.vmxon 0x1000',
  '@1 l1.write 0x5000 4 0x11e57ed0',
  '@1 l1.vmxon 0x5000',
  'l1.write 0x2000 4 0x11e57ed0',
  'l1.vmptrld 0x2000',
  'l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x84206172',
  'l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x301',
  'l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x97', // posted interrupts, and the external-interrupt exiting they need
  'l1.vmwrite VM_EXIT_CONTROLS 0x3edfb', // acknowledge interrupt on exit, which posted interrupts need
  'l1.vmwrite VM_ENTRY_CONTROLS 0x11fb', // the must-be-1 bits (vmx_control_verify)
  'l1.vmwrite APIC_ACCESS_ADDR 0x100000',
  'l1.vmwrite VIRTUAL_APIC_PAGE_ADDR 0x101000',
  'l1.vmwrite POSTED_INTR_DESC_ADDR 0x102040',
];

function started(path: string, over: Partial<Parameters<typeof makeHeader>[0]> = {}): Replayer {
  const p = profileOf(path);
  const r = new Replayer(initialState(header(over), p), p);
  run(r, ...SETUP);
  return r;
}

const value = (v: bigint): Outcome => ({ k: 'value', value: v });
const OK: Outcome = { k: 'ok' };

describe('memory: memslot resize', () => {
  test('shrink drops the frames past the end; growing back maps the same host pages again', () => {
    const r = started('fresh');
    run(r, 'l1.write 0x103010 4 0x99');
    expect(run(r, 'host.memslot-resize 1 0x2', 'l1.read 0x103010 4', 'l1.read 0x101000 4')).toEqual([OK, { k: 'ignored', why: 'gpa 0x103010 is not in a memslot' }, value(0n)]);
    expect(run(r, 'host.memslot-resize 1 0x4', 'l1.read 0x103010 4')).toEqual([OK, value(0x99n)]);
  });

  test('a resize bumps the generation and is refused over another slot, at 0 pages, or for a missing slot', () => {
    const r = started('fresh');
    const gen = r.peek().mem.generation;
    run(r, 'host.memslot-resize 1 0x8');
    expect(r.peek().mem.generation).toBe(gen + 1);
    expect(run(r, 'host.memslot-resize 1 0x300')).toEqual([{ k: 'ignored', why: 'memslot 1 would overlap another' }]);
    expect(run(r, 'host.memslot-resize 1 0x0')).toEqual([{ k: 'ignored', why: 'memslot of 0 pages' }]);
    expect(run(r, 'host.memslot-resize 9 0x1')).toEqual([{ k: 'ignored', why: 'no memslot 9' }]);
  });
});

describe('gfn_to_pfn_cache', () => {
  function world(): { w: World; cost: Costs; ctx: Parameters<typeof gpcRefresh>[0] } {
    const p = parseProfile('reference');
    const w = initialState(header({ unmanagedMemory: true }), p);
    const cost = newCosts();
    return { w, cost, ctx: { inPlace: true, fresh: null, profile: p, cost } };
  }

  test('activate maps once; check holds until the generation moves; a refresh with the same page maps nothing', () => {
    const { w, cost, ctx } = world();
    const c: Gpc = gpcInit(0);
    expect(gpcCheck(w, c)).toBe(false);
    expect(gpcActivate(ctx, w, c, 0x101000n)).toBe(true);
    expect(gpcCheck(w, c)).toBe(true);
    expect([cost.maps, cost.memremaps, cost.gpcRefreshes]).toEqual([1, 1, 1]);
    w.mem.generation++;
    expect(gpcCheck(w, c)).toBe(false);
    expect(gpcLock(ctx, w, c, 0x101000n)).toBe(c.pfn);
    expect([cost.maps, cost.gpcRefreshes]).toEqual([1, 2]);
  });

  test('the notifier range is half-open and uses the cached uhva; a refresh after it maps the new page and unmaps the old', () => {
    const { w, cost, ctx } = world();
    const c = gpcInit();
    gpcActivate(ctx, w, c, 0x101000n);
    const old = c.pfn;
    expect(gpcInvalidateRange(ctx, c, c.uhva + 1, c.uhva + 5)).toBe(false);
    expect(gpcInvalidateRange(ctx, c, c.uhva - 3, c.uhva)).toBe(false);
    expect(gpcInvalidateRange(ctx, c, c.uhva, c.uhva + 1)).toBe(true);
    expect(gpcInvalidateRange(ctx, c, c.uhva, c.uhva + 1)).toBe(false); // already invalid
    expect(cost.gpcInvalidations).toBe(1);
    w.mem.hvaToPfn[c.uhva] = 0x9999; // the page moved
    expect(gpcLock(ctx, w, c, 0x101000n)).toBe(0x9999);
    expect(c.pfn).not.toBe(old);
    expect([cost.maps, cost.unmaps, cost.memunmaps]).toEqual([2, 1, 1]);
  });

  test('a gpa without a memslot fails the refresh and drops the mapping; deactivate keeps gpa and generation', () => {
    const { w, cost, ctx } = world();
    const c = gpcInit();
    gpcActivate(ctx, w, c, 0x101000n);
    expect(gpcLock(ctx, w, c, 0x900000n)).toBe(-1);
    expect([c.valid, c.pfn, cost.unmaps]).toEqual([false, -1, 1]);
    gpcActivate(ctx, w, c, 0x101000n);
    gpcDeactivate(ctx, w, c);
    expect([c.active, c.valid, c.pfn, c.gpa]).toEqual([false, false, -1, 0x101000n]);
    expect(gpcRefresh(ctx, w, c)).toBe(false); // not active
  });
});

describe('APIC pages through vmcs02', () => {
  test.each(PATHS)('%s: a TPR write is virtualized into the virtual-APIC page; another register exits to L1', (path) => {
    const r = started(path);
    expect(run(r, 'l1.vmlaunch', 'l2.apic-write 0x80 0x20', 'l2.apic-read 0x80', 'l2.apic-write 0x300 0x1')).toEqual([
      { k: 'entered' },
      OK,
      value(0x20n),
      { k: 'exit', reason: 44, qual: 0x1300n },
    ]);
    expect(run(r, 'l1.read 0x101080 4', 'l1.read 0x100080 4')).toEqual([value(0x20n), value(0n)]);
  });

  test.each(PATHS)('%s: an entry with an APIC page outside every memslot fails with KVM_EXIT_INTERNAL_ERROR', (path) => {
    const r = started(path);
    run(r, 'host.memslot-move 1 0x200');
    expect(run(r, 'l1.vmlaunch')).toEqual([{ k: 'userspace', exit: 'internal-error' }]);
    expect(r.peek().vcpus[0].nested.guestMode).toBe(false);
  });

  test('kvm-map on unmanaged memory: after a migration the CPU no longer recognizes the APIC page: plain memory access', () => {
    const r = started('kvm-map', { unmanagedMemory: true });
    run(r, 'l1.vmlaunch', 'host.page-migrate 0x100');
    expect(run(r, 'l2.apic-write 0x300 0x77', 'l2.apic-read 0x300')).toEqual([OK, value(0x77n)]);
    // the reference: an APIC-access exit
    const f = started('fresh', { unmanagedMemory: true });
    run(f, 'l1.vmlaunch', 'host.page-migrate 0x100');
    expect(run(f, 'l2.apic-write 0x300 0x77')).toEqual([{ k: 'exit', reason: 44, qual: 0x1300n }]);
  });

  test('kvm-map on memory with struct page pins what it maps: the migration leaves the page where it is', () => {
    const r = started('kvm-map');
    run(r, 'l1.vmlaunch');
    const w = r.peek();
    const hva = gfnToHva(w.mem, 0x101);
    const before = w.mem.hvaToPfn[hva];
    run(r, 'host.page-migrate 0x101');
    expect(r.peek().mem.hvaToPfn[hva]).toBe(before);
    // after the exit (unmapped) the page moves
    run(r, 'l2.vmcall', 'host.page-migrate 0x101');
    expect(r.peek().mem.hvaToPfn[hva]).not.toBe(before);
  });

  test.each(['pfncache', 'pfncache-ctx'])('%s: a migration under L2 kicks its vCPU and rewrites vmcs02; one while L1 runs does not', (path) => {
    const r = started(path, { unmanagedMemory: true });
    run(r, 'l1.vmlaunch');
    const kicks0 = r.cost.kicks;
    run(r, 'host.page-migrate 0x101');
    expect(r.cost.kicks).toBe(kicks0 + 1);
    expect(run(r, 'l2.apic-write 0x80 0x31', 'l2.vmcall', 'l1.read 0x101080 4')).toEqual([OK, { k: 'exit', reason: 18, qual: 0n }, value(0x31n)]);
    run(r, 'host.page-migrate 0x101');
    expect(r.cost.kicks).toBe(kicks0 + 1);
    expect(r.cost.gpcInvalidations).toBeGreaterThanOrEqual(2);
  });
});

describe('posted interrupts', () => {
  test.each(PATHS)('%s: L2 running: the CPU moves the PIR into the virtual-APIC IRR and clears ON', (path) => {
    const r = started(path);
    run(r, 'l1.vmlaunch');
    expect(run(r, '@1 l1.posted-intr 0 0x102040 0x61', 'l2.apic-read 0x230', '@1 l1.read 0x102060 1', '@1 l1.read 0x10204c 4')).toEqual([OK, value(2n), value(0n), value(0n)]);
  });

  test.each(PATHS)('%s: L2 not running: the descriptor keeps it until L0 completes it at the next entry', (path) => {
    const r = started(path);
    // vector 0x22: PIR byte 4 bit 2; IRR word 1 (0x210) bit 2
    expect(run(r, 'l1.posted-intr 0 0x102040 0x22', 'l1.read 0x102060 1', 'l1.read 0x102044 4')).toEqual([OK, value(1n), value(4n)]);
    expect(run(r, 'l1.vmlaunch', 'l2.apic-read 0x210', 'l2.vmcall', 'l1.read 0x102060 1', 'l1.read 0x102044 4')).toEqual([
      { k: 'entered' },
      value(4n),
      { k: 'exit', reason: 18, qual: 0n },
      value(0n),
      value(0n),
    ]);
  });

  test('a descriptor outside every memslot: the store is refused', () => {
    const r = started('fresh');
    expect(run(r, 'l1.posted-intr 0 0x900000 0x22')).toEqual([{ k: 'ignored', why: 'gpa 0x900000 is not in a memslot' }]);
  });
});

describe('the eVMCS through the path', () => {
  const EVMCS = [
    'l1.write 0x1000 4 0x11e57ed0',
    'l1.vmxon 0x1000',
    'l1.write 0x100000 4 0x1',
    'l1.evmcs-ptr 0x100000',
    ...MUST_BE_1.map((l) => l.replace('l1.vmwrite', 'l1.evmcs-write 0x100000')),
    'l1.vmlaunch',
    'l2.vmcall',
  ];

  test.each(PATHS)('%s: mapped at the enlightened VMPTRLD, released by VMCLEAR', (path) => {
    const p = profileOf(path);
    const r = new Replayer(initialState(header({ evmcs: true, unmanagedMemory: true }), p), p);
    run(r, ...EVMCS);
    expect(run(r, 'l1.read 0x1002b4 4')).toEqual([value(0x12n)]);
    run(r, 'l1.vmclear 0x100000');
    expect(r.peek().vcpus[0].nested.hvEvmcsVmptr).toBe(0xffffffffffffffffn);
    // kvm-map: one memremap at the enlightened VMPTRLD, one memunmap at the release
    if (path === 'kvm-map') expect([r.cost.memremaps, r.cost.memunmaps]).toEqual([1, 1]);
  });

  test('kvm-map: the map is the only one between VMPTRLD and release; memslot changes do not reach it', () => {
    const p = profileOf('kvm-map');
    const r = new Replayer(initialState(header({ evmcs: true, unmanagedMemory: true }), p), p);
    run(r, ...EVMCS);
    expect([r.cost.memremaps, r.cost.memunmaps]).toEqual([1, 0]);
    run(r, 'host.memslot-move 1 0x200', 'host.memslot-move 2 0x100', 'l1.vmresume', 'l2.vmcall');
    expect(run(r, 'l1.read 0x1002b4 4', 'l1.read 0x2002b4 4')).toEqual([value(0n), value(0x12n)]);
  });
});

describe('nested contexts (pfncache-ctx)', () => {
  function l2Switch(n: number, rounds: number, vcpus = 1): Replayer {
    const p = profileOf('pfncache-ctx');
    const r = new Replayer(initialState(makeHeader({ vcpus, memslots: [{ slot: 0, gfn: 0n, npages: 0x100, flags: 0 }] }), p), p);
    run(r, 'l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000');
    for (let s = 0; s < rounds; s++) {
      for (let i = 0; i < n; i++) {
        const gpa = `0x${(0x10000 + i * 0x1000).toString(16)}`;
        if (s === 0) run(r, `l1.write ${gpa} 4 0x11e57ed0`);
        const loaded = run(r, `l1.vmptrld ${gpa}`);
        if (s === 0) run(r, ...MUST_BE_1);
        expect([...loaded, ...run(r, s === 0 ? 'l1.vmlaunch' : 'l1.vmresume', 'l2.vmcall')].map((o) => o.k)).toEqual(['ok', 'entered', 'exit']);
      }
    }
    return r;
  }

  test.each([2, 3, 8])('%i vmcs12s, 4 rounds: n x (rounds - 1) reuses, no recycling', (n) => {
    const r = l2Switch(n, 4);
    expect([r.cost.nestedContextReuse, r.cost.nestedContextRecycle]).toEqual([n * 3, 0]);
    expect(nestedContexts(r.peek())!.contexts.length).toBe(n);
  });

  test('beyond 8 per vCPU the least recently used context is recycled', () => {
    const r = l2Switch(10, 3);
    expect([r.cost.nestedContextReuse, r.cost.nestedContextRecycle]).toEqual([0, 10 * 3 - NESTED_CONTEXTS_PER_VCPU]);
    expect(nestedContexts(r.peek())!.contexts.length).toBe(NESTED_CONTEXTS_PER_VCPU);
    // with two vCPUs the table holds 16: no recycling
    const r2 = l2Switch(10, 3, 2);
    expect([r2.cost.nestedContextReuse, r2.cost.nestedContextRecycle]).toEqual([20, 0]);
  });

  test('VMCLEAR puts the context on the LRU list; another vCPU picks it up and its APIC caches follow', () => {
    const r = started('pfncache-ctx');
    run(r, 'l1.vmlaunch', 'l2.vmcall', 'l1.vmclear 0x2000', '@1 l1.vmptrld 0x2000');
    const t = nestedContexts(r.peek())!;
    expect(t.contexts.length).toBe(1);
    expect(t.contexts[0].owner).toBe(1);
    expect(t.contexts[0].caches.slice(2).map((c) => c.vcpu)).toEqual([1, 1, 1]);
    expect(r.cost.nestedContextReuse).toBe(1);
  });
});

describe('both speeds agree', () => {
  const LINES = [
    ...SETUP,
    'l1.vmlaunch',
    'l2.apic-write 0x80 0x10',
    'host.page-migrate 0x101',
    'l2.apic-write 0x80 0x11',
    'host.memslot-move 1 0x200',
    'host.memslot-move 1 0x100',
    '@1 l1.posted-intr 0 0x102040 0x40',
    'l2.vmcall',
    'host.memslot-resize 1 0x2',
    'host.memslot-resize 1 0x4',
    'l1.vmclear 0x2000',
    '@1 l1.vmptrld 0x2000',
    '@1 l1.vmlaunch',
    '@1 l2.apic-read 0x80',
  ];

  test.each(PATHS)('%s: immer steps and the mutable working copy reach the same outcomes and state', (path) => {
    const p = profileOf(path);
    const h = header({ unmanagedMemory: true });
    const r = new Replayer(initialState(h, p), p);
    let s = initialState(h, p);
    for (const l of LINES) {
      const e: TraceEvent = parseEventLine(l, h.config);
      const fast = r.apply(e);
      const slow = step(s, e, p);
      s = slow.state;
      expect(slow.outcome).toEqual(fast);
    }
    expect(stateHash(s)).toBe(stateHash(r.peek()));
  });
});
