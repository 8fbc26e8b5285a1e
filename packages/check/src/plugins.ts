/**
 * Plugin paths: a user's module that implements an area's path interface
 * (`packages/emulator/src/paths.ts`), loaded at run time so a
 * developer can check an optimization they are writing (`nvx ...
 * --path-module ./my-path.ts`).
 *
 * A module is CommonJS or ES syntax in `.js`/`.cjs`/`.mjs`, or TypeScript in
 * `.ts`/`.cts`/`.mts` (transpiled in memory with the `typescript`
 * package's `transpileModule`, without type checking). It exports one path
 * object, an array of them, or either as `default`; otherwise every named
 * export that looks like a path (an object with an `area`) is taken. Each
 * path is checked against its area's interface (the members every path has,
 * `REQUIRED_METHODS`, `OPTIONAL_METHODS`) and registered with
 * `registerPath`, after which profiles can name it (`msr-bitmap=my-path`).
 *
 * `@nvx/*` imports inside a plugin resolve to the very modules nvx itself
 * runs, so a plugin that reuses the emulator's helpers shares its state;
 * relative imports of other `.ts`/`.js` files are loaded the same way.
 * Loading the same unchanged file again returns the same paths.
 *
 * A module may also export patches of the operations table
 * (`packages/emulator/src/ops.ts`), alongside paths or instead of them:
 * `{ kind: 'patch', name, summary, ops: { nested_vmx_run: (orig) => (ctx, w, v, launch) => ... } }`.
 * Each is checked (the operation names, with the closest ones when a name
 * is unknown; every entry a function of `orig` returning a function of the
 * operation's parameters) and registered with `registerPatch`, after which
 * a profile can name it (`patch=my-fix`, `patch=a+b`).
 */
import * as fs from 'fs';
import { createRequire } from 'module';
import * as path from 'path';
import { pathToFileURL } from 'url';
import { AREAS, AREA_IDS, AreaId, AreaPath, KVM_OPS, OPTIONAL_METHODS, OP_PARAMS, OpName, PATCHES, Patch, REQUIRED_MEMBERS, REQUIRED_METHODS, closestOps, registerPatch, registerPath, unregisterPatch } from '@nvx/emulator';

/** A module that cannot be loaded or does not fit the interface; the message names the file. */
export class PluginError extends Error {
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(message);
    this.name = 'PluginError';
  }
}

export interface LoadPathModuleOptions {
  /** told about members that are not part of the area's interface (probably misspelt hooks) */
  warn?: (message: string) => void;
}

const SCRIPT_EXT = ['.js', '.cjs', '.mjs'];
const TS_EXT = ['.ts', '.cts', '.mts'];
/** Extensions tried, in order, for a relative import without one. */
const RESOLVE_EXT = ['.ts', '.js', '.cts', '.cjs', '.mts', '.mjs'];
/** Members any path may carry whatever its area: the reducer offers these hooks to every area's path. */
const ANY_AREA_HOOKS = ['init', 'explain', 'initVm', 'onGuestWrite', 'onHostMemory'];
/** A name must survive profile specs (`area=name,area=name`, `+` in --profiles lists). */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

interface Loaded {
  mtimeMs: number;
  size: number;
  paths: AreaPath[];
  patches: Patch[];
}

/** Files loaded so far (absolute), with their paths: a reload of an unchanged file returns these. */
const loaded = new Map<string, Loaded>();
/** `area=name` (a path) or `patch=name` -> the module file that registered it */
const owners = new Map<string, string>();

/** The absolute names of the modules loaded so far, in load order (for handing to worker threads). */
export function loadedPathModules(): string[] {
  return [...loaded.keys()];
}

/**
 * Load a user's path module, check every path it exports against its
 * area's interface and register each. Resolves to the paths, in export
 * order; rejects with a PluginError naming the file (and the area, path and
 * missing method when a path does not fit).
 */
export async function loadPathModule(file: string, opts: LoadPathModuleOptions = {}): Promise<AreaPath[]> {
  const abs = path.resolve(file);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new PluginError(`${file}: no such path module`, file);
  }
  if (!st.isFile()) throw new PluginError(`${file}: not a file`, file);
  const ext = path.extname(abs).toLowerCase();
  if (!SCRIPT_EXT.includes(ext) && !TS_EXT.includes(ext)) {
    throw new PluginError(`${file}: a path module is a .js, .cjs, .mjs, .ts, .cts or .mts file`, file);
  }
  const prev = loaded.get(abs);
  if (prev && prev.mtimeMs === st.mtimeMs && prev.size === st.size) return prev.paths;
  return (await loadPluginModuleAt(file, abs, st, opts)).paths;
}

