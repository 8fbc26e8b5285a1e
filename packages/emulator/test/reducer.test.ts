/**
 * The reducer at its two speeds: `step` (immer, immutable states with
 * structural sharing) and `Replayer` (a private mutable working copy) run the
 * same recipes and must agree event by event, and `step` must never change a
 * state it handed out earlier (typed arrays are replaced whole, never written
 * in place inside a draft).
 */
import * as fs from 'fs';
import * as path from 'path';
import { AREAS, AREA_IDS, Costs, Profile, Replayer, World, addCosts, initialState, newCosts, parseProfile, readGuest, stateHash, step } from '@nvx/emulator';
import { Outcome, TraceEvent, TraceHeader, WorldConfig, makeHeader, parseEventLine, parseTextTrace } from '@nvx/trace';

function trace(text: string, config: Partial<WorldConfig> = {}): { header: TraceHeader; events: TraceEvent[] } {
  const header = makeHeader(config);
  const events = text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean)
    .map((l) => parseEventLine(l, header.config));
  return { header, events };
}

const PROFILES: string[] = ['reference', 'optimized'];
for (const a of AREA_IDS) for (const p of AREAS[a].paths.keys()) if (p !== AREAS[a].reference) PROFILES.push(`${a}=${p}`);

/**
 * A trace that touches every kind of state: guest pages written by L1 and
 * by KVM (vmcs12 write-back, VMCLEAR, eVMCS clean fields and exit
 * information, the virtual-APIC page), vmcs12, vmcs01 and vmcs02 bitmaps,
 * memslots and host pages, two vCPUs.
 */
const RICH = trace(
  `
  l1.write 0x1000 4 0x11e57ed0
  l1.vmxon 0x1000
  l1.write 0x2000 4 0x11e57ed0
  l1.write 0x4000 4 0x11e57ed0
  l1.vmptrld 0x2000
  l1.msr-bitmap 0x3000 MSR_GS_BASE read true
  l1.msr-bitmap 0x3000 MSR_X2APIC_SELF_IPI write true
  l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x94206172
  l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x10
  l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16
  l1.vmwrite VIRTUAL_APIC_PAGE_ADDR 0x6000
  l1.vmwrite MSR_BITMAP 0x3000
  l1.vmwrite VM_EXIT_CONTROLS 0x36dfb
  l1.vmwrite VM_ENTRY_CONTROLS 0x11fb
  l1.write 0x6080 4 0x20
  l1.vmlaunch
  l2.wrmsr MSR_FS_BASE 0x7f0000001000
  l2.rdmsr MSR_FS_BASE
  l2.wrmsr MSR_X2APIC_TPR 0x30
  l2.rdmsr MSR_X2APIC_TPR
  host.msr-intercept MSR_FS_BASE read true
  l2.rdmsr MSR_GS_BASE
  l1.read 0x6080 4
  l1.msr-bitmap 0x3000 MSR_FS_BASE write true
  l1.vmresume
  l2.wrmsr MSR_FS_BASE 0x1
  l1.vmptrld 0x4000
  l1.vmwrite GUEST_RIP 0x401000
  l1.vmclear 0x2000
  l1.vmptrld 0x2000
  l1.vmread GUEST_RIP
  l1.vmlaunch
  l2.cpuid 0x1 0x0 3
  @1 l1.write 0x9000 4 0x11e57ed0
  @1 l1.vmxon 0x9000
  @1 l1.write 0x5000 4 0x1
  @1 l1.evmcs-ptr 0x5000
  @1 l1.evmcs-control 0x5000 0x2
  @1 l1.evmcs-write 0x5000 CPU_BASED_VM_EXEC_CONTROL 0x14006172
  @1 l1.evmcs-write 0x5000 MSR_BITMAP 0x7000
  @1 l1.evmcs-write 0x5000 PIN_BASED_VM_EXEC_CONTROL 0x16
  @1 l1.evmcs-write 0x5000 VM_EXIT_CONTROLS 0x36dfb
  @1 l1.evmcs-write 0x5000 VM_ENTRY_CONTROLS 0x11fb
  @1 l1.vmlaunch
  @1 l2.rdmsr MSR_FS_BASE
  @1 l2.vmcall
  @1 l1.read 0x5338 4
  @1 l1.msr-bitmap 0x7000 MSR_FS_BASE read true
  @1 l1.evmcs-clean 0x5000 0xfffd
  @1 l1.vmresume
  @1 l2.rdmsr MSR_FS_BASE
  host.memslot-create 1 0x1000 0x10 0
  l1.write 0x1000010 8 0x1122334455667788
  host.memslot-move 1 0x2000
  l1.read 0x2000010 8
  host.page-migrate 0x2000
  l1.read 0x2000010 8
  host.page-zap 0x2000
  l1.read 0x2000010 8
  host.memslot-delete 1
  l1.read 0x2000010 8
  l1.vmxoff
  `,
  { vcpus: 2, evmcs: true },
);

