/**
 * `nvx bisect <trace>`: the first event where two profiles' observations
 * differ, found by jumping between checkpoints, with the state diff there
 * and the contract status.
 *
 * `nvx bisect --run '<cmd>' <trace>`: git bisect over the trace's event
 * prefixes, the command judging each (exit 0 good, 125 skip, 1-127 bad,
 * 128 or more aborts), with a log that `--replay-log` prints, re-runs
 * (`--rerun`) or carries on (`--continue`).
 */
import * as fs from 'fs';
import type { Command } from 'commander';
import {
  BisectLog,
  BisectLogError,
  CommandRun,
  PrefixBisectResult,
  PrefixConclusion,
  PrefixStep,
  bisectTraceFile,
  parseLog,
  replayLog,
  rerunLog,
  runPrefixBisect,
  sha256Of,
} from '@nvx/check';
import { newCosts } from '@nvx/emulator';
import { TraceEvent, TraceForm, TraceHeader, checkOutputPath, formatEvent, readTraceFile } from '@nvx/trace';
import { CliContext, EXIT, UsageError } from '../output';
import { addPathModuleOption, loadPathModules } from '../plugins';
import { PROFILE_HELP, profileArg } from '../profiles';
import { divergenceLines, jsonText } from '../report';
import { ACCEPT_DECLARED_HELP, EXIT_RULE_HELP, declaredFor, exitFor, verdictOf } from '../verdict';

interface BisectCliOptions {
  base: string;
  profile: string;
  checkpoint: number;
  strict?: boolean;
  acceptDeclared?: boolean;
  json?: boolean;
  pathModule?: string[];
  run?: string;
  log?: string;
  timeout: number;
  replayLog?: string;
  rerun?: boolean;
  continue?: boolean;
  verbose?: boolean;
}

interface LoadedTrace {
  file: string;
  header: TraceHeader;
  events: TraceEvent[];
  form: TraceForm;
  sha256: string;
}

async function loadTrace(ctx: CliContext, file: string): Promise<LoadedTrace> {
  const t = await readTraceFile(file);
  for (const w of t.warnings) ctx.warn(`${file}: ${w.message}`);
  return { file, header: t.header, events: t.events, form: t.form, sha256: sha256Of(fs.readFileSync(file)) };
}

const eventText = (e: TraceEvent) => formatEvent({ ...e, expect: undefined });

export function registerBisectCommands(program: Command, ctx: CliContext): void {
  addPathModuleOption(program.command('bisect'))
    .description('the first event where two profiles differ, by jumping between checkpoints, with the state diff there; or, with --run, git bisect over event prefixes')
    .argument('[trace]', 'a trace file (.nvx text or .nvxt binary); with --replay-log, the log names it')
    .option('-b, --base <profile>', `the profile to compare against; ${PROFILE_HELP}`, 'reference')
    .option('-p, --profile <profile>', `the profile under test; ${PROFILE_HELP}`, 'optimized')
    .option('--checkpoint <k>', 'compare whole states, and keep a snapshot, every K events (a jump costs at most K steps; 1 compares every state)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new UsageError('--checkpoint must be a positive integer');
      return n;
    }, 1000)
    .option('--strict', 'exit 1 on a permitted divergence too (one after a broken contract)')
    .option('--accept-declared', ACCEPT_DECLARED_HELP)
    .option('--json', 'print one JSON object instead of text (with verdict: same, bug, permitted or expected-finding, and exit)')
    .option('--run <command>', "bisect event prefixes with this shell command as the judge: the prefix trace is in $NVX_TRACE and replaces '{}'; exit 0 good, 125 skip, 1-127 bad, 128+ abort")
    .option('--log <file>', 'with --run: write the bisection log here (after every step)')
    .option('--timeout <seconds>', 'with --run: kill a run of the command after this long and stop', (v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0) throw new UsageError('--timeout must be a positive number of seconds');
      return n;
    }, 60)
    .option('--replay-log <file>', 'print the bisection a log records and its conclusion (no command run)')
    .option('--rerun', "with --replay-log: run the log's command again on every prefix it tested and compare the verdicts")
    .option('--continue', "with --replay-log: carry on an unfinished bisection with the log's command, appending to the log")
    .option('-v, --verbose', "with --run: show the command's output")
    .addHelpText('after', `${EXIT_RULE_HELP}\nWith --run: 0 a first bad prefix was found, 1 none (only skipped prefixes left, or unfinished), 2 the command failed to run.`)
    .action(async (file: string | undefined, o: BisectCliOptions) => {
      await loadPathModules(o, (m) => ctx.warn(m));
      if (o.replayLog) return replayCommand(ctx, file, o);
      if (o.rerun || o.continue) throw new UsageError(`--${o.rerun ? 'rerun' : 'continue'} needs --replay-log <file>`);
      if (!file) throw new UsageError('missing the trace argument (nvx bisect <trace>)');
      if (o.run !== undefined) return runCommand(ctx, await loadTrace(ctx, file), o, o.run, []);
      if (o.log) throw new UsageError('--log goes with --run');
      return profilesCommand(ctx, file, o);
    });
}