/**
 * Load a plugin module: its paths and its patches, each checked and
 * registered (see loadPathModule). Resolves to both lists.
 */
export async function loadPluginModule(file: string, opts: LoadPathModuleOptions = {}): Promise<{ paths: AreaPath[]; patches: Patch[] }> {
  await loadPathModule(file, opts);
  const now = loaded.get(path.resolve(file))!;
  return { paths: now.paths, patches: now.patches };
}

async function loadPluginModuleAt(file: string, abs: string, st: fs.Stats, opts: LoadPathModuleOptions): Promise<{ paths: AreaPath[]; patches: Patch[] }> {
  const prev = loaded.get(abs);
  const exported = new ModuleLoader(file).load(abs);
  const candidates = pathsOf(exported, file);
  const paths = candidates.filter((c) => !isPatchLike(c.value)).map(({ value, label }) => validatePath(value, file, label, opts.warn));
  const patches = candidates.filter((c) => isPatchLike(c.value)).map(({ value, label }) => validatePatch(value, file, label));
  const patchNames = new Set<string>();
  for (const p of patches) {
    if (patchNames.has(p.name)) throw new PluginError(`${file}: two patches are named '${p.name}'`, file);
    patchNames.add(p.name);
    const owner = owners.get(`patch=${p.name}`);
    if (PATCHES.has(p.name) && owner !== abs) {
      throw new PluginError(`${file}: there is already a patch named '${p.name}' (${owner ? `registered by ${owner}` : 'registered by the program'}); give the patch another name`, file);
    }
  }
  const names = new Set<string>();
  for (const p of paths) {
    const key = `${p.area}=${p.name}`;
    if (names.has(key)) throw new PluginError(`${file}: two paths of area ${p.area} are named '${p.name}'`, file);
    names.add(key);
  }
  // A changed file replaces what it registered before; a name another file or nvx owns is refused.
  for (const p of paths) {
    const key = `${p.area}=${p.name}`;
    const owner = owners.get(key);
    const existing = AREAS[p.area].paths.get(p.name);
    if (existing && owner !== abs) {
      const by = owner ? `already registered by ${owner}` : 'a built-in path or one registered by the program';
      throw new PluginError(`${file}: area ${p.area} already has a path named '${p.name}' (${by}); give the plugin path another name`, file);
    }
  }
  for (const p of prev?.paths ?? []) {
    const key = `${p.area}=${p.name}`;
    if (owners.get(key) !== abs) continue;
    AREAS[p.area].paths.delete(p.name);
    owners.delete(key);
  }
  for (const p of prev?.patches ?? []) {
    if (owners.get(`patch=${p.name}`) !== abs) continue;
    unregisterPatch(p.name);
    owners.delete(`patch=${p.name}`);
  }
  for (const p of paths) {
    try {
      registerPath(p);
    } catch (e) {
      throw new PluginError(`${file}: ${e instanceof Error ? e.message : String(e)}`, file);
    }
    owners.set(`${p.area}=${p.name}`, abs);
  }
  for (const p of patches) {
    try {
      registerPatch(p);
    } catch (e) {
      throw new PluginError(`${file}: ${e instanceof Error ? e.message : String(e)}`, file);
    }
    owners.set(`patch=${p.name}`, abs);
  }
  loaded.set(abs, { mtimeMs: st.mtimeMs, size: st.size, paths, patches });
  return { paths, patches };
}

/** Does an exported value present itself as a patch (rather than a path)? */
function isPatchLike(v: unknown): boolean {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && (v as { kind?: unknown }).kind === 'patch';
}

/**
 * Check one exported patch: name, summary, and every entry of `ops` an
 * operation of the table, a function of `orig` (called once here with the
 * built-in operation, as it is when a profile is resolved) that returns a
 * function taking the operation's parameters (or `...args`). Throws a
 * PluginError naming the file, the patch, the operation and the problem.
 */
