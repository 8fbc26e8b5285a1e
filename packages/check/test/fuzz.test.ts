/**
 * Fuzz campaigns (in this thread; the worker threads and the command are
 * tested through the built `nvx` in the cli package):
 *
 *  - the seed space: blocks, shards that partition it, one campaign as the
 *    union of its shards;
 *  - findings: found in lockstep, found again from scratch, minimized,
 *    named by the hash of the minimized trace, written whole, with the
 *    seed, replay path, nvx version, profile, verdict and contract in the
 *    header; the replay path gives the same finding back;
 *  - no false alarm on correct paths; violating traces classified, not
 *    reported; expected divergences of a known-wrong path marked expected.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AreaId, parseProfile, registerPath } from '@nvx/emulator';
import { parseTextTrace } from '@nvx/trace';
import { diffEvents } from '../src/diff';
import { brokenEnlightenedIgnoresForce, brokenMergeStickyPassthrough, brokenTrackedIgnoresAddress } from '../src/fixtures';
import { brokenShadowSyncRwOnly } from '../src/fixtures/shadow-vmcs';
import {
  FuzzFinding,
  blockSeed,
  defaultFuzzProfiles,
  expectedDivergingProfiles,
  parseDuration,
  parseReplay,
  parseShard,
  replayFuzz,
  signatureName,
  runFuzz,
  shardBlocks,
} from '../src/fuzz';
import { divergenceKind } from '../src/minimize';

const ROOT = path.resolve(__dirname, '..', '..', '..');
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-fuzz-'));
  for (const p of [brokenMergeStickyPassthrough, brokenTrackedIgnoresAddress, brokenEnlightenedIgnoresForce, brokenShadowSyncRwOnly]) registerPath(p);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const STICKY = `msr-bitmap=${brokenMergeStickyPassthrough.name}`;
const TRACKED = `msr-bitmap=${brokenTrackedIgnoresAddress.name}`;
/** quick settings for tests: states at the end, little minimizing */
const QUICK = { stateAt: 'end' as const, minimizeMs: 20_000, workers: 1 };

