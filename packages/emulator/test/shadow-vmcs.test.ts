/**
 * The shadow-vmcs area: KVM's VMREAD/VMWRITE bitmaps (init_vmcs_shadow_fields),
 * which L1 instructions exit on each path, what each sync point copies, the
 * architectural view of vmcs12 while L1 runs with a shadow VMCS, and the two
 * speeds (immer step, mutable replayer) on the typed arrays this area adds.
 */
import { VMCS, VMCS_SHADOW_RO_FIELDS, VMCS_SHADOW_RW_FIELDS } from '@nvx/arch';
import { AREAS, Costs, Profile, Replayer, ShadowingPath, ShadowVmcsState, archView, initialState, newCosts, addCosts, parseProfile, stateHash, step, World } from '@nvx/emulator';
import { Outcome, TraceEvent, WorldConfig, defaultConfig, makeHeader, parseEventLine } from '@nvx/trace';

const SHADOW_PATHS = ['none', 'copy-all', 'intercept-ro'] as const;
const path = (name: string) => AREAS['shadow-vmcs'].paths.get(name) as ShadowingPath;
const bitSet = (bm: Uint8Array, enc: number) => (bm[enc >> 3] & (1 << (enc & 7))) !== 0;

function run(text: string, spec: string, config: Partial<WorldConfig> = {}): { outcomes: Outcome[]; cost: Costs; world: World } {
  const header = makeHeader({ shadowVmcs: true, ...config });
  const profile = parseProfile(spec);
  const r = new Replayer(initialState(header, profile), profile);
  const outcomes = lines(text, header.config).map((e) => r.apply(e));
  return { outcomes, cost: r.cost, world: r.snapshot() };
}

function lines(text: string, cfg: WorldConfig): TraceEvent[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean)
    .map((l) => parseEventLine(l, cfg));
}

const SETUP = `
  l1.write 0x1000 4 0x11e57ed0
  l1.vmxon 0x1000
  l1.write 0x2000 4 0x11e57ed0
  l1.vmptrld 0x2000
`;

describe('init_vmcs_shadow_fields', () => {
  const cfg = defaultConfig({ shadowVmcs: true });

  test('RO fields are cleared in the VMREAD bitmap only, RW fields in both; everything else exits', () => {
    const s = path('intercept-ro').setup(cfg);
    for (const e of VMCS_SHADOW_RO_FIELDS) expect([e, bitSet(s.vmreadBitmap, e), bitSet(s.vmwriteBitmap, e)]).toEqual([e, false, true]);
    for (const e of VMCS_SHADOW_RW_FIELDS) expect([e, bitSet(s.vmreadBitmap, e), bitSet(s.vmwriteBitmap, e)]).toEqual([e, false, false]);
    for (const e of [VMCS.VM_INSTRUCTION_ERROR, VMCS.MSR_BITMAP, VMCS.SECONDARY_VM_EXEC_CONTROL, VMCS.GUEST_ES_AR_BYTES, 0x7ffe]) {
      expect([e, bitSet(s.vmreadBitmap, e), bitSet(s.vmwriteBitmap, e)]).toEqual([e, true, true]);
    }
    // the _HIGH half of GUEST_PHYSICAL_ADDRESS is readable without exit too, but the copy lists keep only the full field
    expect(bitSet(s.vmreadBitmap, VMCS.GUEST_PHYSICAL_ADDRESS_HIGH)).toBe(false);
    expect(s.ro.map((f) => f.name)).not.toContain('GUEST_PHYSICAL_ADDRESS_HIGH');
    expect({ rw: s.rw.length, ro: s.ro.length }).toEqual({ rw: 24, ro: 11 });
    expect(s.ro.map((f) => f.name)).toEqual(expect.arrayContaining(['GUEST_CS_AR_BYTES', 'GUEST_SS_AR_BYTES']));
    expect(s.rw[s.rw.length - 1].name).toBe('HOST_GS_BASE');
  });

  test('before seed 002 the AR_BYTES of CS and SS were read/write shadowed', () => {
    const s = path('copy-all').setup(cfg);
    expect({ rw: s.rw.length, ro: s.ro.length }).toEqual({ rw: 26, ro: 9 });
    expect(bitSet(s.vmwriteBitmap, VMCS.GUEST_CS_AR_BYTES)).toBe(false);
  });

  test.each([
    ['apicv', 'GUEST_INTR_STATUS'],
    ['pml', 'GUEST_PML_INDEX'],
    ['preemptionTimer', 'VMX_PREEMPTION_TIMER_VALUE'],
  ] as const)('without %s, %s stays intercepted both ways and out of the copy lists', (feature, name) => {
    const s = path('intercept-ro').setup(defaultConfig({ shadowVmcs: true, [feature]: false }));
    const enc = VMCS[name];
    expect([bitSet(s.vmreadBitmap, enc), bitSet(s.vmwriteBitmap, enc)]).toEqual([true, true]);
    expect(s.rw.map((f) => f.name)).not.toContain(name);
    expect(s.rw.length).toBe(23);
  });
});

