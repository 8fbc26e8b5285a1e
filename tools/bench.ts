/**
 * `npm run bench`: the trace codec benchmark (tools/bench/trace.ts, when it
 * is there), the emulator benchmark (tools/bench/emulator.ts), the fuzz
 * benchmark (tools/bench/detection.ts) and the start-up and bisect-memory
 * benchmark of the built command (tools/bench/start.ts), as one readable
 * report, or as JSON with --json.
 *
 *   npm run -s bench -- [--json] [--events N] [--iterations N] [--runs N] [--processes N] [--in-process]
 *                       [--loader built|tsx] [--skip-trace] [--skip-emulator] [--skip-fuzz] [--skip-fuzz-speed] [--detection]
 *
 *   --events N       events of the codec benchmark's mixed synthetic trace (default 1,000,000; the workload is traces/workloads/cpuid-loop.nvxt)
 *   --iterations N   iterations of the emulator's CPUID loop (default 100,000: the traces/workloads trace)
 *   --runs N         measured repetitions of each emulator figure per process (medians; default 5)
 *   --processes N    processes per emulator figure, runs pooled (default 3); --in-process: all in this one
 *   --loader         how the emulator benchmark loads the packages (default built; see tools/bench/emulator.ts)
 *   --skip-fuzz      leave out the fuzz throughput (tools/bench/detection.ts: about 35 s)
 *   --skip-fuzz-speed  leave out the fuzz speed goal's figure (tools/bench/fuzz-speed.ts: one profile, one
 *                    worker, in this process; --fuzz-traces N traces per round, default 1,000)
 *   --detection      add the detection power of nvx fuzz on every broken fixture and bug-history entry (long: 10 campaigns of a
 *                    default nvx fuzz on 2 workers per broken path; see tools/bench/detection.ts)
 *   --campaigns N    campaigns per broken path (default 10)
 *   --fuzz-workers N workers per detection campaign (default 2)
 *   --budget S       seconds per detection campaign (default 60); --no-bug-history: the broken fixtures only
 *   --plugins a,b    plugin modules or directories of them to measure instead of the fixtures (a bug-history set)
 *   --only a,b       only these broken paths
 *   --alone          check each broken path alone, not with every default profile
 *   --skip-start     leave out start times and bisect memory (tools/bench/start.ts: a few minutes, most of
 *                    it bisecting the 5 M-event trace twice)
 *   --start-runs N   rounds of the start figures (default 11)
 *   --bisect-sizes   trace sizes of the bisect memory figure (default 100k,1M,5M)
 *   --skip-bisect    start times only
 *
 * Progress goes to stderr, the report (or JSON) to stdout (-s keeps npm's own
 * banner out of it).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EmulatorBenchOptions, EmulatorBenchResult, benchEmulator, formatEmulatorReport } from './bench/emulator';
import { FuzzBenchOptions, FuzzBenchResult, benchFuzz, formatFuzzReport } from './bench/detection';
import { StartBenchOptions, StartBenchResult, benchStart, formatStartReport, parseStartArgs } from './bench/start';
import { FuzzSpeedResult, benchFuzzSpeed, formatFuzzSpeed } from './bench/fuzz-speed';

interface TraceBenchModule {
  benchTrace(opts: { events: number; log?: (line: string) => void }): Promise<Record<string, unknown>>;
  /** the module's own report (goal beside each figure), when it has one */
  formatTraceBench?(r: unknown): string;
}

/** The codec benchmark, if this tree has it. */
function traceBench(): TraceBenchModule | null {
  if (!['.ts', '.js'].some((ext) => fs.existsSync(path.join(__dirname, 'bench', `trace${ext}`)))) return null;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const m = require('./bench/trace') as Partial<TraceBenchModule>;
  return typeof m.benchTrace === 'function' ? (m as TraceBenchModule) : null;
}

