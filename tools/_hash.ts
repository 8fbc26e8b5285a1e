import { performance } from 'perf_hooks';
import { cpuidLoop } from '../packages/check/src/workloads';
import { initialState, parseProfile, Replayer, archHash, archView } from '../packages/emulator/src';
const wl = cpuidLoop(1000); const opt = parseProfile('optimized');
const r = new Replayer(initialState(wl.header, opt), opt); for (const e of wl.events) r.apply(e);
const w = r.peek();
console.log(Object.keys(w.mem.pages).length, 'pages', archView(w).size, 'entries');
for (let k = 0; k < 3; k++) { let t0 = performance.now(); for (let i = 0; i < 200; i++) archView(w); const av = (performance.now() - t0) * 5;
t0 = performance.now(); for (let i = 0; i < 200; i++) archHash(w); console.log('archView us', av.toFixed(1), 'archHash us', ((performance.now() - t0) * 5).toFixed(1)); }
