/**
 * Fuzz throughput the way issue 14's goal states it: one profile against
 * reference, one worker (this thread), generated traces checked in lockstep
 * (`FuzzEngine.runBlock`: outcomes every event, architectural states at
 * nested entries and exits, coverage recorded), the packages as built.
 *
 *   npx tsx tools/bench/fuzz-speed.ts [--json] [--profile optimized] [--traces 1000] [--rounds 5] [--seed 1]
 *
 * One round measures, one after the other on the same blocks of the seed
 * space (blocks 0, 1, ... of campaign seed `seed`, 100 traces each):
 *   full:     `runBlock`, what `nvx fuzz --workers 1 --profiles <p>` runs;
 *   generate: the generator alone (the same traces, drawn and dropped);
 *   check:    `checkTrace` alone on those traces, drawn beforehand.
 * The order of the three changes from round to round, and each figure is
 * the median of the rounds with its range. A divergence of the profile on
 * the drawn traces (a known finding) is found once before the rounds and
 * then counted, not minimized, as a campaign counts a signature it has
 * reported; one the drawn traces did not show stops the bench. Traces/s
 * is given as measured (the generator's traces average fewer than 100
 * events) and per 100 events (events/s / 100), the unit of the goal
 * (4,000 traces/s).
 */
import * as os from 'os';
import { performance } from 'perf_hooks';
import type fcType from 'fast-check';
import type * as fuzzSrc from '../../packages/check/src/fuzz';
import type * as coverageSrc from '../../packages/check/src/coverage';
import type { MixedTrace } from '../../packages/check/src/mix';
import { builtModule, median } from './emulator';

type FuzzModule = typeof fuzzSrc;
type CoverageModule = typeof coverageSrc;

