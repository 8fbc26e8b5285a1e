/**
 * `nvx fuzz`: mixed traces from every selected area's generator, checked
 * under every selected profile against `reference` in lockstep; findings
 * re-checked, minimized and written to --out, named by content hash.
 * `nvx fuzz --replay <seed>:<path>` reproduces one.
 */
import * as fs from 'fs';
import * as os from 'os';
import type { Command } from 'commander';
import { SingleBar } from 'cli-progress';
import {
  FuzzFinding,
  FuzzProgress,
  FuzzSummary,
  CorpusError,
  MergeError,
  loadCorpus,
  mergeCorpora,
  writeFileAtomic,
  StateCompare,
  coverageGroupsFor,
  coverageLines,
  defaultFuzzProfiles,
  expectedDivergingProfiles,
  parseDuration,
  parseReplay,
  mergeFuzzOutputs,
  parseShard,
  replayFuzz,
  runFuzz,
} from '@nvx/check';
import { AREAS, AREA_IDS, AreaId, ProfileError, parseProfile } from '@nvx/emulator';
import { CliContext, EXIT, UsageError } from '../output';
import { addPathModuleOption, loadPathModules } from '../plugins';
import { JUnitSuite, checkJUnitPath, writeJUnit } from '../junit';
import { jsonText } from '../report';

export interface FuzzCliOptions {
  areas?: string;
  profiles?: string;
  time?: string;
  runs?: string;
  seed?: string;
  workers?: string;
  shard?: string;
  out: string;
  allowViolations?: boolean;
  migrate?: boolean;
  replay?: string;
  pathModule?: string[];
  stateAt: string;
  minimizeTime: string;
  shrinkTime: string;
  maxFindings?: string;
  maxFindingsPerProfile?: string;
  blockSize: string;
  known: string[];
  corpus?: string;
  mutate: string;
  json?: boolean;
  quiet?: boolean;
  junit?: string;
}

/** --corpus and --mutate: the corpus loaded (bad files are usage errors naming the file) and the share of mutation runs. */
function corpusOptions(o: Pick<FuzzCliOptions, 'corpus' | 'mutate'>): { corpus?: ReturnType<typeof loadCorpus>; mutateShare?: number } {
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(o.mutate.trim());
  const share = m ? Number(m[1]) / (m[2] ? 100 : 1) : NaN;
  if (!(share >= 0 && share <= 1)) throw new UsageError(`--mutate wants a share from 0 to 1 or a percentage (got '${o.mutate}')`);
  if (!o.corpus) return {};
  try {
    return { corpus: loadCorpus(o.corpus), mutateShare: share };
  } catch (e) {
    if (e instanceof CorpusError) throw new UsageError(e.message);
    throw e;
  }
}

/** A profile as the command line writes it (areas joined with '+'). */
export const cliProfile = (name: string) => name.replace(/,/g, '+');