export function validatePatch(value: unknown, file: string, label = 'the patch'): Patch {
  const o = value as Record<string, unknown>;
  const name = o.name;
  if (typeof name !== 'string' || !name) throw new PluginError(`${file}: ${label} (kind 'patch') has no name (a string such as 'my-fix')`, file);
  if (!NAME_RE.test(name)) throw new PluginError(`${file}: patch '${name}': a name is letters, digits, '.', '_' and '-' (profiles read ',', '=' and '+')`, file);
  const who = `patch '${name}'`;
  if (typeof o.summary !== 'string') throw new PluginError(`${file}: ${who} has no summary (a string: one line on what the patch changes)`, file);
  const ops = o.ops;
  if (ops === null || typeof ops !== 'object' || Array.isArray(ops)) throw new PluginError(`${file}: ${who}: ops is ${describe(ops)}, not an object of operation wrappers ({ nested_vmx_run: (orig) => (ctx, w, v, launch) => ... })`, file);
  const entries = Object.entries(ops as Record<string, unknown>);
  if (!entries.length) throw new PluginError(`${file}: ${who}: ops is empty (name at least one operation; \`nvx paths\` lists them)`, file);
  for (const [op, wrap] of entries) {
    if (!(op in OP_PARAMS)) throw new PluginError(`${file}: ${who}: no operation '${op}'${closestOps(op)}`, file);
    const params = OP_PARAMS[op as OpName];
    const shape = `(orig) => (${params.join(', ')}) => ...`;
    if (typeof wrap !== 'function') throw new PluginError(`${file}: ${who}: ${op} is ${describe(wrap)}, not a function ${shape}`, file);
    if (wrap.length > 1) throw new PluginError(`${file}: ${who}: ${op} takes ${wrap.length} parameters; it is a function of the original operation only: ${shape}`, file);
    let fn: unknown;
    try {
      fn = (wrap as (orig: unknown) => unknown)(KVM_OPS[op as OpName]);
    } catch (e) {
      throw new PluginError(`${file}: ${who}: ${op}(orig) threw: ${e instanceof Error ? e.message : String(e)}`, file);
    }
    if (typeof fn !== 'function') throw new PluginError(`${file}: ${who}: ${op}(orig) returned ${describe(fn)}, not the operation to use: ${shape}`, file);
    const n = (fn as (...a: unknown[]) => unknown).length;
    if (n !== 0 && n !== params.length) {
      throw new PluginError(`${file}: ${who}: the function ${op}(orig) returns declares ${n} parameter${n === 1 ? '' : 's'}; ${op} takes ${params.length}: (${params.join(', ')})`, file);
    }
  }
  return value as Patch;
}

/** The path objects a module exports, with a label for messages. */
function pathsOf(exported: unknown, file: string): { value: unknown; label: string }[] {
  const ns = exported as Record<string, unknown> | null | undefined;
  const list = (v: unknown, label: string) => (Array.isArray(v) ? v.map((x, i) => ({ value: x, label: `${label}[${i}]` })) : [{ value: v, label }]);
  let out: { value: unknown; label: string }[];
  if (ns && typeof ns === 'object' && !Array.isArray(ns) && 'default' in ns && ns.default !== undefined) out = list(ns.default, 'default export');
  else if (Array.isArray(ns) || (ns && typeof ns === 'object' && ('area' in ns || isPatchLike(ns)))) out = list(ns, 'module.exports');
  else if (ns && typeof ns === 'object') {
    out = Object.entries(ns)
      .filter(([, v]) => v !== null && typeof v === 'object' && ('area' in (v as object) || isPatchLike(v)))
      .map(([k, v]) => ({ value: v, label: `export '${k}'` }));
  } else out = [];
  if (!out.length) {
    throw new PluginError(
      `${file}: exports no path or patch (export one path or patch object, an array of them, or either as default: module.exports = path, or export default path)`,
      file,
    );
  }
  return out;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  }
  return d[a.length][b.length];
}

/** Every member name of an object, own and inherited (a path may be a class instance). */
function memberNames(o: object): string[] {
  const out = new Set<string>();
  for (let p: object | null = o; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const k of Object.getOwnPropertyNames(p)) if (k !== 'constructor') out.add(k);
  }
  return [...out];
}

/**
 * Check one exported value against its area's interface; returns it typed.
 * Throws a PluginError that names the file, the area, the path and what is
 * missing or wrong. `warn` hears about function members the interface does
 * not know (a misspelt hook is otherwise silently never called).
 */
