/**
 * Fuzz benchmarks, run through the built `nvx fuzz` (build first; the
 * bench does `tsc -b packages/cli`):
 *
 *  - throughput: traces/s and events/s of the default campaign (every
 *    area, every default profile, no finding) with 1 worker and with 2,
 *    comparing states at nested entries and exits (the default) and only at
 *    the end; and the figure the speed goal is stated in: one profile
 *    (`optimized`), one worker, states at entries and exits, with traces/s
 *    also given per 100 events (events/s / 100) since generated traces
 *    average fewer than 100 events;
 *  - detection power (--detection): for each broken path of a set of
 *    plugin modules (default: every fixture in BROKEN_PATHS; --plugins
 *    takes files or directories, e.g. a bug-history set), N campaigns
 *    (--campaigns, default 10; seeds 1000, 1001, ...) of a default
 *    `nvx fuzz` on 2 workers with the plugin loaded: the broken path is
 *    checked together with every default profile, budget 60 s,
 *    `--max-findings 1`. A campaign finds it when its first finding is that
 *    path's, a new bug; reported: campaigns that found it within 60 s, the
 *    time and runs to the finding (median, worst), the minimized size
 *    (median, worst) and how many minimized to at most 12 events. Goals:
 *    found in at least 9 campaigns of 10, minimized to at most 12 events.
 *    `--alone` checks the broken path alone (faster, not the default
 *    campaign). With the fixtures (unless --skip-fixtures), every entry of
 *    the bug-history set that diverges (tools/bug-history/catalog.ts
 *    BUG_HISTORY), each with its own plugin module and profile (default
 *    unless --plugins; --no-bug-history leaves them out). A campaign
 *    stops at its first finding (`--max-findings 1`), so a found entry
 *    costs the time to find and minimize it, a missed one the budget.
 *  - the generators alone (with the throughput figures): traces/s and
 *    events/s of arbWorldTrace, arbMixedTrace and arbCampaignTrace (what a
 *    default campaign draws), no replay.
 *
 *   npx tsx tools/bench/detection.ts [--json] [--detection] [--campaigns N] [--workers N] [--budget 60]
 *                                    [--plugins file-or-dir,...] [--only name,...] [--alone] [--time 8s]
 *                                    [--bug-history|--no-bug-history] [--skip-fixtures]
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
  /** 'default': every default profile; otherwise the one profile checked */
  what: string;
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
  /** the plugin module it comes from */
  module: string;
  /** one entry per campaign seed */
  seeds: { seed: number; found: boolean; ms: number; runs: number; generated: number; minimized: number; minimizeMs: number; other?: string }[];
  found: number;
  medianMs: number;
  maxMs: number;
  medianRuns: number;
  maxRuns: number;
  maxMinimized: number;
  medianMinimized: number;
  /** campaigns whose finding minimized to at most 12 events */
  small: number;
  allFound: boolean;
}

/** A generator alone: traces/s and events/s of fc.sample, no replay. */
export interface GeneratorRow {
  generator: 'world' | 'mix' | 'campaign';
  traces: number;
  ms: number;
  tracesPerSec: number;
  eventsPerTrace: number;
  eventsPerSec: number;
}

export interface FuzzBenchResult {
  node: string;
  cpus: number;
  loadavg: number[];
  throughput: ThroughputRow[];
  /** the generators alone (arbWorldTrace, arbMixedTrace, arbCampaignTrace: what a campaign draws) */
  generators?: GeneratorRow[];
  detection?: DetectionRow[];
  /** how the detection campaigns ran */
  detectionSetup?: { workers: number; budget: number; alone: boolean };
}

