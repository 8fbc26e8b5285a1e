/**
 * Every hand-written scenario in traces/scenarios/ replays as a test, the
 * way KVM's selftests do. For each file (found by readdir, so a new scenario
 * is picked up without touching this file):
 *
 *  - under `reference`, `optimized` and every single-area path
 *    (`area=path` for every path in AREAS), every `expect` clause holds;
 *  - the lockstep diff against `reference` under each of those profiles gives
 *    the verdict the file declares in its header:
 *
 *      meta verdict "pass"                  no profile diverges (and no contract is broken)
 *      meta verdict "permitted:<contract>"  the profiles in `diverges` diverge, permitted by <contract>;
 *                                           the others do not diverge
 *      meta verdict "finding"               the profiles in `diverges` diverge with no contract broken
 *                                           (the modelled code is wrong); the others do not diverge
 *      meta diverges "optimized msr-bitmap=enlightened"   (profiles, separated by spaces)
 *
 *    and every divergence is confirmed by a replay from scratch.
 *
 * `expect` clauses state the reference behaviour, so under a profile that
 * is declared to diverge they are checked only before the divergence.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CONTRACTS, diffEvents } from '@nvx/check';
import { AREAS, AREA_IDS, Replayer, initialState, parseProfile } from '@nvx/emulator';
import { TraceEvent, TraceHeader, formatEvent, formatOutcome, outcomeMatches, parseTextTrace } from '@nvx/trace';

const DIR = path.resolve(__dirname, '..', '..', '..', 'traces', 'scenarios');
const FILES = fs
  .readdirSync(DIR)
  .filter((f) => f.endsWith('.nvx'))
  .sort();

/** reference, optimized, then every path of every area alone. */
const PROFILES: string[] = ['reference', 'optimized'];
for (const a of AREA_IDS) for (const p of AREAS[a].paths.keys()) PROFILES.push(`${a}=${p}`);

const CONTRACT_IDS = Object.keys(CONTRACTS);

interface Declared {
  verdict: 'pass' | 'permitted' | 'finding';
  contract?: string;
  diverges: string[];
  description: string;
}

function declared(h: TraceHeader, file: string): Declared {
  const p = h.provenance;
  const fail = (why: string): never => {
    throw new Error(`${file}: ${why}`);
  };
  const description = p.description ?? fail('no `meta description "..."` line');
  const v = p.verdict ?? fail('no `meta verdict` line (pass, permitted:<contract> or finding)');
  const diverges = (p.diverges ?? '').split(/\s+/).filter(Boolean);
  for (const d of diverges) {
    try {
      parseProfile(d);
    } catch (e) {
      fail(`meta diverges names '${d}': ${(e as Error).message}`);
    }
    if (d === 'reference') fail('meta diverges: reference cannot diverge from itself');
  }
  if (v === 'pass') {
    if (diverges.length) fail('verdict "pass" with a `meta diverges` line');
    return { verdict: 'pass', diverges, description };
  }
  if (v.startsWith('permitted:')) {
    const contract = v.slice('permitted:'.length);
    if (!CONTRACT_IDS.includes(contract)) fail(`unknown contract '${contract}' (known: ${CONTRACT_IDS.join(', ')})`);
    if (!diverges.length) fail(`verdict "${v}" needs a \`meta diverges "<profile> ..."\` line`);
    return { verdict: 'permitted', contract, diverges, description };
  }
  if (v === 'finding') {
    if (!diverges.length) fail('verdict "finding" needs a `meta diverges "<profile> ..."` line');
    return { verdict: 'finding', diverges, description };
  }
  return fail(`unknown verdict '${v}' (pass, permitted:<contract> or finding)`);
}

interface Scenario {
  header: TraceHeader;
  events: TraceEvent[];
  decl: Declared;
}

const cache = new Map<string, Scenario>();
function load(file: string): Scenario {
  let s = cache.get(file);
  if (!s) {
    const { header, events } = parseTextTrace(fs.readFileSync(path.join(DIR, file), 'utf8'), file);
    s = { header, events, decl: declared(header, file) };
    cache.set(file, s);
  }
  return s;
}

/** Index of the first divergence from reference under `spec`, or events.length when there is none. */
function firstDivergence(s: Scenario, spec: string): number {
  if (spec === 'reference') return s.events.length;
  const d = diffEvents(s.header, s.events, parseProfile('reference'), parseProfile(spec)).divergence;
  return d ? d.index : s.events.length;
}

