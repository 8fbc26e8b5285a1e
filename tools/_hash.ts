import { performance } from 'perf_hooks';
import { createHash } from 'crypto';
import { cpuidLoop } from '../packages/check/src/workloads';
import { initialState, parseProfile, Replayer, archHash, archView, gfnToHva } from '../packages/emulator/src';
const wl = cpuidLoop(1000); const opt = parseProfile('optimized');
const r = new Replayer(initialState(wl.header, opt), opt); for (const e of wl.events) r.apply(e);
const w = r.peek();
const T = (name: string, f: () => unknown, n = 500) => { f(); const t0 = performance.now(); for (let i = 0; i < n; i++) f(); console.log(name, ((performance.now() - t0) * 1000 / n).toFixed(1), 'us'); };
for (let k = 0; k < 2; k++) {
T('archView', () => archView(w));
T('archHash', () => archHash(w));
T('loop1024', () => { let c = 0; for (const s of w.mem.slots) for (let i = 0; i < s.npages; i++) { const hva = gfnToHva(w.mem, s.gfn + i); const pfn = hva < 0 ? undefined : w.mem.hvaToPfn[hva]; const p = pfn === undefined ? undefined : w.mem.pages[pfn]; if (p) c++; } return c; });
const page = w.mem.pages[Number(Object.keys(w.mem.pages)[0])];
T('sha hex page', () => createHash('sha256').update(Buffer.from(page).toString('hex')).digest('hex'));
T('every', () => page.every((b) => b === 0));
}
