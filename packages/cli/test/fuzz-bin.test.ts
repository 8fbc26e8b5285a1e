/**
 * The built `nvx fuzz` as a process: worker threads find what one thread
 * finds and count what it counts (coverage, permitted divergences, each
 * signature's count), shards merge into one campaign by file name, and a
 * campaign killed with SIGKILL at any moment leaves only whole files under
 * their final names (each finding is named by the hash of the signature it
 * carries and parses whole).
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseTextTrace } from '@nvx/trace';

const root = path.resolve(__dirname, '..', '..', '..');
const bin = path.join(root, 'packages', 'cli', 'bin', 'nvx.js');
let dir: string;
let plugin: string;
const PROFILES = 'msr-bitmap=test-leaky-fs-base,msr-bitmap=test-leaky-gs-base,msr-bitmap=test-leaky-kernel-gs-base';

/** Plugin paths: the merge, but vmcs02 lets L2 write one high MSR natively whatever vmcs01 and L1 say. */
const PLUGIN = `const { AREAS } = require('@nvx/emulator');
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
module.exports = [leaky('test-leaky-fs-base', 0x100), leaky('test-leaky-gs-base', 0x101), leaky('test-leaky-kernel-gs-base', 0x102)];
`;

beforeAll(() => {
  // the executable runs the compiled output: build it first
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-b', 'packages/cli'], { cwd: root, stdio: 'pipe' });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-fuzz-bin-'));
  plugin = path.join(dir, 'leaky.js');
  fs.writeFileSync(plugin, PLUGIN);
}, 120_000);
afterAll(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

function fuzz(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, 'fuzz', '--path-module', plugin, '--profiles', PROFILES, '--areas', 'msr-bitmap,evmcs', '--state-at', 'end', ...args], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Summary {
  runs: number;
  events: number;
  blocks: number;
  coverage: unknown;
  permitted: unknown;
  duplicates: number;
  findings: { signature: string; count: number }[];
}

const findingsIn = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d).filter((f) => f.endsWith('.nvx')).sort() : []);

describe('nvx fuzz, the process', () => {
  it('two worker threads find the findings one finds, with the same counts and coverage; two shards together too', () => {
    const common = ['--runs', '80', '--block-size', '20', '--seed', '21', '-q'];
    const one = fuzz([...common, '--workers', '1', '--out', 'one']);
    const two = fuzz([...common, '--workers', '2', '--out', 'two']);
    const s1 = fuzz([...common, '--workers', '1', '--shard', '1/2', '--out', 'shards']);
    const s2 = fuzz([...common, '--workers', '1', '--shard', '2/2', '--out', 'shards']);
    for (const r of [one, two, s1, s2]) expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 1, stderr: '' });
    expect(one.stdout).toMatch(/^fuzz: 80 runs, .*1 worker\)/m);
    expect(two.stdout).toMatch(/^fuzz: 80 runs, .*2 workers\)/m);
    expect(s1.stdout).toMatch(/shard 1\/2$/m);
    const names = findingsIn(path.join(dir, 'one'));
    expect(names.length).toBeGreaterThanOrEqual(2);
    expect(findingsIn(path.join(dir, 'two'))).toEqual(names);
    expect(findingsIn(path.join(dir, 'shards'))).toEqual(names);
    expect(fs.readdirSync(path.join(dir, 'shards')).filter((f) => f.endsWith('.json')).sort()).toEqual(['summary.shard-1-of-2.json', 'summary.shard-2-of-2.json']);
    const runs = ['summary.shard-1-of-2.json', 'summary.shard-2-of-2.json'].map((f) => JSON.parse(fs.readFileSync(path.join(dir, 'shards', f), 'utf8')).runs as number);
    expect(runs[0] + runs[1]).toBe(80);
    // the accounting does not depend on the number of workers
    const summaryOf = (d: string) => JSON.parse(fs.readFileSync(path.join(dir, d, 'summary.json'), 'utf8')) as Summary;
    const counted = (x: Summary) => ({
      runs: x.runs,
      events: x.events,
      blocks: x.blocks,
      coverage: x.coverage,
      permitted: x.permitted,
      duplicates: x.duplicates,
      findings: x.findings.map((f) => [f.signature, f.count]),
    });
    expect(counted(summaryOf('two'))).toEqual(counted(summaryOf('one')));
    expect(summaryOf('one').findings.some((f) => f.count > 1)).toBe(true);
  }, 60_000);

  it('killed with SIGKILL at any moment, leaves only whole findings under final names', async () => {
    // kill at several moments: before any finding, just after the first, and while more are being written
    for (const [i, after] of [[0, -1], [1, 0], [2, 250]] as const) {
      const out = path.join(dir, `killed-${i}`);
      const child: ChildProcess = spawn(
        process.execPath,
        [bin, 'fuzz', '--path-module', plugin, '--profiles', PROFILES, '--areas', 'msr-bitmap,evmcs', '--state-at', 'end', '--minimize-time', '2s', '--time', '60s', '--workers', '2', '--seed', String(30 + i), '--out', out, '-q'],
        { cwd: dir, stdio: 'ignore' },
      );
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, sig) => resolve(sig)));
      const t0 = Date.now();
      if (after < 0) await new Promise((r) => setTimeout(r, 700));
      else {
        while (findingsIn(out).length === 0 && Date.now() - t0 < 25_000) await new Promise((r) => setTimeout(r, 20));
        expect(findingsIn(out).length).toBeGreaterThan(0);
        await new Promise((r) => setTimeout(r, after));
      }
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      for (const f of findingsIn(out)) {
        const text = fs.readFileSync(path.join(out, f), 'utf8');
        const t = parseTextTrace(text, f);
        expect(t.events.length).toBeGreaterThan(0);
        expect(t.header.provenance).toMatchObject({ divergence: 'bug', replay: expect.stringMatching(/^\d+:\d+/) });
        // the name is the hash of the signature the file carries: a whole file or nothing
        expect(createHash('sha256').update(t.header.provenance.signature!).digest('hex').slice(0, 16)).toBe(f.slice(0, 16));
      }
      for (const f of fs.existsSync(out) ? fs.readdirSync(out) : []) {
        if (f.endsWith('.json')) expect(() => JSON.parse(fs.readFileSync(path.join(out, f), 'utf8'))).not.toThrow();
        else expect(f.endsWith('.nvx') || (f.startsWith('.') && f.endsWith('.tmp'))).toBe(true);
      }
    }
  }, 90_000);
});
