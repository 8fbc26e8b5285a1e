/**
 * `nvx minimize <trace>`: delta debugging over the events (then the values
 * and the header) of a diverging trace, fuzzed or imported, keeping every
 * candidate valid and the same kind of divergence; optionally a jest test
 * that fails while the divergence exists.
 */
import * as path from 'path';
import type { Command } from 'commander';
import { NoDivergence, StateCompare, describeKind, describeSides, jestTest, minimizeTrace, observationOf, parseDuration } from '@nvx/check';
import { AREAS, AREA_IDS } from '@nvx/emulator';
import { checkOutputPath, formatEvent, formatOutcome, formatTextTrace, outputFormOf, readTraceFile, writeFileAtomic, writeTraceFile } from '@nvx/trace';
import { CliContext, EXIT, UsageError } from '../output';
import { addPathModuleOption, loadPathModules } from '../plugins';
import { PROFILE_HELP, profileArg } from '../profiles';
import { jsonText } from '../report';
import { ACCEPT_DECLARED_HELP, EXIT_RULE_HELP, declaredFor, exitFor, verdictOf } from '../verdict';

interface MinimizeCliOptions {
  base: string;
  profile: string;
  output?: string;
  emitJest?: string;
  time: string;
  stateAt: string;
  pathModule?: string[];
  json?: boolean;
  strict?: boolean;
  acceptDeclared?: boolean;
  keepDeclared?: boolean;
  keepForm?: boolean;
}

