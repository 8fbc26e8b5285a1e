/**
 * The coverage corpus of `nvx fuzz --corpus DIR`: traces that reached
 * coverage no trace before them had, one text trace each, named by the
 * hash of its content (the canonical text: header configuration, memslots,
 * events; provenance left out), so the same trace found by two shards or two
 * campaigns is one file, and corpora merge by union of file names.
 *
 * Coverage is the rule coverage of the reference replay (`coverage.ts`)
 * and its sequence coverage (ordered pairs of rules on one vCPU), as keys:
 * `<group>: <rule>` and `<rule key> > <rule key>`. Coverage decides what is
 * kept, never what is a bug: a kept trace is checked like any other.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { Replayer, initialState, parseProfile } from '@nvx/emulator';
import { TraceEvent, TraceHeader, formatTextTrace, parseTextTrace } from '@nvx/trace';
import { CoverageRecorder } from './coverage';
import { canonicalTraceText } from './minimize';
import { MutationInput, Mutated, Rng, mutateTrace } from './mutate';

export interface CorpusTrace {
  /** the file name without .nvx: the first 16 hex digits of the sha256 of the canonical text */
  name: string;
  header: TraceHeader;
  events: TraceEvent[];
}

/** What a campaign is given of its corpus: the traces and the coverage keys they reach together. */
export interface CorpusSeed {
  dir: string;
  traces: CorpusTrace[];
  known: string[];
}

/** A trace a block kept: the coverage keys it was first to reach, and whether a mutation made it. */
export interface CorpusEntry extends CorpusTrace {
  keys: string[];
  mutated: boolean;
  block: number;
  run: number;
}

export class CorpusError extends Error {}

export const corpusName = (header: TraceHeader, events: readonly TraceEvent[]): string => createHash('sha256').update(canonicalTraceText(header, events)).digest('hex').slice(0, 16);

/** Every key of a recorder's rule and sequence coverage. */
export function coverageKeys(cov: CoverageRecorder): string[] {
  const out: string[] = [];
  for (const [g, rules] of Object.entries(cov.counts)) for (const r of Object.keys(rules)) out.push(`${g}: ${r}`);
  for (const p of Object.keys(cov.pairs)) out.push(p);
  return out;
}

/** The coverage keys the reference replay of a trace reaches. */
export function traceCoverageKeys(header: TraceHeader, events: readonly TraceEvent[], cov = new CoverageRecorder()): string[] {
  const ref = parseProfile('reference');
  const r = new Replayer(initialState(header, ref), ref);
  cov.startTrace();
  for (const e of events) {
    cov.before(r.peek(), e);
    const o = r.apply(e);
    cov.after(r.peek(), e, o);
  }
  return coverageKeys(cov);
}

/** The .nvx files of a corpus directory, in name order (none when it does not exist yet). */
function corpusFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    throw new CorpusError(`${dir}: cannot read the corpus directory (${(e as Error).message})`);
  }
  if (!st.isDirectory()) throw new CorpusError(`${dir}: the corpus must be a directory`);
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.nvx'))
    .sort()
    .map((f) => path.join(dir, f));
}

function readCorpusFile(file: string): CorpusTrace {
  let t: { header: TraceHeader; events: TraceEvent[] };
  try {
    t = parseTextTrace(fs.readFileSync(file, 'utf8'), file);
  } catch (e) {
    throw new CorpusError(`${file}: not a corpus trace: ${(e as Error).message.split('\n')[0]}`);
  }
  return { name: corpusName(t.header, t.events), header: t.header, events: t.events };
}

/**
 * Load a corpus directory (created later, at the first trace kept, when it
 * does not exist): its traces and the coverage they reach. A file that is
 * not a text trace is an error naming it.
 */
export function loadCorpus(dir: string): CorpusSeed {
  const traces = corpusFiles(dir).map(readCorpusFile);
  const known = new Set<string>();
  const cov = new CoverageRecorder();
  for (const t of traces) for (const k of traceCoverageKeys(t.header, t.events, cov)) known.add(k);
  return { dir, traces, known: [...known].sort() };
}

