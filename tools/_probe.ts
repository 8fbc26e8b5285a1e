import { performance } from 'perf_hooks';
import { cpuidLoop } from '../packages/check/src/workloads';
import { Lockstep } from '../packages/check/src/diff';
import { applyEvent, initialState, newCosts, parseProfile, Replayer, archHash, step } from '../packages/emulator/src';
const wl = cpuidLoop(100000);
const ev = wl.events;
const opt = parseProfile('optimized'), ref = parseProfile('reference');
for (const p of [opt, ref]) for (let rep = 0; rep < 3; rep++) {
  const w = initialState(wl.header, p); const ctx = { inPlace: true, fresh: null, profile: p, cost: newCosts() };
  const t0 = performance.now(); for (let i = 0; i < ev.length; i++) applyEvent(ctx, w, ev[i]); const t = performance.now() - t0;
  console.log('ceiling', p.name, (ev.length / t / 1000).toFixed(2), 'M/s');
}
for (let rep = 0; rep < 2; rep++) {
  const r = new Replayer(initialState(wl.header, opt), opt);
  const t0 = performance.now(); let s; for (let i = 0; i < ev.length; i++) { r.apply(ev[i]); if ((i + 1) % 1000 === 0) s = r.snapshot(); } const t = performance.now() - t0;
  console.log('replayer', (ev.length / t / 1000).toFixed(2), 'M/s', !!s);
}
{ const r = new Replayer(initialState(wl.header, opt), opt); for (let i = 0; i < 1000; i++) r.apply(ev[i]);
  let t0 = performance.now(); for (let i = 0; i < 100; i++) r.snapshot(); console.log('snapshot us', ((performance.now() - t0) * 10).toFixed(1));
  t0 = performance.now(); for (let i = 0; i < 20; i++) archHash(r.peek()); console.log('archHash us', ((performance.now() - t0) * 50).toFixed(1)); }
{ const n = 20000; const ls = new Lockstep(wl.header, ref, opt, { checkpointEvery: 1000 });
  const t0 = performance.now(); for (let i = 0; i < n; i++) if (!ls.push(ev[i])) throw new Error('div'); ls.finish(); const t = performance.now() - t0;
  console.log('lockstep', (n / t / 1000).toFixed(3), 'M/s'); }
{ let s = initialState(wl.header, opt); const n = 5000; const t0 = performance.now(); for (let i = 0; i < n; i++) s = step(s, ev[i], opt).state; const t = performance.now() - t0;
  console.log('step', (n / t / 1000).toFixed(3), 'M/s'); }
