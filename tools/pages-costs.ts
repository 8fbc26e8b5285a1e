/**
 * The guest-pages cost summary: a memslot_perf_test-shaped workload (seed
 * 003's benchmark: L1 runs the selftest, L2 is its guest, unmanaged memory)
 * replayed under each guest-pages path, with memremap/memunmap calls and
 * estimated time per phase beside seed 003's figures.
 *
 *   npx tsx tools/pages-costs.ts [--scale N] [--slots N] [--json]
 *
 * --scale divides the selftest's areas and slot count (same shape, fewer
 * events; the default 1 replays about 0.2 million events per path).
 * Estimated time: the counters priced by packages/emulator/data/cost-table.json,
 * at an assumed 3.0 GHz.
 */
import { COST_TABLE, Costs, estimateCycles } from '../packages/emulator/src';
import { MEMSLOT_PERF_PHASES, MemslotPerfPhase, PhaseCosts, SEED_003_FIGURES, memslotPerfCosts } from '../packages/check/src/workloads-pages';

const GHZ = 3.0;

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`);
  return v;
}

const seconds = (c: Costs) => estimateCycles(c).total / (GHZ * 1e9);
const fmt = (s: number) => (s >= 1 ? `${s.toFixed(2)} s` : s >= 1e-3 ? `${(s * 1e3).toFixed(1)} ms` : `${(s * 1e6).toFixed(0)} us`);
const ratio = (a: number, b: number) => (b === 0 ? 'inf' : `${(a / b).toFixed(a / b >= 100 ? 0 : 1)}x`);

function main(): void {
  const scale = arg('--scale', 1);
  const slots = arg('--slots', 8192);
  const rows = memslotPerfCosts({ scale, slots });
  const by = (phase: MemslotPerfPhase, path: string) => rows.find((r) => r.phase === phase && r.profile.endsWith(`guest-pages=${path}`)) as PhaseCosts;
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify({ scale, slots, ghz: GHZ, rows: rows.map((r) => ({ ...r, seconds: seconds(r.costs) })) }, null, 2));
    return;
  }
  const pair = COST_TABLE.filter((e) => e.counter === 'memremaps' || e.counter === 'memunmaps').reduce((a, e) => a + e.cycles, 0);
  console.log(`memslot_perf_test in L1, L2 its guest, unmanaged memory: ${slots} memslots, scale 1/${scale}, one iteration per phase`);
  console.log(`profiles: msr-bitmap=merge with each guest-pages path; time = cost-table cycles at ${GHZ} GHz (memremap+memunmap pair: ${pair} cycles)\n`);
  console.log('| phase | round trips | path | memremaps | memunmaps | refreshes | est. time | seed 003 |');
  console.log('|---|---:|---|---:|---:|---:|---:|---:|');
  for (const phase of MEMSLOT_PERF_PHASES) {
    for (const path of ['kvm-map', 'pfncache', 'pfncache-ctx']) {
      const r = by(phase, path);
      const seed = path === 'kvm-map' ? `${SEED_003_FIGURES[phase].before} s` : path === 'pfncache-ctx' ? `${SEED_003_FIGURES[phase].after} s` : '';
      console.log(`| ${phase} | ${r.roundTrips} | ${path} | ${r.costs.memremaps} | ${r.costs.memunmaps} | ${r.costs.gpcRefreshes} | ${fmt(seconds(r.costs))} | ${seed} |`);
    }
  }
  console.log('\n| phase | model: kvm-map / pfncache-ctx | seed 003: before / after |');
  console.log('|---|---:|---:|');
  for (const phase of MEMSLOT_PERF_PHASES) {
    const a = seconds(by(phase, 'kvm-map').costs);
    const b = seconds(by(phase, 'pfncache-ctx').costs);
    console.log(`| ${phase} | ${ratio(a, b)} | ${ratio(SEED_003_FIGURES[phase].before, SEED_003_FIGURES[phase].after)} |`);
  }
}

main();