/** The text of a kept trace: a comment with what it reached first, the header with its provenance, the events. */
export function corpusText(e: Omit<CorpusEntry, 'name'>, seed: number): string {
  const provenance = { generator: 'nvx fuzz corpus', origin: e.mutated ? 'mutation' : 'fresh', seed: String(seed), block: String(e.block), run: String(e.run) };
  const comment = [`nvx fuzz corpus trace: first to reach ${e.keys.length} coverage key${e.keys.length === 1 ? '' : 's'}`, ...e.keys.slice(0, 4).map((k) => `  ${k}`)];
  return comment.map((l) => `# ${l}`).join('\n') + '\n' + formatTextTrace({ ...e.header, provenance }, e.events);
}

/** Write a kept trace under its content name, atomically; false when the corpus has it already. */
export function writeCorpusTrace(dir: string, name: string, text: string, write: (file: string, text: string) => void): boolean {
  const file = path.join(dir, `${name}.nvx`);
  if (fs.existsSync(file)) return false;
  write(file, text);
  return true;
}

export interface CorpusMergeResult {
  inputs: string[];
  out: string;
  /** traces in the merged corpus */
  traces: number;
  /** traces the merge wrote (the output had none of that name) */
  added: number;
}

/**
 * The union of corpus directories by content: every trace of every input
 * written under its content name into `out` (those already there are left
 * as they are). Names are recomputed from the content, so a renamed file
 * still merges with its twin.
 */
export function mergeCorpora(dirs: readonly string[], out: string, write: (file: string, text: string) => void): CorpusMergeResult {
  const seen = new Set<string>(corpusFiles(out).map((f) => path.basename(f, '.nvx')));
  let added = 0;
  for (const d of dirs) {
    if (!fs.existsSync(d)) throw new CorpusError(`${d}: no such corpus directory`);
    for (const f of corpusFiles(d)) {
      const t = readCorpusFile(f);
      if (seen.has(t.name)) continue;
      seen.add(t.name);
      write(path.join(out, `${t.name}.nvx`), fs.readFileSync(f, 'utf8'));
      added++;
    }
  }
  return { inputs: [...dirs], out, traces: seen.size, added };
}

// ---------------------------------------------------------------- one block's feedback

/**
 * The corpus side of one block of a campaign: which runs reached coverage
 * the corpus (as loaded at the start of the campaign) and the block's
 * earlier runs had not, and the mutated traces the block's mutation runs
 * check. A block sees only the corpus the campaign started with and what it
 * kept itself, so its runs are a function of the campaign seed, the block
 * and the corpus: the same whatever the number of workers or shards.
 */
export class BlockFeedback {
  readonly kept: CorpusEntry[] = [];
  private readonly local = new Set<string>();
  /** the last fresh traces: what insertions draw events from, and what is mutated when the corpus is empty */
  private readonly recent: MutationInput[] = [];
  private readonly rng: Rng;

  constructor(
    readonly corpus: CorpusSeed,
    private readonly base: ReadonlySet<string>,
    readonly block: number,
    seed: number,
  ) {
    this.rng = new Rng(seed ^ 0x5bd1e995);
  }

  /** After a run: keep the trace when it reached a key nobody had (the recorder's firstHits since the last call). */
  after(cov: CoverageRecorder, header: TraceHeader, events: TraceEvent[], run: number, mutated: boolean): void {
    const hits = cov.firstHits;
    if (!mutated) {
      this.recent.push({ header, events });
      if (this.recent.length > 8) this.recent.shift();
    }
    if (!hits || !hits.length) return;
    const keys = hits.filter((k) => !this.base.has(k) && !this.local.has(k));
    hits.length = 0;
    if (!keys.length) return;
    for (const k of keys) this.local.add(k);
    this.kept.push({ name: corpusName(header, events), header, events, keys, mutated, block: this.block, run });
  }

  /** The next mutated trace: a corpus trace (or one the block kept, or a recent fresh one), mutated. */
  mutant(): Mutated {
    const pool: MutationInput[] = [...this.corpus.traces, ...this.kept];
    const from = pool.length ? pool : this.recent;
    const base = this.rng.pick(from);
    const src = this.recent.length ? this.rng.pick(this.recent).events : [];
    const events: TraceEvent[] = [];
    // a handful of the generator's events to insert from
    for (let i = 0; i < 8 && src.length; i++) events.push(src[this.rng.below(src.length)]);
    return mutateTrace(base, from, events, this.rng);
  }

  get empty(): boolean {
    return !this.corpus.traces.length && !this.kept.length && !this.recent.length;
  }
}