describe('the seed space', () => {
  it('shards partition the blocks; their union is the whole campaign', () => {
    const all = [...shardBlocks({ index: 1, count: 1 }, 100, 1050)];
    expect(all.map((b) => b.block)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(all[10].runs).toBe(50);
    expect(all.reduce((a, b) => a + b.runs, 0)).toBe(1050);
    const shards = [1, 2, 3].map((i) => [...shardBlocks({ index: i, count: 3 }, 100, 1050)]);
    expect(shards.flat().sort((a, b) => a.block - b.block)).toEqual(all);
    expect(shards[1].map((b) => b.block)).toEqual([1, 4, 7, 10]);
    // no run budget: endless, in order
    const gen = shardBlocks({ index: 2, count: 4 }, 100);
    expect([gen.next().value, gen.next().value]).toEqual([{ block: 1, runs: 100 }, { block: 5, runs: 100 }]);
  });

  it('block seeds are fixed by the campaign seed, and differ between blocks and campaigns', () => {
    expect(blockSeed(1, 0)).toBe(blockSeed(1, 0));
    const seeds = new Set([0, 1, 2, 3].flatMap((b) => [blockSeed(1, b), blockSeed(2, b)]));
    expect(seeds.size).toBe(8);
    for (const s of seeds) expect(s).toBeLessThanOrEqual(0x7fffffff);
  });

  it('parses shards, durations and replay strings, and refuses bad ones', () => {
    expect(parseShard('2/5')).toEqual({ index: 2, count: 5 });
    for (const bad of ['0/3', '4/3', 'a/b', '3']) expect(() => parseShard(bad)).toThrow(/i\/n/);
    expect([parseDuration('90'), parseDuration('30s'), parseDuration('10m'), parseDuration('1h'), parseDuration('250ms')]).toEqual([90_000, 30_000, 600_000, 3_600_000, 250]);
    expect(() => parseDuration('soon')).toThrow(/duration/);
    expect(parseReplay('123:45')).toEqual({ seed: 123, path: '45' });
    expect(parseReplay('123:45:0:2')).toEqual({ seed: 123, path: '45:0:2' });
    expect(() => parseReplay('123')).toThrow(/seed>:<path/);
  });
});

describe('a campaign against a broken path', () => {
  const found: FuzzFinding[] = [];
  let summary: Awaited<ReturnType<typeof runFuzz>>;
  const out = () => path.join(dir, 'sticky');

  beforeAll(async () => {
    summary = await runFuzz({ ...QUICK, profiles: [STICKY], seed: 1, runs: 60, outDir: out(), maxFindingsPerProfile: 2, onFinding: (f) => found.push(f) });
  }, 180_000);

  it('finds it, fast, and reports the runs and the time it took', () => {
    expect(summary.newFindings).toBeGreaterThanOrEqual(1);
    expect(summary.firstFinding!.runs).toBeLessThanOrEqual(60);
    expect(summary.runs).toBeLessThanOrEqual(60);
    expect(['runs', 'saturated']).toContain(summary.stopped);
    const f = summary.findings[0];
    expect(f.profile).toBe(STICKY);
    expect(f.kind).toEqual({ verdict: 'bug', contract: null, event: expect.stringMatching(/^l2\.(rd|wr)msr$/) });
    expect(f.confirmed).toBe(true);
    expect(f.minimizedEvents).toBeLessThanOrEqual(14);
    expect(f.minimizedEvents).toBeLessThan(f.generatedEvents);
  });

  it('writes each finding whole under the name of its signature, with its provenance', () => {
    const files = fs.readdirSync(out()).filter((f) => f.endsWith('.nvx'));
    expect(files.sort()).toEqual(summary.findings.map((f) => `${f.name}.nvx`).sort());
    expect(fs.readdirSync(out()).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const f = found[0];
    const text = fs.readFileSync(path.join(out(), `${f.name}.nvx`), 'utf8');
    expect(text).toBe(f.text);
    const t = parseTextTrace(text);
    expect(t.header.provenance).toMatchObject({
      verdict: 'pass',
      divergence: 'bug',
      contract: 'none',
      profile: STICKY,
      signature: f.signature,
      seed: String(f.seed),
      path: f.path,
      replay: `${f.seed}:${f.path}`,
      'nvx-version': expect.stringMatching(/^\d+\.\d+\.\d+/),
    });
    expect(text).toMatch(/^# nvx fuzz finding [0-9a-f]{16} \(new\)/);
    expect(text).toContain(`# replay: nvx fuzz --replay ${f.seed}:${f.path} --profiles ${STICKY}`);
    // the file diverges the same way, and its name is the hash of its signature
    const d = diffEvents(t.header, t.events, parseProfile('reference'), parseProfile(STICKY)).divergence!;
    expect(divergenceKind(d)).toEqual(f.kind);
    expect(f.name).toBe(signatureName(f.signature));
    expect(f.signature.startsWith(`${STICKY} | ${f.kind.event} | `)).toBe(true);
    const summaryFile = JSON.parse(fs.readFileSync(path.join(out(), 'summary.json'), 'utf8'));
    expect(summaryFile.findings.map((x: FuzzFinding) => x.name)).toEqual(summary.findings.map((x) => x.name));
  });

  it('stops when every profile has had its findings', async () => {
    const s = await runFuzz({ ...QUICK, profiles: [STICKY], seed: 43, runs: 500, maxFindingsPerProfile: 1 });
    expect(s.findings).toHaveLength(1);
    expect(s.stopped).toBe('saturated');
    expect(s.runs).toBeLessThan(100);
  });

  // fast-check's shrinking cut short by its budget, counted in candidates so that where it stops does
  // not depend on the machine: the path reported must replay to the very trace shrunk to (its
  // canonical text's hash), with the same finding. A path of several steps is where fast-check, asked
  // for one run, runs the property on every later candidate of the last step too.
  const shrinkThenReplay = async (profiles: string[], areas: AreaId[] | undefined, seed: number) => {
    const s = await runFuzz({ ...QUICK, profiles, areas, seed, runs: 60, maxFindings: 1, shrinkMs: 600_000, shrinkCandidates: 20 });
    const f = s.findings[0];
    const { seed: rs, path: p } = parseReplay(f.replay);
    return { f, r: replayFuzz({ ...QUICK, profiles, areas, seed: rs, path: p }) };
  };
  const expectSameTrace = (f: Omit<FuzzFinding, 'text'>, r: ReturnType<typeof replayFuzz>) => {
    expect(f.shrinkCutShort).toBe(true);
    expect(f.path).toMatch(/^\d+(:\d+)+$/);
    expect(r.trace.events.length).toBe(f.shrunkEvents);
    expect(r.finding?.shrunkHash).toBe(f.shrunkHash);
    expect(r.finding?.path).toBe(f.path);
    expect(r.finding?.signature).toBe(f.signature);
    // the same minimized trace, unless a time budget cut either minimization short
    if (!f.minimizeTimedOut && !r.finding?.minimizeTimedOut) expect(r.finding?.hash).toBe(f.hash);
  };

  it("with fast-check's shrinking cut short, the replay path names the shrunk trace (area generators)", async () => {
    // (seed 3: the old replay, which kept the last candidate of the path's step, gave 47 events for 43)
    const { f, r } = await shrinkThenReplay([STICKY], ['msr-bitmap', 'evmcs'], 3);
    expect(r.trace.header.provenance?.generator).toBe('nvx fuzz mix');
    expectSameTrace(f, r);
  }, 60_000);

  it("with fast-check's shrinking cut short, the replay path names the shrunk trace (whole-world generator)", async () => {
    // every area: half the traces come from the whole-world generator; seeds in order until a
    // finding's trace is one of its (the msr-bitmap fixtures are not found on them, shadow-vmcs's are;
    // seed 5: the old replay gave 59 events for 50)
    const SYNC = `shadow-vmcs=${brokenShadowSyncRwOnly.name}`;
    let world: { f: Omit<FuzzFinding, 'text'>; r: ReturnType<typeof replayFuzz> } | undefined;
    for (let seed = 5; seed <= 16 && !world; seed++) {
      const x = await shrinkThenReplay([SYNC], undefined, seed);
      expectSameTrace(x.f, x.r);
      if (x.r.trace.header.provenance?.generator === 'nvx fuzz world') world = x;
    }
    expect(world).toBeDefined();
  }, 120_000);

  it('the replay path gives the same finding back', () => {
    const f = found[0];
    const { seed, path: p } = parseReplay(f.replay);
    const r = replayFuzz({ ...QUICK, profiles: [STICKY], seed, path: p });
    expect(r.finding?.hash).toBe(f.hash);
    expect(r.trace.events.length).toBe(f.generatedEvents);
    expect(parseTextTrace(r.finding!.text).header.provenance).toMatchObject({ seed: String(f.seed), path: f.path, replay: f.replay });
  });
});

describe('one finding per bug', () => {
  it('groups the divergences of one bug under one signature, with a count, keeping the smallest trace', async () => {
    // the msr-bitmap/evmcs generator alone (a campaign over every area draws half its traces from the whole-world generator)
    const s = await runFuzz({ ...QUICK, profiles: [STICKY, TRACKED], areas: ['msr-bitmap', 'evmcs'], seed: 13, runs: 150 });
    expect(s.findings.length).toBeGreaterThanOrEqual(2);
    // a handful of signatures for hundreds of diverging runs
    expect(s.findings.length).toBeLessThanOrEqual(6);
    expect(new Set(s.findings.map((f) => f.signature)).size).toBe(s.findings.length);
    expect(new Set(s.findings.map((f) => f.profile))).toEqual(new Set([STICKY, TRACKED]));
    const total = s.findings.reduce((a, f) => a + f.count, 0);
    expect(total).toBeGreaterThan(s.findings.length * 3);
    expect(s.duplicates).toBe(total - s.findings.length);
    for (const f of s.findings) expect(f.minimizedEvents).toBeLessThanOrEqual(14);
  }, 180_000);
});

describe('one finding per bug, whichever profile finds it', () => {
  it('a bug of one path found under a profile of several is signed with that path', async () => {
    const both = `${STICKY},evmcs=clean-fields`;
    const s = await runFuzz({ ...QUICK, profiles: [both], areas: ['msr-bitmap', 'evmcs'], seed: 11, runs: 40, minimizeMs: 1_000, maxFindings: 1 });
    expect(s.findings.length).toBe(1);
    expect(s.findings[0].profile).toBe(both);
    expect(s.findings[0].signature.startsWith(`${STICKY} | `)).toBe(true);
  }, 180_000);
});

describe('determinism', () => {
  it('the same seed and runs give the same findings; shards together give the same as one campaign', async () => {
    const opts = { ...QUICK, profiles: [STICKY], seed: 6, runs: 160, blockSize: 40 };
    const one = await runFuzz(opts);
    const shards = await Promise.all([1, 2, 3].map((i) => runFuzz({ ...opts, shard: { index: i, count: 3 } })));
    const names = (s: typeof one) => s.findings.map((f) => f.name);
    expect(one.findings.length).toBeGreaterThanOrEqual(1);
    expect(shards.reduce((a, s) => a + s.runs, 0)).toBe(one.runs);
    expect(shards.reduce((a, s) => a + s.events, 0)).toBe(one.events);
    expect(new Set(shards.flatMap(names))).toEqual(new Set(names(one)));
    expect(shards.map((s) => s.blocks)).toEqual([2, 1, 1]);
  }, 180_000);
});

describe('correct paths and contracts', () => {
  it('no false alarm: every default profile on 80 traces', async () => {
    const expected = await expectedDivergingProfiles([path.join(ROOT, 'traces', 'scenarios'), path.join(ROOT, 'traces', 'regressions')]);
    expect(expected).toContain('guest-pages=kvm-map');
    const s = await runFuzz({ ...QUICK, expected, seed: 3, runs: 80 });
    expect(s.profiles).not.toContain('guest-pages=kvm-map');
    expect(s.profiles).toEqual(defaultFuzzProfiles(s.areas, expected));
    expect(s.findings).toEqual([]);
    expect(s.runs).toBe(80);
    // coverage comes with it
    expect(Object.keys(s.coverage['msr-bitmap'] ?? {}).length).toBeGreaterThan(10);
  }, 180_000);

  it('with violations allowed, divergences after a broken contract are classified, not reported', async () => {
    const s = await runFuzz({ ...QUICK, areas: ['msr-bitmap', 'evmcs'], profiles: ['optimized', 'evmcs=clean-fields'], allowViolations: true, seed: 4, runs: 300 });
    expect(s.findings).toEqual([]);
    expect(s.permitted['hyperv-clean-fields']).toBeGreaterThan(0);
  }, 180_000);

  it("a known-wrong path's divergences are expected findings, not new ones", async () => {
    const s = await runFuzz({ ...QUICK, profiles: ['guest-pages=kvm-map'], areas: ['guest-pages'], expected: ['guest-pages=kvm-map'], seed: 5, runs: 100, maxFindings: 1 });
    expect(s.findings.length).toBe(1);
    expect(s.newFindings).toBe(0);
    expect(s.findings[0].classification).toBe('expected');
    expect(s.stopped).toBe('findings');
  }, 180_000);
});