export interface FuzzBenchOptions {
  /** seconds per throughput figure (default 8) */
  seconds?: number;
  /** leave the throughput figures out */
  skipThroughput?: boolean;
  detection?: boolean;
  /** campaigns per broken path (default 10) */
  campaigns?: number;
  /** workers per campaign (default 2) */
  workers?: number;
  /** budget per campaign, seconds (default 60) */
  budget?: number;
  /** plugin modules or directories of them (default: every fixture in BROKEN_PATHS) */
  plugins?: string[];
  /** only these broken paths (by name) */
  only?: string[];
  /** check the broken path alone instead of with every default profile */
  alone?: boolean;
  /**
   * also every entry of the bug-history set that diverges (tools/bug-history/catalog.ts
   * BUG_HISTORY: its plugin module and profile); default: on unless `plugins` is given
   */
  bugHistory?: boolean;
  /** leave the broken fixtures out (with bugHistory: the bug-history set only) */
  skipFixtures?: boolean;
  log?: (line: string) => void;
}

interface Summary {
  runs: number;
  events: number;
  ms: number;
  tracesPerSec: number;
  eventsPerSec: number;
  profiles: string[];
  findings: { name: string; profile: string; classification: string; kind: { verdict: string }; generatedEvents: number; minimizedEvents: number; minimizeMs: number; foundAtRun: number }[];
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

/** One profile however its paths are joined and ordered ('a=x,b=y' or 'b=y+a=x'). */
const sameProfile = (a: string, b: string) => a.split(/[,+]/).sort().join(',') === b.split(/[,+]/).sort().join(',');

/** The plugin module files of a list of files and directories (a directory: its .js/.cjs/.mjs/.ts files, not .d.ts). */
export function pluginFiles(specs: readonly string[]): string[] {
  const out: string[] = [];
  for (const spec of specs) {
    const abs = path.resolve(spec);
    if (fs.statSync(abs).isDirectory()) {
      for (const f of fs.readdirSync(abs).sort()) if (/\.(c|m)?(js|ts)$/.test(f) && !f.endsWith('.d.ts')) out.push(path.join(abs, f));
    } else out.push(abs);
  }
  return out;
}

interface CheckDist {
  arbWorldTrace(): import('fast-check').Arbitrary<{ events: unknown[] }>;
  arbMixedTrace(): import('fast-check').Arbitrary<{ events: unknown[] }>;
  arbCampaignTrace(): import('fast-check').Arbitrary<{ events: unknown[] }>;
  loadPathModule(file: string): Promise<{ area: string; name: string; summary?: string }[]>;
  defaultFuzzProfiles(areas: readonly string[], expected?: readonly string[]): string[];
  expectedDivergingProfiles(dirs: readonly string[]): Promise<string[]>;
  AREA_IDS?: readonly string[];
  BROKEN_PATHS: { path: { area: string; name: string }; description: string }[];
}

export async function benchFuzz(o: FuzzBenchOptions = {}): Promise<FuzzBenchResult> {
  const log = o.log ?? (() => undefined);
  const seconds = o.seconds ?? 8;
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-b', 'packages/cli'], { cwd: ROOT, stdio: 'pipe' });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-bench-fuzz-'));
  try {
    const throughput: ThroughputRow[] = [];
    const figure = (what: string, workers: number, stateAt: 'entries' | 'end') => {
      log(`fuzz throughput: ${what === 'default' ? 'default profiles' : `profile ${what}`}, ${workers} worker${workers > 1 ? 's' : ''}, states at ${stateAt}, ${seconds} s ...`);
      // from the project root: the corpus there leaves out the paths known to diverge
      const args = ['--time', `${seconds}s`, '--workers', String(workers), '--seed', '1', '--state-at', stateAt, '--out', path.join(tmp, 'tp'), '-q'];
      if (what !== 'default') args.push('--profiles', what);
      const s = nvxFuzz(args, ROOT);
      throughput.push({
        workers,
        stateAt,
        what,
        seconds: s.ms / 1000,
        runs: s.runs,
        events: s.events,
        profiles: s.profiles.length,
        tracesPerSec: s.tracesPerSec,
        eventsPerSec: s.eventsPerSec,
        tracesPerSecPerWorker: Math.round((s.tracesPerSec / workers) * 10) / 10,
      });
    };
    if (!o.skipThroughput) {
      for (const stateAt of ['entries', 'end'] as const) for (const workers of [1, 2]) figure('default', workers, stateAt);
      figure('optimized', 1, 'entries');
    }
    const result: FuzzBenchResult = { node: process.version, cpus: os.cpus().length, loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100), throughput };
    if (!o.skipThroughput) result.generators = benchGenerators(log);
    if (o.detection) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const check = require(path.join(ROOT, 'packages', 'check', 'dist')) as CheckDist;
      let modules: string[];
      if (o.plugins?.length) modules = pluginFiles(o.plugins);
      else if (o.skipFixtures) modules = [];
      else {
        // every fixture, as one plugin module the command loads
        const plugin = path.join(tmp, 'broken-fixtures.js');
        fs.writeFileSync(plugin, "module.exports = require('@nvx/check').BROKEN_PATHS.map((b) => b.path);\n");
        modules = [plugin];
      }
      const described = new Map(check.BROKEN_PATHS.map((b) => [`${b.path.area}=${b.path.name}`, b.description]));
      const fixtures: { spec: string; module: string; description: string }[] = [];
      for (const m of modules) {
        for (const p of await check.loadPathModule(m)) {
          const spec = `${p.area}=${p.name}`;
          if (o.only?.length && !o.only.includes(p.name) && !o.only.includes(spec)) continue;
          fixtures.push({ spec, module: m, description: described.get(spec) ?? p.summary ?? '' });
        }
      }
      if (o.bugHistory ?? !o.plugins?.length) {
        // each entry's own profile (an area path, a patch of the operations table, or both)
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { BUG_HISTORY } = require(path.join(ROOT, 'tools', 'bug-history', 'catalog')) as { BUG_HISTORY: readonly { commit: string; subject: string; status: string; plugin?: string; profile?: string }[] };
        for (const b of BUG_HISTORY) {
          if (b.status !== 'diverges' || !b.plugin || !b.profile) continue;
          if (o.only?.length && !o.only.some((x) => x === b.commit || x === b.profile || b.profile!.includes(x))) continue;
          fixtures.push({ spec: b.profile, module: path.join(ROOT, 'tools', 'bug-history', b.plugin), description: `${b.commit} ${b.subject}` });
        }
      }
      const expected = await check.expectedDivergingProfiles([path.join(ROOT, 'traces', 'scenarios'), path.join(ROOT, 'traces', 'regressions')]);
      const areas = ['msr-bitmap', 'evmcs', 'shadow-vmcs', 'guest-pages', 'cpuid-fault'];
      const defaults = check.defaultFuzzProfiles(areas, expected).map((p) => p.replace(/,/g, '+'));
      const seeds = Array.from({ length: o.campaigns ?? 10 }, (_, i) => 1000 + i);
      const budget = o.budget ?? 60;
      const workers = o.workers ?? 2;
      result.detection = [];
      result.detectionSetup = { workers, budget, alone: !!o.alone };
      for (const fx of fixtures) {
        const cli = fx.spec.replace(/,/g, '+');
        const profiles = o.alone ? [cli] : [cli, ...defaults.filter((d) => d !== cli)];
        const rows = seeds.map((seed) => {
          log(`detection: ${fx.spec}, campaign seed ${seed} ...`);
          const s = nvxFuzz(['--path-module', fx.module, '--profiles', profiles.join(','), '--workers', String(workers), '--seed', String(seed), '--max-findings', '1', '--time', `${budget}s`, '--out', path.join(tmp, 'det'), '-q'], ROOT);
          const f = s.findings[0];
          const ours = !!f && sameProfile(f.profile, fx.spec) && f.classification === 'new' && f.kind.verdict === 'bug';
          const ms = s.firstFinding?.ms ?? s.ms;
          return {
            seed,
            found: ours && ms <= budget * 1000,
            ms,
            runs: s.firstFinding?.runs ?? s.runs,
            generated: f?.generatedEvents ?? 0,
            minimized: ours ? f.minimizedEvents : 0,
            minimizeMs: f?.minimizeMs ?? 0,
            other: f && !ours ? `${f.classification} finding of ${f.profile}` : undefined,
          };
        });
        const hit = rows.filter((r) => r.found);
        result.detection.push({
          fixture: fx.spec,
          description: fx.description,
          module: path.relative(ROOT, fx.module).startsWith('..') ? path.basename(fx.module) : path.relative(ROOT, fx.module),
          seeds: rows,
          found: hit.length,
          medianMs: median(hit.map((r) => r.ms)),
          maxMs: Math.max(0, ...hit.map((r) => r.ms)),
          medianRuns: median(hit.map((r) => r.runs)),
          maxRuns: Math.max(0, ...hit.map((r) => r.runs)),
          maxMinimized: Math.max(0, ...hit.map((r) => r.minimized)),
          medianMinimized: median(hit.map((r) => r.minimized)),
          small: hit.filter((r) => r.minimized <= 12).length,
          allFound: hit.length === rows.length,
        });
      }
    }
    return result;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** The generators alone, in this process (the built check package): 300 traces each after 30 to warm up. */
