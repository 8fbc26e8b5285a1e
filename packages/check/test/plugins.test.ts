/**
 * Plugin paths: modules in every accepted form load and register their
 * paths; a module that does not fit its area's interface is refused with a
 * message naming the file, the area and the missing method (for every
 * required method of every area, from the REQUIRED_METHODS table); the
 * examples load, the correct one passes the msr-bitmap property and the
 * broken one is caught by it.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import fc from 'fast-check';
import { AREAS, AREA_IDS, OPTIONAL_METHODS, REQUIRED_METHODS, parseProfile } from '@nvx/emulator';
import { DivergenceFound, PROPERTY_DEFAULTS, arbTrace, differentialProperty } from '../src/arbitraries';
import { diffEvents } from '../src/diff';
import { PluginError, loadPathModule, loadedPathModules, validatePath } from '../src/plugins';

const ROOT = path.resolve(__dirname, '..', '..', '..');
let dir: string;
const file = (name: string, text: string) => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  return f;
};

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-plugins-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A module whose path copies the area's reference path (own and inherited members), minus `drop`. */
function copyOfReference(area: string, name: string, drop?: string): string {
  return `
const { AREAS } = require('@nvx/emulator');
const base = AREAS['${area}'].paths.get(AREAS['${area}'].reference);
const p = {};
for (let o = base; o && o !== Object.prototype; o = Object.getPrototypeOf(o))
  for (const k of Object.getOwnPropertyNames(o))
    if (k !== 'constructor' && !(k in p)) p[k] = typeof base[k] === 'function' ? base[k].bind(base) : base[k];
${drop ? `delete p[${JSON.stringify(drop)}];` : ''}
p.name = ${JSON.stringify(name)};
module.exports = p;
`;
}

describe('module forms', () => {
  test('CommonJS: module.exports = path; @nvx/* is the emulator nvx runs', async () => {
    const f = file('cjs-one.js', `const { AREAS } = require('@nvx/emulator');\nmodule.exports = { ...AREAS['evmcs'].paths.get('copy-all'), name: 'test-cjs-one', summary: 'copy every group' };\n`);
    const [p] = await loadPathModule(f);
    expect(p.name).toBe('test-cjs-one');
    expect(AREAS.evmcs.paths.get('test-cjs-one')).toBe(p);
    expect(parseProfile('evmcs=test-cjs-one').paths.evmcs).toBe(p);
    expect(loadedPathModules()).toContain(f);
  });

  test('TypeScript with a default export, importing a .ts helper and @nvx/* packages', async () => {
    file('helper.ts', `export const ALL: number = 0xffff;\nexport function all(_clean: number): number { return ALL; }\n`);
    const f = file(
      'ts-default.ts',
      `import { EvmcsPath } from '@nvx/emulator';\nimport { all } from './helper';\nconst p: EvmcsPath = { area: 'evmcs', name: 'test-ts-default', summary: 'copy all (ts)', groupsToCopy: (c: number) => all(c) };\nexport default p;\n`,
    );
    const [p] = await loadPathModule(f);
    expect(p.area).toBe('evmcs');
    expect((p as { groupsToCopy(c: number): number }).groupsToCopy(0)).toBe(0xffff);
  });

  test('an array, named exports, ES syntax in a .js file, a class instance', async () => {
    const arr = await loadPathModule(
      file('array.js', `module.exports = [1, 2].map((i) => ({ area: 'evmcs', name: 'test-array-' + i, summary: 's', groupsToCopy: () => 0xffff }));\n`),
    );
    expect(arr.map((p) => p.name)).toEqual(['test-array-1', 'test-array-2']);
    const named = await loadPathModule(
      file('named.ts', `export const a = { area: 'evmcs' as const, name: 'test-named-a', summary: 's', groupsToCopy: () => 0xffff };\nexport const notAPath = 3;\n`),
    );
    expect(named.map((p) => p.name)).toEqual(['test-named-a']);
    const esm = await loadPathModule(file('esm.js', `export default { area: 'evmcs', name: 'test-esm', summary: 's', groupsToCopy: () => 0xffff };\n`));
    expect(esm[0].name).toBe('test-esm');
    const cls = await loadPathModule(
      file('class.js', `class P { constructor() { this.area = 'evmcs'; this.name = 'test-class'; this.summary = 's'; } groupsToCopy() { return 0xffff; } }\nmodule.exports = new P();\n`),
    );
    expect(cls[0].name).toBe('test-class');
  });

  test('loading an unchanged file again gives the same paths; a changed one replaces its own', async () => {
    const f = file('reload.js', `module.exports = { area: 'evmcs', name: 'test-reload', summary: 'one', groupsToCopy: () => 0xffff };\n`);
    const [a] = await loadPathModule(f);
    const [b] = await loadPathModule(f);
    expect(b).toBe(a);
    fs.writeFileSync(f, `module.exports = { area: 'evmcs', name: 'test-reload', summary: 'two, longer', groupsToCopy: () => 0xffff };\n`);
    fs.utimesSync(f, new Date(), new Date(Date.now() + 5000));
    const [c] = await loadPathModule(f);
    expect(c.summary).toBe('two, longer');
    expect(AREAS.evmcs.paths.get('test-reload')).toBe(c);
  });
});

