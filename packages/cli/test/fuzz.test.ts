/**
 * `nvx fuzz` in-process (one worker; worker threads, shards and a killed
 * campaign are in fuzz-bin.test.ts): a plugin path loaded with
 * --path-module is fuzzed by default, its finding is written and replays,
 * `nvx diff` agrees; the summary line, the JSON summary, the progress bar on
 * a terminal; usage errors.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseTextTrace } from '@nvx/trace';
import { nvx } from './fixtures/nvx';

let dir: string;
let plugin: string;

/** A plugin module: the merge, but vmcs02 lets L2 write MSR_FS_BASE whatever vmcs01 and L1 say. */
function leakyPluginSource(names: string[] = ['test-leaky-fs-base']): string {
  const msrs: Record<string, number> = { 'test-leaky-fs-base': 0x100, 'test-leaky-gs-base': 0x101, 'test-leaky-kernel-gs-base': 0x102 };
  return `const { AREAS } = require('@nvx/emulator');
const merge = AREAS['msr-bitmap'].paths.get('merge');
function leaky(name, low) {
  return {
    ...merge,
    name,
    summary: 'test plugin: the merge lets L2 write one high MSR natively, whatever vmcs01 and L1 say',
    prepare(ctx, w, v) {
      const on = merge.prepare(ctx, w, v);
      const bm = v.nested.vmcs02MsrBitmap.slice();
      bm[0xc00 + (low >> 3)] &= ~(1 << (low & 7));
      v.nested.vmcs02MsrBitmap = bm;
      return on;
    },
  };
}
module.exports = [${names.map((n) => `leaky(${JSON.stringify(n)}, ${msrs[n]})`).join(', ')}];
`;
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-fuzz-cli-'));
  plugin = path.join(dir, 'leaky.js');
  fs.writeFileSync(plugin, leakyPluginSource());
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('nvx fuzz', () => {
  let out: string;
  let first: Awaited<ReturnType<typeof nvx>>;
  beforeAll(async () => {
    out = path.join(dir, 'out');
    first = await nvx(['fuzz', '--path-module', plugin, '--areas', 'msr-bitmap,evmcs', '--runs', '200', '--seed', '9', '--workers', '1', '--out', out, '--max-findings', '1', '--state-at', 'end']);
  }, 30_000);

  it('fuzzes a plugin path by default, and exits 1 on its finding', () => {
    expect(first.stderr).toBe('');
    expect(first.code).toBe(1);
    expect(first.stdout).toMatch(/NEW finding [0-9a-f]{16} \[msr-bitmap=test-leaky-fs-base\] bug on l2\.wrmsr: \d+ -> \d+ events/);
    expect(first.stdout).toMatch(/^fuzz: \d+ runs, \d+ events in [\d.]+ s \([\d.]+ traces\/s, \d+k? events\/s, 1 worker\), \d+ profiles; 1 new finding(, \d+ found again)?; seed 9$/m);
    expect(first.stdout).toMatch(/coverage of the modelled rules/);
    expect(first.stdout).toMatch(/^\s+msr-bitmap\s+\d+\/\d+\s+[\d.]+\s+\d+$/m);
    expect(first.stdout).not.toMatch(/^\s+cpuid-fault/m);
  });

  it('writes the minimized finding, which nvx diff confirms and --replay reproduces', async () => {
    const files = fs.readdirSync(out).filter((f) => f.endsWith('.nvx'));
    expect(files).toHaveLength(1);
    const file = path.join(out, files[0]);
    const t = parseTextTrace(fs.readFileSync(file, 'utf8'));
    expect(t.header.provenance.profile).toBe('msr-bitmap=test-leaky-fs-base');
    expect(t.header.provenance['path-modules']).toBe(plugin);
    expect(t.events.length).toBeLessThanOrEqual(12);
    const d = await nvx(['diff', file, '--path-module', plugin, '--profile', 'msr-bitmap=test-leaky-fs-base']);
    expect(d.code).toBe(1);
    expect(d.stdout).toMatch(/DIVERGENCE \(bug\)/);
    const r = await nvx(['fuzz', '--replay', t.header.provenance.replay, '--path-module', plugin, '--profiles', 'msr-bitmap=test-leaky-fs-base', '--areas', 'msr-bitmap,evmcs', '--state-at', 'end', '--out', path.join(dir, 'replayed')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`NEW finding ${files[0].slice(0, 16)}`);
    expect(fs.readdirSync(path.join(dir, 'replayed'))).toEqual([files[0]]);
    const again = parseTextTrace(fs.readFileSync(path.join(dir, 'replayed', files[0]), 'utf8'));
    expect(again.header.provenance.replay).toBe(t.header.provenance.replay);
    expect(again.events).toEqual(t.events);
  });

  it('a replay that does not diverge says so and exits 0', async () => {
    const r = await nvx(['fuzz', '--replay', '12345:3', '--profiles', 'msr-bitmap=merge', '--areas', 'msr-bitmap']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^no divergence: the trace of 12345:3 \(\d+ events\) matches reference under msr-bitmap=merge$/m);
  });

  it('prints the summary as JSON with --json, nothing new on correct paths', async () => {
    const r = await nvx(['fuzz', '--runs', '30', '--seed', '1', '--workers', '1', '--json', '--profiles', 'msr-bitmap=merge,msr-bitmap=merge+evmcs=clean-fields', '--out', path.join(dir, 'none')]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ runs: 30, seed: 1, workers: 1, newFindings: 0, findings: [], profiles: ['msr-bitmap=merge', 'msr-bitmap=merge,evmcs=clean-fields'] });
    expect(s.coverage.nested).toBeDefined();
    expect(fs.existsSync(path.join(dir, 'none'))).toBe(false);
  });

  it('draws a progress bar on a terminal (runs, events/s, findings)', async () => {
    const r = await nvx(['fuzz', '--time', '2s', '--seed', '2', '--workers', '1', '--areas', 'cpuid-fault', '--out', path.join(dir, 'tty')], { tty: true });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/fuzz \[.*\] \d+% \| \d+ runs \| \d+k? events\/s \| 0 findings \| \d+ s left/);
  });

  it('refuses bad options with exit 2', async () => {
    for (const args of [
      ['--shard', '3/2'],
      ['--areas', 'msr-bitmaps'],
      ['--time', 'soon'],
      ['--profiles', 'msr-bitmap=nope'],
      ['--workers', '0'],
      ['--replay', 'abc'],
      ['--state-at', 'sometimes'],
      ['--path-module', path.join(dir, 'missing.js')],
    ]) {
      const r = await nvx(['fuzz', '--runs', '1', ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(/^error: /);
    }
  });
});
