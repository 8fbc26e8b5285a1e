/**
 * Fuzz campaigns: mixed traces from every selected area's generator, each
 * checked under every selected profile against `reference` in lockstep;
 * every finding re-checked from scratch, shrunk, minimized and written.
 *
 * The seed space. A campaign seed S names an endless sequence of blocks of
 * `blockSize` runs; block b is one fast-check run of the generator with seed
 * `blockSeed(S, b)`. Run r of a campaign is run r mod blockSize of block
 * floor(r / blockSize), so `--runs N` is blocks 0 .. ceil(N / blockSize) - 1
 * (the last one cut short). Shard i of n (1-based) takes the blocks
 * b = i - 1, i - 1 + n, i - 1 + 2n, ...: the shards partition the blocks, and
 * with the same S and N their union is exactly the campaign one process
 * would run. Workers take their shard's blocks one after the other, so the
 * set of runs never depends on the number of workers.
 *
 * A finding is a run where a profile diverges from the reference with
 * verdict 'bug' (a divergence after a broken contract is 'permitted':
 * counted by contract, not reported). It is found again from scratch,
 * shrunk by fast-check (its replay path then names the shrunk trace: `nvx
 * fuzz --replay <seed>:<path>` reproduces it), minimized by ddmin, and named
 * by the sha256 of the minimized trace's canonical text, so findings from
 * shards merge by file name. Files are written under a temporary name and
 * renamed: a killed campaign leaves only whole files under final names.
 */
import { createHash, randomInt } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { AREAS, AREA_IDS, AreaId, Profile, parseProfile } from '@nvx/emulator';
import { TraceEvent, TraceHeader, formatEvent, formatTextTrace, readTraceFile, writeFileAtomic as writeTraceFileAtomic } from '@nvx/trace';
import fc from 'fast-check';
import { CoverageCounts, CoverageRecorder, mergeCoverage } from './coverage';
import { listTraces } from './corpus';
import { BlockFeedback, CorpusEntry, CorpusSeed, corpusText, writeCorpusTrace } from './corpus-dir';
import { DiffResult, Divergence, diffEvents } from './diff';
import { DivergenceKind, StateCompare, canonicalTraceText, describeKind, describeSides, divergenceKind, entryClass, findDivergence, minimizeTrace, sameKind, screenProfiles } from './minimize';
import { withMigrations } from './migrate';
import { MixedTrace, arbCampaignTrace } from './mix';

// ---------------------------------------------------------------- options and results

export interface Shard {
  /** 1-based */
  index: number;
  count: number;
}

export interface FuzzConfig {
  areas: AreaId[];
  /** profile specs, checked in this order against reference */
  profiles: string[];
  allowViolations: boolean;
  /** runs per block (default 100) */
  blockSize: number;
  stateAt: StateCompare;
  /**
   * fast-check's own shrinking of a finding before ddmin, at most this long
   * (default 0: none; ddmin is much faster on mixed traces, and the replay
   * path then names the generated trace itself)
   */
  shrinkMs: number;
  /**
   * fast-check's shrinking of a finding tries at most this many candidates
   * (default: no limit, shrinkMs alone ends it); a budget that does not
   * depend on the machine's speed, for tests
   */
  shrinkCandidates?: number;
  /** ddmin of a finding, at most this long (default 20 s) */
  minimizeMs: number;
  /**
   * stop checking a profile after this many distinct findings of it
   * (default: never; a worker learns of other workers' findings between
   * blocks, so with a cap the runs checked depend on the number of workers)
   */
  maxFindingsPerProfile: number;
  /** profiles whose divergences are expected (known findings of a path that models today's code) */
  expected: string[];
  /** plugin modules the workers load (the calling thread has loaded them already) */
  pathModules: string[];
  version: string;
  /** insert host.migrate events at random points of every generated trace (migrate.ts) */
  migrate?: boolean;
  /** the coverage corpus (--corpus DIR, corpus-dir.ts): mutated in each block; what reaches new coverage is kept */
  corpus?: CorpusSeed;
  /** the share of each block's runs spent on mutations of corpus traces when there is a corpus (default 0.25) */
  mutateShare?: number;
}

export interface FuzzOptions extends Partial<FuzzConfig> {
  /** campaign seed (default: drawn, and reported) */
  seed?: number;
  /** total runs of the campaign (all shards together) */
  runs?: number;
  /** wall-clock budget in ms (default 60 s when neither runs nor time is given) */
  timeMs?: number;
  /** worker threads (default: the number of cores); 1 runs in this thread */
  workers?: number;
  shard?: Shard;
  /** where findings are written (nothing is written without it) */
  outDir?: string;
  /** stop after this many distinct findings */
  maxFindings?: number;
  onProgress?: (p: FuzzProgress) => void;
  onFinding?: (f: FuzzFinding, fresh: boolean) => void;
  /** stop early (findings so far are kept) */
  signal?: AbortSignal;
}

export interface FuzzProgress {
  runs: number;
  events: number;
  findings: number;
  elapsedMs: number;
}

export type FindingClass = 'new' | 'expected';

export interface FuzzFinding {
  /** sha256 of the minimized trace's canonical text (header config, memslots, events) */
  hash: string;
  /** what groups findings of one bug (`findingSignature`) */
  signature: string;
  /** file name: the first 16 hex digits of the sha256 of the signature */
  name: string;
  /** bug divergences with this signature in the campaign (the runs that found it, per profile) */
  count: number;
  profile: string;
  classification: FindingClass;
  kind: DivergenceKind;
  /** one line: where and how it diverges */
  summary: string;
  /** fast-check seed and path of the (shrunk) generated trace */
  seed: number;
  path: string;
  replay: string;
  block: number;
  /** the run in its block (the fast-check path of the generated trace) */
  run: number;
  /** runs of the worker that found it, up to and including that one (with one worker: of the campaign) */
  foundAtRun: number;
  /** ms from the start of the campaign to the run that found it (before minimizing) */
  foundAtMs: number;
  /** a replay from scratch found the same kind of divergence again */
  confirmed: boolean;
  generatedEvents: number;
  shrunkEvents: number;
  /** sha256 of the canonical text of the trace the replay path names (the shrunk trace; `--replay` gives it back) */
  shrunkHash: string;
  minimizedEvents: number;
  shrinkMs: number;
  /** fast-check's shrinking stopped at its budget (time or candidates) before it ended by itself */
  shrinkCutShort?: boolean;
  minimizeMs: number;
  /** the minimizer stopped at its time budget: a longer budget may give a smaller trace */
  minimizeTimedOut?: boolean;
  /** the minimized trace, text form, with its provenance */
  text: string;
  /** where it was written, if it was */
  file?: string;
}