export function validatePath(value: unknown, file: string, label = 'the path', warn?: (message: string) => void): AreaPath {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new PluginError(`${file}: ${label} is ${describe(value)}, not a path object (with area, name, summary and the area's methods)`, file);
  }
  const o = value as Record<string, unknown>;
  const area = o.area;
  if (typeof area !== 'string' || !(AREA_IDS as readonly string[]).includes(area)) {
    const got = area === undefined ? 'has no area' : `has unknown area ${JSON.stringify(area)}`;
    throw new PluginError(`${file}: ${label} ${got} (areas: ${AREA_IDS.join(', ')})`, file);
  }
  const a = area as AreaId;
  const name = o.name;
  if (typeof name !== 'string' || !name) throw new PluginError(`${file}: ${label} (area ${a}) has no name (a string such as 'my-${a}')`, file);
  if (!NAME_RE.test(name)) throw new PluginError(`${file}: path '${name}' (area ${a}): a name is letters, digits, '.', '_' and '-' (profiles read ',', '=' and '+')`, file);
  const who = `path '${name}' (area ${a})`;
  if (typeof o.summary !== 'string') throw new PluginError(`${file}: ${who} has no summary (a string: one line on what the path does)`, file);
  const required: readonly string[] = REQUIRED_METHODS[a];
  const optional: readonly string[] = OPTIONAL_METHODS[a];
  const missing = required.filter((m) => o[m] === undefined);
  if (missing.length) {
    const s = missing.length > 1 ? 's' : '';
    throw new PluginError(
      `${file}: ${who} is missing method${s} ${missing.join(', ')} (${/^[aeio]|^msr/.test(a) ? 'an' : 'a'} ${a} path implements ${required.join(', ')}; see the ${interfaceName(a)} interface and docs/plugins.md)`,
      file,
    );
  }
  for (const m of [...required, ...optional, ...ANY_AREA_HOOKS]) {
    if (o[m] !== undefined && typeof o[m] !== 'function') throw new PluginError(`${file}: ${who}: ${m} is ${describe(o[m])}, not a method`, file);
  }
  if (warn) {
    const known = new Set<string>([...REQUIRED_MEMBERS, ...required, ...optional, ...ANY_AREA_HOOKS]);
    for (const k of memberNames(o)) {
      if (known.has(k) || typeof o[k] !== 'function') continue;
      const near = [...known].filter((x) => editDistance(x.toLowerCase(), k.toLowerCase()) <= 2);
      warn(`${file}: ${who}: method '${k}' is not part of the ${a} path interface and is never called${near.length ? ` (did you mean ${near.map((x) => `'${x}'`).join(' or ')}?)` : ''}`);
    }
  }
  return value as AreaPath;
}

function interfaceName(a: AreaId): string {
  return { 'msr-bitmap': 'MsrBitmapPath', evmcs: 'EvmcsPath', 'shadow-vmcs': 'ShadowVmcsPath', 'guest-pages': 'GuestPagesPath', 'cpuid-fault': 'CpuidFaultPath' }[a];
}

// ---- loading ----

type TypeScript = typeof import('typescript');
let typescript: TypeScript | undefined;

/** The typescript package: nvx's own, else the one of the current project or of the module. */
function loadTypescript(abs: string, shown: string): TypeScript {
  if (typescript) return typescript;
  const attempts: (() => unknown)[] = [() => require('typescript'), () => createRequire(path.join(process.cwd(), 'noop.js'))('typescript'), () => createRequire(abs)('typescript')];
  for (const attempt of attempts) {
    try {
      const ts = attempt() as TypeScript;
      if (ts && typeof ts.transpileModule === 'function') return (typescript = ts);
    } catch {
      /* try the next place */
    }
  }
  throw new PluginError(`${shown}: loading a TypeScript path module needs the typescript package (npm install --save-dev typescript), or compile the module to .js`, shown);
}

