/**
 * nvx in CI: `nvx check --path-module --profiles --junit` on a user's
 * plugin path, `--junit` on diff, and the one exit-code rule (a kept
 * finding exits 1 outside `nvx check` unless --accept-declared; --json
 * carries the verdict; a minimized finding drops the declaration).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseTextTrace } from '@nvx/trace';
import { junitXml } from '../src/junit';
import { nodeTooOld } from '../src/main';
import { defaultCorpusDirs, diffReplayLine } from '../src/commands/check';
import { fuzzReplayLine } from '../src/commands/fuzz';
import { nvx } from './fixtures/nvx';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SCEN = path.join(ROOT, 'traces', 'scenarios');
const KEPT = path.join(ROOT, 'traces', 'regressions', 'pages-kvm-map-zap-pinned.nvx');
const LAZY = path.join(ROOT, 'examples', 'msr-bitmap-lazy-merge.ts');
const BROKEN = path.join(ROOT, 'examples', 'broken-merge.js');

let dir: string;
let corpus: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-cli-ci-'));
  corpus = path.join(dir, 'corpus');
  fs.mkdirSync(corpus);
  // a small corpus: one trace the broken merge fails, one it passes, one permitted divergence for every merging path
  for (const f of ['l0-intercept-change-in-l2.nvx', 'cpuid-fault-cpl.nvx', 'two-vcpus-sdm-contract.nvx']) fs.copyFileSync(path.join(SCEN, f), path.join(corpus, f));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** testcase elements of a JUnit file: classname, name, and the failure message if any. */
function cases(xml: string): { classname: string; name: string; failure?: string }[] {
  return [...xml.matchAll(/<testcase classname="([^"]*)" name="([^"]*)"[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)].map((m) => {
    const f = /<failure message="([^"]*)"/.exec(m[4] ?? '');
    return { classname: path.basename(m[1]), name: m[2], ...(f ? { failure: f[1] } : {}) };
  });
}

describe('nvx check on a plugin path', () => {
  test('--path-module: reference and the plugin path; the JUnit report has one case per trace x profile, failing with the divergence and its repro line', async () => {
    const junit = path.join(dir, 'broken.xml');
    const r = await nvx(['check', '--dir', corpus, '--path-module', BROKEN, '--no-fuzz', '--no-conformance', '--junit', junit]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/3 traces x 2 profiles/);
    expect(r.stdout).toMatch(/^msr-bitmap=broken-merge\s+1\s+1\s+0\s+0\s+1\s+\d+$/m);
    expect(r.stdout).toContain(`show it: nvx run ${path.join(corpus, 'l0-intercept-change-in-l2.nvx')} --profile msr-bitmap=broken-merge --path-module ${BROKEN}`);
    const xml = fs.readFileSync(junit, 'utf8');
    expect(xml).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites name="nvx" tests="6" failures="1"/);
    const cs = cases(xml);
    expect(cs.map((c) => `${c.classname} ${c.name}${c.failure ? ' FAIL' : ''}`).sort()).toEqual([
      'cpuid-fault-cpl.nvx msr-bitmap=broken-merge',
      'cpuid-fault-cpl.nvx reference',
      'l0-intercept-change-in-l2.nvx msr-bitmap=broken-merge FAIL',
      'l0-intercept-change-in-l2.nvx reference',
      'two-vcpus-sdm-contract.nvx msr-bitmap=broken-merge',
      'two-vcpus-sdm-contract.nvx reference',
    ]);
    expect(cs.find((c) => c.failure)!.failure).toMatch(/^expect-failed: event 18 \(l2\.rdmsr MSR_FS_BASE/);
    // a permitted divergence of a path the trace cannot name passes and says why
    expect(xml).toMatch(/<system-out>expected divergence \(declared by the trace\): permitted by sdm-active-msr-bitmap at event \d+/);
  });

  test('--profiles (with + joining areas) and a correct plugin: exit 0', async () => {
    const junit = path.join(dir, 'lazy.xml');
    const r = await nvx(['check', '--dir', corpus, '--path-module', LAZY, '--profiles', 'msr-bitmap=lazy-merge,msr-bitmap=lazy-merge+cpuid-fault=hardware', '--no-fuzz', '--no-conformance', '--junit', junit]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const cs = cases(fs.readFileSync(junit, 'utf8'));
    expect(new Set(cs.map((c) => c.name))).toEqual(new Set(['reference', 'msr-bitmap=lazy-merge', 'msr-bitmap=lazy-merge,cpuid-fault=hardware']));
    expect(cs.filter((c) => c.failure)).toEqual([]);
    expect((await nvx(['check', '--dir', corpus, '--profiles', 'msr-bitmap=nope', '--no-fuzz'])).code).toBe(2);
    const bad = await nvx(['check', '--dir', corpus, '--profile', 'nope', '--no-fuzz']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error: --profile: unknown profile 'nope' \(profiles: [^)]*\)\n$/);
  });

  test('the short fuzz runs on the plugin path and is one JUnit case', async () => {
    const junit = path.join(dir, 'fuzz.xml');
    const r = await nvx(['check', '--dir', corpus, '--path-module', LAZY, '--fuzz-time', '1s', '--fuzz-seed', '3', '--fuzz-out', path.join(dir, 'findings'), '--no-conformance', '--junit', junit]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^fuzz \(\d+ s, \d+ traces\)/m);
    const cs = cases(fs.readFileSync(junit, 'utf8'));
    expect(cs.filter((c) => c.classname === 'fuzz')).toEqual([{ classname: 'fuzz', name: 'campaign seed 3 (msr-bitmap=lazy-merge)' }]);
  }, 30_000);
});