export interface FuzzSpeedOptions {
  /** the one profile checked against reference (default optimized) */
  profile?: string;
  /** traces per measurement (default 1,000: 10 blocks) */
  traces?: number;
  /** rounds (default 5) */
  rounds?: number;
  /** campaign seed (default 1) */
  seed?: number;
  log?: (line: string) => void;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface FuzzSpeedResult {
  node: string;
  cpus: number;
  loadavg: number[];
  profile: string;
  seed: number;
  traces: number;
  rounds: number;
  /** events per generated trace, on average */
  meanEvents: number;
  /** traces/s of the whole loop as measured */
  tracesPerSec: Spread;
  /** events/s of the whole loop */
  eventsPerSec: Spread;
  /** events/s / 100: 100-event traces per second, the goal's unit */
  per100: Spread;
  /** generation alone and checking alone, in traces/s */
  generatePerSec: Spread;
  checkPerSec: Spread;
  /** the share of the loop's time the generator takes (per round: t_generate / (t_generate + t_check)) */
  generateShare: Spread;
  goal: { target: number; met: boolean };
}

const spread = (xs: number[]): Spread => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

export function benchFuzzSpeed(o: FuzzSpeedOptions = {}): FuzzSpeedResult {
  const log = o.log ?? (() => undefined);
  const profile = o.profile ?? 'optimized';
  const traces = Math.max(1, o.traces ?? 1000);
  const rounds = Math.max(1, o.rounds ?? 5);
  const seed = o.seed ?? 1;
  const fz = builtModule('packages/check/src/fuzz.ts') as FuzzModule;
  const cv = builtModule('packages/check/src/coverage.ts') as CoverageModule;
  // the fast-check the built modules use (one instance: the arbitraries come from it)
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fc = require('fast-check') as typeof fcType;
  const cfg = fz.resolveConfig({ profiles: [profile], blockSize: 100 });
  const blocks = [...fz.shardBlocks({ index: 1, count: 1 }, cfg.blockSize, traces)];

  const full = (engine: fuzzSrc.FuzzEngine, known: ReadonlySet<string>) => {
    let runs = 0;
    let events = 0;
    const t0 = performance.now();
    for (const b of blocks) {
      const r = engine.runBlock({ block: b.block, seed: fz.blockSeed(seed, b.block), runs: b.runs });
      for (const sig of Object.keys(r.signatures)) if (!known.has(sig)) throw new Error(`${profile} diverges from reference on block ${b.block} (${sig}) where the drawn traces did not: the benchmark needs the same traces every round`);
      runs += r.runs;
      events += r.events;
    }
    return { runs, events, ms: performance.now() - t0 };
  };
  const generate = (engine: fuzzSrc.FuzzEngine, keep: MixedTrace[] | null) => {
    let runs = 0;
    let events = 0;
    const t0 = performance.now();
    for (const b of blocks) {
      fc.check(
        fc.property(engine.arbitrary, (t) => {
          runs++;
          events += t.events.length;
          keep?.push(t);
        }),
        { seed: fz.blockSeed(seed, b.block), numRuns: b.runs },
      );
    }
    return { runs, events, ms: performance.now() - t0 };
  };
  const check = (engine: fuzzSrc.FuzzEngine, list: readonly MixedTrace[]) => {
    const cov = new cv.CoverageRecorder();
    const permitted: Record<string, number> = {};
    let events = 0;
    const t0 = performance.now();
    for (const t of list) {
      engine.checkTrace(t, cov, permitted);
      events += t.events.length;
    }
    return { runs: list.length, events, ms: performance.now() - t0 };
  };

  const engine = new fz.FuzzEngine(cfg);
  const list: MixedTrace[] = [];
  log(`fuzz speed: ${profile} vs reference, one worker, ${traces} traces from seed ${seed}, ${rounds} rounds (+1 warm-up)`);
  generate(engine, list);
  // the profile's known findings on these traces: the engine counts them without minimizing them again (as a campaign does
  // for a signature it has already reported), so every round checks the same traces the same way
  const known = new Set<string>();
  for (const t of list) for (const b of engine.checkTrace(t)) known.add(b.signature);
  engine.learn([...known]);
  if (known.size) log(`  ${profile} diverges on these traces (${[...known].join('; ')}): counted, not minimized`);
  // warm-up: one of each
  full(engine, known);
  check(engine, list);
  const tps: number[] = [];
  const eps: number[] = [];
  const gps: number[] = [];
  const cps: number[] = [];
  const share: number[] = [];
  let meanEvents = 0;
  for (let r = 0; r < rounds; r++) {
    const order = [(): void => {
      const x = full(engine, known);
      tps.push((x.runs / x.ms) * 1000);
      eps.push((x.events / x.ms) * 1000);
      meanEvents = x.events / x.runs;
    }];
    let g = 0;
    let c = 0;
    order.push(() => {
      const x = generate(engine, null);
      g = x.ms;
      gps.push((x.runs / x.ms) * 1000);
    });
    order.push(() => {
      const x = check(engine, list);
      c = x.ms;
      cps.push((x.runs / x.ms) * 1000);
    });
    // rotate which goes first
    for (let i = 0; i < order.length; i++) order[(i + r) % order.length]();
    share.push(g / (g + c));
    log(`  round ${r + 1}/${rounds}: ${tps[tps.length - 1].toFixed(0)} traces/s, ${eps[eps.length - 1].toFixed(0)} events/s`);
  }
  const per100 = eps.map((x) => x / 100);
  const p = spread(per100);
  return {
    node: process.version,
    cpus: os.cpus().length,
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    profile,
    seed,
    traces,
    rounds,
    meanEvents,
    tracesPerSec: spread(tps),
    eventsPerSec: spread(eps),
    per100: p,
    generatePerSec: spread(gps),
    checkPerSec: spread(cps),
    generateShare: spread(share),
    goal: { target: 4000, met: p.median >= 4000 },
  };
}

export function formatFuzzSpeed(r: FuzzSpeedResult): string {
  const f = (s: Spread, d = 0) => `${s.median.toFixed(d)} (${s.min.toFixed(d)}-${s.max.toFixed(d)})`;
  const pct = (s: Spread) => `${(100 * s.median).toFixed(0)}% (${(100 * s.min).toFixed(0)}-${(100 * s.max).toFixed(0)}%)`;
  return [
    `Fuzz speed (tools/bench/fuzz-speed.ts): ${r.profile} vs reference, one worker, ${r.traces} traces of seed ${r.seed}, median of ${r.rounds} rounds (range); ` +
      `Node ${r.node}, ${r.cpus} CPUs, load average ${r.loadavg.join(' ')}`,
    `  whole loop (generate, check in lockstep, coverage): ${f(r.tracesPerSec)} traces/s of ${r.meanEvents.toFixed(1)} events, ${f(r.eventsPerSec)} events/s`,
    `  generation alone: ${f(r.generatePerSec)} traces/s; checking alone: ${f(r.checkPerSec)} traces/s; generation's share of the two: ${pct(r.generateShare)}`,
    `  ${r.goal.met ? 'met    ' : 'NOT met'}  fuzz, one profile, one worker: ${f(r.per100)} 100-event traces/s (goal >= ${r.goal.target.toLocaleString('en-US')})`,
  ].join('\n');
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const o: FuzzSpeedOptions = { log: (l) => console.error(l) };
  let json = false;
  const num = (v: string | undefined, flag: string) => {
    const x = Number(v);
    if (!Number.isSafeInteger(x) || x <= 0) {
      console.error(`bench/fuzz-speed: ${flag} needs a positive integer`);
      process.exit(2);
    }
    return x;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') json = true;
    else if (a === '--profile') o.profile = argv[++i];
    else if (a === '--traces') o.traces = num(argv[++i], a);
    else if (a === '--rounds') o.rounds = num(argv[++i], a);
    else if (a === '--seed') o.seed = num(argv[++i], a);
    else {
      console.error(`bench/fuzz-speed: unknown argument '${a}'`);
      process.exit(2);
    }
  }
  const r = benchFuzzSpeed(o);
  console.log(json ? JSON.stringify(r, null, 2) : formatFuzzSpeed(r));
}
