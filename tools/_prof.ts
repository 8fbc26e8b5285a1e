import { cpuidLoop } from '../packages/check/src/workloads';
import { applyEvent, initialState, newCosts, parseProfile } from '../packages/emulator/src';
const wl = cpuidLoop(100000);
const p = parseProfile(process.argv[2] ?? 'optimized');
for (let rep = 0; rep < 3; rep++) {
  const w = initialState(wl.header, p); const ctx = { inPlace: true, fresh: null, profile: p, cost: newCosts() };
  for (let i = 0; i < wl.events.length; i++) applyEvent(ctx, w, wl.events[i]);
}