describe('one exit-code rule', () => {
  test('a kept finding: diff and bisect both exit 1, 0 with --accept-declared; --json says expected-finding', async () => {
    for (const cmd of ['diff', 'bisect']) {
      const plain = await nvx([cmd, KEPT, '--profile', 'guest-pages=kvm-map']);
      expect({ cmd, code: plain.code }).toEqual({ cmd, code: 1 });
      expect(plain.stdout).toMatch(/kept finding: .*exit 1 \(--accept-declared to accept it\)/);
      expect((await nvx([cmd, KEPT, '--profile', 'guest-pages=kvm-map', '--accept-declared'])).code).toBe(0);
      const j = JSON.parse((await nvx([cmd, KEPT, '--profile', 'guest-pages=kvm-map', '--json'])).stdout);
      expect(j).toMatchObject({ verdict: 'expected-finding', declared: 'finding', exit: 1 });
    }
    // the corpus check takes the declaration: expected
    const c = await nvx(['check', '--dir', path.dirname(KEPT), '--profile', 'guest-pages=kvm-map', '--no-fuzz', '--json']);
    expect(c.code).toBe(0);
    expect(JSON.parse(c.stdout).cells[0].status).toBe('expected-divergence');
  });

  test('a permitted divergence exits 0 (1 with --strict) in diff, bisect and report alike; a bug exits 1', async () => {
    const permitted = path.join(SCEN, 'evmcs-broken-contract.nvx');
    for (const args of [['diff', permitted], ['bisect', permitted], ['report', permitted, '-o', path.join(dir, 'p.html'), '-q']]) {
      expect({ args: args[0], code: (await nvx(args)).code }).toEqual({ args: args[0], code: 0 });
      expect({ args: args[0], code: (await nvx([...args, '--strict'])).code }).toEqual({ args: args[0], code: 1 });
    }
    const j = JSON.parse((await nvx(['diff', permitted, '--json'])).stdout);
    expect(j).toMatchObject({ verdict: 'permitted', declared: 'permitted:hyperv-clean-fields', exit: 0 });
    const bug = path.join(SCEN, 'l0-intercept-change-in-l2.nvx');
    for (const args of [['diff', bug], ['bisect', bug], ['report', bug, '-o', path.join(dir, 'b.html'), '-q']]) {
      expect({ args: args[0], code: (await nvx([...args, '--path-module', BROKEN, ...(args[0] === 'report' ? ['--profiles', 'reference,msr-bitmap=broken-merge'] : ['--profile', 'msr-bitmap=broken-merge'])])).code }).toEqual({ args: args[0], code: 1 });
    }
  });

  test('a minimized kept finding drops the declaration and diverges with exit 1 under diff (unless --keep-declared)', async () => {
    const out = path.join(dir, 'small.nvx');
    const m = await nvx(['minimize', KEPT, '--profile', 'guest-pages=kvm-map', '-o', out, '--time', '5s']);
    expect(m.code).toBe(1);
    expect(parseTextTrace(fs.readFileSync(out, 'utf8')).header.provenance.verdict).toBeUndefined();
    expect((await nvx(['diff', out, '--profile', 'guest-pages=kvm-map', '--accept-declared'])).code).toBe(1);
    const kept = path.join(dir, 'kept.nvx');
    expect((await nvx(['minimize', KEPT, '--profile', 'guest-pages=kvm-map', '-o', kept, '--time', '5s', '--keep-declared', '--accept-declared'])).code).toBe(0);
    expect(parseTextTrace(fs.readFileSync(kept, 'utf8')).header.provenance).toMatchObject({ verdict: 'finding', diverges: 'guest-pages=kvm-map' });
  }, 30_000);

  test('--help of each comparing command states the rule', async () => {
    for (const cmd of ['diff', 'bisect', 'report', 'minimize', 'check']) {
      const h = await nvx([cmd, '--help']);
      expect({ cmd, rule: /Exit codes \(one rule for diff, bisect, report, minimize and check\)/.test(h.stdout) }).toEqual({ cmd, rule: true });
    }
  });
});

