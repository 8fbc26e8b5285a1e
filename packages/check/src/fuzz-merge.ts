/**
 * `nvx fuzz merge`: the outputs of several campaigns (the shards of one
 * campaign run on several machines, or campaigns run one after another)
 * as one: one finding per signature, the smallest trace of each, the
 * counts summed; coverage and permitted divergences summed; runs, events
 * and time summed.
 *
 * A finding file names its signature (`meta signature`) and is named by
 * the hash of it, so two shards that found one bug wrote files of the same
 * name: the merge keeps the one with fewer events (the first directory's
 * on a tie). Counts come from each directory's summaries
 * (`summary.json`, `summary.shard-i-of-n.json`); a finding file without a
 * summary counts once.
 */
import * as fs from 'fs';
import * as path from 'path';
import { parseTextTrace } from '@nvx/trace';
import { CoverageCounts, mergeCoverage } from './coverage';
import { FuzzSummary, signatureName, writeFileAtomic } from './fuzz';

export interface MergedFinding {
  signature: string;
  /** file name without .nvx: the first 16 hex digits of the sha256 of the signature */
  name: string;
  profile: string;
  classification: string;
  /** summed over the inputs */
  count: number;
  events: number;
  /** the file kept (in its input directory) */
  from: string;
  /** the directories that found it */
  foundIn: string[];
}

export interface MergeResult {
  inputs: string[];
  summaries: number;
  runs: number;
  events: number;
  /** the summed campaign time, ms */
  ms: number;
  seeds: number[];
  findings: MergedFinding[];
  newFindings: number;
  permitted: Record<string, number>;
  coverage: CoverageCounts;
  /** sequence coverage summed: ordered pairs of rules on one vCPU */
  sequence: { pairs: number; hits: number; counts: Record<string, number> };
  /** files that are not findings nvx fuzz wrote (left out, with why) */
  skipped: { file: string; why: string }[];
}

export class MergeError extends Error {}

/** Merge fuzz output directories; with `outDir`, write the merged findings and `summary.json` there. */
export function mergeFuzzOutputs(dirs: readonly string[], outDir?: string): MergeResult {
  if (!dirs.length) throw new MergeError('nothing to merge: give the output directories of the campaigns');
  const res: MergeResult = { inputs: [...dirs], summaries: 0, runs: 0, events: 0, ms: 0, seeds: [], findings: [], newFindings: 0, permitted: {}, coverage: {}, sequence: { pairs: 0, hits: 0, counts: {} }, skipped: [] };
  const bySig = new Map<string, MergedFinding & { text: string }>();
  const counts = new Map<string, number>();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch {
      throw new MergeError(`${dir}: not a directory nvx fuzz can read`);
    }
    for (const n of names.filter((x) => /^summary(\.shard-\d+-of-\d+)?\.json$/.test(x))) {
      const file = path.join(dir, n);
      let s: Partial<FuzzSummary>;
      try {
        s = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<FuzzSummary>;
      } catch (e) {
        throw new MergeError(`${file}: not a fuzz summary (${(e as Error).message})`);
      }
      if (typeof s.runs !== 'number' || !Array.isArray(s.findings)) throw new MergeError(`${file}: not a fuzz summary (no runs or findings)`);
      res.summaries++;
      res.runs += s.runs;
      res.events += s.events ?? 0;
      res.ms += s.ms ?? 0;
      if (typeof s.seed === 'number' && !res.seeds.includes(s.seed)) res.seeds.push(s.seed);
      for (const [k, v] of Object.entries(s.permitted ?? {})) res.permitted[k] = (res.permitted[k] ?? 0) + v;
      mergeCoverage(res.coverage, s.coverage ?? {});
      for (const [k, v] of Object.entries(s.sequence?.counts ?? {})) {
        res.sequence.counts[k] = (res.sequence.counts[k] ?? 0) + v;
        res.sequence.hits += v;
      }
      for (const f of s.findings) if (f.signature) counts.set(f.signature, (counts.get(f.signature) ?? 0) + (f.count ?? 1));
    }
    for (const n of names.filter((x) => x.endsWith('.nvx'))) {
      const file = path.join(dir, n);
      const text = fs.readFileSync(file, 'utf8');
      let sig: string | undefined;
      let events = 0;
      let profile = '';
      let classification = '';
      try {
        const t = parseTextTrace(text, file);
        sig = t.header.provenance.signature;
        events = t.events.length;
        profile = t.header.provenance.profile ?? '';
        classification = t.header.provenance.classification ?? '';
      } catch (e) {
        res.skipped.push({ file, why: (e as Error).message.split('\n')[0] });
        continue;
      }
      if (!sig) {
        res.skipped.push({ file, why: 'no signature in its header (not written by this nvx fuzz)' });
        continue;
      }
      const had = bySig.get(sig);
      if (!had) bySig.set(sig, { signature: sig, name: signatureName(sig), profile, classification, count: 0, events, from: file, foundIn: [dir], text });
      else {
        if (!had.foundIn.includes(dir)) had.foundIn.push(dir);
        if (events < had.events) Object.assign(had, { events, from: file, text, profile, classification });
      }
    }
  }
  res.sequence.pairs = Object.keys(res.sequence.counts).length;
  for (const f of bySig.values()) f.count = Math.max(counts.get(f.signature) ?? 0, f.foundIn.length);
  const sorted = [...bySig.values()].sort((a, b) => (a.signature < b.signature ? -1 : a.signature > b.signature ? 1 : 0));
  res.findings = sorted.map(({ text: _t, ...rest }) => rest);
  res.newFindings = res.findings.filter((f) => f.classification !== 'expected').length;
  if (outDir) {
    for (const f of sorted) writeFileAtomic(path.join(outDir, `${f.name}.nvx`), f.text);
    // the same shape as a campaign's summary where it matters (runs, findings with signature and count, coverage): merged outputs merge again
    writeFileAtomic(path.join(outDir, 'summary.json'), JSON.stringify(res, null, 2) + '\n');
  }
  return res;
}