interface Args {
  json: boolean;
  events: number;
  skipTrace: boolean;
  skipEmulator: boolean;
  skipFuzz: boolean;
  skipFuzzSpeed: boolean;
  fuzzTraces: number;
  detection: boolean;
  emulator: EmulatorBenchOptions;
  fuzz: FuzzBenchOptions;
  skipStart: boolean;
  start: StartBenchOptions;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { json: false, events: 1_000_000, skipTrace: false, skipEmulator: false, skipFuzz: false, skipFuzzSpeed: false, fuzzTraces: 1000, detection: false, emulator: {}, fuzz: {}, skipStart: false, start: {} };
  const num = (v: string | undefined, flag: string) => {
    const x = Number(v);
    if (!Number.isSafeInteger(x) || x <= 0) throw new Error(`${flag} needs a positive integer`);
    return x;
  };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i];
    if (f === '--json') a.json = true;
    else if (f === '--events') a.events = num(argv[++i], f);
    else if (f === '--iterations') a.emulator.iterations = num(argv[++i], f);
    else if (f === '--runs') a.emulator.runs = num(argv[++i], f);
    else if (f === '--processes') a.emulator.processes = num(argv[++i], f);
    else if (f === '--in-process') a.emulator.isolate = false;
    else if (f === '--skip-trace') a.skipTrace = true;
    else if (f === '--skip-emulator') a.skipEmulator = true;
    else if (f === '--skip-fuzz') a.skipFuzz = true;
    else if (f === '--skip-fuzz-speed') a.skipFuzzSpeed = true;
    else if (f === '--fuzz-traces') a.fuzzTraces = num(argv[++i], f);
    else if (f === '--detection') a.detection = true;
    else if (f === '--campaigns') a.fuzz.campaigns = num(argv[++i], f);
    else if (f === '--fuzz-workers') a.fuzz.workers = num(argv[++i], f);
    else if (f === '--plugins') a.fuzz.plugins = String(argv[++i] ?? '').split(',').filter(Boolean);
    else if (f === '--only') a.fuzz.only = String(argv[++i] ?? '').split(',').filter(Boolean);
    else if (f === '--alone') a.fuzz.alone = true;
    else if (f === '--skip-start') a.skipStart = true;
    else if (f === '--start-runs') a.start.runs = num(argv[++i], f);
    else if (f === '--bisect-sizes') a.start.sizes = parseStartArgs(['--sizes', String(argv[++i] ?? '')]).sizes;
    else if (f === '--skip-bisect') a.start.skipBisect = true;
    else if (f === '--budget') a.fuzz.budget = num(argv[++i], f);
    else if (f === '--no-bug-history') a.fuzz.bugHistory = false;
    else if (f === '--loader') {
      const l = argv[++i];
      if (l !== 'built' && l !== 'tsx') throw new Error('--loader is built or tsx');
      a.emulator.loader = l;
    } else if (f === '--help' || f === '-h') {
      console.log('usage: npm run -s bench -- [--json] [--events N] [--iterations N] [--runs N] [--processes N] [--in-process] [--loader built|tsx] [--skip-trace] [--skip-emulator] [--skip-fuzz] [--skip-fuzz-speed] [--fuzz-traces N] [--detection] [--campaigns N] [--fuzz-workers N] [--plugins a,b] [--only a,b] [--alone] [--budget S] [--no-bug-history] [--skip-start] [--start-runs N] [--bisect-sizes 100k,1M,5M] [--skip-bisect]');
      process.exit(0);
    } else throw new Error(`unknown argument '${f}'`);
  }
  return a;
}

/** Numeric leaves of a nested result as `path: value` lines (the codec benchmark's shape is its own business). */
function leaves(v: unknown, prefix: string, out: string[]): void {
  if (typeof v === 'number') out.push(`  ${prefix}: ${Number.isInteger(v) ? v.toLocaleString('en-US') : v}`);
  else if (typeof v === 'string' && prefix) out.push(`  ${prefix}: ${v}`);
  else if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) leaves(x, prefix ? `${prefix}.${k}` : k, out);
}

function formatTraceReport(r: Record<string, unknown>, events: number): string {
  const out = [`Trace codec (tools/bench/trace.ts), ${events.toLocaleString('en-US')} events per trace, medians:`];
  leaves(r, '', out);
  return out.join('\n');
}

async function main(): Promise<void> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    process.exitCode = 2;
    return;
  }
  const log = (l: string) => console.error(l);
  const result: { node: string; cpus: number; cpuModel: string; trace?: Record<string, unknown> | null; emulator?: EmulatorBenchResult; fuzz?: FuzzBenchResult; fuzzSpeed?: FuzzSpeedResult; start?: StartBenchResult } = {
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
  };
  const sections: string[] = [`nvx benchmarks: Node ${process.version}, ${result.cpus} CPUs (${result.cpuModel})`];

  if (!args.skipTrace) {
    const tb = traceBench();
    if (tb) {
      log(`trace codec: ${args.events} events per trace ...`);
      result.trace = await tb.benchTrace({ events: args.events, log });
      sections.push(tb.formatTraceBench ? tb.formatTraceBench(result.trace) : formatTraceReport(result.trace, args.events));
    } else {
      result.trace = null;
      sections.push('Trace codec: tools/bench/trace.ts is not there; skipped.');
    }
  }
  if (!args.skipEmulator) {
    result.emulator = await benchEmulator({ ...args.emulator, log });
    sections.push(formatEmulatorReport(result.emulator));
  }
  if (!args.skipFuzzSpeed) {
    result.fuzzSpeed = benchFuzzSpeed({ traces: args.fuzzTraces, log });
    sections.push(formatFuzzSpeed(result.fuzzSpeed));
  }
  if (!args.skipFuzz) {
    result.fuzz = await benchFuzz({ ...args.fuzz, detection: args.detection, log });
    sections.push(formatFuzzReport(result.fuzz));
  }
  if (!args.skipStart) {
    result.start = await benchStart({ ...args.start, log });
    sections.push(formatStartReport(result.start));
  }
  if (args.json) console.log(JSON.stringify(result, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2));
  else console.log(sections.join('\n\n'));
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