export interface FuzzSummary {
  version: string;
  seed: number;
  shard: Shard;
  workers: number;
  areas: AreaId[];
  profiles: string[];
  expected: string[];
  allowViolations: boolean;
  runs: number;
  events: number;
  ms: number;
  tracesPerSec: number;
  eventsPerSec: number;
  blocks: number;
  /** one finding per signature, in signature order, each with the smallest trace found and its count */
  findings: Omit<FuzzFinding, 'text'>[];
  /** bug divergences found again: the counts of every finding, less one each */
  duplicates: number;
  newFindings: number;
  /** divergences permitted by a broken contract, by contract */
  permitted: Record<string, number>;
  coverage: CoverageCounts;
  /** sequence coverage: ordered pairs of modelled rules on one vCPU (`a > b`), with their hits */
  sequence: { pairs: number; hits: number; counts: Record<string, number> };
  /** what ended it: the run or time budget, --max-findings, a signal, or every profile at --max-findings-per-profile */
  stopped: 'runs' | 'time' | 'findings' | 'signal' | 'saturated';
  /** the first finding: how long (before minimizing) and how many runs it took */
  firstFinding?: { ms: number; runs: number };
  /**
   * with --corpus: its size at the start and at the end, the traces added,
   * the mutation runs, and the coverage keys (rules and pairs) the corpus
   * did not have that fresh and mutated traces reached first
   */
  corpus?: { dir: string; start: number; size: number; added: number; mutations: number; newKeysFresh: number; newKeysMutation: number };
}

// ---------------------------------------------------------------- seeds, blocks, shards

/** The fast-check seed of block b of campaign seed s. */
export function blockSeed(s: number, b: number): number {
  return createHash('sha256').update(`nvx-fuzz:${s}:${b}`).digest().readUInt32BE(0) & 0x7fffffff;
}

/** The blocks of one shard, in order (endless without a runs budget), with their run counts. */
export function* shardBlocks(shard: Shard, blockSize: number, runs?: number): Generator<{ block: number; runs: number }> {
  const last = runs === undefined ? Infinity : Math.ceil(runs / blockSize);
  for (let b = shard.index - 1; b < last; b += shard.count) yield { block: b, runs: runs === undefined ? blockSize : Math.min(blockSize, runs - b * blockSize) };
}

export function parseShard(s: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`--shard wants i/n with 1 <= i <= n (got '${s}')`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || index < 1 || index > count) throw new Error(`--shard wants i/n with 1 <= i <= n (got '${s}')`);
  return { index, count };
}

/** '90' (seconds), '500ms', '30s', '10m', '2h' -> milliseconds. */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new Error(`not a duration: '${s}' (e.g. 30s, 10m, 1h, 500ms)`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return Math.round(n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!);
}

export function nvxVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

// ---------------------------------------------------------------- which profiles

/**
 * Profiles whose divergences on generated traces are expected: single-path
 * profiles that a `finding` trace of the corpus declares diverging (a path
 * modelling today's code with known bugs, such as guest-pages=kvm-map, or
 * msr-bitmap=enlightened, KVM's enlightened MSR-bitmap shortcut), and
 * `optimized` when such a trace declares it. Fuzzing them reports findings
 * as expected rather than new; the default campaign leaves them out
 * (defaultFuzzProfiles) while its generator still makes the inputs they
 * diverge on.
 */
export async function expectedDivergingProfiles(dirs: readonly string[]): Promise<string[]> {
  const out = new Set<string>();
  for (const f of listTraces(dirs)) {
    let h: TraceHeader;
    try {
      h = (await readTraceFile(f)).header;
    } catch {
      continue;
    }
    if (h.provenance.verdict !== 'finding') continue;
    for (const spec of (h.provenance.diverges ?? '').split(/[\s;]+/).filter(Boolean)) {
      if (spec === 'optimized') {
        out.add(spec);
        continue;
      }
      const m = /^([a-z-]+)=([\w.-]+)$/.exec(spec);
      if (!m || !(AREA_IDS as readonly string[]).includes(m[1])) continue;
      const a = AREAS[m[1] as AreaId];
      if (m[2] !== a.reference) out.add(spec);
    }
  }
  return [...out].sort();
}

/**
 * Every optimized path of the selected areas alone (broken-* fixtures left
 * out), then `optimized`; minus the expected-diverging ones; plus `extra`
 * (plugin paths) first. When an area's optimized path is expected to
 * diverge (or `optimized` itself), `optimized` gives way to every area's
 * optimized path with, for those areas, the last of its other optimized
 * paths not expected to diverge (their reference path when none):
 * optimizedWithout.
 */
export function defaultFuzzProfiles(areas: readonly AreaId[], expected: readonly string[] = [], extra: readonly string[] = []): string[] {
  const out: string[] = [...extra];
  for (const a of AREA_IDS) {
    if (!areas.includes(a)) continue;
    for (const p of AREAS[a].paths.keys()) {
      const spec = `${a}=${p}`;
      if (p === AREAS[a].reference || p.startsWith('broken-') || expected.includes(spec) || out.includes(spec)) continue;
      out.push(spec);
    }
  }
  const all = optimizedWithout(expected);
  if (!out.includes(all)) out.push(all);
  return out;
}

/** `optimized`, or when some of its paths are expected to diverge, the combination defaultFuzzProfiles checks instead. */
export function optimizedWithout(expected: readonly string[]): string {
  const known = (a: AreaId, p: string) => expected.includes(`${a}=${p}`);
  if (!expected.includes('optimized') && !AREA_IDS.some((a) => known(a, AREAS[a].optimized))) return 'optimized';
  return AREA_IDS.map((a) => {
    if (!known(a, AREAS[a].optimized)) return `${a}=${AREAS[a].optimized}`;
    const others = [...AREAS[a].paths.keys()].filter((p) => p !== AREAS[a].reference && !p.startsWith('broken-') && !known(a, p));
    return `${a}=${others.length ? others[others.length - 1] : AREAS[a].reference}`;
  }).join(',');
}

