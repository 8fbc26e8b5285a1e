/**
 * The corpus check: every trace in traces/scenarios and traces/regressions
 * replayed under every built-in profile and every single optimized path,
 * with its `expect` clauses checked and its differential verdict compared
 * with the one the trace declares in its header:
 *
 *   meta verdict "pass"                 no profile diverges from reference
 *   meta verdict "permitted:<contract>" the profiles in `diverges` diverge, permitted by that contract
 *   meta verdict "finding"              the profiles in `diverges` diverge: a known finding (the real code is wrong)
 *   meta diverges "msr-bitmap=enlightened optimized"
 */
import * as fs from 'fs';
import * as path from 'path';
import { AREAS, AREA_IDS, Costs, Profile, Replayer, newCosts, addCosts, parseProfile } from '@nvx/emulator';
import { TraceEvent, TraceHeader, formatEvent, formatOutcome, outcomeMatches, readTraceFile } from '@nvx/trace';
import { diffEvents } from './diff';

export type CellStatus = 'pass' | 'expected-divergence' | 'new-divergence' | 'missing-divergence' | 'expect-failed';

export interface CorpusCell {
  file: string;
  profile: string;
  status: CellStatus;
  detail?: string;
  costs: Costs;
}

export interface CorpusReport {
  files: string[];
  profiles: string[];
  cells: CorpusCell[];
  ok: boolean;
}

/** reference, optimized, then every non-reference path of every area alone. */
export function corpusProfiles(): string[] {
  const out = ['reference', 'optimized'];
  for (const a of AREA_IDS) for (const p of AREAS[a].paths.keys()) if (p !== AREAS[a].reference && !p.startsWith('broken-')) out.push(`${a}=${p}`);
  return out;
}

export function listTraces(dirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of dirs) {
    if (!fs.existsSync(d)) continue;
    for (const f of fs.readdirSync(d).sort()) if (f.endsWith('.nvx') || f.endsWith('.nvxt')) out.push(path.join(d, f));
  }
  return out;
}

interface Declared {
  verdict: 'pass' | 'permitted' | 'finding';
  contract?: string;
  diverges: string[];
}

export function declaredVerdict(h: TraceHeader): Declared {
  const v = h.provenance.verdict ?? 'pass';
  const diverges = (h.provenance.diverges ?? '').split(/[\s;]+/).filter(Boolean);
  if (v === 'pass') return { verdict: 'pass', diverges: [] };
  if (v.startsWith('permitted:')) return { verdict: 'permitted', contract: v.slice('permitted:'.length), diverges };
  if (v === 'finding') return { verdict: 'finding', diverges };
  throw new Error(`unknown verdict '${v}' (pass, permitted:<contract>, finding)`);
}

/** Replay under one profile and check every expect clause; returns the first few mismatches. */
export function checkExpects(header: TraceHeader, events: readonly TraceEvent[], profile: Profile): { mismatches: string[]; costs: Costs } {
  const r = Replayer.fromHeader(header, profile);
  const mismatches: string[] = [];
  events.forEach((e, i) => {
    const out = r.apply(e);
    if (e.expect && !outcomeMatches(e.expect, out) && mismatches.length < 5) mismatches.push(`event ${i} (${formatEvent(e).replace(/\s{2,}/g, ' ')}): got ${formatOutcome(out)}`);
  });
  return { mismatches, costs: r.cost };
}

/**
 * Judge one trace under one profile against its declared verdict. With
 * `expects: false` only the differential verdict is judged (a conformance
 * trace's expectations are KVM's, checked under the `kvm` profile alone).
 */
export function judge(header: TraceHeader, events: readonly TraceEvent[], file: string, profileSpec: string, opts: { expects?: boolean } = {}): CorpusCell {
  const profile = parseProfile(profileSpec);
  const decl = declaredVerdict(header);
  const checked = checkExpects(header, events, profile);
  const costs = checked.costs;
  const mismatches = opts.expects === false ? [] : checked.mismatches;
  const cell = (status: CellStatus, detail?: string): CorpusCell => ({ file, profile: profileSpec, status, detail, costs });
  const expectDiverge = decl.verdict !== 'pass' && decl.diverges.includes(profileSpec);
  // Expectations describe the reference behaviour: a profile expected to diverge may break them.
  // So may any path (a plugin the trace cannot name) once L1 breaks the contract the trace is about.
  const mayBePermitted = decl.verdict === 'permitted' && profileSpec !== 'reference';
  if (profileSpec === 'reference') return mismatches.length ? cell('expect-failed', mismatches.join('; ')) : cell('pass');
  const res = diffEvents(header, events, parseProfile('reference'), profile);
  const d = res.divergence;
  if (!expectDiverge && mayBePermitted && d?.verdict === 'permitted' && d.contract?.contract === decl.contract) {
    return cell('expected-divergence', `permitted by ${decl.contract} at event ${d.index} (${formatEvent({ ...d.event, expect: undefined })}), like the profiles the trace names`);
  }
  if (mismatches.length && !expectDiverge) return cell('expect-failed', `${mismatches.join('; ')}${d ? `; first divergence from reference: ${d.verdict} at event ${d.index} (${formatEvent({ ...d.event, expect: undefined })}): ${formatOutcome(d.base)} vs ${formatOutcome(d.other)}` : ''}`);
  if (!d) return expectDiverge ? cell('missing-divergence', `declared to diverge (${decl.verdict}) but matches reference`) : cell('pass');
  const where = `event ${d.index} (${formatEvent(d.event)}): ${formatOutcome(d.base)} vs ${formatOutcome(d.other)}`;
  if (!expectDiverge) return cell('new-divergence', `${d.verdict} divergence at ${where}`);
  if (decl.verdict === 'permitted' && (d.verdict !== 'permitted' || d.contract?.contract !== decl.contract)) {
    return cell('new-divergence', `expected a divergence permitted by ${decl.contract}, got ${d.verdict}${d.contract ? ` (${d.contract.contract})` : ''} at ${where}`);
  }
  return cell('expected-divergence', `${d.verdict}${d.contract ? ` by ${d.contract.contract}` : ''} at ${where}`);
}

