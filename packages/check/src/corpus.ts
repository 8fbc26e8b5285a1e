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

/** Judge one trace under one profile against its declared verdict. */
export function judge(header: TraceHeader, events: readonly TraceEvent[], file: string, profileSpec: string): CorpusCell {
  const profile = parseProfile(profileSpec);
  const decl = declaredVerdict(header);
  const { mismatches, costs } = checkExpects(header, events, profile);
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