// ---------------------------------------------------------------- writing files

/**
 * Write a findings file atomically (@nvx/trace's writeFileAtomic: temporary
 * file, fsync, rename, directory fsync). The findings directory is this
 * command's own, so it is created when missing.
 */
export function writeFileAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeTraceFileAtomic(file, text);
}

// ---------------------------------------------------------------- the engine (one per worker)

// ---------------------------------------------------------------- one finding per bug

/**
 * What a divergence shows, coarsely enough that one bug gives one answer:
 * an outcome divergence (an exit where the reference reads a value and a
 * different value read are one bug seen twice); for a state divergence
 * the kind of state that differs first, without the vCPU, the MSR, the
 * field or the frame (a merge that lets L2 reach L0's FS_BASE also lets it
 * reach GS_BASE: one bug).
 */
export function observationOf(d: Divergence): string {
  if (d.kind === 'outcome') return 'outcome';
  const key = d.archDiff[0]?.key ?? '';
  const k = key
    .replace(/^vcpu \d+'s own cpu /, 'host ')
    .replace(/^cpu \d+ /, 'host ')
    .replace(/^vcpu \d+ /, '')
    .replace(/^(L[12]) \S+$/, '$1 msr')
    .replace(/^vmcs12 \S+$/, 'vmcs12')
    .replace(/^memory gfn \S+$/, 'memory')
    .replace(/^memslot \d+$/, 'memslot');
  return `state ${k || 'unknown'}`;
}

/**
 * A finding's signature: the profile (area and path), the kind of the
 * first diverging event (VMLAUNCH and VMRESUME as one: `entryClass`), what it shows (`observationOf`), the verdict and
 * the contract behind it. Findings with one signature are one bug: the
 * campaign keeps the smallest trace of each and counts them.
 */
export function findingSignature(profile: string, d: Divergence): string {
  return `${profile} | ${entryClass(d.event.kind)} | ${observationOf(d)} | ${d.verdict} | ${d.contract?.contract ?? 'none'}`;
}

/** The file name of a signature's finding: the first 16 hex digits of its sha256. */
export const signatureName = (signature: string): string => createHash('sha256').update(signature).digest('hex').slice(0, 16);

/** The property failed: `profile` diverges with verdict 'bug'. */
export class FuzzFailure extends Error {
  constructor(
    readonly profile: number,
    readonly result: DiffResult,
    readonly trace: MixedTrace,
  ) {
    const d = result.divergence!;
    super(`${result.other} diverges from ${result.base} (${d.verdict}) at event ${d.index}: ${formatEvent(d.event)}`);
    this.name = 'FuzzFailure';
  }
}

export interface BlockSpec {
  block: number;
  seed: number;
  runs: number;
  /** wall-clock deadline (Date.now() ms) */
  deadline?: number;
  /** when the campaign started (Date.now() ms): findings say how long after it they were found */
  startedAt?: number;
  /** signatures the campaign has already (found again, they are counted, not minimized) */
  known?: string[];
}

export interface BlockResult {
  block: number;
  runs: number;
  events: number;
  coverage: CoverageCounts;
  permitted: Record<string, number>;
  /** bug divergences of this block, by signature */
  signatures: Record<string, number>;
  /** sequence coverage: ordered pairs of rules on one vCPU, with their hits */
  pairs: Record<string, number>;
  interrupted: boolean;
  /** every profile has had its maximum of findings in this worker: nothing is left to check */
  exhausted: boolean;
  /** with a corpus: the traces this block kept (new coverage), and its mutation runs */
  kept?: CorpusEntry[];
  mutations?: number;
}

export interface EngineHooks {
  progress?(runs: number, events: number): void;
  finding?(f: FuzzFinding): void;
  shouldStop?(): boolean;
}

export function replayCommand(seed: number, p: string, cfg: Pick<FuzzConfig, 'areas' | 'allowViolations' | 'pathModules' | 'migrate'>, profile: string): string {
  // a profile of several areas is written with '+' in a --profiles list
  const parts = ['nvx fuzz', `--replay ${seed}:${p}`, `--profiles ${profile.replace(/,/g, '+')}`];
  if (cfg.migrate) parts.push('--migrate');
  if (cfg.areas.length !== AREA_IDS.length) parts.push(`--areas ${cfg.areas.join(',')}`);
  if (cfg.allowViolations) parts.push('--allow-violations');
  for (const m of cfg.pathModules) parts.push(`--path-module ${m}`);
  return parts.join(' ');
}

/** The text of a finding: a comment saying what it is, the header with its provenance, the minimized events. */
export function findingText(f: Omit<FuzzFinding, 'text' | 'hash' | 'name' | 'summary' | 'count'>, header: TraceHeader, events: readonly TraceEvent[], r: DiffResult, cfg: Pick<FuzzConfig, 'areas' | 'allowViolations' | 'pathModules' | 'version' | 'migrate'>): { text: string; hash: string; summary: string } {
  const d = r.divergence!;
  const summary = `${f.profile} diverges from reference at event ${d.index} (${formatEvent(d.event)}): ${describeSides(d)}`;
  const hash = createHash('sha256').update(canonicalTraceText(header, events)).digest('hex');
  // As a regression trace it must pass once the bug is fixed; an expected one is a kept finding of its profile.
  const provenance: Record<string, string> = f.classification === 'expected' ? { verdict: 'finding', diverges: f.profile } : { verdict: 'pass' };
  Object.assign(provenance, {
    divergence: d.verdict,
    contract: d.contract?.contract ?? 'none',
    profile: f.profile,
    signature: f.signature,
    seed: String(f.seed),
    path: f.path,
    replay: `${f.seed}:${f.path}`,
    'nvx-version': cfg.version,
    areas: cfg.areas.join(','),
    'allow-violations': String(cfg.allowViolations),
    generator: 'nvx fuzz',
    classification: f.classification,
  });
  if (cfg.pathModules.length) provenance['path-modules'] = cfg.pathModules.join(' ');
  if (cfg.migrate) provenance.migrate = 'true';
  const comment = [
    `nvx fuzz finding ${signatureName(f.signature)} (${f.classification}): ${describeKind(f.kind)}`,
    `signature: ${f.signature}`,
    summary,
    d.contract ? `after ${d.contract.party} broke ${d.contract.contract} at event ${d.contract.index}: ${d.contract.message}` : 'no contract was broken before it',
    ...d.archDiff.slice(d.kind === 'state' ? 1 : 0, 4).map((a) => `  ${a.key}: ${a.a ?? '-'} vs ${a.b ?? '-'}`),
    `found after ${f.foundAtRun} runs; ${f.generatedEvents} events generated, ${f.shrunkEvents !== f.generatedEvents ? `${f.shrunkEvents} after shrinking, ` : ''}${f.minimizedEvents} after minimizing`,
    `replay: ${replayCommand(f.seed, f.path, cfg, f.profile)}`,
    `check:  nvx diff <this file> --profile ${f.profile}${cfg.pathModules.map((m) => ` --path-module ${m}`).join('')}`,
  ];
  const text = comment.map((l) => `# ${l}`.trimEnd()).join('\n') + '\n' + formatTextTrace({ ...header, provenance: { ...provenance } }, events);
  return { text, hash, summary };
}

/** One bug divergence of one profile on one generated trace. */
export interface BugHit {
  /** index in the engine's profiles */
  profile: number;
  result: DiffResult;
  signature: string;
}

/** The run stopped because the campaign is stopping (time, signal, --max-findings): not a failure. */
class BlockStopped extends Error {}

/** One worker's fuzzing: blocks of runs, and what becomes of a failure. */
export class FuzzEngine {
  readonly ref = parseProfile('reference');
  readonly profiles: { spec: string; profile: Profile; findings: number }[];
  private readonly arb: fc.Arbitrary<MixedTrace>;
  /** signatures already found (here or, as the campaign said, elsewhere): found again, they are counted, not minimized */
  private readonly known = new Set<string>();
  /** runs this engine has done */
  runs = 0;
  /** the coverage keys of the corpus the campaign started with (built once) */
  private corpusKeys?: Set<string>;
  readonly t0 = performance.now();
  firstFinding?: { ms: number; runs: number };

  constructor(readonly cfg: FuzzConfig) {
    this.profiles = cfg.profiles.map((spec) => ({ spec, profile: parseProfile(spec), findings: 0 }));
    const mixed = arbCampaignTrace({ areas: cfg.areas, allowViolations: cfg.allowViolations });
    this.arb = cfg.migrate ? withMigrations(fc, mixed) : mixed;
  }

  get arbitrary(): fc.Arbitrary<MixedTrace> {
    return this.arb;
  }

  private active(): { spec: string; profile: Profile; findings: number }[] {
    return this.profiles.filter((p) => p.findings < this.cfg.maxFindingsPerProfile);
  }

  /**
   * Signatures found elsewhere (another worker, an earlier block): count
   * them, do not minimize them again (for --max-findings-per-profile, each
   * counts for the profile it names).
   */
  learn(signatures: readonly string[]): void {
    for (const s of signatures) {
      if (this.known.has(s)) continue;
      this.known.add(s);
      const p = this.profiles.find((x) => s.startsWith(`${x.spec} | `));
      if (p) p.findings++;
    }
  }

  /**
   * Check one trace under the active profiles: every profile's bug
   * divergence (a divergence after a broken contract is counted as
   * permitted, by contract).
   */
  checkTrace(t: MixedTrace, coverage?: CoverageRecorder, permitted?: Record<string, number>, only?: readonly { spec: string; profile: Profile }[]): BugHit[] {
    const ps = only ?? this.active();
    if (!ps.length) return [];
    const hits = screenProfiles(t.header, t.events, this.ref, ps.map((p) => p.profile), { stateAt: this.cfg.stateAt, coverage });
    const bugs: BugHit[] = [];
    for (let j = 0; j < ps.length; j++) {
      const h = hits[j];
      if (!h) continue;
      const r = diffEvents(t.header, t.events.slice(0, h.index + 1), this.ref, ps[j].profile);
      const d = r.divergence;
      if (!d) continue;
      if (d.verdict === 'permitted') {
        const c = d.contract?.contract ?? 'unknown';
        if (permitted) permitted[c] = (permitted[c] ?? 0) + 1;
        continue;
      }
      bugs.push({ profile: this.profiles.findIndex((p) => p.spec === ps[j].spec), result: r, signature: findingSignature(this.culprit(ps[j], t, d.index), d) });
    }
    return bugs;
  }

  private readonly single = new Map<string, Profile>();

  /**
   * The path behind a bug of a profile of several optimized paths
   * (`optimized`): the first of its paths that, alone, diverges at the same
   * event of the trace. Its name goes into the signature, so a bug found
   * under `optimized` and under its path alone is one finding. The profile
   * itself when it has one path, or when no path alone diverges there (the
   * paths' interplay).
   */
  private culprit(p: { spec: string; profile: Profile }, t: MixedTrace, index: number): string {
    const areas = AREA_IDS.filter((a) => p.profile.paths[a].name !== AREAS[a].reference);
    if (areas.length <= 1) return p.spec;
    const cut = t.events.slice(0, index + 1);
    for (const a of areas) {
      const spec = `${a}=${p.profile.paths[a].name}`;
      let one = this.single.get(spec);
      if (!one) this.single.set(spec, (one = parseProfile(spec)));
      const r = findDivergence(t.header, cut, this.ref, one, 'every');
      if (r?.divergence && r.divergence.index === index && r.divergence.verdict === 'bug') return spec;
    }
    return p.spec;
  }

  /**
   * Run one block: every run is checked under every active profile; each
   * bug divergence is counted under its signature, and the first of each
   * signature this engine has not seen is found again, minimized and
   * reported. The counts and coverage come back even when the block is cut
   * short (time, --max-findings, a signal).
   */
  runBlock(spec: BlockSpec, hooks: EngineHooks = {}): BlockResult {
    const res: BlockResult = { block: spec.block, runs: 0, events: 0, coverage: {}, permitted: {}, signatures: {}, pairs: {}, interrupted: false, exhausted: false };
    this.learn(spec.known ?? []);
    const cov = new CoverageRecorder();
    let lastProgress = performance.now();
    let pr = 0;
    let pe = 0;
    const flush = () => {
      if (pr || pe) hooks.progress?.(pr, pe);
      pr = pe = 0;
    };
    const stopNow = () => !!hooks.shouldStop?.() || (spec.deadline !== undefined && Date.now() >= spec.deadline);
    if (!this.active().length) {
      res.exhausted = true;
      return res;
    }
    if (stopNow()) {
      res.interrupted = true;
      return res;
    }
    // with a corpus, the last share of the block's runs mutate corpus traces (corpus-dir.ts)
    const fb = this.cfg.corpus ? new BlockFeedback(this.cfg.corpus, (this.corpusKeys ??= new Set(this.cfg.corpus.known)), spec.block, spec.seed) : null;
    // at least one fresh run: insertions draw from the block's fresh traces, and an empty corpus has nothing else to mutate
    const mutations = fb ? Math.max(0, Math.min(spec.runs - 1, Math.floor(spec.runs * (this.cfg.mutateShare ?? 0.25)))) : 0;
    if (fb) cov.firstHits = [];
    let k = 0;
    const one = (t: MixedTrace, run: number, mutated: boolean) => {
      if (stopNow()) throw new BlockStopped();
      if (!this.active().length) {
        res.exhausted = true;
        throw new BlockStopped();
      }
      this.runs++;
      res.runs++;
      res.events += t.events.length;
      pr++;
      pe += t.events.length;
      const now = performance.now();
      if (now - lastProgress > 200) {
        lastProgress = now;
        flush();
      }
      for (const b of this.checkTrace(t, cov, res.permitted)) {
        res.signatures[b.signature] = (res.signatures[b.signature] ?? 0) + 1;
        if (this.known.has(b.signature)) continue;
        this.known.add(b.signature);
        this.profiles[b.profile].findings++;
        flush();
        // a mutated trace is not a fast-check path: its path says so (m<run>), and its file is the trace
        hooks.finding?.(this.processFailure(spec, run, new FuzzFailure(b.profile, b.result, t), mutated ? `m${run}` : undefined, b.signature));
      }
      fb?.after(cov, t.header, t.events, run, mutated);
    };
    const prop = fc.property(this.arb, (t) => one(t, k++, false));
    const remaining = spec.deadline === undefined ? undefined : Math.max(1, spec.deadline - Date.now());
    const d = fc.check(prop, { seed: spec.seed, numRuns: spec.runs - mutations, endOnFailure: true, interruptAfterTimeLimit: remaining });
    if (d.failed && !(d.errorInstance instanceof BlockStopped)) {
      const err = d.errorInstance;
      const at = Number(String(d.counterexamplePath).split(':')[0]);
      const e = err instanceof Error ? err : new Error(String(err));
      e.message = `on the trace of fast-check seed ${spec.seed}, path ${at} (replay with --replay ${spec.seed}:${at}): ${e.message}`;
      throw e;
    }
    res.interrupted = d.interrupted || (d.failed && !res.exhausted);
    if (fb && !d.failed && !d.interrupted && !fb.empty) {
      res.mutations = 0;
      try {
        for (let i = 0; i < mutations; i++) {
          const m = fb.mutant();
          res.mutations++;
          one({ header: m.header, events: m.events, parts: [] }, spec.runs - mutations + i, true);
        }
      } catch (e) {
        if (!(e instanceof BlockStopped)) {
          const err = e instanceof Error ? e : new Error(String(e));
          err.message = `on a mutation of a corpus trace (fast-check seed ${spec.seed}, run ${spec.runs - mutations + res.mutations - 1}): ${err.message}`;
          throw err;
        }
        res.interrupted = !res.exhausted;
      }
    }
    if (fb) res.kept = fb.kept;
    flush();
    res.coverage = cov.counts;
    res.pairs = cov.pairs;
    return res;
  }

  /** Found again from scratch, shrunk by fast-check, minimized by ddmin: the finding. */
  processFailure(spec: BlockSpec, k: number, err: FuzzFailure, replayPath?: string, signature?: string): FuzzFinding {
    const p = this.profiles[err.profile];
    const foundAtMs = spec.startedAt !== undefined ? Date.now() - spec.startedAt : Math.round(performance.now() - this.t0);
    const foundAtRun = this.runs;
    this.firstFinding ??= { ms: foundAtMs, runs: foundAtRun };
    const kind = divergenceKind(err.result.divergence!);
    const sig = signature ?? findingSignature(p.spec, err.result.divergence!);
    const again = findDivergence(err.trace.header, err.trace.events, this.ref, p.profile, this.cfg.stateAt);
    const confirmed = !!again?.divergence && sameKind(divergenceKind(again.divergence), kind);
    // shrink with fast-check (on this profile alone, keeping the signature), so the replay path names a short trace
    const s0 = performance.now();
    let trace = err.trace;
    let fcPath = replayPath ?? String(k);
    let shrinkCutShort = false;
    if (this.cfg.shrinkMs > 0 && replayPath === undefined) {
      // The budget ends shrinking by interrupting fast-check from the
      // predicate (a PreconditionFailure that interrupts, as fast-check's own
      // interruptAfterTimeLimit does): the counterexample and its path are
      // both those of the last candidate that failed, and the candidates
      // left are not even generated. The first call is the generated trace
      // itself (path k), always checked.
      const until = s0 + this.cfg.shrinkMs;
      const maxCandidates = this.cfg.shrinkCandidates ?? Infinity;
      let calls = 0;
      const prop = fc.property(this.arb, (t) => {
        if (calls > 0 && (calls > maxCandidates || performance.now() > until)) {
          shrinkCutShort = true;
          throw new fc.PreconditionFailure(true);
        }
        calls++;
        const r = findDivergence(t.header, t.events, this.ref, p.profile, this.cfg.stateAt);
        // the same finding: its kind and its whole signature (the observation too), so that the
        // replay of the shrunk trace, which takes the signature from that trace, names this finding
        if (r?.divergence && sameKind(divergenceKind(r.divergence), kind) && findingSignature(this.culprit(p, t, r.divergence.index), r.divergence) === sig) throw new FuzzFailure(err.profile, r, t);
      });
      const s = fc.check(prop, { seed: spec.seed, path: String(k), numRuns: 1 });
      if (s.failed && s.errorInstance instanceof FuzzFailure && s.counterexamplePath) {
        trace = s.errorInstance.trace;
        fcPath = s.counterexamplePath;
      }
    }
    const shrinkMs = Math.round(performance.now() - s0);
    const m = minimizeTrace(trace.header, trace.events, this.ref, p.profile, { timeLimitMs: this.cfg.minimizeMs, stateAt: this.cfg.stateAt, signature: observationOf });
    const classification: FindingClass = this.cfg.expected.includes(p.spec) ? 'expected' : 'new';
    const base = {
      profile: p.spec,
      classification,
      kind,
      signature: sig,
      count: 1,
      seed: spec.seed,
      path: fcPath,
      replay: `${spec.seed}:${fcPath}`,
      block: spec.block,
      run: k,
      foundAtRun,
      foundAtMs,
      confirmed,
      generatedEvents: err.trace.events.length,
      shrunkEvents: trace.events.length,
      shrunkHash: createHash('sha256').update(canonicalTraceText(trace.header, trace.events)).digest('hex'),
      minimizedEvents: m.after,
      shrinkMs,
      shrinkCutShort,
      minimizeMs: m.ms,
      minimizeTimedOut: m.timedOut,
    };
    const { text, hash, summary } = findingText(base, m.header, m.events, m.result, this.cfg);
    return { ...base, hash, name: signatureName(sig), summary, text };
  }

  /**
   * Replay one generated trace by its fast-check seed and path (under the
   * given profiles): the finding it gives (the first profile's), or null
   * when none diverges.
   */
  replay(seed: number, fcPath: string): { trace: MixedTrace; finding: FuzzFinding | null; permitted: Record<string, number> } {
    const permitted: Record<string, number> = {};
    let trace: MixedTrace | undefined;
    let bugs: BugHit[] = [];
    // With a path of several steps (a shrunk trace), fast-check runs the
    // property on the candidate the path names and then on every later
    // candidate of the same shrinking step (fast-check's check(): numRuns
    // bounds only a path of one step; pathWalk hands over the rest of the
    // step's stream). Only the first is the trace named; the second call
    // ends the check with an interrupt, so the rest are not generated.
    const prop = fc.property(this.arb, (t) => {
      if (trace !== undefined) throw new fc.PreconditionFailure(true);
      trace = t;
      this.runs++;
      bugs = this.checkTrace(t, undefined, permitted, this.profiles);
    });
    const d = fc.check(prop, { seed, path: fcPath, numRuns: 1, endOnFailure: true });
    if (d.failed && !d.interrupted) throw d.errorInstance;
    if (!bugs.length) return { trace: trace!, finding: null, permitted };
    const b = bugs[0];
    // no further shrinking: the path given is the one to keep
    const f = this.processFailure({ block: -1, seed, runs: 1 }, 0, new FuzzFailure(b.profile, b.result, trace!), fcPath, b.signature);
    return { trace: trace!, finding: f, permitted };
  }
}

// ---------------------------------------------------------------- the campaign

export function resolveConfig(o: Partial<FuzzConfig>): FuzzConfig {
  const areas = o.areas && o.areas.length ? o.areas : [...AREA_IDS];
  const expected = o.expected ?? [];
  const profiles = o.profiles && o.profiles.length ? o.profiles : defaultFuzzProfiles(areas, expected);
  for (const p of profiles) parseProfile(p); // fail early, naming the profile
  return {
    areas,
    profiles,
    allowViolations: !!o.allowViolations,
    blockSize: o.blockSize ?? 100,
    stateAt: o.stateAt ?? 'entries',
    shrinkMs: o.shrinkMs ?? 0,
    shrinkCandidates: o.shrinkCandidates,
    minimizeMs: o.minimizeMs ?? 20_000,
    maxFindingsPerProfile: o.maxFindingsPerProfile ?? Infinity,
    expected,
    pathModules: o.pathModules ?? [],
    version: o.version ?? nvxVersion(),
    migrate: !!o.migrate,
    corpus: o.corpus,
    mutateShare: o.mutateShare ?? 0.25,
  };
}

/** The worker script: the compiled one next to this module, or this source under tsx. */
function workerEntry(): { file: string; evalCode?: string } {
  const js = path.join(__dirname, 'fuzz-worker.js');
  if (fs.existsSync(js)) return { file: js };
  const ts = path.join(__dirname, 'fuzz-worker.ts');
  const tsx = require.resolve('tsx/cjs');
  return { file: ts, evalCode: `require(${JSON.stringify(tsx)}); require(${JSON.stringify(ts)});` };
}

export const summaryName = (shard: Shard) => (shard.count === 1 ? 'summary.json' : `summary.shard-${shard.index}-of-${shard.count}.json`);

/**
 * Run a campaign; resolves when its budget is spent (or it is stopped), with
 * findings written to outDir.
 *
 * Accounting: every block's runs, events, coverage, permitted divergences
 * and signature counts come back from the worker that ran it, also when the
 * campaign stops in the middle of it (the workers see a shared stop flag
 * between runs, finish the run and any minimization under way, report, and
 * only then are let go). So with a fixed seed and run budget the counts,
 * coverage and the set of findings do not depend on the number of workers;
 * which trace a finding keeps is the smallest minimized one (with one worker
 * each signature is minimized once, at its first run).
 */
export async function runFuzz(o: FuzzOptions): Promise<FuzzSummary> {
  const cfg = resolveConfig(o);
  const seed = o.seed ?? randomInt(0x7fffffff);
  const shard = o.shard ?? { index: 1, count: 1 };
  const workers = Math.max(1, o.workers ?? os.availableParallelism());
  const timeMs = o.timeMs ?? (o.runs === undefined ? 60_000 : undefined);
  const t0 = performance.now();
  const startedAt = Date.now();
  const deadline = timeMs === undefined ? undefined : startedAt + timeMs;
  const blocks = shardBlocks(shard, cfg.blockSize, o.runs);
  const st = {
    runs: 0,
    events: 0,
    blocks: 0,
    /** signature -> the finding kept (the smallest minimized trace) */
    findings: new Map<string, FuzzFinding>(),
    /** signature -> bug divergences counted in finished blocks */
    counts: new Map<string, number>(),
    permitted: {} as Record<string, number>,
    coverage: {} as CoverageCounts,
    pairs: {} as Record<string, number>,
    stop: null as FuzzSummary['stopped'] | null,
    firstFinding: undefined as { ms: number; runs: number } | undefined,
  };
  const corpus = cfg.corpus ? corpusKeeper(cfg.corpus, shard, seed) : null;
  const progress = () => o.onProgress?.({ runs: st.runs, events: st.events, findings: st.findings.size, elapsedMs: performance.now() - t0 });
  const summary = (): FuzzSummary => {
    const ms = Math.round(performance.now() - t0);
    const findings = [...st.findings.values()]
      .map(({ text: _t, ...rest }) => ({ ...rest, count: Math.max(1, st.counts.get(rest.signature) ?? 0) }))
      .sort((a, b) => (a.signature < b.signature ? -1 : a.signature > b.signature ? 1 : 0));
    return {
      version: cfg.version,
      seed,
      shard,
      workers,
      areas: cfg.areas,
      profiles: cfg.profiles,
      expected: cfg.expected,
      allowViolations: cfg.allowViolations,
      runs: st.runs,
      events: st.events,
      ms,
      tracesPerSec: Math.round((st.runs / Math.max(ms, 1)) * 1000 * 10) / 10,
      eventsPerSec: Math.round((st.events / Math.max(ms, 1)) * 1000),
      blocks: st.blocks,
      findings,
      duplicates: findings.reduce((a, f) => a + f.count - 1, 0),
      newFindings: findings.filter((f) => f.classification === 'new').length,
      permitted: st.permitted,
      coverage: st.coverage,
      sequence: { pairs: Object.keys(st.pairs).length, hits: Object.values(st.pairs).reduce((a, n) => a + n, 0), counts: st.pairs },
      stopped: st.stop ?? (o.runs !== undefined ? 'runs' : 'time'),
      firstFinding: st.firstFinding,
      corpus: corpus?.summary(),
    };
  };
  const writeSummary = () => {
    if (o.outDir && (st.findings.size || fs.existsSync(o.outDir))) writeFileAtomic(path.join(o.outDir, summaryName(shard)), JSON.stringify(summary(), null, 2) + '\n');
  };
  const onFinding = (f: FuzzFinding) => {
    const had = st.findings.get(f.signature);
    const fresh = !had;
    // one finding per signature: keep the smallest trace (the earlier run on a tie)
    const better = !had || f.minimizedEvents < had.minimizedEvents || (f.minimizedEvents === had.minimizedEvents && (f.block < had.block || (f.block === had.block && f.run < had.run)));
    if (better) {
      if (o.outDir) {
        const file = path.join(o.outDir, `${f.name}.nvx`);
        // another shard (or an earlier campaign) may have written this signature with a smaller trace: keep that one
        const prior = fresh && fs.existsSync(file) ? eventsInFile(file) : Infinity;
        if (prior > f.minimizedEvents) writeFileAtomic(file, f.text);
        f.file = file;
      }
      st.findings.set(f.signature, f);
      if (!st.firstFinding || f.foundAtMs < st.firstFinding.ms) st.firstFinding = { ms: f.foundAtMs, runs: f.foundAtRun };
      writeSummary();
    }
    o.onFinding?.(f, fresh);
    if (o.maxFindings !== undefined && st.findings.size >= o.maxFindings) st.stop ??= 'findings';
  };
  const stopNow = () => {
    if (o.signal?.aborted) st.stop ??= 'signal';
    if (deadline !== undefined && Date.now() >= deadline) st.stop ??= 'time';
    return st.stop !== null;
  };
  const addBlock = (r: BlockResult) => {
    st.blocks++;
    mergeCoverage(st.coverage, r.coverage);
    for (const [k, n] of Object.entries(r.permitted)) st.permitted[k] = (st.permitted[k] ?? 0) + n;
    for (const [k, n] of Object.entries(r.signatures)) st.counts.set(k, (st.counts.get(k) ?? 0) + n);
    for (const [k, n] of Object.entries(r.pairs)) st.pairs[k] = (st.pairs[k] ?? 0) + n;
    corpus?.block(r);
  };

  if (workers === 1) {
    const engine = new FuzzEngine(cfg);
    for (const b of blocks) {
      if (stopNow()) break;
      const r = engine.runBlock(
        { block: b.block, seed: blockSeed(seed, b.block), runs: b.runs, deadline, startedAt },
        {
          progress: (runs, events) => {
            st.runs += runs;
            st.events += events;
            progress();
          },
          finding: onFinding,
          shouldStop: stopNow,
        },
      );
      addBlock(r);
      progress();
      if (r.exhausted) {
        st.stop ??= 'saturated';
        break;
      }
      // let signals and timers in between blocks
      await new Promise((res) => setImmediate(res));
    }
  } else {
    const { allExhausted } = await runWorkers(workers, cfg, seed, blocks, deadline, startedAt, {
      progress: (runs, events) => {
        st.runs += runs;
        st.events += events;
        progress();
      },
      finding: onFinding,
      block: addBlock,
      shouldStop: stopNow,
      known: () => [...st.findings.keys()],
    });
    if (allExhausted) st.stop ??= 'saturated';
  }
  stopNow();
  corpus?.finish();
  // a shard always leaves its summary (runs, coverage) for `nvx fuzz merge`, findings or not
  if (o.outDir && shard.count > 1) fs.mkdirSync(o.outDir, { recursive: true });
  writeSummary();
  return summary();
}

/**
 * The campaign's side of the corpus: the traces the blocks kept, taken in
 * block order (a block that finishes early waits for the ones before it),
 * each written when it still reaches a key the corpus and the earlier
 * blocks' traces did not. So with a fixed seed, run budget and corpus, the
 * corpus written does not depend on the number of workers.
 */
function corpusKeeper(c: CorpusSeed, shard: Shard, seed: number) {
  const known = new Set(c.known);
  const names = new Set(c.traces.map((t) => t.name));
  const pending = new Map<number, CorpusEntry[]>();
  let next = shard.index - 1;
  let added = 0;
  let mutations = 0;
  let newKeysFresh = 0;
  let newKeysMutation = 0;
  const keep = (entries: readonly CorpusEntry[]) => {
    for (const e of entries) {
      const keys = e.keys.filter((k) => !known.has(k));
      if (!keys.length) continue;
      for (const k of keys) known.add(k);
      if (e.mutated) newKeysMutation += keys.length;
      else newKeysFresh += keys.length;
      if (names.has(e.name)) continue;
      names.add(e.name);
      if (writeCorpusTrace(c.dir, e.name, corpusText({ ...e, keys }, seed), writeFileAtomic)) added++;
    }
  };
  return {
    block(r: BlockResult) {
      mutations += r.mutations ?? 0;
      pending.set(r.block, r.kept ?? []);
      for (let e = pending.get(next); e; e = pending.get(next)) {
        keep(e);
        pending.delete(next);
        next += shard.count;
      }
    },
    /** the blocks left waiting (one that never reported leaves a gap) */
    finish() {
      for (const b of [...pending.keys()].sort((x, y) => x - y)) keep(pending.get(b)!);
      pending.clear();
    },
    summary: () => ({ dir: c.dir, start: c.traces.length, size: names.size, added, mutations, newKeysFresh, newKeysMutation }),
  };
}

/** Events of a finding file already there (Infinity when it cannot be read). */
function eventsInFile(file: string): number {
  try {
    const text = fs.readFileSync(file, 'utf8');
    const i = text.indexOf('\nevents\n');
    return i < 0 ? Infinity : text.slice(i + 8).split('\n').filter((l) => l.trim() && !l.startsWith('#')).length;
  } catch {
    return Infinity;
  }
}

interface PoolHooks {
  progress(runs: number, events: number): void;
  finding(f: FuzzFinding): void;
  block(r: BlockResult): void;
  shouldStop(): boolean;
  /** signatures found so far (sent with each block) */
  known(): string[];
}

/** Messages between the campaign and its workers. */
export type ToWorker = { type: 'block'; spec: BlockSpec } | { type: 'stop' };
export type FromWorker =
  | { type: 'ready' }
  | { type: 'progress'; runs: number; events: number }
  | { type: 'finding'; finding: FuzzFinding }
  | { type: 'block-done'; result: BlockResult }
  | { type: 'error'; message: string; stack?: string };

/** What a worker thread is given: the configuration and the campaign's stop flag (an Int32Array over shared memory). */
export interface WorkerInit {
  cfg: FuzzConfig;
  stop: SharedArrayBuffer;
}

async function runWorkers(n: number, cfg: FuzzConfig, seed: number, blocks: Generator<{ block: number; runs: number }>, deadline: number | undefined, startedAt: number, hooks: PoolHooks): Promise<{ allExhausted: boolean }> {
  const entry = workerEntry();
  const pool: Worker[] = [];
  const stopBuf = new SharedArrayBuffer(4);
  const stopFlag = new Int32Array(stopBuf);
  let exhausted = 0;
  await new Promise<void>((resolve, reject) => {
    let live = 0;
    let failed = false;
    let stoppedAt: number | undefined;
    const poll = setInterval(() => {
      // time, signal or --max-findings: raise the flag; each worker ends its run, reports its block and is let go
      if (hooks.shouldStop() && stoppedAt === undefined) {
        stoppedAt = Date.now();
        Atomics.store(stopFlag, 0, 1);
      }
      // a worker that does not report long after (a minimization has its own limit) is ended
      if (stoppedAt !== undefined && Date.now() - stoppedAt > cfg.minimizeMs + cfg.shrinkMs + 30_000) for (const w of pool) void w.terminate();
    }, 50);
    const done = () => {
      if (--live === 0) {
        clearInterval(poll);
        resolve();
      }
    };
    const dispatch = (w: Worker) => {
      const b = hooks.shouldStop() ? undefined : blocks.next();
      if (!b || b.done) {
        w.postMessage({ type: 'stop' } satisfies ToWorker);
        return;
      }
      w.postMessage({ type: 'block', spec: { block: b.value.block, seed: blockSeed(seed, b.value.block), runs: b.value.runs, deadline, startedAt, known: hooks.known() } } satisfies ToWorker);
    };
    const fail = (e: Error) => {
      if (failed) return;
      failed = true;
      clearInterval(poll);
      for (const x of pool) void x.terminate();
      reject(e);
    };
    const init: WorkerInit = { cfg, stop: stopBuf };
    for (let i = 0; i < n; i++) {
      const w = entry.evalCode ? new Worker(entry.evalCode, { eval: true, workerData: init }) : new Worker(entry.file, { workerData: init });
      pool.push(w);
      live++;
      w.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ready':
            return dispatch(w);
          case 'progress':
            return hooks.progress(m.runs, m.events);
          case 'finding':
            return hooks.finding(m.finding);
          case 'block-done':
            hooks.block(m.result);
            if (m.result.exhausted) {
              exhausted++;
              return void w.postMessage({ type: 'stop' } satisfies ToWorker);
            }
            return dispatch(w);
          case 'error': {
            const e = new Error(m.message);
            if (m.stack) e.stack = m.stack;
            return fail(e);
          }
        }
      });
      w.on('error', fail);
      w.on('exit', done);
    }
  });
  return { allExhausted: exhausted === n };
}