function scenarioTraces(): { name: string; header: TraceHeader; events: TraceEvent[] }[] {
  const dir = path.resolve(__dirname, '..', '..', '..', 'traces', 'scenarios');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.nvx'))
    .sort()
    .map((f) => ({ name: f, ...parseTextTrace(fs.readFileSync(path.join(dir, f), 'utf8'), f) }));
}

interface Run {
  outcomes: Outcome[];
  hashes: string[];
  cost: Costs;
  final: World;
}

function runStep(h: TraceHeader, events: readonly TraceEvent[], p: Profile): Run & { states: World[] } {
  let s = initialState(h, p);
  const outcomes: Outcome[] = [];
  const hashes: string[] = [];
  const states: World[] = [s];
  const cost = newCosts();
  for (const e of events) {
    const r = step(s, e, p);
    s = r.state;
    outcomes.push(r.outcome);
    hashes.push(stateHash(s));
    states.push(s);
    addCosts(cost, r.cost);
  }
  return { outcomes, hashes, cost, final: s, states };
}

function runReplayer(h: TraceHeader, events: readonly TraceEvent[], p: Profile): Run {
  const r = Replayer.fromHeader(h, p);
  const outcomes: Outcome[] = [];
  const hashes: string[] = [];
  for (const e of events) {
    outcomes.push(r.apply(e));
    hashes.push(stateHash(r.peek()));
  }
  return { outcomes, hashes, cost: r.cost, final: r.snapshot() };
}

describe('step (immer) and Replayer (mutable) agree', () => {
  test.each(PROFILES)('on a trace touching every kind of state, under %s: outcomes, state hash after every event, costs', (spec) => {
    const p = parseProfile(spec);
    const a = runStep(RICH.header, RICH.events, p);
    const b = runReplayer(RICH.header, RICH.events, p);
    expect(a.outcomes).toEqual(b.outcomes);
    expect(a.hashes).toEqual(b.hashes);
    expect(a.cost).toEqual(b.cost);
    // the trace really exercises what it claims to: five nested entries, and memory
    // that follows a memslot move and a migration, is zeroed by a zap and gone after a delete
    expect(a.outcomes.filter((o) => o.k === 'entered').length).toBe(5);
    expect(a.outcomes.slice(-8, -1).filter((o) => o.k !== 'ok')).toEqual([
      { k: 'value', value: 0x1122334455667788n },
      { k: 'value', value: 0x1122334455667788n },
      { k: 'value', value: 0n },
      { k: 'ignored', why: 'gpa 0x2000010 is not in a memslot' },
    ]);
  });

  test('on every scenario trace under every profile', () => {
    const traces = scenarioTraces();
    expect(traces.length).toBeGreaterThan(0);
    for (const t of traces) {
      for (const spec of PROFILES) {
        const p = parseProfile(spec);
        const a = runStep(t.header, t.events, p);
        const b = runReplayer(t.header, t.events, p);
        expect({ trace: t.name, spec, outcomes: a.outcomes, hash: stateHash(a.final) }).toEqual({ trace: t.name, spec, outcomes: b.outcomes, hash: stateHash(b.final) });
      }
    }
  });

  test('a Replayer snapshot is independent of the working copy, and restore continues from it', () => {
    const p = parseProfile('optimized');
    const r = Replayer.fromHeader(RICH.header, p);
    const half = Math.floor(RICH.events.length / 2);
    for (const e of RICH.events.slice(0, half)) r.apply(e);
    const snap = r.snapshot();
    const snapHash = stateHash(snap);
    const rest = RICH.events.slice(half).map((e) => r.apply(e));
    expect(stateHash(snap)).toBe(snapHash);
    const endHash = stateHash(r.peek());
    r.restore(snap, half);
    expect(RICH.events.slice(half).map((e) => r.apply(e))).toEqual(rest);
    expect(stateHash(r.peek())).toBe(endHash);
    expect(stateHash(snap)).toBe(snapHash);
  });
});

