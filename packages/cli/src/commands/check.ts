/**
 * `nvx check`: the main job. Replays the trace corpus (traces/scenarios and
 * traces/regressions) under every built-in profile and every optimized path
 * alone, checks each trace's expectations and declared verdict, then fuzzes
 * every area under the same profiles for a short time (30 s; --fuzz-time,
 * --no-fuzz), and prints a table of profiles (pass, expected divergence, new
 * divergence) with the fuzz's row. Then the conformance row: KVM's own
 * tests translated as traces (traces/conformance), whose expectations are
 * checked under the `kvm` profile, each also run in lockstep against
 * reference under `optimized` and `kvm` with its declared verdict.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Command } from 'commander';
import { CONFORMANCE_PROFILE, CellStatus, CorpusCell, checkConformance, checkCorpus, conformanceCounts, conformanceOk, corpusCosts, corpusProfiles } from '@nvx/check';
import { estimateCycles } from '@nvx/emulator';
import { CliContext, EXIT, UsageError } from '../output';
import { JUnitCase, JUnitSuite, checkJUnitPath, writeJUnit } from '../junit';
import { addPathModuleOption, loadPathModules } from '../plugins';
import { profileArg } from '../profiles';
import { jsonText } from '../report';
import { EXIT_RULE_HELP } from '../verdict';
import { checkFuzzLines, checkFuzzRow, fuzzJUnitSuite, parseProfiles, runCheckFuzz } from './fuzz';

const CORPUS = ['traces/scenarios', 'traces/regressions'];

/**
 * The corpus: traces/scenarios and traces/regressions of the working
 * directory when it has them (a clone of nvx), else the ones shipped beside
 * this package (nvx installed globally, run from the user's own repository).
 */
export function defaultCorpusDirs(cwd = process.cwd()): string[] {
  if (CORPUS.some((d) => fs.existsSync(path.resolve(cwd, d)))) return CORPUS;
  const shipped = path.resolve(__dirname, '..', '..', '..', '..');
  return CORPUS.map((d) => path.join(shipped, d));
}

