/**
 * The checkpoint bisection on the broken-path fixtures: for each, a trace
 * its area's generator makes that diverges (the first the property run
 * meets), bisected with several checkpoint spacings K.
 *
 * With K = 1 (every state compared) the bisection finds exactly the event
 * the exact lockstep diff finds. With a larger K both look at whole states
 * only every K events, so a state difference that comes and goes between
 * two checkpoints with nothing else differing can escape both; the
 * bisection then never reports a later event than the lockstep diff with
 * the same K (its jumps and the confirming replay often find the earlier,
 * exact one), never an earlier one than the exact diff, and every
 * divergence it reports is confirmed.
 */
import fc from 'fast-check';
import { AreaId, parseProfile, registerPath } from '@nvx/emulator';
import type { TraceEvent, TraceHeader } from '@nvx/trace';
import { arbCpuidTrace, CPUID_PROPERTY_DEFAULTS } from '../src/arbitraries-cpuid';
import { arbPagesTrace, PAGES_PROPERTY_DEFAULTS } from '../src/arbitraries-pages';
import { arbShadowTrace } from '../src/arbitraries-shadow';
import { arbTrace, PROPERTY_DEFAULTS } from '../src/arbitraries';
import { bisectEvents } from '../src/bisect';
import { diffEvents } from '../src/diff';
import { BROKEN_PATHS } from '../src/fixtures';

type Gen = { arb: fc.Arbitrary<{ header: TraceHeader; events: TraceEvent[] }>; seed: number; numRuns: number };
const GENERATORS: Record<AreaId, () => Gen> = {
  'msr-bitmap': () => ({ arb: arbTrace(), ...PROPERTY_DEFAULTS }),
  evmcs: () => ({ arb: arbTrace(), ...PROPERTY_DEFAULTS }),
  'shadow-vmcs': () => ({ arb: arbShadowTrace(), seed: 0x5ad0, numRuns: 300 }),
  'cpuid-fault': () => ({ arb: arbCpuidTrace(), ...CPUID_PROPERTY_DEFAULTS }),
  'guest-pages': () => ({ arb: arbPagesTrace(), ...PAGES_PROPERTY_DEFAULTS }),
};

const REF = parseProfile('reference');

test('there are broken fixtures in every area', () => {
  expect(new Set(BROKEN_PATHS.map((b) => b.path.area)).size).toBe(5);
});

describe.each(BROKEN_PATHS.map((b) => [b.path.name, b] as const))('%s', (_name, b) => {
  test('bisected with K = 1, 3, 16 and the default', () => {
    registerPath(b.path);
    const other = parseProfile(`${b.path.area}=${b.path.name}`);
    const g = GENERATORS[b.path.area]();
    // the first generated trace the exact diff finds a divergence in
    const found = fc.check(
      fc.property(g.arb, (t) => !diffEvents(t.header, t.events, REF, other, { checkpointEvery: 1 }).divergence),
      { seed: g.seed, numRuns: g.numRuns, endOnFailure: true },
    );
    expect(found.failed).toBe(true);
    const t = found.counterexample![0];
    const exact = diffEvents(t.header, t.events, REF, other, { checkpointEvery: 1 }).divergence!;

    const one = bisectEvents(t.header, t.events, REF, other, { checkpointEvery: 1 }).divergence;
    expect({ index: one?.index, kind: one?.kind, verdict: one?.verdict }).toEqual({ index: exact.index, kind: exact.kind, verdict: exact.verdict });
    expect(one!.confirmed).toBe(true);

    for (const k of [3, 16, undefined]) {
      const r = bisectEvents(t.header, t.events, REF, other, { checkpointEvery: k });
      const lockstep = diffEvents(t.header, t.events, REF, other, { checkpointEvery: k }).divergence;
      const d = r.divergence;
      if (lockstep) expect(d).not.toBeNull();
      if (d) {
        expect(d.index).toBeGreaterThanOrEqual(exact.index);
        if (lockstep) expect(d.index).toBeLessThanOrEqual(lockstep.index);
        expect(d.confirmed).toBe(true);
        expect(d.verdict).toBe('bug');
      }
      expect(r.stats.maxJumpSteps).toBeLessThanOrEqual(k ?? 1000);
    }
  });
});
