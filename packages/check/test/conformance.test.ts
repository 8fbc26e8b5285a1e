/**
 * KVM's own tests as traces (traces/conformance/): every trace translates one
 * selftest or kvm-unit-tests test (or one step of a larger one), and its
 * `expect` clauses are what that test asserts (or, marked `# kvm code:`, what
 * KVM's code does where no test asserts it). For each file, found by readdir:
 *
 *  - its header names the source, the test, the commit and the differential
 *    verdict;
 *  - under the `kvm` profile every expectation holds, except for the known
 *    failures listed below, which must still fail (so this list stays true:
 *    when the model is fixed, the test fails until the entry is removed);
 *  - in lockstep against `reference`, `optimized` and `kvm` give the verdict
 *    the trace declares (no divergence for "pass", a divergence permitted by
 *    the named contract for "permitted:<contract>").
 */
import * as fs from 'fs';
import * as path from 'path';
import { CONFORMANCE_LOCKSTEP, CONFORMANCE_META, CONFORMANCE_PROFILE, checkExpects, judge } from '@nvx/check';
import { parseProfile } from '@nvx/emulator';
import { TraceEvent, TraceHeader, parseTextTrace } from '@nvx/trace';

const DIR = path.resolve(__dirname, '..', '..', '..', 'traces', 'conformance');
const FILES = fs
  .readdirSync(DIR)
  .filter((f) => f.endsWith('.nvx'))
  .sort();

/**
 * Traces whose KVM expectations the model does not meet yet, with the
 * reason (docs/conformance.md has the same list). Each also says so in its
 * header (`meta known-failure`), which `nvx check` reads.
 */
const KNOWN_FAILURES: Record<string, string> = {};

const cache = new Map<string, { header: TraceHeader; events: TraceEvent[] }>();
function load(file: string) {
  let t = cache.get(file);
  if (!t) {
    t = parseTextTrace(fs.readFileSync(path.join(DIR, file), 'utf8'), file);
    cache.set(file, t);
  }
  return t;
}

test('the corpus translates at least 40 KVM tests, each file once', () => {
  expect(FILES.length).toBeGreaterThanOrEqual(40);
  const tests = FILES.map((f) => `${load(f).header.provenance.source} ${load(f).header.provenance.test}`);
  expect(new Set(tests).size).toBe(tests.length);
});

test('the known-failure list names existing traces, and exactly those that declare one', () => {
  for (const f of Object.keys(KNOWN_FAILURES)) expect(FILES).toContain(f);
  const declared = FILES.filter((f) => load(f).header.provenance['known-failure'] !== undefined);
  expect(declared).toEqual(Object.keys(KNOWN_FAILURES).sort());
});

test(`the ${CONFORMANCE_PROFILE} profile is built in`, () => {
  expect(parseProfile(CONFORMANCE_PROFILE).name).toBe(CONFORMANCE_PROFILE);
});

describe.each(FILES)('%s', (file) => {
  test('explains itself, names its source, test and commit, and declares a verdict', () => {
    const { header, events } = load(file);
    // a comment first: what the test checks and how the trace maps it
    expect(fs.readFileSync(path.join(DIR, file), 'utf8')).toMatch(/^# \S/);
    expect(header.provenance.source).toMatch(/^(kvm-unit-tests\/kvm-unit-tests x86\/|torvalds\/linux tools\/testing\/selftests\/kvm\/)\S+\.c$/);
    for (const k of CONFORMANCE_META) expect({ [k]: header.provenance[k] ?? '' }).not.toEqual({ [k]: '' });
    expect(header.provenance.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(events.some((e) => e.expect !== undefined)).toBe(true);
  });

  test(`KVM's expectations under ${CONFORMANCE_PROFILE}`, () => {
    const { header, events } = load(file);
    const { mismatches } = checkExpects(header, events, parseProfile(CONFORMANCE_PROFILE));
    if (KNOWN_FAILURES[file]) expect(mismatches.length).toBeGreaterThan(0);
    else expect(mismatches).toEqual([]);
  });

  test.each(CONFORMANCE_LOCKSTEP)('lockstep against reference under %s gives the declared verdict', (spec) => {
    const { header, events } = load(file);
    const cell = judge(header, events, file, spec, { expects: false });
    expect({ status: cell.status, detail: cell.detail }).toEqual({ status: expect.stringMatching(/^(pass|expected-divergence)$/), detail: cell.detail });
  });
});
