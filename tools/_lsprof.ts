import { modules } from './bench/emulator';
const m = modules('built');
const wl = m.workloads.cpuidLoop(100000);
const ref = m.emulator.parseProfile('reference'), opt = m.emulator.parseProfile('optimized');
for (let r = 0; r < 4; r++) { const ls = new m.diff.Lockstep(wl.header, ref, opt, { checkpointEvery: 1000 }); for (const e of wl.events) ls.push(e); ls.finish(); }