// ---- two profiles ----

async function profilesCommand(ctx: CliContext, file: string, o: BisectCliOptions): Promise<void> {
  const base = profileArg(o.base, '--base');
  const other = profileArg(o.profile, '--profile');
  // streamed: one snapshot and at most --checkpoint events per profile in memory, however long the trace
  const { header, warnings, ...res } = await bisectTraceFile(file, base, other, { checkpointEvery: o.checkpoint });
  for (const w of warnings) ctx.warn(`${file}: ${w.message}`);
  const d = res.divergence;
  const s = res.stats;
  const declared = d ? declaredFor(header, o.profile, res.other) : null;
  const verdict = verdictOf(d, declared);
  const exit = exitFor(verdict, o);
  if (o.json) ctx.line(jsonText({ file, verdict, declared, exit, ...res }));
  else {
    const how =
      `checkpoints every ${s.checkpointEvery} events (${s.checkpoints} kept per profile); forward pass ${s.forwardSteps} events, ` +
      `${s.probes} jumps of at most ${s.maxJumpSteps} events, ${s.stateComparisons} state comparisons`;
    if (!d) ctx.line(`${ctx.c.green('same')}: ${res.other} matches ${res.base} on all ${res.events} events of ${file}`);
    else {
      ctx.line(`${file}: ${res.events} events; the first difference between ${res.base} and ${res.other} is at event ${d.index}`);
      for (const l of divergenceLines(d, { base: res.base, other: res.other, events: res.events, divergence: d, violations: res.violations, costs: { base: newCosts(), other: newCosts() } }, ctx.c)) ctx.line(l);
      if (s.refined) ctx.line('  (the confirming replay found this difference, which did not last, before the one the jumps landed on)');
      if (verdict === 'expected-finding') ctx.line(ctx.c.yellow(`kept finding: this trace declares the divergence of ${res.other} (meta verdict "finding"); ${o.acceptDeclared ? 'accepted (--accept-declared)' : 'exit 1 (--accept-declared to accept it)'}`));
    }
    ctx.line(`bisect: ${how}`);
  }
  ctx.exitCode = exit;
}

// ---- prefixes judged by a command ----

function prefixText(t: LoadedTrace | undefined, total: number, p: number): string {
  if (p === 0) return 'prefix 0 (no event)';
  if (p === total) return `prefix ${p} (the whole trace)`;
  return t ? `prefix ${p} (up to event ${p - 1}: ${eventText(t.events[p - 1])})` : `prefix ${p}`;
}

function stepText(s: PrefixStep): string {
  const parts = [s.exit === undefined ? '' : s.exit === null ? 'ended by a signal' : `exit ${s.exit}`, s.ms === undefined ? '' : `${s.ms} ms`].filter(Boolean);
  return `${s.verdict}${parts.length ? ` (${parts.join(', ')})` : ''}`;
}