/** Does this JavaScript use import/export statements (ES module syntax)? */
function looksLikeEsm(code: string): boolean {
  return /^\s*(import\s*[\w{*'"]|export\s+(default|const|let|var|function|class|async|\{|\*))/m.test(code);
}

/** Loads a module and the relative modules it imports, each once, sharing nvx's own `@nvx/*` modules. */
class ModuleLoader {
  private readonly cache = new Map<string, { exports: unknown }>();

  constructor(private readonly top: string) {}

  /** A file as messages show it: the top module as the user named it, others relative to it. */
  private shown(abs: string): string {
    const top = path.resolve(this.top);
    return abs === top ? this.top : path.join(path.dirname(this.top), path.relative(path.dirname(top), abs));
  }

  load(abs: string): unknown {
    const hit = this.cache.get(abs);
    if (hit) return hit.exports;
    let source: string;
    try {
      source = fs.readFileSync(abs, 'utf8');
    } catch (e) {
      throw new PluginError(`${this.shown(abs)}: cannot read: ${(e as Error).message}`, this.top);
    }
    const ext = path.extname(abs).toLowerCase();
    const code = TS_EXT.includes(ext) || ext === '.mjs' || (ext === '.js' && looksLikeEsm(source)) ? this.transpile(abs, source) : source;
    const module = { exports: {} as unknown };
    this.cache.set(abs, module);
    try {
      const fn = new Function('exports', 'require', 'module', '__filename', '__dirname', `${code}\n//# sourceURL=${pathToFileURL(abs).href}`) as (
        exports: unknown,
        require: (id: string) => unknown,
        module: { exports: unknown },
        filename: string,
        dirname: string,
      ) => void;
      fn.call(module.exports, module.exports, this.requireFor(abs), module, abs, path.dirname(abs));
    } catch (e) {
      this.cache.delete(abs);
      if (e instanceof PluginError) throw e;
      throw new PluginError(`${this.shown(abs)}: the module threw while loading: ${errorText(e, abs, code !== source)}`, this.top);
    }
    return module.exports;
  }

  private transpile(abs: string, code: string): string {
    const ts = loadTypescript(abs, this.shown(abs));
    const out = ts.transpileModule(code, {
      fileName: abs,
      reportDiagnostics: true,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, allowJs: true, sourceMap: false, inlineSourceMap: false },
    });
    const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
    if (errors.length) {
      const d = errors[0];
      let where = '';
      if (d.file && d.start !== undefined) {
        const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
        where = `:${line + 1}:${character + 1}`;
      }
      throw new PluginError(`${this.shown(abs)}${where}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`, this.top);
    }
    return out.outputText;
  }

  private requireFor(from: string): (id: string) => unknown {
    const native = createRequire(from);
    const req = (id: string): unknown => {
      // nvx's own packages: the instances nvx runs (so registerPath, AREAS and helpers are shared)
      if (id.startsWith('@nvx/')) return require(id);
      if (id.startsWith('.') || path.isAbsolute(id)) {
        const target = resolveLocal(path.resolve(path.dirname(from), id));
        if (target && (TS_EXT.includes(path.extname(target)) || SCRIPT_EXT.includes(path.extname(target)))) return this.load(target);
      }
      return native(id);
    };
    return Object.assign(req, { resolve: native.resolve, cache: native.cache, main: undefined });
  }
}

/** A relative import's file: as written, with one of the known extensions, or a folder's index. */
function resolveLocal(base: string): string | undefined {
  const isFile = (f: string) => {
    try {
      return fs.statSync(f).isFile();
    } catch {
      return false;
    }
  };
  if (isFile(base)) return base;
  // `./helper.js` written in a .ts module may name `./helper.ts`
  const stem = base.replace(/\.(c|m)?js$/, '');
  for (const e of RESOLVE_EXT) if (isFile(stem + e)) return stem + e;
  for (const e of RESOLVE_EXT) if (isFile(path.join(base, 'index' + e))) return path.join(base, 'index' + e);
  return undefined;
}

/** Lines `new Function` puts before the body. */
const WRAPPER_LINES = 2;

/** An error thrown by a plugin, with the plugin's own line when the stack shows it (and the code ran as written). */
function errorText(e: unknown, abs: string, transpiled: boolean): string {
  if (!(e instanceof Error)) return String(e);
  if (transpiled) return e.message;
  const url = pathToFileURL(abs).href;
  const frame = (e.stack ?? '').split('\n').find((l) => l.includes(url));
  const at = frame?.match(/:(\d+):(\d+)\)?\s*$/);
  return `${e.message}${at ? ` (line ${Number(at[1]) - WRAPPER_LINES})` : ''}`;
}
