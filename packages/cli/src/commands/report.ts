/**
 * `nvx report <trace> -o report.html`: one self-contained HTML page with a
 * timeline of the trace under every profile, the events around the first
 * divergence with each profile's outcome, the divergence itself (outcomes,
 * architectural state diff, each path's internals, contract status), the
 * exits in `perf kvm stat` shape and per-area cost charts.
 *
 * The trace is read in passes, streaming (constant memory whatever its
 * size): one to count the events, one lockstep diff per profile against the
 * base (the first profile), and one to replay every profile at once for
 * the timeline, the table and the statistics.
 */
import type { Command } from 'commander';
import { DiffResult, diffStream } from '@nvx/check';
import { Profile } from '@nvx/emulator';
import { OpenTraceReader, TraceEvent, checkOutputPath, eventVcpu, formatEvent, formatOutcome, openTrace, outcomeEquals, writeFileAtomic } from '@nvx/trace';
import { CliContext, UsageError } from '../output';
import { addPathModuleOption, loadPathModules } from '../plugins';
import { Agreement, isImportedTrace, outcomeClass } from '../importers/agreement';
import { progressBar } from '../importers/progress';
import { ReportData, ReportRow, renderReport } from '../html/report-html';
import type { Lane } from '../html/svg';
import { StatCollector, hostExits, parseProfileList } from './stat';
import { ACCEPT_DECLARED_HELP, EXIT_RULE_HELP, declaredFor, exitFor, verdictOf, worstExit } from '../verdict';

export interface ReportOptions {
  profiles: Profile[];
  /** rows of the event table (default 300) */
  window?: number;
  checkpointEvery?: number;
  /** buckets of the timeline (default 600) */
  buckets?: number;
  onProgress?: (done: number, total: number) => void;
}

async function countEvents(file: string): Promise<number> {
  const r = await openTrace(file);
  let n = 0;
  try {
    for await (const c of r.chunks()) n += c.length;
  } finally {
    await r.close();
  }
  return n;
}

/** Everything the page shows, computed from the trace. */
export async function buildReport(file: string, opts: ReportOptions): Promise<ReportData> {
  const profiles = opts.profiles;
  const base = profiles[0];
  const events = await countEvents(file);
  const passes = 1 + (profiles.length - 1) + 1;
  const total = Math.max(1, events * passes);
  let done = events;
  opts.onProgress?.(done, total);

  // one lockstep diff per profile against the base
  const diffs: DiffResult[] = [];
  for (const other of profiles.slice(1)) {
    const readers: OpenTraceReader[] = [];
    const open = (): AsyncIterable<TraceEvent[]> =>
      (async function* () {
        const r = await openTrace(file);
        readers.push(r);
        yield* r.chunks();
      })();
    const before = done;
    const first = await openTrace(file);
    readers.push(first);
    let opened = 0;
    try {
      const res = await diffStream(first.header, () => (opened++ === 0 ? first.chunks() : open()), base, other, {
        checkpointEvery: opts.checkpointEvery,
        firstState: true,
        onProgress: (n) => opts.onProgress?.(Math.min(total, before + n), total),
      });
      diffs.push(res);
    } finally {
      for (const r of readers) await r.close();
    }
    done = before + events;
    opts.onProgress?.(done, total);
  }

  const divIdx = diffs.map((d) => d.divergence?.index).filter((x): x is number => x !== undefined);
  const first = divIdx.length ? Math.min(...divIdx) : null;
  const windowSize = Math.max(10, opts.window ?? 300);
  const start = first === null ? 0 : Math.max(0, Math.min(first - Math.floor(windowSize * 0.75), events - windowSize));
  const end = Math.min(events, start + windowSize);

  // the replay of every profile at once
  const nb = Math.max(1, Math.min(opts.buckets ?? 600, events || 1));
  const width = Math.max(1, Math.ceil(events / nb));
  const lanes: Lane[] = profiles.map((p, i) => ({
    name: p.name,
    toL1: new Array(nb).fill(0),
    toL0: new Array(nb).fill(0),
    differs: new Array(nb).fill(0),
    divergence: i === 0 ? null : (diffs[i - 1].divergence?.index ?? null),
    verdict: i === 0 ? undefined : diffs[i - 1].divergence?.verdict,
    // the contract monitor watches the base's state: the same breaks in every lane compared with it
    contractBreaks: i === 0 ? [] : diffs[i - 1].violations.slice(0, 40).map((v) => ({ index: v.index, contract: v.contract, message: v.message })),
  }));
  const rows: ReportRow[] = [];
  const r = await openTrace(file);
  const header = r.header;
  const imported = isImportedTrace(header);
  const agreements = imported ? profiles.map((p) => new Agreement(header, p.name)) : null;
  const col = new StatCollector(header, profiles);
  try {
    let i = 0;
    for await (const chunk of r.chunks()) {
      for (const e of chunk) {
        const outs = col.apply(e);
        const b = Math.min(nb - 1, Math.floor(i / width));
        for (let p = 0; p < profiles.length; p++) {
          if (outs[p].k === 'exit') lanes[p].toL1[b]++;
          if (col.lastExit[p] !== null) lanes[p].toL0[b]++;
          if (p > 0 && !outcomeEquals(outs[0], outs[p])) lanes[p].differs[b]++;
          agreements?.[p].observe(e, outs[p]);
        }
        if (i >= start && i < end) {
          rows.push({
            index: i,
            vcpu: eventVcpu(e),
            event: formatEvent({ ...e, expect: undefined }),
            expect: e.expect ? formatOutcome(e.expect) : null,
            cells: outs.map((o, p) => ({ outcome: formatOutcome(o), cls: outcomeClass(o), differs: p > 0 && !outcomeEquals(outs[0], o), exit: col.lastExit[p], cycles: col.lastCycles[p] })),
          });
        }
        i++;
        if (i % 4096 === 0) opts.onProgress?.(Math.min(total, done + i), total);
      }
    }
  } finally {
    await r.close();
  }
  opts.onProgress?.(total, total);
  return {
    file,
    header,
    events,
    profiles: profiles.map((p) => p.name),
    diffs,
    stat: { file, events: col.events, profiles: col.result(), host: hostExits(header) },
    agreement: agreements ? agreements.map((a) => a.summary()) : null,
    lanes,
    bucketWidth: width,
    rows,
    window: [start, end],
    warnings: r.warnings.map((w) => w.message),
  };
}