function conclusionLines(ctx: CliContext, t: LoadedTrace | undefined, c: PrefixConclusion): string[] {
  if (c.kind === 'found') {
    const i = c.firstBad - 1;
    return [`${ctx.c.bold('first bad prefix')}: ${c.firstBad} events; the first bad event is event ${i}${t ? `:\n  ${eventText(t.events[i])}` : ''}`];
  }
  if (c.kind === 'ambiguous') {
    return [
      `only skipped prefixes are left: the first bad prefix is one of ${c.candidates.join(', ')}`,
      ...(t ? c.candidates.map((p) => `  event ${p - 1}: ${eventText(t.events[p - 1])}`) : []),
    ];
  }
  return [`unfinished: prefix ${c.next} is the next to test (nvx bisect --replay-log <log> --continue)`];
}

function conclusionJson(t: LoadedTrace | undefined, c: PrefixConclusion): Record<string, unknown> {
  if (c.kind === 'found') return { kind: 'found', firstBadPrefix: c.firstBad, firstBadEvent: c.firstBad - 1, ...(t ? { event: eventText(t.events[c.firstBad - 1]) } : {}) };
  if (c.kind === 'ambiguous') return { kind: 'ambiguous', candidates: c.candidates };
  return { kind: 'open', next: c.next };
}

function outputTail(run: CommandRun, lines = 20): string {
  const all = run.output.trimEnd().split('\n');
  return all.slice(-lines).map((l) => `  | ${l}`).join('\n');
}

