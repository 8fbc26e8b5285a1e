import * as fs from 'fs'; import * as path from 'path'; import * as vm from 'vm'; import { createRequire } from 'module'; import * as ts from 'typescript';
import fc from 'fast-check';
function loader(ROOT: string) {
  const cfg = ts.readConfigFile(path.join('/work/main', 'tsconfig.base.json'), (f) => ts.sys.readFile(f));
  const { options } = ts.convertCompilerOptionsFromJson(cfg.config.compilerOptions, ROOT);
  const co = { ...options, declaration: false, sourceMap: false };
  const cache = new Map<string, { exports: any }>();
  const res = (spec: string, from: string) => { const p = /^@nvx\/([\w-]+)$/.exec(spec); let b: string; if (p) b = path.join(ROOT, 'packages', p[1], 'src', 'index'); else if (spec.startsWith('.')) b = path.resolve(path.dirname(from), spec); else return null; for (const f of [b + '.ts', path.join(b, 'index.ts')]) if (fs.existsSync(f)) return f; return null; };
  const load = (file: string): any => { const h = cache.get(file); if (h) return h.exports; const mod = { exports: {} as any }; cache.set(file, mod);
    const js = ts.transpileModule(fs.readFileSync(file, 'utf8'), { fileName: file, compilerOptions: co }).outputText; const fb = createRequire('/work/main/package.json');
    const req = (s: string) => { const r = res(s, file); return r ? load(r) : (s.startsWith('.') ? createRequire(file)(s) : fb(s)); };
    vm.compileFunction(js, ['exports', 'require', 'module', '__filename', '__dirname'], { filename: file }).call(mod.exports, mod.exports, req, mod, file, path.dirname(file)); return mod.exports; };
  return (p: string) => load(path.join(ROOT, 'packages', p));
}
const NEW = loader('/tmp/nvxt/hn'), OLD = loader('/tmp/nvxt/ho');
const E = { new: NEW('emulator/src/index.ts'), old: OLD('emulator/src/index.ts') };
const T = NEW('trace/src/index.ts'); const W = NEW('check/src/workloads.ts'); const A = NEW('check/src/arbitraries.ts');
const j = (x: unknown) => JSON.stringify(x, (_k, v) => typeof v === 'bigint' ? 'n' + v.toString(16) : v);
// every combination of paths
const areas = E.new.AREAS as Record<string, { paths: Map<string, unknown> }>;
let specs: string[] = [''];
for (const [a, info] of Object.entries(areas)) { const next: string[] = []; for (const s of specs) for (const p of info.paths.keys()) next.push(s ? `${s},${a}=${p}` : `${a}=${p}`); specs = next; }
console.log('profiles', specs.length);
let traces = 0, events = 0, checks = 0;
function compare(name: string, header: any, evs: any[], everyHash: boolean) {
  traces++;
  for (const spec of specs) {
    const pn = E.new.parseProfile(spec), po = E.old.parseProfile(spec);
    const rn = new E.new.Replayer(E.new.initialState(header, pn), pn), ro = new E.old.Replayer(E.old.initialState(header, po), po);
    for (let i = 0; i < evs.length; i++) {
      const a = rn.apply(evs[i]), b = ro.apply(evs[i]); events++;
      if (j(a) !== j(b)) throw new Error(`${name} ${spec} event ${i}: outcome ${j(a)} vs ${j(b)}`);
      if (everyHash || i === evs.length - 1) { checks++; if (E.new.stateHash(rn.peek()) !== E.old.stateHash(ro.peek())) throw new Error(`${name} ${spec} event ${i}: state`);
        if (E.new.archHash(rn.peek()) !== E.old.archHash(ro.peek())) throw new Error(`${name} ${spec} event ${i}: archHash`);
        if (j([...E.new.archView(rn.peek())]) !== j([...E.old.archView(ro.peek())])) throw new Error(`${name} ${spec} event ${i}: archView`); }
    }
    if (j(rn.cost) !== j(ro.cost)) throw new Error(`${name} ${spec}: costs ${j(rn.cost)} vs ${j(ro.cost)}`);
    // immer step: outcomes, costs, hashes, and older states never change
    let sn = E.new.initialState(header, pn), so = E.old.initialState(header, po); const kept: [any, string][] = [];
    const lim = Math.min(evs.length, 300);
    for (let i = 0; i < lim; i++) { const x = E.new.step(sn, evs[i], pn), y = E.old.step(so, evs[i], po); sn = x.state; so = y.state;
      if (j(x.outcome) !== j(y.outcome) || j(x.cost) !== j(y.cost)) throw new Error(`${name} ${spec} step ${i}`);
      if (i % 7 === 0 || i === lim - 1) { const h = E.new.stateHash(sn); if (h !== E.old.stateHash(so)) throw new Error(`${name} ${spec} step state ${i}`); kept.push([sn, h]); } }
    for (const [s, h] of kept) if (E.new.stateHash(s) !== h) throw new Error(`${name} ${spec}: an older immer state changed`);
  }
}
for (const [n, wl] of [['evmcs', W.cpuidLoop(30)], ['vmcs', W.cpuidLoop(30, { evmcs: false })], ['vmread', W.cpuidLoopVmread(30)]] as const) compare(n, wl.header, wl.events, true);
(async () => {
  for (const f of fs.readdirSync('/tmp/nvxt/hn/traces/scenarios')) { const t = await T.readTraceFile(path.join('/tmp/nvxt/hn/traces/scenarios', f)); compare(f, t.header, t.events, true); }
  console.log('workloads + scenarios ok', traces, events, checks);
  const N = Number(process.argv[2] ?? 150);
  for (const opts of [{}, { allowViolations: true }, { evmcs: true }, { evmcs: true, allowViolations: true, x2apicControlsDirtyMsrBitmap: false }, { vcpus: 3 }]) {
    const samples = fc.sample(A.arbTrace({ ...opts, maxEvents: 120 }), { numRuns: N, seed: 42 });
    for (const [k, t] of samples.entries()) compare(`arb ${j(opts)} #${k}`, t.header, t.events, true);
    console.log('arb', j(opts), 'ok', traces, events, checks);
  }
})().catch((e) => { console.error('MISMATCH', e); process.exit(1); });