export function registerMinimizeCommands(program: Command, ctx: CliContext): void {
  addPathModuleOption(program.command('minimize'))
    .description('shrink a diverging trace (delta debugging over events, then values) keeping it valid and the same kind of divergence; print or write the result')
    .argument('<trace>', 'a trace file (.nvx text or .nvxt binary) on which --profile diverges from --base')
    .option('-b, --base <profile>', `the profile to compare against; ${PROFILE_HELP}`, 'reference')
    .option('-p, --profile <profile>', `the profile under test; ${PROFILE_HELP}`, 'optimized')
    .option('--keep-form', 'do not try other forms of the trace (fewer vCPUs, the other VMCS form, a shorter set-up)')
    .option('-o, --output <file>', 'write the minimized trace here (.nvx text or .nvxt binary; written to a temporary file and renamed); default: print it')
    .option('--emit-jest <file>', 'also write a ready-to-run jest test that fails while the divergence exists')
    .option('-t, --time <duration>', 'stop improving after this long (the best trace so far is kept)', '60s')
    .option('--state-at <when>', "compare whole architectural states after every nested 'entries' and exit, only at the 'end', or after 'every' event", 'entries')
    .option('--json', 'print one JSON object (the report, and the trace as text) instead of text')
    .option('--keep-declared', 'keep the input\'s declared verdict (meta verdict/diverges) in the minimized trace; by default it is dropped, so the minimized trace diverges with exit 1 under nvx diff')
    .option('--strict', 'exit 1 on a permitted divergence too (one after a broken contract)')
    .option('--accept-declared', ACCEPT_DECLARED_HELP)
    .addHelpText('after', `${EXIT_RULE_HELP}\nminimize exits as nvx diff would on its input; a trace on which the profiles do not diverge is bad input (2): nothing to minimize.`)
    .action(async (file: string, o: MinimizeCliOptions) => {
      const before = new Set(AREA_IDS.flatMap((a) => [...AREAS[a].paths.keys()].map((p) => `${a}=${p}`)));
      await loadPathModules(o, (m) => ctx.warn(m));
      const plugins = AREA_IDS.flatMap((a) => [...AREAS[a].paths.keys()].map((p) => `${a}=${p}`)).filter((s) => !before.has(s));
      const base = profileArg(o.base, '--base');
      const other = profileArg(o.profile, '--profile');
      if (!['entries', 'end', 'every'].includes(o.stateAt)) throw new UsageError(`--state-at is entries, end or every (got '${o.stateAt}')`);
      let timeLimitMs: number;
      try {
        timeLimitMs = parseDuration(o.time);
      } catch (e) {
        throw new UsageError(`--time: ${(e as Error).message}`);
      }
      if (o.output) outputFormOf(o.output); // a bad extension is a usage error before any work
      // so are a missing directory and a directory given as an output
      if (o.output) checkOutputPath(o.output);
      if (o.emitJest) checkOutputPath(o.emitJest);
      const t = await readTraceFile(file);
      for (const w of t.warnings) ctx.warn(`${file}: ${w.message}`);

      const err = ctx.io.stderr;
      const tty = err.isTTY === true && !o.json;
      let lastDraw = 0;
      let interrupted = false;
      const onSigint = () => {
        if (interrupted) process.exit(130);
        interrupted = true;
        ctx.warn('interrupted: keeping the smallest trace so far; interrupt again to quit at once');
      };
      process.on('SIGINT', onSigint);
      process.on('SIGTERM', onSigint);
      let m;
      try {
        m = minimizeTrace(t.header, t.events, base, other, {
          timeLimitMs,
          stateAt: o.stateAt as StateCompare,
          shouldStop: () => interrupted,
          // the divergence keeps what `nvx fuzz` groups findings by (its signature's observation)
          signature: observationOf,
          changeForm: !o.keepForm,
          onProgress: (n, phase) => {
            const now = Date.now();
            if (!tty || now - lastDraw < 100) return;
            lastDraw = now;
            err.write(`\r\x1b[2Kminimize: ${n} events (${phase})`);
          },
        });
      } catch (e) {
        if (e instanceof NoDivergence) {
          ctx.error(`${file}: ${e.message}`);
          ctx.exitCode = EXIT.USAGE;
          return;
        }
        throw e;
      } finally {
        if (tty) err.write('\r\x1b[2K');
        process.removeListener('SIGINT', onSigint);
        process.removeListener('SIGTERM', onSigint);
      }

      const d = m.result.divergence!;
      const declared = declaredFor(t.header, o.profile, other.name);
      const verdict = verdictOf(d, declared);
      ctx.exitCode = exitFor(verdict, o);
      // A kept finding's declaration is the corpus trace's, not the minimized one's: a CI gate running
      // nvx diff on the small trace must see the bug (unless the user keeps the declaration).
      const { verdict: _v, diverges: _d, ...inherited } = m.header.provenance;
      const header = {
        ...m.header,
        provenance: {
          ...(o.keepDeclared ? m.header.provenance : inherited),
          'minimized-from': path.basename(file),
          minimized: `${m.before} -> ${m.after} events`,
          base: base.name,
          profile: other.name,
          divergence: d.verdict,
          contract: d.contract?.contract ?? 'none',
        },
      };
      const text = formatTextTrace(header, m.events);
      if (o.output) await writeTraceFile(o.output, header, m.events);
      if (o.emitJest) {
        // the project's jest (jest.config.js) runs **/test/**/*.test.ts under packages/ and tools/
        const rel = path.relative(process.cwd(), path.resolve(o.emitJest)).split(path.sep).join('/');
        if (!/^(packages|tools)\/(.+\/)?test\/(.+\/)?[^/]+\.test\.ts$/.test(rel)) {
          ctx.warn(`${o.emitJest}: this project's jest only runs **/test/**/*.test.ts under packages/ and tools/ (e.g. packages/check/test/${path.basename(o.emitJest).replace(/(\.test)?\.[jt]s$/, '')}.test.ts)`);
        }
        const jestDir = path.dirname(path.resolve(o.emitJest));
        const mods = (o.pathModule ?? []).map((f) => {
          const rel = path.relative(jestDir, path.resolve(f)).split(path.sep).join('/');
          return rel.startsWith('.') ? rel : `./${rel}`;
        });
        writeFileAtomic(
          o.emitJest,
          jestTest(header, m.events, {
            base: base.name,
            profile: other.name,
            pathModules: plugins.length ? mods : [],
            description: `${describeKind(m.kind)}, minimized from ${path.basename(file)} (${m.before} -> ${m.after} events).`,
          }),
        );
      }
      const report = {
        file,
        base: base.name,
        profile: other.name,
        kind: m.kind,
        before: m.before,
        upToDivergence: m.beforeCut,
        after: m.after,
        ms: m.ms,
        candidates: m.tests,
        timedOut: m.timedOut,
        verdict,
        declared,
        exit: ctx.exitCode,
        divergence: { index: d.index, event: formatEvent(d.event), base: formatOutcome(d.base), other: formatOutcome(d.other), verdict: d.verdict, contract: d.contract?.contract ?? null },
        output: o.output ?? null,
        jest: o.emitJest ?? null,
      };
      if (o.json) {
        ctx.line(jsonText({ ...report, trace: text }));
        return;
      }
      const lines = [
        `minimized ${file}: ${m.before} events (${m.beforeCut} up to the divergence) -> ${m.after} events in ${(m.ms / 1000).toFixed(1)} s (${m.tests} candidates${m.timedOut ? ', stopped at the time limit' : ''})`,
        `  ${other.name} vs ${base.name}: ${describeKind(m.kind)} at event ${d.index}: ${formatEvent(d.event)}: ${describeSides(d)}`,
      ];
      if (o.output) lines.push(`  written to ${o.output}`);
      if (o.emitJest) lines.push(`  jest test written to ${o.emitJest} (fails while the divergence exists)`);
      if (o.output) for (const l of lines) ctx.line(l);
      else {
        // the trace on stdout, the report on stderr
        await ctx.write(text);
        for (const l of lines) ctx.err(l + '\n');
      }
    });
}