async function runCommand(ctx: CliContext, t: LoadedTrace, o: BisectCliOptions, command: string, known: PrefixStep[], logFile = o.log): Promise<void> {
  if (!t.events.length) throw new UsageError(`${t.file}: the trace has no events: nothing to bisect`);
  if (!command.trim()) throw new UsageError('--run: the command is empty');
  if (logFile) checkOutputPath(logFile); // a missing directory or a directory as the log: before the first step
  const total = t.events.length;
  if (!o.json) ctx.line(`bisecting the ${total + 1} prefixes (0..${total} events) of ${t.file} with: ${command}`);
  let res: PrefixBisectResult;
  try {
    res = await runPrefixBisect({
      header: t.header,
      events: t.events,
      trace: t.file,
      sha256: t.sha256,
      form: t.form,
      command,
      timeoutMs: o.timeout * 1000,
      logFile,
      known,
      onStep: (s) => {
        if (!o.json) ctx.line(`  ${prefixText(t, total, s.prefix)}: ${stepText(s)}`);
      },
      onOutput: o.verbose ? (chunk) => ctx.err(chunk) : undefined,
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err && typeof err.code === 'string' && err.syscall?.startsWith('spawn')) throw new UsageError(`--run: cannot start the shell: ${err.message}`);
    throw e;
  }
  if (o.json) {
    ctx.line(jsonText({ trace: t.file, events: total, command, steps: res.log.steps, conclusion: conclusionJson(t, res.conclusion), ...(res.error ? { error: res.error } : {}), ...(logFile ? { log: logFile } : {}) }));
  } else if (!res.error) for (const l of conclusionLines(ctx, t, res.conclusion)) ctx.line(l);
  if (res.error) {
    ctx.error(res.error);
    if (res.aborted && res.aborted.output.trim() && !o.verbose) ctx.err(`the command's last output:\n${outputTail(res.aborted)}\n`);
    else {
      const failing = res.log.steps.find((s) => (s.prefix === 0 && s.verdict !== 'good') || (s.prefix === total && s.verdict !== 'bad'));
      if (failing) ctx.err(`(the bisection assumes the empty prefix is good and the whole trace bad; check the command by hand: NVX_TRACE=<a trace> ${command})\n`);
    }
    ctx.exitCode = EXIT.USAGE;
  } else if (res.conclusion.kind !== 'found') ctx.exitCode = EXIT.CHECK_FAILED;
  if (logFile && !o.json) ctx.line(`log: ${logFile} (nvx bisect --replay-log ${logFile})`);
}

// ---- logs ----

function readLog(file: string): BisectLog {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--replay-log: ${(e as Error).message}`);
  }
  try {
    return parseLog(text, file);
  } catch (e) {
    if (e instanceof BisectLogError) throw new UsageError(e.message);
    throw e;
  }
}

/** The trace a log was made with: the one given, else the one it names; undefined when neither can be read. */
async function logTrace(ctx: CliContext, log: BisectLog, given: string | undefined, required: boolean): Promise<LoadedTrace | undefined> {
  const file = given ?? log.trace;
  if (!fs.existsSync(file)) {
    if (required) throw new UsageError(`the trace ${file} is not there: name it after --replay-log (nvx bisect <trace> --replay-log <log> ...)`);
    return undefined;
  }
  const t = await loadTrace(ctx, file);
  if (t.sha256 !== log.sha256 || t.events.length !== log.events) {
    const msg = `${file} is not the trace the log was made with (its sha256 or number of events differs)`;
    if (required) throw new UsageError(msg);
    ctx.warn(msg);
    return undefined;
  }
  return t;
}

async function replayCommand(ctx: CliContext, file: string | undefined, o: BisectCliOptions): Promise<void> {
  if (o.rerun && o.continue) throw new UsageError('--rerun and --continue do not go together');
  const log = readLog(o.replayLog!);
  if (o.continue) {
    const t = (await logTrace(ctx, log, file, true))!;
    return runCommand(ctx, t, o, o.run ?? log.command, log.steps, o.log ?? o.replayLog);
  }
  if (o.run !== undefined) throw new UsageError('--run with --replay-log goes with --continue (or --rerun to check the log with its own command)');
  const t = await logTrace(ctx, log, file, !!o.rerun);
  if (o.rerun) return rerunCommand(ctx, t!, log, o);
  const { conclusion, error } = replayLog(log);
  if (o.json) {
    ctx.line(jsonText({ trace: log.trace, events: log.events, command: log.command, steps: log.steps, conclusion: conclusionJson(t, conclusion), ...(error ? { error } : {}) }));
  } else {
    ctx.line(`${o.replayLog}: bisection of ${log.trace} (${log.events} events) with: ${log.command}`);
    for (const s of log.steps) ctx.line(`  ${prefixText(t, log.events, s.prefix)}: ${stepText(s)}`);
    if (error) ctx.line(`stopped: ${error}`);
    else for (const l of conclusionLines(ctx, t, conclusion)) ctx.line(l);
  }
  if (error) ctx.exitCode = EXIT.USAGE;
  else if (conclusion.kind !== 'found') ctx.exitCode = EXIT.CHECK_FAILED;
}

async function rerunCommand(ctx: CliContext, t: LoadedTrace, log: BisectLog, o: BisectCliOptions): Promise<void> {
  if (!o.json) ctx.line(`re-running ${log.steps.length} steps of ${o.replayLog} on ${t.file} with: ${log.command}`);
  const steps = await rerunLog(log, {
    header: t.header,
    events: t.events,
    form: t.form,
    timeoutMs: o.timeout * 1000,
    onStep: (r) => {
      if (o.json) return;
      const same = r.now === r.step.verdict;
      const now = `${r.now}${r.run.timedOut ? ' (timed out)' : r.run.exit === null ? ' (signal)' : ` (exit ${r.run.exit})`}`;
      ctx.line(`  ${prefixText(t, log.events, r.step.prefix)}: ${same ? now : ctx.c.red(`was ${r.step.verdict}, now ${now}`)}`);
    },
    onOutput: o.verbose ? (chunk) => ctx.err(chunk) : undefined,
  });
  const changed = steps.filter((r) => r.now !== r.step.verdict);
  const { conclusion, error } = replayLog(log);
  if (o.json) {
    ctx.line(jsonText({ trace: t.file, command: log.command, steps: steps.map((r) => ({ prefix: r.step.prefix, then: r.step.verdict, now: r.now, exit: r.run.exit })), changed: changed.length, conclusion: conclusionJson(t, conclusion) }));
  } else {
    ctx.line(changed.length ? ctx.c.red(`${changed.length} of ${steps.length} verdicts changed: the log's conclusion no longer holds`) : `every verdict is the same as in the log`);
    if (!changed.length && !error) for (const l of conclusionLines(ctx, t, conclusion)) ctx.line(l);
  }
  if (changed.length) ctx.exitCode = EXIT.CHECK_FAILED;
}
