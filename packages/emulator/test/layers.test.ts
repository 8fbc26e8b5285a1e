/**
 * One import direction (docs/design.md, Layers): the core never imports an
 * area. Areas import the core; the wiring modules (profile.ts, index.ts)
 * import both. Parses the import specifiers of every module of src/ and
 * fails naming the module and the import that breaks the rule.
 */
import * as fs from 'fs';
import * as path from 'path';

const SRC = path.join(__dirname, '..', 'src');
/** The modules allowed to import areas/: the registry of built-in paths and the package's entry point. */
const WIRING = new Set(['profile.ts', 'index.ts']);

/** Every relative import or re-export specifier of a TypeScript source (type-only ones included). */
function importsOf(source: string): string[] {
  const out: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|\brequire\(\s*['"]([^'"]+)['"]\s*\)|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (let m = re.exec(source); m; m = re.exec(source)) out.push(m[1] ?? m[2] ?? m[3] ?? m[4]);
  return out;
}

function modules(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...modules(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

const resolveUnder = (from: string, spec: string) => path.relative(SRC, path.resolve(path.dirname(from), spec)).split(path.sep).join('/');

describe('layers', () => {
  const all = modules(SRC);
  const core = all.filter((f) => path.dirname(f) === SRC && !WIRING.has(path.basename(f)));

  test('the import parser sees every form of import', () => {
    const src = "import { a } from './x';\nimport type { B } from \"../areas/y\";\nexport * from './z';\nexport { c } from './w';\nimport './side';\nconst q = require('./r');\n";
    expect(importsOf(src)).toEqual(['./x', '../areas/y', './z', './w', './side', './r']);
  });

  test('the core is the top-level modules but the wiring ones', () => {
    const names = core.map((f) => path.basename(f));
    for (const m of ['state.ts', 'nested.ts', 'reducer.ts', 'l2.ts', 'ops.ts', 'kvm-ops.ts', 'paths.ts', 'ctx.ts', 'hash.ts']) expect(names).toContain(m);
    expect(names).not.toContain('profile.ts');
  });

  test('no module of the core imports anything under areas/ or a wiring module', () => {
    const offending: string[] = [];
    for (const f of core) {
      for (const spec of importsOf(fs.readFileSync(f, 'utf8'))) {
        if (!spec.startsWith('.')) continue;
        const target = resolveUnder(f, spec);
        if (target.startsWith('areas/') || target === 'areas' || WIRING.has(`${target}.ts`) || WIRING.has(target)) offending.push(`${path.basename(f)} imports '${spec}'`);
      }
    }
    expect(offending).toEqual([]);
  });

  test('areas import the core and their own area only, never another area or the wiring', () => {
    const offending: string[] = [];
    for (const f of all.filter((x) => x.startsWith(path.join(SRC, 'areas') + path.sep))) {
      const own = path.relative(path.join(SRC, 'areas'), f).split(path.sep)[0];
      for (const spec of importsOf(fs.readFileSync(f, 'utf8'))) {
        if (!spec.startsWith('.')) continue;
        const target = resolveUnder(f, spec);
        if (WIRING.has(`${target}.ts`) || (target.startsWith('areas/') && target.split('/')[1] !== own)) offending.push(`${path.relative(SRC, f)} imports '${spec}'`);
      }
    }
    expect(offending).toEqual([]);
  });
});
