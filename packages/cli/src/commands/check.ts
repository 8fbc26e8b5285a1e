/**
 * `nvx check`: the main job. Replays the trace corpus (traces/scenarios and
 * traces/regressions) under every built-in profile and every optimized path
 * alone, checks each trace's expectations and declared verdict, and prints
 * a table of profiles (pass, expected divergence, new divergence).
 */
import * as fs from 'fs';
import type { Command } from 'commander';
import { CellStatus, checkCorpus, corpusCosts, corpusProfiles } from '@nvx/check';
import { estimateCycles } from '@nvx/emulator';
import { CliContext, EXIT, UsageError } from '../output';
import { jsonText } from '../report';

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
    .description('the main job: replay every corpus trace under every profile and path, check expectations and verdicts (exit 1 on anything new)')
    .option('-d, --dir <dir...>', 'trace directories', ['traces/scenarios', 'traces/regressions'])
    .option('-p, --profile <profile...>', 'profiles to check (default: reference, optimized and every optimized path alone)')
    .option('-v, --verbose', 'print every trace x profile result')
    .option('--json', 'print one JSON object instead of text')
    .action(async (o: { dir: string[]; profile?: string[]; verbose?: boolean; json?: boolean }) => {
      const dirs = o.dir.filter((d) => fs.existsSync(d));
      if (!dirs.length) throw new UsageError(`none of ${o.dir.join(', ')} exists (run nvx check from the project root, or give --dir)`);
      const profiles = o.profile ?? corpusProfiles();
      const report = await checkCorpus(dirs, profiles, (c) => {
        if (o.json) return;
        const bad = c.status !== 'pass' && c.status !== 'expected-divergence';
        if (bad || o.verbose) ctx.line(`${bad ? ctx.c.red(c.status) : ctx.c.dim(c.status)}  ${c.file}  [${c.profile}]${c.detail ? `\n    ${c.detail}` : ''}`);
      });
      const costs = corpusCosts(report);
      if (o.json) {
        ctx.line(jsonText({ ...report, costs: Object.fromEntries(costs) }));
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
        ctx.line(report.ok ? `\n${ctx.c.green('ok')}: every trace gives its declared verdict under every profile` : `\n${ctx.c.red('FAILED')}: see the lines above`);
      }
      if (!report.ok) ctx.exitCode = EXIT.CHECK_FAILED;
    });
}