export function benchGenerators(log: (line: string) => void = () => undefined): GeneratorRow[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const check = require(path.join(ROOT, 'packages', 'check', 'dist')) as CheckDist;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fc = require('fast-check') as typeof import('fast-check');
  const rows: GeneratorRow[] = [];
  const arbs = { world: check.arbWorldTrace(), mix: check.arbMixedTrace(), campaign: check.arbCampaignTrace() } as const;
  for (const generator of ['world', 'mix', 'campaign'] as const) {
    log(`generator alone: ${generator} ...`);
    fc.sample(arbs[generator], { seed: 1, numRuns: 30 });
    const traces = 300;
    const t0 = performance.now();
    const s = fc.sample(arbs[generator], { seed: 2, numRuns: traces });
    const ms = performance.now() - t0;
    const events = s.reduce((a, t) => a + t.events.length, 0);
    rows.push({ generator, traces, ms: Math.round(ms), tracesPerSec: Math.round((traces / ms) * 1000), eventsPerTrace: Math.round((events / traces) * 10) / 10, eventsPerSec: Math.round((events / ms) * 1000) });
  }
  return rows;
}

export function formatFuzzReport(r: FuzzBenchResult): string {
  const out: string[] = [];
  if (r.generators?.length) {
    out.push(`Generators alone (fc.sample, no replay; Node ${r.node}, load average ${r.loadavg.join(' ')}):`);
    for (const g of r.generators) out.push(`  ${g.generator.padEnd(9)} ${String(g.tracesPerSec).padStart(6)} traces/s  ${g.eventsPerTrace.toFixed(1).padStart(6)} events/trace  ${String(g.eventsPerSec).padStart(7)} events/s`);
    out.push('');
  }
  const def = r.throughput.filter((t) => t.what === 'default');
  if (def.length) {
    out.push(`Fuzz throughput (nvx fuzz, default campaign: every area, ${def[0].profiles} profiles against reference; Node ${r.node}, ${r.cpus} CPUs, load average ${r.loadavg.join(' ')}):`);
    out.push(`  ${'states compared'.padEnd(28)} ${'workers'.padStart(7)} ${'traces/s'.padStart(9)} ${'per worker'.padStart(10)} ${'events/s'.padStart(9)} ${'runs'.padStart(7)}`);
    for (const t of def) {
      const what = t.stateAt === 'entries' ? 'at entries/exits (default)' : 'at the end only';
      out.push(`  ${what.padEnd(28)} ${String(t.workers).padStart(7)} ${t.tracesPerSec.toFixed(1).padStart(9)} ${t.tracesPerSecPerWorker.toFixed(1).padStart(10)} ${String(t.eventsPerSec).padStart(9)} ${String(t.runs).padStart(7)}`);
    }
  }
  for (const t of r.throughput.filter((x) => x.what !== 'default')) {
    out.push(
      `One profile (${t.what}), one worker, states at entries/exits: ${t.tracesPerSec.toFixed(1)} traces/s of ${(t.events / Math.max(t.runs, 1)).toFixed(1)} events on average, ` +
        `${t.eventsPerSec} events/s = ${(t.eventsPerSec / 100).toFixed(1)} 100-event traces/s (goal 4,000)`,
    );
  }
  if (r.detection) {
    const n = r.detection[0]?.seeds.length ?? 0;
    if (out.length) out.push('');
    const st = r.detectionSetup ?? { workers: 2, budget: 60, alone: false };
    const how = st.alone ? 'nvx fuzz checking the broken path alone' : 'a default nvx fuzz with the broken path loaded (it and every default profile)';
    out.push(`Detection power (${how}, ${st.workers} worker${st.workers > 1 ? 's' : ''}, ${st.budget} s, ${n} campaigns each, seeds 1000..${999 + n}; load average ${r.loadavg.join(' ')}; found: the campaign's first finding, within the budget, is that path's, new, verdict bug (a campaign stops at its first finding); goals: found in at least 9 campaigns of 10 within 60 s, minimized to at most 12 events):`);
    out.push(`  ${'broken path'.padEnd(52)} ${'found'.padStart(6)} ${'median s'.padStart(8)} ${'max s'.padStart(6)} ${'median runs'.padStart(11)} ${'max runs'.padStart(8)} ${'minimized'.padStart(9)} ${'<= 12'.padStart(6)}`);
    for (const d of r.detection) {
      const found = `${d.found}/${d.seeds.length}`;
      const mins = d.found === 0 ? '-' : d.medianMinimized === d.maxMinimized ? String(d.maxMinimized) : `${d.medianMinimized}-${d.maxMinimized}`;
      out.push(
        `  ${d.fixture.padEnd(52)} ${found.padStart(6)} ${(d.medianMs / 1000).toFixed(2).padStart(8)} ${(d.maxMs / 1000).toFixed(2).padStart(6)} ${String(d.medianRuns).padStart(11)} ${String(d.maxRuns).padStart(8)} ${mins.padStart(9)} ${`${d.small}/${d.seeds.length}`.padStart(6)}`,
      );
      for (const s of d.seeds.filter((x) => x.other)) out.push(`    seed ${s.seed}: the first finding was a ${s.other}`);
    }
    const need = Math.ceil((n * 9) / 10);
    const weak = r.detection.filter((d) => d.found < need).map((d) => d.fixture);
    const big = r.detection.filter((d) => d.small < need).map((d) => d.fixture);
    out.push(`  ${weak.length ? `found in fewer than ${need} of ${n} campaigns: ${weak.join(', ')}` : `every broken path found in at least ${need} of ${n} campaigns`}; ${big.length ? `minimized to at most 12 events in fewer than ${need}: ${big.join(', ')}` : `minimized to at most 12 events in at least ${need}`}`);
  }
  return out.join('\n');
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const opts: FuzzBenchOptions = { log: (l) => console.error(l) };
  let json = false;
  const usage = () => {
    console.error('usage: npx tsx tools/bench/detection.ts [--json] [--detection] [--campaigns N] [--workers N] [--budget 60] [--plugins file-or-dir,...] [--only name,...] [--alone] [--bug-history|--no-bug-history] [--skip-fixtures] [--skip-throughput] [--time 8s]');
    process.exit(2);
  };
  const num = (v: string | undefined) => {
    const x = Number(String(v).replace(/s$/, ''));
    if (!Number.isFinite(x) || x <= 0) usage();
    return x;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') json = true;
    else if (a === '--detection') opts.detection = true;
    else if (a === '--campaigns' || a === '--seeds') opts.campaigns = num(argv[++i]);
    else if (a === '--workers') opts.workers = num(argv[++i]);
    else if (a === '--budget') opts.budget = num(argv[++i]);
    else if (a === '--plugins') opts.plugins = String(argv[++i]).split(',').filter(Boolean);
    else if (a === '--only') opts.only = String(argv[++i]).split(',').filter(Boolean);
    else if (a === '--alone') opts.alone = true;
    else if (a === '--bug-history') opts.bugHistory = true;
    else if (a === '--no-bug-history') opts.bugHistory = false;
    else if (a === '--skip-fixtures') opts.skipFixtures = true;
    else if (a === '--skip-throughput') opts.skipThroughput = true;
    else if (a === '--time') opts.seconds = num(argv[++i]);
    else usage();
  }
  benchFuzz(opts).then(
    (r) => console.log(json ? JSON.stringify(r, null, 2) : formatFuzzReport(r)),
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