describe('which L1 VMREAD/VMWRITE exit, per path', () => {
  const TRACE = `${SETUP}
    l1.vmwrite GUEST_RIP 0x1000          # RW-shadowed
    l1.vmread GUEST_RIP
    l1.vmwrite EXIT_QUALIFICATION 0x5    # RO-shadowed
    l1.vmread EXIT_QUALIFICATION
    l1.vmwrite MSR_BITMAP 0x3000         # not shadowed
    l1.vmread MSR_BITMAP
  `;
  const exits = (spec: string, cfg: Partial<WorldConfig> = {}) => {
    const r = run(TRACE, spec, cfg);
    return { vmreadExits: r.cost.vmreadExits, vmwriteExits: r.cost.vmwriteExits, shadowVmcsLoads: r.cost.shadowVmcsLoads, values: r.outcomes.slice(4) };
  };
  const values = [{ k: 'ok' }, { k: 'value', value: 0x1000n }, { k: 'ok' }, { k: 'value', value: 5n }, { k: 'ok' }, { k: 'value', value: 0x3000n }];

  test('none: every one exits', () => {
    expect(exits('reference')).toEqual({ vmreadExits: 3, vmwriteExits: 3, shadowVmcsLoads: 0, values });
  });
  test('copy-all: only the unshadowed field exits (RO fields are written without exit); the VMPTRLD sync loads the shadow VMCS once', () => {
    expect(exits('shadow-vmcs=copy-all')).toEqual({ vmreadExits: 1, vmwriteExits: 1, shadowVmcsLoads: 1, values });
  });
  test('intercept-ro: the RO write exits too and is mirrored into the shadow VMCS (one more load)', () => {
    expect(exits('shadow-vmcs=intercept-ro')).toEqual({ vmreadExits: 1, vmwriteExits: 2, shadowVmcsLoads: 2, values });
  });
  test('copy-all without VMWRITE-any-field: the stricter VMWRITE bitmap, only so the RO write exits and fails 13', () => {
    const r = exits('shadow-vmcs=copy-all', { vmwriteAnyField: false });
    expect(r.vmwriteExits).toBe(2);
    expect(r.values[2]).toEqual({ k: 'vmfail-valid', error: 13 });
    expect(r.values[3]).toEqual({ k: 'value', value: 0n });
  });
  test.each(SHADOW_PATHS)('config.shadowVmcs off: %s exits on everything', (p) => {
    expect(exits(`shadow-vmcs=${p}`, { shadowVmcs: false })).toEqual({ vmreadExits: 3, vmwriteExits: 3, shadowVmcsLoads: 0, values });
  });
});

describe('the sync points and what they copy', () => {
  const LOOP = `${SETUP}
    l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16
    l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x4006172
    l1.vmwrite VM_EXIT_CONTROLS 0x36dfb
    l1.vmwrite VM_ENTRY_CONTROLS 0x11fb
    l1.vmlaunch
    l2.vmcall
    l1.vmread VM_EXIT_REASON
    l1.vmwrite GUEST_RIP 0x1003
    l1.vmresume
    l2.vmcall
  `;
  const copies = (spec: string, cfg: Partial<WorldConfig> = {}) => {
    const r = run(LOOP, spec, cfg);
    return { in: r.cost.shadowFieldsCopiedIn, out: r.cost.shadowFieldsCopiedOut, entries: r.cost.nestedEntries };
  };

  test('copy_shadow_to_vmcs12 per entry: RW only with intercept-ro, RW and RO with copy-all (RW only when VMWRITE-any-field is hidden)', () => {
    expect(copies('shadow-vmcs=intercept-ro').in).toBe(2 * 24);
    expect(copies('shadow-vmcs=copy-all').in).toBe(2 * 35);
    expect(copies('shadow-vmcs=copy-all', { vmwriteAnyField: false }).in).toBe(2 * 26);
    expect(copies('reference').in).toBe(0);
  });

  test('copy_vmcs12_to_shadow copies both lists after VMPTRLD and after every nested VM-exit', () => {
    // VMPTRLD, two exits: three syncs of 35 fields
    expect(copies('shadow-vmcs=intercept-ro').out).toBe(3 * 35);
    expect(copies('shadow-vmcs=copy-all').out).toBe(3 * 35);
    expect(copies('shadow-vmcs=intercept-ro', { apicv: false }).out).toBe(3 * 34);
  });

  test('a field the host cannot shadow (no APICv: GUEST_INTR_STATUS) exits and keeps its value in vmcs12', () => {
    const t = `${SETUP}
      l1.vmwrite GUEST_INTR_STATUS 0x31
      l1.vmlaunch
      l2.vmcall
      l1.vmread GUEST_INTR_STATUS
    `;
    for (const spec of ['reference', 'shadow-vmcs=copy-all', 'shadow-vmcs=intercept-ro']) {
      const r = run(t, spec, { apicv: false });
      expect([spec, r.outcomes[7]]).toEqual([spec, { k: 'value', value: 0x31n }]);
      if (spec !== 'reference') expect([spec, r.cost.vmwriteExits, r.cost.vmreadExits]).toEqual([spec, 1, 1]);
    }
  });
});

