/**
 * `--path-module` on the commands that replay: the example plugins load
 * from .js and .ts, the broken one is caught by `diff` and `bisect`, the
 * correct one passes; a module that does not fit is a usage error (exit 2)
 * naming the file, the area and the missing method, without a stack.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { nvx } from './fixtures/nvx';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const TRACE = path.join(ROOT, 'traces', 'scenarios', 'l0-intercept-change-in-l2.nvx');
const LAZY = path.join(ROOT, 'examples', 'msr-bitmap-lazy-merge.ts');
const BROKEN = path.join(ROOT, 'examples', 'broken-merge.js');

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-cli-plugins-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('every command that replays takes --path-module', async () => {
  for (const cmd of ['run', 'diff', 'bisect', 'stat', 'report']) {
    const r = await nvx([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--path-module <file>\s+load a path plugin/);
  }
});

test('diff: the broken example is a bug divergence (exit 1); the lazy merge matches the reference (exit 0)', async () => {
  const broken = await nvx(['diff', TRACE, '--path-module', BROKEN, '--profile', 'msr-bitmap=broken-merge']);
  expect(broken.stderr).toBe('');
  expect(broken.code).toBe(1);
  expect(broken.stdout).toMatch(/DIVERGENCE \(bug\) at event 18: l2\.rdmsr MSR_FS_BASE/);
  expect(broken.stdout).toMatch(/msr-bitmap\/broken-merge: vmcs01 read bit: 1/);
  const lazy = await nvx(['diff', TRACE, '--path-module', LAZY, '--profile', 'msr-bitmap=lazy-merge']);
  expect(lazy.stderr).toBe('');
  expect(lazy.code).toBe(0);
  expect(lazy.stdout).toMatch(/^same: msr-bitmap=lazy-merge matches reference on all 35 events/);
  expect(lazy.stdout).toMatch(/msrBitmapMergeSkips\s+0\s+[1-9]/);
});

test('run, bisect, stat and report with two modules at once', async () => {
  const both = ['--path-module', LAZY, '--path-module', BROKEN];
  const run = await nvx(['run', TRACE, ...both, '--profile', 'msr-bitmap=broken-merge', '-q']);
  expect(run.code).toBe(1);
  expect(run.stdout).toMatch(/expect failed at event 18: l2\.rdmsr MSR_FS_BASE/);
  expect((await nvx(['run', TRACE, ...both, '--profile', 'msr-bitmap=lazy-merge', '-q'])).code).toBe(0);
  const bisect = JSON.parse((await nvx(['bisect', TRACE, ...both, '--profile', 'msr-bitmap=broken-merge', '--json'])).stdout);
  expect(bisect.divergence).toMatchObject({ index: 18, verdict: 'bug' });
  const stat = JSON.parse((await nvx(['stat', TRACE, ...both, '--profiles', 'reference,msr-bitmap=lazy-merge,msr-bitmap=broken-merge', '--json'])).stdout);
  expect(stat.profiles.map((p: { profile: string }) => p.profile)).toEqual(['reference', 'msr-bitmap=lazy-merge', 'msr-bitmap=broken-merge']);
  const html = path.join(dir, 'r.html');
  const rep = await nvx(['report', TRACE, '-o', html, ...both, '--profiles', 'reference,msr-bitmap=broken-merge']);
  expect(rep.code).toBe(1); // the page is written; a bug divergence exits 1 as in diff
  expect(rep.stdout).toMatch(/msr-bitmap=broken-merge diverges at event 18 \(bug\)/);
  expect(fs.existsSync(html)).toBe(true);
});

test('a module that does not fit: exit 2, naming file, area and method, no stack', async () => {
  const bad = path.join(dir, 'no-prepare.js');
  fs.writeFileSync(bad, `module.exports = { area: 'msr-bitmap', name: 'no-prepare', summary: 'forgot prepare', explain: () => ({}) };\n`);
  for (const cmd of [['run', TRACE], ['diff', TRACE], ['bisect', TRACE], ['stat', TRACE], ['report', TRACE, '-o', path.join(dir, 'x.html')]]) {
    const r = await nvx([...cmd, '--path-module', bad]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: .*no-prepare\.js: path 'no-prepare' \(area msr-bitmap\) is missing method prepare \(an msr-bitmap path implements prepare; see the MsrBitmapPath interface/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  }
  const missing = await nvx(['diff', TRACE, '--path-module', path.join(dir, 'absent.ts')]);
  expect(missing).toMatchObject({ code: 2, stderr: expect.stringMatching(/absent\.ts: no such path module/) });
  // a profile naming a plugin path without the module: the usual profile error
  const unloaded = await nvx(['diff', TRACE, '--profile', 'msr-bitmap=not-loaded']);
  expect(unloaded).toMatchObject({ code: 2, stderr: expect.stringMatching(/area msr-bitmap has no path 'not-loaded'/) });
});

test('a misspelt hook is a warning on stderr', async () => {
  const typo = path.join(dir, 'typo.ts');
  fs.writeFileSync(typo, `export default { area: 'msr-bitmap', name: 'typo-hook', summary: 's', prepare: () => false, onHostMemroy() {} };\n`);
  const r = await nvx(['run', TRACE, '--path-module', typo, '--profile', 'msr-bitmap=typo-hook', '-q']);
  expect(r.stderr).toMatch(/warning: .*typo\.ts: path 'typo-hook' \(area msr-bitmap\): method 'onHostMemroy' is not part of the msr-bitmap path interface and is never called \(did you mean 'onHostMemory'\?\)/);
});