export async function checkCorpus(dirs: readonly string[], profiles = corpusProfiles(), onCell?: (c: CorpusCell) => void): Promise<CorpusReport> {
  const files = listTraces(dirs);
  const cells: CorpusCell[] = [];
  for (const file of files) {
    const { header, events } = await readTraceFile(file);
    for (const p of profiles) {
      const c = judge(header, events, file, p);
      cells.push(c);
      onCell?.(c);
    }
  }
  return { files, profiles, cells, ok: cells.every((c) => c.status === 'pass' || c.status === 'expected-divergence') };
}

/** Costs summed per profile over the corpus. */
export function corpusCosts(r: CorpusReport): Map<string, Costs> {
  const m = new Map<string, Costs>();
  for (const c of r.cells) addCosts(m.get(c.profile) ?? m.set(c.profile, newCosts()).get(c.profile)!, c.costs);
  return m;
}

// ---- the conformance corpus: KVM's own tests as traces ----

/** The profile conformance traces are checked under: upstream KVM's paths. */
export const CONFORMANCE_PROFILE = 'kvm';

/** The profiles each conformance trace must also run clean under, in lockstep with reference. */
export const CONFORMANCE_LOCKSTEP = ['optimized', CONFORMANCE_PROFILE];

/**
 * pass: every expectation holds under `kvm`; known-failure: some do not, and
 * the trace says why (`meta known-failure "<reason>"`); failed: some do not
 * and the trace does not say so; fixed: the trace declares a known failure
 * but every expectation holds (the declaration is stale).
 */
export type ConformanceStatus = 'pass' | 'known-failure' | 'failed' | 'fixed';

export interface ConformanceResult {
  file: string;
  /** `meta test`: the KVM test (or step) the trace translates */
  test: string;
  status: ConformanceStatus;
  /** the first mismatches under `kvm`, or the declared reason */
  detail?: string;
  /** the differential verdict under each of CONFORMANCE_LOCKSTEP */
  lockstep: CorpusCell[];
}

export interface ConformanceReport {
  dir: string;
  results: ConformanceResult[];
  /** no new failure, no stale known failure, every lockstep verdict as declared */
  ok: boolean;
}

/** Provenance a conformance trace must carry: where the test is and what it expects. */
export const CONFORMANCE_META = ['source', 'test', 'commit', 'verdict'] as const;

/** Judge one conformance trace: KVM's expectations under `kvm`, the declared differential verdict in lockstep. */
export function judgeConformance(header: TraceHeader, events: readonly TraceEvent[], file: string): ConformanceResult {
  const missing = CONFORMANCE_META.filter((k) => !header.provenance[k]);
  const test = header.provenance.test ?? '';
  if (missing.length) return { file, test, status: 'failed', detail: `header lacks meta ${missing.join(', ')}`, lockstep: [] };
  const known = header.provenance['known-failure'];
  const { mismatches } = checkExpects(header, events, parseProfile(CONFORMANCE_PROFILE));
  const lockstep = CONFORMANCE_LOCKSTEP.map((p) => judge(header, events, file, p, { expects: false }));
  let status: ConformanceStatus;
  let detail: string | undefined;
  if (mismatches.length === 0) {
    status = known ? 'fixed' : 'pass';
    if (known) detail = `declared a known failure (${known}) but every expectation holds under ${CONFORMANCE_PROFILE}`;
  } else {
    status = known ? 'known-failure' : 'failed';
    detail = known ? `${known}; first: ${mismatches[0]}` : mismatches.join('; ');
  }
  return { file, test, status, detail, lockstep };
}

export function conformanceOk(r: ConformanceResult): boolean {
  return (r.status === 'pass' || r.status === 'known-failure') && r.lockstep.every((c) => c.status === 'pass' || c.status === 'expected-divergence');
}

export async function checkConformance(dir: string, onResult?: (r: ConformanceResult) => void): Promise<ConformanceReport> {
  const results: ConformanceResult[] = [];
  for (const file of listTraces([dir])) {
    const { header, events } = await readTraceFile(file);
    const r = judgeConformance(header, events, file);
    results.push(r);
    onResult?.(r);
  }
  return { dir, results, ok: results.every(conformanceOk) };
}

/** Counts for the conformance row of `nvx check`. */
export function conformanceCounts(r: ConformanceReport): Record<ConformanceStatus | 'traces' | 'lockstepBad', number> {
  const n = (s: ConformanceStatus) => r.results.filter((x) => x.status === s).length;
  return {
    traces: r.results.length,
    pass: n('pass'),
    'known-failure': n('known-failure'),
    failed: n('failed'),
    fixed: n('fixed'),
    lockstepBad: r.results.filter((x) => x.lockstep.some((c) => c.status !== 'pass' && c.status !== 'expected-divergence')).length,
  };
}
