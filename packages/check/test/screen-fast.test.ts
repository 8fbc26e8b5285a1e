/**
 * The fuzz loop's screen (`screenProfiles`, what `FuzzEngine.checkTrace`
 * runs) gives the answers of the slow path: replays from copies of
 * `initialState`, outcomes compared after every event and states compared
 * by `archHash` after every nested entry and exit and at the end. On the
 * campaign's own traces (whole-world and per-area mixes, fixed seed; few,
 * for the slow path's hashes), under
 * broken fixtures of every area and plugins of the bug-history set, each
 * profile's first divergence (event index and kind) is the same, and the
 * rule and sequence coverage recorded on the way is the coverage of the
 * same replay recorded event by event on a replayer of its own.
 */
import * as path from 'path';
import fc from 'fast-check';
import { Profile, Replayer, archHash, initialState, parseProfile, registerPath } from '@nvx/emulator';
import type { Outcome, TraceEvent, TraceHeader } from '@nvx/trace';
import { outcomeEquals } from '@nvx/trace';
import { CoverageRecorder } from '../src/coverage';
import { BROKEN_PATHS } from '../src/fixtures';
import { screenProfiles } from '../src/minimize';
import { arbCampaignTrace } from '../src/mix';
import { loadPluginModule } from '../src/plugins';
import { BUG_HISTORY } from '../../../tools/bug-history/catalog';

const reference = parseProfile('reference');
const BUG_DIR = path.resolve(__dirname, '../../../tools/bug-history');
// bug-history plugins of several areas and of the common code (operations patches)
const BUG_PLUGINS = ['cve-2019-3887-x2apic-reg-virt', 'evmcs-kept-after-vmclear', 'evmcs-fail-not-synced', 'cpuid-fault-in-smm'].map(
  (name) => BUG_HISTORY.find((b) => b.plugin === `plugins/${name}.ts`)!,
);

type Hit = { index: number; kind: 'outcome' | 'state' } | null;

/** The slow path: one replay per profile from a copy of initialState, outcomes every event, archHash at entries, exits and the end. */
function oracle(header: TraceHeader, events: readonly TraceEvent[], others: readonly Profile[]): Hit[] {
  const base = new Replayer(initialState(header, reference), reference);
  const outcomes: Outcome[] = [];
  const hashes = new Map<number, string>();
  for (let i = 0; i < events.length; i++) {
    const o = base.apply(events[i]);
    outcomes.push(o);
    if (o.k === 'entered' || o.k === 'exit' || i === events.length - 1) hashes.set(i, archHash(base.peek()));
  }
  return others.map((p) => {
    const r = new Replayer(initialState(header, p), p);
    for (let i = 0; i < events.length; i++) {
      if (!outcomeEquals(outcomes[i], r.apply(events[i]))) return { index: i, kind: 'outcome' };
      const h = hashes.get(i);
      if (h !== undefined && archHash(r.peek()) !== h) return { index: i, kind: 'state' };
    }
    return null;
  });
}

/** Coverage of the reference replay, recorded on a replayer of its own. */
function coverageOf(header: TraceHeader, events: readonly TraceEvent[], cov: CoverageRecorder): void {
  const r = new Replayer(initialState(header, reference), reference);
  cov.startTrace();
  for (const e of events) {
    cov.before(r.peek(), e);
    const o = r.apply(e);
    cov.after(r.peek(), e, o);
  }
}

describe('the fuzz screen against the slow path', () => {
  const profiles: { spec: string; p: Profile }[] = [];

  beforeAll(async () => {
    for (const b of BROKEN_PATHS) registerPath(b.path);
    for (const b of BUG_PLUGINS) await loadPluginModule(path.join(BUG_DIR, b.plugin!));
    // one broken fixture of each area, the bug-history plugins, and the correct optimized profile
    const areas = new Set<string>();
    for (const b of BROKEN_PATHS) {
      if (areas.has(b.path.area)) continue;
      areas.add(b.path.area);
      const spec = `${b.path.area}=${b.path.name}`;
      profiles.push({ spec, p: parseProfile(spec) });
    }
    for (const b of BUG_PLUGINS) profiles.push({ spec: b.profile!, p: parseProfile(b.profile!) });
    profiles.push({ spec: 'optimized', p: parseProfile('optimized') });
    // never diverges: the screen's base replay then runs to the end of every trace, so its coverage is the whole trace's
    profiles.push({ spec: 'reference', p: reference });
  });

  it('finds each profile\'s first divergence (index, kind) where the slow path does, and records the same coverage', () => {
    const traces = fc.sample(arbCampaignTrace(), { seed: 0x5ce11, numRuns: 60 });
    const fast = new CoverageRecorder();
    const slow = new CoverageRecorder();
    let outcomes = 0;
    let states = 0;
    const diverging = new Set<string>();
    for (const t of traces) {
      const ps = profiles.map((x) => x.p);
      const got = screenProfiles(t.header, t.events, reference, ps, { stateAt: 'entries', coverage: fast }).map((h) => (h ? { index: h.index, kind: h.kind } : null));
      const want = oracle(t.header, t.events, ps);
      expect(got).toEqual(want);
      coverageOf(t.header, t.events, slow);
      want.forEach((h, j) => {
        if (!h) return;
        diverging.add(profiles[j].spec);
        if (h.kind === 'outcome') outcomes++;
        else states++;
      });
    }
    expect(fast.counts).toEqual(slow.counts);
    expect(fast.pairs).toEqual(slow.pairs);
    // the traces must exercise both kinds of divergence, under several of the profiles
    expect(outcomes).toBeGreaterThan(0);
    expect(states).toBeGreaterThan(0);
    expect(diverging.size).toBeGreaterThanOrEqual(4);
  });
});