describe('--junit on diff', () => {
  test('one case, failing with the first divergence; an XML-safe text', async () => {
    const junit = path.join(dir, 'diff.xml');
    const r = await nvx(['diff', path.join(SCEN, 'l0-intercept-change-in-l2.nvx'), '--path-module', BROKEN, '--profile', 'msr-bitmap=broken-merge', '--junit', junit]);
    expect(r.code).toBe(1);
    const xml = fs.readFileSync(junit, 'utf8');
    expect(cases(xml)).toEqual([{ classname: 'l0-intercept-change-in-l2.nvx', name: 'msr-bitmap=broken-merge', failure: 'bug: bug divergence at event 18 (l2.rdmsr MSR_FS_BASE)' }]);
    expect(xml).toContain('no contract was broken before this event');
    // a --junit file nvx cannot write is a usage error before any work
    for (const cmd of [['diff', path.join(SCEN, 'l0-intercept-change-in-l2.nvx')], ['check', '--no-fuzz'], ['fuzz', '--runs', '1']]) {
      const bad = await nvx([...cmd, '--junit', path.join(dir, 'missing', 'r.xml')]);
      expect({ cmd: cmd[0], code: bad.code, err: bad.stderr }).toEqual({ cmd: cmd[0], code: 2, err: `error: --junit ${path.join(dir, 'missing', 'r.xml')}: the directory ${path.join(dir, 'missing')} does not exist\n` });
    }
    expect(junitXml([{ name: 'a<b', cases: [{ classname: 'x&y', name: '"q"', failure: { message: '\x1b[31mred\x1b[39m', type: 't', text: 'a\x01b' } }] }])).toContain(
      '<testsuite name="a&lt;b" tests="1" failures="1" errors="0" skipped="0" time="0.000">\n    <testcase classname="x&amp;y" name="&quot;q&quot;" time="0.000">\n      <failure message="red" type="t">ab</failure>',
    );
  });
});

describe('outside the clone', () => {
  test('an older Node without zlib.crc32 gets one clear line; this one passes', () => {
    expect(nodeTooOld()).toBeNull();
    expect(nodeTooOld({}, 'v20.11.1')).toBe('nvx needs Node.js 20.15 or later (zlib.crc32, for binary traces); this is Node.js v20.11.1');
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'packages', 'cli', 'package.json'), 'utf8'));
    expect(pkg.engines.node).toBe('>=20.15');
    expect(pkg.bin).toEqual({ nvx: 'bin/nvx.js', 'nvx-vmx': 'bin/nvx.js' });
  });

  test("nvx check run elsewhere takes nvx's own corpus", () => {
    expect(defaultCorpusDirs(ROOT)).toEqual(['traces/scenarios', 'traces/regressions']);
    expect(defaultCorpusDirs(dir)).toEqual([path.join(ROOT, 'traces', 'scenarios'), path.join(ROOT, 'traces', 'regressions')]);
  });
});

describe('repro lines', () => {
  test('carry the profile, the campaign options that change the replay, and every plugin', () => {
    const f = { replay: '795093051:40', profile: 'msr-bitmap=broken-merge,evmcs=clean-fields' };
    expect(fuzzReplayLine(f, [])).toBe('nvx fuzz --replay 795093051:40 --profiles msr-bitmap=broken-merge+evmcs=clean-fields');
    expect(fuzzReplayLine(f, ['a.js', 'b.ts'], { areas: ['msr-bitmap', 'evmcs'], allowViolations: true, stateAt: 'end' })).toBe(
      'nvx fuzz --replay 795093051:40 --profiles msr-bitmap=broken-merge+evmcs=clean-fields --areas msr-bitmap,evmcs --allow-violations --state-at end --path-module a.js --path-module b.ts',
    );
    expect(diffReplayLine("my traces/it's.nvx", 'msr-bitmap=x', ['p.ts'])).toBe(`nvx diff 'my traces/it'\\''s.nvx' --profile msr-bitmap=x --path-module p.ts`);
  });
});
