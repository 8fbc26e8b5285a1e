/**
 * `nvx fuzz --corpus DIR` and `nvx fuzz merge --corpora` in-process: the
 * corpus line of the summary, the files kept, the union of corpora, and
 * the usage errors (a bad --mutate, a corpus file that is not a trace, a
 * mutation's path given to --replay).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { nvx } from './fixtures/nvx';

let dir: string;
const nvxFiles = (d: string) => fs.readdirSync(d).filter((f) => f.endsWith('.nvx'));
const campaign = (corpus: string, seed: string) => nvx(['fuzz', '--runs', '20', '--block-size', '10', '--seed', seed, '--workers', '1', '--areas', 'cpuid-fault', '--profiles', 'cpuid-fault=hardware', '--corpus', corpus, '--mutate', '30%', '--out', path.join(dir, 'out')]);

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-fuzz-corpus-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('nvx fuzz --corpus', () => {
  it('keeps what reaches new coverage, says so, and merges corpora by content', async () => {
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    const ra = await campaign(a, '4');
    expect(ra.code).toBe(0);
    const m = /^corpus \S+: 0 -> (\d+) traces \((\d+) added\); 6 mutation runs; new coverage keys \(rules and pairs\): (\d+) by fresh traces, (\d+) by mutations$/m.exec(ra.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBe(nvxFiles(a).length);
    expect(nvxFiles(a).length).toBeGreaterThan(0);
    const rb = await campaign(b, '5');
    expect(rb.code).toBe(0);
    const merged = path.join(dir, 'merged');
    const r = await nvx(['fuzz', 'merge', '--corpora', a, b, '--corpus-out', merged]);
    expect(r.code).toBe(0);
    const union = new Set([...nvxFiles(a), ...nvxFiles(b)]);
    expect(r.stdout).toBe(`merged corpus ${merged}: ${union.size} traces (${union.size} added from 2 corpora)\n`);
    expect(new Set(nvxFiles(merged))).toEqual(union);
  }, 60_000);

  it('refuses a bad share, a corpus file that is not a trace, and a mutation path to --replay (exit 2)', async () => {
    const bad = await nvx(['fuzz', '--runs', '1', '--mutate', '150%', '--corpus', path.join(dir, 'x')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--mutate wants a share from 0 to 1 or a percentage \(got '150%'\)/);
    const c = path.join(dir, 'junk');
    fs.mkdirSync(c);
    fs.writeFileSync(path.join(c, 'x.nvx'), 'not a trace\n');
    const junk = await nvx(['fuzz', '--runs', '1', '--corpus', c]);
    expect(junk.code).toBe(2);
    expect(junk.stderr).toMatch(/x\.nvx: not a corpus trace: .*line 1/);
    const rep = await nvx(['fuzz', '--replay', '5:m3', '--profiles', 'cpuid-fault=hardware']);
    expect(rep.code).toBe(2);
    expect(rep.stderr).toMatch(/a mutation of a corpus trace/);
  });
});
