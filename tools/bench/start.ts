/**
 * Start-up and bisect-memory benchmark of the built `nvx` command (this
 * tree's is built first with `tsc -b packages/cli`).
 *
 *  - start: wall time of `nvx --version`, `nvx --help` and `nvx run` on a
 *    10-event trace, each measured against `node -e 0` in the same round:
 *    every round runs the four commands one after the other, and a ratio is
 *    a command's time over node's in that round, so load on the machine
 *    hits both sides of a pair. Reported: the median ratio over the rounds
 *    and its range, with the median times. Goal: within 2x of `node -e 0`.
 *  - bisect memory: peak RSS (the child's `process.resourceUsage().maxRSS`)
 *    of `nvx bisect` (reference against optimized, which agree on it, so
 *    the forward pass reads the whole trace) on the CPUID-loop workload
 *    repeated to 100 k, 1 M and 5 M events (binary traces written to a
 *    temporary directory, removed afterwards). Goal: at most 256 MiB at
 *    every size, and flat. V8 sizes its heap to the allocation rate, so RSS
 *    creeps up a little with the run's length even when what stays live
 *    does not; the largest trace is therefore bisected again under
 *    `--max-old-space-size=64`, which only a run whose live memory does
 *    not grow with the trace survives (the whole-trace bisect of before
 *    ran out of heap under it at 2 M events).
 *
 *   npx tsx tools/bench/start.ts [--json] [--runs N] [--sizes 100k,1M,5M] [--skip-start] [--skip-bisect]
 *                                [--nvx path/to/bin/nvx.js] [--keep DIR]
 *
 *   --runs N     measured rounds of the start figures (default 11, after 2 warm-up rounds)
 *   --sizes      trace sizes for the bisect figure (k and M suffixes)
 *   --nvx FILE   the nvx executable to measure (default packages/cli/bin/nvx.js of this tree)
 *   --keep DIR   write the generated traces to DIR and keep them
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cpuidLoopSetupEvents, cpuidLoopStream, CPUID_LOOP_EVENTS_PER_ITERATION } from '../../packages/check/src/workloads';
import { createTraceWriter } from '../../packages/trace/src/io';
import { writeWorkload } from '../gen-workloads';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'nvx.js');

/** The goals the figures are held to (issue 15). */
export const START_GOAL_RATIO = 2;
export const BISECT_GOAL_MIB = 256;

export interface StartBenchOptions {
  runs?: number;
  warmup?: number;
  sizes?: number[];
  skipStart?: boolean;
  skipBisect?: boolean;
  nvx?: string;
  keep?: string;
  log?: (line: string) => void;
}

export interface StartRow {
  /** what was run, as a user types it */
  command: string;
  /** milliseconds, median and range over the rounds */
  ms: { median: number; min: number; max: number };
  /** this command's time over `node -e 0`'s in the same round: median and range */
  ratio: { median: number; min: number; max: number };
}

export interface BisectRssRow {
  events: number;
  /** the old-space limit the process ran under (MiB), if any */
  heapCapMiB?: number;
  /** peak resident set of the bisect process */
  maxRssMiB: number;
  seconds: number;
  /** the command's first output line */
  result: string;
}

