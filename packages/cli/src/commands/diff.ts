/**
 * `nvx diff <trace>`: lockstep differential replay of two profiles; the
 * first divergence, explained, with its contract status.
 */
import type { Command } from 'commander';
import { describeMigrateDivergence, diffStream, migrateDiff, parseMigrateWhere } from '@nvx/check';
import type { Profile } from '@nvx/emulator';
import { describeOutcome, formatEvent, openTrace, OpenTraceReader, readTraceFile, TraceEvent, writeTraceFile } from '@nvx/trace';
import { CliContext, EXIT, NO_COLORS, UsageError } from '../output';
import { checkJUnitPath, writeJUnit } from '../junit';
import { ACCEPT_DECLARED_HELP, EXIT_RULE_HELP, declaredFor, exitFor, verdictOf } from '../verdict';
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
    .option('--accept-declared', ACCEPT_DECLARED_HELP)
    .option('--junit <file>', 'also write a JUnit XML report: one testcase (the trace under --profile), failing with the first divergence')
    .option('--checkpoint <k>', 'compare whole architectural states every K events', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`--checkpoint must be a positive integer, got '${v}'`);
      return n;
    }, 1000)
    .option('--json', 'print one JSON object instead of text (with verdict: same, bug, permitted or expected-finding, and exit)')
    .option('--migrate <where>', "insert vCPU migrations (host.migrate) after events '12,40', after every nested entry and exit ('entries'), or at n random points ('random:<seed>:<n>'); compare the profile with them against itself without them, and against --base")
    .option('--write-migrated <file>', 'with --migrate: write the trace with the migrations inserted (to minimize or bisect it)')
    .addHelpText('after', EXIT_RULE_HELP)
    .action(async (file: string, o: { base: string; profile: string; strict?: boolean; acceptDeclared?: boolean; junit?: string; checkpoint: number; json?: boolean; pathModule?: string[]; migrate?: string; writeMigrated?: string }) => {
      checkJUnitPath(o.junit);
      await loadPathModules(o, (m) => ctx.warn(m));
      const base = profileArg(o.base, '--base');
      const other = profileArg(o.profile, '--profile');
      if (o.migrate !== undefined) return diffMigrate(ctx, file, base, other, o as MigrateCliOptions);
      if (o.writeMigrated !== undefined) throw new UsageError('--write-migrated needs --migrate');
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
        res = await diffStream(first.header, open, base, other, { checkpointEvery: o.checkpoint, firstState: true });
      } finally {
        for (const r of readers) await r.close();
      }
      for (const w of first.warnings) ctx.warn(`${file}: ${w.message}`);
      const d = res.divergence;
      const declared = d ? declaredFor(first.header, o.profile, res.other) : null;
      const verdict = verdictOf(d, declared);
      const exit = exitFor(verdict, o);
      if (o.junit) {
        const where = d ? `${d.verdict} divergence at event ${d.index} (${formatEvent({ ...d.event, expect: undefined })})` : '';
        writeJUnit(o.junit, [
          {
            name: 'nvx diff',
            cases: [
              {
                classname: file,
                name: res.base === 'reference' ? res.other : `${res.other} vs ${res.base}`,
                failure: exit ? { message: `${verdict}: ${where}`, type: verdict, text: divergenceLines(d!, res, NO_COLORS).join('\n') } : undefined,
                out: d && !exit ? `${verdict}: ${where}` : undefined,
              },
            ],
          },
        ]);
      }
      if (o.json) ctx.line(jsonText({ file, verdict, declared, exit, ...res }));
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
      // A kept finding (the real code is wrong) is still a bug here: only nvx check, or --accept-declared, takes the trace's word for it.
      if (verdict === 'expected-finding' && !o.json) {
        ctx.line(ctx.c.yellow(`kept finding: this trace declares the divergence of ${res.other} (meta verdict "finding"): the real code's flaw; ${o.acceptDeclared ? 'accepted (--accept-declared)' : 'exit 1 (--accept-declared to accept it)'}`));
      }
      ctx.exitCode = exit;
    });
}

interface MigrateCliOptions {
  migrate: string;
  writeMigrated?: string;
  strict?: boolean;
  json?: boolean;
}

/**
 * `nvx diff --migrate <where>`: the profile on the trace with migrations
 * against itself without them (migration transparency), then the trace with
 * migrations under --base against the profile (the ordinary lockstep).
 */
async function diffMigrate(ctx: CliContext, file: string, base: Profile, other: Profile, o: MigrateCliOptions): Promise<void> {
  let where;
  try {
    where = parseMigrateWhere(o.migrate);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const t = await readTraceFile(file);
  for (const w of t.warnings) ctx.warn(`${file}: ${w.message}`);
  const r = migrateDiff(t.header, t.events, base, other, where, o.migrate);
  if (o.writeMigrated) await writeTraceFile(o.writeMigrated, { ...t.header, provenance: { ...t.header.provenance, migrate: o.migrate } }, r.trace.events);
  const d = r.transparency;
  const b = r.againstBase.divergence;
  if (o.json) {
    const { trace, ...rest } = r;
    ctx.line(jsonText({ ...rest, migratedEvents: trace.events.length }));
  } else {
    ctx.line(`${r.points.length} migration(s) inserted (${o.migrate}): ${t.events.length} -> ${r.trace.events.length} events${o.writeMigrated ? `, written to ${o.writeMigrated}` : ''}`);
    if (!d) ctx.line(`${ctx.c.green('transparent')}: ${r.profile} with the migrations matches itself without them on all ${t.events.length} events`);
    else {
      const head = d.verdict === 'bug' ? ctx.c.red(ctx.c.bold('NOT TRANSPARENT (bug)')) : ctx.c.yellow(ctx.c.bold(`NOT TRANSPARENT (${d.verdict})`));
      ctx.line(`${head} at event ${d.index} (${d.migratedIndex} with the migrations): ${formatEvent(d.event)}`);
      ctx.line(`  without migrations ${describeOutcome(d.without)}`);
      ctx.line(`  with migrations    ${describeOutcome(d.with)}`);
      if (d.failedRestore !== undefined) ctx.line(`  the restore at event ${d.failedRestore} (with the migrations) failed`);
      if (d.verdict === 'inherent') ctx.line('  reference diverges the same way: a property of KVM\'s save/restore, not of this path');
      if (d.verdict === 'pre-existing') ctx.line(`  without migrations ${r.profile} already diverges from reference by this event: the restore changes a known divergence`);
      if (d.contract) ctx.line(`  after L1 broke ${d.contract.contract} at event ${d.contract.index}: ${d.contract.message}`);
      for (const [k, v] of Object.entries(d.explain.with)) ctx.line(`  with: ${k}: ${v}`);
      ctx.line(`  ${describeMigrateDivergence(d)}`);
    }
    if (!b) ctx.line(`${ctx.c.green('same')}: with the migrations, ${r.againstBase.other} matches ${r.againstBase.base} on all ${r.againstBase.events} events`);
    else for (const l of divergenceLines(b, r.againstBase, ctx.c)) ctx.line(l);
  }
  const bug = (d && d.verdict === 'bug') || (b && b.verdict === 'bug');
  const any = !!d || !!b;
  if (bug || (any && o.strict)) ctx.exitCode = EXIT.CHECK_FAILED;
}
