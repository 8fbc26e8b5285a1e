/**
 * Fuzz benchmarks, run through the built `nvx fuzz` (build first; the
 * bench does `tsc -b packages/cli`):
 *
 *  - throughput: traces/s and events/s of the default campaign (every
 *    area, every default profile, no finding) with 1 worker and with 2,
 *    comparing states at nested entries and exits (the default) and only at
 *    the end;
 *  - detection power (--detection): for each broken fixture in
 *    BROKEN_PATHS, `nvx fuzz` with default settings and one worker
 *    (`--workers 1 --profiles <area>=<fixture> --max-findings 1`, the
 *    fixtures loaded as a plugin module): the time and runs to the first
 *    finding, and the size of the minimized trace, for several campaign
 *    seeds; goals: found within 60 s on one core, minimized to at most 12
 *    events.
 *
 *   npx tsx tools/bench/detection.ts [--json] [--detection] [--seeds N] [--time 8s]
 *
 * Events/s counts events of the generated traces: each is replayed once
 * under reference and once per profile checked.
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'nvx.js');

export interface ThroughputRow {
  workers: number;
  stateAt: 'entries' | 'end';
  seconds: number;
  runs: number;
  events: number;
  profiles: number;
  tracesPerSec: number;
  eventsPerSec: number;
  tracesPerSecPerWorker: number;
}

export interface DetectionRow {
  fixture: string;
  description: string;
  /** one entry per campaign seed */
  seeds: { seed: number; found: boolean; ms: number; runs: number; generated: number; minimized: number; minimizeMs: number }[];
  medianMs: number;
  maxMs: number;
  medianRuns: number;
  maxRuns: number;
  maxMinimized: number;
  medianMinimized: number;
  allFound: boolean;
}

export interface FuzzBenchResult {
  node: string;
  cpus: number;
  loadavg: number[];
  throughput: ThroughputRow[];
  detection?: DetectionRow[];
}

export interface FuzzBenchOptions {
  /** seconds per throughput figure (default 8) */
  seconds?: number;
  detection?: boolean;
  /** campaign seeds per fixture (default 3) */
  seeds?: number;
  log?: (line: string) => void;
}

interface Summary {
  runs: number;
  events: number;
  ms: number;
  tracesPerSec: number;
  eventsPerSec: number;
  profiles: string[];
  findings: { name: string; generatedEvents: number; minimizedEvents: number; minimizeMs: number; foundAtRun: number }[];
  firstFinding?: { ms: number; runs: number };
}