describe('modules that do not fit', () => {
  const rejects = async (f: string, re: RegExp) => {
    const e = await loadPathModule(f).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(PluginError);
    expect((e as PluginError).message).toMatch(re);
    expect((e as PluginError).message.startsWith(f)).toBe(true);
    return e as PluginError;
  };

  test('every area: a copy of its reference path loads; without any one required method it is refused, naming file, area and method', async () => {
    for (const a of AREA_IDS) {
      const ok = await loadPathModule(file(`full-${a}.js`, copyOfReference(a, `test-full-${a}`)));
      expect(ok[0].area).toBe(a);
      const required: readonly string[] = REQUIRED_METHODS[a];
      expect(required.length).toBeGreaterThan(0);
      for (const m of required) {
        const f = file(`missing-${a}-${m}.js`, copyOfReference(a, `test-missing-${m}`, m));
        await rejects(f, new RegExp(`path 'test-missing-${m}' \\(area ${a}\\) is missing method ${m} \\(an? ${a} path implements ${required.join(', ')};`));
      }
    }
  });

  test('the table lists what the interfaces declare', () => {
    expect(REQUIRED_METHODS['msr-bitmap']).toEqual(['prepare']);
    expect(REQUIRED_METHODS.evmcs).toEqual(['groupsToCopy']);
    for (const a of AREA_IDS) {
      // every built-in path has every required method, and optional ones are functions where present
      for (const p of AREAS[a].paths.values()) {
        for (const m of REQUIRED_METHODS[a]) expect(typeof (p as unknown as Record<string, unknown>)[m]).toBe('function');
        for (const m of OPTIONAL_METHODS[a]) expect(['function', 'undefined']).toContain(typeof (p as unknown as Record<string, unknown>)[m]);
      }
    }
  });

  test('what is wrong is said plainly', async () => {
    await rejects(file('empty.js', `module.exports = {};\n`), /exports no path/);
    await rejects(file('area.js', `module.exports = { area: 'msr-bitmaps', name: 'x', summary: 's', prepare() { return false; } };\n`), /has unknown area "msr-bitmaps" \(areas: msr-bitmap, evmcs/);
    await rejects(file('noname.js', `module.exports = { area: 'evmcs', summary: 's', groupsToCopy: () => 0 };\n`), /module\.exports \(area evmcs\) has no name/);
    await rejects(file('badname.js', `module.exports = { area: 'evmcs', name: 'a,b', summary: 's', groupsToCopy: () => 0 };\n`), /a name is letters, digits/);
    await rejects(file('nosummary.js', `module.exports = { area: 'evmcs', name: 'test-nosummary', groupsToCopy: () => 0 };\n`), /has no summary/);
    await rejects(file('notfn.js', `module.exports = { area: 'evmcs', name: 'test-notfn', summary: 's', groupsToCopy: 3 };\n`), /groupsToCopy is a number, not a method/);
    await rejects(file('hook.js', `module.exports = { area: 'msr-bitmap', name: 'test-hook', summary: 's', prepare: () => false, onGuestWrite: 'x' };\n`), /onGuestWrite is a string, not a method/);
    await rejects(file('builtin.js', `module.exports = { area: 'msr-bitmap', name: 'merge', summary: 's', prepare: () => false };\n`), /area msr-bitmap already has a path named 'merge' \(a built-in path/);
    await rejects(file('throws.js', `const x = 1;\nthrow new Error('not today');\n`), /the module threw while loading: not today \(line 2\)/);
    await rejects(file('syntax.ts', `const x: number = ;\n`), /syntax\.ts:1:19: Expression expected/);
    await rejects(file('list.js', `module.exports = [null];\n`), /module\.exports\[0\] is null, not a path object/);
    await rejects(path.join(dir, 'nope.js'), /no such path module/);
    await rejects(file('wrong.json', `{}`), /a path module is a \.js, \.cjs, \.mjs, \.ts, \.cts or \.mts file/);
    // two files, one name
    await loadPathModule(file('first.js', `module.exports = { area: 'evmcs', name: 'test-taken', summary: 's', groupsToCopy: () => 0xffff };\n`));
    await rejects(file('second.js', `module.exports = { area: 'evmcs', name: 'test-taken', summary: 's', groupsToCopy: () => 0xffff };\n`), /already registered by .*first\.js/);
  });

  test('a method the interface does not know is a warning, with the likely meant one', async () => {
    const warnings: string[] = [];
    await loadPathModule(file('typo.js', `module.exports = { area: 'msr-bitmap', name: 'test-typo', summary: 's', prepare: () => false, onGuestWrites() {} };\n`), { warn: (m) => warnings.push(m) });
    expect(warnings).toEqual([expect.stringMatching(/typo\.js: path 'test-typo' \(area msr-bitmap\): method 'onGuestWrites' is not part of the msr-bitmap path interface .*did you mean 'onGuestWrite'\?/)]);
  });

  test('validatePath alone', () => {
    expect(() => validatePath({ area: 'cpuid-fault', name: 'x', summary: 's', load() {}, put() {} }, 'mine.js')).toThrow(/mine\.js: path 'x' \(area cpuid-fault\) is missing methods update, cpuidExitFaults/);
  });
});

describe('the examples', () => {
  test('examples/msr-bitmap-lazy-merge.ts loads and matches the reference on the msr-bitmap property', async () => {
    const [p] = await loadPathModule(path.join(ROOT, 'examples', 'msr-bitmap-lazy-merge.ts'));
    expect(`${p.area}=${p.name}`).toBe('msr-bitmap=lazy-merge');
    for (const spec of ['msr-bitmap=lazy-merge', 'msr-bitmap=lazy-merge,evmcs=clean-fields']) {
      const r = fc.check(differentialProperty(parseProfile(spec)), PROPERTY_DEFAULTS);
      if (r.failed) throw new Error(`${spec}: ${(r.errorInstance as DivergenceFound).report}`);
    }
    // and it is lazy: on the same traces it skips merges that `merge` does
    let skips = 0;
    let merges = 0;
    const lazy = parseProfile('msr-bitmap=lazy-merge');
    for (const t of fc.sample(arbTrace(), { seed: PROPERTY_DEFAULTS.seed, numRuns: 100 })) {
      const r = diffEvents(t.header, t.events, parseProfile('msr-bitmap=merge'), lazy);
      skips += r.costs.other.msrBitmapMergeSkips;
      merges += r.costs.base.msrBitmapMerges - r.costs.other.msrBitmapMerges;
    }
    expect(skips).toBeGreaterThan(0);
    expect(merges).toBe(skips);
  }, 30_000);

  test('examples/broken-merge.js loads and the default property run catches it (bug verdict)', async () => {
    const [p] = await loadPathModule(path.join(ROOT, 'examples', 'broken-merge.js'));
    const r = fc.check(differentialProperty(parseProfile(`msr-bitmap=${p.name}`)), { ...PROPERTY_DEFAULTS, endOnFailure: true });
    expect(r.failed).toBe(true);
    expect(r.errorInstance).toBeInstanceOf(DivergenceFound);
    expect((r.errorInstance as DivergenceFound).result.divergence!.verdict).toBe('bug');
  });
});
