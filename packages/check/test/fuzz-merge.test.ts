/**
 * Merging campaign outputs (`nvx fuzz merge`): the shards of one campaign
 * merge into what the campaign itself reports (runs, events, coverage,
 * sequence coverage, one finding per signature with the summed count), the
 * smaller trace of a signature is kept, and what is not a fuzz output is
 * refused with the file named.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { registerPath } from '@nvx/emulator';
import { brokenMergeStickyPassthrough } from '../src/fixtures';
import { runFuzz } from '../src/fuzz';
import { MergeError, mergeFuzzOutputs } from '../src/fuzz-merge';

const STICKY = `msr-bitmap=${brokenMergeStickyPassthrough.name}`;
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-fuzz-merge-'));
  registerPath(brokenMergeStickyPassthrough);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('nvx fuzz merge', () => {
  it('merges the shards of a campaign into the campaign: counts, coverage, sequence coverage, findings by signature', async () => {
    const opts = { profiles: [STICKY], areas: ['msr-bitmap' as const, 'evmcs' as const], stateAt: 'end' as const, minimizeMs: 1_000, workers: 1, seed: 8, runs: 60, blockSize: 20 };
    const one = await runFuzz({ ...opts, outDir: path.join(dir, 'one') });
    const shards = [];
    for (const i of [1, 2]) shards.push(await runFuzz({ ...opts, shard: { index: i, count: 2 }, outDir: path.join(dir, `shard-${i}`) }));
    expect(one.findings.length).toBeGreaterThanOrEqual(1);
    const m = mergeFuzzOutputs([path.join(dir, 'shard-1'), path.join(dir, 'shard-2')], path.join(dir, 'merged'));
    expect(m.runs).toBe(one.runs);
    expect(m.events).toBe(one.events);
    expect(m.coverage).toEqual(one.coverage);
    expect(m.sequence.counts).toEqual(one.sequence.counts);
    expect(one.sequence.pairs).toBeGreaterThan(20);
    expect(m.findings.map((f) => [f.signature, f.count])).toEqual(one.findings.map((f) => [f.signature, f.count]));
    // the merged directory holds one file per signature, each no larger than the campaign's own
    const files = fs.readdirSync(path.join(dir, 'merged')).filter((f) => f.endsWith('.nvx')).sort();
    expect(files).toEqual(one.findings.map((f) => `${f.name}.nvx`).sort());
    for (const f of m.findings) expect(f.events).toBeLessThanOrEqual(one.findings.find((x) => x.signature === f.signature)!.minimizedEvents);
    // merged outputs merge again to the same
    const again = mergeFuzzOutputs([path.join(dir, 'merged')]);
    expect(again.findings.map((f) => [f.signature, f.count])).toEqual(m.findings.map((f) => [f.signature, f.count]));
    expect(again.runs).toBe(m.runs);
  }, 60_000);

  it('refuses what is not a fuzz output, naming it', () => {
    const bad = path.join(dir, 'bad');
    fs.mkdirSync(bad);
    fs.writeFileSync(path.join(bad, 'summary.json'), '{"hello": 1}');
    expect(() => mergeFuzzOutputs([bad])).toThrow(MergeError);
    expect(() => mergeFuzzOutputs([bad])).toThrow(/bad[/\\]summary\.json: not a fuzz summary/);
    expect(() => mergeFuzzOutputs([path.join(dir, 'missing')])).toThrow(/missing: not a directory/);
    expect(() => mergeFuzzOutputs([])).toThrow(/nothing to merge/);
  });
});
