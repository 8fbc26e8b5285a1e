import { performance } from 'perf_hooks';
import { cpuidLoop } from '../packages/check/src/workloads';
import { applyEvent, initialState, newCosts, parseProfile } from '../packages/emulator/src';
const wl = cpuidLoop(100000);
const ev = wl.events;
for (const name of [process.argv[2] ?? "optimized"]) { const p = parseProfile(name); const r: number[] = [];
 for (let rep = 0; rep < 5; rep++) {
  const w = initialState(wl.header, p); const ctx = { inPlace: true, fresh: null, profile: p, cost: newCosts() };
  const t0 = performance.now(); for (let i = 0; i < ev.length; i++) applyEvent(ctx, w, ev[i]); r.push(ev.length / (performance.now() - t0) / 1000);
 }
 console.log('ceiling', name, r.map((x) => x.toFixed(2)).join(' '));
}