export interface StartBenchResult {
  nvx: string;
  runs: number;
  node?: { median: number; min: number; max: number };
  start?: StartRow[];
  bisect?: BisectRssRow[];
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const stat = (xs: readonly number[]) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

/** Milliseconds one run of `node args` takes, its output discarded; throws if it fails. */
function timeRun(args: readonly string[], cwd: string): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${String(r.stderr).trim().split('\n')[0]}`);
  return ms;
}

/** A 10-event text trace: the first events of the CPUID loop's setup. */
function writeTinyTrace(file: string): void {
  const wl = cpuidLoopStream(0);
  const w = createTraceWriter(file, wl.header, { form: 'text' });
  let n = 0;
  for (const e of wl.events()) {
    if (n++ === 10) break;
    w.write(e);
  }
  w.close();
}

/** The CPUID-loop workload grown to at least `events` events, as a binary trace. */
export function writeLongTrace(file: string, events: number): number {
  const iterations = Math.max(0, Math.ceil((events - cpuidLoopSetupEvents()) / CPUID_LOOP_EVENTS_PER_ITERATION));
  const wl = cpuidLoopStream(iterations, { evmcs: true });
  return writeWorkload(file, wl).events;
}

function startFigures(bin: string, dir: string, runs: number, warmup: number, log: (l: string) => void): { node: StartRow['ms']; rows: StartRow[] } {
  const tiny = path.join(dir, 'tiny.nvx');
  writeTinyTrace(tiny);
  const cases: { command: string; args: string[] }[] = [
    { command: 'nvx --version', args: [bin, '--version'] },
    { command: 'nvx --help', args: [bin, '--help'] },
    { command: 'nvx run (10 events)', args: [bin, 'run', tiny] },
  ];
  const node: number[] = [];
  const times = cases.map(() => [] as number[]);
  const ratios = cases.map(() => [] as number[]);
  log(`start: ${warmup} warm-up and ${runs} measured rounds of node -e 0, ${cases.map((c) => c.command).join(', ')} ...`);
  for (let r = 0; r < warmup + runs; r++) {
    const base = timeRun(['-e', '0'], dir);
    const ts = cases.map((c) => timeRun(c.args, dir));
    if (r < warmup) continue;
    node.push(base);
    ts.forEach((t, i) => {
      times[i].push(t);
      ratios[i].push(t / base);
    });
  }
  return { node: stat(node), rows: cases.map((c, i) => ({ command: c.command, ms: stat(times[i]), ratio: stat(ratios[i]) })) };
}

/** The file the preload below writes the child's peak RSS (KiB) to. */
const RSS_ENV = 'NVX_BENCH_RSS_FILE';
const PRELOAD = `process.on('exit', () => { require('fs').writeFileSync(process.env.${RSS_ENV}, String(process.resourceUsage().maxRSS)); });\n`;

/** One `nvx bisect` on `file`, with its peak RSS; under `--max-old-space-size=cap` if given. */
function bisectRun(bin: string, dir: string, preload: string, file: string, events: number, cap?: number): BisectRssRow {
  const rssFile = path.join(dir, `rss-${events}${cap ? `-${cap}` : ''}`);
  const t0 = process.hrtime.bigint();
  const node = [...(cap ? [`--max-old-space-size=${cap}`] : []), '-r', preload, bin, 'bisect', file];
  const r = spawnSync(process.execPath, node, { cwd: dir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', [RSS_ENV]: rssFile }, maxBuffer: 1 << 26 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error) throw r.error;
  const result = r.status === 0 ? r.stdout.split('\n')[0].replace(dir + path.sep, '') : `exit ${r.status ?? r.signal}: ${(r.stderr.trim().split('\n').find((l) => /heap|memory|error/i.test(l)) ?? '').slice(0, 120)}`;
  const kib = fs.existsSync(rssFile) ? Number(fs.readFileSync(rssFile, 'utf8')) : NaN;
  return { events, ...(cap ? { heapCapMiB: cap } : {}), maxRssMiB: kib / 1024, seconds, result };
}

/** The old-space limit of the check that the live memory does not grow: the largest trace must bisect under it. */
export const BISECT_HEAP_CAP_MIB = 64;

function bisectFigures(bin: string, dir: string, sizes: readonly number[], keep: boolean, log: (l: string) => void): BisectRssRow[] {
  const preload = path.join(dir, 'maxrss.js');
  fs.writeFileSync(preload, PRELOAD);
  const rows: BisectRssRow[] = [];
  const sorted = [...sizes].sort((a, b) => a - b);
  for (const size of sorted) {
    const file = path.join(dir, `cpuid-loop-${size}.nvxt`);
    log(`bisect: writing ${file} ...`);
    const events = writeLongTrace(file, size);
    log(`bisect: nvx bisect on ${events.toLocaleString('en-US')} events ...`);
    rows.push(bisectRun(bin, dir, preload, file, events));
    if (size === sorted[sorted.length - 1]) {
      log(`bisect: again with --max-old-space-size=${BISECT_HEAP_CAP_MIB} ...`);
      rows.push(bisectRun(bin, dir, preload, file, events, BISECT_HEAP_CAP_MIB));
    }
    if (!keep) fs.rmSync(file, { force: true });
  }
  return rows;
}

export async function benchStart(opts: StartBenchOptions = {}): Promise<StartBenchResult> {
  const bin = path.resolve(opts.nvx ?? BIN);
  const log = opts.log ?? (() => undefined);
  if (!fs.existsSync(bin)) throw new Error(`${bin} is not there`);
  // this tree's command is measured as built from its sources (tsc -b does nothing when dist/ is up to date)
  if (bin === BIN) execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-b', 'packages/cli'], { cwd: ROOT, stdio: 'pipe' });
  const dir = opts.keep ? path.resolve(opts.keep) : fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-bench-start-'));
  fs.mkdirSync(dir, { recursive: true });
  const runs = opts.runs ?? 11;
  const rel = path.relative(ROOT, bin);
  const res: StartBenchResult = { nvx: rel.startsWith('..') ? bin : rel, runs };
  try {
    if (!opts.skipStart) {
      const s = startFigures(bin, dir, runs, opts.warmup ?? 2, log);
      res.node = s.node;
      res.start = s.rows;
    }
    if (!opts.skipBisect) {
      res.bisect = bisectFigures(bin, dir, opts.sizes ?? [100_000, 1_000_000, 5_000_000], !!opts.keep, log);
    }
  } finally {
    if (!opts.keep) fs.rmSync(dir, { recursive: true, force: true });
  }
  return res;
}

const fx = (x: number) => `${x.toFixed(2)}x`;
const met = (ok: boolean) => (ok ? 'met' : 'NOT met');

export function formatStartReport(r: StartBenchResult): string {
  const out: string[] = [];
  if (r.start && r.node) {
    out.push(`Start (${r.nvx}), ${r.runs} rounds; each ratio is against node -e 0 in the same round (median, range):`);
    out.push(`  node -e 0                 ${r.node.median.toFixed(0).padStart(5)} ms  (${r.node.min.toFixed(0)}-${r.node.max.toFixed(0)})`);
    for (const s of r.start) {
      out.push(
        `  ${s.command.padEnd(24)}  ${s.ms.median.toFixed(0).padStart(5)} ms  (${s.ms.min.toFixed(0)}-${s.ms.max.toFixed(0)})  ` +
          `${fx(s.ratio.median)} (${fx(s.ratio.min)}-${fx(s.ratio.max)})  goal <= ${START_GOAL_RATIO}x: ${met(s.ratio.median <= START_GOAL_RATIO)}`,
      );
    }
  }
  if (r.bisect) {
    if (out.length) out.push('');
    out.push(`Bisect memory: nvx bisect (reference vs optimized, the whole trace replayed) on the CPUID loop, peak RSS:`);
    const free = r.bisect.filter((b) => !b.heapCapMiB);
    for (const b of free) {
      out.push(`  ${b.events.toLocaleString('en-US').padStart(11)} events  ${b.maxRssMiB.toFixed(0).padStart(5)} MiB  ${b.seconds.toFixed(1).padStart(6)} s  goal <= ${BISECT_GOAL_MIB} MiB: ${met(b.maxRssMiB <= BISECT_GOAL_MIB)}`);
    }
    for (const b of r.bisect.filter((x) => x.heapCapMiB)) {
      const ok = !b.result.startsWith('exit ');
      out.push(
        `  ${b.events.toLocaleString('en-US').padStart(11)} events under --max-old-space-size=${b.heapCapMiB}: ${ok ? `completes, ${b.maxRssMiB.toFixed(0)} MiB, ${b.seconds.toFixed(1)} s` : `fails (${b.result})`}` +
          ` (goal: completes, the live memory does not grow with the trace): ${met(ok)}`,
      );
    }
    if (free.length > 1) {
      const [x, y] = [free[free.length - 2], free[free.length - 1]];
      out.push(`  from ${x.events.toLocaleString('en-US')} to ${y.events.toLocaleString('en-US')} events: ${y.maxRssMiB - x.maxRssMiB >= 0 ? '+' : ''}${(y.maxRssMiB - x.maxRssMiB).toFixed(0)} MiB (V8 sizes its heap to the allocation rate; the cap above bounds what stays live)`);
    }
  }
  return out.join('\n');
}

/** 100k, 1M, 2.5M ... */
function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(s.trim());
  if (!m) throw new Error(`--sizes: '${s}' is not a number of events (e.g. 100k, 1M)`);
  const n = Number(m[1]) * (m[2] === '' ? 1 : m[2].toLowerCase() === 'k' ? 1e3 : 1e6);
  if (!Number.isSafeInteger(Math.round(n)) || n < 1) throw new Error(`--sizes: '${s}' is out of range`);
  return Math.round(n);
}

export function parseStartArgs(argv: string[]): StartBenchOptions & { json: boolean } {
  const a: StartBenchOptions & { json: boolean } = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i];
    if (f === '--json') a.json = true;
    else if (f === '--runs') {
      a.runs = Number(argv[++i]);
      if (!Number.isSafeInteger(a.runs) || a.runs < 1) throw new Error('--runs needs a positive integer');
    } else if (f === '--sizes') a.sizes = String(argv[++i] ?? '').split(',').map(parseSize);
    else if (f === '--skip-start') a.skipStart = true;
    else if (f === '--skip-bisect') a.skipBisect = true;
    else if (f === '--nvx') a.nvx = argv[++i];
    else if (f === '--keep') a.keep = argv[++i];
    else throw new Error(`unknown argument '${f}'`);
  }
  return a;
}

if (require.main === module) {
  let args: ReturnType<typeof parseStartArgs>;
  try {
    args = parseStartArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`bench/start: ${(e as Error).message}`);
    process.exit(2);
  }
  benchStart({ ...args, log: (l) => console.error(l) }).then(
    (r) => console.log(args.json ? JSON.stringify(r, null, 2) : formatStartReport(r)),
    (e) => {
      console.error(`bench/start: ${(e as Error).message}`);
      process.exitCode = 1;
    },
  );
}