function nvxFuzz(args: string[], cwd: string): Summary {
  const r = spawnSync(process.execPath, [BIN, 'fuzz', '--json', ...args], { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0 && r.status !== 1) throw new Error(`nvx fuzz ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Summary;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : 0;
};

export function benchFuzz(o: FuzzBenchOptions = {}): FuzzBenchResult {
  const log = o.log ?? (() => undefined);
  const seconds = o.seconds ?? 8;
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-b', 'packages/cli'], { cwd: ROOT, stdio: 'pipe' });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-bench-fuzz-'));
  try {
    const throughput: ThroughputRow[] = [];
    for (const stateAt of ['entries', 'end'] as const) {
      for (const workers of [1, 2]) {
        log(`fuzz throughput: ${workers} worker${workers > 1 ? 's' : ''}, states at ${stateAt}, ${seconds} s ...`);
        // from the project root: the corpus there leaves out the paths known to diverge
        const s = nvxFuzz(['--time', `${seconds}s`, '--workers', String(workers), '--seed', '1', '--state-at', stateAt, '--out', path.join(tmp, 'tp'), '-q'], ROOT);
        throughput.push({
          workers,
          stateAt,
          seconds: s.ms / 1000,
          runs: s.runs,
          events: s.events,
          profiles: s.profiles.length,
          tracesPerSec: s.tracesPerSec,
          eventsPerSec: s.eventsPerSec,
          tracesPerSecPerWorker: Math.round((s.tracesPerSec / workers) * 10) / 10,
        });
      }
    }
    const result: FuzzBenchResult = { node: process.version, cpus: os.cpus().length, loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100), throughput };
    if (o.detection) {
      // every fixture, as a plugin module the command loads
      const plugin = path.join(tmp, 'broken-fixtures.js');
      fs.writeFileSync(plugin, "module.exports = require('@nvx/check').BROKEN_PATHS.map((b) => b.path);\n");
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const fixtures = (require(path.join(ROOT, 'packages', 'check', 'dist', 'fixtures')) as { BROKEN_PATHS: { path: { area: string; name: string }; description: string }[] }).BROKEN_PATHS;
      const seeds = Array.from({ length: o.seeds ?? 3 }, (_, i) => 1000 + i);
      result.detection = fixtures.map((b) => {
        const spec = `${b.path.area}=${b.path.name}`;
        const rows = seeds.map((seed) => {
          log(`detection: ${spec}, seed ${seed} ...`);
          const s = nvxFuzz(['--path-module', plugin, '--profiles', spec, '--workers', '1', '--seed', String(seed), '--max-findings', '1', '--time', '60s', '--out', path.join(tmp, 'det'), '-q'], ROOT);
          const f = s.findings[0];
          return {
            seed,
            found: !!f,
            ms: s.firstFinding?.ms ?? s.ms,
            runs: s.firstFinding?.runs ?? s.runs,
            generated: f?.generatedEvents ?? 0,
            minimized: f?.minimizedEvents ?? 0,
            minimizeMs: f?.minimizeMs ?? 0,
          };
        });
        return {
          fixture: spec,
          description: b.description,
          seeds: rows,
          medianMs: median(rows.map((r) => r.ms)),
          maxMs: Math.max(...rows.map((r) => r.ms)),
          medianRuns: median(rows.map((r) => r.runs)),
          maxRuns: Math.max(...rows.map((r) => r.runs)),
          maxMinimized: Math.max(...rows.map((r) => r.minimized)),
          medianMinimized: median(rows.map((r) => r.minimized)),
          allFound: rows.every((r) => r.found),
        };
      });
    }
    return result;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export function formatFuzzReport(r: FuzzBenchResult): string {
  const out = [`Fuzz throughput (nvx fuzz, default campaign: every area, ${r.throughput[0]?.profiles ?? '?'} profiles against reference; Node ${r.node}, ${r.cpus} CPUs, load average ${r.loadavg.join(' ')}):`];
  out.push(`  ${'states compared'.padEnd(28)} ${'workers'.padStart(7)} ${'traces/s'.padStart(9)} ${'per worker'.padStart(10)} ${'events/s'.padStart(9)} ${'runs'.padStart(7)}`);
  for (const t of r.throughput) {
    const what = t.stateAt === 'entries' ? 'at entries/exits (default)' : 'at the end only';
    out.push(`  ${what.padEnd(28)} ${String(t.workers).padStart(7)} ${t.tracesPerSec.toFixed(1).padStart(9)} ${t.tracesPerSecPerWorker.toFixed(1).padStart(10)} ${String(t.eventsPerSec).padStart(9)} ${String(t.runs).padStart(7)}`);
  }
  if (r.detection) {
    out.push('');
    out.push(`Detection power (nvx fuzz --workers 1 --profiles <fixture>, default settings; ${r.detection[0]?.seeds.length ?? 0} campaign seeds each; goals: found within 60 s, minimized to at most 12 events):`);
    out.push(`  ${'fixture'.padEnd(52)} ${'found'.padStart(5)} ${'median s'.padStart(8)} ${'max s'.padStart(6)} ${'median runs'.padStart(11)} ${'max runs'.padStart(8)} ${'minimized'.padStart(9)}`);
    for (const d of r.detection) {
      const found = `${d.seeds.filter((s) => s.found).length}/${d.seeds.length}`;
      const mins = d.medianMinimized === d.maxMinimized ? String(d.maxMinimized) : `${d.medianMinimized}-${d.maxMinimized}`;
      out.push(`  ${d.fixture.padEnd(52)} ${found.padStart(5)} ${(d.medianMs / 1000).toFixed(2).padStart(8)} ${(d.maxMs / 1000).toFixed(2).padStart(6)} ${String(d.medianRuns).padStart(11)} ${String(d.maxRuns).padStart(8)} ${mins.padStart(9)}`);
    }
    const all = r.detection.every((d) => d.allFound && d.maxMs <= 60_000);
    const small = r.detection.filter((d) => d.maxMinimized > 12).map((d) => d.fixture);
    out.push(`  ${all ? 'every fixture found within 60 s by every seed' : 'NOT every fixture found within 60 s'}; ${small.length ? `minimized above 12 events: ${small.join(', ')}` : 'every finding minimized to at most 12 events'}`);
  }
  return out.join('\n');
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const opts: FuzzBenchOptions = { log: (l) => console.error(l) };
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') json = true;
    else if (a === '--detection') opts.detection = true;
    else if (a === '--seeds') opts.seeds = Number(argv[++i]);
    else if (a === '--time') opts.seconds = Number(String(argv[++i]).replace(/s$/, ''));
    else {
      console.error('usage: npx tsx tools/bench/detection.ts [--json] [--detection] [--seeds N] [--time 8s]');
      process.exit(2);
    }
  }
  const r = benchFuzz(opts);
  console.log(json ? JSON.stringify(r, null, 2) : formatFuzzReport(r));
}