/** Write `html` to `out` through a temporary file renamed into place (@nvx/trace's writeFileAtomic). */
function writeAtomically(out: string, html: string): void {
  writeFileAtomic(out, html);
}

export function registerReportCommands(program: Command, ctx: CliContext): void {
  addPathModuleOption(program.command('report'))
    .description('write one self-contained HTML page: timeline, first divergence with its state diff and contract status, exits and per-area costs')
    .argument('<trace>', 'a trace file (.nvx text or .nvxt binary)')
    .requiredOption('-o, --output <file>', 'the HTML file to write')
    .option('-p, --profiles <list>', "profiles, comma-separated, the first being the base the others are compared with; join the areas of one profile with '+'", 'reference,optimized')
    .option('--window <n>', 'events listed in the table, around the first divergence', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 10 || n > 100000) throw new UsageError('--window must be an integer from 10 to 100000');
      return n;
    }, 300)
    .option('--checkpoint <k>', 'compare whole architectural states every K events', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new UsageError('--checkpoint must be a positive integer');
      return n;
    }, 1000)
    .option('-q, --quiet', 'print nothing but errors and warnings')
    .option('--strict', 'exit 1 on a permitted divergence too (one after a broken contract)')
    .option('--accept-declared', ACCEPT_DECLARED_HELP)
    .addHelpText('after', `${EXIT_RULE_HELP}\nThe page is written whatever the verdict; the exit code is the worst over the profiles compared with the first.`)
    .action(async (file: string, o: { output: string; profiles: string; window: number; checkpoint: number; quiet?: boolean; strict?: boolean; acceptDeclared?: boolean; pathModule?: string[] }) => {
      checkOutputPath(o.output); // a missing directory or a directory as the output: say so before the work
      await loadPathModules(o, (m) => ctx.warn(m));
      const profiles = parseProfileList(o.profiles);
      const bar = progressBar(ctx, 'report', { quiet: o.quiet });
      let data: ReportData;
      try {
        data = await buildReport(file, { profiles, window: o.window, checkpointEvery: o.checkpoint, onProgress: (d, t) => bar.update(d, t) });
      } finally {
        bar.stop();
      }
      for (const w of data.warnings) ctx.warn(`${file}: ${w}`);
      writeAtomically(o.output, renderReport(data));
      const verdicts = data.diffs.map((d) => verdictOf(d.divergence, d.divergence ? declaredFor(data.header, d.other) : null));
      ctx.exitCode = worstExit(verdicts.map((v) => exitFor(v, o)));
      if (o.quiet) return;
      const divs = data.diffs.map((d, i) => ({ d, v: verdicts[i] })).filter(({ d }) => d.divergence);
      ctx.line(`${o.output}: ${data.events} events under ${data.profiles.join(', ')}; ${divs.length ? divs.map(({ d, v }) => `${d.other} diverges at event ${d.divergence!.index} (${v === 'expected-finding' ? 'bug, a kept finding' : v})`).join('; ') : `every profile matches ${data.profiles[0]}`}`);
    });
}