/** Replay under `spec` and list every expect clause that does not hold (before `upTo`). */
function expectMismatches(s: Scenario, file: string, spec: string, upTo: number): string[] {
  const profile = parseProfile(spec);
  const r = new Replayer(initialState(s.header, profile), profile);
  const out: string[] = [];
  for (let i = 0; i < s.events.length && i < upTo; i++) {
    const e = s.events[i];
    const actual = r.apply(e);
    if (e.expect && !outcomeMatches(e.expect, actual)) {
      out.push(`${file} under ${spec}: event ${i} (${formatEvent({ ...e, expect: undefined } as TraceEvent)}): expected ${formatOutcome(e.expect)}, got ${formatOutcome(actual)}`);
    }
  }
  return out;
}

test('the scenario directory holds the hand-written scenarios', () => {
  expect(FILES).toEqual(
    expect.arrayContaining([
      'l1-passes-fs-base.nvx',
      'l1-intercepts-fs-base.nvx',
      'msr-outside-ranges.nvx',
      'l1-without-msr-bitmaps.nvx',
      'evmcs-enlightened-bitmap.nvx',
      'evmcs-broken-contract.nvx',
      'l0-intercept-change-in-l2.nvx',
      'vmlaunch-unaligned-bitmap.nvx',
      'vmx-instruction-errors.nvx',
      'two-vcpus-sdm-contract.nvx',
      'x2apic-virtualization.nvx',
    ]),
  );
});

test('the profile list covers reference, optimized and every path of every area', () => {
  expect(PROFILES.slice(0, 2)).toEqual(['reference', 'optimized']);
  for (const a of AREA_IDS) expect(PROFILES).toContain(`${a}=${AREAS[a].optimized}`);
  expect(new Set(PROFILES).size).toBe(PROFILES.length);
});

describe.each(FILES)('%s', (file) => {
  test('parses, declares a verdict and a description, and has expect clauses', () => {
    const s = load(file);
    expect(s.decl.description.length).toBeGreaterThan(0);
    expect(s.events.length).toBeGreaterThan(0);
    expect(s.events.some((e) => e.expect !== undefined)).toBe(true);
  });

  test.each(PROFILES)('expect clauses hold under %s', (spec) => {
    const s = load(file);
    const declaredToDiverge = s.decl.diverges.includes(spec);
    const upTo = declaredToDiverge ? firstDivergence(s, spec) : s.events.length;
    expect(expectMismatches(s, file, spec, upTo)).toEqual([]);
  });

  test.each(PROFILES)('diff against reference under %s gives the declared verdict', (spec) => {
    const s = load(file);
    const res = diffEvents(s.header, s.events, parseProfile('reference'), parseProfile(spec));
    const d = res.divergence;
    const describeIt = () =>
      d === null
        ? 'no divergence'
        : `${d.verdict} divergence (${d.kind}) at event ${d.index} (${formatEvent({ ...d.event, expect: undefined } as TraceEvent)}): ` +
          `reference ${formatOutcome(d.base)}, ${spec} ${formatOutcome(d.other)}` +
          (d.contract ? `; L1 broke ${d.contract.contract} at event ${d.contract.index}: ${d.contract.message}` : '') +
          (d.archDiff.length ? `; state: ${d.archDiff.map((x) => `${x.key}: ${x.a} vs ${x.b}`).join(', ')}` : '');
    if (d) expect({ confirmed: d.confirmed, divergence: describeIt() }).toEqual({ confirmed: true, divergence: describeIt() });

    if (s.decl.verdict === 'pass') {
      expect(describeIt()).toBe('no divergence');
      // A "pass" scenario is a conforming trace: it breaks no contract.
      expect(res.violations.map((v) => `${v.contract} at event ${v.index}: ${v.message}`)).toEqual([]);
      return;
    }
    if (!s.decl.diverges.includes(spec)) {
      expect(describeIt()).toBe('no divergence');
      return;
    }
    expect(d).not.toBeNull();
    if (s.decl.verdict === 'permitted') {
      expect({ verdict: d!.verdict, contract: d!.contract?.contract }).toEqual({ verdict: 'permitted', contract: s.decl.contract });
      expect(d!.contract!.index).toBeLessThanOrEqual(d!.index);
    } else {
      // a finding: no contract excuses it
      expect({ verdict: d!.verdict, contract: d!.contract?.contract }).toEqual({ verdict: 'bug', contract: undefined });
    }
  });
});
