/**
 * The fast paths of the lockstep and the fuzz loop give the answers of the
 * slow ones: the Lockstep (states compared directly, hashed only on a
 * difference) finds the first divergence an event-by-event oracle finds
 * with outcomes and `archHash`; a vmcs12 loaded or stored as one copy holds
 * what the slot-by-slot 8-byte accesses give.
 */
import fc from 'fast-check';
import { VMCS12_SLOT_COUNT } from '@nvx/arch';
import { Replayer, VMCS12_DATA_OFFSET, archHash, initialState, newNested, parseProfile, readGuest, registerPath, vmcs12LoadFromGuest, vmcs12StoreToGuest, writeGuest } from '@nvx/emulator';
import type { TraceEvent, TraceHeader } from '@nvx/trace';
import { defaultConfig, outcomeEquals } from '@nvx/trace';
import { Lockstep } from '../src/diff';
import { BROKEN_PATHS } from '../src/fixtures';
import { screenProfiles } from '../src/minimize';
import { arbMixedTrace } from '../src/mix';

for (const b of BROKEN_PATHS) registerPath(b.path);
const reference = parseProfile('reference');

/**
 * What the Lockstep must report, from outcomes and `archHash` taken after
 * every event of two replays from scratch: outcomes compared every event,
 * states at every k-th event and at the end; a state difference at a
 * checkpoint (or, with firstState, before an outcome difference) is placed
 * at the first event of the stretch after which the hashes differ. (States
 * that part and meet again between two checkpoints are not seen.)
 */
function oracle(header: TraceHeader, events: readonly TraceEvent[], other: ReturnType<typeof parseProfile>): (k: number) => { index: number; kind: 'outcome' | 'state' } | null {
  const a = new Replayer(initialState(header, reference), reference);
  const b = new Replayer(initialState(header, other), other);
  const outcome: boolean[] = [];
  const state: boolean[] = [];
  for (const e of events) {
    outcome.push(!outcomeEquals(a.apply(e), b.apply(e)));
    state.push(archHash(a.peek()) !== archHash(b.peek()));
    if (outcome[outcome.length - 1]) break;
  }
  const firstState = (from: number, to: number) => {
    for (let j = from; j <= to; j++) if (state[j]) return j;
    return -1;
  };
  return (k) => {
    let cp = 0;
    for (let i = 0; i < outcome.length; i++) {
      if (outcome[i]) {
        const j = firstState(cp, i - 1);
        return j >= 0 ? { index: j, kind: 'state' } : { index: i, kind: 'outcome' };
      }
      if (i + 1 - cp >= k || i === events.length - 1) {
        if (state[i]) return { index: firstState(cp, i), kind: 'state' };
        cp = i + 1;
      }
    }
    return null;
  };
}

function lockstep(header: TraceHeader, events: readonly TraceEvent[], other: ReturnType<typeof parseProfile>, checkpointEvery: number) {
  const ls = new Lockstep(header, reference, other, { checkpointEvery, firstState: true });
  for (const e of events) if (!ls.push(e)) break;
  return ls.finish();
}

/** The first generated trace of the seed on which `p` diverges (screened cheaply), if any in `runs`. */
function divergingTrace(p: ReturnType<typeof parseProfile>, seed: number, runs: number) {
  const d = fc.check(fc.property(arbMixedTrace(), (t) => !screenProfiles(t.header, t.events, reference, [p], { stateAt: 'every' })[0]), { seed, numRuns: runs, endOnFailure: true });
  return d.failed ? d.counterexample![0] : null;
}

describe('Lockstep with the direct state comparison', () => {
  it('finds the first divergence the outcome-and-hash oracle finds, at every checkpoint interval', () => {
    // a diverging trace for one broken path of each area, and clean traces under optimized
    const areas = new Set<string>();
    const cases: { p: ReturnType<typeof parseProfile>; t: { header: TraceHeader; events: TraceEvent[] } }[] = [];
    for (const b of BROKEN_PATHS) {
      if (areas.has(b.path.area)) continue;
      const p = parseProfile(`${b.path.area}=${b.path.name}`);
      const t = divergingTrace(p, 0x5eed, 300);
      if (!t) continue;
      areas.add(b.path.area);
      cases.push({ p, t });
    }
    const optimized = parseProfile('optimized');
    for (const t of fc.sample(arbMixedTrace(), { seed: 0x5eed, numRuns: 3 })) cases.push({ p: optimized, t });
    let diverged = 0;
    let states = 0;
    for (const { p, t } of cases) {
      const at = oracle(t.header, t.events, p);
      for (const k of [1, 7, 1000]) {
        const want = at(k);
        const d = lockstep(t.header, t.events, p, k);
        if (!want) {
          expect(d).toBeNull();
          continue;
        }
        expect(d).not.toBeNull();
        expect({ index: d!.index, kind: d!.kind }).toEqual(want);
        if (k === 1) diverged++;
        if (k === 1 && want.kind === 'state') states++;
      }
    }
    // the cases must exercise both kinds of divergence
    expect(diverged).toBeGreaterThanOrEqual(4);
    expect(states).toBeGreaterThan(0);
  });
});

describe('vmcs12 in guest memory as one copy', () => {
  const header: TraceHeader = { version: 1, config: defaultConfig({ vcpus: 1, memslots: [{ slot: 0, gfn: 0n, npages: 4, flags: 0 }] }), provenance: {} };
  const slots = fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { minLength: VMCS12_SLOT_COUNT, maxLength: VMCS12_SLOT_COUNT });
  // page-aligned (one copy) and straddling a page boundary (the slot-by-slot loop)
  const gpas = fc.constantFrom(0x1000n, 0x2000n, 0x1c00n, 0x1ff8n);
  const ctx = () => ({ inPlace: true, fresh: null, profile: reference, cost: undefined as never });

  it('stores every slot where an 8-byte little-endian read finds it', () => {
    fc.assert(
      fc.property(slots, gpas, (xs, gpa) => {
        const w = initialState(header, reference);
        const n = newNested();
        xs.forEach((x, i) => (n.vmcs12[i] = x));
        vmcs12StoreToGuest(ctx(), w, n, gpa);
        for (let i = 0; i < VMCS12_SLOT_COUNT; i++) expect(readGuest(w, gpa + VMCS12_DATA_OFFSET + BigInt(8 * i), 8)).toBe(xs[i]);
      }),
      { seed: 41, numRuns: 30 },
    );
  });

  it('loads every slot an 8-byte little-endian write put there', () => {
    fc.assert(
      fc.property(slots, gpas, (xs, gpa) => {
        const w = initialState(header, reference);
        xs.forEach((x, i) => writeGuest(ctx(), w, gpa + VMCS12_DATA_OFFSET + BigInt(8 * i), 8, x));
        const n = newNested();
        expect(vmcs12LoadFromGuest(ctx(), w, n, gpa)).toBe(true);
        expect([...n.vmcs12]).toEqual(xs);
      }),
      { seed: 42, numRuns: 30 },
    );
  });

  it('fails, changing nothing, when the region has no memslot', () => {
    const w = initialState(header, reference);
    const n = newNested();
    n.vmcs12[3] = 7n;
    expect(vmcs12LoadFromGuest(ctx(), w, n, 0x10000n)).toBe(false);
    expect(n.vmcs12[3]).toBe(7n);
  });
});