describe('step never changes an older state', () => {
  const ref = parseProfile('reference');
  const h = makeHeader();
  const ev = (line: string) => parseEventLine(line, h.config);

  test('an L1 store to a page, then more stores to the same page: the kept state still has the old bytes', () => {
    let s = initialState(h, ref);
    s = step(s, ev('l1.write 0x3000 8 0x1111111111111111'), ref).state;
    const kept = s;
    const keptHash = stateHash(kept);
    s = step(s, ev('l1.write 0x3000 8 0x2222222222222222'), ref).state;
    s = step(s, ev('l1.write 0x3008 8 0x3333333333333333'), ref).state;
    s = step(s, ev('l1.msr-bitmap 0x3000 MSR_FS_BASE read true'), ref).state;
    expect(readGuest(s, 0x3000n, 8)).toBe(0x2222222222222222n);
    expect(readGuest(s, 0x3008n, 8)).toBe(0x3333333333333333n);
    expect(readGuest(kept, 0x3000n, 8)).toBe(0x1111111111111111n);
    expect(readGuest(kept, 0x3008n, 8)).toBe(0n);
    expect(readGuest(kept, 0x3420n, 1)).toBe(0n);
    expect(stateHash(kept)).toBe(keptHash);
  });

  test('states handed out are frozen (immer auto-freeze), typed arrays aside', () => {
    let s = initialState(h, ref);
    s = step(s, ev('l1.write 0x1000 4 0x11e57ed0'), ref).state;
    expect(Object.isFrozen(s)).toBe(true);
    expect(Object.isFrozen(s.vcpus[0].nested)).toBe(true);
    expect(Object.isFrozen(s.mem.pages)).toBe(true);
  });

  test.each(PROFILES)('on the rich trace under %s, every intermediate state keeps the hash it had when it was made', (spec) => {
    const run = runStep(RICH.header, RICH.events, parseProfile(spec));
    // hashes[i] was taken right after event i; states[i + 1] is that state
    expect(run.states.slice(1).map((s) => stateHash(s))).toEqual(run.hashes);
  });

  test('memory contents seen through a kept state do not follow later memslot and page changes', () => {
    let s = initialState(h, ref);
    s = step(s, ev('host.memslot-create 1 0x1000 0x10 0'), ref).state;
    s = step(s, ev('l1.write 0x1000000 8 0xabcdef'), ref).state;
    const kept = s;
    s = step(s, ev('host.page-zap 0x1000'), ref).state;
    s = step(s, ev('l1.write 0x1000000 8 0x1'), ref).state;
    s = step(s, ev('host.memslot-move 1 0x2000'), ref).state;
    expect(readGuest(kept, 0x1000000n, 8)).toBe(0xabcdefn);
    expect(readGuest(s, 0x1000000n, 8)).toBeNull();
    expect(readGuest(s, 0x2000000n, 8)).toBe(1n);
  });
});

describe('stateHash', () => {
  test.each(PROFILES)('is the same for two independent replays of the same trace (%s)', (spec) => {
    const p = parseProfile(spec);
    const a = runReplayer(RICH.header, RICH.events, p);
    const b = runReplayer(RICH.header, RICH.events, parseProfile(spec));
    expect(a.hashes).toEqual(b.hashes);
    expect(stateHash(a.final)).toBe(stateHash(b.final));
  });

  test('changes when the state changes, and comes back when the state does', () => {
    const p = parseProfile('reference');
    const h = makeHeader();
    const r = Replayer.fromHeader(h, p);
    const h0 = stateHash(r.peek());
    r.apply(parseEventLine('l1.wrmsr MSR_STAR 0x5'));
    const h1 = stateHash(r.peek());
    expect(h1).not.toBe(h0);
    r.apply(parseEventLine('l1.wrmsr MSR_STAR 0x6'));
    expect(stateHash(r.peek())).not.toBe(h1);
    r.apply(parseEventLine('l1.wrmsr MSR_STAR 0x5'));
    expect(stateHash(r.peek())).toBe(h1);
    // a read changes nothing
    r.apply(parseEventLine('l1.rdmsr MSR_STAR'));
    expect(stateHash(r.peek())).toBe(h1);
  });

  test('a fresh initial state hashes the same every time, and differs between configurations', () => {
    const p = parseProfile('optimized');
    expect(stateHash(initialState(makeHeader(), p))).toBe(stateHash(initialState(makeHeader(), p)));
    expect(stateHash(initialState(makeHeader({ vcpus: 2 }), p))).not.toBe(stateHash(initialState(makeHeader(), p)));
  });
});
