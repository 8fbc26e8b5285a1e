/**
 * `nvx diff <trace>`: lockstep differential replay of two profiles; the
 * first divergence, explained, with its contract status.
 */
import type { Command } from 'commander';
import { declaredVerdict, diffStream } from '@nvx/check';
import { openTrace, OpenTraceReader, TraceEvent } from '@nvx/trace';
import { CliContext, EXIT, UsageError } from '../output';
import { addPathModuleOption, loadPathModules } from '../plugins';
import { PROFILE_HELP, profileArg } from '../profiles';
import { costsSideBySide, divergenceLines, jsonText } from '../report';

export function registerDiffCommands(program: Command, ctx: CliContext): void {
  addPathModuleOption(program.command('diff'))
    .description('replay a trace under two profiles side by side and report the first divergence (exit 1 on a bug divergence)')
    .argument('<trace>', 'a trace file (.nvx text or .nvxt binary)')
    .option('-b, --base <profile>', `the profile to compare against; ${PROFILE_HELP}`, 'reference')
    .option('-p, --profile <profile>', `the profile under test; ${PROFILE_HELP}`, 'optimized')
    .option('--strict', 'exit 1 on a permitted divergence too (one after a broken contract)')
    .option('--checkpoint <k>', 'compare whole architectural states every K events', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`--checkpoint must be a positive integer, got '${v}'`);
      return n;
    }, 1000)
    .option('--json', 'print one JSON object instead of text')
    .action(async (file: string, o: { base: string; profile: string; strict?: boolean; checkpoint: number; json?: boolean; pathModule?: string[] }) => {
      await loadPathModules(o, (m) => ctx.warn(m));
      const base = profileArg(o.base, '--base');
      const other = profileArg(o.profile, '--profile');
      const first = await openTrace(file);
      const readers: OpenTraceReader[] = [first];
      let opened = 0;
      const open = (): AsyncIterable<TraceEvent[]> => {
        if (opened++ === 0) return first.chunks();
        return (async function* () {
          const r = await openTrace(file);
          readers.push(r);
          yield* r.chunks();
        })();
      };
      let res;
      try {
        res = await diffStream(first.header, open, base, other, { checkpointEvery: o.checkpoint });
      } finally {
        for (const r of readers) await r.close();
      }
      for (const w of first.warnings) ctx.warn(`${file}: ${w.message}`);
      const d = res.divergence;
      if (o.json) ctx.line(jsonText(res));
      else {
        if (!d) ctx.line(`${ctx.c.green('same')}: ${res.other} matches ${res.base} on all ${res.events} events of ${file}`);
        else for (const l of divergenceLines(d, res, ctx.c)) ctx.line(l);
        const others = res.violations.filter((v) => v !== d?.contract);
        if (others.length) {
          ctx.line(`contracts broken in this trace (${res.violations.length}):`);
          for (const v of res.violations.slice(0, 10)) ctx.line(`  event ${v.index}: ${v.contract}: ${v.message}`);
        }
        ctx.line('costs:');
        for (const l of costsSideBySide(res.costs.base, res.costs.other, res.base, res.other)) ctx.line(l);
      }
      // A trace may declare that this profile diverges: a kept finding (the real code is wrong) is expected.
      let declared: ReturnType<typeof declaredVerdict> | undefined;
      try {
        declared = declaredVerdict(first.header);
      } catch {
        declared = undefined;
      }
      const expectedFinding = !!d && declared?.verdict === 'finding' && (declared.diverges.includes(o.profile) || declared.diverges.includes(res.other));
      if (expectedFinding && !o.json) ctx.line(ctx.c.yellow(`expected: this trace is a kept finding for ${res.other} (meta verdict "finding"); the divergence shows the real code's flaw`));
      if (d && ((d.verdict === 'bug' && !expectedFinding) || o.strict)) ctx.exitCode = EXIT.CHECK_FAILED;
    });
}