// ---------------------------------------------------------------- replay

export interface ReplayOptions extends Partial<FuzzConfig> {
  seed: number;
  path: string;
  outDir?: string;
}

export interface ReplayResult {
  trace: MixedTrace;
  finding: FuzzFinding | null;
  permitted: Record<string, number>;
}

/** `nvx fuzz --replay <seed>:<path>`: the generated trace again, checked, and its finding minimized (and written). */
export function replayFuzz(o: ReplayOptions): ReplayResult {
  const cfg = resolveConfig({ ...o, shrinkMs: 0 });
  const engine = new FuzzEngine(cfg);
  const r = engine.replay(o.seed, o.path);
  if (r.finding && o.outDir) {
    const file = path.join(o.outDir, `${r.finding.name}.nvx`);
    if (!fs.existsSync(file)) writeFileAtomic(file, r.finding.text);
    r.finding.file = file;
  }
  return r;
}

/** '<seed>:<path>' -> its parts. */
export function parseReplay(s: string): { seed: number; path: string } {
  const m = /^(-?\d+):(\d+(?::\d+)*)$/.exec(s.trim());
  if (!m && /^-?\d+:m\d+$/.test(s.trim())) throw new Error(`--replay: ${s.trim()} is a mutation of a corpus trace (--corpus), not a generated trace: check its finding file with nvx diff`);
  if (!m) throw new Error(`--replay wants <seed>:<path> as a finding's header gives it, e.g. 123456:42:0:1 (got '${s}')`);
  return { seed: Number(m[1]), path: m[2] };
}