/** A word as a POSIX shell reads it back. */
export const shellWord = (w: string) => (/^[A-Za-z0-9_./:=,+@%-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

/** The command that shows one cell's divergence: its trace, its profile and the plugins it needs. */
export function diffReplayLine(file: string, profile: string, pathModules: readonly string[], cmd: 'diff' | 'run' = 'diff'): string {
  return [`nvx ${cmd}`, shellWord(file), '--profile', shellWord(profile), ...pathModules.flatMap((m) => ['--path-module', shellWord(m)])].join(' ');
}

/** The corpus cells as JUnit: one suite, one case per trace x profile; an expected divergence passes and says so. */
export function corpusJUnitSuite(cells: readonly CorpusCell[], times: ReadonlyMap<CorpusCell, number>, pathModules: readonly string[] = []): JUnitSuite {
  const cases: JUnitCase[] = cells.map((c) => {
    const bad = c.status !== 'pass' && c.status !== 'expected-divergence';
    return {
      classname: c.file,
      name: c.profile,
      time: (times.get(c) ?? 0) / 1000,
      failure: bad ? { message: `${c.status}: ${c.detail ?? ''}`.slice(0, 300), type: c.status, text: `${c.file} [${c.profile}]: ${c.status}\n${c.detail ?? ''}\nshow it: ${diffReplayLine(c.file, c.profile, pathModules, c.status === 'expect-failed' ? 'run' : 'diff')}` } : undefined,
      out: c.status === 'expected-divergence' ? `expected divergence (declared by the trace): ${c.detail ?? ''}` : undefined,
    };
  });
  return { name: 'nvx check: corpus', cases };
}

const COLS: [CellStatus, string][] = [
  ['pass', 'pass'],
  ['expected-divergence', 'expected div.'],
  ['new-divergence', 'NEW div.'],
  ['missing-divergence', 'missing div.'],
  ['expect-failed', 'expect failed'],
];

export function registerCheckCommands(program: Command, ctx: CliContext): void {
  addPathModuleOption(program.command('check'))
    .description('the main job: replay every corpus trace under every profile and path, check expectations and verdicts, then fuzz every area for a short while (exit 1 on anything new)')
    .option('-d, --dir <dir...>', "trace directories (default: traces/scenarios and traces/regressions, here or else nvx's own)")
    .option('-p, --profile <profile...>', 'profiles to check (default: reference, optimized and every optimized path alone; with --path-module: reference and the module\'s paths)')
    .option('--profiles <list>', "the same, comma-separated; join the areas of one profile with '+' (as nvx fuzz)")
    .option('--junit <file>', 'also write a JUnit XML report: one testcase per trace x profile, one per fuzz campaign')
    .option('-v, --verbose', 'print every trace x profile result')
    .option('--json', 'print one JSON object instead of text')
    .option('--fuzz-time <duration>', 'then fuzz every area under the same profiles for this long (e.g. 30s, 5m)', '30s')
    .option('--no-fuzz', 'replay the corpus only')
    .option('--fuzz-seed <n>', 'the fuzz campaign seed (default: drawn and printed)')
    .option('--fuzz-out <dir>', 'where the fuzz writes its findings', 'nvx-findings')
    .option('--conformance-dir <dir>', `KVM's tests as traces, checked under the ${CONFORMANCE_PROFILE} profile (skipped when the directory does not exist)`, 'traces/conformance')
    .option('--no-conformance', 'leave out the conformance row')
    .addHelpText('after', `\nA trace's declared divergences (meta verdict "finding" or "permitted:<contract>") count as expected here,\nand only here: nvx diff and bisect exit 1 on a kept finding.\n${EXIT_RULE_HELP}`)
    .action(async (o: { dir?: string[]; profile?: string[]; profiles?: string; junit?: string; verbose?: boolean; json?: boolean; fuzz: boolean; fuzzTime: string; fuzzSeed?: string; fuzzOut: string; pathModule?: string[]; conformance: boolean; conformanceDir: string }) => {
      checkJUnitPath(o.junit);
      const plugins = await loadPathModules(o, (m) => ctx.warn(m));
      const given = o.dir ?? defaultCorpusDirs();
      const dirs = given.filter((d) => fs.existsSync(d));
      if (!dirs.length) throw new UsageError(`none of ${given.join(', ')} exists (give --dir)`);
      if (o.profile && o.profiles) throw new UsageError('give --profile or --profiles, not both');
      const listed = o.profiles ? ['reference', ...parseProfiles(o.profiles, { allowReference: true }).filter((p) => p !== 'reference')] : o.profile;
      const profiles = listed ?? (plugins.length ? ['reference', ...plugins] : corpusProfiles());
      for (const p of profiles) profileArg(p, '--profile'); // an unknown profile is a usage error before any replay
      const times = new Map<CorpusCell, number>();
      let t0 = Date.now();
      const report = await checkCorpus(dirs, profiles, (c) => {
        const now = Date.now();
        times.set(c, now - t0);
        t0 = now;
        if (o.json) return;
        const bad = c.status !== 'pass' && c.status !== 'expected-divergence';
        const show = bad ? `\n    show it: ${diffReplayLine(c.file, c.profile, o.pathModule ?? [], c.status === 'expect-failed' ? 'run' : 'diff')}` : '';
        if (bad || o.verbose) ctx.line(`${bad ? ctx.c.red(c.status) : ctx.c.dim(c.status)}  ${c.file}  [${c.profile}]${c.detail ? `\n    ${c.detail}` : ''}${show}`);
      });
      const costs = corpusCosts(report);
      const conformance =
        o.conformance && fs.existsSync(o.conformanceDir)
          ? await checkConformance(o.conformanceDir, (r) => {
              if (o.json) return;
              const bad = !conformanceOk(r);
              if (!bad && !o.verbose) return;
              const lock = r.lockstep.filter((c) => c.status !== 'pass' && c.status !== 'expected-divergence');
              const details = [...(r.detail ? [r.detail] : []), ...lock.map((c) => `[${c.profile}] ${c.status}: ${c.detail ?? ''}`)];
              ctx.line(`${bad ? ctx.c.red(r.status) : ctx.c.dim(r.status)}  ${r.file}  [conformance, ${CONFORMANCE_PROFILE}]${details.map((d) => `\n    ${d}`).join('')}`);
            })
          : null;
      const fuzz = o.fuzz ? await runCheckFuzz(ctx, { dirs, profiles, time: o.fuzzTime, seed: o.fuzzSeed, out: o.fuzzOut, quiet: !!o.json, pathModules: o.pathModule ?? [] }) : null;
      const ok = report.ok && !fuzz?.newFindings && (conformance?.ok ?? true);
      if (o.junit) writeJUnit(o.junit, [corpusJUnitSuite(report.cells, times, o.pathModule ?? []), ...(conformance ? [conformanceJUnitSuite(conformance)] : []), ...(fuzz ? [fuzzJUnitSuite(fuzz, o.pathModule ?? [])] : [])]);
      if (o.json) {
        ctx.line(jsonText({ ...report, ok, exit: ok ? EXIT.OK : EXIT.CHECK_FAILED, costs: Object.fromEntries(costs), fuzz, conformance: conformance && { ...conformance, counts: conformanceCounts(conformance) } }));
      } else {
        ctx.line(`\n${report.files.length} traces x ${profiles.length} profiles (${dirs.join(', ')})\n`);
        const w = Math.max(...profiles.map((p) => p.length), 8);
        ctx.line(`${'profile'.padEnd(w)}  ${COLS.map(([, h]) => h.padStart(13)).join(' ')}  ${'est. cycles'.padStart(12)}`);
        for (const p of profiles) {
          const cells = report.cells.filter((c) => c.profile === p);
          const counts = COLS.map(([s]) => {
            const n = cells.filter((c) => c.status === s).length;
            const t = String(n).padStart(13);
            return n && (s === 'new-divergence' || s === 'expect-failed' || s === 'missing-divergence') ? ctx.c.red(t) : t;
          });
          ctx.line(`${p.padEnd(w)}  ${counts.join(' ')}  ${String(estimateCycles(costs.get(p)!).total).padStart(12)}`);
        }
        if (conformance) ctx.line(conformanceRow(ctx, conformance, w));
        if (fuzz) {
          ctx.line(checkFuzzRow(ctx, fuzz, w));
          ctx.line('');
          for (const l of checkFuzzLines(ctx, fuzz, o.pathModule ?? [])) ctx.line(l);
        }
        ctx.line(
          ctx.c.dim(
            'est. cycles: summed over the corpus from the cost table (docs/costs.md). Reference paths are idealized (a `fresh` translation costs nothing),\n' +
              'so compare optimized paths with each other; unmanaged-memory traces make the guest-pages paths\' memremaps dominate.',
          ),
        );
        ctx.line(ok ? `\n${ctx.c.green('ok')}: every trace gives its declared verdict under every profile${conformance ? `, every conformance trace passes under ${CONFORMANCE_PROFILE} or is a declared known failure` : ''}${fuzz ? ', and the fuzz found nothing new' : ''}` : `\n${ctx.c.red('FAILED')}: see the lines above`);
      }
      if (!ok) ctx.exitCode = EXIT.CHECK_FAILED;
    });
}

/**
 * The conformance row, under the corpus table: KVM's tests as traces under
 * the kvm profile. Known failures are traces that say why the model does not
 * yet do what KVM does; a trace that fails without saying so, or declares a
 * failure that no longer happens, or gives another lockstep verdict than it
 * declares, makes the check fail.
 */
export function conformanceRow(ctx: CliContext, r: Awaited<ReturnType<typeof checkConformance>>, w: number): string {
  const n = conformanceCounts(r);
  const red = (k: number, s: string) => (k ? ctx.c.red(s) : s);
  return (
    `${'conformance'.padEnd(w)}  ${n.traces} KVM tests under ${CONFORMANCE_PROFILE} (${r.dir}): ${n.pass} pass, ${n['known-failure']} known failures, ` +
    `${red(n.failed, `${n.failed} new failures`)}, ${red(n.fixed, `${n.fixed} known failures now passing`)}, ${red(n.lockstepBad, `${n.lockstepBad} not as declared in lockstep`)}`
  );
}

/** The conformance row as JUnit: one case per KVM test translated as a trace, under the kvm profile. */
export function conformanceJUnitSuite(r: Awaited<ReturnType<typeof checkConformance>>): JUnitSuite {
  const cases: JUnitCase[] = r.results.map((t) => {
    const lock = t.lockstep.filter((c) => c.status !== 'pass' && c.status !== 'expected-divergence');
    const bad = !conformanceOk(t);
    const text = [...(t.detail ? [t.detail] : []), ...lock.map((c) => `[${c.profile}] ${c.status}: ${c.detail ?? ''}`)].join('\n');
    return {
      classname: t.file,
      name: CONFORMANCE_PROFILE,
      time: 0,
      failure: bad ? { message: `${t.status}: ${text}`.slice(0, 300), type: t.status, text } : undefined,
      out: t.status === 'known-failure' ? `known failure (declared by the trace): ${t.detail ?? ''}` : undefined,
    };
  });
  return { name: 'nvx check: conformance', cases };
}
