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
import type { Command } from 'commander';
import { CONFORMANCE_PROFILE, CellStatus, checkConformance, checkCorpus, conformanceCounts, conformanceOk, corpusCosts, corpusProfiles } from '@nvx/check';
import { estimateCycles } from '@nvx/emulator';
import { CliContext, EXIT, UsageError } from '../output';
import { jsonText } from '../report';
import { checkFuzzLines, checkFuzzRow, runCheckFuzz } from './fuzz';

const COLS: [CellStatus, string][] = [
  ['pass', 'pass'],
  ['expected-divergence', 'expected div.'],
  ['new-divergence', 'NEW div.'],
  ['missing-divergence', 'missing div.'],
  ['expect-failed', 'expect failed'],
];

export function registerCheckCommands(program: Command, ctx: CliContext): void {
  program
    .command('check')
    .description('the main job: replay every corpus trace under every profile and path, check expectations and verdicts, then fuzz every area for a short while (exit 1 on anything new)')
    .option('-d, --dir <dir...>', 'trace directories', ['traces/scenarios', 'traces/regressions'])
    .option('-p, --profile <profile...>', 'profiles to check (default: reference, optimized and every optimized path alone)')
    .option('-v, --verbose', 'print every trace x profile result')
    .option('--json', 'print one JSON object instead of text')
    .option('--fuzz-time <duration>', 'then fuzz every area under the same profiles for this long (e.g. 30s, 5m)', '30s')
    .option('--no-fuzz', 'replay the corpus only')
    .option('--fuzz-seed <n>', 'the fuzz campaign seed (default: drawn and printed)')
    .option('--fuzz-out <dir>', 'where the fuzz writes its findings', 'nvx-findings')
    .option('--conformance-dir <dir>', `KVM's tests as traces, checked under the ${CONFORMANCE_PROFILE} profile (skipped when the directory does not exist)`, 'traces/conformance')
    .option('--no-conformance', 'leave out the conformance row')
    .action(async (o: { dir: string[]; profile?: string[]; verbose?: boolean; json?: boolean; fuzz: boolean; fuzzTime: string; fuzzSeed?: string; fuzzOut: string; conformance: boolean; conformanceDir: string }) => {
      const dirs = o.dir.filter((d) => fs.existsSync(d));
      if (!dirs.length) throw new UsageError(`none of ${o.dir.join(', ')} exists (run nvx check from the project root, or give --dir)`);
      const profiles = o.profile ?? corpusProfiles();
      const report = await checkCorpus(dirs, profiles, (c) => {
        if (o.json) return;
        const bad = c.status !== 'pass' && c.status !== 'expected-divergence';
        if (bad || o.verbose) ctx.line(`${bad ? ctx.c.red(c.status) : ctx.c.dim(c.status)}  ${c.file}  [${c.profile}]${c.detail ? `\n    ${c.detail}` : ''}`);
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
      const fuzz = o.fuzz ? await runCheckFuzz(ctx, { dirs, profiles, time: o.fuzzTime, seed: o.fuzzSeed, out: o.fuzzOut, quiet: !!o.json }) : null;
      const ok = report.ok && !fuzz?.newFindings && (conformance?.ok ?? true);
      if (o.json) {
        ctx.line(jsonText({ ...report, ok, costs: Object.fromEntries(costs), fuzz, conformance: conformance && { ...conformance, counts: conformanceCounts(conformance) } }));
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
          for (const l of checkFuzzLines(ctx, fuzz)) ctx.line(l);
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