function posInt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${flag} wants a positive integer (got '${v}')`);
  return n;
}

function duration(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  try {
    return parseDuration(v);
  } catch (e) {
    throw new UsageError(`${flag}: ${(e as Error).message}`);
  }
}

export function parseAreas(v: string | undefined): AreaId[] {
  if (!v) return [...AREA_IDS];
  const out: AreaId[] = [];
  for (const a of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!(AREA_IDS as readonly string[]).includes(a)) throw new UsageError(`--areas: unknown area '${a}' (areas: ${AREA_IDS.join(', ')})`);
    if (!out.includes(a as AreaId)) out.push(a as AreaId);
  }
  return out;
}

/** `--profiles a,b` (a profile of several areas joins them with '+') -> canonical profile names. */
export function parseProfiles(v: string, o: { allowReference?: boolean } = {}): string[] {
  const out: string[] = [];
  for (const part of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    try {
      const name = parseProfile(part.replace(/\+/g, ',')).name;
      if (name === 'reference' && !o.allowReference) throw new UsageError("--profiles: 'reference' is what every profile is checked against");
      if (!out.includes(name)) out.push(name);
    } catch (e) {
      if (e instanceof ProfileError) throw new UsageError(`--profiles: ${e.message}`);
      throw e;
    }
  }
  if (!out.length) throw new UsageError('--profiles: no profile given');
  return out;
}

const fmtRate = (n: number) => (n >= 10_000 ? `${Math.round(n / 1000)}k` : String(Math.round(n)));

/** A progress bar on a terminal, nothing otherwise. */
export function fuzzProgressBar(ctx: CliContext, budget: { runs?: number; timeMs?: number }): { update(p: FuzzProgress): void; stop(): void } {
  const err = ctx.io.stderr;
  if (err.isTTY !== true) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar({
    stream: err as unknown as NodeJS.WritableStream,
    format: 'fuzz [{bar}] {percentage}% | {runs} runs | {eps} events/s | {findings} findings | {left}',
    barsize: 24,
    hideCursor: false,
    clearOnComplete: true,
    fps: 5,
  });
  const total = budget.runs ?? Math.max(1, Math.round((budget.timeMs ?? 60_000) / 1000));
  let started = false;
  return {
    update(p) {
      const value = budget.runs !== undefined ? Math.min(p.runs, total) : Math.min(total, Math.floor(p.elapsedMs / 1000));
      const payload = {
        runs: p.runs,
        eps: fmtRate(p.events / Math.max(p.elapsedMs / 1000, 0.001)),
        findings: p.findings,
        left: budget.runs !== undefined ? `${Math.max(0, total - p.runs)} runs left` : `${Math.max(0, total - Math.floor(p.elapsedMs / 1000))} s left`,
      };
      if (!started) {
        bar.start(total, value, payload);
        started = true;
      } else bar.update(value, payload);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

function findingLine(ctx: CliContext, f: FuzzFinding, o: ReplayContext): string {
  const tag = f.classification === 'new' ? ctx.c.red('NEW finding') : ctx.c.yellow('expected finding');
  return `${tag} ${f.name} [${cliProfile(f.profile)}] ${f.kind.verdict} on ${f.kind.event}: ${f.generatedEvents} -> ${f.minimizedEvents} events${f.file ? ` ${f.file}` : ''}\n  ${f.summary}\n  replay: ${fuzzReplayLine(f, o.pathModules, o)}`;
}

/** What a replay line must repeat of the campaign's options besides the finding's own seed, path and profile. */
export interface ReplayContext {
  pathModules: readonly string[];
  /** the areas, when not all of them */
  areas?: readonly string[];
  allowViolations?: boolean;
  /** when not the default 'entries' */
  stateAt?: string;
}

export function summaryLines(ctx: CliContext, s: FuzzSummary): string[] {
  const out: string[] = [];
  const secs = (s.ms / 1000).toFixed(1);
  const permitted = Object.entries(s.permitted);
  const expected = s.findings.length - s.newFindings;
  out.push(
    `fuzz: ${s.runs} runs, ${s.events} events in ${secs} s (${s.tracesPerSec} traces/s, ${fmtRate(s.eventsPerSec)} events/s, ${s.workers} worker${s.workers > 1 ? 's' : ''}), ` +
      `${s.profiles.length} profile${s.profiles.length > 1 ? 's' : ''}; ` +
      `${s.newFindings ? ctx.c.red(`${s.newFindings} new finding${s.newFindings > 1 ? 's' : ''}`) : '0 new findings'}` +
      `${expected ? `, ${expected} expected` : ''}${s.duplicates ? `, ${s.duplicates} found again` : ''}` +
      `${permitted.length ? `; permitted divergences: ${permitted.map(([c, n]) => `${n} by ${c}`).join(', ')}` : ''}` +
      `; seed ${s.seed}${s.shard.count > 1 ? `, shard ${s.shard.index}/${s.shard.count}` : ''}` +
      (s.stopped === 'saturated' ? ' (stopped: every profile has its --max-findings-per-profile findings)' : s.stopped === 'signal' ? ' (interrupted)' : ''),
  );
  return out;
}

export function registerFuzzCommands(program: Command, ctx: CliContext): void {
  const fuzz = program.command('fuzz');
  fuzz
    .command('merge')
    .description('merge the outputs of several campaigns (the shards of one, or one after another): one finding per signature with the smallest trace and the summed count, coverage and permitted divergences summed')
    .argument('[dirs...]', 'output directories of nvx fuzz (--out)')
    .option('-o, --out <dir>', 'write the merged findings and summary.json here')
    .option('--corpora <dirs...>', 'also merge these coverage corpora (nvx fuzz --corpus): the union by content hash')
    .option('--corpus-out <dir>', 'where the merged corpus goes (default: <out>/corpus)')
    .option('--json', 'print the merged summary as one JSON object')
    .action((dirs: string[], o: { out?: string; json?: boolean; corpora?: string[]; corpusOut?: string }) => {
      let r;
      let corpus;
      try {
        if (o.corpora) {
          const out = o.corpusOut ?? (o.out ? `${o.out}/corpus` : undefined);
          if (!out) throw new UsageError('--corpora: say where the merged corpus goes (--corpus-out, or --out)');
          corpus = mergeCorpora(o.corpora, out, writeFileAtomic);
        }
        if (!dirs.length && !corpus) throw new UsageError('nothing to merge: give the output directories of the campaigns, or --corpora');
        r = dirs.length ? mergeFuzzOutputs(dirs, o.out) : undefined;
      } catch (e) {
        if (e instanceof MergeError || e instanceof CorpusError) throw new UsageError(e.message);
        throw e;
      }
      const corpusLine = corpus && `merged corpus ${corpus.out}: ${corpus.traces} traces (${corpus.added} added from ${corpus.inputs.length} corpora)`;
      if (o.json) {
        ctx.line(jsonText(r ? { ...r, corpus } : { corpus }));
        return;
      }
      if (!r) {
        ctx.line(corpusLine!);
        return;
      }
      ctx.line(`merged ${dirs.length} director${dirs.length > 1 ? 'ies' : 'y'} (${r.summaries} summar${r.summaries === 1 ? 'y' : 'ies'}): ${r.runs} runs, ${r.events} events, ${(r.ms / 1000).toFixed(1)} s of fuzzing; ${r.findings.length} finding${r.findings.length === 1 ? '' : 's'} (${r.newFindings} new)`);
      for (const f of r.findings) ctx.line(`  ${f.classification === 'expected' ? 'expected' : ctx.c.red('NEW')} ${f.name} [${cliProfile(f.profile)}] x${f.count}, ${f.events} events, found in ${f.foundIn.length}: ${f.signature}`);
      for (const s of r.skipped) ctx.warn(`skipped ${s.file}: ${s.why}`);
      const perm = Object.entries(r.permitted);
      if (perm.length) ctx.line(`permitted divergences: ${perm.map(([c, n]) => `${n} by ${c}`).join(', ')}`);
      ctx.line('coverage of the modelled rules (reference replay):');
      for (const l of coverageLines(r.coverage)) ctx.line(l);
      ctx.line(`sequence coverage: ${r.sequence.pairs} ordered pairs of rules on one vCPU (${r.sequence.hits} hits)`);
      if (o.out) ctx.line(`merged findings and summary.json in ${o.out}/`);
      if (corpusLine) ctx.line(corpusLine);
    });
  addPathModuleOption(fuzz)
    .description('generate traces that mix every area (multi-vCPU, host events among L1 and L2 events), check every profile against reference, minimize and keep what diverges (exit 1 on a new finding)')
    .option('-a, --areas <list>', `areas to generate for, comma-separated (default: all: ${AREA_IDS.join(',')})`)
    .option('-p, --profiles <list>', "profiles to check against reference, comma-separated; join the areas of one profile with '+' (default: every optimized path alone, plugin paths included, then optimized)")
    .option('-t, --time <duration>', 'wall-clock budget, e.g. 30s, 10m, 1h (default 60s unless --runs is given)')
    .option('-n, --runs <n>', 'run budget: generated traces in total (over all shards)')
    .option('-s, --seed <n>', 'campaign seed (default: drawn and printed)')
    .option('-w, --workers <n>', `worker threads (default: the number of cores, here ${os.availableParallelism()})`)
    .option('--shard <i/n>', 'run shard i of n (1-based) of the seed space: n machines with the same --seed and --runs together run exactly one campaign')
    .option('-o, --out <dir>', 'directory for findings (minimized traces named by content hash) and the summary', 'nvx-findings')
    .option('--allow-violations', 'also generate traces that break a contract; their divergences are classified (permitted), not reported as bugs')
    .option('--migrate', 'insert vCPU migrations (host.migrate: KVM_GET_NESTED_STATE, a fresh vCPU, KVM_SET_NESTED_STATE) at random points of every generated trace')
    .option('--replay <seed:path>', "reproduce one finding from its header's replay seed and path (with the finding's --profiles and --areas)")
    .option('--state-at <when>', "compare whole architectural states after every nested 'entries' and exit, only at the 'end', or after 'every' event", 'entries')
    .option('--minimize-time <duration>', 'time for minimizing each finding', '20s')
    .option('--shrink-time <duration>', "time for fast-check's own shrinking of a finding before minimizing", '0s')
    .option('--max-findings <n>', 'stop after this many distinct findings')
    .option('--max-findings-per-profile <n>', 'stop checking a profile after this many distinct findings of it (default: never; with it, which runs are checked depends on the workers)')
    .option('--block-size <n>', 'runs per block of the seed space (the unit workers and shards take); campaigns compare only with the same block size', '100')
    .option('--known <dir...>', "trace directories whose 'finding' traces declare the paths known to diverge", ['traces/scenarios', 'traces/regressions'])
    .option('--corpus <dir>', 'coverage corpus: traces reaching new rule or rule-pair coverage are kept here (one file each, named by content hash); its traces are mutated in a share of the runs')
    .option('--mutate <share>', 'with --corpus, the share of runs that mutate corpus traces (0 to 1, or a percentage)', '25%')
    .option('-q, --quiet', 'no progress bar, no finding lines: the summary only')
    .option('--json', 'print the summary as one JSON object')
    .option('--junit <file>', 'also write a JUnit XML report: one testcase for the campaign, failing with its new findings')
    .addHelpText('after', '\nExit codes: 0 no new finding (expected findings and permitted divergences do not count), 1 a new finding,\n2 bad usage or bad input, 3 internal error.')
    .action(async (o: FuzzCliOptions) => {
      checkJUnitPath(o.junit);
      const before = new Set(AREA_IDS.flatMap((a) => [...AREAS[a].paths.keys()].map((p) => `${a}=${p}`)));
      await loadPathModules(o, (m) => ctx.warn(m));
      const plugins = AREA_IDS.flatMap((a) => [...AREAS[a].paths.keys()].map((p) => `${a}=${p}`)).filter((s) => !before.has(s));
      const areas = parseAreas(o.areas);
      if (!['entries', 'end', 'every'].includes(o.stateAt)) throw new UsageError(`--state-at is entries, end or every (got '${o.stateAt}')`);
      const expected = await expectedDivergingProfiles(o.known.filter((d) => fs.existsSync(d)));
      const profiles = o.profiles ? parseProfiles(o.profiles) : defaultFuzzProfiles(areas, expected, plugins);
      const common = {
        areas,
        profiles,
        expected,
        allowViolations: !!o.allowViolations,
        migrate: !!o.migrate,
        stateAt: o.stateAt as StateCompare,
        minimizeMs: duration(o.minimizeTime, '--minimize-time'),
        maxFindingsPerProfile: posInt(o.maxFindingsPerProfile, '--max-findings-per-profile'),
        blockSize: posInt(o.blockSize, '--block-size'),
        shrinkMs: duration(o.shrinkTime, '--shrink-time'),
        // as given: worker threads share this process's working directory
        pathModules: o.pathModule ?? [],
        ...corpusOptions(o),
      };

      if (o.replay) {
        let rp: { seed: number; path: string };
        try {
          rp = parseReplay(o.replay);
        } catch (e) {
          throw new UsageError((e as Error).message);
        }
        const r = replayFuzz({ ...common, seed: rp.seed, path: rp.path, outDir: o.out });
        const f = r.finding;
        if (o.json) ctx.line(jsonText({ replay: o.replay, events: r.trace.events.length, finding: f, permitted: r.permitted }));
        else if (!f) {
          ctx.line(`${ctx.c.green('no divergence')}: the trace of ${o.replay} (${r.trace.events.length} events) matches reference under ${profiles.map(cliProfile).join(', ')}`);
          for (const [c, n] of Object.entries(r.permitted)) ctx.line(`  permitted divergence after a broken contract (${c}): ${n}`);
        } else ctx.line(findingLine(ctx, f, { pathModules: o.pathModule ?? [], areas, allowViolations: o.allowViolations, stateAt: o.stateAt }));
        if (f?.classification === 'new') ctx.exitCode = EXIT.CHECK_FAILED;
        return;
      }

      const runs = posInt(o.runs, '--runs');
      const timeMs = duration(o.time, '--time');
      const workers = posInt(o.workers, '--workers');
      const maxFindings = posInt(o.maxFindings, '--max-findings');
      let seed: number | undefined;
      if (o.seed !== undefined) {
        seed = Number(o.seed);
        if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0x7fffffff) throw new UsageError(`--seed wants an integer in 0..2147483647 (got '${o.seed}')`);
      }
      let shard;
      try {
        shard = o.shard ? parseShard(o.shard) : undefined;
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      const quiet = !!o.quiet || !!o.json;
      const bar = quiet ? { update: () => undefined, stop: () => undefined } : fuzzProgressBar(ctx, { runs, timeMs: timeMs ?? (runs === undefined ? 60_000 : undefined) });
      const abort = new AbortController();
      let interrupts = 0;
      const onSigint = () => {
        if (++interrupts > 1) process.exit(130);
        ctx.warn('interrupted: stopping (findings written so far are complete); interrupt again to quit at once');
        abort.abort();
      };
      process.on('SIGINT', onSigint);
      process.on('SIGTERM', onSigint);
      let summary: FuzzSummary;
      try {
        summary = await runFuzz({
          ...common,
          seed,
          runs,
          timeMs,
          workers,
          shard,
          maxFindings,
          outDir: o.out,
          signal: abort.signal,
          onProgress: (p) => bar.update(p),
          onFinding: (f, fresh) => {
            if (!fresh || quiet) return;
            bar.stop();
            ctx.line(findingLine(ctx, f, { pathModules: o.pathModule ?? [], areas, allowViolations: o.allowViolations, stateAt: o.stateAt }));
          },
        });
      } finally {
        bar.stop();
        process.removeListener('SIGINT', onSigint);
        process.removeListener('SIGTERM', onSigint);
      }
      if (o.json) ctx.line(jsonText(summary));
      else {
        for (const l of summaryLines(ctx, summary)) ctx.line(l);
        if (!o.quiet) {
          ctx.line('coverage of the modelled rules (reference replay):');
          for (const l of coverageLines(summary.coverage, coverageGroupsFor(areas))) ctx.line(l);
          ctx.line(`sequence coverage: ${summary.sequence.pairs} ordered pairs of rules on one vCPU (${summary.sequence.hits} hits)`);
          const c = summary.corpus;
          if (c) ctx.line(`corpus ${c.dir}: ${c.start} -> ${c.size} traces (${c.added} added); ${c.mutations} mutation runs; new coverage keys (rules and pairs): ${c.newKeysFresh} by fresh traces, ${c.newKeysMutation} by mutations`);
          for (const f of summary.findings) ctx.line(`  ${f.classification === 'new' ? ctx.c.red('NEW') : 'expected'} ${f.name} [${cliProfile(f.profile)}] x${f.count}, ${f.minimizedEvents} events: ${f.signature}`);
          if (summary.findings.length) ctx.line(`findings in ${o.out}/ (nvx diff <file> --profile <profile> shows one; nvx minimize shrinks an imported one)`);
        }
      }
      if (o.junit) writeJUnit(o.junit, [fuzzJUnitSuite(summary, o.pathModule ?? [])]);
      if (summary.newFindings) ctx.exitCode = EXIT.CHECK_FAILED;
    });
}

// ---------------------------------------------------------------- the short fuzz of `nvx check`

export interface CheckFuzzOptions {
  /** the corpus directories (they declare the paths known to diverge) */
  dirs: string[];
  /** the profiles `nvx check` checks (reference left out) */
  profiles: string[];
  time: string;
  seed?: string;
  out: string;
  quiet: boolean;
  /** the --path-module files, loaded again by every worker */
  pathModules: string[];
}

/** `nvx check`'s fuzz: every area, the check's profiles, a short time budget, all cores. */
export async function runCheckFuzz(ctx: CliContext, o: CheckFuzzOptions): Promise<FuzzSummary> {
  const timeMs = duration(o.time, '--fuzz-time')!;
  let seed: number | undefined;
  if (o.seed !== undefined) {
    seed = Number(o.seed);
    if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0x7fffffff) throw new UsageError(`--fuzz-seed wants an integer in 0..2147483647 (got '${o.seed}')`);
  }
  const expected = await expectedDivergingProfiles(o.dirs);
  const profiles = o.profiles.filter((p) => p !== 'reference' && !expected.includes(p));
  const bar = o.quiet ? { update: () => undefined, stop: () => undefined } : fuzzProgressBar(ctx, { timeMs });
  try {
    return await runFuzz({ areas: [...AREA_IDS], profiles: profiles.length ? profiles : undefined, expected, seed, timeMs, outDir: o.out, pathModules: o.pathModules, onProgress: (p) => bar.update(p) });
  } finally {
    bar.stop();
  }
}

/** The fuzz row of `nvx check`'s table: runs without divergence, expected and new findings. */
export function checkFuzzRow(ctx: CliContext, s: FuzzSummary, width: number, colWidth = 13): string {
  const expected = s.findings.length - s.newFindings;
  const cell = (v: string, red = false) => (red ? ctx.c.red(v.padStart(colWidth)) : v.padStart(colWidth));
  const label = `fuzz (${Math.round(s.ms / 1000)} s, ${s.runs} traces)`;
  return `${label.padEnd(width)}  ${[cell(String(Math.max(0, s.runs - s.findings.length - s.duplicates))), cell(String(expected)), cell(String(s.newFindings), s.newFindings > 0), cell('-'), cell('-')].join(' ')}  ${'-'.padStart(12)}`;
}

/** Lines under the table: the fuzz's findings and its coverage. */
export function checkFuzzLines(ctx: CliContext, s: FuzzSummary, pathModules: readonly string[] = []): string[] {
  const out = summaryLines(ctx, s);
  for (const f of s.findings) out.push(`  ${f.classification === 'new' ? ctx.c.red('NEW') : 'expected'} ${f.name} [${cliProfile(f.profile)}] ${f.summary}${f.file ? `\n    ${f.file} (replay: ${fuzzReplayLine(f, pathModules)})` : ''}`);
  const cov = coverageLines(s.coverage);
  out.push(`fuzz coverage of the modelled rules: ${cov.slice(1).map((l) => l.trim().split(/\s+/).slice(0, 3).join(' ')).map((x) => x.replace(/ (\d+\/\d+) ([\d.]+)$/, ' $1 ($2%)')).join(', ')}`);
  return out;
}

/** The command that reproduces a finding of `nvx check`'s fuzz: its seed and path, its profile, the plugins it needs. */
export function fuzzReplayLine(f: Pick<FuzzFinding, 'replay' | 'profile'>, pathModules: readonly string[], o: Omit<ReplayContext, 'pathModules'> = {}): string {
  const areas = o.areas && o.areas.length !== AREA_IDS.length ? ['--areas', o.areas.join(',')] : [];
  return ['nvx fuzz --replay', f.replay, '--profiles', cliProfile(f.profile), ...areas, ...(o.allowViolations ? ['--allow-violations'] : []), ...(o.stateAt && o.stateAt !== 'entries' ? ['--state-at', o.stateAt] : []), ...pathModules.flatMap((m) => ['--path-module', m])].join(' ');
}

/** A fuzz campaign as JUnit: one case, failing with every new finding (its first divergence and replay line). */
export function fuzzJUnitSuite(s: FuzzSummary, pathModules: readonly string[]): JUnitSuite {
  const fresh = s.findings.filter((f) => f.classification === 'new');
  const name = `campaign seed ${s.seed}${s.shard.count > 1 ? ` shard ${s.shard.index}/${s.shard.count}` : ''} (${s.profiles.map(cliProfile).join(', ')})`;
  const text = fresh.map((f) => `${f.name} [${cliProfile(f.profile)}] ${f.summary}${f.file ? `\n  ${f.file}` : ''}\n  replay: ${fuzzReplayLine(f, pathModules)}`).join('\n');
  const expected = s.findings.filter((f) => f.classification !== 'new');
  const out = [
    `${s.runs} runs, ${s.events} events in ${(s.ms / 1000).toFixed(1)} s`,
    ...expected.map((f) => `expected finding ${f.name} [${cliProfile(f.profile)}] ${f.summary}`),
    ...Object.entries(s.permitted).map(([c, n]) => `permitted divergences after ${c} was broken: ${n}`),
  ].join('\n');
  return {
    name: 'nvx fuzz',
    cases: [
      {
        classname: 'fuzz',
        name,
        time: s.ms / 1000,
        failure: fresh.length ? { message: `${fresh.length} new finding${fresh.length > 1 ? 's' : ''}: ${fresh[0].summary}`.slice(0, 300), type: 'new-finding', text } : undefined,
        out,
      },
    ],
  };
}