describe('the architectural view of vmcs12 is what L1 reads', () => {
  test('a VMWRITE without exit lives in the shadow VMCS, and archView shows it as the reference does', () => {
    const t = `${SETUP}
      l1.vmwrite GUEST_RIP 0xabc
    `;
    const ref = run(t, 'reference');
    const ro = run(t, 'shadow-vmcs=intercept-ro');
    expect(ro.world.vcpus[0].nested.vmcs12[path('intercept-ro').setup(defaultConfig()).rw.find((f) => f.name === 'GUEST_RIP')!.slot]).toBe(0n);
    expect((ro.world.vcpus[0].areas['shadow-vmcs'] as ShadowVmcsState).active).toBe(true);
    expect(archView(ro.world).get('vcpu 0 vmcs12 GUEST_RIP')).toBe('0xabc');
    expect([...archView(ro.world)]).toEqual([...archView(ref.world)]);
  });

  test('VMXOFF drops what was not written back, on every path alike', () => {
    const t = `${SETUP}
      l1.vmwrite GUEST_RIP 0xabc
      l1.vmxoff
    `;
    const views = SHADOW_PATHS.map((p) => [...archView(run(t, `shadow-vmcs=${p}`).world)]);
    expect(views[1]).toEqual(views[0]);
    expect(views[2]).toEqual(views[0]);
    expect(new Map(views[0]).get('vcpu 0 vmcs12 GUEST_RIP')).toBeUndefined();
  });
});

describe('the two speeds on the shadow VMCS and the cached shadow vmcs12', () => {
  const T = `${SETUP}
    l1.write 0x5000 4 0x91e57ed0
    l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x84006172
    l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16
    l1.vmwrite VM_EXIT_CONTROLS 0x36dfb
    l1.vmwrite VM_ENTRY_CONTROLS 0x11fb
    l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x4000
    l1.vmwrite VMREAD_BITMAP 0x6000
    l1.vmwrite VMWRITE_BITMAP 0x7000
    l1.vmwrite VMCS_LINK_POINTER 0x5000
    l1.vmwrite GUEST_RIP 0x1
    l1.vmwrite EXIT_QUALIFICATION 0x2
    l1.vmlaunch
    l2.vmwrite GUEST_RSP 0x3
    l2.vmread GUEST_RSP
    l2.cpuid 0x1 0x0 0
    l1.vmread VM_EXIT_REASON
    l1.vmwrite GUEST_LINEAR_ADDRESS 0x4
    l1.vmwrite GUEST_RIP 0x5
    l1.vmclear 0x2000
    l1.vmptrld 0x2000
    l1.vmread GUEST_RIP
    l1.vmxoff
  `;

  test.each(SHADOW_PATHS)('shadow-vmcs=%s: same outcomes, state hashes and costs; states handed out earlier never change', (p) => {
    const profile: Profile = parseProfile(`shadow-vmcs=${p}`);
    const header = makeHeader({ shadowVmcs: true });
    const events = lines(T, header.config);
    const r = new Replayer(initialState(header, profile), profile);
    let s = initialState(header, profile);
    const kept: [World, string][] = [];
    const cost = newCosts();
    const outcomes: Outcome[] = [];
    for (const e of events) {
      const a = step(s, e, profile);
      const b = r.apply(e);
      expect(a.outcome).toEqual(b);
      outcomes.push(b);
      s = a.state;
      addCosts(cost, a.cost);
      expect(stateHash(s)).toBe(stateHash(r.peek()));
      kept.push([s, stateHash(s)]);
    }
    expect(cost).toEqual(r.cost);
    for (const [st, h] of kept) expect(stateHash(st)).toBe(h);
    // the trace did what it says: L2's VMWRITE/VMREAD emulated on the shadow vmcs12, the exit seen by L1,
    // L1's write without exit written back by VMCLEAR and read again
    expect([outcomes[15], outcomes[16], outcomes[17], outcomes[18], outcomes[19], outcomes[24]]).toEqual([
      { k: 'entered' },
      { k: 'ok' },
      { k: 'value', value: 3n },
      { k: 'exit', reason: 10, qual: 0n },
      { k: 'value', value: 10n },
      { k: 'value', value: 5n },
    ]);
  });
});
