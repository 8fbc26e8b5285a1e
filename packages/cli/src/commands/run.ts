/**
 * `nvx run <trace>`: replay under one profile, check the trace's `expect`
 * clauses, print outcomes and the cost summary.
 */
import type { Command } from 'commander';
import { Replayer, stateHash, estimateCycles } from '@nvx/emulator';
import { Outcome, TraceEvent, formatEvent, formatOutcome, openTrace, outcomeMatches } from '@nvx/trace';
import { CliContext, EXIT } from '../output';
import { addPathModuleOption, loadPathModules } from '../plugins';
import { PROFILE_HELP, profileArg } from '../profiles';
import { costLines, jsonText } from '../report';
import { Agreement, agreementFailed, agreementLines, isImportedTrace } from '../importers/agreement';

interface Mismatch {
  index: number;
  event: string;
  expected: string;
  actual: string;
}

const MAX_PRINTED = 20;

export function registerRunCommands(program: Command, ctx: CliContext): void {
  addPathModuleOption(program.command('run'))
    .description('replay a trace under one profile, check its expect clauses, and print outcomes and costs')
    .argument('<trace>', 'a trace file (.nvx text or .nvxt binary)')
    .option('-p, --profile <profile>', PROFILE_HELP, 'reference')
    .option('--outcomes', 'print every event with its outcome (default for traces of at most 200 events)')
    .option('-q, --quiet', 'print only mismatches and the summary')
    .option('--json', 'print one JSON object instead of text')
    .action(async (file: string, o: { profile: string; outcomes?: boolean; quiet?: boolean; json?: boolean; pathModule?: string[] }) => {
      await loadPathModules(o, (m) => ctx.warn(m));
      const profile = profileArg(o.profile, '--profile');
      const r = await openTrace(file);
      const mismatches: Mismatch[] = [];
      let ignored = 0;
      const lines: string[] = [];
      let rep: Replayer | undefined;
      let total = 0;
      // An imported host trace: its expects are what the host recorded, compared by where control went.
      const agree = isImportedTrace(r.header) ? new Agreement(r.header, profile.name) : undefined;
      try {
        rep = Replayer.fromHeader(r.header, profile);
        for await (const chunk of r.chunks()) {
          for (const e of chunk) {
            const out = rep.apply(e);
            const i = total++;
            if (out.k === 'ignored') ignored++;
            if (agree) agree.observe(e, out);
            else if (e.expect && !outcomeMatches(e.expect, out)) mismatches.push({ index: i, event: formatEvent(e), expected: formatOutcome(e.expect), actual: formatOutcome(out) });
            if (!o.quiet && !o.json && (o.outcomes || total <= 200)) lines.push(outcomeLine(ctx, i, e, out));
          }
        }
      } finally {
        await r.close();
      }
      for (const w of r.warnings) ctx.warn(`${file}: ${w.message}`);
      const est = estimateCycles(rep.cost);
      const agreement = agree?.summary();
      if (o.json) {
        ctx.line(jsonText({ file, profile: profile.name, events: total, ignored, mismatches, ...(agreement ? { agreement } : {}), costs: rep.cost, estimatedCycles: est.total, stateHash: stateHash(rep.peek()) }));
      } else {
        if (!o.quiet && (o.outcomes || total <= 200)) for (const l of lines) ctx.line(l);
        for (const m of mismatches.slice(0, MAX_PRINTED)) ctx.line(`${ctx.c.red('expect failed')} at event ${m.index}: ${m.event}\n  expected ${m.expected}\n  actual   ${m.actual}`);
        if (mismatches.length > MAX_PRINTED) ctx.line(`... and ${mismatches.length - MAX_PRINTED} more mismatches`);
        ctx.line(`${file}: ${total} events under ${profile.name}; ${mismatches.length ? ctx.c.red(`${mismatches.length} expect mismatches`) : 'every expect holds'}${ignored ? `; ${ignored} events could not happen in their state (ignored)` : ''}`);
        if (agreement) for (const l of agreementLines(agreement, ctx.c)) ctx.line(l);
        ctx.line('costs:');
        for (const l of costLines(rep.cost)) ctx.line(l);
        ctx.line(`state hash ${stateHash(rep.peek())}`);
      }
      if (mismatches.length || (agreement && agreementFailed(agreement))) ctx.exitCode = EXIT.CHECK_FAILED;
    });
}

function outcomeLine(ctx: CliContext, i: number, e: TraceEvent, out: Outcome): string {
  const text = formatEvent(e).replace(/\s+expect .*$/, '');
  const o = formatOutcome(out);
  const colored = out.k === 'ignored' ? ctx.c.yellow(o) : out.k === 'exit' ? ctx.c.cyan(o) : o;
  return `${String(i).padStart(6)}  ${text.padEnd(56)} -> ${colored}`;
}
