/**
 * The coverage corpus (`nvx fuzz --corpus DIR`), its mutations, the union
 * of corpora, and the minimizer that changes a trace's form.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Replayer, initialState, parseProfile, registerPath } from '@nvx/emulator';
import { formatTextTrace, parseTextTrace, validateEvent } from '@nvx/trace';
import fc from 'fast-check';
import { BlockFeedback, CorpusError, corpusName, loadCorpus, mergeCorpora } from '../src/corpus-dir';
import { CoverageRecorder } from '../src/coverage';
import { brokenMergeStickyPassthrough } from '../src/fixtures';
import { findingSignature, observationOf, runFuzz, writeFileAtomic } from '../src/fuzz';
import { canonicalTraceText, minimizeTrace } from '../src/minimize';
import { arbMixedTrace } from '../src/mix';
import { MUTATION_OPS, Rng, mutateTrace } from '../src/mutate';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-corpus-'));
const names = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.nvx')).sort();
const ref = parseProfile('reference');

describe('mutation operators', () => {
  const traces = fc.sample(arbMixedTrace({ areas: ['msr-bitmap', 'evmcs', 'cpuid-fault'] }), { seed: 42, numRuns: 6 });

  it('produce well-formed traces the reference replays, every operator used, the same for the same seed', () => {
    const rng = new Rng(7);
    const used = new Set<string>();
    const pool = traces.flatMap((t) => t.events.slice(0, 5));
    for (let i = 0; i < 150; i++) {
      const base = traces[i % traces.length];
      const m = mutateTrace(base, traces, pool, rng);
      m.ops.forEach((o) => used.add(o));
      // every event valid against the header (vCPUs and CPUs in range, values in their field's range)
      m.events.forEach((e, k) => expect(() => validateEvent(e, k, m.header.config)).not.toThrow());
      // the text form reads back as the same trace
      const back = parseTextTrace(formatTextTrace(m.header, m.events));
      expect(canonicalTraceText(back.header, back.events)).toBe(canonicalTraceText(m.header, m.events));
      const r = new Replayer(initialState(m.header, ref), ref);
      for (const e of m.events) r.apply(e);
    }
    expect([...used].sort()).toEqual([...MUTATION_OPS].sort());
    const a = mutateTrace(traces[0], traces, pool, new Rng(99));
    const b = mutateTrace(traces[0], traces, pool, new Rng(99));
    expect(canonicalTraceText(a.header, a.events)).toBe(canonicalTraceText(b.header, b.events));
  });

  it('a block keeps a trace only when it reaches a coverage key nobody had', () => {
    const cov = new CoverageRecorder();
    cov.firstHits = [];
    const fb = new BlockFeedback({ dir: '', traces: [], known: [] }, new Set(), 0, 1);
    const screen = (t: (typeof traces)[number], run: number) => {
      cov.startTrace();
      const r = new Replayer(initialState(t.header, ref), ref);
      for (const e of t.events) {
        cov.before(r.peek(), e);
        const o = r.apply(e);
        cov.after(r.peek(), e, o);
      }
      fb.after(cov, t.header, t.events, run, false);
    };
    const t = traces.reduce((x, y) => (y.events.length > x.events.length ? y : x));
    screen(t, 0);
    expect(fb.kept).toHaveLength(1);
    // the same trace again reaches nothing new
    screen(t, 1);
    expect(fb.kept).toHaveLength(1);
    expect(fb.kept[0].keys.length).toBeGreaterThan(0);
    // a block whose corpus already reaches all of it keeps nothing
    const full = new BlockFeedback({ dir: '', traces: [], known: fb.kept[0].keys }, new Set(fb.kept[0].keys), 1, 1);
    const cov2 = new CoverageRecorder();
    cov2.firstHits = [];
    cov2.startTrace();
    const r = new Replayer(initialState(t.header, ref), ref);
    for (const e of t.events) {
      cov2.before(r.peek(), e);
      const o = r.apply(e);
      cov2.after(r.peek(), e, o);
    }
    full.after(cov2, t.header, t.events, 0, false);
    expect(full.kept).toHaveLength(0);
  });
});

describe('nvx fuzz --corpus', () => {
  const campaign = (dir: string, seed: number) => runFuzz({ seed, runs: 40, blockSize: 20, workers: 1, areas: ['cpuid-fault'], profiles: ['cpuid-fault=hardware'], corpus: loadCorpus(dir), mutateShare: 0.5 });

  it('with a fixed seed and corpus, a campaign keeps the same traces; the next campaign mutates them', async () => {
    const a = tmp();
    const b = tmp();
    const sa = await campaign(a, 5);
    const sb = await campaign(b, 5);
    expect(names(a).length).toBeGreaterThan(0);
    expect(names(a)).toEqual(names(b));
    for (const n of names(a)) expect(fs.readFileSync(path.join(a, n), 'utf8')).toBe(fs.readFileSync(path.join(b, n), 'utf8'));
    expect(sa.corpus).toEqual({ ...sb.corpus, dir: a });
    expect(sa.corpus!.added).toBe(names(a).length);
    expect(sa.corpus!.mutations).toBe(40 / 2);
    // each file is named by its content and loads back
    for (const n of names(a)) {
      const t = parseTextTrace(fs.readFileSync(path.join(a, n), 'utf8'));
      expect(`${corpusName(t.header, t.events)}.nvx`).toBe(n);
    }
    const again = await campaign(a, 5);
    expect(again.corpus!.start).toBe(sa.corpus!.size);
    // the fresh traces are the same as before: only mutations can reach anything new
    expect(again.corpus!.newKeysFresh).toBe(0);
    expect(again.corpus!.size).toBe(again.corpus!.start + again.corpus!.added);
  });

  it('a corpus file that is not a trace is an error naming it', () => {
    const d = tmp();
    fs.writeFileSync(path.join(d, 'bad.nvx'), 'junk\n');
    expect(() => loadCorpus(d)).toThrow(CorpusError);
    expect(() => loadCorpus(d)).toThrow(/bad\.nvx/);
  });
});

describe('merging corpora', () => {
  it('is the union by content: every trace once, renamed files included, nothing added twice', () => {
    const traces = fc.sample(arbMixedTrace({ areas: ['cpuid-fault'] }), { seed: 3, numRuns: 5 });
    const a = tmp();
    const b = tmp();
    const text = (i: number) => formatTextTrace(traces[i].header, traces[i].events);
    const name = (i: number) => corpusName(traces[i].header, traces[i].events);
    for (const i of [0, 1, 2]) fs.writeFileSync(path.join(a, `${name(i)}.nvx`), text(i));
    for (const i of [2, 3]) fs.writeFileSync(path.join(b, `${name(i)}.nvx`), text(i));
    fs.writeFileSync(path.join(b, 'renamed.nvx'), text(0));
    fs.writeFileSync(path.join(b, `${name(4)}.nvx`), text(4));
    const out = path.join(tmp(), 'merged');
    const r = mergeCorpora([a, b], out, writeFileAtomic);
    expect(names(out)).toEqual([0, 1, 2, 3, 4].map((i) => `${name(i)}.nvx`).sort());
    expect(r).toMatchObject({ traces: 5, added: 5 });
    expect(mergeCorpora([a, b], out, writeFileAtomic)).toMatchObject({ traces: 5, added: 0 });
  });
});

describe('the minimizer changes form', () => {
  beforeAll(() => registerPath(brokenMergeStickyPassthrough));

  // L1 passes FS_BASE through for one entry, then intercepts its reads; the
  // sticky merge never merges the intercept in. The vmcs12 revision id is
  // stored in two halves, and a second vCPU sets the intercept bit.
  const TRACE = `nvx-trace 1
config vcpus=2
memslot 0 gfn=0x0 npages=0x400 flags=0
events
l1.write 0x1000 4 0x11e57ed0
l1.vmxon 0x1000
l1.write 0x2000 2 0x7ed0
l1.write 0x2002 2 0x11e5
l1.vmptrld 0x2000
l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16
l1.vmwrite VM_EXIT_CONTROLS 0x36dfb
l1.vmwrite VM_ENTRY_CONTROLS 0x11fb
l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x14006172
l1.vmwrite MSR_BITMAP 0x3000
l1.vmlaunch
l2.vmcall
@1 l1.msr-bitmap 0x3000 MSR_FS_BASE read true
l1.vmresume
l2.rdmsr MSR_FS_BASE
`;

  it('keeps the signature and ends smaller than the form-keeping minimizer', () => {
    const { header, events } = parseTextTrace(TRACE);
    const other = parseProfile(`msr-bitmap=${brokenMergeStickyPassthrough.name}`);
    const o = { timeLimitMs: 20_000, signature: observationOf };
    const keep = minimizeTrace(header, events, ref, other, { ...o, changeForm: false });
    const change = minimizeTrace(header, events, ref, other, o);
    const sig = (m: typeof keep) => findingSignature(other.name, m.result.divergence!);
    expect(sig(change)).toBe(sig(keep));
    expect(keep.header.config.vcpus).toBe(2);
    expect(change.header.config.vcpus).toBe(1);
    expect(change.after).toBeLessThan(keep.after);
  });
});
